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
