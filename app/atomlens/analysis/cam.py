"""Defect locations from class activation maps (GAP-CNN CAMs), and the defect table."""

from __future__ import annotations

import dataclasses

import numpy as np
from skimage.feature import peak_local_max

from .atoms import (PointTable, names_to_indices, one_peak_per_plateau)

__all__ = ["DefectList", "defects_from_cam", "DEFECT_TYPES"]

#: Default defect types (as in :data:`atomlens.sim.atoms.DEFECT_TYPES`).
DEFECT_TYPES = ("pristine", "vacancy", "dopant", "topological", "adatom", "hole", "edge",
                "grain_boundary", "contamination")


@dataclasses.dataclass
class DefectList(PointTable):
    """Defect locations.

    Attributes
    ----------
    x, y : (n,) float64, px
        Column and row of each defect (pixel centres at integers).
    type : (n,) int
        Index into `type_names`.
    score : (n,) float64
        Strength in 0..1 (peak activation / the largest activation of all maps).
    type_names : tuple of str
    """

    x: np.ndarray
    y: np.ndarray
    type: np.ndarray
    score: np.ndarray
    type_names: tuple = DEFECT_TYPES
    NAME_COLUMN = "type"
    DEFAULT_NAMES = DEFECT_TYPES

    def __post_init__(self):
        self.type_names = tuple(self.type_names)
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        n = len(self.x)
        t = np.asarray(self.type).reshape(-1) if n else np.zeros(0, np.int64)
        if t.dtype.kind in "UOS":  # names given: turn them into indices
            t, self.type_names = names_to_indices(t.tolist(), self.type_names)
        self.type = np.broadcast_to(t.astype(np.int64), (n,)).copy()
        self.score = np.broadcast_to(np.asarray(self.score, dtype=np.float64), (n,)).copy()

    def names(self) -> list:
        """Type name of each defect."""
        return [self.type_names[int(t)] for t in self.type]

    def subset(self, index) -> "DefectList":
        """Defects selected by a boolean mask or an index array (a copy).

        Parameters
        ----------
        index : (n,) bool array, int array or slice
            Which defects, as numpy indexing takes it.

        Returns
        -------
        DefectList
            The selected defects with the same type names.

        Examples
        --------
        >>> d = DefectList([1.0, 2.0], [3.0, 4.0], ["vacancy", "hole"], [0.5, 0.7])
        >>> d.subset(d.score > 0.6).names()
        ['hole']
        """
        return DefectList(self.x[index], self.y[index], self.type[index], self.score[index], self.type_names)

    def to_dict(self) -> dict:
        """Plain lists (JSON-friendly): x, y (px), type (names), score, type_names."""
        return {"x": self.x.tolist(), "y": self.y.tolist(), "type": self.names(),
                "score": self.score.tolist(), "type_names": list(self.type_names)}


def defects_from_cam(cam, type_names=DEFECT_TYPES, *, threshold_rel: float = 0.5,
                     min_distance_px: int = 5, exclude=("pristine",)) -> DefectList:
    """Defect positions from class activation maps.

    Parameters
    ----------
    cam : (K, H, W) array
        Non-negative class activation maps, one per defect type, already upsampled to the
        image (negative values are clipped to 0).
    type_names : sequence of K str
        Name of each map.
    threshold_rel : float
        A peak of map k counts when it exceeds ``threshold_rel * max(cam[k])``.
    min_distance_px : int
        Smallest distance between two peaks of one map (px).
    exclude : tuple of str
        Types that are not defects (skipped).

    Returns
    -------
    DefectList
        One entry per peak, positions in px (integer peak pixel), score = peak value / the
        largest value over all maps (0..1), sorted by score (highest first).

    Raises
    ------
    ValueError
        When `cam` is not 3-D or the number of names differs from the number of maps.

    Examples
    --------
    >>> import numpy as np
    >>> cam = np.zeros((3, 20, 20))
    >>> cam[1, 5, 7], cam[2, 14, 3], cam[0, 10, 10] = 2.0, 1.0, 4.0
    >>> d = defects_from_cam(cam, ("pristine", "vacancy", "dopant"))
    >>> d.names(), d.x.tolist(), d.y.tolist(), d.score.tolist()  # scores relative to the pristine map's 4
    (['vacancy', 'dopant'], [7.0, 3.0], [5.0, 14.0], [0.5, 0.25])
    """
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0.0, None)
    if cam.ndim != 3:
        raise ValueError(f"cam must be (K, H, W), got {cam.shape}")
    type_names = tuple(type_names)
    if len(type_names) != cam.shape[0]:
        raise ValueError(f"{cam.shape[0]} maps but {len(type_names)} type names")
    gmax = float(cam.max()) if cam.size else 0.0
    xs, ys, ts, ss = [], [], [], []
    if gmax > 0:
        for k, name in enumerate(type_names):
            if name in exclude:
                continue
            m = float(cam[k].max())
            if m <= 0:
                continue
            pk = peak_local_max(cam[k], min_distance=max(1, int(min_distance_px)),
                                threshold_abs=threshold_rel * m, exclude_border=False)
            pk = pk[cam[k][pk[:, 0], pk[:, 1]] > threshold_rel * m] if threshold_rel > 0 else pk
            pk = one_peak_per_plateau(cam[k], pk)  # a flat top is one defect, not one per corner
            xs.append(pk[:, 1].astype(np.float64))
            ys.append(pk[:, 0].astype(np.float64))
            ts.append(np.full(len(pk), k, np.int64))
            ss.append(cam[k][pk[:, 0], pk[:, 1]] / gmax)
    if not xs:
        return DefectList(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), type_names)
    x, y, t, s = (np.concatenate(v) for v in (xs, ys, ts, ss))
    o = np.argsort(-s, kind="stable")
    return DefectList(x[o], y[o], t[o], s[o], type_names)


#: Defect types that sit on one atom column, and the atom class that marks that column.
SNAP_CLASSES = {"dopant": "dopant", "vacancy": "vacancy"}
#: Defect types that are the brightest column around them (a heavy atom on a light lattice),
#: whatever class the atom finder gave it.
SNAP_BRIGHTEST = ("adatom",)
#: Defect types made of a few rearranged columns (a Stone-Wales bond rotation): pinned to the
#: nearest column of any class, one of the defect's own in most cases.
SNAP_NEAREST = ("topological",)


def snap_defects(defects: DefectList, atoms, max_dist_px: float, image=None) -> DefectList:
    """Move point defects from their class-activation peak onto their atom column.

    A CAM is computed at 1/8 of the input resolution, so its peak lies within about one
    cell (1-2 Å) of the defect.  A ``dopant`` or ``vacancy`` defect with an atom of the same
    class within `max_dist_px` takes that atom's sub-pixel position (the nearest one).  An
    ``adatom`` takes the position of the brightest atom within `max_dist_px` (measured on
    `image`, lightly smoothed; needs `image`), and a ``topological`` defect that of the nearest
    atom of any class.  Other defects (holes, edges, grain boundaries: extended, with no one
    column), and those with no such atom nearby, are left where they are.

    Parameters
    ----------
    defects : DefectList
    atoms : AtomList
        Atoms of the same image (px).
    max_dist_px : float
        Largest move (px); about 3 Å is a CAM cell and a half.
    image : (H, W) array, optional
        The image the atoms were found in (bright atoms), for ``adatom`` defects.

    Returns
    -------
    DefectList
        A new list with the moved positions (px), same order, types and scores; `defects`
        itself when it or `atoms` is empty.
    """
    if len(defects) == 0 or len(atoms) == 0:
        return defects
    from scipy.spatial import cKDTree

    x, y = defects.x.copy(), defects.y.copy()
    anames = atoms.class_names
    bright = None
    if image is not None and any(n in SNAP_BRIGHTEST for n in defects.names()):
        from scipy import ndimage

        img = ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
        iy = np.clip(np.round(atoms.y).astype(int), 0, img.shape[0] - 1)
        ix = np.clip(np.round(atoms.x).astype(int), 0, img.shape[1] - 1)
        bright = img[iy, ix]
        tree = cKDTree(atoms.xy)
    for k, dname in enumerate(defects.names()):
        if dname in SNAP_BRIGHTEST and bright is not None:
            near = tree.query_ball_point([x[k], y[k]], max_dist_px)
            if near:
                j = near[int(np.argmax(bright[near]))]
                x[k], y[k] = atoms.x[j], atoms.y[j]
            continue
        if dname in SNAP_NEAREST:
            sel = np.arange(len(atoms))
        else:
            cname = SNAP_CLASSES.get(dname)
            if cname is None or cname not in anames:
                continue
            sel = np.flatnonzero(atoms.cls == anames.index(cname))
        if len(sel) == 0:
            continue
        d, j = cKDTree(atoms.xy[sel]).query([x[k], y[k]])
        if d <= max_dist_px:
            x[k], y[k] = atoms.x[sel[j]], atoms.y[sel[j]]
    return DefectList(x, y, defects.type, defects.score, defects.type_names)
