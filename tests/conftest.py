"""Shared test set-up: offscreen Qt, isolated settings, paths to real and generated data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Plain widget tests run offscreen; the xvfb test starts its own process on xcb.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never read or write the user's real QSettings from tests.
os.environ["ATOMLENS_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="atomlens-settings-")
# ... nor the user's data folder (trained models, annotations of read-only images)
os.environ["ATOMLENS_USER_DATA"] = tempfile.mkdtemp(prefix="atomlens-userdata-")

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "real"
ARTIFACTS = ROOT / "tests" / "_artifacts"


@pytest.fixture(scope="session", autouse=True)
def _gc_in_gui_thread(qapp):
    """As in the app (atomlens.gui.gcguard): garbage collection only in the GUI thread, so a
    collection in a worker thread never frees Qt objects a test's event loop is using."""
    from atomlens.gui.gcguard import collect_in_gui_thread

    collect_in_gui_thread()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of real microscope files (../shared/data/real); skip if it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent")
    return REAL_DATA


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for files tests leave behind to be looked at (screenshots)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ---------------------------------------------------------------- main-window GUI tests
# (helpers in _gui_helpers.py; test_gui.py has fixtures of its own)
@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """An empty user model folder (the real one is never read)."""
    d = tmp_path / "userdata"
    monkeypatch.setenv("ATOMLENS_USER_DATA", str(d))
    (d / "models").mkdir(parents=True)
    return d / "models"


@pytest.fixture
def boxes(monkeypatch):
    """Message boxes are recorded instead of shown: list of (title, text)."""
    from PyQt5 import QtWidgets

    seen = []

    def fake_exec(box):
        seen.append((box.windowTitle(), box.text()))
        return QtWidgets.QMessageBox.Ok

    monkeypatch.setattr(QtWidgets.QMessageBox, "exec_", fake_exec)
    return seen


@pytest.fixture
def window(qtbot, tmp_path, user_models, boxes):
    """A shown MainWindow with settings in tmp_path, an empty user model folder and recorded
    message boxes."""
    from _gui_helpers import make_window

    return make_window(qtbot, tmp_path)


@pytest.fixture
def sim_file(tmp_path, sim):
    """The test module's `sim` image saved as tmp_path/graphene.npy."""
    import numpy as np

    path = tmp_path / "graphene.npy"
    np.save(path, sim.image)
    return path
