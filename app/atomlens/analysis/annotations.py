"""User annotations of one image: corrected atoms and marked defects, kept in a sidecar file.

The sidecar ``<image>.atomlens.json`` sits next to the image (``a.hdf5`` ->
``a.hdf5.atomlens.json``).  It holds the atoms with their class, score and origin
(``"predicted"`` by a model or ``"user"``-made or -edited), the defects with their type, the
image's sha256, the model that produced the starting point and an edit count.  It is written
atomically (temporary file + rename, :mod:`atomlens.fileio`), so a crash while saving leaves
the previous sidecar intact.

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
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npy, atomic_write_text, sha256_file, user_data_dir
from ..sim.atoms import CLASSES, DEFECT_TYPES
from .atoms import AtomList

__all__ = ["SIDECAR_FORMAT", "SidecarMismatch", "Annotations", "sidecar_path", "file_sha256",
           "save_sidecar", "load_sidecar", "find_sidecar", "fallback_sidecar_path", "export_training_pair", "label_map", "DEFAULT_DEFECT_TYPES",
           "LABEL_RADIUS_A", "LABEL_RADIUS_UNCALIBRATED_PX"]

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


class SidecarMismatch(ValueError):
    """The sidecar belongs to another image (its sha256 differs from the image's)."""


def sidecar_path(image_path) -> Path:
    """The sidecar of `image_path`: ``<image>.atomlens.json`` in the same folder."""
    p = Path(image_path)
    return p.with_name(p.name + ".atomlens.json")


#: Hex sha256 of a file's bytes (the one helper in :mod:`atomlens.fileio`).
file_sha256 = sha256_file


def _finite(v, what: str) -> float:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v}")
    return v


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

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_result(cls, result, model_card: dict | None = None, image_sha256: str | None = None,
                    image_name: str | None = None) -> "Annotations":
        """Annotations that start from an :class:`~atomlens.analysis.pipeline.AnalysisResult`.

        All atoms are ``"predicted"`` and unreviewed; defects are taken as points.
        `model_card` (the predictor's card) is recorded as the starting point's model.
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
        """Append a user atom at (`x`, `y`) px of class index `cls`; returns its index."""
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

        Returns
        -------
        dict
            ``index`` (sorted original indices) and the columns ``x, y, cls, score, source,
            reviewed`` of the removed atoms (arrays).
        """
        idx = self._check_index(indices)
        rows = {"index": idx.copy()}
        for k in _ATOM_COLUMNS:
            rows[k] = getattr(self, k)[idx].copy()
        keep = np.ones(len(self), bool)
        keep[idx] = False
        for k in _ATOM_COLUMNS:
            setattr(self, k, getattr(self, k)[keep])
        self.edits += 1
        return rows

    def insert_atoms(self, rows: dict) -> None:
        """Put back rows removed by :meth:`remove_atoms` at their original indices (undo)."""
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
        position.  Undo with ``move_atom(i, *old)`` (the atom stays marked as the user's)."""
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
        ``set_class(indices, old)`` undoes it."""
        idx = self._check_positions(indices)
        c = self._check_cls(cls)
        old = self.cls[idx].copy()
        self.cls[idx] = c
        self.source[idx], self.reviewed[idx] = "user", True
        self.edits += 1
        return old

    def set_reviewed(self, indices, value: bool = True) -> np.ndarray:
        """Mark atoms as reviewed (confirmed) or not; returns the old flags (in the order of
        `indices`)."""
        idx = self._check_positions(indices)
        old = self.reviewed[idx].copy()
        self.reviewed[idx] = bool(value)
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
        A type not yet in `defect_types` is added to it."""
        d = self._check_defect(d)
        if d["type"] not in {t["name"] for t in self.defect_types}:
            self.defect_types.append({"name": d["type"], "colour": "#ffffff"})
        self.defects.append(d)
        self.edits += 1
        return len(self.defects) - 1

    def remove_defect(self, i: int) -> dict:
        """Remove defect `i`; returns it (for :meth:`insert_defect`)."""
        d = self.defects.pop(int(i))
        self.edits += 1
        return d

    def insert_defect(self, i: int, d: dict) -> None:
        """Insert defect `d` at index `i` (undo of :meth:`remove_defect`)."""
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
        }

    @classmethod
    def from_dict(cls, d) -> "Annotations":
        """Annotations from :meth:`to_dict`'s output; raises ValueError naming what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"annotations must be a JSON object, not {type(d).__name__}")
        fmt = d.get("format")
        if fmt != SIDECAR_FORMAT:
            raise ValueError(f"not an AtomLens annotation file (format {fmt!r}, expected {SIDECAR_FORMAT!r})")
        atoms = d.get("atoms")
        if not isinstance(atoms, dict):
            raise ValueError("the annotation file has no 'atoms' table")
        names = tuple(d.get("class_names") or CLASSES)
        try:
            x = np.asarray(atoms["x"], np.float64)
            y = np.asarray(atoms["y"], np.float64)
            n = len(x)
            cnames = list(atoms["class"])
            score = np.asarray(atoms.get("score", [1.0] * n), np.float64)
            source = list(atoms.get("source", ["predicted"] * n))
            reviewed = atoms.get("reviewed")
        except KeyError as exc:
            raise ValueError(f"the atoms table lacks the column {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the atoms table has a non-numeric position or score ({exc})") from None
        lens = {"x": n, "y": len(y), "class": len(cnames), "score": len(score), "source": len(source)}
        if reviewed is not None:
            lens["reviewed"] = len(reviewed)
        if len(set(lens.values())) != 1:
            raise ValueError(f"the atoms table's columns differ in length: {lens}")
        if n and not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("the atoms table has non-finite positions")
        unknown = sorted(set(cnames) - set(names[1:]))
        if unknown:
            raise ValueError(f"unknown atom class(es) {unknown}; the file's classes are {list(names[1:])}")
        cls_idx = np.array([names.index(c) for c in cnames], np.int64)
        defects = d.get("defects") or []
        if not isinstance(defects, list):
            raise ValueError("'defects' must be a list")
        types = d.get("defect_types")
        if types is None:
            types = [dict(t) for t in DEFAULT_DEFECT_TYPES]
        elif not isinstance(types, list) or not all(isinstance(t, dict) and "name" in t for t in types):
            raise ValueError("'defect_types' must be a list of {\"name\", \"colour\"}")
        model = d.get("model")
        if model is not None and not isinstance(model, dict):
            raise ValueError("'model' must be an object or null")
        try:
            return cls(x=x, y=y, cls=cls_idx, score=score, source=np.array(source, object), class_names=names,
                       defects=list(defects), defect_types=list(types), image_sha256=d.get("image_sha256"),
                       image_name=d.get("image_name"), frame=int(d.get("frame") or 0), shape=d.get("shape"),
                       px_size_nm=d.get("px_size_nm"), model=model, mode=d.get("mode"),
                       edits=int(d.get("edits") or 0),
                       reviewed=None if reviewed is None else np.asarray(reviewed, bool))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"the annotation file has a malformed entry ({exc})") from None


# ---------------------------------------------------------------------- sidecar files
def fallback_sidecar_path(image_path, image_sha256: str) -> Path:
    """Where the sidecar goes when the image's folder cannot be written (a read-only share, a
    DVD, a folder of someone else's): ``<user data>/annotations/<sha256[:16]>-<image>.atomlens.json``.
    Keyed by the image's content, so a copy of the image elsewhere finds its annotations too."""
    if not image_sha256:
        raise ValueError("an image without a sha256 has no fallback annotation file")
    return user_data_dir() / "annotations" / f"{image_sha256[:16]}-{Path(image_path).name}.atomlens.json"


def save_sidecar(ann: Annotations, image_path) -> Path:
    """Write `ann` to ``<image>.atomlens.json`` atomically; returns the path written.

    The file is written to a temporary file in the same folder and renamed over the old one,
    so an interrupted save leaves the previous sidecar as it was.  The JSON gets a
    ``"saved"`` time (ISO 8601, UTC).  About 10 ms for 10^4 atoms.  When the image's folder
    cannot be written (OSError: read-only, no permission), the annotations go to
    :func:`fallback_sidecar_path` instead (if they carry the image's sha256), and
    :func:`load_sidecar` finds them there.
    """
    path = sidecar_path(image_path)
    d = ann.to_dict()
    d["saved"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    text = json.dumps(d, separators=(",", ":"), allow_nan=False)
    try:
        atomic_write_text(path, text)
    except OSError:
        if not ann.image_sha256:
            raise
        path = fallback_sidecar_path(image_path, ann.image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def find_sidecar(image_path, image_sha256: str | None = None) -> Path | None:
    """The annotation file of `image_path`: next to it, or (given its sha256) the fallback in
    the user data folder; the more recently written when both exist; None when neither does."""
    found = [p for p in (sidecar_path(image_path),) if p.is_file()]
    if image_sha256:
        fb = fallback_sidecar_path(image_path, image_sha256)
        if fb.is_file():
            found.append(fb)
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def load_sidecar(image_path, expected_sha256: str | None = None) -> Annotations | None:
    """The annotations saved for `image_path` (next to it, or with `expected_sha256` in the
    user data folder when its folder was read-only: :func:`find_sidecar`), or None when there
    are none.

    Raises
    ------
    ValueError
        The sidecar is not valid JSON or not an AtomLens annotation file (the message names
        the file and says what to do).
    SidecarMismatch
        (a ValueError) `expected_sha256` is given and differs from the sha256 recorded in the
        sidecar: the image was changed or the sidecar belongs to another image.
    """
    path = find_sidecar(image_path, expected_sha256)
    if path is None:
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc}); rename or delete it to start the annotations "
                         "again") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: damaged annotation file, not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}); rename or delete it to start the annotations again") from None
    try:
        ann = Annotations.from_dict(d)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; rename or delete it to start the annotations again") from None
    if expected_sha256 and ann.image_sha256 and ann.image_sha256 != expected_sha256:
        raise SidecarMismatch(f"{path} was made for another version of the image (sha256 {ann.image_sha256[:12]}..., "
                              f"the image now has {expected_sha256[:12]}...); rename or delete it to annotate "
                              f"this image afresh")
    return ann


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
