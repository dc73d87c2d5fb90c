"""User annotations of one image: corrected atoms and marked defects, kept in a sidecar file.

The sidecar ``<image>.atomlens.json`` sits next to the image (``a.hdf5`` ->
``a.hdf5.atomlens.json``).  It holds the atoms with their class, score and origin
(``"predicted"`` by a model or ``"user"``-made or -edited), the defects with their type, the
image's sha256, the model that produced the starting point and an edit count.  It is written
atomically and durably (:func:`write_sidecar_text`: a temporary file, flushed to disk, renamed
over the old one, and the folder flushed), so a crash or a power cut while saving leaves the
previous sidecar intact; the temporary files of interrupted saves are removed later
(:func:`clean_temp_files`).

Reading is strict: every field of the file is checked (:meth:`Annotations.from_dict`), and any
bad sidecar (empty, truncated, not text, wrong types, huge or non-finite numbers, wrong nesting)
raises one error type, :class:`SidecarError`, whose message names the file and what is wrong.
Safe saving against other programs and windows (conflicts, damaged files kept aside) is in
:mod:`.annotations_store`.

:class:`Annotations` is a plain data model (no Qt, no torch): each editing method changes the
data, counts the edit and returns what an undo step needs.

Annotations as ground truth
---------------------------
When annotated images are used for training (:func:`export_training_pair`,
:mod:`atomlens.nn.realdata`), *every* atom in the annotations is taken as true, whether the
user created it, edited it or left a predicted atom as it was: the user is expected to have
corrected the whole prediction.  Atoms that are wrong must be deleted, not ignored.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import socket
import time
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npy, atomic_write_text, atomic_write_with, sha256_file, user_data_dir
from ..sim.atoms import CLASSES, DEFECT_TYPES
from .atoms import AtomList

__all__ = ["SIDECAR_FORMAT", "SidecarError", "SidecarMismatch", "Annotations", "sidecar_path", "file_sha256",
           "save_sidecar", "load_sidecar", "read_sidecar", "find_sidecar", "fallback_sidecar_path",
           "write_sidecar_text", "write_sidecar_bytes", "clean_temp_files", "parse_sidecar", "sidecar_text",
           "export_training_pair", "label_map", "holdout_row", "DEFAULT_DEFECT_TYPES", "LABEL_RADIUS_A",
           "LABEL_RADIUS_UNCALIBRATED_PX", "PointList", "PointListError", "parse_point_list", "read_point_list"]

SIDECAR_FORMAT = "atomlens-annotations/1"

#: Radius of the label discs drawn around each atom (as the simulation's "disc" labels).
LABEL_RADIUS_A = 0.5
#: Disc radius (px) for images without a calibration.
LABEL_RADIUS_UNCALIBRATED_PX = 2.0

_DEFECT_COLOURS = {"vacancy": "#ffdc00", "dopant": "#ff5050", "topological": "#b070ff", "adatom": "#40e0a0",
                   "hole": "#ff9030", "edge": "#30a0ff", "grain_boundary": "#ff60c0", "contamination": "#a0a0a0"}
#: The defect types offered by default (the simulation's, without "pristine").
DEFAULT_DEFECT_TYPES = tuple({"name": n, "colour": _DEFECT_COLOURS.get(n, "#ffffff")} for n in DEFECT_TYPES[1:])

SOURCES = ("predicted", "user")
_ATOM_COLUMNS = ("x", "y", "cls", "score", "source", "reviewed")


class SidecarError(ValueError):
    """A sidecar that cannot be used: not readable, not JSON, or not a valid annotation file.

    The one error every bad sidecar gives (a ValueError); the message names the file and what
    is wrong.  ``path`` is the file; ``moved_to`` is where it was kept aside (None when it was
    not moved, see :meth:`~atomlens.analysis.annotations_store.SidecarStore.load`)."""

    def __init__(self, message: str, path=None, moved_to=None, reason: str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.moved_to = None if moved_to is None else Path(moved_to)
        #: what is wrong, without the advice on what to do
        self.reason = message if reason is None else reason


class SidecarMismatch(SidecarError):
    """The sidecar belongs to another image (its sha256 differs from the image's)."""


def sidecar_path(image_path) -> Path:
    """The sidecar of `image_path`: ``<image>.atomlens.json`` in the same folder.

    Parameters
    ----------
    image_path : str or os.PathLike
        The image file (it need not exist).

    Returns
    -------
    pathlib.Path
        The image's full name with ``.atomlens.json`` appended.

    Examples
    --------
    >>> sidecar_path("data/a.hdf5").as_posix()
    'data/a.hdf5.atomlens.json'
    """
    p = Path(image_path)
    return p.with_name(p.name + ".atomlens.json")


#: Hex sha256 of a file's bytes (the one helper in :mod:`atomlens.fileio`).
file_sha256 = sha256_file


def _finite(v, what: str) -> float:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v}")
    return v


# ---------------------------------------------------------------------- validation of sidecar content
#: Largest frame index, image side and edit count accepted in a sidecar.
_MAX_INT = 2 ** 53


def _kind(v) -> str:
    """How a JSON value is called in messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v, what: str, positive: bool = False) -> float:
    if not _is_num(v):
        raise SidecarError(f"{what} must be a number, not {_kind(v)}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise SidecarError(f"{what} must be a finite number, got {v if isinstance(v, float) else 'a huge number'}")
    if positive and not f > 0:
        raise SidecarError(f"{what} must be > 0, got {f}")
    return f


def _whole(v, what: str, lo: int = 0, hi: int = _MAX_INT) -> int:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        shown = v if isinstance(v, float) else _kind(v)
        raise SidecarError(f"{what} must be a whole number, not {shown}")
    if not lo <= v <= hi:
        raise SidecarError(f"{what} must be in {lo}..{hi}, got {v if abs(v) < 10 ** 20 else 'a huge number'}")
    return v


def _text(v, what: str, optional: bool = True, empty: bool = True):
    if v is None and optional:
        return None
    if not isinstance(v, str) or (not empty and not v.strip()):
        raise SidecarError(f"{what} must be {'non-empty ' if not empty else ''}text, not {_kind(v)}")
    return v


def _list(v, what: str) -> list:
    if not isinstance(v, list):
        raise SidecarError(f"{what} must be a list, not {_kind(v)}")
    return v


def _numbers(v, what: str) -> np.ndarray:
    """A JSON list of finite numbers as float64 (fast for long lists; exact messages)."""
    v = _list(v, what)
    if not v:
        return np.zeros(0)
    try:
        a = np.array(v)
        ok = a.ndim == 1 and a.dtype.kind in "iuf" and not any(type(e) is bool for e in v)
    except (ValueError, TypeError, OverflowError):
        ok = False
    if ok:
        a = a.astype(np.float64)
        if np.isfinite(a).all():
            return a
    for i, e in enumerate(v):  # say which entry is wrong
        _number(e, f"{what}[{i}]")
    raise SidecarError(f"{what} must be a list of finite numbers")  # pragma: no cover (caught above)


def _texts(v, what: str, allowed=None) -> list:
    v = _list(v, what)
    for i, e in enumerate(v):
        if not isinstance(e, str):
            raise SidecarError(f"{what}[{i}] must be text, not {_kind(e)}")
    if allowed is not None:
        bad = sorted(set(v) - set(allowed))
        if bad:
            raise SidecarError(f"{what} must be one of {list(allowed)}, got {bad[:5]}")
    return v


def _flags(v, what: str) -> np.ndarray:
    v = _list(v, what)
    for i, e in enumerate(v):
        if not isinstance(e, bool):
            raise SidecarError(f"{what}[{i}] must be true or false, not {_kind(e)}")
    return np.array(v, bool)


@dataclasses.dataclass
class Annotations:
    """Atoms and defects of one image as corrected by the user.

    Attributes
    ----------
    x, y : (n,) float64, px
        Atom positions in the image's own pixels (centre of the top-left pixel at 0, 0).
    cls : (n,) int64
        Index into `class_names` (never 0, the background).
    score : (n,) float64
        Confidence in 0..1 (1 for atoms the user placed).
    source : (n,) str array
        ``"predicted"`` (from a model, untouched) or ``"user"`` (placed, moved or re-classed
        by the user).
    class_names : tuple of str
        Class names; index 0 is ``"background"``.
    defects : list of dict
        ``{"x", "y", "type", "w", "h"}``: centre (px), type name, and the box size (px) or
        None for a point.
    defect_types : list of dict
        ``{"name", "colour"}`` (``"#rrggbb"``) of the types offered for this project.
    image_sha256, image_name : str or None
        The annotated image file's sha256 and name.
    frame : int
        Frame of a stack the annotations belong to.
    shape : (H, W) or None
        Image size in px.
    px_size_nm : float or None
        Calibration (nm/px); None for an uncalibrated image.
    model : dict or None
        ``{"name", "version", "weights_sha256"}`` of the model that gave the starting point.
    mode : str or None
        Imaging mode of the image ("HAADF", "ABF", "STM", ...); training inverts the dark-atom
        modes (ABF, BF) for bright-atom models, as the analysis does.
    edits : int
        Number of edits made so far.
    reviewed : (n,) bool
        True when the user has looked at or confirmed the atom (default: False for predicted
        atoms, True for user atoms).
    deleted_x, deleted_y : (m,) float64, px
        Where the user deleted a predicted atom: places the user says hold no atom (a model
        that finds one there is wrong; :mod:`atomlens.nn.realdata` scores on them).  Undoing
        the deletion takes the place off again.

    Notes
    -----
    For training, all atoms count as ground truth (see the module notes).
    """

    x: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    cls: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    score: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    source: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=object))
    class_names: tuple = CLASSES
    defects: list = dataclasses.field(default_factory=list)
    defect_types: list = dataclasses.field(default_factory=lambda: [dict(d) for d in DEFAULT_DEFECT_TYPES])
    image_sha256: str | None = None
    image_name: str | None = None
    frame: int = 0
    shape: tuple | None = None
    px_size_nm: float | None = None
    model: dict | None = None
    mode: str | None = None
    edits: int = 0
    reviewed: np.ndarray | None = None
    deleted_x: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    deleted_y: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        self.x = np.asarray(self.x, np.float64).reshape(-1).copy()
        self.y = np.asarray(self.y, np.float64).reshape(-1).copy()
        n = len(self.x)
        if len(self.y) != n:
            raise ValueError(f"x and y must have the same length ({n} and {len(self.y)})")
        self.cls = np.broadcast_to(np.asarray(self.cls, np.int64), (n,)).copy()
        self.score = np.broadcast_to(np.asarray(self.score, np.float64), (n,)).copy()
        if np.ndim(self.source):
            src = np.asarray(self.source, dtype=object).reshape(-1)
        else:
            src = np.full(n, self.source, object)
        self.source = np.broadcast_to(src, (n,)).astype(object).copy()
        bad = sorted({str(s) for s in self.source} - set(SOURCES))
        if bad:
            raise ValueError(f"atom source must be 'predicted' or 'user', got {bad}")
        if self.reviewed is None:
            self.reviewed = self.source == "user"
        self.reviewed = np.broadcast_to(np.asarray(self.reviewed, bool), (n,)).copy()
        self.class_names = tuple(str(c) for c in self.class_names)
        if len(self.class_names) < 2:
            raise ValueError("class_names needs the background and at least one atom class")
        if n and (self.cls.min() < 1 or self.cls.max() >= len(self.class_names)):
            raise ValueError(f"atom classes must be indices 1..{len(self.class_names) - 1} into {self.class_names}")
        self.defects = [self._check_defect(d) for d in self.defects]
        self.defect_types = [{"name": str(t["name"]), "colour": str(t.get("colour", "#ffffff"))}
                             for t in self.defect_types]
        if self.shape is not None:
            self.shape = tuple(int(v) for v in self.shape)
        self.px_size_nm = None if self.px_size_nm is None else float(self.px_size_nm)
        self.frame, self.edits = int(self.frame), int(self.edits)
        self.mode = None if self.mode is None else str(self.mode)
        self.deleted_x = np.asarray(self.deleted_x, np.float64).reshape(-1).copy()
        self.deleted_y = np.asarray(self.deleted_y, np.float64).reshape(-1).copy()
        if len(self.deleted_x) != len(self.deleted_y):
            raise ValueError(f"deleted_x and deleted_y must have the same length ({len(self.deleted_x)} and "
                             f"{len(self.deleted_y)})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_result(cls, result, model_card: dict | None = None, image_sha256: str | None = None,
                    image_name: str | None = None) -> "Annotations":
        """Annotations that start from an :class:`~atomlens.analysis.pipeline.AnalysisResult`.

        All atoms are ``"predicted"`` and unreviewed; defects are taken as points.
        `model_card` (the predictor's card) is recorded as the starting point's model.

        Parameters
        ----------
        result : AnalysisResult
            Its atoms (positions px, classes, scores, class names), defects, frame, shape,
            pixel size (nm/px) and ``info["mode"]`` are taken.
        model_card : dict, optional
            Its ``name``, ``version`` and ``weights_sha256`` become :attr:`model`.
        image_sha256 : str, optional
            Hex sha256 of the image file.
        image_name : str, optional
            The image file's name.

        Returns
        -------
        Annotations
            ``edits`` 0; the default defect types, plus any other type the result found
            (colour ``"#ffffff"``).
        """
        a = result.atoms
        defects, types = [], [dict(d) for d in DEFAULT_DEFECT_TYPES]
        if result.defects is not None:
            for x, y, name in zip(result.defects.x, result.defects.y, result.defects.names()):
                defects.append({"x": float(x), "y": float(y), "type": name, "w": None, "h": None})
                if name not in {t["name"] for t in types}:
                    types.append({"name": name, "colour": "#ffffff"})
        model = None
        if model_card:
            model = {k: model_card.get(k) for k in ("name", "version", "weights_sha256")}
        return cls(x=a.x, y=a.y, cls=a.cls, score=a.score, source=np.full(len(a), "predicted", object),
                   class_names=a.class_names, defects=defects, defect_types=types, image_sha256=image_sha256,
                   image_name=image_name, frame=getattr(result, "frame", 0), shape=tuple(result.shape),
                   px_size_nm=result.px_size_nm, model=model, mode=result.info.get("mode"), edits=0)

    def __len__(self) -> int:
        return len(self.x)

    def user_mask(self) -> np.ndarray:
        """(n,) bool: True for atoms the user placed or edited."""
        return self.source == "user"

    def confirmed_mask(self) -> np.ndarray:
        """(n,) bool: the atoms whose label the user vouched for, those placed, moved or
        re-classed by the user (``source == "user"``) or marked reviewed: the only atoms a
        model is scored on (:func:`atomlens.nn.realdata.evaluate_on_annotations`)."""
        return self.user_mask() | np.asarray(self.reviewed, bool)

    def to_atom_list(self) -> AtomList:
        """The atoms as an :class:`AtomList` (a copy)."""
        return AtomList(self.x.copy(), self.y.copy(), self.cls.copy(), self.score.copy(), self.class_names)

    # ------------------------------------------------------------------ atom edits
    def _check_cls(self, cls) -> np.ndarray:
        c = np.asarray(cls, np.int64)
        if c.size and (c.min() < 1 or c.max() >= len(self.class_names)):
            raise ValueError(f"class must be an index 1..{len(self.class_names) - 1} into {self.class_names}, "
                             f"got {cls}")
        return c

    def _check_index(self, indices) -> np.ndarray:
        idx = np.unique(np.asarray(indices, np.int64).reshape(-1))
        if idx.size and (idx[0] < 0 or idx[-1] >= len(self)):
            raise IndexError(f"atom index out of range 0..{len(self) - 1}: {indices}")
        return idx

    def add_atom(self, x: float, y: float, cls: int, score: float = 1.0) -> int:
        """Append a user atom at (`x`, `y`) px of class index `cls`; returns its index.

        Parameters
        ----------
        x, y : float, px
            Position in the image's pixels; finite.
        cls : int
            Class index, 1..len(class_names) - 1.
        score : float, optional
            Stored as given (1 by default: the user vouches for it).

        Returns
        -------
        int
            The new atom's index (the last); it is ``"user"`` and reviewed.  Counts as an
            edit; undo with :meth:`remove_atoms`.

        Raises
        ------
        ValueError
            For a non-finite position or a class out of range.

        Examples
        --------
        >>> ann = Annotations(x=[10.0], y=[20.0], cls=1, score=0.9, source="predicted")
        >>> ann.add_atom(30.0, 40.0, 2)
        1
        >>> ann.source.tolist(), ann.reviewed.tolist()
        (['predicted', 'user'], [False, True])
        """
        x, y = _finite(x, "x"), _finite(y, "y")
        c = int(self._check_cls(cls))
        self.x = np.append(self.x, x)
        self.y = np.append(self.y, y)
        self.cls = np.append(self.cls, np.int64(c))
        self.score = np.append(self.score, float(score))
        self.source = np.append(self.source, np.array(["user"], object))
        self.reviewed = np.append(self.reviewed, True)
        self.edits += 1
        return len(self) - 1

    def remove_atoms(self, indices) -> dict:
        """Remove atoms; returns the removed rows for :meth:`insert_atoms` (undo).

        The places of removed ``"predicted"`` atoms are appended to ``deleted_x`` /
        ``deleted_y`` (the user says there is no atom there).  Counts as an edit.

        Parameters
        ----------
        indices : int or array_like of int
            Atoms to remove; repeats count once.

        Returns
        -------
        dict
            ``index`` (sorted original indices) and the columns ``x, y, cls, score, source,
            reviewed`` of the removed atoms (arrays), and ``n_deleted``, the number of
            places recorded as deleted.

        Raises
        ------
        IndexError
            For an index outside 0..n-1 (nothing is removed then).

        Examples
        --------
        >>> ann = Annotations(x=[10.0, 30.0], y=[20.0, 40.0], cls=1, score=1.0, source=["predicted", "user"])
        >>> rows = ann.remove_atoms([0])
        >>> len(ann), ann.deleted_x.tolist(), rows["n_deleted"]
        (1, [10.0], 1)
        >>> ann.insert_atoms(rows)
        >>> ann.x.tolist(), ann.deleted_x.tolist(), ann.edits
        ([10.0, 30.0], [], 2)
        """
        idx = self._check_index(indices)
        rows = {"index": idx.copy()}
        for k in _ATOM_COLUMNS:
            rows[k] = getattr(self, k)[idx].copy()
        gone = self.source[idx] == "predicted"  # the user says: no atom here
        rows["n_deleted"] = int(gone.sum())
        self.deleted_x = np.concatenate([self.deleted_x, self.x[idx][gone]])
        self.deleted_y = np.concatenate([self.deleted_y, self.y[idx][gone]])
        keep = np.ones(len(self), bool)
        keep[idx] = False
        for k in _ATOM_COLUMNS:
            setattr(self, k, getattr(self, k)[keep])
        self.edits += 1
        return rows

    def insert_atoms(self, rows: dict) -> None:
        """Put back rows removed by :meth:`remove_atoms` at their original indices (undo).

        The last ``rows["n_deleted"]`` deleted places are dropped again, so undo steps must
        come in reverse order of the edits.  Counts as an edit.

        Parameters
        ----------
        rows : dict
            What :meth:`remove_atoms` returned: ``index`` and the columns ``x, y, cls,
            score, source, reviewed``.

        Raises
        ------
        ValueError
            For indices that are repeated or do not fit the table as it was before the
            removal, or a class out of range.
        KeyError
            For a missing column.
        """
        n_del = int(rows.get("n_deleted", 0))
        if n_del:  # the places recorded as deleted are no longer so
            self.deleted_x, self.deleted_y = self.deleted_x[:-n_del], self.deleted_y[:-n_del]
        idx = np.asarray(rows["index"], np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        n_after = len(self) + len(idx)
        if len(idx) and (idx[0] < 0 or idx[-1] >= n_after or np.any(np.diff(idx) == 0)):
            raise ValueError("rows['index'] must be distinct indices of the atoms as they were before removal")
        keep = np.ones(n_after, bool)
        keep[idx] = False
        cols = {}
        for k in _ATOM_COLUMNS:
            cur = getattr(self, k)
            out = np.empty(n_after, cur.dtype)
            out[keep] = cur
            out[idx] = np.asarray(rows[k]).reshape(-1)[order].astype(cur.dtype)
            cols[k] = out
        if len(idx):
            self._check_cls(cols["cls"])
        for k, v in cols.items():
            setattr(self, k, v)
        self.edits += 1

    def move_atom(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Move atom `i` to (`x`, `y`) px (it becomes a reviewed user atom); returns the old
        position.  Undo with ``move_atom(i, *old)`` (the atom stays marked as the user's).

        Parameters
        ----------
        i : int
            Atom index, 0..n-1.
        x, y : float, px
            New position; finite.

        Returns
        -------
        (float, float), px
            The old (x, y).

        Raises
        ------
        IndexError
            For an index out of range.
        ValueError
            For a non-finite position.
        """
        i = int(self._check_index([i])[0])
        old = (float(self.x[i]), float(self.y[i]))
        self.x[i], self.y[i] = _finite(x, "x"), _finite(y, "y")
        self.source[i], self.reviewed[i] = "user", True
        self.edits += 1
        return old

    def _check_positions(self, indices) -> np.ndarray:
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"atom index out of range 0..{len(self) - 1}: {indices}")
        return idx

    def set_class(self, indices, cls) -> np.ndarray:
        """Set the class (index, or one per atom) of atoms; they become reviewed user atoms.

        Returns the old classes (int64 array, in the order of `indices`), so that
        ``set_class(indices, old)`` undoes it.

        Parameters
        ----------
        indices : int or array_like of int, (k,)
            The atoms.
        cls : int or array_like of int, (k,)
            Class index (1..len(class_names) - 1), one for all or one per atom.

        Returns
        -------
        (k,) int64 numpy.ndarray
            The old classes.  Counts as an edit.

        Raises
        ------
        IndexError
            For an index out of range.
        ValueError
            For a class out of range.

        Examples
        --------
        >>> ann = Annotations(x=[1.0, 2.0], y=[1.0, 2.0], cls=[1, 2], score=1.0, source="predicted")
        >>> ann.set_class([0, 1], 3).tolist(), ann.cls.tolist(), ann.source.tolist()
        ([1, 2], [3, 3], ['user', 'user'])
        """
        idx = self._check_positions(indices)
        c = self._check_cls(cls)
        old = self.cls[idx].copy()
        self.cls[idx] = c
        self.source[idx], self.reviewed[idx] = "user", True
        self.edits += 1
        return old

    def set_reviewed(self, indices, value: bool = True) -> np.ndarray:
        """Mark atoms as reviewed (confirmed) or not; returns the old flags (in the order of
        `indices`).

        The atoms' ``source`` is not changed.  Counts as an edit.

        Parameters
        ----------
        indices : int or array_like of int, (k,)
            The atoms.
        value : bool, optional
            The new flag.

        Returns
        -------
        (k,) bool numpy.ndarray
            The old flags.

        Raises
        ------
        IndexError
            For an index out of range.
        """
        idx = self._check_positions(indices)
        old = self.reviewed[idx].copy()
        self.reviewed[idx] = bool(value)
        self.edits += 1
        return old

    def atom_state(self) -> dict:
        """A copy of the atom table and the deleted places (for :meth:`restore_atom_state`:
        the undo of an edit that changes many atoms at once)."""
        out = {k: getattr(self, k).copy() for k in _ATOM_COLUMNS}
        out["deleted_x"], out["deleted_y"] = self.deleted_x.copy(), self.deleted_y.copy()
        return out

    def restore_atom_state(self, state: dict) -> None:
        """Put back a table taken by :meth:`atom_state` (counts as an edit).

        Parameters
        ----------
        state : dict
            ``x, y, cls, score, source, reviewed`` (arrays of one length) and optionally
            ``deleted_x``, ``deleted_y`` (missing: none deleted); copied.

        Raises
        ------
        ValueError
            For columns of different lengths or a class out of range.
        KeyError
            For a missing atom column.
        """
        n = len(state["x"])
        if any(len(state[k]) != n for k in _ATOM_COLUMNS):
            raise ValueError("the atom columns of the state differ in length")
        self._check_cls(state["cls"])
        for k in _ATOM_COLUMNS:
            setattr(self, k, np.asarray(state[k]).copy())
        self.deleted_x = np.asarray(state.get("deleted_x", ()), np.float64).copy()
        self.deleted_y = np.asarray(state.get("deleted_y", ()), np.float64).copy()
        self.edits += 1

    def import_points(self, points: "PointList", default_cls: int = 1, replace: bool = True) -> dict:
        """Take the atoms of a point list (:func:`read_point_list`) as the user's: confirmed
        atoms (``source "user"``, reviewed, score 1 unless the list has scores).

        Parameters
        ----------
        points : PointList
            Positions in this image's pixels.  A list with a class column has its names mapped
            onto `class_names` (an unknown name is a :class:`PointListError`; "background" too).
        default_cls : int
            Class index of the points of a list without classes.
        replace : bool
            True: the imported atoms replace all atoms (the places of the atoms replaced are not
            recorded as deleted: the list replaces the starting point, it does not say where
            there is no atom); False: they are added to them.

        Returns
        -------
        dict
            The state before (:meth:`atom_state`): ``restore_atom_state(old)`` undoes it.

        Raises
        ------
        PointListError
            (a ValueError) A point outside the image (``shape``), an unknown class name or a
            bad `default_cls`; nothing is changed then.
        """
        x, y = np.asarray(points.x, np.float64), np.asarray(points.y, np.float64)
        if self.shape is not None and len(x):
            h, w = self.shape
            out = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
            if out.any():
                i = int(np.argmax(out))
                raise PointListError(
                    f"{points.name}: {int(out.sum())} of {len(x)} points lie outside this {w}x{h} px image (point "
                    f"{i + 1} at x={x[i]:.4g}, y={y[i]:.4g}); is the list for another image, or are its positions "
                    "not in pixels?")
        if points.classes is None:
            try:
                c = int(self._check_cls(default_cls))
            except ValueError as exc:
                raise PointListError(str(exc)) from None
            cls = np.full(len(x), c, np.int64)
        else:
            index = {n: k for k, n in enumerate(self.class_names) if k > 0}
            unknown = sorted(set(points.classes) - set(index))
            if unknown:
                raise PointListError(f"{points.name}: unknown atom class(es) {unknown[:5]}; these annotations "
                                     f"know {list(self.class_names[1:])}")
            cls = np.array([index[n] for n in points.classes], np.int64)
        score = np.ones(len(x)) if points.score is None else np.clip(np.asarray(points.score, np.float64), 0, 1)
        old = self.atom_state()
        keep = slice(0, 0) if replace else slice(None)
        self.x = np.concatenate([self.x[keep], x])
        self.y = np.concatenate([self.y[keep], y])
        self.cls = np.concatenate([self.cls[keep], cls])
        self.score = np.concatenate([self.score[keep], score])
        self.source = np.concatenate([self.source[keep], np.full(len(x), "user", object)])
        self.reviewed = np.concatenate([self.reviewed[keep], np.ones(len(x), bool)])
        self.edits += 1
        return old

    # ------------------------------------------------------------------ defect edits
    @staticmethod
    def _check_defect(d: dict) -> dict:
        try:
            out = {"x": _finite(d["x"], "defect x"), "y": _finite(d["y"], "defect y"), "type": str(d["type"])}
        except KeyError as exc:
            raise ValueError(f"a defect needs 'x', 'y' and 'type'; {exc.args[0]!r} is missing in {d}") from None
        for k in ("w", "h"):
            v = d.get(k)
            out[k] = None if v is None else _finite(v, f"defect {k}")
            if out[k] is not None and out[k] < 0:
                raise ValueError(f"defect box {k} must be >= 0, got {out[k]}")
        return out

    def add_defect(self, d: dict) -> int:
        """Append a defect ``{"x", "y", "type", "w"?, "h"?}`` (px); returns its index.
        A type not yet in `defect_types` is added to it.

        Parameters
        ----------
        d : dict
            ``x``, ``y`` (px, finite), ``type`` (a name), and for a box ``w``, ``h`` (px, >= 0;
            None or missing for a point).  Other keys are dropped.

        Returns
        -------
        int
            Index of the new defect in :attr:`defects` (the last).  Counts as an edit.

        Raises
        ------
        ValueError
            For a missing key, a non-finite number or a negative box size.

        Examples
        --------
        >>> ann = Annotations()
        >>> ann.add_defect({"x": 5, "y": 6, "type": "strain"}), ann.defect_types[-1]
        (0, {'name': 'strain', 'colour': '#ffffff'})
        >>> ann.defects
        [{'x': 5.0, 'y': 6.0, 'type': 'strain', 'w': None, 'h': None}]
        """
        d = self._check_defect(d)
        if d["type"] not in {t["name"] for t in self.defect_types}:
            self.defect_types.append({"name": d["type"], "colour": "#ffffff"})
        self.defects.append(d)
        self.edits += 1
        return len(self.defects) - 1

    def remove_defect(self, i: int) -> dict:
        """Remove defect `i`; returns it (for :meth:`insert_defect`).

        Parameters
        ----------
        i : int
            Index into :attr:`defects` (negative counts from the end, as for a list).

        Returns
        -------
        dict
            The removed defect.  Counts as an edit; its type stays in :attr:`defect_types`.

        Raises
        ------
        IndexError
            For an index out of range.
        """
        d = self.defects.pop(int(i))
        self.edits += 1
        return d

    def insert_defect(self, i: int, d: dict) -> None:
        """Insert defect `d` at index `i` (undo of :meth:`remove_defect`).

        Parameters
        ----------
        i : int
            Position, as for ``list.insert`` (beyond the end appends).
        d : dict
            A defect as :meth:`add_defect` takes it; its type is not added to
            :attr:`defect_types`.

        Raises
        ------
        ValueError
            As :meth:`add_defect`.
        """
        self.defects.insert(int(i), self._check_defect(d))
        self.edits += 1

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """JSON-friendly dict (the sidecar's content, without the "saved" time)."""
        return {
            "format": SIDECAR_FORMAT,
            "image_sha256": self.image_sha256, "image_name": self.image_name, "frame": self.frame,
            "shape": list(self.shape) if self.shape is not None else None, "px_size_nm": self.px_size_nm,
            "model": self.model, "mode": self.mode, "edits": self.edits, "class_names": list(self.class_names),
            "atoms": {"x": self.x.tolist(), "y": self.y.tolist(),
                      "class": [self.class_names[c] for c in self.cls.tolist()],
                      "score": self.score.tolist(), "source": [str(s) for s in self.source],
                      "reviewed": self.reviewed.tolist()},
            "defects": [dict(d) for d in self.defects],
            "defect_types": [dict(t) for t in self.defect_types],
        } | ({"deleted": {"x": self.deleted_x.tolist(), "y": self.deleted_y.tolist()}} if len(self.deleted_x) else {})

    @classmethod
    def from_dict(cls, d) -> "Annotations":
        """Annotations from :meth:`to_dict`'s output.

        Every field is checked (types, lengths, finite numbers, known classes and sources);
        unknown extra fields are ignored.  Raises :class:`SidecarError` (a ValueError) naming
        what is wrong; never another exception for bad content.

        Parameters
        ----------
        d : dict
            Parsed JSON: ``format`` must be :data:`SIDECAR_FORMAT`, ``atoms`` a table with at
            least ``x``, ``y`` (px) and ``class`` (names); ``score`` (default 1), ``source``
            (default ``"predicted"``), ``reviewed``, ``class_names``, ``defects``,
            ``defect_types``, ``model``, ``shape``, ``px_size_nm`` (nm/px), ``frame``,
            ``edits``, ``deleted``, ``image_sha256``, ``image_name`` and ``mode`` are optional.

        Returns
        -------
        Annotations

        Raises
        ------
        SidecarError
            For any bad content.

        Examples
        --------
        >>> ann = Annotations(x=[1.0], y=[2.0], cls=2, score=0.5, source="user")
        >>> back = Annotations.from_dict(ann.to_dict())
        >>> back.x.tolist(), back.cls.tolist(), back.source.tolist()
        ([1.0], [2], ['user'])
        >>> Annotations.from_dict({"format": "other"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        atomlens.analysis.annotations.SidecarError: not an AtomLens annotation file (format 'other', ...)
        """
        try:
            return cls._from_dict(d)
        except SidecarError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise SidecarError(f"the annotation file has a malformed entry ({exc})") from None

    @classmethod
    def _from_dict(cls, d) -> "Annotations":
        if not isinstance(d, dict):
            raise SidecarError(f"annotations must be a JSON object, not {_kind(d)}")
        fmt = d.get("format")
        if fmt != SIDECAR_FORMAT:
            shown = fmt if isinstance(fmt, str) and len(fmt) < 80 else _kind(fmt)
            raise SidecarError(f"not an AtomLens annotation file (format {shown!r}, expected {SIDECAR_FORMAT!r})")
        atoms = d.get("atoms")
        if not isinstance(atoms, dict):
            raise SidecarError(f"the annotation file's 'atoms' must be a table (an object), not {_kind(atoms)}")
        names = d.get("class_names")
        if names is None:
            names = CLASSES
        else:
            names = tuple(_texts(names, "'class_names'"))
            if len(names) < 2 or len(set(names)) != len(names) or not all(n.strip() for n in names):
                raise SidecarError("'class_names' must be distinct non-empty names: the background and at least "
                                   f"one atom class, got {list(names)[:10]}")
        for k in ("x", "y", "class"):
            if k not in atoms:
                raise SidecarError(f"the atoms table lacks the column {k!r}")
        x = _numbers(atoms["x"], "atoms 'x'")
        y = _numbers(atoms["y"], "atoms 'y'")
        n = len(x)
        cnames = _texts(atoms["class"], "atoms 'class'")
        score = _numbers(atoms["score"], "atoms 'score'") if atoms.get("score") is not None else np.ones(n)
        source = (_texts(atoms["source"], "atoms 'source'", SOURCES) if atoms.get("source") is not None
                  else ["predicted"] * n)
        reviewed = atoms.get("reviewed")
        if reviewed is not None:
            reviewed = _flags(reviewed, "atoms 'reviewed'")
        lens = {"x": n, "y": len(y), "class": len(cnames), "score": len(score), "source": len(source)}
        if reviewed is not None:
            lens["reviewed"] = len(reviewed)
        if len(set(lens.values())) != 1:
            raise SidecarError(f"the atoms table's columns differ in length: {lens}")
        unknown = sorted(set(cnames) - set(names[1:]))
        if unknown:
            raise SidecarError(f"unknown atom class(es) {unknown[:5]}; the file's classes are {list(names[1:])}")
        index = {c: k for k, c in enumerate(names)}
        cls_idx = np.array([index[c] for c in cnames], np.int64)
        defects = []
        for i, e in enumerate(_list(d["defects"] if d.get("defects") is not None else [], "'defects'")):
            what = f"defect {i}"
            if not isinstance(e, dict):
                raise SidecarError(f"{what} must be an object with 'x', 'y' and 'type', not {_kind(e)}")
            for k in ("x", "y", "type"):
                if k not in e:
                    raise SidecarError(f"{what} lacks {k!r}")
            out = {"x": _number(e["x"], f"{what} 'x'"), "y": _number(e["y"], f"{what} 'y'"),
                   "type": _text(e["type"], f"{what} 'type'", optional=False, empty=False)}
            for k in ("w", "h"):
                out[k] = None if e.get(k) is None else _number(e[k], f"{what} {k!r}")
                if out[k] is not None and out[k] < 0:
                    raise SidecarError(f"{what} box {k!r} must be >= 0, got {out[k]}")
            defects.append(out)
        types = d.get("defect_types")
        if types is None:
            types = [dict(t) for t in DEFAULT_DEFECT_TYPES]
        else:
            checked = []
            for i, t in enumerate(_list(types, "'defect_types'")):
                if not isinstance(t, dict) or "name" not in t:
                    raise SidecarError(f"'defect_types'[{i}] must be an object {{\"name\", \"colour\"}}, not "
                                       f"{_kind(t)}")
                checked.append({"name": _text(t["name"], f"'defect_types'[{i}] name", optional=False, empty=False),
                                "colour": _text(t.get("colour", "#ffffff"), f"'defect_types'[{i}] colour",
                                                optional=False)})
            types = checked
        model = d.get("model")
        if model is not None:
            if not isinstance(model, dict):
                raise SidecarError(f"'model' must be an object or null, not {_kind(model)}")
            for k, v in model.items():
                if v is not None and not isinstance(v, (str, int, float)):
                    raise SidecarError(f"'model' {k!r} must be text, a number or null, not {_kind(v)}")
        shape = d.get("shape")
        if shape is not None:
            shape = _list(shape, "'shape'")
            if len(shape) != 2:
                raise SidecarError(f"'shape' must be [height, width], got a list of {len(shape)}")
            shape = tuple(_whole(v, "'shape'", 1) for v in shape)
        px = d.get("px_size_nm")
        px = None if px is None else _number(px, "'px_size_nm'", positive=True)
        frame = _whole(d.get("frame") if d.get("frame") is not None else 0, "'frame'")
        edits = _whole(d.get("edits") if d.get("edits") is not None else 0, "'edits'")
        dx = dy = ()
        deleted = d.get("deleted")
        if deleted is not None:
            if not isinstance(deleted, dict):
                raise SidecarError(f"'deleted' must be an object {{\"x\": [...], \"y\": [...]}}, not {_kind(deleted)}")
            dx = _numbers(deleted.get("x", []), "'deleted' x")
            dy = _numbers(deleted.get("y", []), "'deleted' y")
            if len(dx) != len(dy):
                raise SidecarError(f"'deleted' has {len(dx)} x and {len(dy)} y values")
        return cls(x=x, y=y, cls=cls_idx, score=score, source=np.array(source, object), class_names=names,
                   defects=defects, defect_types=types, image_sha256=_text(d.get("image_sha256"), "'image_sha256'"),
                   image_name=_text(d.get("image_name"), "'image_name'"), frame=frame, shape=shape,
                   px_size_nm=px, model=model, mode=_text(d.get("mode"), "'mode'"), edits=edits,
                   reviewed=reviewed, deleted_x=dx, deleted_y=dy)


# ---------------------------------------------------------------------- point lists
class PointListError(ValueError):
    """A point list (CSV of atom positions) that cannot be imported; the message names the
    file, the line and what is wrong."""


@dataclasses.dataclass
class PointList:
    """Atom positions read from a text table (:func:`read_point_list`).

    Attributes
    ----------
    x, y : (n,) float64, px
        Column and row in the image's pixels (centre of the top-left pixel at 0, 0).
    classes : list of str or None
        Class name of each point (a ``class`` column), or None.
    score : (n,) float64 or None
        A ``score`` column, or None.
    name : str
        The file (for messages).
    layout : str
        What was recognised, e.g. ``"header x,y"``, ``"row number, x, y"``.
    """

    x: np.ndarray
    y: np.ndarray
    classes: list | None = None
    score: np.ndarray | None = None
    name: str = "the point list"
    layout: str = ""

    def __len__(self) -> int:
        return len(self.x)


#: Largest point list read (bytes).
POINT_LIST_MAX_BYTES = 64 << 20
_X_NAMES, _Y_NAMES = ("x", "x_px", "x (px)", "x [px]", "x/px"), ("y", "y_px", "y (px)", "y [px]", "y/px")


def _float_or_none(v: str):
    try:
        f = float(v)
    except ValueError:
        return None
    return f


def parse_point_list(text: str, name: str = "the point list") -> PointList:
    """Atom positions in pixels from a text table.

    Understood: comma-, tab-, semicolon- or space-separated columns; a header line naming
    columns ``x`` and ``y`` (any case; also ``x_px``, ``X (px)``), with optional ``class`` and
    ``score`` columns and any others ignored (AtomLens's own ``x,y,class,score,x_nm,y_nm``;
    ImageJ's ``Results.csv`` `` ,X,Y`` with a row-number column); without a header, two
    columns ``x, y`` or three ``row number, x, y`` (the first a running count from 0 or 1).
    Blank lines and lines starting with ``#`` are skipped.

    The delimiter is taken from the first line (the first of comma, tab, semicolon found in
    it, else blanks); the first line is a header when any of its fields is not a number.

    Parameters
    ----------
    text : str
        The table (a leading byte-order mark is dropped).
    name : str, optional
        Names the source in messages (and in :attr:`PointList.name`).

    Returns
    -------
    PointList
        Positions in px; ``classes`` and ``score`` only when the header names those columns;
        ``layout`` says what was recognised.

    Raises
    ------
    PointListError
        (a ValueError) Empty, no x/y columns (or only nm ones), a row with too few fields, a
        value that is not a finite number: the message names `name` and the line.

    Examples
    --------
    >>> p = parse_point_list("x,y,class\\n1,2,atom\\n3.5,4,dopant\\n")
    >>> p.x.tolist(), p.y.tolist(), p.classes, p.layout
    ([1.0, 3.5], [2.0, 4.0], ['atom', 'dopant'], 'header x,y,class')
    >>> parse_point_list("0 1.5 2.5\\n1 3 4\\n").layout
    'row number, x, y'
    """
    import csv
    import io as _io

    rows = []
    for k, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((k, line))
    if not rows:
        raise PointListError(f"{name}: no points (the file is empty)")
    first = rows[0][1]
    delim = next((d for d in (",", "\t", ";") if d in first), None)
    if delim is None:
        table = [(k, line.split()) for k, line in rows]
    else:
        table = [(k, f) for (k, _), f in zip(rows, csv.reader(_io.StringIO("\n".join(r for _, r in rows)),
                                                               delimiter=delim))]
    table = [(k, [c.strip() for c in f]) for k, f in table]
    head = table[0][1]
    classes = score_col = None
    if any(_float_or_none(c) is None for c in head):  # a header
        low = [c.lower().strip('"\'') for c in head]
        ix = next((low.index(n) for n in _X_NAMES if n in low), None)
        iy = next((low.index(n) for n in _Y_NAMES if n in low), None)
        if ix is None or iy is None:
            if "x_nm" in low:
                raise PointListError(f"{name}: the header {','.join(head)!r} has positions in nm only; the import "
                                     "needs pixel columns 'x' and 'y'")
            raise PointListError(f"{name}: line {table[0][0]}: the header {','.join(head)!r} names no 'x' and 'y' "
                                 "columns (pixels)")
        cc = low.index("class") if "class" in low else None
        sc = low.index("score") if "score" in low else None
        body = table[1:]
        layout = "header " + ",".join(h for h in head)
    else:
        body = table
        n = len(head)
        if n == 2:
            ix, iy, layout = 0, 1, "x, y"
        elif n == 3:
            first_col = [_float_or_none(f[0]) if f else None for _, f in body]
            start = first_col[0]
            if start in (0.0, 1.0) and all(v == start + i for i, v in enumerate(first_col)):
                ix, iy, layout = 1, 2, "row number, x, y"
            else:
                raise PointListError(f"{name}: three columns without a header, and the first is not a row number: "
                                     "add a header line naming the 'x' and 'y' columns")
        else:
            raise PointListError(f"{name}: {n} column(s) without a header; expected x, y (or row number, x, y), or "
                                 "a header line naming the 'x' and 'y' columns")
        cc = sc = None
    need = max(i for i in (ix, iy, cc, sc) if i is not None) + 1
    xs, ys, cl, sv = [], [], [], []
    for k, f in body:
        if len(f) < need:
            raise PointListError(f"{name}: line {k} has {len(f)} field(s), {need} expected")
        vals = []
        for i, what in ((ix, "x"), (iy, "y")) + (((sc, "score"),) if sc is not None else ()):
            v = _float_or_none(f[i])
            if v is None or not math.isfinite(v):
                raise PointListError(f"{name}: line {k}: {what} is {f[i]!r}, not a finite number")
            vals.append(v)
        xs.append(vals[0])
        ys.append(vals[1])
        if sc is not None:
            sv.append(vals[2])
        if cc is not None:
            if not f[cc]:
                raise PointListError(f"{name}: line {k}: the class is empty")
            cl.append(f[cc])
    if not xs:
        raise PointListError(f"{name}: no points (only a header)")
    if cc is not None:
        classes = cl
    if sc is not None:
        score_col = np.array(sv, np.float64)
    return PointList(np.array(xs, np.float64), np.array(ys, np.float64), classes, score_col, name, layout)


def read_point_list(path) -> PointList:
    """:func:`parse_point_list` of a file (UTF-8, with or without a byte-order mark; Latin-1
    as a fallback).  Raises :class:`PointListError` also for a file that cannot be read, is
    binary or larger than :data:`POINT_LIST_MAX_BYTES`.

    Parameters
    ----------
    path : str or os.PathLike
        The text table.

    Returns
    -------
    PointList
        As :func:`parse_point_list`, named by the path.

    Raises
    ------
    PointListError
        (a ValueError) For an unreadable, binary (a NUL byte) or too large file, or any
        error of :func:`parse_point_list`.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > POINT_LIST_MAX_BYTES:
            raise PointListError(f"{path}: {size / 2 ** 20:.0f} MB is too large for a point list")
        data = path.read_bytes()
    except OSError as exc:
        raise PointListError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if b"\0" in data:
        raise PointListError(f"{path}: not a text file (a point list is a CSV of x, y positions in pixels)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_point_list(text, str(path))


# ---------------------------------------------------------------------- sidecar files
def holdout_row(height: int, holdout: float) -> int:
    """First row of the strip held out from fine-tuning at the bottom of an annotated image of
    `height` rows (`height` when `holdout` is 0).

    Parameters
    ----------
    height : int, px
        Image height H.
    holdout : float
        Fraction of the rows held out, in [0, 1).

    Returns
    -------
    int
        ``H - round(H * holdout)``: rows from it to H - 1 are held out.

    Raises
    ------
    ValueError
        For `holdout` outside [0, 1).

    Examples
    --------
    >>> holdout_row(512, 0.2), holdout_row(512, 0.0)
    (410, 512)
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout}")
    return int(height - round(height * holdout))


def fallback_sidecar_path(image_path, image_sha256: str) -> Path:
    """Where the sidecar goes when the image's folder cannot be written (a read-only share, a
    DVD, a folder of someone else's): ``<user data>/annotations/<sha256[:16]>-<image>.atomlens.json``.
    Keyed by the image's content, so a copy of the image elsewhere finds its annotations too.

    Parameters
    ----------
    image_path : str or os.PathLike
        The image (only its file name is used).
    image_sha256 : str
        Hex sha256 of the image file.

    Returns
    -------
    pathlib.Path
        In :func:`atomlens.fileio.user_data_dir`; the folder is not created here.

    Raises
    ------
    ValueError
        For an empty or missing sha256.
    """
    if not image_sha256:
        raise ValueError("an image without a sha256 has no fallback annotation file")
    return user_data_dir() / "annotations" / f"{image_sha256[:16]}-{Path(image_path).name}.atomlens.json"


#: Temporary files of a save: ``.<sidecar name>.<random>.<pid>@<host>.tmp`` in the sidecar's
#: folder (``.<name>.<random>.tmp`` from older versions).
_TEMP_TAG = re.compile(r"^(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)$")


def _parse_temp(name: str):
    """(sidecar name, pid or None, host or None) of a save's temporary file name, or None."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:-len(".tmp")].split(".")
    pid = host = None
    m = _TEMP_TAG.match(parts[-1]) if parts else None
    if m:
        pid, host = int(m.group("pid")), m.group("host")
        parts = parts[:-1]
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1]), pid, host


#: Temporary files older than this are removed whoever wrote them (s).
TEMP_MAX_AGE_S = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]


def write_sidecar_text(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically and durably.

    The text goes to a temporary file in the same folder (named after the writing process, so
    :func:`clean_temp_files` can tell an interrupted save's file from one being written), which
    is flushed to disk (fsync) before it is renamed over `path`; the folder is flushed after the
    rename, so that after a crash or power cut `path` holds the old or the new text, whole.

    Parameters
    ----------
    path : str or os.PathLike
        The target file; its folder must exist.
    text : str
        Written as UTF-8, as it is (no newline translation).

    Raises
    ------
    OSError
        If the folder cannot be written (the temporary file is removed then).
    """
    write_sidecar_bytes(path, text.encode("utf-8"))


def write_sidecar_bytes(path, data: bytes) -> None:
    """:func:`write_sidecar_text` for bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The target file; its folder must exist.
    data : bytes
        Written as they are.

    Raises
    ------
    OSError
        If the folder cannot be written.
    """

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    # atomic_write_with flushes the temporary file before the rename and the folder after it
    atomic_write_with(path, write, suffix=f".{os.getpid()}@{_host()}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows: only the age tells
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def clean_temp_files(sidecar, max_age_s: float = TEMP_MAX_AGE_S) -> list[Path]:
    """Remove the temporary files that interrupted saves of annotation files (`sidecar` and the
    others, ``*.atomlens.json``) left in `sidecar`'s folder; returns those removed.

    A temporary file is removed when the process that wrote it (named in the file name) is no
    longer running on this computer, or when it is older than `max_age_s` (files of another
    computer on a shared folder, and of older AtomLens versions).  A save in progress in another
    live process is never touched.

    Parameters
    ----------
    sidecar : str or os.PathLike
        A sidecar path; its folder is scanned (the file itself need not exist).
    max_age_s : float, s, optional
        Age (by modification time) beyond which any such temporary file is removed.

    Returns
    -------
    list of pathlib.Path
        The files removed.  Errors (an unreadable folder, a file that cannot be removed) are
        passed over silently.
    """
    sidecar = Path(sidecar)
    removed = []
    try:
        entries = list(os.scandir(sidecar.parent))
    except OSError:
        return removed
    host, now = _host(), time.time()
    for e in entries:
        parsed = _parse_temp(e.name)
        if not parsed or not (parsed[0] == sidecar.name or parsed[0].endswith(".atomlens.json")):
            continue
        _, pid, pid_host = parsed
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > max_age_s
            dead = pid is not None and pid_host == host and not _pid_alive(pid)
            if (old or dead) and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def save_sidecar(ann: Annotations, image_path) -> Path:
    """Write `ann` to ``<image>.atomlens.json`` atomically; returns the path written.

    The file is written to a temporary file in the same folder, flushed to disk and renamed over
    the old one (:func:`write_sidecar_text`), so an interrupted save leaves the previous sidecar
    as it was.  The JSON gets a ``"saved"`` time (ISO 8601, UTC).  When the image's folder
    cannot be written (OSError: read-only, no permission), the annotations go to
    :func:`fallback_sidecar_path` instead (if they carry the image's sha256), and
    :func:`load_sidecar` finds them there.

    This writes over whatever is there; :class:`~atomlens.analysis.annotations_store.SidecarStore`
    first checks that the file is the one last read or written (another window's or program's
    changes are never written over silently).

    Parameters
    ----------
    ann : Annotations
        What to save.
    image_path : str or os.PathLike
        The annotated image.

    Returns
    -------
    pathlib.Path
        :func:`sidecar_path` of the image, or the fallback path.

    Raises
    ------
    OSError
        When neither place can be written (or the image's folder cannot, and `ann` has no
        ``image_sha256``).
    ValueError
        For a number that is not finite (JSON has no NaN).
    """
    return _write_sidecar(image_path, sidecar_text(ann), ann.image_sha256)[0]


def sidecar_text(ann: Annotations) -> str:
    """The sidecar's JSON text of `ann` (with the "saved" time).

    Parameters
    ----------
    ann : Annotations
        What to write.

    Returns
    -------
    str
        Compact JSON (no spaces) of :meth:`Annotations.to_dict` plus ``"saved"``, the current
        time in UTC as ISO 8601 to the second.

    Raises
    ------
    ValueError
        For a number that is not finite (JSON has no NaN).
    """
    d = ann.to_dict()
    d["saved"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return json.dumps(d, separators=(",", ":"), allow_nan=False)


def _write_sidecar(image_path, text: str, image_sha256: str | None, check=None) -> tuple[Path, str]:
    """Write `text` next to the image, else (OSError) to the fallback; ``check(path)`` is called
    before writing to a path (it raises to refuse).  Returns the path and the text's sha256."""
    import hashlib

    path = sidecar_path(image_path)
    try:
        if check is not None:
            check(path)
        write_sidecar_text(path, text)
    except OSError:
        if not image_sha256:
            raise
        path = fallback_sidecar_path(image_path, image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        if check is not None:
            check(path)
        write_sidecar_text(path, text)
    return path, hashlib.sha256(text.encode("utf-8")).hexdigest()


def find_sidecar(image_path, image_sha256: str | None = None) -> Path | None:
    """The annotation file of `image_path`: next to it, or (given its sha256) the fallback in
    the user data folder; the more recently written when both exist; None when neither does.

    Parameters
    ----------
    image_path : str or os.PathLike
        The image.
    image_sha256 : str, optional
        Its hex sha256; without it the fallback is not looked for.

    Returns
    -------
    pathlib.Path or None
        An existing file (by modification time, the newer of the two), or None.
    """
    found = [p for p in (sidecar_path(image_path),) if p.is_file()]
    if image_sha256:
        fb = fallback_sidecar_path(image_path, image_sha256)
        if fb.is_file():
            found.append(fb)
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def parse_sidecar(data: bytes, path, expected_sha256: str | None = None) -> Annotations:
    """The annotations in a sidecar's bytes `data` (read from `path`, named in messages).

    Raises :class:`SidecarError` for every bad file, :class:`SidecarMismatch` (a SidecarError)
    when `expected_sha256` differs from the image sha256 recorded in the file.  The error's
    ``reason`` says what is wrong, its message adds what to do.

    Parameters
    ----------
    data : bytes
        The file's bytes (UTF-8 JSON).
    path : str or os.PathLike
        Where they were read (for messages and the error's ``path``).
    expected_sha256 : str, optional
        The image's hex sha256; a file that records none is accepted.

    Returns
    -------
    Annotations

    Raises
    ------
    SidecarError
        For empty, non-UTF-8, non-JSON or invalid content (:meth:`Annotations.from_dict`).
    SidecarMismatch
        For a file made for another image.
    """
    what = "rename or delete it to start the annotations again"

    def bad(reason):
        return SidecarError(f"{reason}; {what}", path, reason=reason)

    if not data.strip():
        raise bad(f"{path}: empty annotation file (a save was cut off?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"{path}: not a text file ({exc})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"{path}: damaged annotation file, not valid JSON ({exc.msg} at line {exc.lineno}, "
                  f"column {exc.colno})") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # absurd nesting, huge integer literals
        raise bad(f"{path}: damaged annotation file, not readable JSON ({type(exc).__name__})") from None
    try:
        ann = Annotations.from_dict(d)
    except SidecarError as exc:
        raise bad(f"{path}: {exc}") from None
    except RecursionError:
        raise bad(f"{path}: damaged annotation file, nested too deeply") from None
    if expected_sha256 and ann.image_sha256 and ann.image_sha256 != expected_sha256:
        reason = (f"{path} was made for another version of the image (sha256 {ann.image_sha256[:12]}..., "
                  f"the image now has {expected_sha256[:12]}...)")
        raise SidecarMismatch(f"{reason}; rename or delete it to annotate this image afresh", path, reason=reason)
    return ann


def read_sidecar(path, expected_sha256: str | None = None) -> tuple[Annotations, str]:
    """The annotations in the sidecar file `path` and the sha256 of its bytes.

    Raises :class:`SidecarError` (also for a file that cannot be read: OSError) or
    :class:`SidecarMismatch`, as :func:`parse_sidecar`.

    Parameters
    ----------
    path : str or os.PathLike
        The sidecar file.
    expected_sha256 : str, optional
        The image's hex sha256 (see :func:`parse_sidecar`).

    Returns
    -------
    annotations : Annotations
    sha256 : str
        Hex sha256 of the file's bytes (to tell later whether the file changed).

    Raises
    ------
    SidecarError
        For a file that cannot be read or is not a valid annotation file.
    SidecarMismatch
        For a file made for another image.
    """
    import hashlib

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = f"{path}: the annotation file cannot be read ({exc.strerror or exc})"
        raise SidecarError(reason, path, reason=reason) from None
    return parse_sidecar(data, path, expected_sha256), hashlib.sha256(data).hexdigest()


def load_sidecar(image_path, expected_sha256: str | None = None) -> Annotations | None:
    """The annotations saved for `image_path` (next to it, or with `expected_sha256` in the
    user data folder when its folder was read-only: :func:`find_sidecar`), or None when there
    are none.  Reads only (a bad file is left where it is; see
    :meth:`~atomlens.analysis.annotations_store.SidecarStore.load`).

    Parameters
    ----------
    image_path : str or os.PathLike
        The image.
    expected_sha256 : str, optional
        The image's hex sha256: finds the fallback file, and refuses a sidecar made for
        another image.

    Returns
    -------
    Annotations or None

    Raises
    ------
    SidecarError
        (a ValueError) The sidecar cannot be read, is not valid JSON or not a valid AtomLens
        annotation file: the message names the file, says what is wrong and what to do.
    SidecarMismatch
        (a SidecarError) `expected_sha256` is given and differs from the sha256 recorded in the
        sidecar: the image was changed or the sidecar belongs to another image.
    """
    path = find_sidecar(image_path, expected_sha256)
    if path is None:
        return None
    return read_sidecar(path, expected_sha256)[0]


# ---------------------------------------------------------------------- training data
def label_map(shape, x, y, cls, radius_px: float) -> np.ndarray:
    """A (H, W) uint8 class map with a disc of `radius_px` around each point.

    Like the simulation's ``disc`` labels: the pixels whose centres lie within `radius_px` of
    a point get its class; rarer classes (higher indices: dopant, vacancy) are drawn last and
    win where discs overlap.  Points may lie outside the map (their discs are clipped).

    Parameters
    ----------
    shape : (H, W)
    x, y : (n,) float, px
    cls : (n,) int
        Class index of each point (1..255).
    radius_px : float
    """
    h, w = (int(v) for v in shape)
    out = np.zeros((h, w), np.uint8)
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    c = np.asarray(cls, np.int64).reshape(-1)
    if not len(x):
        return out
    r = float(radius_px)
    R = int(math.ceil(r)) + 1
    oy, ox = (a.ravel() for a in np.mgrid[-R:R + 1, -R:R + 1])
    order = np.argsort(c, kind="stable")
    x, y, c = x[order], y[order], c[order]
    bx, by = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    px = bx[:, None] + ox[None]
    py = by[:, None] + oy[None]
    inside = ((px - x[:, None]) ** 2 + (py - y[:, None]) ** 2 <= r * r) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    cc = np.broadcast_to(c[:, None], px.shape)
    # later assignments win in numpy fancy indexing: classes ascend, so rarer classes win
    out[py[inside], px[inside]] = cc[inside].astype(np.uint8)
    return out


def export_training_pair(image, ann: Annotations, out_dir, stem: str, px_size_nm: float | None = None) -> list[Path]:
    """Write an annotated image as training data; returns the three paths written.

    Files (all written atomically):

    * ``<stem>.image.npy``: the image, float32 (H, W) (``np.load(..., allow_pickle=False)``);
    * ``<stem>.labels.npy``: uint8 (H, W) class map (indices into ``ann.class_names``), a
      disc of radius 0.5 Å around each atom (2 px when the image is uncalibrated), like the
      simulation's ``disc`` labels;
    * ``<stem>.annotations.json``: the annotations (the sidecar's content, with the pixel
      size used).

    Parameters
    ----------
    image : (H, W) array, or (N, H, W) of which frame ``ann.frame`` is taken
    ann : Annotations
        All atoms are taken as true (see the module notes).
    out_dir : path
    stem : str
        File name stem.
    px_size_nm : float or None
        Pixel size (nm/px); default ``ann.px_size_nm``.
    """
    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        if not 0 <= ann.frame < img.shape[0]:
            raise ValueError(f"frame {ann.frame} is not in the stack of {img.shape[0]} frames")
        img = img[ann.frame]
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image (or a stack), got shape {img.shape}")
    if ann.shape is not None and tuple(ann.shape) != img.shape:
        raise ValueError(f"the annotations were made on a {ann.shape[1]}x{ann.shape[0]} image, "
                         f"not this {img.shape[1]}x{img.shape[0]} one")
    if not stem or any(ch in stem for ch in "/\\") or stem in (".", ".."):
        raise ValueError(f"invalid file name stem {stem!r}")
    px_nm = ann.px_size_nm if px_size_nm is None else float(px_size_nm)
    radius = LABEL_RADIUS_UNCALIBRATED_PX if px_nm is None else LABEL_RADIUS_A / (px_nm * 10.0)
    labels = label_map(img.shape, ann.x, ann.y, ann.cls, radius)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.image.npy", out / f"{stem}.labels.npy", out / f"{stem}.annotations.json"]
    d = ann.to_dict()
    d["shape"] = list(img.shape)
    d["px_size_nm"] = px_nm
    d["label_radius_px"] = radius
    atomic_save_npy(paths[0], np.ascontiguousarray(img))
    atomic_save_npy(paths[1], labels)
    atomic_write_text(paths[2], json.dumps(d, indent=1, allow_nan=False))
    return paths
