"""Saving one image's annotations safely: no annotation lost, ever.

:class:`SidecarStore` reads and writes one image's sidecar (``<image>.atomlens.json``, or its
fallback in the user data folder, :mod:`.annotations`) and keeps three promises:

* **Another writer is never overwritten silently.**  The store remembers the sha256 of the bytes
  it last read or wrote at each path and checks it before every write: when the file was changed
  (another AtomLens window or program saved it, or it was deleted), :meth:`SidecarStore.save`
  raises :class:`SidecarConflict` and writes nothing.  :meth:`SidecarStore.resolve` then does
  what the user chose: ``"reload"`` theirs (ours kept as ``<image>.atomlens.mine-<time>.json``),
  ``"keep"`` ours (theirs kept as ``<image>.atomlens.theirs-<time>.json``) or ``"merge"`` the
  two (:func:`merge_annotations`).
* **A file that could not be read is never written over.**  :meth:`SidecarStore.load` moves a
  damaged sidecar (or one made for another version of the image) aside, as
  ``<image>.atomlens.damaged-<time>.json`` (``other-image-<time>``), and the error it raises says
  where (``SidecarError.moved_to``).  When it cannot be moved (a read-only folder), the store
  never writes to that path: the annotations go to the fallback in the user data folder.
* **Saves are atomic and durable** and the temporary files of interrupted saves are removed
  (:func:`~atomlens.analysis.sidecar.write_sidecar_text`,
  :func:`~atomlens.analysis.sidecar.clean_temp_files`, run by :meth:`SidecarStore.load`).

The check and the write are two steps, so two writers saving in the same few milliseconds can
still race; every other interleaving is detected.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..fileio import sha256_file
from .annotations import Annotations, SidecarError, SidecarMismatch
from .sidecar import (_write_sidecar, clean_temp_files, fallback_sidecar_path, find_sidecar, parse_sidecar, sidecar_path, sidecar_text, write_sidecar_bytes, write_sidecar_text)

__all__ = ["CHOICES", "SidecarConflict", "SidecarStore", "aside_path", "merge_annotations"]

#: What :meth:`SidecarStore.resolve` can do about a conflict.
CHOICES = ("reload", "keep", "merge")


class SidecarConflict(Exception):
    """The sidecar was changed (or deleted) by someone else since this store last read or wrote
    it; nothing was written.  ``path`` is the file."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = Path(path)


class _Unwritable(OSError):
    """A path the store must not write (a file there could not be read nor moved aside)."""


def aside_path(path, label: str) -> Path:
    """A free name beside the sidecar `path` that says what it holds:
    ``<image>.atomlens.<label>-<YYYYmmdd-HHMMSS>.json`` (``-2``, ``-3``... when taken).  It does
    not end in ``.atomlens.json``, so it is never taken for the image's sidecar.

    Parameters
    ----------
    path : str or Path
        The sidecar (``<image>.atomlens.json``); the name is built from it, nothing is created.
    label : str
        What the file holds: ``"damaged"``, ``"other-image"``, ``"mine"``, ``"theirs"``...

    Returns
    -------
    Path
        In the sidecar's folder, stamped with the local time to the second.

    Raises
    ------
    SidecarError
        When the 999 names of this second are all taken.
    """
    path = Path(path)
    stem = path.name.removesuffix(".json")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        p = path.with_name(f"{stem}.{label}-{stamp}{'' if k == 1 else f'-{k}'}.json")
        if not os.path.lexists(p):
            return p
    raise SidecarError(f"no free name beside {path}", path)


def _disk_sha(path) -> str | None:
    """sha256 of the file's bytes; None when there is no file (OSError when it cannot be read)."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        return None


def _copy(ann: Annotations) -> Annotations:
    return dataclasses.replace(ann, model=None if ann.model is None else dict(ann.model))


class SidecarStore:
    """Reads and writes the annotations of the image at `image_path` (sha256 `image_sha256`,
    which also keys the fallback in the user data folder), never writing over a file it has not
    read (see the module notes).

    Attributes
    ----------
    path : Path or None
        The file last read or written.
    base : Annotations or None
        The annotations as last read or written (the base of a merge).
    """

    def __init__(self, image_path, image_sha256: str | None = None):
        self.image_path = Path(image_path)
        self.image_sha256 = image_sha256
        self.path: Path | None = None
        self.base: Annotations | None = None
        self._known: dict[str, str | None] = {}  # path -> sha256 of what is there (None: nothing)
        self._unwritable: set[str] = set()

    def _candidates(self) -> list[Path]:
        out = [sidecar_path(self.image_path)]
        if self.image_sha256:
            out.append(fallback_sidecar_path(self.image_path, self.image_sha256))
        return out

    # ------------------------------------------------------------------ reading
    def load(self) -> Annotations | None:
        """The saved annotations (the newer of the sidecar and its fallback), or None.

        Removes the temporary files of interrupted saves beside them.  A file that cannot be used
        (damaged, or made for another version of the image) is moved aside and
        :class:`SidecarError` (:class:`SidecarMismatch`) is raised, its ``moved_to`` saying where
        (None when it could not be moved: the store then never writes to that path)."""
        for p in self._candidates():
            clean_temp_files(p)
            try:
                self._known[str(p)] = _disk_sha(p)
            except OSError:
                self._unwritable.add(str(p))
        path = find_sidecar(self.image_path, self.image_sha256)
        if path is None:
            return None
        try:
            data = path.read_bytes()
            ann = parse_sidecar(data, path, self.image_sha256)
        except (SidecarError, OSError) as exc:
            raise self._set_aside(path, exc) from None
        self._known[str(path)] = hashlib.sha256(data).hexdigest()
        self.path, self.base = path, _copy(ann)
        return ann

    def _set_aside(self, path: Path, exc) -> SidecarError:
        """Move the unusable file `path` aside; the error to raise."""
        mismatch = isinstance(exc, SidecarMismatch)
        reason = exc.reason if isinstance(exc, SidecarError) else f"{path}: cannot be read ({exc})"
        try:
            moved = aside_path(path, "other-image" if mismatch else "damaged")
            os.rename(path, moved)
        except (OSError, SidecarError) as err:
            self._unwritable.add(str(path))
            where = (f"the annotations will be saved in {fallback_sidecar_path(self.image_path, self.image_sha256)}"
                     if self.image_sha256 else "the annotations cannot be saved until it is moved")
            msg = (f"{reason}. It could not be moved aside ({getattr(err, 'strerror', None) or err}) and will not be "
                   f"written over: {where}.")
            return (SidecarMismatch if mismatch else SidecarError)(msg, path, None, reason)
        self._known[str(path)] = None
        msg = (f"{reason}. The file was kept as {moved.name} (in {moved.parent}) and is no longer used; "
               f"the annotations start afresh.")
        return (SidecarMismatch if mismatch else SidecarError)(msg, path, moved, reason)

    # ------------------------------------------------------------------ writing
    def _check(self, path: Path) -> None:
        key = str(path)
        if key in self._unwritable:
            raise _Unwritable(f"{path} could not be read and is not written over")
        try:
            now = _disk_sha(path)
        except OSError as exc:
            self._unwritable.add(key)
            raise _Unwritable(f"{path} cannot be read ({exc}) and is not written over") from None
        if now != self._known.get(key):
            what = "deleted" if now is None else "changed"
            raise SidecarConflict(f"{path} was {what} by another AtomLens window or program since this window "
                                  f"last read or saved it; it was not written over.", path)

    def save(self, ann: Annotations) -> Path:
        """Write `ann` (atomically, durably); returns the path written.

        Raises :class:`SidecarConflict` (writing nothing) when the file there is not the one this
        store last read or wrote; OSError when nowhere can be written.

        Parameters
        ----------
        ann : Annotations
            The image's annotations; its ``image_sha256`` (else the store's) keys the fallback in
            the user data folder, used when the sidecar beside the image cannot be written.

        Returns
        -------
        Path
            The sidecar or its fallback; it becomes ``path``, and `ann` (a copy) ``base``.

        Raises
        ------
        SidecarConflict
            As above.
        OSError
            As above.
        """
        sha = ann.image_sha256 or self.image_sha256
        path, digest = _write_sidecar(self.image_path, sidecar_text(ann), sha, self._check)
        self._known[str(path)] = digest
        self.path, self.base = path, _copy(ann)
        return path

    # ------------------------------------------------------------------ conflicts
    def resolve(self, ann: Annotations, choice: str, path=None) -> tuple[Annotations, Path | None]:
        """Settle a :class:`SidecarConflict` at `path` (default: the sidecar) as the user chose.

        ``"reload"``: theirs become the annotations; `ann` is written beside them
        (``...atomlens.mine-<time>.json``).  ``"keep"``: `ann` is saved; theirs are kept beside it
        (``...atomlens.theirs-<time>.json``).  ``"merge"``: :func:`merge_annotations` of the last
        saved, `ann` and theirs is saved.

        Returns the annotations to go on with and the file where the other version was kept
        (None for a merge, or when there was nothing to keep).  Raises :class:`SidecarError`
        when theirs cannot be read (or are of another frame) for "reload" and "merge" ("keep" is
        always possible), :class:`SidecarConflict` when the file changes again meanwhile.

        Parameters
        ----------
        ann : Annotations
            Ours: the annotations whose save raised the conflict.
        choice : {"reload", "keep", "merge"}
            What the user chose (:data:`CHOICES`).
        path : str or Path, optional
            The file in conflict (:attr:`SidecarConflict.path`); None: the sidecar beside the
            image.

        Returns
        -------
        annotations : Annotations
            Theirs (``"reload"``), `ann` (``"keep"``) or the merge.
        kept : Path or None
            Where the other version was written.

        Raises
        ------
        ValueError
            For a `choice` not in :data:`CHOICES`.
        SidecarError
            As above, also when the file exists but cannot be read.
        SidecarConflict
            As above.
        """
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        path = Path(path) if path is not None else sidecar_path(self.image_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise SidecarError(f"{path}: cannot be read ({exc.strerror or exc})", path) from None
        theirs = error = None
        if data is not None:
            try:
                theirs = parse_sidecar(data, path, self.image_sha256)
                if theirs.frame != ann.frame:
                    raise SidecarError(f"{path} now holds annotations of frame {theirs.frame}, not {ann.frame}", path)
            except SidecarError as exc:
                error = exc
        if choice != "keep" and theirs is None:
            raise error or SidecarError(f"{path} was deleted: there is nothing to {choice}", path)
        digest = None if data is None else hashlib.sha256(data).hexdigest()
        if choice == "keep":
            kept = None
            if data is not None:
                kept = aside_path(path, "theirs")
                write_sidecar_bytes(kept, data)
            self._known[str(path)] = digest
            self.save(ann)
            return ann, kept
        if choice == "reload":
            kept = aside_path(path, "mine")
            write_sidecar_text(kept, sidecar_text(ann))
            self._known[str(path)] = digest
            self.path, self.base = path, _copy(theirs)
            return theirs, kept
        merged = merge_annotations(self.base, ann, theirs)
        self._known[str(path)] = digest
        self.save(merged)
        return merged, None


# ---------------------------------------------------------------------- merging
def _atom_rows(a: Annotations) -> list[tuple]:
    names = [a.class_names[c] for c in a.cls.tolist()]
    return list(zip(a.x.tolist(), a.y.tolist(), names, a.score.tolist(), [str(s) for s in a.source],
                    a.reviewed.tolist()))


def _defect_rows(a: Annotations) -> list[tuple]:
    return [(d["x"], d["y"], d["type"], d["w"], d["h"]) for d in a.defects]


def _merge_rows(base: list, mine: list, theirs: list) -> list:
    """Mine, then theirs' rows that mine lack, less the rows mine removed since `base`
    (multisets: each row as many times as the rule gives)."""
    b, m, t = Counter(base), Counter(mine), Counter(theirs)
    want = {k: max(m[k], t[k] - max(0, b[k] - m[k])) for k in set(m) | set(t)}
    out, seen = [], Counter()
    for row in mine + theirs:
        if seen[row] < want[row]:
            seen[row] += 1
            out.append(row)
    return out


def merge_annotations(base: Annotations | None, mine: Annotations, theirs: Annotations) -> Annotations:
    """Merge two versions of one image's annotations, losing no one's work.

    Every atom and defect of either version is kept, except those `mine` removed (deleted, moved
    or re-classed: an edit removes the old row and adds the new) since `base`, the version last
    saved by mine (None: nothing is removed).  Theirs' removals are not applied: without their
    starting point an atom they lack may be one they never had.  An atom both edited differently
    appears in both versions (delete the one not wanted).  Classes and defect types are the
    union; the rest (image, model, calibration) are mine's.

    Parameters
    ----------
    base : Annotations or None
        The version this window last read or saved.
    mine : Annotations
        This window's version.
    theirs : Annotations
        The version found in the file; of the same frame as `mine`.

    Returns
    -------
    Annotations
        A new object: mine's atoms, then theirs' that mine lack (positions in px as stored), the
        defects likewise, ``edits`` one more than the larger of the two, the deleted places of
        both.

    Raises
    ------
    ValueError
        When `mine` and `theirs` are of different frames.
    """
    if theirs.frame != mine.frame:
        raise ValueError(f"cannot merge annotations of frames {mine.frame} and {theirs.frame}")
    names = list(mine.class_names) + [c for c in theirs.class_names if c not in mine.class_names]
    rows = _merge_rows(_atom_rows(base) if base is not None else [], _atom_rows(mine), _atom_rows(theirs))
    index = {c: k for k, c in enumerate(names)}
    cols = list(zip(*rows)) if rows else [[]] * 6
    defects = _merge_rows(_defect_rows(base) if base is not None else [], _defect_rows(mine), _defect_rows(theirs))
    types = [dict(t) for t in mine.defect_types]
    have = {t["name"] for t in types}
    types += [dict(t) for t in theirs.defect_types if t["name"] not in have]
    have |= {t["name"] for t in types}
    types += [{"name": d[2], "colour": "#ffffff"} for d in defects if d[2] not in have and not have.add(d[2])]
    return dataclasses.replace(
        mine, x=np.array(cols[0], np.float64), y=np.array(cols[1], np.float64),
        cls=np.array([index[c] for c in cols[2]], np.int64), score=np.array(cols[3], np.float64),
        source=np.array(cols[4], object), reviewed=np.array(cols[5], bool), class_names=tuple(names),
        defects=[{"x": d[0], "y": d[1], "type": d[2], "w": d[3], "h": d[4]} for d in defects],
        defect_types=types, edits=max(mine.edits, theirs.edits) + 1,
        deleted_x=np.concatenate([mine.deleted_x, theirs.deleted_x]),  # the places both said hold
        deleted_y=np.concatenate([mine.deleted_y, theirs.deleted_y]),  # no atom
        model=None if mine.model is None else dict(mine.model))
