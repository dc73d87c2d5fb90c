"""Annotate mode (pytest-qt, offscreen): real mouse clicks and keys add, relabel, delete and
move atoms and mark defects; undo/redo; autosave to the sidecar and reload; the Model menu."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from atomlens.analysis.annotations import Annotations, load_sidecar, sidecar_path
from atomlens.gui.main_window import MainWindow
from PyQt5 import QtCore, QtGui, QtWidgets

LOAD_MS = 30000
RUN_MS = 60000
PX_A = 0.1


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch):
    d = tmp_path / "userdata"
    monkeypatch.setenv("ATOMLENS_USER_DATA", str(d))
    (d / "models").mkdir(parents=True)
    return d / "models"


@pytest.fixture(scope="module")
def sim():
    from atomlens.sim import simulate

    cfg = {"structure": "graphene", "shape": [128, 128], "px_size_A": PX_A,
           "defects": {"dopant": {"element": "Si", "n": 2}}, "noise": {"dose_e_per_A2": 1e5}}
    return simulate(cfg, 3_000_000_007)


@pytest.fixture
def sim_file(tmp_path, sim):
    path = tmp_path / "graphene.npy"
    np.save(path, sim.image)
    return path


@pytest.fixture
def boxes(monkeypatch):
    seen = []

    def fake_exec(box):
        seen.append((box.windowTitle(), box.text()))
        return QtWidgets.QMessageBox.Ok

    monkeypatch.setattr(QtWidgets.QMessageBox, "exec_", fake_exec)
    return seen


def make_window(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    win = MainWindow(settings=settings, interactive=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot, tmp_path, boxes):
    return make_window(qtbot, tmp_path)


def open_and_run(qtbot, win, path):
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        assert win.open_file(path)
    win.set_pixel_size_nm(PX_A / 10)
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r is not None):
        win.analysis.run_current()
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)


def widget_pos(win, x, y) -> QtCore.QPoint:
    iv = win.image_view
    return iv.graphics.mapFromScene(iv.viewbox.mapViewToScene(QtCore.QPointF(x, y)))


def send_mouse(win, kind, x, y, button=QtCore.Qt.LeftButton):
    """A mouse event on the image view's viewport at image pixel (x, y)."""
    vp = win.image_view.graphics.viewport()
    pos = widget_pos(win, x, y)
    types = {"press": QtCore.QEvent.MouseButtonPress, "move": QtCore.QEvent.MouseMove,
             "release": QtCore.QEvent.MouseButtonRelease}
    buttons = QtCore.Qt.NoButton if kind == "release" or button is None else button
    ev = QtGui.QMouseEvent(types[kind], QtCore.QPointF(pos), vp.mapToGlobal(pos),
                           QtCore.Qt.NoButton if kind == "move" else button, buttons, QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(vp, ev)


def click(qtbot, win, x, y):
    qtbot.mouseClick(win.image_view.graphics.viewport(), QtCore.Qt.LeftButton, pos=widget_pos(win, x, y))


def snapshot(ann: Annotations) -> dict:
    d = ann.to_dict()
    d.pop("edits")
    return d


def empty_spot(ann, margin=30):
    """A point in the image at least 2 px from any atom."""
    for y in range(margin, 100):
        for x in range(margin, 100):
            if len(ann) == 0 or np.min(np.hypot(ann.x - x, ann.y - y)) > 2.0:
                return float(x), float(y)
    raise AssertionError("no empty spot")


def test_annotate_edits_undo_autosave_and_reload(qtbot, window, sim_file, tmp_path):
    win = window
    open_and_run(qtbot, win, sim_file)
    ctl = win.annotate
    ctl.timer.setInterval(300)  # faster autosave for the test (2 s in the app)
    assert not win.annotate.active
    win.annotate.act_toggle.trigger()
    assert ctl.active and not win.results.click_enabled and ctl.toolbar.isVisible()
    ann = ctl.ann
    n0 = len(ann)
    assert n0 > 20 and not ann.user_mask().any()
    start = snapshot(ann)

    # add with a real click (Add tool)
    x, y = empty_spot(ann)
    click(qtbot, win, x, y)
    assert len(ann) == n0 + 1 and ann.source[-1] == "user"
    assert abs(ann.x[-1] - x) < 0.6 and abs(ann.y[-1] - y) < 0.6 and ann.cls[-1] == 1
    # predicted and user atoms are drawn by different items (rings vs filled diamonds)
    assert len(ctl.view.user.getData()[0]) == 1 and len(ctl.view.predicted.getData()[0]) == n0

    # key "2" with the cursor on a predicted atom: relabel it as dopant
    j = 5
    send_mouse(win, "move", ann.x[j], ann.y[j], button=None)
    assert ctl.hovered == j
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_2)
    assert ctl.current_class == 2 and ann.class_names[ann.cls[j]] == "dopant" and ann.source[j] == "user"

    # delete with a click in the Delete tool
    ctl.tool_actions["delete"].trigger()
    k = 10
    xk, yk = float(ann.x[k]), float(ann.y[k])
    click(qtbot, win, xk, yk)
    assert len(ann) == n0 and np.min(np.hypot(ann.x - xk, ann.y - yk)) > 0.5

    # move by press/move/release (Move tool)
    ctl.tool_actions["move"].trigger()
    m = 15
    x0, y0 = float(ann.x[m]), float(ann.y[m])
    send_mouse(win, "press", x0, y0)
    send_mouse(win, "move", x0 + 1.0, y0 + 0.5)
    send_mouse(win, "move", x0 + 2.0, y0 + 1.0)
    send_mouse(win, "release", x0 + 2.0, y0 + 1.0)
    assert abs(ann.x[m] - (x0 + 2)) < 0.3 and abs(ann.y[m] - (y0 + 1)) < 0.3 and ann.source[m] == "user"

    # a defect (Defect tool, current type)
    ctl.tool_actions["defect"].trigger()
    ctl.defect_combo.setCurrentText("vacancy")
    nd = len(ann.defects)
    click(qtbot, win, x, y + 3)
    assert len(ann.defects) == nd + 1 and ann.defects[-1]["type"] == "vacancy"
    assert len(ctl.view.labels) == len(ann.defects)

    # rectangle delete
    ctl.tool_actions["delete"].trigger()
    def n_inside(lo, hi):
        return int(np.sum((ann.x >= lo) & (ann.x <= hi) & (ann.y >= lo) & (ann.y <= hi)))

    surely, maybe = n_inside(31, 89), n_inside(29, 91)  # clicks land on whole screen pixels
    assert surely > 2
    n_before = len(ann)
    send_mouse(win, "press", 30, 30)
    send_mouse(win, "move", 60, 60)
    send_mouse(win, "release", 90, 90)
    assert n_before - maybe <= len(ann) <= n_before - surely
    assert n_inside(31, 89) == 0
    edited = snapshot(ann)

    # undo everything restores the start exactly; redo restores the edits exactly
    steps = ctl.undo_stack.count()
    assert steps == 6
    for _ in range(steps):
        qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert snapshot(ann) == start
    for _ in range(steps):
        qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    assert snapshot(ann) == edited

    # autosave: the sidecar appears shortly after the last edit; a "kill" (no close) keeps it
    side = sidecar_path(sim_file)
    qtbot.waitUntil(lambda: side.is_file() and snapshot(load_sidecar(sim_file)) == edited, timeout=3000)
    on_disk = load_sidecar(sim_file)
    assert on_disk.image_sha256 and snapshot(on_disk) == edited

    # reopening the same image and entering annotate mode restores the annotations
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        win.open_file(sim_file)
    assert ctl.ann is None and not ctl.active and win.results.click_enabled
    win.annotate.act_toggle.trigger()
    assert ctl.active and snapshot(ctl.ann) == edited

    # export as training data
    paths = ctl.export_training(tmp_path / "train")
    assert len(paths) == 3 and all(p.is_file() for p in paths)
    labels = np.load(paths[1])
    assert labels.shape == (128, 128) and (labels == 2).any()
    ctx = ctl.training_context()
    assert ctx and ctx[0]["annotations"] is ctl.ann and ctx[0]["image"].shape == (128, 128)


def test_close_saves_and_a_new_window_reloads(qtbot, tmp_path, sim_file, boxes):
    win = make_window(qtbot, tmp_path)
    open_and_run(qtbot, win, sim_file)
    win.annotate.set_active(True)
    ann = win.annotate.ann
    x, y = empty_spot(ann)
    click(qtbot, win, x, y)
    win.annotate.timer.stop()
    assert not sidecar_path(sim_file).exists()
    win.close()  # saves at once
    assert len(load_sidecar(sim_file)) == len(ann)

    win2 = make_window(qtbot, tmp_path)
    with qtbot.waitSignal(win2.resultChanged, timeout=LOAD_MS):
        win2.open_file(sim_file)
    win2.annotate.set_active(True)  # no analysis run needed: the sidecar has the atoms
    assert snapshot(win2.annotate.ann) == snapshot(ann)
    win2.annotate.set_active(False)
    assert win2.results.click_enabled and not win2.annotate.view.user.isVisible()


def test_annotate_without_image_or_result(qtbot, window, sim_file):
    window.annotate.act_toggle.trigger()  # no image: refused, no crash
    assert not window.annotate.active and not window.annotate.act_toggle.isChecked()
    with qtbot.waitSignal(window.resultChanged, timeout=LOAD_MS):
        window.open_file(sim_file)
    window.annotate.act_toggle.trigger()  # no result: starts empty
    ctl = window.annotate
    assert ctl.active and len(ctl.ann) == 0
    click(qtbot, window, 20, 20)
    assert len(ctl.ann) == 1
    ctl.undo_stack.undo()
    assert len(ctl.ann) == 0


def test_model_menu_opens_the_dialogs(qtbot, window):
    titles = [a.text() for a in window.menuBar().actions()]
    assert "&Model" in titles and "A&nnotate" in titles
    dlg = window.open_model_manager()
    assert dlg.isVisible() and not dlg.isModal()
    dlg.close()
    window.act_retrain.trigger()
    rd = window._retrain_dialog
    assert rd is not None and rd.isVisible() and not rd.isModal()
    assert rd.context["annotated"] == [] and "current_model" in rd.context
    rd.close()


def test_right_click_menu_relabels_and_deletes(qtbot, window, sim_file, monkeypatch):
    open_and_run(qtbot, window, sim_file)
    ctl = window.annotate
    ctl.set_active(True)
    ann = ctl.ann
    n0 = len(ann)
    choice = {"text": "Set class &2: dopant"}

    def fake_exec(menu, *args):
        act = next(a for a in menu.actions() if a.text() == choice["text"])
        act.trigger()
        return act

    monkeypatch.setattr(QtWidgets.QMenu, "exec_", fake_exec)
    send_mouse(window, "press", ann.x[3], ann.y[3], button=QtCore.Qt.RightButton)
    assert ann.class_names[ann.cls[3]] == "dopant" and len(ann) == n0
    choice["text"] = "&Delete atom"
    x3 = float(ann.x[3])
    send_mouse(window, "press", x3, ann.y[3], button=QtCore.Qt.RightButton)
    assert len(ann) == n0 - 1 and ctl.undo_stack.count() == 2
    send_mouse(window, "move", ann.x[7], ann.y[7], button=None)
    qtbot.keyClick(window.image_view.graphics, QtCore.Qt.Key_Delete)
    assert len(ann) == n0 - 2
    ctl.undo_stack.undo()
    ctl.undo_stack.undo()
    ctl.undo_stack.undo()
    assert len(ann) == n0 and ann.x[3] == x3 and not ann.user_mask().any()


def test_stack_keeps_one_annotated_frame_and_never_overwrites_it(qtbot, window, sim, tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, np.stack([sim.image, sim.image]))
    win, ctl = window, window.annotate
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        win.open_file(path)
    assert win.micrograph.is_stack
    ctl.set_active(True)
    click(qtbot, win, 20, 20)
    win.image_view.show_frame(1)  # saves and leaves the mode
    assert ctl.ann is None and not ctl.active
    saved = sidecar_path(path).read_text()
    ctl.set_active(True)  # frame 1: refused, frame 0's annotations stay as they are
    assert not ctl.active and sidecar_path(path).read_text() == saved
    win.image_view.show_frame(0)
    ctl.set_active(True)
    assert ctl.active and len(ctl.ann) == 1 and ctl.ann.frame == 0


def test_move_tool_press_off_the_atoms_is_left_to_the_view(qtbot, window, sim_file):
    open_and_run(qtbot, window, sim_file)
    ctl = window.annotate
    ctl.set_active(True)
    ctl.set_tool("move")
    x, y = empty_spot(ctl.ann)
    before = snapshot(ctl.ann)
    send_mouse(window, "press", x, y)
    assert ctl._drag is None and not ctl._press_used
    send_mouse(window, "release", x, y)
    assert snapshot(ctl.ann) == before and ctl.undo_stack.count() == 0
