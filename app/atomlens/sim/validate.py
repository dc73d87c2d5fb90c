"""Compare our HAADF convolution images with multislice references (abTEM).

The figure of merit follows Combs et al., *Ultramicroscopy* 202, 2019: 1 - R^2 of the
multislice image against ours after an optimal linear intensity scaling (gain and offset),
together with the normalised cross-correlation.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from .atoms import AtomTable
from .imaging import ProbeParams, render_stem

__all__ = ["columns_from_atoms", "one_minus_r2", "ncc", "compare_with_multislice"]


def columns_from_atoms(positions, numbers, cell, extent_A, *, tol_A: float = 0.1, margin_A: float = 4.0) -> AtomTable:
    """Projected columns (merged within `tol_A`) of a periodic cell, tiled to cover
    [-margin, extent+margin] in x and y.  Count = atoms in the column; Z = the heaviest,
    lighter members add an effective count weighted by (Z/Zmax)^1.7.

    The beam runs along z: only the x and y of the positions and of the first two cell
    vectors are used.

    Parameters
    ----------
    positions : array_like, (m, 2) or (m, 3), Å
        Atom positions of one cell.
    numbers : array_like, (m,)
        Their atomic numbers.
    cell : array_like, (3, 3) or (2, 2), Å
        Lattice vectors as rows; the first two tile the plane.
    extent_A : (float, float), Å
        The field (W, H).
    tol_A : float, Å, optional
        Atoms closer than this in projection (chains of them too) form one column.
    margin_A : float, Å, optional
        Columns strictly within this margin outside the field are kept.

    Returns
    -------
    AtomTable
        Column positions (the mean of their members), Z, effective counts; height 0, class
        ATOM, labelled, site -1.

    Examples
    --------
    >>> t = columns_from_atoms([[0, 0, 0], [0, 0, 1.0]], [6, 6], np.diag([2.0, 2.0, 2.0]), (4.0, 4.0),
    ...                        margin_A=0.5)
    >>> len(t), t.count.tolist()[:2]
    (9, [2.0, 2.0])
    """
    pos = np.asarray(positions)[:, :2]
    Z = np.asarray(numbers)
    a, b = np.asarray(cell)[0, :2], np.asarray(cell)[1, :2]
    na = int(np.ceil((extent_A[0] + 2 * margin_A) / np.linalg.norm(a))) + 1
    nb = int(np.ceil((extent_A[1] + 2 * margin_A) / np.linalg.norm(b))) + 1
    # merge the atoms of one cell into columns: connected components of close pairs
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(pos).query_pairs(tol_A, output_type="ndarray").reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pos), len(pos)))
    n_cols, label = connected_components(graph, directed=False)
    cols_xy, cols_z, cols_n = [], [], []
    for c in range(n_cols):
        members = np.nonzero(label == c)[0]
        zs = Z[members]
        zmax = zs.max()
        cols_xy.append(pos[members].mean(axis=0))
        cols_z.append(zmax)
        cols_n.append(float(np.sum((zs / zmax) ** 1.7)))
    xy0, z0, n0 = np.array(cols_xy), np.array(cols_z), np.array(cols_n)
    shifts = [i * a + j * b for i, j in itertools.product(range(-1, na), range(-1, nb))]
    xy = np.concatenate([xy0 + s for s in shifts])
    keep = ((xy[:, 0] > -margin_A) & (xy[:, 0] < extent_A[0] + margin_A)
            & (xy[:, 1] > -margin_A) & (xy[:, 1] < extent_A[1] + margin_A))
    return AtomTable.from_arrays(xy[keep], np.tile(z0, len(shifts))[keep], np.tile(n0, len(shifts))[keep])


def _fit(ref: np.ndarray, img: np.ndarray):
    A = np.stack([img.ravel(), np.ones(img.size)], axis=1)
    coef, *_ = np.linalg.lstsq(A, ref.ravel(), rcond=None)
    return A @ coef


def one_minus_r2(ref: np.ndarray, img: np.ndarray) -> float:
    """1 - R^2 of `ref` against `img` after the best gain and offset.

    Parameters
    ----------
    ref : numpy.ndarray
        The reference image, any shape.
    img : numpy.ndarray
        The image compared, the same number of pixels (flattened in the same order).

    Returns
    -------
    float
        The residual sum of squares of the least-squares fit ``ref ~ g * img + o`` over
        the total sum of squares of `ref`: 0 for a perfect linear match, 1 when `img`
        explains nothing.  NaN (with a warning) for a constant `ref`.

    Examples
    --------
    >>> ref = np.arange(12.0).reshape(3, 4)
    >>> round(one_minus_r2(ref, 0.5 * ref - 3.0), 12)
    0.0
    """
    fit = _fit(ref, img)
    r = ref.ravel()
    return float(np.sum((r - fit) ** 2) / np.sum((r - r.mean()) ** 2))


def ncc(ref: np.ndarray, img: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson r) of two images.

    Parameters
    ----------
    ref, img : numpy.ndarray
        Of the same shape (or broadcastable).

    Returns
    -------
    float
        In [-1, 1]; NaN (with a warning) when either image is constant.

    Examples
    --------
    >>> a = np.arange(6.0).reshape(2, 3)
    >>> round(ncc(a, 2 * a + 1), 12), round(ncc(a, -a), 12)
    (1.0, -1.0)
    """
    a, b = ref - ref.mean(), img - img.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def compare_with_multislice(ref: dict, z_exponents=np.arange(1.4, 2.05, 0.1),
                            sources_A=(0.0, 0.1, 0.2, 0.3, 0.4)) -> dict:
    """Best agreement of our HAADF model with a stored multislice reference.

    `ref` holds image, px_size_A, kv, alpha_mrad, positions, numbers, cell (see
    tests/data/make_abtem_reference.py).  The Z exponent and an effective source size are
    fitted (the multislice has neither thermal diffuse scattering nor a finite source),
    the intensity by an optimal gain and offset.

    Parameters
    ----------
    ref : dict
        ``image`` (H, W), ``px_size_A`` (Å/px), ``kv`` (kV), ``alpha_mrad`` (mrad), and the
        cell: ``positions`` (m, 3) Å, ``numbers`` (m,), ``cell`` (3, 3) Å (beam along z).
    z_exponents : iterable of float, optional
        HAADF exponents tried.
    sources_A : iterable of float, Å, optional
        Source sizes (FWHM) tried; the probe has no defocus and no Cs.

    Returns
    -------
    dict or None
        The best pair by 1 - R²: ``one_minus_r2``, ``ncc``, ``z_exponent`` (rounded to
        0.01), ``source_fwhm_A`` and ``image``, our (H, W) float32 render (before the gain
        and offset).  None when either grid is empty.

    Raises
    ------
    KeyError
        If `ref` lacks one of the keys above.
    """
    img_ref = np.asarray(ref["image"], float)
    px = float(ref["px_size_A"])
    h, w = img_ref.shape
    table = columns_from_atoms(ref["positions"], ref["numbers"], ref["cell"], (w * px, h * px))
    best = None
    for n in z_exponents:
        for s in sources_A:
            probe = ProbeParams(float(ref["kv"]), float(ref["alpha_mrad"]), 0.0, 0.0, float(s))
            ours = render_stem(table, (h, w), px, probe=probe, z_exponent=float(n))
            score = one_minus_r2(img_ref, ours)
            if best is None or score < best["one_minus_r2"]:
                best = {"one_minus_r2": score, "ncc": ncc(img_ref, ours), "z_exponent": round(float(n), 2),
                        "source_fwhm_A": float(s), "image": ours}
    return best
