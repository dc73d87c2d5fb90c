"""Atom columns from class-probability maps, and the atom table (CSV) they are stored in.

:func:`find_atoms` turns the (C, H, W) softmax output of the FCN into an :class:`AtomList`:
threshold the foreground probability, split touching atoms with a marker watershed, and
measure each atom's sub-pixel position, class and confidence with vectorised label
statistics (no Python loop per atom).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max
from skimage.measure import label as cc_label
from skimage.segmentation import watershed

from ..fileio import atomic_write_text
from ..sim.atoms import CLASSES
from .refine import refine_gaussian

__all__ = ["CLASSES", "AtomList", "PointTable", "names_to_indices", "find_atoms", "one_peak_per_plateau",
           "write_text_atomic"]

#: Atoms split off a shared blob are located by the centroid of f above this fraction of
#: their peak (the upper part of the blob, little affected by the neighbour's tail).
SPLIT_LEVEL = 0.6

#: Fitting windows never exceed this side (px): an atom column is never larger, and a huge
#: blob (from a poor model or clutter) would make the Gaussian fits cost seconds.
MAX_FIT_WINDOW_PX = 41.0

CSV_HEADER = ("x", "y", "class", "score", "x_nm", "y_nm")


def write_text_atomic(path, text: str) -> None:
    """Write `text` atomically (see :mod:`atomlens.fileio`).

    Parameters
    ----------
    path : str or path-like
        The file; replaced in one step through a temporary file in the same folder, so that a
        reader never sees half of it.
    text : str
        Written as UTF-8.
    """
    atomic_write_text(path, text)


def _nm_columns(x, y, px_size_nm, offset_nm, px_size_y_nm=None):
    from .calibration import Calibration

    xs, ys = Calibration(px_size_nm, px_size_y_nm, offset_nm).to_nm(x, y)
    if xs is None:
        return [""] * len(x), [""] * len(x)
    return [f"{v:.5f}" for v in xs], [f"{v:.5f}" for v in ys]


def table_to_csv_text(x, y, names, score, px_size_nm, offset_nm, name_col: str, px_size_y_nm=None) -> str:
    """CSV text of a point table (header ``x,y,<name_col>,score,x_nm,y_nm``)."""
    xs, ys = _nm_columns(x, y, px_size_nm, offset_nm, px_size_y_nm)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "y", name_col, "score", "x_nm", "y_nm"])
    for i in range(len(x)):
        w.writerow([f"{x[i]:.3f}", f"{y[i]:.3f}", names[i], f"{score[i]:.4f}", xs[i], ys[i]])
    return buf.getvalue()


def read_table_csv(path, name_col: str):
    """(x, y, names, score) read from a CSV written by :func:`table_to_csv_text`.

    Pixel positions are taken from the ``x``/``y`` columns; the nm columns are ignored.
    """
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    x = np.array([float(r["x"]) for r in rows], dtype=np.float64)
    y = np.array([float(r["y"]) for r in rows], dtype=np.float64)
    names = [r[name_col] for r in rows]
    score = np.array([float(r["score"]) if r.get("score") not in (None, "") else 1.0 for r in rows])
    return x, y, names, score


def names_to_indices(names, known) -> tuple[np.ndarray, tuple]:
    """Indices of `names` in `known`, with unknown names appended: (int64 array, new names).

    Parameters
    ----------
    names : sequence of str
        A class name per point.
    known : sequence of str
        The class names already known (e.g. :data:`CLASSES`), whose order is kept.

    Returns
    -------
    idx : (n,) int64 array
        Index of each name in `names_out`.
    names_out : tuple of str
        `known` followed by the new names, in order of first appearance.

    Examples
    --------
    >>> idx, names = names_to_indices(["atom", "Pt", "atom"], ("background", "atom"))
    >>> idx.tolist(), names
    ([1, 2, 1], ('background', 'atom', 'Pt'))
    """
    out = list(known)
    for n in names:
        if n not in out:
            out.append(str(n))
    return np.array([out.index(n) for n in names], dtype=np.int64), tuple(out)


def check_edge_margin(margin_px) -> float:
    """`margin_px` as a float; ValueError unless it is a finite number of pixels >= 0."""
    m = float(margin_px)
    if not math.isfinite(m) or m < 0:
        raise ValueError(f"the edge margin must be a number of pixels >= 0, not {margin_px!r}")
    return m


class PointTable:
    """What atom and defect tables share: positions ``x``, ``y`` (px), their length, and the CSV
    table ``x,y,<NAME_COLUMN>,score,x_nm,y_nm`` (``class`` for atoms, ``type`` for defects)."""

    x: np.ndarray
    y: np.ndarray
    #: The CSV column of the names (``class`` or ``type``).
    NAME_COLUMN = "name"

    def __len__(self) -> int:
        return len(self.x)

    def to_csv(self, path, px_size_nm=None, offset_nm=(0.0, 0.0), px_size_y_nm=None) -> None:
        """Write the table ``x,y,<name>,score,x_nm,y_nm`` atomically.

        Parameters
        ----------
        path : str or path-like
        px_size_nm : float or None
            Pixel size (nm/px).  None (uncalibrated image) leaves the nm columns empty.
        offset_nm : (float, float)
            Physical position (nm) of pixel (0, 0): ``x_nm = offset_x + x * px_size_nm``.
        px_size_y_nm : float or None
            Pixel height (nm/px) for ``y_nm``; None: square pixels.
        """
        write_text_atomic(path, table_to_csv_text(self.x, self.y, self.names(), self.score,
                                                  px_size_nm, offset_nm, self.NAME_COLUMN, px_size_y_nm))

    @classmethod
    def from_csv(cls, path, names=None):
        """Read a table written by :meth:`to_csv`; unknown names are appended.

        Parameters
        ----------
        path : str or path-like
            A CSV with columns ``x``, ``y`` (px), the names (``class`` or ``type``) and
            ``score`` (optional; empty or missing: 1.0); the nm columns are ignored.
        names : sequence of str, optional
            The names to index into (default: the class's standard ones); the table's other
            names follow them.

        Returns
        -------
        AtomList or DefectList
        """
        x, y, found, score = read_table_csv(path, cls.NAME_COLUMN)
        idx, known = names_to_indices(found, cls.DEFAULT_NAMES if names is None else names)
        return cls(x, y, idx, score, known)

    @property
    def xy(self) -> np.ndarray:
        """(n, 2) float64 positions (x, y) in px."""
        return np.stack([self.x, self.y], axis=1)


@dataclasses.dataclass
class AtomList(PointTable):
    """Detected atom columns.

    Attributes
    ----------
    x, y : (n,) float64, px
        Column and row of each atom in pixels of the original image (the centre of the
        top-left pixel is (0, 0)).
    cls : (n,) int
        Index into `class_names` (never 0, which is background).
    score : (n,) float64
        Confidence in 0..1.
    class_names : tuple of str
        Names of the classes; index 0 is ``"background"``.
    """

    x: np.ndarray
    y: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    class_names: tuple = CLASSES
    NAME_COLUMN = "class"
    DEFAULT_NAMES = CLASSES

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        n = len(self.x)
        self.cls = np.broadcast_to(np.asarray(self.cls, dtype=np.int64), (n,)).copy()
        self.score = np.broadcast_to(np.asarray(self.score, dtype=np.float64), (n,)).copy()
        self.class_names = tuple(self.class_names)
        if len(self.y) != n:
            raise ValueError("x and y must have the same length")

    @classmethod
    def empty(cls, class_names=CLASSES) -> "AtomList":
        """An AtomList of no atoms.

        Parameters
        ----------
        class_names : sequence of str
            Its class names (index 0 background).

        Returns
        -------
        AtomList
            Length 0, float64 positions and scores, int64 classes.
        """
        z = np.zeros(0)
        return cls(z, z, np.zeros(0, np.int64), z, tuple(class_names))

    def names(self) -> list:
        """Class name of each atom (list of n str)."""
        return [self.class_names[int(c)] for c in self.cls]

    def away_from_edges(self, shape, margin_px: float) -> "AtomList":
        """The atoms whose centre lies at least `margin_px` from every edge of an image of
        `shape` (H, W), pixel centres at integer coordinates (all of them for a margin of 0).
        Columns cut by the edge are localised less well than whole ones; AtomNet's published
        position lists leave out those within 5 px (its locator's ``dist_edge``).

        Parameters
        ----------
        shape : tuple of int
            The image's shape, (H, W) px (further entries are ignored).
        margin_px : float
            Distance from the edge pixels' centres, px, >= 0.

        Returns
        -------
        AtomList
            `self` when no atom is left out (or the margin is 0), else a copy of those kept.

        Raises
        ------
        ValueError
            When `margin_px` is negative or not finite.

        Examples
        --------
        >>> atoms = AtomList([2.0, 10.0], [10.0, 10.0], 1, 0.9)
        >>> atoms.away_from_edges((20, 20), 5).x.tolist()
        [10.0]
        """
        m = check_edge_margin(margin_px)
        if m == 0 or not len(self):
            return self
        h, w = shape[:2]
        keep = (self.x >= m) & (self.y >= m) & (self.x <= w - 1 - m) & (self.y <= h - 1 - m)
        return self if keep.all() else self.subset(keep)

    def subset(self, index) -> "AtomList":
        """Atoms selected by a boolean mask or an index array (a copy).

        Parameters
        ----------
        index : (n,) bool array, int array or slice
            Which atoms, as numpy indexing takes it (an index array may repeat or reorder).

        Returns
        -------
        AtomList
            The selected atoms with the same class names.
        """
        return AtomList(self.x[index], self.y[index], self.cls[index], self.score[index], self.class_names)

    def concat(self, other: "AtomList") -> "AtomList":
        """This list followed by `other`; class indices of `other` are remapped by name.

        Parameters
        ----------
        other : AtomList
            Atoms in the same pixel frame; its class names unknown here are appended.

        Returns
        -------
        AtomList
            A new list of ``len(self) + len(other)`` atoms.

        Examples
        --------
        >>> a = AtomList([1.0], [2.0], [1], [0.9])
        >>> b = AtomList([3.0], [4.0], [1], [0.8], ("background", "Pt"))
        >>> a.concat(b).names()
        ['atom', 'Pt']
        """
        remap, names = names_to_indices(other.class_names, self.class_names)
        return AtomList(np.concatenate([self.x, other.x]), np.concatenate([self.y, other.y]),
                        np.concatenate([self.cls, remap[other.cls] if len(other) else other.cls]),
                        np.concatenate([self.score, other.score]), names)

    def to_dict(self) -> dict:
        """Plain lists (JSON-friendly): x, y, class (names), score, class_names."""
        return {"x": self.x.tolist(), "y": self.y.tolist(), "class": self.names(),
                "score": self.score.tolist(), "class_names": list(self.class_names)}


def one_peak_per_plateau(values: np.ndarray, pk: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Local maxima `pk` ((n, 2) row, col) of the 2D map `values` with one per flat plateau.

    Pixels that equal the maximum of their 3 x 3 neighbourhood and touch (8-connected) have
    exactly the same value: they form a plateau, which arises wherever a column is centred
    between pixels or a probability saturates.  Every peak on a plateau of more than one pixel
    is replaced by one pixel for the whole plateau, the member nearest the plateau's centroid
    (ties: the first in row-major order); peaks elsewhere are left as they are, in their order.
    Only pixels inside `mask` (if given) belong to a plateau, so a plateau never joins two
    blobs.  Without ties (checked at the peaks alone) nothing else is computed.

    Parameters
    ----------
    values : (H, W) array
        The map the peaks were found in (e.g. the smoothed foreground probability).
    pk : (n, 2) int array
        Peak positions (row, col), as :func:`skimage.feature.peak_local_max` gives them.
    mask : (H, W) bool array, optional
        Where plateaus may extend; None: everywhere.

    Returns
    -------
    (m, 2) int64 array
        (row, col) of the peaks, m <= n.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((5, 6))
    >>> v[2, 1:4] = 1.0  # a flat top three pixels wide
    >>> one_peak_per_plateau(v, [[2, 1], [2, 2], [2, 3]]).tolist()
    [[2, 2]]
    """
    pk = np.asarray(pk, np.int64).reshape(-1, 2)
    if len(pk) == 0:
        return pk
    v = np.asarray(values)
    H, W = v.shape
    vp = np.pad(v, 1, mode="constant", constant_values=-np.inf)
    r, c = pk[:, 0] + 1, pk[:, 1] + 1
    vk = vp[r, c]
    tied = np.zeros(len(pk), bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                tied |= vp[r + dr, c + dc] == vk
    if mask is not None:
        tied &= np.asarray(mask)[pk[:, 0], pk[:, 1]]
    if not tied.any():
        return pk
    flat = (v == ndimage.maximum_filter(v, size=3, mode="nearest")) & (v >= vk[tied].min())
    if mask is not None:
        flat &= np.asarray(mask, bool)
    lab, n_lab = ndimage.label(flat, structure=np.ones((3, 3)))
    pl = lab[pk[:, 0], pk[:, 1]]
    multi = tied & (pl > 0)
    if not multi.any():
        return pk
    want = np.zeros(n_lab + 1, bool)
    want[pl[multi]] = True
    want[0] = False
    rr, cc = np.nonzero(want[lab])
    ll = lab[rr, cc]
    cnt = np.bincount(ll, minlength=n_lab + 1).astype(np.float64)
    my = np.bincount(ll, weights=rr, minlength=n_lab + 1) / np.maximum(cnt, 1)
    mx = np.bincount(ll, weights=cc, minlength=n_lab + 1) / np.maximum(cnt, 1)
    d = (rr - my[ll]) ** 2 + (cc - mx[ll]) ** 2
    order = np.lexsort((rr * W + cc, d, ll))
    first = np.ones(len(order), bool)
    first[1:] = ll[order][1:] != ll[order][:-1]
    rep = np.zeros((n_lab + 1, 2), np.int64)
    rep[ll[order][first]] = np.stack([rr[order][first], cc[order][first]], 1)
    out, seen = [], set()
    for i in range(len(pk)):  # keep the peaks' order; a plateau appears where its first peak was
        if not multi[i]:
            out.append(pk[i])
        elif pl[i] not in seen:
            seen.add(pl[i])
            out.append(rep[pl[i]])
    return np.array(out, np.int64).reshape(-1, 2)


def _auto_scale(comp: np.ndarray, n_comp: int) -> float:
    """Median equivalent diameter (px) of the connected components of the thresholded map."""
    if n_comp == 0:
        return 0.0
    area = np.bincount(comp.ravel(), minlength=n_comp + 1)[1:]
    return 2.0 * math.sqrt(float(np.median(area)) / math.pi)


#: Two peaks of one blob farther apart than the minimum distance are two atoms when the map
#: dips between them by at least this fraction of the lower one (see :func:`find_atoms`).
MIN_DIP = 0.1


def _distinct_peaks(pk: np.ndarray, s: np.ndarray, comp: np.ndarray, min_distance: float,
                    min_dip: float) -> np.ndarray:
    """The local maxima `pk` ((n, 2) rows, cols) of the smoothed map `s` that are atoms.

    Greedily from the highest down, a peak is dropped when a kept higher one is within
    `min_distance` (Euclidean), or lies in the same blob of `comp` within 3 x `min_distance`
    with no dip between them: the lowest value of `s` on the segment joining the two is more
    than ``(1 - min_dip)`` of the lower peak (a shoulder on a brighter column, not a column of
    its own).  Only peaks with such a neighbour enter the Python loop (a few per image).
    """
    if len(pk) < 2 or min_distance <= 0:
        return pk
    val = s[pk[:, 0], pk[:, 1]]
    order = np.argsort(-val, kind="stable")
    pk, val = pk[order], val[order]
    tree = cKDTree(pk)
    pairs = [tree.query_pairs(min_distance, output_type="ndarray")]
    # farther pairs can only be a shoulder within one blob: look among blobs of several peaks
    pc = comp[pk[:, 0], pk[:, 1]]
    multi = np.flatnonzero(np.bincount(pc)[pc] > 1)
    if len(multi) > 1:
        far = multi[cKDTree(pk[multi]).query_pairs(3.0 * min_distance, output_type="ndarray")]
        far = far[(pc[far[:, 0]] == pc[far[:, 1]])
                  & (np.hypot(*(pk[far[:, 0]] - pk[far[:, 1]]).T) > min_distance)]
        if len(far):
            far = np.sort(far, axis=1)  # (higher, lower): rows are sorted by value
            t = np.linspace(0.0, 1.0, 9)[1:-1]
            a, b = pk[far[:, 0]].astype(float), pk[far[:, 1]].astype(float)
            line = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]  # (k, 7, 2) rows, cols
            saddle = ndimage.map_coordinates(s, line.reshape(-1, 2).T, order=1,
                                             mode="nearest").reshape(len(a), -1).min(1)
            pairs.append(far[saddle > (1.0 - min_dip) * val[far[:, 1]]])
    pairs = np.sort(np.concatenate(pairs).reshape(-1, 2), axis=1)
    if not len(pairs):
        return pk
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    keep = np.ones(len(pk), bool)
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    for i, j in zip(starts, ends):
        if keep[pairs[i, 0]]:
            keep[pairs[i:j, 1]] = False
    return pk[keep]


def find_atoms(prob, *, threshold: float = 0.5, min_distance_px=None, refine: str = "centroid",
               image=None, class_names=CLASSES, sigma_px=None, merge_px=None,
               min_area_px=None, min_dip=None) -> AtomList:
    """Atom columns from FCN class probabilities.

    Parameters
    ----------
    prob : (C, H, W) float array
        Class probabilities per pixel (softmax output); channel 0 is background.
    threshold : float
        Pixels whose foreground probability ``f = 1 - prob[0]`` exceeds this belong to atoms.
        A higher threshold does not give more atoms for fixed `min_distance_px` and `min_area_px`
        (the automatic ones depend on the blob sizes, and so on the threshold).
    min_distance_px : float or None
        Smallest distance (px) between two atom peaks (Euclidean; of two closer ones the
        higher is kept, and a blob left without a peak gets its maximum).  None: 0.35 x
        the median equivalent diameter of the thresholded blobs (a bit less than the radius of a
        typical atom, so that a blob of two touching atoms is still split).
    refine : {"centroid", "none", "gaussian"}
        "centroid": f-weighted centroid of the atom's region (sub-pixel, the default);
        "none": integer position of its highest (smoothed) foreground pixel;
        "gaussian": 2D Gaussian fit to `image` around the centroid
        (:func:`atomlens.analysis.refine.refine_gaussian`, window 0.6 x the median
        nearest-neighbour distance); atoms whose fit fails keep the centroid.
    image : (H, W) array, optional
        The micrograph; required for ``refine="gaussian"``.
    class_names : tuple of str
        Names of the C channels.
    sigma_px : float or None
        Gaussian smoothing of f before the peak search.  None: 0.15 x the median blob
        diameter (at least 0.5 px), which makes flat-topped (saturated) blobs single-peaked.
    merge_px : float or None
        Atoms whose centroids are closer than this are merged into one (duplicate
        suppression).  None: 0.5 x the minimum distance.
    min_area_px : int or None
        Atom regions with fewer pixels are dropped as noise.  None:
        ``max(1, ceil(0.1 * median blob area))`` (e.g. 8 px for blobs of 80 px).
    min_dip : float or None
        Two peaks of one blob farther apart than `min_distance_px` are two atoms only when the
        smoothed map between them falls by this fraction of the lower peak; otherwise the
        lower one is a shoulder of the brighter atom.  None: :data:`MIN_DIP` (0.1).

    Returns
    -------
    AtomList
        Positions in px; ``cls`` is the argmax over classes 1..C-1 of the probability summed
        over the atom's region; ``score = sum(f * prob[cls]) / sum(f)`` over the region, the
        foreground-weighted mean probability of the winning class: close to 1 for a
        confident, unambiguous atom, lower for a weak or class-ambiguous blob.

    Raises
    ------
    ValueError
        When `prob` is not (C, H, W) with C >= 2, `refine` is unknown, or ``"gaussian"`` is
        asked without `image`.

    Notes
    -----
    Atoms cut by the image border are kept (their centroid lies inside the image by
    construction).  Everything after thresholding is vectorised with label statistics, so a
    1024 x 1024 map with ~5000 atoms takes a fraction of a second.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:32, 0:32]
    >>> f = np.exp(-((xx - 10) ** 2 + (yy - 12) ** 2) / 8) + np.exp(-((xx - 22) ** 2 + (yy - 21) ** 2) / 8)
    >>> prob = np.stack([1 - f, f, 0 * f, 0 * f])  # background, atom, dopant, vacancy
    >>> atoms = find_atoms(prob)
    >>> np.round(atoms.xy).tolist(), atoms.names()
    ([[10.0, 12.0], [22.0, 21.0]], ['atom', 'atom'])
    """
    prob = np.asarray(prob)
    if prob.ndim != 3 or prob.shape[0] < 2:
        raise ValueError(f"prob must be (C, H, W) with C >= 2, got {prob.shape}")
    if refine not in ("centroid", "none", "gaussian"):
        raise ValueError(f"refine must be 'centroid', 'none' or 'gaussian', not {refine!r}")
    if refine == "gaussian" and image is None:
        raise ValueError("refine='gaussian' needs the image")
    C, H, W = prob.shape
    class_names = tuple(class_names)
    if len(class_names) < C:
        class_names = class_names + tuple(f"class{i}" for i in range(len(class_names), C))
    f = np.clip(1.0 - prob[0].astype(np.float32), 0.0, 1.0)
    mask = f > threshold
    comp, n_comp = cc_label(mask, return_num=True, connectivity=2)
    if n_comp == 0:
        return AtomList.empty(class_names)
    diam = _auto_scale(comp, n_comp)
    md = float(min_distance_px) if min_distance_px is not None else max(1.0, 0.35 * diam)
    sig = float(sigma_px) if sigma_px is not None else max(0.5, 0.15 * diam)
    merge_r = float(merge_px) if merge_px is not None else 0.5 * md
    if min_area_px is None:
        area = np.bincount(comp.ravel(), minlength=n_comp + 1)[1:]
        min_area_px = max(1, math.ceil(0.1 * float(np.median(area))))

    s = ndimage.gaussian_filter(f, sig, mode="nearest") if sig > 0 else f
    # markers: local maxima of the smoothed foreground inside the mask, thinned to the
    # distinct ones (Euclidean distance, dip between them).  A maximum filter of radius md
    # would not do: the flank of a brighter neighbour 1.3 md away (a Si[110] dumbbell at
    # 1 Å = md) lies inside it and is higher than the dimmer column's own peak.
    pk = peak_local_max(s, min_distance=1, footprint=np.ones((3, 3), bool),
                        labels=mask.astype(np.uint8), exclude_border=False)
    pk = one_peak_per_plateau(s, pk, mask)
    pk = _distinct_peaks(pk, s, comp, md, MIN_DIP if min_dip is None else float(min_dip))
    pk_comp = comp[pk[:, 0], pk[:, 1]] if len(pk) else np.zeros(0, np.int64)
    n_per = np.bincount(pk_comp, minlength=n_comp + 1)
    missing = np.nonzero(n_per[1:] == 0)[0] + 1  # blobs without a peak: their maximum
    if len(missing):
        extra = np.array(ndimage.maximum_position(s, comp, missing), dtype=np.int64).reshape(-1, 2)
        pk = np.concatenate([pk.reshape(-1, 2), extra])
        pk_comp = np.concatenate([pk_comp, missing])
        n_per[missing] = 1
    n_pk = len(pk)
    # regions: a blob with one peak is one atom; blobs with several are split by watershed
    lut = np.zeros(n_comp + 1, np.int64)
    single = n_per[pk_comp] == 1
    lut[pk_comp[single]] = np.nonzero(single)[0] + 1
    region = lut[comp]
    multi = n_per > 1
    multi[0] = False
    if multi.any():
        wmask = multi[comp]
        markers = np.zeros((H, W), np.int64)
        sel = np.nonzero(~single)[0]
        markers[pk[sel, 0], pk[sel, 1]] = sel + 1
        rows, cols = np.nonzero(wmask)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        sub = watershed(-s[r0:r1, c0:c1], markers[r0:r1, c0:c1], mask=wmask[r0:r1, c0:c1])
        reg_sub = region[r0:r1, c0:c1]
        reg_sub[wmask[r0:r1, c0:c1]] = sub[wmask[r0:r1, c0:c1]]

    yy, xx = np.indices((H, W), dtype=np.float32)
    flat = region.ravel()
    fw = f.ravel()

    def stats(lab, n):
        wsum = np.bincount(lab, weights=fw, minlength=n + 1)[1:]
        cx = np.bincount(lab, weights=fw * xx.ravel(), minlength=n + 1)[1:] / np.maximum(wsum, 1e-12)
        cy = np.bincount(lab, weights=fw * yy.ravel(), minlength=n + 1)[1:] / np.maximum(wsum, 1e-12)
        return wsum, cx, cy

    wsum, cx, cy = stats(flat, n_pk)
    peak_val = s[pk[:, 0], pk[:, 1]]
    # duplicate suppression: merge atoms closer than merge_r (connected groups of pairs)
    if merge_r > 0 and n_pk > 1:
        pairs = cKDTree(np.stack([cx, cy], 1)).query_pairs(merge_r, output_type="ndarray")
        if len(pairs):
            g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_pk, n_pk))
            n_grp, grp = connected_components(g, directed=False)
            # the group's representative peak: the highest one
            order = np.lexsort((-peak_val, grp))
            first = np.ones(n_pk, bool)
            first[1:] = grp[order][1:] != grp[order][:-1]
            rep = np.empty(n_grp, np.int64)
            rep[grp[order][first]] = order[first]
            pk, peak_val = pk[rep], peak_val[rep]
            glut = np.concatenate([[0], grp + 1])
            flat = glut[flat]
            n_pk = n_grp
            wsum, cx, cy = stats(flat, n_pk)
    area = np.bincount(flat, minlength=n_pk + 1)[1:]
    # class and score
    csum = np.stack([np.bincount(flat, weights=prob[c].ravel(), minlength=n_pk + 1)[1:]
                     for c in range(1, C)])
    k = np.argmax(csum, axis=0) + 1
    fp = np.stack([np.bincount(flat, weights=fw * prob[c].ravel(), minlength=n_pk + 1)[1:]
                   for c in range(1, C)])
    score = np.clip(fp[k - 1, np.arange(n_pk)] / np.maximum(wsum, 1e-12), 0.0, 1.0)
    keep = (area >= min_area_px) & (wsum > 0)
    if refine == "none":
        x, y = pk[:, 1].astype(np.float64), pk[:, 0].astype(np.float64)
    else:
        x, y = cx.copy(), cy.copy()
        # atoms split off a shared blob: the neighbour's tail pulls the plain centroid towards
        # it; use the centroid of the atom's upper part (f above SPLIT_LEVEL x its peak)
        split = np.zeros(n_pk + 1, bool)
        if multi.any():
            split[np.unique(flat[multi[comp].ravel()])] = True
            split[0] = False
        if split.any():
            fpk = ndimage.maximum(f, flat.reshape(H, W), np.arange(1, n_pk + 1))
            lvl = np.concatenate([[np.inf], SPLIT_LEVEL * np.asarray(fpk)])
            lvl[~split] = np.inf
            wt = np.clip(fw - lvl[flat], 0, None)
            ws = np.bincount(flat, weights=wt, minlength=n_pk + 1)[1:]
            sx = np.bincount(flat, weights=wt * xx.ravel(), minlength=n_pk + 1)[1:]
            sy = np.bincount(flat, weights=wt * yy.ravel(), minlength=n_pk + 1)[1:]
            use = split[1:] & (ws > 0)
            x[use], y[use] = sx[use] / ws[use], sy[use] / ws[use]
        # atoms cut by the image border: the centroid of a truncated blob is pulled inwards;
        # fit a symmetric (Gaussian) blob to f over the visible pixels of the region instead
        rim = np.concatenate([flat.reshape(H, W)[[0, -1], :].ravel(), flat.reshape(H, W)[:, [0, -1]].ravel()])
        cut = np.zeros(n_pk + 1, bool)
        cut[rim] = True
        cut = np.nonzero(cut[1:] & keep)[0]
        if len(cut):
            gx, gy, ok = refine_gaussian(f, cx[cut], cy[cut], min(MAX_FIT_WINDOW_PX, max(3.0, 1.5 * diam)),
                                         labels=flat.reshape(H, W), ids=cut + 1)
            inside = ok & (gx >= -0.5) & (gx <= W - 0.5) & (gy >= -0.5) & (gy <= H - 0.5)
            x[cut[inside]], y[cut[inside]] = gx[inside], gy[inside]
    out = AtomList(x[keep], y[keep], k[keep], score[keep], class_names)
    if refine == "gaussian" and len(out):
        from .lattice import nearest_neighbour_distances

        nn = nearest_neighbour_distances(out.xy) if len(out) > 1 else np.array([2 * md + 4])
        win = min(MAX_FIT_WINDOW_PX, max(3.0, 0.6 * float(np.median(nn))))
        # a vacancy has no column to fit: it keeps its centroid
        fit = np.array([n != "vacancy" for n in out.class_names])[out.cls]
        if fit.any():
            gx, gy, _ok = refine_gaussian(image, out.x[fit], out.y[fit], win)
            out.x[fit], out.y[fit] = gx, gy
    return out
