"""Defects checked against the lattice the image shows, and the defect-score filter.

A network trained on simulations calls "vacancies" in the empty gaps between the rows of a
rectangular lattice, on the dark sites of a superstructure and on columns that are plainly
there, and "dopants" on ordinary columns.  This module keeps only the defects that the image
supports:

* a **vacancy** (an atom of class ``vacancy``, or a CAM defect of type ``vacancy``) must sit
  where the local lattice puts a site: the lattice translations measured on the columns around
  it (vectors that carry most of those columns onto other columns) must, applied to the site,
  land on columns in most directions, and on both sides along two directions (the lattice
  continues through the site; one near the image edge); no column may lie closer than
  :data:`VACANCY_MIN_DIST` nearest-neighbour distances; the image there must be clearly darker
  than the columns of the same sublattice around it (:data:`VACANCY_MAX_RATIO`); and the
  vacancies must not themselves form a periodic pattern (a dark superstructure, not missing
  columns).  This applies to every imaging mode.
* a **dopant** in a Z-contrast image (HAADF, ADF) must stand out from the columns of its own
  sublattice around it: robust z-score of its smoothed intensity >= :data:`DOPANT_MIN_Z`.
  Others are called ``atom``.  STM models' dopants are left to their own rule.

:func:`filter_by_score` then drops (vacancies, CAM defects) or demotes (dopants) the defects
scored below a minimum; :data:`DEFAULT_MIN_DEFECT_SCORE` is the default of
``atomlens detect --min-defect-score`` and of the GUI's filter.

Positions are in pixels (x column, y row), as in :class:`~atomlens.analysis.atoms.AtomList`.
"""

from __future__ import annotations

import math

import numpy as np

# scipy is imported inside the functions: `atomlens detect --help` reads the defaults here

__all__ = ["DEFAULT_MIN_DEFECT_SCORE", "DOPANT_MIN_Z", "VACANCY_MAX_RATIO", "VACANCY_MIN_DIST",
           "check_atom_defects", "check_cam_defects", "filter_by_score", "vacancy_sites", "dopant_z",
           "CHECK_NOTE", "SCORE_NOTE"]

#: Defects (atoms of class dopant / vacancy, CAM defects) scored below this are not output by
#: default.  The CAM peaks left on the clean real lattices after the lattice check score 0 to
#: 0.018 (relative to the strongest activation of the image; bench/false_defects.py); the CAM's
#: Si dopant in G-Si-2nm scores 1.0.  Atom-table dopants and vacancies are class probabilities
#: (>= 1/3 where the class won), which this leaves alone.
DEFAULT_MIN_DEFECT_SCORE = 0.05
#: A dopant's intensity must differ from its sublattice neighbours' median by this many robust
#: standard deviations.  Measured with bench/false_defects.py and stem-haadf: the ordinary
#: columns that the network calls dopant in Acquisition_18.emd have |z| <= 2.0; the Si in
#: G-Si-2nm 32; true simulated dopants 2.0-53 (SrTiO3's weakest 2.0-3.2).
DOPANT_MIN_Z = 2.5
#: A vacancy site's intensity above the local background must be below this fraction of its
#: sublattice neighbours' (a column that lost half its atoms: ~0.5; a full vacancy: ~0.1).
VACANCY_MAX_RATIO = 0.75
#: No column may lie closer to a vacancy than this many local nearest-neighbour distances.
VACANCY_MIN_DIST = 0.6
#: A vector is a lattice translation where it carries at least this fraction of the
#: neighbourhood's columns onto another column.
TRANSLATION_SUPPORT = 0.75
#: A vacancy is on the lattice where at least this fraction of the translations from it land
#: on a column (or on another vacancy).
SITE_HITS = 0.5
#: The network's vacancies form a superstructure (dark sites, not missing columns) where one
#: vector carries this share of them, and at least PERIODIC_MIN, onto another one.
PERIODIC_SHARE = 0.6
PERIODIC_MIN = 6
#: Positions within this many nearest-neighbour distances count as the same site.
SITE_TOL = 0.3

CHECK_NOTE = "defect check"
SCORE_NOTE = "defect score"


def _nn_scale(cols: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    if len(cols) < 2:
        return float("nan")
    d, _ = cKDTree(cols).query(cols, k=2)
    return float(np.median(d[:, 1]))


class _Lattice:
    """The columns of one image, with what the checks ask of them."""

    def __init__(self, cols: np.ndarray, shape, image=None):
        from scipy import ndimage
        from scipy.spatial import cKDTree

        self.cols = np.asarray(cols, np.float64).reshape(-1, 2)
        self.shape = tuple(shape[:2])
        self.tree = cKDTree(self.cols) if len(self.cols) else None
        self.nn = _nn_scale(self.cols)
        self.smooth = None
        if image is not None and math.isfinite(self.nn):
            self.smooth = ndimage.gaussian_filter(np.asarray(image, np.float32), max(0.15 * self.nn, 0.7))

    def inside(self, q: np.ndarray, margin: float) -> np.ndarray:
        h, w = self.shape
        return (q[..., 0] >= -margin) & (q[..., 1] >= -margin) & (q[..., 0] <= w - 1 + margin) & \
            (q[..., 1] <= h - 1 + margin)

    def translations(self, p, exclude=None) -> np.ndarray:
        """(k, 2) lattice translations measured on the columns within 3.5 nn of `p` (both
        signs, shortest first, none longer than 2.5 nn), leaving out column `exclude`."""
        d = self.nn
        near = self.tree.query_ball_point(p, 3.5 * d)
        if exclude is not None:
            near = [i for i in near if i != exclude]
        if len(near) < 6:
            return np.zeros((0, 2))
        L = self.cols[near]
        m = min(6, len(L))
        seeds = L[np.argsort(np.hypot(*(L - p).T))[:m]]
        k = min(9, len(self.cols))
        _, idx = self.tree.query(seeds, k=k)
        cand = (self.cols[idx[:, 1:]] - seeds[:, None, :]).reshape(-1, 2)
        ln = np.hypot(*cand.T)
        cand = cand[(ln > 0.5 * d) & (ln < 2.5 * d)]
        if not len(cand):
            return np.zeros((0, 2))
        tol = SITE_TOL * d
        # support: the share of the neighbourhood's columns that each candidate carries onto a column
        dest = L[None, :, :] + cand[:, None, :]  # (c, n, 2)
        inside = self.inside(dest, -0.5 * d) & (np.hypot(*(dest - p).transpose(2, 0, 1)) < 3.5 * d)
        dd, _ = self.tree.query(dest.reshape(-1, 2))
        hit = (dd.reshape(dest.shape[:2]) < tol) & inside
        n_in = inside.sum(1)
        support = np.where(n_in >= 4, hit.sum(1) / np.maximum(n_in, 1), 0.0)
        good = cand[support >= TRANSLATION_SUPPORT]
        out: list = []
        for t in good[np.argsort(np.hypot(*good.T))]:
            for s in (t, -t):
                if all(np.hypot(*(s - u)) > tol for u in out):
                    out.append(s)
        return np.array(out).reshape(-1, 2)

    def intensity(self, q) -> np.ndarray:
        from scipy import ndimage

        q = np.asarray(q, np.float64).reshape(-1, 2)
        return ndimage.map_coordinates(self.smooth, [q[:, 1], q[:, 0]], order=1, mode="nearest")

    def background(self, p) -> float:
        """10th percentile of the smoothed image within 1.5 nn of `p`."""
        r = int(math.ceil(1.5 * self.nn))
        x, y = int(round(p[0])), int(round(p[1]))
        win = self.smooth[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
        return float(np.percentile(win, 10)) if win.size else float("nan")


def vacancy_sites(points, cols, shape, image=None):
    """Which candidate vacancies are missing columns of the lattice the image shows.

    Parameters
    ----------
    points : (n, 2) float, px
        Candidate vacancy positions (x, y).
    cols : (m, 2) float, px
        The columns found (atoms of every class but vacancy).
    shape : (H, W)
        The image's size, px (sites near its edge need fewer translations to land inside).
    image : (H, W) array, optional
        The image as the network saw it (bright columns); without it the intensity test is
        skipped.

    Returns
    -------
    keep : (n,) bool
        True where the candidate is a missing column of the lattice.
    site : (n, 2) float
        The lattice site each candidate stands for (px; its own position where it failed).
    reason : list of str
        ``"ok"``, ``"no lattice"``, ``"off lattice"``, ``"column there"``, ``"not dark"`` or
        ``"superstructure"``.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(np.arange(0, 50, 5.0), np.arange(0, 50, 5.0)), -1).reshape(-1, 2)
    >>> cols = grid[~np.all(grid == 25.0, axis=1)]  # a square lattice of 5 px, (25, 25) missing
    >>> keep, site, reason = vacancy_sites([[25.4, 24.8], [27.5, 27.5], [10.3, 10.0]], cols, (50, 50))
    >>> keep.tolist(), site[0].round(2).tolist(), reason
    ([True, False, False], [25.0, 25.0], ['ok', 'off lattice', 'column there'])
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    n = len(pts)
    keep = np.zeros(n, bool)
    site = pts.copy()
    reason = ["no lattice"] * n
    lat = _Lattice(cols, shape, image)
    if n == 0 or lat.tree is None or len(lat.cols) < 8 or not math.isfinite(lat.nn):
        return keep, site, reason
    d, tol = lat.nn, SITE_TOL * lat.nn
    vtree = cKDTree(pts)
    for i, p in enumerate(pts):
        T = lat.translations(p)
        if len(T) < 4:
            continue
        dest = p + T
        ok_in = lat.inside(dest, -0.3 * d)
        if ok_in.sum() < 3:
            continue
        dc, jc = lat.tree.query(dest)
        dv, _ = vtree.query(dest, k=min(2, n))
        dv = dv[:, -1] if dv.ndim == 2 else np.full(len(dest), np.inf)  # another vacancy, not itself
        on_col = (dc < tol) & ok_in
        hits = on_col | ((dv < tol) & ok_in)
        if hits.sum() < SITE_HITS * ok_in.sum() or not _through(T, hits, tol, ok_in):
            reason[i] = "off lattice"
            continue
        # the site the columns predict: mean of (column - translation) over the hits
        q = np.mean(lat.cols[jc[on_col]] - T[on_col], axis=0) if on_col.any() else p
        site[i] = q
        dmin, _ = lat.tree.query(q)
        if dmin < VACANCY_MIN_DIST * d:
            reason[i] = "column there"
            continue
        if lat.smooth is not None and on_col.any():
            bg = lat.background(q)
            ref = float(np.median(lat.intensity(lat.cols[jc[on_col]])))
            here = float(lat.intensity(q)[0])
            if not (ref - bg > 0 and (here - bg) < VACANCY_MAX_RATIO * (ref - bg)):
                reason[i] = "not dark"
                continue
        keep[i] = True
        reason[i] = "ok"
    # the network's candidates as a set: a periodic pattern of their own is a superstructure
    sup = _periodic(site, np.ones(n, bool), d, lat) & keep
    for i in np.flatnonzero(sup):
        keep[i] = False
        reason[i] = "superstructure"
    return keep, site, reason


def _through(T, hits, tol, inside=None) -> bool:
    """Whether the lattice continues through the site: for two translations t that are not
    parallel, both the site + t and the site - t are columns (for one, near the image edge,
    where fewer than two such pairs lie inside the image)."""
    inside = np.ones(len(T), bool) if inside is None else inside
    both, pairs_in = [], []
    for k, t in enumerate(T):
        j = int(np.argmin(np.hypot(*(T + t).T)))  # the translation -t
        if np.hypot(*(T[j] + t)) >= tol:
            continue
        if inside[k] and inside[j]:
            pairs_in.append(t)
        if hits[k] and hits[j]:
            both.append(t)
    need = 2 if _non_parallel(pairs_in) else 1
    if need == 1:
        return len(both) >= 1
    return _non_parallel(both)


def _non_parallel(vs) -> bool:
    for m, u in enumerate(vs):
        for v in vs[m + 1:]:
            if abs(u[0] * v[1] - u[1] * v[0]) > 0.3 * np.hypot(*u) * np.hypot(*v):
                return True
    return False


def _periodic(site, keep, nn, lat) -> np.ndarray:
    """The kept vacancies that form a periodic pattern of their own (a superstructure): some
    vector carries at least :data:`PERIODIC_SHARE` of them (and at least :data:`PERIODIC_MIN`)
    onto another one.  Random vacancies at a concentration c share a vector about c of the time."""
    from scipy.spatial import cKDTree

    out = np.zeros(len(site), bool)
    idx = np.flatnonzero(keep)
    if len(idx) < 4:
        return out
    v = site[idx]
    tree = cKDTree(v)
    k = min(7, len(v))
    _, nb = tree.query(v, k=k)
    cand = (v[nb[:, 1:]] - v[:, None, :]).reshape(-1, 2)
    tol = SITE_TOL * nn
    for s in cand:
        dest = v + s
        inside = lat.inside(dest, -0.3 * nn)
        if inside.sum() < 4:
            continue
        dd, _ = tree.query(dest)
        hit = (dd < tol) & inside
        if hit.sum() >= max(PERIODIC_MIN, PERIODIC_SHARE * inside.sum()):
            back = (tree.query(v - s)[0] < tol)
            out[idx[hit | back]] = True
    return out


def dopant_z(index, cols, image, shape=None) -> np.ndarray:
    """Robust z-score of the intensity of columns `index` against the columns of the same
    sublattice around each (those the local lattice translations reach; the 6 nearest
    columns where fewer than 3 are found).

    Parameters
    ----------
    index : (k,) int
        Rows of `cols` to score.
    cols : (m, 2) float, px
        The columns found (x, y).
    image : (H, W) array
        The image as the network saw it (bright columns).
    shape : (H, W), optional
        The image's size, px; None (default): ``image.shape``.

    Returns
    -------
    (k,) float
        ``(I - median(I_ref)) / max(1.4826 MAD(I_ref), 0.05 (median(I_ref) - background))``;
        NaN where fewer than 3 reference columns exist.  `I` is the image smoothed over
        0.15 nearest-neighbour distances, the background its 10th percentile within 1.5 of them.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(np.arange(0, 50, 5.0), np.arange(0, 50, 5.0)), -1).reshape(-1, 2)
    >>> yy, xx = np.mgrid[0:50, 0:50]
    >>> image = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2) for x, y in grid)
    >>> image += 2 * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 2)  # a brighter column at (20, 20)
    >>> i, j = [int(np.flatnonzero(np.all(grid == p, axis=1))[0]) for p in ([20, 20], [30, 20])]
    >>> dopant_z([i, j], grid, image).round(1).tolist()
    [44.9, 0.0]
    """
    img = np.asarray(image, np.float32)
    lat = _Lattice(cols, img.shape if shape is None else shape, img)
    z = np.full(len(index), np.nan)
    if lat.tree is None or len(lat.cols) < 4 or lat.smooth is None:
        return z
    tol = SITE_TOL * lat.nn
    for n, i in enumerate(np.asarray(index, int)):
        p = lat.cols[i]
        ref = np.zeros(0, int)
        T = lat.translations(p, exclude=i)
        if len(T):
            dc, jc = lat.tree.query(p + T)
            ref = np.unique(jc[(dc < tol) & (jc != i)])
        if len(ref) < 3:
            _, jn = lat.tree.query(p, k=min(7, len(lat.cols)))
            ref = np.asarray(jn)[1:]
        if len(ref) < 3:
            continue
        vals = lat.intensity(lat.cols[ref])
        med = float(np.median(vals))
        mad = 1.4826 * float(np.median(np.abs(vals - med)))
        bg = lat.background(p)
        spread = max(mad, 0.05 * abs(med - bg), 1e-12)
        z[n] = (float(lat.intensity(p)[0]) - med) / spread
    return z


def _check_vacancies(xy, vi, cols, img, keep, x, y, parts, what: str) -> None:
    """The lattice check of the vacancies at rows `vi` of `xy` (:func:`vacancy_sites` against
    the columns `cols`), in place: those off the lattice get ``keep`` False, the others move
    onto their sites in `x`, `y`; a note part saying how many went is added to `parts`."""
    if not len(vi):
        return
    ok, site, reason = vacancy_sites(xy[vi], cols, img.shape, img)
    keep[vi[~ok]] = False
    x[vi[ok]], y[vi[ok]] = site[ok, 0], site[ok, 1]
    if (~ok).any():
        parts.append(f"{int((~ok).sum())} of {len(vi)} {what} dropped ({_why(reason, ok)})")


def check_atom_defects(atoms, image, *, z_contrast: bool):
    """The atoms with their unsupported defect classes corrected: vacancies off the lattice
    (see :func:`vacancy_sites`) dropped, and, in a Z-contrast image, dopants that do not stand
    out (``|z| < DOPANT_MIN_Z``, :func:`dopant_z`) called ``atom``.

    Returns (atoms, note or None).

    Parameters
    ----------
    atoms : AtomList
        The atoms found (px of `image`), with the model's class names.
    image : (H, W) array or None
        The image as the network saw it (bright columns); None checks nothing.
    z_contrast : bool
        A Z-contrast image (HAADF, ADF): dopants are checked too.

    Returns
    -------
    atoms : AtomList
        `atoms` itself when nothing changes, else a new list: kept vacancies moved onto their
        lattice sites, the rest as they were.
    note : str or None
        Starts with :data:`CHECK_NOTE` and says how many were dropped or called atom, and why.
    """
    names = atoms.class_names
    if not len(atoms) or image is None:
        return atoms, None
    img = np.asarray(image, np.float32)
    vac_c = names.index("vacancy") if "vacancy" in names else -1
    dop_c = names.index("dopant") if "dopant" in names else -1
    atom_c = names.index("atom") if "atom" in names else 1
    is_vac = atoms.cls == vac_c
    col_idx = np.flatnonzero(~is_vac)
    cols = atoms.xy[col_idx]
    parts = []
    keep = np.ones(len(atoms), bool)
    x, y, cls = atoms.x.copy(), atoms.y.copy(), atoms.cls.copy()
    _check_vacancies(atoms.xy, np.flatnonzero(is_vac), cols, img, keep, x, y, parts, "vacancies")
    if z_contrast and dop_c >= 0:
        di = np.flatnonzero(atoms.cls == dop_c)
        if len(di):
            pos = np.searchsorted(col_idx, di)
            z = dopant_z(pos, cols, img)
            weak = np.isfinite(z) & (np.abs(z) < DOPANT_MIN_Z)
            cls[di[weak]] = atom_c
            if weak.any():
                parts.append(f"{int(weak.sum())} of {len(di)} dopants called atom (no brighter or darker than "
                             f"the columns of their sublattice: |z| < {DOPANT_MIN_Z:g})")
    if not parts:
        return atoms, None
    out = type(atoms)(x[keep], y[keep], cls[keep], atoms.score[keep], names)
    return out, f"{CHECK_NOTE}: " + "; ".join(parts)


def check_cam_defects(defects, atoms, image, *, z_contrast: bool):
    """The CAM defects the lattice supports: ``vacancy`` defects on a lattice site with no
    column (moved onto the site), ``dopant`` defects on a column that stands out (Z-contrast
    images; elsewhere, on a column).  Other types are kept.  Returns (defects, note or None).

    Parameters
    ----------
    defects : DefectList or None
        The CAM's defects (px of `image`); None or empty: returned as they are.
    atoms : AtomList
        The atoms found in the same image: their columns (every class but vacancy) are the
        lattice.
    image : (H, W) array or None
        The image as the network saw it (bright columns); None checks nothing.
    z_contrast : bool
        A Z-contrast image: a dopant must also stand out (:func:`dopant_z`).

    Returns
    -------
    defects : DefectList or None
        `defects` itself when nothing changes, else a new list (kept vacancies on their sites).
    note : str or None
        Starts with :data:`CHECK_NOTE`.
    """
    from scipy.spatial import cKDTree

    if defects is None or not len(defects) or image is None:
        return defects, None
    img = np.asarray(image, np.float32)
    names = np.array(defects.names(), dtype=object)
    anames = atoms.class_names
    vac_c = anames.index("vacancy") if "vacancy" in anames else -1
    cols = atoms.xy[atoms.cls != vac_c]
    keep = np.ones(len(defects), bool)
    x, y = defects.x.copy(), defects.y.copy()
    parts = []
    _check_vacancies(defects.xy, np.flatnonzero(names == "vacancy"), cols, img, keep, x, y, parts, "CAM vacancies")
    di = np.flatnonzero(names == "dopant")
    if len(di):
        nn = _nn_scale(cols)
        good = np.zeros(len(di), bool)
        if len(cols) >= 2 and math.isfinite(nn):
            dd, j = cKDTree(cols).query(defects.xy[di])
            on = dd < 0.5 * nn
            good = on.copy()
            if z_contrast and on.any():
                z = dopant_z(j[on], cols, img)
                good[np.flatnonzero(on)] = ~(np.isfinite(z) & (np.abs(z) < DOPANT_MIN_Z))
        keep[di[~good]] = False
        if (~good).any():
            parts.append(f"{int((~good).sum())} of {len(di)} CAM dopants dropped (not on a column that stands out)")
    if not parts:
        return defects, None
    out = type(defects)(x[keep], y[keep], defects.type[keep], defects.score[keep], defects.type_names)
    return out, f"{CHECK_NOTE}: " + "; ".join(parts)


def _why(reason, ok) -> str:
    from collections import Counter

    c = Counter(r for r, k in zip(reason, ok) if not k)
    return ", ".join(f"{n} {r}" for r, n in c.most_common())


def filter_by_score(atoms, defects, min_score: float):
    """Defects scored at least `min_score` (0..1): atoms of class ``vacancy`` below it are
    dropped, atoms of class ``dopant`` below it called ``atom``, CAM defects below it dropped.

    Returns (atoms, defects, n): n is the number of defects (atoms and CAM) taken out.

    Parameters
    ----------
    atoms : AtomList or None
        Atoms with class-probability scores.
    defects : DefectList or None
        CAM defects with relative scores.
    min_score : float
        Smallest score kept, >= 0 (0 keeps everything).

    Returns
    -------
    atoms : AtomList or None
        `atoms` itself when nothing is below, else a new list.
    defects : DefectList or None
        `defects` itself when nothing is below, else a new list.
    n : int
        Vacancies dropped, dopants called atom and CAM defects dropped, together.

    Raises
    ------
    ValueError
        When `min_score` is negative or not a finite number.

    Examples
    --------
    >>> from atomlens.analysis.atoms import AtomList
    >>> atoms = AtomList([1.0, 5.0, 9.0], [1.0, 1.0, 1.0], [1, 2, 3], [0.9, 0.03, 0.02])  # atom, dopant, vacancy
    >>> kept, _defects, n = filter_by_score(atoms, None, 0.05)
    >>> kept.names(), n
    (['atom', 'atom'], 2)
    """
    s = float(min_score)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"the minimum defect score must be a number >= 0, not {min_score!r}")
    n = 0
    if atoms is not None and len(atoms) and s > 0:
        names = atoms.class_names
        low = atoms.score < s
        vac = (atoms.cls == names.index("vacancy")) & low if "vacancy" in names else np.zeros(len(atoms), bool)
        dop = (atoms.cls == names.index("dopant")) & low if "dopant" in names else np.zeros(len(atoms), bool)
        if vac.any() or dop.any():
            cls = atoms.cls.copy()
            cls[dop] = names.index("atom") if "atom" in names else 1
            keep = ~vac
            atoms = type(atoms)(atoms.x[keep], atoms.y[keep], cls[keep], atoms.score[keep], names)
            n += int(vac.sum() + dop.sum())
    if defects is not None and len(defects) and s > 0:
        keep = defects.score >= s
        if not keep.all():
            n += int((~keep).sum())
            defects = defects.subset(keep)
    return atoms, defects, n


def result_above_score(result, min_score: float):
    """`result` (an :class:`~atomlens.analysis.pipeline.AnalysisResult`) showing only the
    defects scored at least `min_score` (:func:`filter_by_score`): `result` itself when none is
    below, else a copy with the filtered ``atoms`` and ``defects`` (what the GUI shows and
    exports); ``info["min_defect_score_shown"]`` records the value."""
    import dataclasses

    if result is None:
        return None
    atoms, defects, n = filter_by_score(result.atoms, result.defects, min_score)
    if n == 0:
        return result
    info = dict(result.info, min_defect_score_shown=float(min_score))
    return dataclasses.replace(result, atoms=atoms, defects=defects, info=info)
