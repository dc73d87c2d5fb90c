"""User annotations of one image: corrected atoms and marked defects (the data model).

Files: the sidecar (:mod:`.sidecar`: reading, writing, finding), point lists imported as atoms
(:mod:`.point_lists`), training labels and pairs made from annotations (:mod:`.training_labels`),
and safe saving against other programs (:mod:`.annotations_store`).

The sidecar ``<image>.atomlens.json`` sits next to the image (``a.hdf5`` ->
``a.hdf5.atomlens.json``).  It holds the atoms with their class, score and origin
(``"predicted"`` by a model or ``"user"``-made or -edited), the defects with their type, the
image's sha256, the model that produced the starting point and an edit count.  It is written
atomically and durably (:func:`.sidecar.write_sidecar_text`: a temporary file, flushed to disk, renamed
over the old one, and the folder flushed), so a crash or a power cut while saving leaves the
previous sidecar intact; the temporary files of interrupted saves are removed later
(:func:`.sidecar.clean_temp_files`).

Reading is strict: every field of the file is checked (:meth:`Annotations.from_dict`), and any
bad sidecar (empty, truncated, not text, wrong types, huge or non-finite numbers, wrong nesting)
raises one error type, :class:`SidecarError`, whose message names the file and what is wrong.
Safe saving against other programs and windows (conflicts, damaged files kept aside) is in
:mod:`.annotations_store`.

:class:`Annotations` is a plain data model (no Qt, no torch): each editing method changes the
data, counts the edit and returns what an undo step needs.

Annotations as ground truth
---------------------------
When annotated images are used for training (:func:`.training_labels.export_training_pair`,
:mod:`atomlens.nn.realdata`), *every* atom in the annotations is taken as true, whether the
user created it, edited it or left a predicted atom as it was: the user is expected to have
corrected the whole prediction.  Atoms that are wrong must be deleted, not ignored.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..sim.atoms import CLASSES, DEFECT_TYPES
from .atoms import AtomList
from .point_lists import PointList, PointListError

__all__ = ["SIDECAR_FORMAT", "SidecarError", "SidecarMismatch", "Annotations", "DEFAULT_DEFECT_TYPES", "SOURCES"]

SIDECAR_FORMAT = "atomlens-annotations/1"


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
        model is scored on (:func:`atomlens.nn.evaluate.evaluate_on_annotations`)."""
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
