"""Atomic writes: all or nothing, no temporary files left, sensible permissions."""

from __future__ import annotations

import os

import pytest

from atomlens.fileio import atomic_write_bytes, atomic_write_text


def test_write_replace_and_permissions(tmp_path):
    p = tmp_path / "a.csv"
    atomic_write_text(p, "x,y\n")
    assert p.read_text() == "x,y\n" and (p.stat().st_mode & 0o777) == 0o644
    os.chmod(p, 0o600)
    atomic_write_text(p, "x,y\n1,2\n")
    assert p.read_text() == "x,y\n1,2\n" and (p.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["a.csv"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "b.json"
    atomic_write_bytes(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["b.json"]


def test_atomic_write_flushes_the_file_before_and_the_folder_after_the_rename(tmp_path, monkeypatch):
    """The data reach the disk before the rename makes them the file, and the rename reaches
    it before the write returns (fsync of the temporary file, then of the folder)."""
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "c.csv", "x,y\n")
    assert events == [("fsync", "file"), ("replace", "c.csv"), ("fsync", "folder")]
