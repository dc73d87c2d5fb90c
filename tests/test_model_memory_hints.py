"""Issue 23 section 6: a model picked for one image must not leak into images of another imaging
mode, and what is guessed about an image (its mode, its pixel size) is shown as a guess.

* :mod:`atomlens.io.filename_hints` reads file names (``..._-1.4V_5x5_Z_021.jpg``);
* the Analysis dock remembers a picked model per imaging-mode group and says why a model is
  chosen; the settings keep the memory (and migrate the old per-family value);
* the GUI and ``atomlens detect`` apply the name's hints where the file lacks a mode or a scale.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from atomlens.io.filename_hints import (
    apply_filename_hints,
    assumption_notes,
    hints_from_name,
)
from atomlens.io.micrograph import Micrograph

from _bundles import make_tiny_bundle

WSE2 = "WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg"


def kinds(name, **kw) -> dict:
    """{kind: (value, text)} of the hints read from `name`."""
    return {h.kind: (h.value, h.text) for h in hints_from_name(name, **kw).hints}


# ================================================================= file-name hints
def test_the_wse2_jpeg_name_says_stm_5x5_nm_and_minus_1_4_volt():
    h = hints_from_name(WSE2)
    assert h.fov_nm == (5.0, 5.0) and h.get("fov").text == "5x5" and "nm assumed" in h.get("fov").detail
    assert h.bias_V == pytest.approx(-1.4) and h.get("bias").text == "-1.4V"
    assert h.mode == "STM" and h.get("mode").text == "Z"
    assert h.setpoint_A is None and h.get("high_tension") is None
    px_x, px_y = h.px_size_nm((512, 512))
    assert px_x * 1000 == pytest.approx(9.766, abs=1e-3) and px_y == px_x
    assert hints_from_name(f"/some/folder/{WSE2}").fov_nm == (5.0, 5.0)  # the folder is not read


@pytest.mark.parametrize("name, expected", [
    ("MoS2_500mV_20x20nm_topo.png", {"fov": ((20.0, 20.0), "20x20nm"), "bias": (0.5, "500mV"),
                                     "mode": ("STM", "topo")}),
    ("graphene_-0.5V_100pA_003.png", {"bias": (-0.5, "-0.5V"), "setpoint": (1e-10, "100pA"),
                                      "mode": ("STM", "-0.5V")}),
    ("Au_1p5V_2nA.sxm", {"bias": (1.5, "1p5V"), "setpoint": (2e-9, "2nA"), "mode": ("STM", "1p5V")}),
    ("STO_200kV_HAADF_10nm.tif", {"fov": ((10.0, 10.0), "10nm"), "high_tension": (2e5, "200kV"),
                                  "mode": ("HAADF", "HAADF")}),
    ("grain_500pm_ABF.png", {"fov": ((0.5, 0.5), "500pm"), "mode": ("ABF", "ABF")}),
    ("scan 10 x 20 nm STM.png", {"fov": ((10.0, 20.0), "10 x 20 nm"), "mode": ("STM", "STM")}),
    ("cluster_STEM_5x5.tif", {"fov": ((5.0, 5.0), "5x5"), "mode": ("STEM", "STEM")}),
    ("Pt_1.5um_AFM.png", {"fov": ((1500.0, 1500.0), "1.5um"), "mode": ("AFM", "AFM")}),
    ("sample_DF4_iDPC.tif", {"mode": ("iDPC", "iDPC")}),
    ("Si-2V_STM.png", {"bias": (2.0, "2V"), "mode": ("STM", "STM")}),  # the dash separates words
])
def test_names_give_their_hints_with_the_text_each_came_from(name, expected):
    assert kinds(name).keys() == expected.keys(), name
    for kind, (value, text) in expected.items():
        got_value, got_text = kinds(name)[kind]
        assert got_text == text, (name, kind)
        assert got_value == (pytest.approx(value) if not isinstance(value, str) else value), (name, kind)


@pytest.mark.parametrize("name, absent", [
    ("image_512x512_HAADF.tif", "fov"),  # an image size in pixels
    ("bin2x2_ADF.png", "fov"),  # a binning
    ("Si111-7x7_STM_001.sxm", "fov"),  # a surface reconstruction, not a scan size
    ("nc-AFM_df_5x5.png", "fov"),  # AFM scans are often in µm: a unitless size is not guessed
    ("sample_5x5_003.png", "fov"),  # no mode: a unitless pair may be anything
    ("STO_300kV_HAADF.tif", "bias"),  # a high tension is not a tip bias
    ("HAADF_vs_STM_compare.png", "mode"),  # contradictory: no mode
    ("STM_nanonis_generic_4_5.sxm", "fov"),  # '4_5' is a version
    ("scan_256x256_STM.png", "fov"),
    ("WSe2-SL445_211118.png", "fov"),  # 'SL445', a date, 'WSe2': no numbers read inside words
])
def test_names_give_no_false_hints(name, absent):
    assert absent not in kinds(name), kinds(name)


def test_unitless_sizes_need_a_scan_mode_and_are_not_the_image_size():
    assert kinds("HAADF_Z-contrast.tif")["mode"] == ("HAADF", "HAADF")  # 'Z-contrast' is no STM 'Z'
    assert kinds("scan_5x5.png", mode="STM")["fov"] == ((5.0, 5.0), "5x5")  # the file's own mode counts
    assert "fov" not in kinds("scan_300x200.png", mode="STM", shape=(200, 300))  # the image's own size
    assert "fov" not in kinds("scan_5x5.png", mode="AFM")


#: What the README of the real data says of each file: (field of view nm or None, mode or None).
REAL_TRUTH = {
    "16_STOimage_1.ser": (None, None), "16_STOimage.emi": (None, None), "Acquisition_18.emd": (None, None),
    "G-GrainBoundary-4nm-coord.csv": ((4.0, 4.0), None), "G-GrainBoundary-4nm.hdf5": ((4.0, 4.0), None),
    "G-Si-2nm-coord.csv": ((2.0, 2.0), None), "G-Si-2nm.hdf5": ((2.0, 2.0), None), "README.md": (None, None),
    "STM_nanonis_generic_4_5.sxm": (None, "STM"), "example_TOPO.sxm": (None, "STM"),
    "test_ABF_cropped.hdf5": (None, "ABF"), "test_ADF_cropped.hdf5": (None, "ADF"),
    WSE2: ((5.0, 5.0), "STM"),
}


def test_real_file_names_give_the_true_hints_and_no_others(real_data):
    names = sorted(p.name for p in real_data.iterdir())
    assert set(REAL_TRUTH) <= set(names)
    for name in names:
        h = hints_from_name(name)
        fov, mode = REAL_TRUTH.get(name, (None, None))
        assert h.fov_nm == fov and h.mode == mode, name
        assert {x.kind for x in h.hints} <= {"fov", "mode"} | ({"bias"} if name == WSE2 else set()), name


def test_applied_to_the_real_files_only_what_they_lack(real_data):
    from atomlens.io import load

    mg = load(real_data / WSE2)
    assert mg.shape == (512, 512) and mg.px_size_nm is None and mg.mode is None  # what the file gives
    assumed = apply_filename_hints(mg)
    assert mg.mode == "STM" and mg.px_size_nm * 1000 == pytest.approx(9.766, abs=1e-3)
    assert mg.px_size_y_nm == mg.px_size_nm and mg is not None and assumed is mg.assumed
    assert "'5x5'" in assumed["px_size"] and "9.766 pm/px" in assumed["px_size"] and "'Z'" in assumed["mode"]
    assert assumed["px_size"] in mg.notes and not any(n.startswith("no spatial calibration") for n in mg.notes)
    mg.set_px_size_nm(0.01)  # the user's value is no assumption
    assert "px_size" not in mg.assumed and "mode" in mg.assumed
    for name in ("Acquisition_18.emd", "G-Si-2nm.hdf5", "example_TOPO.sxm"):  # calibrated (and moded) files
        mg = load(real_data / name)
        before = (mg.px_size_nm, mg.mode, list(mg.notes))
        assert apply_filename_hints(mg) == {} and (mg.px_size_nm, mg.mode, mg.notes) == before, name
    mg = load(real_data / "test_ADF_cropped.hdf5")  # the loader read the mode from the name: said so
    assert apply_filename_hints(mg) == {"mode": "imaging mode ADF from the file name"}


def test_assumption_notes():
    mg = Micrograph(np.zeros((8, 8), np.float32))
    assert assumption_notes(mg) == ["no imaging mode in the file or its name: HAADF assumed (give --model to override)"]
    assert assumption_notes(mg, model_given=True) == []
    mg.assumed = {"px_size": "pixel size 1 pm/px from the file name"}
    mg.mode = "STM"
    assert assumption_notes(mg) == ["pixel size 1 pm/px from the file name"]
    assert assumption_notes(mg, px_size_given=True) == []


# ================================================================= the Analysis dock
pytest.importorskip("pytestqt")


def _mg(mode=None, name="scan.npy", shape=(8, 8)):
    from pathlib import Path

    return Micrograph(np.zeros(shape, np.float32), mode=mode, path=Path(name), px_size_nm=0.01)


def _pick(dock, label):
    i = dock.model_combo.findText(label)
    assert i >= 0, label
    dock.model_combo.setCurrentIndex(i)
    dock.model_combo.activated.emit(i)


def _copy_bundle(dst_dir, name, **card_changes):
    from atomlens.nn.bundle import resolve_bundle

    dst = dst_dir / name
    shutil.copytree(resolve_bundle("stem-haadf"), dst)
    card = json.loads((dst / "card.json").read_text())
    card.update(name=name, **card_changes)
    (dst / "card.json").write_text(json.dumps(card))
    return dst


def test_a_model_is_remembered_per_imaging_mode_and_the_dock_says_why(qtbot, user_models):
    from atomlens.gui.analysis_dock import AnalysisDock, mode_group

    dock = AnalysisDock()
    qtbot.addWidget(dock)
    dock.set_image(_mg("STM"))
    assert dock.model_combo.currentText() == "stm-topo" and "default for STM images" in dock.model_reason.text()
    dock.set_image(_mg("HAADF"))
    assert dock.model_combo.currentText() == "stem-haadf"
    assert "default for HAADF/ADF images" in dock.model_reason.text()
    # picked on an STM image: remembered for STM images only
    dock.set_image(_mg("STM"))
    _pick(dock, "stem-haadf")
    assert "picked by hand, remembered for STM images" in dock.model_reason.text()
    dock.set_image(_mg("HAADF"))
    assert dock.model_combo.currentText() == "stem-haadf" and "default for HAADF/ADF" in dock.model_reason.text()
    dock.set_image(_mg("STM", "other.sxm"))
    assert dock.model_combo.currentText() == "stem-haadf" and dock.model_reason.text() == (
        "stem-haadf: remembered for STM images.")
    _pick(dock, "stm-topo")  # back to the default: nothing left to remember
    assert dock.state()["models_by_mode"] == {} and "default for STM" in dock.model_reason.text()
    # picked on a HAADF image: also for ADF (Z contrast), not for ABF or STM
    dock.set_image(_mg("HAADF"))
    _pick(dock, "stm-topo")
    for mode, want in (("ADF", "stm-topo"), ("STEM", "stm-topo"), ("ABF", "stem-haadf"), ("STM", "stm-topo"),
                       ("AFM", "stm-topo")):
        dock.set_image(_mg(mode))
        assert dock.model_combo.currentText() == want, mode
    dock.set_image(_mg("ABF"))
    assert "default for ABF/BF images" in dock.model_reason.text()
    assert [mode_group(m) for m in ("haadf", "ADF", "BF", "iDPC", "SPM", None, "")] == [
        "HAADF/ADF", "HAADF/ADF", "ABF/BF", "iDPC/DPC", "STM", None, None]


def test_a_model_picked_for_an_image_without_mode_does_not_leak(qtbot, user_models):
    """The issue's case: stm-topo picked for a mode-less image made it the model of the next
    mode-less SrTiO3 .emd (1,738 atoms instead of 3,119, nothing said)."""
    from atomlens.gui.analysis_dock import AnalysisDock

    dock = AnalysisDock()
    qtbot.addWidget(dock)
    dock.set_image(_mg(None, "scan.jpg"))
    assert dock.model_combo.currentText() == "stem-haadf"
    _pick(dock, "stm-topo")
    dock.set_image(_mg(None, "Acquisition_18.emd"))
    assert dock.model_combo.currentText() == "stem-haadf"  # no leak
    assert dock.state()["models_by_mode"] == {}
    # and the dock says what it assumed, and that a pick there is for that image only
    assert dock.model_reason.text() == ("No imaging mode in the file: HAADF assumed (stem-haadf). Pick another "
                                        "model if this is another kind of image.")
    assert "#fff3cd" in dock.model_reason.styleSheet()  # shown as an assumption
    _pick(dock, "stm-topo")
    assert dock.model_reason.text() == ("No imaging mode in the file: stm-topo picked for this image only "
                                        "(not remembered for other images).")
    dock.set_image(_mg("HAADF"))
    assert dock.model_combo.currentText() == "stem-haadf" and "#fff3cd" not in dock.model_reason.styleSheet()
    assert dock.model_reason.text() == "stem-haadf: default for HAADF/ADF images."


def test_memory_is_kept_in_the_settings_and_the_old_value_migrated(qtbot, tmp_path, user_models, boxes):
    from _gui_helpers import make_window

    mine = str(_copy_bundle(user_models, "my-stm", mode="STM"))
    haadf2 = str(_copy_bundle(user_models, "my-haadf", mode="HAADF"))
    win = make_window(qtbot, tmp_path)
    dock = win.analysis_dock
    dock.set_image(_mg("STM"))
    _pick(dock, "my-stm (yours)")
    win.close()  # saves
    state = json.loads(win.settings.value("analysis/settings"))
    assert state["models_by_mode"] == {"STM": mine} and "models" not in state
    again = make_window(qtbot, tmp_path)
    again.analysis_dock.set_image(_mg("STM"))
    assert again.analysis_dock.model_combo.currentText() == "my-stm (yours)"
    assert "remembered for STM images" in again.analysis_dock.model_reason.text()
    again.analysis_dock.set_image(_mg("HAADF"))
    assert again.analysis_dock.model_combo.currentText() == "stem-haadf"
    # the settings of the per-family memory: one model for every STEM (and mode-less) image, one
    # for STM; the STM model that leaked into "stem" is kept for STM images only
    again.settings.setValue("analysis/settings", json.dumps({"models": {"stem": mine}}))
    third = make_window(qtbot, tmp_path, "settings.ini")
    d3 = third.analysis_dock
    for mode, want in (("HAADF", "stem-haadf"), (None, "stem-haadf"), ("STM", "my-stm (yours)")):
        d3.set_image(_mg(mode))
        assert d3.model_combo.currentText() == want, mode
    third.settings.setValue("analysis/settings", json.dumps({"models": {"stem": haadf2, "stm": mine}}))
    fourth = make_window(qtbot, tmp_path, "settings.ini")
    d4 = fourth.analysis_dock
    for mode, want in (("ADF", "my-haadf (yours)"), (None, "stem-haadf"), ("AFM", "stm-topo"),
                       ("STM", "my-stm (yours)")):
        d4.set_image(_mg(mode))
        assert d4.model_combo.currentText() == want, mode
    assert d4.state()["models_by_mode"] == {"HAADF/ADF": haadf2, "STM": mine}


def test_lattice_period_shown_is_the_one_assumed():
    from atomlens.gui.analysis_dock import LATTICE_PERIOD_A
    from atomlens.nn.infer import TYPICAL_PERIOD_A

    assert LATTICE_PERIOD_A == TYPICAL_PERIOD_A


# ================================================================= the window and the CLI
def test_the_wse2_jpeg_opens_as_stm_at_its_named_scale_and_the_dock_says_so(qtbot, window, real_data, tmp_path):
    from _gui_helpers import open_and_wait

    win = window
    path = tmp_path / WSE2
    shutil.copyfile(real_data / WSE2, path)
    mg = open_and_wait(qtbot, win, path, px_size_nm=None)
    dock = win.analysis_dock
    assert mg.mode == "STM" and mg.px_size_nm == pytest.approx(5.0 / 512)
    assert dock.model_combo.currentText() == "stm-topo"
    assert dock.model_reason.text() == ("Imaging mode STM from the file name ('Z': STM topography): default for "
                                        "STM images. Pick another model to override.")
    assert dock.px_size_nm() == pytest.approx(5.0 / 512) and dock.px_spin.text() == "9.766"
    assert not dock.px_notice.isHidden()
    assert dock.px_notice.text() == ("Pixel size 9.766 pm/px from the file name ('5x5': 5 x 5 nm over 512 x 512 px, "
                                     "no unit: nm assumed): an assumption. Enter the pixel size to override.")
    info = win.info_dock
    assert info.calibration_notice.isHidden() and any("from the file name" in n for n in info.notes)
    assert "bias -1.4 V ('-1.4V')" in info.name_hints_label.text()
    # the user's pixel size replaces the assumption
    dock.px_spin.setValue(9.0)
    dock.px_spin.editingFinished.emit()
    assert win.micrograph.px_size_nm == pytest.approx(0.009) and dock.px_notice.isHidden()
    assert "px_size" not in win.micrograph.assumed
    # a mode-less, uncalibrated image: both guesses are stated
    other = tmp_path / "scan.npy"
    np.save(other, np.zeros((32, 32), np.float32))
    open_and_wait(qtbot, win, other, px_size_nm=None)
    assert dock.model_combo.currentText() == "stem-haadf"
    assert dock.model_reason.text().startswith("No imaging mode in the file: HAADF assumed (stem-haadf)")
    assert "its period taken as 2.5 Å" in dock.px_notice.text() and not dock.px_notice.isHidden()


def test_detect_uses_and_reports_the_names_hints(real_data, tmp_path, capsys):
    import csv

    from atomlens.cli import EXIT_OK, main

    bundle = make_tiny_bundle(tmp_path, mode="STM")
    out = tmp_path / "out"
    args = ["detect", str(real_data / WSE2), "--out", str(out), "--model", str(bundle), "--device", "cpu",
            "--threshold", "0.3", "--json"]
    assert main(args) == EXIT_OK
    err = capsys.readouterr().err
    assert "pixel size 9.766 pm/px from the file name ('5x5'" in err and "imaging mode STM from the file name" in err
    summary = json.loads((out / f"{WSE2[:-4]}.json").read_text())
    assert summary["px_size_nm"] == pytest.approx(5.0 / 512)
    assert any(n.startswith("pixel size 9.766 pm/px from the file name") for n in summary["notes"])
    with open(out / f"{WSE2[:-4]}.atoms.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    for r in rows:
        assert float(r[4]) == pytest.approx(float(r[0]) * 5.0 / 512, abs=1e-4)
    # a pixel size given on the command line is no assumption
    assert main(args + ["--px-size-nm", "0.01"]) == EXIT_OK
    summary = json.loads((out / f"{WSE2[:-4]}.json").read_text())
    assert summary["px_size_nm"] == pytest.approx(0.01)
    assert not any("pixel size 9.766" in n for n in summary["notes"])
    assert any(n.startswith("imaging mode STM from the file name") for n in summary["notes"])


def test_gui_results_and_their_exports_state_the_assumptions_as_detect_does(qtbot, window, tmp_path):
    """A run in the app on a mode-less image says 'HAADF assumed' in the result's notes (so in
    the exported JSON) as `atomlens detect` does; once the user picks the model it does not."""
    from _gui_helpers import open_and_run, simulate_graphene
    from atomlens.workflows.export import export_json

    f = tmp_path / "scan.npy"
    np.save(f, simulate_graphene((96, 96)).image.astype(np.float32))
    res = open_and_run(qtbot, window, f)
    assert res.info["notes"][0].startswith("no imaging mode in the file or its name: HAADF assumed")
    export_json(res, tmp_path / "scan.json")
    assert "HAADF assumed" in json.loads((tmp_path / "scan.json").read_text())["notes"][0]
    dock = window.analysis_dock
    dock.model_combo.setCurrentIndex(dock.model_combo.findText("stem-haadf"))
    dock.model_combo.activated.emit(dock.model_combo.currentIndex())  # picked by hand
    from _gui_helpers import run_and_wait

    res2 = run_and_wait(qtbot, window)
    assert not any("HAADF assumed" in n for n in res2.info["notes"])
