"""Atomic file writes: user data and annotations are never left half-written.

Every writer in AtomLens goes through :func:`atomic_write_bytes` (or the text version): the
data go to a temporary file in the target's folder, which is then renamed over the target.
A crash or a full disk leaves either the old file or the new one, never a mix, and no
temporary file behind; the file and its folder are flushed to disk (fsync) before and after
the rename, so a power cut cannot leave a renamed but empty file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

__all__ = ["atomic_write_with", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "fsync_path",
           "sha256_file", "user_data_dir"]


def user_data_dir():
    """AtomLens's per-user data folder (platformdirs; ``$ATOMLENS_USER_DATA`` overrides it):
    trained models, and annotations of images in read-only folders.  Not created here."""
    from pathlib import Path

    from platformdirs import user_data_dir as _platform_dir

    return Path(os.environ.get("ATOMLENS_USER_DATA") or _platform_dir("AtomLens", "AtomLens"))


def atomic_write_with(path, write, suffix: str = ".tmp") -> None:
    """Have ``write(tmp_path)`` create the file's content at a temporary path in `path`'s
    folder (named ``.<name>.*<suffix>``: writers that pick the format from the extension,
    such as HyperSpy's, need the right `suffix`), then rename it over `path`.

    A replaced file keeps its permissions; a new one gets 0644.  If `write` fails, the
    temporary file is removed and `path` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777  # keep a replaced file's permissions
    except OSError:
        mode = 0o644  # mkstemp's 0600 would hide exports from other users and tools
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        fsync_path(tmp)  # the data are on disk before the rename makes them the file...
        os.replace(tmp, path)
        fsync_path(folder)  # ...and the rename itself is on disk when this returns
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fsync_path(path) -> None:
    """Flush a file's (or a folder's, i.e. its entries') data to disk.  Folders cannot be
    opened on Windows, and some file systems refuse fsync on them: that is not an error."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and os.replace."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write_with(path, write)


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path, array) -> None:
    """Save an array as ``.npy`` (never pickled) atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
