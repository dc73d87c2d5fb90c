"""The GUI analysis workflow (pytest-qt, offscreen): run, overlays, re-derive, cancel, errors,
stacks, layers and the alignment of every overlay with the image pixels.

The bundled ``stem-haadf`` model runs for real on small simulated graphene images.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt5 import QtCore  # noqa: E402

from atomlens.workflows.models import default_model_name  # noqa: E402
from atomlens.gui.layers import class_colours, marker_size  # noqa: E402

from _gui_helpers import (  # noqa: E402
    PX_A,
    RUN_MS,
    make_window,
    open_and_wait,
    run_and_wait,
    simulate_graphene,
    viewport_rgb,
    widget_pos,
)

# fixtures user_models, boxes, window and sim_file: conftest.py
pytestmark = pytest.mark.usefixtures("user_models")  # an empty user model folder (the real one is never read)


# ================================================================= fixtures
@pytest.fixture(scope="module")
def sim():
    return simulate_graphene((192, 192))


def shown_points(win) -> tuple[np.ndarray, list]:
    """(xy, class names) of the atom markers in the scatter items."""
    xy, names = [], []
    for name, item in win.overlays.atoms_view.scatters.items():
        x, y = item.getData()
        xy.append(np.c_[x, y])
        names += [name] * len(x)
    return (np.concatenate(xy) if xy else np.zeros((0, 2))), names


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(b).query(a)[0]


def copy_bundle(dst_dir, name: str, **card_changes):
    """A copy of the bundled stem-haadf under another name (with changed card entries)."""
    from atomlens.nn.bundle import resolve_bundle

    src = resolve_bundle("stem-haadf")
    dst = dst_dir / name
    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    card.update(name=name, **card_changes)
    (dst / "card.json").write_text(json.dumps(card))
    return dst


def tiny_cam_bundle(dst_dir, name="defect-cam"):
    """An untrained GAP-CNN defect-CAM bundle (the plumbing, not the accuracy, is tested)."""
    import torch

    from atomlens.analysis.cam import DEFECT_TYPES
    from atomlens.nn.bundle import save_bundle
    from atomlens.nn.models import build_model

    torch.manual_seed(0)
    arch = {"name": "gapcnn", "params": {"in_channels": 1, "n_types": len(DEFECT_TYPES), "base": 4, "depth": 2}}
    card = {"name": name, "version": "0", "task": "cam", "architecture": arch, "classes": list(DEFECT_TYPES),
            "px_size_A": 0.2, "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    return save_bundle(build_model(arch).eval(), card, dst_dir / name)


# ================================================================= the whole loop
def test_run_finds_the_known_atoms_and_draws_them(qtbot, window, sim, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    dock = win.analysis_dock
    assert dock.model_combo.currentText() == "stem-haadf"
    progress, devices = [], []
    win.analysis.runner.progress.connect(lambda f, m: progress.append((f, m)))
    win.analysis.runner.devicesFound.connect(devices.append)
    res = run_and_wait(qtbot, win)
    assert len(devices) == 1 and "cpu" in devices[0]  # reported once torch was imported

    assert res.info["model"] == "stem-haadf" and res.px_size_nm == pytest.approx(0.01)
    assert res is win.analysis.current_result() and win.analysis.results == {0: res}
    truth_xy, truth_cls = sim.points_px()
    inside = ((truth_xy > 2) & (truth_xy < 189)).all(axis=1)  # columns cut by the border are unsure
    xy, names = shown_points(win)
    assert len(xy) == len(res.atoms)
    # the markers are the detected atoms, and they sit on the true columns
    np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(res.atoms.x))
    d_true = nearest(truth_xy[inside], xy) * PX_A
    assert np.mean(d_true < 0.5) > 0.97, "true columns without a marker within 0.5 Å"
    d_shown = nearest(xy, truth_xy) * PX_A
    assert np.mean(d_shown < 0.5) > 0.95, "markers away from any true column"
    assert np.median(d_shown) < 0.15
    # the two Si dopants are drawn as dopants
    dop = xy[[n == "dopant" for n in names]]
    si = truth_xy[truth_cls == 2]
    assert len(si) == 2 and len(dop) >= 2 and (nearest(si, dop) * PX_A < 0.5).all()

    # the GUI is idle again and says what happened
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert not win.act_cancel.isEnabled() and win.act_run.isEnabled()
    assert dock.status.text().startswith(f"Done: {len(res.atoms)} atoms")
    used = "used: cpu (bf16)" if res.info["bf16"] else "used: cpu"  # bf16: CPUs with native bf16
    assert dock.device_used.text() == used and dock.progress.value() == 1000
    assert progress and progress[-1][0] == 1.0 and any("tile" in m for _, m in progress)
    # legend and layers dock list the classes with their counts
    legend = [label.text for _, label in win.overlays.atoms_view.legend.items]
    counts = res.counts()
    assert f"atom ({counts['atom']})" in legend and f"dopant ({counts['dopant']})" in legend
    assert win.layers_dock.class_checks["dopant"].text() == f"dopant ({counts['dopant']})"
    # the markers are 0.6 x the median nearest-neighbour distance (1.42 Å in graphene)
    assert win.overlays.atoms.size * PX_A == pytest.approx(0.6 * 1.42, rel=0.1)


def test_threshold_and_refinement_rederive_without_the_network(qtbot, window, sim, sim_file, monkeypatch):
    win = window
    open_and_wait(qtbot, win, sim_file)
    first = run_and_wait(qtbot, win)
    worker = win.analysis.runner.worker
    calls = []
    for pred in worker.predictors.values():  # any network call from now on is counted
        for meth in ("detect", "probabilities"):
            orig = getattr(pred, meth)
            monkeypatch.setattr(pred, meth, lambda *a, _o=orig, **k: (calls.append(1), _o(*a, **k))[1])
    runs = worker.network_runs
    emitted = []
    win.resultChanged.connect(emitted.append)

    dock = win.analysis_dock
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.threshold == 0.9):
        for v in range(55, 91, 5):  # dragging the slider: the re-derivation is debounced
            dock.threshold_slider.setValue(v)
            qtbot.wait(10)
    res = win.analysis.current_result()
    assert res.threshold == 0.9 and dock.threshold_spin.value() == 0.9
    assert calls == [] and worker.network_runs == runs
    assert len(emitted) < 8  # fewer updates than slider steps
    assert res.prob is first.prob  # the cached maps were reused
    assert first.threshold == 0.5  # the earlier result object is left as it was
    expected = first.rederive(0.9, image=sim.image)  # the same atoms as re-deriving by hand
    np.testing.assert_allclose(res.atoms.xy, expected.xy)
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)
    xy, _ = shown_points(win)
    assert len(xy) == len(res.atoms)

    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.refine == "gaussian"):
        dock.set_refine("gaussian")
    assert calls == [] and worker.network_runs == runs
    assert "threshold 0.90" in dock.status.text()

    # the spin box drives the slider, and the same re-derivation
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.threshold == 0.3):
        dock.threshold_spin.setValue(0.3)
    assert dock.threshold_slider.value() == 30 and calls == []


def test_edge_margin_rederives_without_the_network(qtbot, window, sim_file):
    """The edge margin leaves out the atoms near the image edges, from the cached maps; back at
    0 every column returns; the setting is kept between sessions and goes to Process folder."""
    win = window
    open_and_wait(qtbot, win, sim_file)
    dock = win.analysis_dock
    assert dock.edge_margin() == 0 and dock.edge_spin.text() == "none (keep edge columns)"
    first = run_and_wait(qtbot, win)
    runs = win.analysis.runner.worker.network_runs
    h, w = first.shape
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.edge_margin_px == 10):
        dock.edge_spin.setValue(10)
    res = win.analysis.current_result()
    assert win.analysis.runner.worker.network_runs == runs and res.prob is first.prob
    xy = first.atoms.xy
    inner = (xy.min(1) >= 10) & (xy[:, 0] <= w - 11) & (xy[:, 1] <= h - 11)
    assert 0 < inner.sum() < len(first.atoms)
    np.testing.assert_allclose(res.atoms.xy, xy[inner])
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)
    assert len(shown_points(win)[0]) == inner.sum()
    assert dock.state()["edge_margin_px"] == 10
    n_out = len(first.atoms) - int(inner.sum())
    assert f"edge margin 10 px: {n_out} columns near the image edges left out" in dock.notes.text()
    win.results.process_folder()
    assert win.results._batch_dialog.options()["edge_margin_px"] == 10
    win.results._batch_dialog.close()
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.edge_margin_px == 0):
        dock.edge_spin.setValue(0)
    np.testing.assert_allclose(win.analysis.current_result().atoms.xy, xy)
    assert "edge margin" not in dock.notes.text()
    dock.restore_state({"edge_margin_px": 3})
    assert dock.edge_margin() == 3


def test_material_hint_reclasses_from_the_cached_maps(qtbot, window, tmp_path, monkeypatch):
    """Choosing the material re-derives the classes without the network; 'not given' undoes it."""
    from atomlens.sim import simulate

    cfg = {"structure": "MoSe2", "shape": [256, 256], "px_size_A": 0.2, "mode": "HAADF",
           "defects": {"dopant": {"element": "W", "rate": 0.1, "sites": "metal"},
                       "partial_vacancy": {"rate": 0.05, "sites": "chalcogen"}},
           "probe": {"kv": 80, "alpha_mrad": 30, "source_fwhm_A": 0.7}, "noise": {"dose_e_per_A2": 1e5}}
    path = tmp_path / "mose2.npy"
    np.save(path, simulate(cfg, 3_000_000_323).image)  # the network calls some Se2 -> Se columns dopants
    win = window
    open_and_wait(qtbot, win, path, px_size_nm=0.02)
    dock = win.analysis_dock
    assert dock.material() is None and dock.material_combo.count() == 6
    first = run_and_wait(qtbot, win)
    runs = win.analysis.runner.worker.network_runs
    n_dop = int((first.atoms.cls == 2).sum())
    # a calibrated TMD-like lattice without a material: the notes suggest naming it
    assert "material hint suggested" in dock.notes.text() and "MoSe2" in dock.notes.text()
    assert "2H TMD" in win.statusBar().currentMessage()
    # the notes sit below the Run button: the dock scrolls them into view
    qtbot.waitUntil(lambda: not dock.notes.visibleRegion().isEmpty(), timeout=2000)
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.material == "MoSe2"):
        dock.set_material("MoSe2")
    res = win.analysis.current_result()
    assert win.analysis.runner.worker.network_runs == runs and res.prob is first.prob
    # dim "dopants" are vacancies now (stem-haadf 1.1 called 11 of them dopants, 1.2 about 5)
    assert int((res.atoms.cls == 2).sum()) <= n_dop - 3
    assert "material hint MoSe2" in dock.notes.text() and dock.notes.isVisible()
    assert "material hint suggested" not in dock.notes.text()
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.material is None):
        dock.set_material(None)
    res = win.analysis.current_result()
    assert int((res.atoms.cls == 2).sum()) == n_dop and "material hint MoSe2" not in dock.notes.text()
    assert "material hint suggested" in dock.notes.text()
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)


def test_single_atoms_on_carbon_are_read_as_such(qtbot, window, tmp_path):
    """Pt atoms over a visible carbon film (ADF), where the network alone calls 138 film spots
    atoms and the Pt dopants: the dock shows 8 atoms and says why; re-deriving at another
    threshold (the worker then passes the image) keeps it so."""
    from test_scene import pt_on_carbon

    path = tmp_path / "pt_on_carbon.npy"
    np.save(path, pt_on_carbon().image)
    win = window
    open_and_wait(qtbot, win, path, px_size_nm=0.02)
    res = run_and_wait(qtbot, win)
    dock = win.analysis_dock
    assert res.counts() == {"atom": 8, "dopant": 0, "vacancy": 0}
    assert "no lattice: the columns read as single atoms on a support" in dock.notes.text()
    assert "faint columns of the support left out" in dock.notes.text()
    qtbot.waitUntil(lambda: not dock.notes.visibleRegion().isEmpty(), timeout=2000)
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r.threshold == 0.6):
        dock.threshold_spin.setValue(0.6)
    res = win.analysis.current_result()
    assert res.counts()["dopant"] == 0 and res.counts()["atom"] <= 8
    assert dock.notes.text().count("no lattice") == 1
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)


def test_markers_fed_after_their_window_closed_are_dropped(qtbot, window, sim_file):
    """Markers are handed to the scatter items from timers; if the items are gone by then (the
    window closed mid-build) the rest is dropped instead of raising in the event loop."""
    from PyQt5 import sip

    win = window
    open_and_wait(qtbot, win, sim_file)
    run_and_wait(qtbot, win)
    view = win.overlays.atoms_view
    view.rebuild()
    assert view.building
    for item in list(view.scatters.values()):
        sip.delete(item)
    qtbot.waitUntil(lambda: not view.building, timeout=5000)  # no "wrapped C/C++ object deleted"
    view.scatters.clear()


def test_cancel_mid_run_returns_to_idle(qtbot, window, tmp_path, monkeypatch):
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    img = simulate({"structure": "graphene", "shape": [720, 720], "px_size_A": 0.2, "noise": {}}, 5).image
    path = tmp_path / "big.npy"
    np.save(path, img)
    win = window
    open_and_wait(qtbot, win, path, px_size_nm=0.02)  # the model's own scale: 2 x 2 tiles
    orig = Predictor._tile_output

    def slow(self, t):
        time.sleep(0.3)
        return orig(self, t)

    monkeypatch.setattr(Predictor, "_tile_output", slow)
    dock = win.analysis_dock
    with qtbot.waitSignal(win.analysis.runner.progress, timeout=RUN_MS,
                          check_params_cb=lambda f, m: "tile 1/" in m):
        win.act_run.trigger()
    assert dock.cancel_button.isEnabled() and not dock.run_button.isEnabled()
    assert win.analysis.busy and win.act_cancel.isEnabled()
    with qtbot.waitSignal(win.analysis.analysisCancelled, timeout=RUN_MS):
        dock.cancel_button.click()
    assert dock.status.text() == "Cancelled"
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled() and not win.analysis.busy
    assert win.analysis.current_result() is None and win.overlays.atoms.is_empty()
    assert "cancelled" in win.statusBar().currentMessage()

    monkeypatch.setattr(Predictor, "_tile_output", orig)  # a new run is not cancelled
    res = run_and_wait(qtbot, win)
    assert len(res.atoms) > 100


def test_esc_cancels_through_the_menu_action(qtbot, window, sim_file, monkeypatch):
    from atomlens.nn.infer import Predictor

    win = window
    open_and_wait(qtbot, win, sim_file)
    assert win.act_run.shortcut().toString() == "F5" and win.act_cancel.shortcut().toString() == "Esc"
    orig = Predictor._tile_output
    monkeypatch.setattr(Predictor, "_tile_output", lambda self, t: (time.sleep(1.0), orig(self, t))[1])
    with qtbot.waitSignal(win.analysis.runner.progress, timeout=RUN_MS):
        win.act_run.trigger()
    with qtbot.waitSignal(win.analysis.analysisCancelled, timeout=RUN_MS):
        win.act_cancel.trigger()
    assert win.analysis_dock.status.text() == "Cancelled"


# ================================================================= errors
def test_damaged_model_gives_a_message_not_a_crash(qtbot, window, sim_file, user_models, boxes):
    bad = copy_bundle(user_models, "broken")
    w = bad / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100] + b"\x00" * 100)
    win = window
    open_and_wait(qtbot, win, sim_file)
    dock = win.analysis_dock
    dock.refresh_models()
    i = dock.model_combo.findText("broken (yours)")
    assert i >= 0
    dock.model_combo.setCurrentIndex(i)
    with qtbot.waitSignal(win.analysis.analysisFailed, timeout=RUN_MS) as b:
        win.analysis.run_current()
    assert "damaged" in b.args[0]
    assert boxes and boxes[-1][0] == "Model could not be loaded" and "broken" in boxes[-1][1]
    assert "Model could not be loaded" in dock.status.text() and dock.run_button.isEnabled()
    assert win.isVisible() and win.analysis.current_result() is None
    dock.model_combo.setCurrentIndex(dock.model_combo.findText("stem-haadf"))
    assert len(run_and_wait(qtbot, win).atoms) > 100  # and the window carries on


def test_memory_error_is_reported(qtbot, window, sim_file, monkeypatch, boxes):
    from atomlens.nn.infer import Predictor

    def no_memory(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(Predictor, "detect", no_memory)
    win = window
    open_and_wait(qtbot, win, sim_file)
    with qtbot.waitSignal(win.analysis.analysisFailed, timeout=RUN_MS):
        win.analysis.run_current()
    assert boxes[-1][0] == "Not enough memory"
    assert not win.analysis.busy and win.analysis_dock.run_button.isEnabled()


def test_cuda_failure_falls_back_to_the_cpu(qtbot, window, sim_file, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # asking for CUDA then fails
    win = window
    open_and_wait(qtbot, win, sim_file)
    dock = win.analysis_dock
    dock.set_devices(["cpu", "cuda"])
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cuda"))
    res = run_and_wait(qtbot, win)
    assert res.info["device"] == "cpu" and res.info["cuda_fallback"] and res.info["requested_device"] == "cuda"
    assert any("ran on the CPU instead" in n for n in res.info["notes"])
    assert dock.device_used.text() == ("used: cpu (bf16)" if res.info["bf16"] else "used: cpu")
    assert not dock.notes.isHidden() and "CPU instead" in dock.notes.text()
    assert len(res.atoms) > 100


def test_devices_are_probed_on_the_worker_thread(qtbot, window):
    import sys

    combo = window.analysis_dock.device_combo
    # opening the device list before any run asks the worker (which imports torch)
    with qtbot.waitSignal(window.analysis.runner.devicesFound, timeout=RUN_MS) as b:
        combo.showPopup()
    combo.hidePopup()
    assert "cpu" in b.args[0]
    assert [combo.itemData(i) for i in range(combo.count())][:2] == ["auto", "cpu"]
    if "cuda" in b.args[0]:
        assert combo.findData("cuda") >= 0
    assert "torch" in sys.modules


# ================================================================= calibration, models, stacks
def test_uncalibrated_image_estimates_the_scale_and_says_so(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file, px_size_nm=None)
    dock = win.analysis_dock
    assert dock.px_spin.text() == "estimate" and dock.px_size_nm() is None
    assert not dock.px_notice.isHidden() and "no pixel size" in dock.px_notice.text()
    res = run_and_wait(qtbot, win)
    assert res.px_size_nm is None and any(n.startswith("no calibration") for n in res.info["notes"])
    assert "Uncalibrated image: no calibration" in dock.px_notice.text()
    assert len(res.atoms) > 100
    # entering the pixel size in the dock calibrates the image (scale bar, Info dock)
    dock.px_unit.setCurrentText("pm/px")
    dock.px_spin.setValue(10.0)
    dock.px_spin.editingFinished.emit()
    assert win.micrograph.px_size_nm == pytest.approx(0.01)
    assert win.image_view.scale_bar.isVisible() and dock.px_notice.isHidden()
    assert "run again" in dock.status.text()
    dock.px_unit.setCurrentText("nm/px")
    assert dock.px_spin.value() == pytest.approx(0.01) and dock.px_size_nm() == pytest.approx(0.01)
    # and the menu's pixel size shows up in the dock, used exactly (the field rounds it)
    win.set_pixel_size_nm(0.0123456789)
    assert dock.px_size_nm() == 0.0123456789 and dock.px_spin.text() == "0.01235"


def test_model_picker_lists_bundles_and_follows_the_imaging_mode(qtbot, window, user_models):
    copy_bundle(user_models, "stm-topo", mode="STM")
    copy_bundle(user_models, "my-model")
    tiny_cam_bundle(user_models)
    dock = window.analysis_dock
    dock.refresh_models()
    from atomlens.nn.bundle import list_bundles, read_card

    items = [dock.model_combo.itemText(i) for i in range(dock.model_combo.count())]
    bundled = [n for n, p, o in list_bundles() if o == "bundled" and read_card(p)["task"] == "segmentation"]
    assert items == bundled + ["my-model (yours)", "stm-topo (yours)"]  # no CAM model here
    assert "stem-haadf" in items and not any("defect-cam" in i for i in items)
    assert dock.cam_check.isEnabled() and dock.cam_path == str(user_models / "defect-cam")

    from atomlens.io.micrograph import Micrograph

    dock.set_image(Micrograph(np.zeros((8, 8), np.float32), mode="STM"))
    assert dock.model_combo.currentText() == "stm-topo (yours)"
    dock.set_image(Micrograph(np.zeros((8, 8), np.float32), mode="HAADF"))
    assert dock.model_combo.currentText() == "stem-haadf"
    # a model picked by hand is kept for that kind of image
    i = dock.model_combo.findText("my-model (yours)")
    dock.model_combo.setCurrentIndex(i)
    dock.model_combo.activated.emit(i)
    dock.set_image(Micrograph(np.zeros((8, 8), np.float32), mode="ADF"))
    assert dock.model_combo.currentText() == "my-model (yours)"
    assert default_model_name("afm", ["stem-haadf"]) == "stem-haadf"
    assert default_model_name("STM", ["stem-haadf", "stm-topo"]) == "stm-topo"
    assert default_model_name(None, []) is None


def test_run_on_all_frames_keeps_a_result_per_frame(qtbot, window, tmp_path, monkeypatch):
    from atomlens.sim import simulate

    frames = [simulate({"structure": "graphene", "shape": [128, 128], "px_size_A": PX_A}, s).image for s in (1, 2, 3)]
    path = tmp_path / "stack.npy"
    np.save(path, np.stack(frames))
    win = window
    open_and_wait(qtbot, win, path)
    dock = win.analysis_dock
    assert not dock.run_all_button.isHidden() and win.act_run_all.isEnabled()
    messages = []
    win.analysis.runner.progress.connect(lambda f, m: messages.append(m))
    stored = []
    win.analysis.resultStored.connect(stored.append)
    with qtbot.waitSignal(win.analysis.busyChanged, timeout=RUN_MS, check_params_cb=lambda b: not b):
        dock.run_all_button.click()
    assert sorted(win.analysis.results) == [0, 1, 2] and [r.frame for r in stored] == [0, 1, 2]
    assert any(m.startswith("frame 3/3") for m in messages)
    assert "in 3 frames" in dock.status.text()
    # each frame's atoms are its own
    for i, f in enumerate(frames):
        from atomlens.nn.infer import Predictor

        atoms, _, _ = Predictor("stem-haadf", "cpu").detect(f, PX_A / 10)
        assert len(win.analysis.results[i].atoms) == len(atoms)
    # probability maps are kept within a memory budget; the displayed frame's always
    import atomlens.gui.analysis_controller as ac

    one = win.analysis.results[0].prob.nbytes
    monkeypatch.setattr(ac, "MAP_BUDGET_BYTES", int(2.5 * one))  # two frames
    win.analysis._trim_maps()
    assert [r.prob is None for r in (win.analysis.results[f] for f in (0, 1, 2))] == [False, True, False]
    assert win.analysis.results[1].info["prob_dropped"]
    with qtbot.waitSignal(win.resultChanged, timeout=5000) as b:
        win.image_view.frame_bar.slider.setValue(2)
    assert b.args[0] is win.analysis.results[2]
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)
    xy, _ = shown_points(win)
    np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(win.analysis.results[2].atoms.y))


def test_new_image_clears_results(qtbot, window, sim_file, tmp_path):
    win = window
    open_and_wait(qtbot, win, sim_file)
    run_and_wait(qtbot, win)
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((32, 32), np.float32))
    open_and_wait(qtbot, win, other)  # resultChanged(None)
    assert win.analysis.results == {} and win.overlays.atoms.is_empty()
    assert shown_points(win)[0].shape == (0, 2) and not win.overlays.atoms_view.legend.isVisible()


# ================================================================= layers, CAM, hover, highlight
def test_cam_model_gives_heatmap_and_defect_markers(qtbot, window, sim_file, user_models):
    tiny_cam_bundle(user_models)
    win = window
    dock = win.analysis_dock
    dock.refresh_models()
    open_and_wait(qtbot, win, sim_file)
    dock.cam_check.setChecked(True)
    res = run_and_wait(qtbot, win)
    assert res.cam is not None and res.cam.shape[1:] == res.shape and res.info["cam_model"] == "defect-cam"
    cam = win.overlays.cam
    assert not cam.is_empty() and "pristine" not in [cam.names[i] for i in cam.channels]
    item = win.overlays.cam_view.item
    assert item.isVisible() and item.image.shape == res.shape
    np.testing.assert_array_equal(item.image, res.cam[cam.channel])
    lut = item.lut
    assert lut.shape == (256, 4) and lut[0, 3] == 0 and lut[-1, 3] == 255  # transparent at 0
    assert 0 < item.opacity() < 1
    row = win.layers_dock.cam_row
    assert row.check.isEnabled() and row.channel_combo.count() == len(cam.channels)
    row.opacity.setValue(25)
    assert item.opacity() == pytest.approx(0.25)
    row.channel_combo.setCurrentIndex(1)
    row.channel_combo.activated.emit(1)
    assert cam.channel == row.channel_combo.itemData(1)
    np.testing.assert_array_equal(item.image, res.cam[cam.channel])
    # one marker and (up to the cap) one text label per defect
    dv = win.overlays.defects_view
    assert len(dv.scatter.getData()[0]) == len(res.defects)
    assert len(dv.labels) == min(len(res.defects), 300)
    if len(res.defects):
        assert dv.labels[0].textItem.toPlainText().split()[0] in res.defects.type_names
    row.check.setChecked(False)
    assert not item.isVisible()


def test_layers_dock_toggles_classes_and_probability_map(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    res = run_and_wait(qtbot, win)
    ld, ov = win.layers_dock, win.overlays
    ld.class_checks["dopant"].setChecked(False)
    assert not ov.atoms_view.scatters["dopant"].isVisible() and ov.atoms_view.scatters["atom"].isVisible()
    assert not ov.atoms_view._samples["dopant"].isVisible()  # the legend entry is greyed out too
    ov.atoms_view._samples["dopant"].setVisible(True)  # what clicking the legend sample does
    assert ld.class_checks["dopant"].isChecked() and ov.atoms_view.scatters["dopant"].isVisible()
    ld.atoms_check.setChecked(False)
    assert not any(s.isVisible() for s in ov.atoms_view.scatters.values())
    assert not ov.atoms_view.legend.isVisible()
    ld.atoms_check.setChecked(True)

    prob_item = ov.prob_view.item
    assert not prob_item.isVisible() and ld.prob_row.check.isEnabled()
    ld.prob_row.check.setChecked(True)
    assert prob_item.isVisible()
    np.testing.assert_allclose(prob_item.image, 1.0 - res.prob[0], atol=1e-6)  # "foreground"
    names = [ld.prob_row.channel_combo.itemText(i) for i in range(ld.prob_row.channel_combo.count())]
    assert names == ["foreground", "atom", "dopant", "vacancy"]
    ld.prob_row.channel_combo.setCurrentIndex(2)
    ld.prob_row.channel_combo.activated.emit(2)
    np.testing.assert_array_equal(prob_item.image, res.prob[2])
    assert tuple(prob_item.levels) == (0.0, 1.0)
    assert not ld.cam_row.check.isEnabled()  # no CAM model was run


def test_hover_describes_the_atom_in_px_and_nm(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    res = run_and_wait(qtbot, win)
    iv = win.image_view
    i = int(np.argmin(np.hypot(res.atoms.x - 96, res.atoms.y - 96)))
    x, y = res.atoms.x[i], res.atoms.y[i]
    pos = widget_pos(win, x + 0.3, y - 0.2)
    qtbot.mouseMove(iv.graphics.viewport(), pos)
    qtbot.waitUntil(lambda: win.statusBar().currentMessage().startswith("atom "), timeout=3000)
    msg = win.statusBar().currentMessage()
    cls = res.atoms.class_names[res.atoms.cls[i]]
    assert f"atom {i}: {cls}, score {res.atoms.score[i]:.2f}" in msg
    assert f"({x:.2f}, {y:.2f}) px" in msg and f"({x * 0.01:.4f}, {y * 0.01:.4f}) nm" in msg


def test_highlight_atom_draws_a_ring_and_centres_it(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    res = run_and_wait(qtbot, win)
    vb = win.image_view.viewbox
    vb.setRange(QtCore.QRectF(0, 0, 40, 40), padding=0)
    before = vb.viewRect()
    i = len(res.atoms) // 2
    win.highlight_atom(i)
    ring = win.overlays.atoms_view.ring
    assert ring.isVisible()
    c = ring.rect().center()
    assert (c.x(), c.y()) == pytest.approx((res.atoms.x[i], res.atoms.y[i]))
    after = vb.viewRect()
    assert (after.center().x(), after.center().y()) == pytest.approx((res.atoms.x[i], res.atoms.y[i]), abs=0.5)
    assert after.width() == pytest.approx(before.width(), rel=1e-3)  # the zoom is kept
    win.centre_on(10.0, 20.0)
    assert (vb.viewRect().center().x(), vb.viewRect().center().y()) == pytest.approx((10, 20), abs=0.5)
    win.highlight_atom(None)
    assert not ring.isVisible()
    with pytest.raises(IndexError):
        win.overlays.atoms.set_highlight(len(res.atoms))


# ================================================================= alignment
def _synthetic_result(shape=(60, 80)):
    """A result with atoms at known positions, a probability map and a CAM with one hot pixel each."""
    from atomlens.analysis.atoms import AtomList
    from atomlens.analysis.cam import DefectList
    from atomlens.analysis.pipeline import AnalysisResult

    h, w = shape
    x = np.array([10.0, 30.4, 55.7, 70.0])
    y = np.array([12.0, 40.6, 20.3, 50.0])
    atoms = AtomList(x, y, [1, 2, 3, 1], [0.9, 0.8, 0.7, 0.6], ("background", "atom", "dopant", "vacancy"))
    prob = np.zeros((4, h, w), np.float32)
    prob[0] = 1
    cam = np.zeros((2, h, w), np.float32)
    cam[1, 33, 47] = 1.0  # one hot pixel at x = 47, y = 33
    defects = DefectList([47.0], [33.0], [1], [1.0], ("pristine", "vacancy"))
    return AnalysisResult(atoms, prob, defects, cam, {}, 0.01, (0.0, 0.0), 0.5, "centroid", 0, shape)


def test_overlays_are_aligned_with_image_pixels_at_two_zooms(qtbot, window, tmp_path):
    win = window
    h, w = 60, 80
    path = tmp_path / "flat.npy"
    np.save(path, np.zeros((h, w), np.float32))
    open_and_wait(qtbot, win, path)
    res = _synthetic_result((h, w))
    win.analysis.results[0] = res
    win.overlays.set_result(res)
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)
    ov, iv = win.overlays, win.image_view
    ov.cam.set_opacity(1.0)
    vb, img_item, cam_item = iv.viewbox, iv.image_item, ov.cam_view.item
    ov.prob.set_visible(True)

    def centre_of(item, px, py):
        """Scene position of the centre of pixel (px, py) of an image-like item."""
        return item.mapToScene(QtCore.QPointF(px + 0.5, py + 0.5))

    for rect in (QtCore.QRectF(-0.5, -0.5, w, h), QtCore.QRectF(25, 28, 26, 16)):
        vb.setRange(rect, padding=0)
        qtbot.wait(50)
        # atom markers: their scene position is the image pixel centre they name
        for name, item in ov.atoms_view.scatters.items():
            for pt in item.points():
                sp = item.mapToScene(pt.pos())
                x, y = pt.pos().x(), pt.pos().y()
                ip = img_item.mapToScene(QtCore.QPointF(x + 0.5, y + 0.5))
                assert (sp.x(), sp.y()) == pytest.approx((ip.x(), ip.y()), abs=1e-6)
                assert iv.pixel_at_scene(sp) == (int(np.floor(x + 0.5)), int(np.floor(y + 0.5)))
        # heatmaps: pixel (i, j) of the map covers pixel (i, j) of the image
        for heat in (cam_item, ov.prob_view.item):
            for px, py in ((0, 0), (w - 1, h - 1), (47, 33)):
                a, b = centre_of(heat, px, py), centre_of(img_item, px, py)
                assert (a.x(), a.y()) == pytest.approx((b.x(), b.y()), abs=1e-6)
                assert iv.pixel_at_scene(a) == (px, py)
        # what is painted: the hot CAM pixel lands on screen where image pixel (47, 33) is
        for s in ov.atoms_view.scatters.values():
            s.hide()
        ov.atoms_view.legend.hide()  # its samples have the class colours
        ov.defects.set_visible(False)
        ov.prob.set_visible(False)
        rgb = viewport_rgb(win)
        hot = rgb.max(axis=2) - rgb.min(axis=2) > 120  # coloured (the image is black)
        assert hot.any(), "the CAM hot pixel was not painted"
        ys, xs = np.nonzero(hot)
        expect = iv.graphics.mapFromScene(centre_of(img_item, 47, 33))
        scale = 1 / vb.viewPixelSize()[0]  # screen px per image px
        assert abs(xs.mean() - expect.x()) <= max(1.0, 0.3 * scale)
        assert abs(ys.mean() - expect.y()) <= max(1.0, 0.3 * scale)
        # and an atom marker is painted around its position
        ov.cam.set_visible(False)
        ov.atoms_view.scatters["dopant"].show()
        rgb = viewport_rgb(win)
        ring = (rgb[..., 0] > 200) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)  # #ff5050
        ys, xs = np.nonzero(ring)
        expect = widget_pos(win, 30.4, 40.6)
        assert iv.graphics.viewport().rect().contains(expect) and ring.any()
        # a circle around the atom's position, however much of it the viewport cuts off
        d = np.hypot(xs - expect.x(), ys - expect.y())
        assert d.max() - d.min() <= 3.0, (d.min(), d.max())
        # put everything back for the next zoom
        ov.cam.set_visible(True)
        ov.defects.set_visible(True)
        ov.prob.set_visible(True)
        for s in ov.atoms_view.scatters.values():
            s.show()


def test_marker_size_follows_zoom_in_image_pixels(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    run_and_wait(qtbot, win)
    view, vb = win.overlays.atoms_view, win.image_view.viewbox
    size_px = win.overlays.atoms.size  # in image pixels
    for side in (60, 120):
        vb.setRange(QtCore.QRectF(0, 0, side, side), padding=0)
        qtbot.wait(20)
        screen_per_px = 1 / vb.viewPixelSize()[0]
        item = next(iter(view.scatters.values()))
        assert item.opts["size"] == pytest.approx(size_px * screen_per_px, rel=0.06)


def test_helpers():
    assert class_colours(["atom", "dopant", "vacancy", "x"], {"atom": "#010203"}) == {
        "atom": "#010203", "dopant": "#ff5050", "vacancy": "#ffdc00", "x": "#7cff6b"}
    xy = np.array([[0, 0], [10, 0], [20, 0], [30, 0]], float)
    assert marker_size(xy) == pytest.approx(6.0)
    assert marker_size(xy[:1]) == 6.0


# ---------------------------------------------------------------- results dock and exports wired in
def test_results_dock_exports_and_click_selection(qtbot, tmp_path):
    """Run the analysis in the window, then: the Results dock counts what the overlay shows,
    a table click rings the atom, the exports write files equal to `atomlens detect`'s."""
    from atomlens.analysis.atoms import AtomList
    from atomlens.gui.main_window import MainWindow
    from atomlens.sim import simulate

    r = simulate({"structure": "graphene", "shape": [160, 160], "px_size_A": 0.2}, 5)
    path = tmp_path / "g.npy"
    np.save(path, r.image)
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.imageLoaded, timeout=30000):
        win.open_file(str(path))
    win.set_pixel_size_nm(0.02)
    with qtbot.waitSignal(win.resultChanged, timeout=60000, check_params_cb=lambda res: res is not None):
        win.analysis.run_current()
    res = win.analysis.current_result()
    dock = win.results.dock
    assert sum(res.counts().values()) == len(res.atoms) > 50
    assert win.results.actions["csv"].isEnabled()
    # a click in the table centres and rings that atom
    dock.atomActivated.emit(7)
    assert win.overlays.atoms.highlighted == 7
    # exports
    assert win.results.export_csv(str(tmp_path / "a.csv"))
    back = AtomList.from_csv(tmp_path / "a.csv")
    assert np.allclose(back.xy, res.atoms.xy, atol=1e-3)
    assert win.results.export_json(str(tmp_path / "a.json"))
    assert win.results.export_snapshot("png", str(tmp_path / "s.png"))
    from PyQt5 import QtGui

    img = QtGui.QImage(str(tmp_path / "s.png"))
    assert (img.width(), img.height()) == (160, 160)
    win.analysis.shutdown()


def test_average_eight_views_checkbox_reaches_the_networks(qtbot, window, sim_file):
    win = window
    open_and_wait(qtbot, win, sim_file)
    dock = win.analysis_dock
    assert not dock.tta() and dock.tta_check.isEnabled()
    plain = run_and_wait(qtbot, win)
    assert plain.info["tta"] is False
    qtbot.mouseClick(dock.tta_check, QtCore.Qt.LeftButton)
    assert dock.tta()
    averaged = run_and_wait(qtbot, win)
    assert averaged.info["tta"] is True and averaged.to_dict()["tta"] is True
    # the trained model finds the same graphene lattice either way
    assert abs(len(averaged.atoms) - len(plain.atoms)) <= 0.02 * len(plain.atoms)
    qtbot.mouseClick(dock.tta_check, QtCore.Qt.LeftButton)
    assert run_and_wait(qtbot, win).info["tta"] is False  # the cached predictor is switched back


def test_garbage_is_collected_in_the_gui_thread_only(qtbot, window):
    """No automatic collection (it could run in a worker thread and free Qt objects in use);
    the GUI thread's timer collects reference cycles instead."""
    import gc
    import weakref

    assert not gc.isenabled()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    for _ in range(800):  # enough allocations to pass the generation-0 threshold
        Node().self = None
    junk = [Node() for _ in range(1000)]
    for n in junk:
        n.me = n
    del junk
    qtbot.waitUntil(lambda: gone() is None, timeout=5000)


def test_analysis_settings_are_kept_between_sessions(qtbot, tmp_path, boxes):
    win = make_window(qtbot, tmp_path)
    dock = win.analysis_dock
    dock.set_threshold(0.7)
    dock.set_refine("gaussian")
    dock.tta_check.setChecked(True)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    stem = dock.model_path()
    dock._chosen["HAADF/ADF"] = stem
    win.close()  # saves
    again = make_window(qtbot, tmp_path)
    d2 = again.analysis_dock
    assert d2.threshold() == 0.7 and d2.refine() == "gaussian" and d2.tta() and d2.device() == "cpu"
    assert d2.state()["models_by_mode"].get("HAADF/ADF") == stem  # the model memory: tests/test_model_memory_hints.py
    again.settings.setValue("analysis/settings", "{not json")  # damaged: defaults, no crash
    again.settings.sync()
    third = make_window(qtbot, tmp_path)
    assert third.analysis_dock.threshold() == 0.5 and not third.analysis_dock.tta()
