"""The annotation sidecar file ``<image>.atomlens.json``: where it goes, how it is written (a
temporary file, flushed to disk, renamed over the old one, and the folder flushed, so a crash
or a power cut while saving leaves the previous sidecar intact), found, read and checked.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import time
from pathlib import Path


from ..fileio import atomic_write_with, sha256_file, user_data_dir
from .annotations import Annotations, SidecarError, SidecarMismatch

__all__ = ["sidecar_path", "file_sha256", "save_sidecar", "load_sidecar", "read_sidecar", "find_sidecar",
           "fallback_sidecar_path", "write_sidecar_text", "write_sidecar_bytes", "clean_temp_files",
           "parse_sidecar", "sidecar_text"]


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
