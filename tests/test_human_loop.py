"""The whole human-in-the-loop cycle in the GUI, as a microscopist runs it (pytest-qt, offscreen):

open a simulated MoS2 image, analyse it with a deliberately weak tiny model (50 training steps on
graphene only), correct its atoms through real mouse clicks and keys in Annotate mode, retrain
from the Retrain dialog for a few steps, and check that the new bundle loads, is picked by "Use
the new model" (no question asked: it is the better one), and finds the corrected atoms better
than the weak model did, scored on the atoms the user corrected.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from _gui_helpers import RUN_MS, click, open_and_wait, run_and_wait, send_mouse  # noqa: E402
from PyQt5 import QtCore  # noqa: E402

from atomlens.analysis.metrics import match_points  # noqa: E402
from atomlens.nn.bundle import load_bundle, user_models_dir  # noqa: E402

PX_A = 0.2  # the image's and the tiny model's pixel size (Å)
ARCH = {"name": "unet", "params": {"base": 8, "depth": 2, "dilations": [1, 2]}}
GRAPHENE = {"structure": "graphene", "shape": [64, 64], "px_size_A": PX_A, "mode": "HAADF",
            "noise": {"dose_e_per_A2": [2e4, 2e5]}}


@pytest.fixture
def weak_model(user_models):
    """A tiny U-Net trained for 40 steps on graphene only: on MoS2 it misses many columns."""
    from atomlens.nn.train import train

    recipe = {"name": "weak", "task": "segmentation", "mode": "HAADF", "px_size_A": PX_A, "architecture": ARCH,
              "valid_px_size_A": [0.05, 0.4], "batch_size": 4, "steps": 40, "lr": 3e-3, "eval_every": 40,
              "val_n": 2, "num_workers": 0, "device": "cpu", "seed": 1, "loss": "focal", "sim": GRAPHENE}
    train(recipe, user_models / "weak", log=lambda m: None)
    return user_models / "weak"


@pytest.fixture
def mos2(tmp_path):
    """A 160 x 160 px MoS2 image at 0.2 Å/px with three W dopants, and its true columns."""
    from atomlens.sim import simulate

    r = simulate({"structure": "MoS2", "shape": [160, 160], "px_size_A": PX_A, "noise": {"dose_e_per_A2": 1e4},
                  "defects": {"dopant": {"element": "W", "n": 3, "sites": "metal"}}}, 123)
    path = tmp_path / "mos2.npy"
    np.save(path, r.image)
    xy, cls = r.points_px()
    return path, xy, cls


def f1(pred_xy, true_xy, r_px=0.5 / PX_A) -> float:
    ip, _, _ = match_points(np.asarray(pred_xy, float).reshape(-1, 2), true_xy, r_px)
    return 2.0 * len(ip) / (len(pred_xy) + len(true_xy))


def tool_button(win, key):
    ctl = win.annotate
    return ctl.toolbar.widgetForAction(ctl.tool_actions[key])


def test_detect_correct_retrain_and_use_the_better_model(qtbot, window, weak_model, mos2, artifacts):
    win = window
    path, true_xy, true_cls = mos2
    open_and_wait(qtbot, win, path, px_size_nm=PX_A / 10)
    dock = win.analysis_dock
    assert dock.select_model(weak_model) and dock.model_path() == str(weak_model)
    result = run_and_wait(qtbot, win)
    pred = np.column_stack([result.atoms.x, result.atoms.y])
    f1_weak = f1(pred, true_xy)
    assert f1_weak < 0.85  # the weak model really is weak here

    # ---- Annotate mode (the E key), then correct the prediction with the mouse and keys
    win.activateWindow()
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_E)
    ctl = win.annotate
    assert ctl.active and ctl.toolbar.isVisible()
    ann = ctl.ann
    n_pred = len(ann)
    ip, it, _ = match_points(np.column_stack([ann.x, ann.y]), true_xy, 0.5 / PX_A)
    false = sorted(set(range(n_pred)) - set(ip.tolist()))
    missing = sorted(set(range(len(true_xy))) - set(it.tolist()))
    assert missing  # there is something to correct
    qtbot.mouseClick(tool_button(win, "delete"), QtCore.Qt.LeftButton)
    assert ctl.tool == "delete"
    for x, y in [(ann.x[i], ann.y[i]) for i in false]:  # positions first: indices shift on delete
        click(qtbot, win, x, y)
    assert len(ann) == n_pred - len(false)
    qtbot.mouseClick(tool_button(win, "add"), QtCore.Qt.LeftButton)
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_1)  # class 1: atom
    assert ctl.tool == "add" and ctl.current_class == 1
    for j in missing:
        click(qtbot, win, *true_xy[j])
    assert len(ann) == n_pred - len(false) + len(missing)
    # the dopants: hover over each and press 2 (relabels the atom under the cursor)
    for j in np.flatnonzero(true_cls == 2):
        send_mouse(win, "move", *true_xy[j], button=None)
        qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_2)
    dop = ann.cls == ann.class_names.index("dopant")
    assert dop.sum() == (true_cls == 2).sum()
    assert f1(np.column_stack([ann.x, ann.y]), true_xy) > 0.99  # the corrections are right
    assert ctl.undo_stack.count() == len(false) + len(missing) + (true_cls == 2).sum()
    assert (ann.source == "user").sum() >= len(missing)

    # ---- Model > Retrain…: the corrected image is offered; a short run on it and MoS2 simulations
    win.act_retrain.trigger()
    dlg = win._retrain_dialog
    w = dlg.settings_widget
    assert w.base_model()[0] == "weak" and w.real_list.count() == 1
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("MoS2"))
    w.steps_spin.setValue(40)
    w.batch_spin.setValue(4)
    w.patch_spin.setValue(64)
    w.val_spin.setValue(2)
    w.workers_spin.setValue(0)
    w.device_combo.setCurrentIndex(w.device_combo.findData("cpu"))
    w.real_slider.setValue(75)
    w.holdout_spin.setValue(25)
    manager = win.training_manager()
    with qtbot.waitSignal(manager.finished, timeout=10 * RUN_MS) as done:
        qtbot.mouseClick(dlg.start_button, QtCore.Qt.LeftButton)
    new_path, best = done.args
    qtbot.waitUntil(lambda: not manager.is_running(), timeout=RUN_MS)
    _model, card = load_bundle(new_path)  # loads, weights checked against the card
    assert new_path.startswith(str(user_models_dir())) and card["parent"]["name"] == "weak"
    assert card["annotated_images"][0]["n_atoms"] == len(ann)
    # before / after on the held-back quarter, scored only on the atoms the user added, moved or
    # re-classed there (the untouched predictions are the weak model's own: they do not count)
    before, after = manager.comparison["before"], manager.comparison["after"]
    strip = ann.y >= 160 - round(160 * 0.25) - 0.5
    n_mine = int((strip & (ann.source == "user")).sum())
    assert n_mine and before["n_true"] == after["n_true"] == manager.comparison["n_confirmed"] == n_mine
    assert f"F1 on {n_mine} atoms you corrected or confirmed" in dlg.compare_caption.text()
    # the checkpoint kept is the one that did best on those atoms, and the dialog says so
    assert card["selection"]["metric"] == "user_f1" and best["selection"]["step"] == card["training"]["steps"]
    assert best["user_f1"] == max(m["user_f1"] for m in manager.history if "user_f1" in m and not m.get("baseline"))
    assert f"kept step {card['training']['steps']}" in dlg.status_label.text()
    # retraining on the corrections at least halves the errors (1 - F1) on the held-back atoms
    assert 1 - after["f1"] < 0.5 * (1 - before["f1"])
    assert dlg.compare_table.item(2, 1).text() == f"{after['f1']:.3f}"
    curves = dlg.curve_data()
    assert len(curves["user_f1"][0]) >= 5 and curves["user_f1"][1][-1] > curves["user_f1"][1][0]
    dlg.resize(1250, 820)
    qtbot.wait(100)
    assert dlg.grab().save(str(artifacts / "screenshot_retrain.png"))  # the dialog with its live curves
    if os.environ.get("ATOMLENS_UPDATE_DOCS") == "1":
        shutil.copyfile(artifacts / "screenshot_retrain.png", Path(__file__).parents[1] / "docs" / "screenshot_retrain.png")

    # ---- "Use the new model": picked in the dock and the image analysed again
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r is not None) as b:
        qtbot.mouseClick(dlg.use_button, QtCore.Qt.LeftButton)
    assert dock.model_path() == new_path
    new = b.args[0]
    f1_new = f1(np.column_stack([new.atoms.x, new.atoms.y]), np.column_stack([ann.x, ann.y]))
    print(f"\nweak model F1 {f1_weak:.3f}; {len(false)} deleted, {len(missing)} added, {(true_cls == 2).sum()} "
          f"relabelled; held-back F1 on the {n_mine} atoms the user added or re-classed there {before['f1']:.3f} -> "
          f"{after['f1']:.3f}; whole image {f1_new:.3f}")
    # ...and on the whole image (the weak model scores 0.65-0.83 there, depending on how well
    # the peak finder copes with its blurred blobs)
    assert f1_new > 0.9 and 1 - f1_new < 0.5 * (1 - f1_weak)
