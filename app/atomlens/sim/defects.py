"""Defects applied to an :class:`AtomTable`, each labelled exactly.

Every function takes a table and a NumPy random generator and returns a new table; columns
that a defect touches get the defect's code in ``defect`` (an index into DEFECT_TYPES) and,
where it applies, a class (VACANCY for emptied sites, DOPANT for foreign atoms).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from .atoms import ATOM, DEFECT_TYPES, DOPANT, VACANCY, AtomTable
from .structures import ProjectedCell, amorphous_support

__all__ = ["vacancies", "substitute", "adatoms", "stone_wales", "multi_vacancy", "hole", "edge",
           "grain_boundary", "strain_field", "contamination", "DEFECT_CODE"]

DEFECT_CODE = {name: i for i, name in enumerate(DEFECT_TYPES)}


def _inside(t: AtomTable, field_A, margin_A: float = 0.0) -> np.ndarray:
    w, h = field_A
    x, y = t.xy[:, 0], t.xy[:, 1]
    return (x >= margin_A) & (x <= w - margin_A) & (y >= margin_A) & (y <= h - margin_A)


def _candidates(t: AtomTable, sites=None) -> np.ndarray:
    m = t.labelled & (t.cls == ATOM) & (t.count > 0)
    if sites is not None:
        m &= np.isin(t.site, np.asarray(sites))
    return m


def vacancies(t: AtomTable, rng, rate: float, *, sites=None, partial: bool = False) -> AtomTable:
    """Empty a fraction `rate` of the host columns (of the given site indices).

    With ``partial=True`` one atom is removed from columns of two or more (S2 -> S in a
    TMD); the column stays visible, dimmer, and is labelled VACANCY.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    rate : float
        Probability (0..1) that each candidate column is emptied.  Candidates are labelled
        ATOM columns with ``count > 0``.
    sites : int or sequence of int, optional
        Only columns whose ``site`` is one of these (see :meth:`ProjectedCell.role_index`).
    partial : bool, optional
        Remove one atom (only columns with ``count >= 2`` are candidates) instead of all.

    Returns
    -------
    AtomTable
        A copy, same rows; picked columns get ``count`` 0 (or ``count - 1``), class VACANCY
        and the ``vacancy`` defect code.
    """
    t = t.copy()
    cand = _candidates(t, sites)
    if partial:
        cand &= t.count >= 2
    pick = cand & (rng.random(len(t)) < rate)
    t.count[pick] = t.count[pick] - 1 if partial else 0
    t.cls[pick] = VACANCY
    t.defect[pick] = DEFECT_CODE["vacancy"]
    return t


def substitute(t: AtomTable, rng, Z: int, rate: float, *, sites=None, n: int | None = None,
               field_A=None) -> AtomTable:
    """Replace host atoms by element `Z`: a fraction `rate` (alloy, dopants) or exactly `n`
    (chosen inside `field_A`, 1 Å from its edges, when it is given).

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    Z : int
        Atomic number of the substituent.
    rate : float
        Probability (0..1) per candidate column (labelled ATOM columns with ``count > 0``);
        ignored when `n` is given.
    sites : int or sequence of int, optional
        Only columns whose ``site`` is one of these.
    n : int, optional
        Substitute exactly this many distinct columns (fewer if there are fewer candidates).
    field_A : (float, float), Å, optional
        The field (W, H); with `n`, candidates must lie at least 1 Å inside it.

    Returns
    -------
    AtomTable
        A copy, same rows; picked columns get ``Z``, class DOPANT and the ``dopant`` defect
        code (``count`` is kept).
    """
    t = t.copy()
    ok = _candidates(t, sites)
    if n is not None and field_A is not None:
        ok &= _inside(t, field_A, 1.0)
    cand = np.nonzero(ok)[0]
    if n is not None:
        pick = rng.choice(cand, size=min(n, len(cand)), replace=False) if len(cand) else cand
    else:
        pick = cand[rng.random(len(cand)) < rate]
    t.Z[pick] = Z
    t.cls[pick] = DOPANT
    t.defect[pick] = DEFECT_CODE["dopant"]
    return t


def adatoms(t: AtomTable, rng, n: int, Z: int, field_A, *, min_dist_A: float = 1.0,
            height_A: float = 2.0) -> AtomTable:
    """Add `n` foreign atoms on top of the structure, away from existing columns.

    Positions are drawn uniformly in the field less a 1 Å border, and kept when at least
    `min_dist_A` from every occupied column and ``2 * min_dist_A`` from the other adatoms; after
    ``50 * n`` draws the search stops, so crowded fields may get fewer than `n`.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    n : int
        Number of adatoms wanted.
    Z : int
        Their atomic number.
    field_A : (float, float), Å
        The field (W, H).
    min_dist_A : float, Å, optional
        Smallest projected distance to an occupied column.
    height_A : float, Å, optional
        Height above the table's highest column.

    Returns
    -------
    AtomTable
        `t`'s rows followed by the adatoms: one atom each, class DOPANT, ``adatom`` defect
        code, labelled, site -1.
    """
    occ = t.xy[t.count > 0]
    tree = cKDTree(occ) if len(occ) else None
    pts = []
    for _ in range(50 * max(n, 1)):
        if len(pts) >= n:
            break
        p = rng.uniform((1.0, 1.0), (field_A[0] - 1.0, field_A[1] - 1.0))
        if tree is not None and tree.query(p)[0] < min_dist_A:
            continue
        if any(math.dist(p, q) < 2 * min_dist_A for q in pts):
            continue
        pts.append(p)
    top = float(t.height.max()) if len(t) else 0.0
    add = AtomTable.from_arrays(np.array(pts).reshape(-1, 2), Z, 1.0, top + height_A, DOPANT,
                                DEFECT_CODE["adatom"])
    return t.concat(add)


def _bonds(t: AtomTable, mask, max_len: float):
    idx = np.nonzero(mask)[0]
    pairs = cKDTree(t.xy[idx]).query_pairs(max_len, output_type="ndarray")
    return idx[pairs] if len(pairs) else np.zeros((0, 2), int)


def stone_wales(t: AtomTable, rng, n: int, field_A, *, bond_A: float = 1.42) -> AtomTable:
    """Rotate `n` C-C bonds by 90 degrees about their centres (55-77 defects in graphene).

    Bonds are pairs of host columns at least 3 Å inside the field and closer than
    ``1.15 * bond_A``, taken in random order; a bond is skipped when a column within 3 Å
    of its centre already belongs to a rotated one, so fewer than `n` may be rotated.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    n : int
        Number of bonds to rotate.
    field_A : (float, float), Å
        The field (W, H).
    bond_A : float, Å, optional
        The bond length (graphene's by default).

    Returns
    -------
    AtomTable
        A copy, same rows; the two atoms of each bond moved, and every column within 3 Å of
        the bond centre given the ``topological`` defect code (classes unchanged).
    """
    t = t.copy()
    inner = _inside(t, field_A, 3.0) & _candidates(t)
    bonds = _bonds(t, inner, bond_A * 1.15)
    used = np.zeros(len(t), bool)
    for b in rng.permutation(len(bonds)):
        if n <= 0:
            break
        i, j = bonds[b]
        c = 0.5 * (t.xy[i] + t.xy[j])
        near = np.linalg.norm(t.xy - c, axis=1) < 3.0
        if used[near].any():
            continue
        d = t.xy[j] - t.xy[i]
        rot = np.array([-d[1], d[0]])  # d rotated by 90 degrees
        t.xy[i], t.xy[j] = c - rot / 2, c + rot / 2
        t.defect[near] = DEFECT_CODE["topological"]
        used[near] = True
        n -= 1
    return t


def multi_vacancy(t: AtomTable, rng, n: int, size: int, field_A, *, sites=None) -> AtomTable:
    """`n` clusters of `size` neighbouring vacancies (di-, tri-vacancies...).

    Each cluster starts at a distinct random candidate column (a labelled, occupied ATOM
    column at least 2 Å inside the field) and empties it and its nearest host columns;
    clusters that overlap earlier ones come out smaller.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    n : int
        Number of clusters (at most the number of candidates).
    size : int
        Vacancies per cluster.
    field_A : (float, float), Å
        The field (W, H).
    sites : int or sequence of int, optional
        Only columns whose ``site`` is one of these.

    Returns
    -------
    AtomTable
        A copy, same rows (unchanged when there is no candidate); emptied columns get
        ``count`` 0, class VACANCY and the ``vacancy`` defect code.
    """
    t = t.copy()
    cand = np.nonzero(_candidates(t, sites) & _inside(t, field_A, 2.0))[0]
    if not len(cand):
        return t
    tree = cKDTree(t.xy)
    for c in rng.choice(cand, size=min(n, len(cand)), replace=False):
        _, nb = tree.query(t.xy[c], k=size + 6)
        nb = [k for k in np.atleast_1d(nb) if k < len(t) and t.cls[k] == ATOM and t.count[k] > 0
              and (sites is None or t.site[k] in np.atleast_1d(sites))][:size]
        t.count[nb] = 0
        t.cls[nb] = VACANCY
        t.defect[nb] = DEFECT_CODE["vacancy"]
    return t


def hole(t: AtomTable, rng, radius_A: float, field_A) -> AtomTable:
    """A hole: all columns within `radius_A` of a random point are gone (not labelled as
    vacancies: a hole is background); columns on its rim are marked as ``hole`` defects.

    The centre is drawn in the middle 60 % of the field; the outline is irregular, its
    radius modulated by up to three harmonics of relative amplitude < 0.25 each.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    radius_A : float, Å
        Mean radius of the hole.
    field_A : (float, float), Å
        The field (W, H).

    Returns
    -------
    AtomTable
        Fewer rows: labelled columns inside the outline removed (unlabelled ones, such as an
        amorphous support, stay); labelled columns within 2 Å outside it get the ``hole``
        defect code.
    """
    c = rng.uniform((0.2 * field_A[0], 0.2 * field_A[1]), (0.8 * field_A[0], 0.8 * field_A[1]))
    # an irregular outline: the radius varies with angle
    ang = np.arctan2(t.xy[:, 1] - c[1], t.xy[:, 0] - c[0])
    a, ph = rng.uniform(0, 0.25, 3), rng.uniform(0, 2 * np.pi, 3)
    r_of = radius_A * (1 + sum(a[k] * np.cos((k + 2) * ang + ph[k]) for k in range(3)))
    d = np.linalg.norm(t.xy - c, axis=1)
    keep = (d > r_of) | ~t.labelled
    t = t.subset(keep)
    d = d[keep]
    rim = (d < r_of[keep] + 2.0) & t.labelled
    t.defect[rim] = DEFECT_CODE["hole"]
    return t


def edge(t: AtomTable, rng, field_A) -> AtomTable:
    """Cut the crystal along a random straight line: the material ends inside the field.

    The line has a random direction and passes within 25 % of the field size of its centre.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    field_A : (float, float), Å
        The field (W, H).

    Returns
    -------
    AtomTable
        Fewer rows: labelled columns on one side removed (unlabelled ones stay); labelled
        columns within 2 Å of the cut get the ``edge`` defect code.
    """
    w, h = field_A
    theta = rng.uniform(0, 2 * np.pi)
    nrm = np.array([math.cos(theta), math.sin(theta)])
    c = np.array([w, h]) / 2 + rng.uniform(-0.25, 0.25, 2) * np.array([w, h])
    s = (t.xy - c) @ nrm
    t = t.subset((s < 0) | ~t.labelled)
    s = (t.xy - c) @ nrm
    t.defect[(s > -2.0) & t.labelled] = DEFECT_CODE["edge"]
    return t


def grain_boundary(cell: ProjectedCell, field_A, rng, *, misorientation_deg: float | None = None,
                   margin_A: float = 3.0, min_dist_factor: float = 0.75, thickness: float = 1.0) -> AtomTable:
    """Two grains of `cell`, rotated relative to each other, meeting along a straight line.

    Columns of the second grain closer than ``min_dist_factor`` x the nearest-neighbour
    distance to the first grain are removed; columns within 3 Å of the line are marked.

    Parameters
    ----------
    cell : ProjectedCell
        The structure of both grains.
    field_A : (float, float), Å
        The field (W, H).
    rng : numpy.random.Generator
        Draws the first grain's rotation (0..360°), both grains' shifts (0..5 Å), the line
        (random direction, within 15 % of the field size of its centre) and, when not given,
        the misorientation.
    misorientation_deg : float, degrees, optional
        Rotation of the second grain relative to the first; default uniform in 8..30°.
    margin_A : float, Å, optional
        Margin of the tiling around the field (see :meth:`ProjectedCell.tile`).
    min_dist_factor : float, optional
        Relative to :attr:`ProjectedCell.nn_distance_A`.
    thickness : float, optional
        Cells along the beam (scales the column counts).

    Returns
    -------
    AtomTable
        A new table (no input table): the first grain's columns, then the second's; those
        within 3 Å of the line carry the ``grain_boundary`` defect code.
    """
    w, h = field_A
    rot1 = rng.uniform(0, 360)
    mis = misorientation_deg if misorientation_deg is not None else rng.uniform(8, 30)
    g1 = cell.tile(w, h, rotation_deg=rot1, shift_A=tuple(rng.uniform(0, 5, 2)), margin_A=margin_A, thickness=thickness)
    g2 = cell.tile(w, h, rotation_deg=rot1 + mis, shift_A=tuple(rng.uniform(0, 5, 2)), margin_A=margin_A, thickness=thickness)
    theta = rng.uniform(0, np.pi)
    nrm = np.array([math.cos(theta), math.sin(theta)])
    c = np.array([w, h]) / 2 + rng.uniform(-0.15, 0.15, 2) * np.array([w, h])
    g1 = g1.subset((g1.xy - c) @ nrm < 0)
    g2 = g2.subset((g2.xy - c) @ nrm >= 0)
    nn = cell.nn_distance_A
    if len(g1) and len(g2):
        d, _ = cKDTree(g1.xy).query(g2.xy)
        g2 = g2.subset(d > min_dist_factor * nn)
    t = g1.concat(g2)
    t.defect[np.abs((t.xy - c) @ nrm) < 3.0] = DEFECT_CODE["grain_boundary"]
    return t


def strain_field(t: AtomTable, rng, amplitude_A: float, field_A, *, kind: str = "smooth") -> AtomTable:
    """Displace columns by a strain field; labels move with them.

    ``smooth``: a sum of three long-wavelength plane waves (bending, ripples).
    ``point``: a radial 1/r field around a random centre (a point defect's relaxation),
    amplitude at 2 Å from the centre.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    amplitude_A : float, Å
        For ``smooth``, the scale of each wave's displacement (random direction, std
        ``amplitude_A / sqrt(3)`` per component), wavelengths 1..3 x the larger field side.
        For ``point``, the outward displacement from 0.5 to 2 Å from the centre (drawn in the
        middle half of the field), falling as 2/r beyond and linearly to 0 within 0.5 Å.
    field_A : (float, float), Å
        The field (W, H).
    kind : {'smooth', 'point'}, optional
        The field's form.

    Returns
    -------
    AtomTable
        A copy with displaced ``xy``; every other field unchanged.

    Raises
    ------
    ValueError
        For another `kind`.
    """
    t = t.copy()
    w, h = field_A
    if kind == "smooth":
        u = np.zeros_like(t.xy)
        for _ in range(3):
            k = rng.normal(size=2)
            k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(1.0, 3.0) * max(w, h))
            amp = rng.normal(size=2) * amplitude_A / math.sqrt(3)
            u += np.sin(t.xy @ k + rng.uniform(0, 2 * np.pi))[:, None] * amp
    elif kind == "point":
        c = rng.uniform((0.25 * w, 0.25 * h), (0.75 * w, 0.75 * h))
        r = t.xy - c
        d = np.linalg.norm(r, axis=1, keepdims=True)
        u = amplitude_A * r / np.maximum(d, 0.5) * np.minimum(1.0, 2.0 / np.maximum(d, 1e-9))
    else:
        raise ValueError(f"strain kind must be 'smooth' or 'point', not {kind!r}")
    t.xy = t.xy + u
    return t


def contamination(t: AtomTable, rng, n_patches: int, field_A, *, radius_A=(4.0, 12.0),
                  density_per_A2: float = 0.5) -> AtomTable:
    """Patches of amorphous hydrocarbon contamination: unlabelled, rendered, C-like.

    Parameters
    ----------
    t : AtomTable
        The structure; not modified.
    rng : numpy.random.Generator
        Source of every random choice.
    n_patches : int
        Number of patches; each has a random centre in the field and a lobed outline
        (radius modulated by ±30 %).
    field_A : (float, float), Å
        The field (W, H).
    radius_A : (float, float), Å, optional
        Range of the patches' mean radii (uniform).
    density_per_A2 : float, columns per Å², optional
        Density of the amorphous film the patches are cut from.

    Returns
    -------
    AtomTable
        `t`'s rows followed by the patches' columns: carbon, unlabelled, 0.5..4.5 atoms each
        (a film column's 0.5..1.5 times 1..3 layers), ``contamination`` defect code, 2 Å above
        the highest column of `t`.
    """
    w, h = field_A
    film = amorphous_support(w, h, rng, density_per_A2=density_per_A2, min_dist_A=1.0)
    keep = np.zeros(len(film), bool)
    for _ in range(n_patches):
        c = rng.uniform((0, 0), (w, h))
        r = rng.uniform(*radius_A)
        d = np.linalg.norm(film.xy - c, axis=1)
        keep |= d < r * (1 + 0.3 * np.sin(3 * np.arctan2(*(film.xy - c).T[::-1]) + rng.uniform(0, 6)))
    film = film.subset(keep)
    film.count *= rng.uniform(1.0, 3.0, len(film)).astype(np.float32)  # several layers thick
    film.defect[:] = DEFECT_CODE["contamination"]
    film.height[:] = float(t.height.max()) + 2.0 if len(t) else 2.0
    return t.concat(film)

