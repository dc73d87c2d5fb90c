"""The real app under Xvfb (xcb) in Annotate mode on a real micrograph: a screenshot with
predicted atoms (rings), the user's corrections (filled diamonds), a box and a point defect and
the Annotate toolbar.  Skipped when ``xvfb-run`` is missing, unless ``ATOMLENS_REQUIRE_XVFB=1``
(CI).  With ``ATOMLENS_UPDATE_DOCS=1`` the screenshot is copied to ``docs/screenshot_annotate.png``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_gui_xvfb import png_rgb, run_under_xvfb

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_annotate_mode_screenshot_on_xcb(tmp_path, real_data, artifacts):
    image = tmp_path / "G-Si-2nm.hdf5"  # a copy: the sidecar is written next to it, never into ../shared
    shutil.copyfile(real_data / "G-Si-2nm.hdf5", image)
    shot = tmp_path / "annotate.png"
    proc = run_under_xvfb(tmp_path, [str(ROOT / "tests" / "_xvfb_annotate_scene.py"), str(image), str(shot),
                                     str(tmp_path / "settings.ini")])
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["ok"] and info["saved"] and info["toolbar"] and info["undo"] == 6
    assert info["user"] == 3 and info["defects"] >= 2  # + the CAM's, when it ran
    assert (tmp_path / "G-Si-2nm.hdf5.atomlens.json").is_file()
    shutil.copyfile(shot, artifacts / "screenshot_annotate.png")
    arr = png_rgb(shot)
    view = arr[120:800, 10:760]  # the image area (the Annotate toolbar adds a row at the top)
    cyan = (np.abs(view - (80, 200, 255)) < 45).all(axis=2)  # predicted atoms: thin cyan rings
    assert cyan.sum() > 3000, f"only {cyan.sum()} ring pixels"
    red = (np.abs(view - (255, 80, 80)) < 45).all(axis=2)  # the dopants (filled diamond) and the dopant box
    assert red.sum() > 300
    yellow = (np.abs(view - (255, 220, 0)) < 45).all(axis=2)  # the vacancy atom and the vacancy defect
    assert yellow.sum() > 30
    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "screenshot_annotate.png")
