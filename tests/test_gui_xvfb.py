"""End-to-end: start the real app on the X11 (xcb) platform under Xvfb and screenshot it.

Skipped when ``xvfb-run`` is missing, unless ``ATOMLENS_REQUIRE_XVFB=1`` (CI) makes that a
failure.  With ``ATOMLENS_UPDATE_DOCS=1`` the screenshot is copied to
``docs/screenshot_viewer.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _need_xvfb() -> str:
    exe = shutil.which("xvfb-run")
    if exe is None:
        msg = "xvfb-run is not installed (apt-get install xvfb)"
        if os.environ.get("ATOMLENS_REQUIRE_XVFB") == "1":
            pytest.fail(msg + " but ATOMLENS_REQUIRE_XVFB=1")
        pytest.skip(msg)
    return exe


def run_under_xvfb(tmp_path, argv: list, timeout: int = 300, user_data: bool = True) -> subprocess.CompletedProcess:
    """Run ``python argv...`` on the xcb platform under xvfb-run (a 1600x1000 screen), with
    settings (and, with `user_data`, the user data folder) in `tmp_path`; fails the test on a
    non-zero exit or a traceback."""
    xvfb_run = _need_xvfb()
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "xcb"
    env.pop("DISPLAY", None)  # xvfb-run provides its own
    env["ATOMLENS_SETTINGS_DIR"] = str(tmp_path / "settings")
    if user_data:
        env["ATOMLENS_USER_DATA"] = str(tmp_path / "userdata")  # only the bundled models (+ a test one)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "app"), env.get("PYTHONPATH")]))
    cmd = [xvfb_run, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def png_rgb(path) -> np.ndarray:
    """A PNG as an (H, W, 3) int RGB array."""
    from PyQt5 import QtGui  # QImage reads PNG without a QApplication

    img = QtGui.QImage(str(path))
    assert not img.isNull()
    img = img.convertToFormat(QtGui.QImage.Format_RGB888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).astype(int)


@pytest.mark.slow
def test_screenshot_on_xcb(tmp_path):
    shot = tmp_path / "shot.png"
    code = ("import sys; from atomlens.gui.app import run_gui; "
            f"sys.exit(run_gui([], sample='sto-haadf', screenshot={str(shot)!r}))")
    proc = run_under_xvfb(tmp_path, ["-c", code], timeout=180, user_data=False)
    assert shot.is_file(), proc.stderr
    arr = png_rgb(shot).astype(float)
    # the window's default size (no saved geometry in a fresh settings dir)
    assert arr.shape[:2] == (850, 1300)
    assert arr.std() > 20, "screenshot looks blank"
    # the image region (left half, below the toolbar) shows the lattice, not a flat colour
    region = arr[150:700, 100:700].mean(axis=2)
    assert region.std() > 15, f"image region is nearly uniform (std {region.std():.1f})"

    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot_viewer.png")
