"""End-to-end: the real app under Xvfb (xcb) opens a real micrograph, runs the analysis and
saves a screenshot with the atom overlays.

Skipped when ``xvfb-run`` is missing, unless ``ATOMLENS_REQUIRE_XVFB=1`` (CI) makes that a
failure.  With ``ATOMLENS_UPDATE_DOCS=1`` the screenshot is copied to
``docs/screenshot_analysis.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_gui_xvfb import png_rgb, run_under_xvfb

ROOT = Path(__file__).resolve().parents[1]


def _run_app(tmp_path, image, shot, cam=False, **kw):
    """Start the app under xvfb-run on `image`, analyse it and save a screenshot."""
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    code = ("import sys; from atomlens.gui.app import run_gui; "
            f"sys.exit(run_gui([{str(image)!r}], screenshot={str(shot)!r}, analyse=True, cam={cam}{extra}))")
    proc = run_under_xvfb(tmp_path, ["-c", code])
    assert shot.is_file(), proc.stderr
    return png_rgb(shot)


@pytest.mark.slow
def test_analysis_screenshot_on_xcb(tmp_path, real_data):
    shot = tmp_path / "analysis.png"
    # graphene with one Si atom, 256 x 256 px over 2 nm
    arr = _run_app(tmp_path, real_data / "G-Si-2nm.hdf5", shot)
    assert arr.shape[:2] == (850, 1300)  # the default window size
    view = arr[80:800, 10:760]  # the image area, left of the histogram and the docks
    # atom markers: the cyan (#50c8ff) outlines of ~150 graphene columns
    cyan = (np.abs(view - (80, 200, 255)) < 45).all(axis=2)
    assert cyan.sum() > 5000, f"only {cyan.sum()} marker pixels"
    # the Si dopant's red (#ff5050) marker (and its legend entry)
    red = (np.abs(view - (255, 80, 80)) < 45).all(axis=2)
    assert red.sum() > 50
    # the lattice still shows between the markers
    grey = view[(view.max(axis=2) - view.min(axis=2)) < 12].mean(axis=1)
    assert grey.size > 0.3 * view[..., 0].size and grey.std() > 15

    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot_analysis.png")


@pytest.mark.slow
def test_cam_heatmap_screenshot_is_semi_transparent(tmp_path, real_data, artifacts):
    from atomlens.nn.bundle import list_bundles, read_card

    if not any(read_card(p)["task"] == "cam" for _, p, _ in list_bundles()):
        from test_gui_analysis import tiny_cam_bundle  # an untrained one: the drawing is tested

        tiny_cam_bundle(tmp_path / "userdata" / "models")
    shot = tmp_path / "analysis_cam.png"
    arr = _run_app(tmp_path, real_data / "G-Si-2nm.hdf5", shot, cam=True)
    shutil.copyfile(shot, artifacts / "screenshot_analysis_cam.png")
    view = arr[80:800, 10:760]
    # where the heatmap tints the image, the lattice still shows through it
    tinted = view.max(axis=2) - view.min(axis=2) > 60
    tinted &= ~(np.abs(view - (80, 200, 255)) < 45).all(axis=2)  # not the atom markers
    assert tinted.sum() > 2000, "no heatmap drawn"
    under = view[tinted].min(axis=1)  # the image's grey under a saturated tint
    assert under.std() > 10, "the heatmap hides the image"


@pytest.mark.slow
def test_material_hint_screenshot_on_xcb(tmp_path, artifacts):
    """A simulated MoSe2 monolayer analysed with the material given: its Se2 -> Se columns are
    drawn as vacancies (yellow), its W dopants as dopants (red)."""
    from atomlens.sim import simulate

    cfg = {"structure": "MoSe2", "shape": [160, 160], "px_size_A": 0.2, "mode": "HAADF",
           "defects": {"dopant": {"element": "W", "rate": 0.1, "sites": "metal"},
                       "partial_vacancy": {"rate": 0.06, "sites": "chalcogen"}},
           "probe": {"kv": 80, "alpha_mrad": 30, "source_fwhm_A": 0.7}, "noise": {"dose_e_per_A2": 1e5}}
    r = simulate(cfg, 3_000_000_323)
    n_vac = int((r.points_px()[1] == 3).sum())
    image = tmp_path / "MoSe2_sim.npy"
    np.save(image, r.image)
    shot = tmp_path / "material.png"
    arr = _run_app(tmp_path, image, shot, px_size_nm=0.02, material="MoSe2")
    shutil.copyfile(shot, artifacts / "screenshot_material_hint.png")
    view = arr[80:800, 10:760]
    yellow = (np.abs(view - (255, 220, 0)) < 60).all(axis=2)
    red = (np.abs(view - (255, 80, 80)) < 45).all(axis=2)
    assert n_vac >= 4 and yellow.sum() > 50 * n_vac, f"{yellow.sum()} vacancy marker pixels"
    assert red.sum() > 500
    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "screenshot_material_hint.png")
