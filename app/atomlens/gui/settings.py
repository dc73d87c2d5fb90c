"""QSettings access and the recent-files list.

Set the environment variable ``ATOMLENS_SETTINGS_DIR`` to keep settings in an INI file in
that folder (tests do this so that they never touch the user's real settings).
"""

from __future__ import annotations

import os
from pathlib import Path

from PyQt5 import QtCore

__all__ = ["make_settings", "RecentFiles", "MAX_RECENT"]

MAX_RECENT = 10


def make_settings() -> QtCore.QSettings:
    folder = os.environ.get("ATOMLENS_SETTINGS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QtCore.QSettings(str(Path(folder) / "atomlens.ini"), QtCore.QSettings.IniFormat)
    return QtCore.QSettings("AtomLens", "AtomLens")


class RecentFiles:
    """Most recently opened files, newest first, stored under ``recent/files``."""

    KEY = "recent/files"

    def __init__(self, settings: QtCore.QSettings, max_items: int = MAX_RECENT):
        self.settings = settings
        self.max_items = max_items

    def paths(self) -> list[str]:
        value = self.settings.value(self.KEY, [])
        if value is None:
            return []
        if isinstance(value, str):  # INI files give back a single entry as a string
            value = [value]
        return [str(v) for v in value if v][: self.max_items]

    def _store(self, paths: list[str]) -> None:
        self.settings.setValue(self.KEY, paths[: self.max_items])
        self.settings.sync()

    def add(self, path) -> None:
        path = str(Path(path).resolve())
        items = [p for p in self.paths() if p != path]
        self._store([path] + items)

    def remove(self, path) -> None:
        self._store([p for p in self.paths() if p != str(path)])

    def clear(self) -> None:
        self._store([])
