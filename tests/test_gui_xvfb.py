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


@pytest.mark.slow
def test_screenshot_on_xcb(tmp_path):
    xvfb_run = _need_xvfb()
    shot = tmp_path / "shot.png"
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "xcb"
    env.pop("DISPLAY", None)  # xvfb-run provides its own
    env["ATOMLENS_SETTINGS_DIR"] = str(tmp_path / "settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "app"), env.get("PYTHONPATH")]))
    code = ("import sys; from atomlens.gui.app import run_gui; "
            f"sys.exit(run_gui([], sample='sto-haadf', screenshot={str(shot)!r}))")
    cmd = [xvfb_run, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-c", code]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert shot.is_file(), proc.stderr

    from PyQt5 import QtGui  # QImage reads PNG without a QApplication

    img = QtGui.QImage(str(shot))
    assert not img.isNull()
    # the window's default size (no saved geometry in a fresh settings dir)
    assert (img.width(), img.height()) == (1300, 850)
    img = img.convertToFormat(QtGui.QImage.Format_RGB888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
    arr = arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).astype(float)
    assert arr.std() > 20, "screenshot looks blank"
    # the image region (left half, below the toolbar) shows the lattice, not a flat colour
    region = arr[150:700, 100:700].mean(axis=2)
    assert region.std() > 15, f"image region is nearly uniform (std {region.std():.1f})"

    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot_viewer.png")
