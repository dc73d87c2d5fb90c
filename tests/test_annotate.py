"""Annotate mode (pytest-qt, offscreen): real mouse clicks and keys add, relabel, delete and
move atoms and mark point and box defects; undo/redo; autosave to the sidecar and reload; the
defect types dialog and the default types kept in the settings; the Model menu."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from atomlens.analysis.annotations import Annotations  # noqa: E402
from atomlens.analysis.sidecar import load_sidecar, sidecar_path
from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: E402

from atomlens.gui.annotate_types import DefectTypesDialog, default_types  # noqa: E402

from _gui_helpers import (  # noqa: E402
    LOAD_MS,
    click,
    make_window,
    open_and_run,
    send_mouse,
    simulate_graphene,
    viewport_rgb,
    widget_pos,
)

# fixtures user_models, boxes, window and sim_file: conftest.py
pytestmark = pytest.mark.usefixtures("user_models")  # an empty user model folder (the real one is never read)


@pytest.fixture(scope="module")
def sim():
    return simulate_graphene((128, 128))


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


# ================================================================= box defects
def start_empty(qtbot, win, path):
    """Open `path` without analysing it and enter annotate mode (no atoms)."""
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        assert win.open_file(path)
    win.annotate.set_active(True)
    assert win.annotate.active and len(win.annotate.ann) == 0
    return win.annotate


def box_of(d):
    return d["x"], d["y"], d["w"], d["h"]


def test_defect_tool_drags_boxes_clicks_points_undo_delete_and_reload(qtbot, window, sim_file):
    win = window
    ctl = start_empty(qtbot, win, sim_file)
    ann, view = ctl.ann, ctl.view
    ctl.tool_actions["defect"].trigger()
    ctl.defect_combo.setCurrentText("dopant")
    colour = {t["name"]: t["colour"] for t in ann.defect_types}["dopant"]

    # press-drag-release: the rectangle is shown in the type's colour while dragging
    send_mouse(win, "press", 20, 30)
    send_mouse(win, "move", 35, 40)
    assert view.band.isVisible() and view.band.pen().color().name() == colour
    r = view.band.rect()
    assert (r.left(), r.top(), r.width(), r.height()) == pytest.approx((20, 30, 15, 10), abs=0.5)
    assert not ann.defects  # nothing is marked before the release
    send_mouse(win, "move", 50, 45)
    send_mouse(win, "release", 50, 45)
    assert not view.band.isVisible()
    assert len(ann.defects) == 1 and ctl.undo_stack.count() == 1
    box = dict(ann.defects[0])
    assert box["type"] == "dopant" and box_of(box) == pytest.approx((35, 37.5, 30, 15), abs=0.5)
    # drawn as a rectangle over the box with its label at the top-left corner; no square marker
    assert len(view.boxes) == 1 and view.boxes[0].pen().color().name() == colour
    assert view.boxes[0].pen().isCosmetic()
    r = view.boxes[0].rect()
    assert (r.left(), r.top(), r.right(), r.bottom()) == pytest.approx(
        (box["x"] - box["w"] / 2, box["y"] - box["h"] / 2, box["x"] + box["w"] / 2, box["y"] + box["h"] / 2))
    assert len(view.labels) == 1 and view.labels[0].textItem.toPlainText() == "dopant"
    assert (view.labels[0].pos().x(), view.labels[0].pos().y()) == pytest.approx((r.left(), r.top()))
    assert len(view.defects.getData()[0]) == 0

    # a click (press and release closer than half the pick radius) still marks a point
    ctl.defect_combo.setCurrentText("vacancy")
    step = 0.2 * view.pick_radius()
    send_mouse(win, "press", 80, 80)
    send_mouse(win, "move", 80 + step, 80)
    send_mouse(win, "release", 80 + step, 80)
    assert len(ann.defects) == 2 and ann.defects[1]["w"] is None and ann.defects[1]["h"] is None
    assert ann.defects[1]["type"] == "vacancy" and abs(ann.defects[1]["x"] - 80) < 0.6
    assert len(view.boxes) == 1 and len(view.defects.getData()[0]) == 1

    # one undo step per defect: undo takes them away one by one, redo brings them back
    qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert ann.defects == [box]
    qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert ann.defects == [] and view.boxes == []
    qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    assert ann.defects == [box] and len(view.boxes) == 1
    qtbot.keyClick(win, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    assert len(ann.defects) == 2

    # Delete tool: a click inside the box (far from its centre) deletes it
    ctl.tool_actions["delete"].trigger()
    assert view.nearest_defect(22, 32) == 0 and view.nearest_defect(52, 32) is None
    click(qtbot, win, 22, 32)
    assert [d["type"] for d in ann.defects] == ["vacancy"] and view.boxes == []
    ctl.undo_stack.undo()
    assert ann.defects[0] == box
    # rubber band: a box is deleted when its centre lies inside, not when the band only overlaps it
    send_mouse(win, "press", 10, 20)
    send_mouse(win, "move", 30, 60)
    assert view.band.pen().color().name() == "#ff4040"
    send_mouse(win, "release", 30, 60)  # covers the box's left part, not its centre
    assert len(ann.defects) == 2
    send_mouse(win, "press", 10, 20)
    send_mouse(win, "move", 40, 50)
    send_mouse(win, "release", 40, 50)
    assert [d["type"] for d in ann.defects] == ["vacancy"]
    ctl.undo_stack.undo()

    # the box survives saving and reloading the sidecar
    assert ctl.save()
    assert load_sidecar(sim_file).defects[0] == box
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        win.open_file(sim_file)
    ctl.set_active(True)
    assert ctl.ann.defects[0] == box and len(ctl.ann.defects) == 2 and len(ctl.view.boxes) == 1


def test_box_defects_are_drawn_over_their_image_pixels_at_two_zooms(qtbot, window, tmp_path):
    h, w = 60, 80
    path = tmp_path / "flat.npy"
    np.save(path, np.zeros((h, w), np.float32))
    win = window
    ctl = start_empty(qtbot, win, path)
    ctl.add_defect(40, 30, "dopant", w=20, h=10)  # box from (30, 25) to (50, 35)
    vb = win.image_view.viewbox
    for rect in (QtCore.QRectF(-0.5, -0.5, w, h), QtCore.QRectF(25, 20, 30, 20)):
        vb.setRange(rect, padding=0)
        qtbot.wait(50)
        rgb = viewport_rgb(win)
        red = (rgb[..., 0] > 200) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)  # #ff5050
        tl, br = widget_pos(win, 30, 25), widget_pos(win, 50, 35)
        row, col = (tl.y() + br.y()) // 2, (tl.x() + br.x()) // 2
        xs = np.flatnonzero(red[row])  # across the middle: the left and right edges only
        assert xs.size and abs(xs.min() - tl.x()) <= 2 and abs(xs.max() - br.x()) <= 2
        assert not red[row, tl.x() + 4:br.x() - 3].any()  # an outline, not a filled box
        ys = np.flatnonzero(red[tl.y() - 3:br.y() + 4, col]) + tl.y() - 3
        assert ys.size and abs(ys.min() - tl.y()) <= 2 and abs(ys.max() - br.y()) <= 2
        assert 2 <= xs.size <= 8  # cosmetic pen: a few screen px thick at every zoom


# ================================================================= defect types
def test_defect_types_dialog_validates_and_gives_the_new_list(qtbot, monkeypatch):
    types = [{"name": "vacancy", "colour": "#ffdc00"}, {"name": "dopant", "colour": "#ff5050"}]
    dlg = DefectTypesDialog(types, used={"vacancy": 2})
    qtbot.addWidget(dlg)
    assert dlg.list.count() == 2 and "2 defects" in dlg.list.item(0).text()
    assert dlg.list.item(1).icon().pixmap(14, 14).toImage().pixelColor(7, 7).name() == "#ff5050"
    # names: non-empty, unique (ignoring case)
    assert not dlg.add_type("  ") and "name" in dlg.message.text()
    assert not dlg.add_type("Vacancy") and "already" in dlg.message.text()
    assert dlg.add_type("kink", "#123456") and dlg.message.text() == ""
    assert dlg.types()[-1] == {"name": "kink", "colour": "#123456"} and dlg.list.count() == 3
    assert dlg.list.item(2).icon().pixmap(14, 14).toImage().pixelColor(7, 7).name() == "#123456"
    assert not dlg.rename_type("vacancy", "dopant") and not dlg.rename_type("vacancy", "")
    assert dlg.rename_type("vacancy", "V1") and dlg.rename_type("V1", "V2")
    assert dlg.renames() == {"vacancy": "V2"} and "was vacancy" in dlg.list.item(0).text()
    # a used type is not removed (no silent loss); an unused one is
    assert not dlg.remove_type("V2") and "used by 2 defects" in dlg.message.text()
    assert "V2" in dlg.names()
    assert dlg.remove_type("dopant") and dlg.names() == ["V2", "kink"]
    assert not dlg.set_colour("kink", "no colour") and dlg.types()[1]["colour"] == "#123456"
    assert dlg.set_colour("kink", "#00ff00")
    # the buttons ask for names and colours
    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: ("edge2", True))
    monkeypatch.setattr(QtWidgets.QColorDialog, "getColor", lambda *a, **k: QtGui.QColor("#abcdef"))
    dlg.add_button.click()
    assert dlg.types()[-1] == {"name": "edge2", "colour": "#abcdef"} and dlg.current_name() == "edge2"
    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: ("edge3", True))
    dlg.rename_button.click()
    monkeypatch.setattr(QtWidgets.QColorDialog, "getColor", lambda *a, **k: QtGui.QColor("#010203"))
    dlg.colour_button.click()
    assert dlg.types()[-1] == {"name": "edge3", "colour": "#010203"}
    dlg.remove_button.click()
    assert dlg.names() == ["V2", "kink"]
    dlg.accept()
    assert dlg.result() == QtWidgets.QDialog.Accepted
    assert dlg.types() == [{"name": "V2", "colour": "#ffdc00"}, {"name": "kink", "colour": "#00ff00"}]


def test_edit_defect_types_renames_defects_is_one_undo_step_and_is_the_next_default(
        qtbot, tmp_path, sim, sim_file, boxes, monkeypatch):
    win = make_window(qtbot, tmp_path)
    ctl = start_empty(qtbot, win, sim_file)
    ann = ctl.ann
    original = [dict(t) for t in ann.defect_types]
    assert "V" not in [t["name"] for t in original]
    menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "A&nnotate")
    assert ctl.act_types in menu.actions() and ctl.act_types in ctl.toolbar.actions()
    ctl.set_tool("defect")
    ctl.defect_combo.setCurrentText("vacancy")
    click(qtbot, win, 20, 20)
    click(qtbot, win, 40, 20)
    ctl.add_defect(60, 60, "hole", w=10, h=8)
    seen = {}

    def fake_exec(dlg):  # what the user does in the dialog
        seen["used"] = dict(dlg.used)
        assert dlg.rename_type("vacancy", "V")
        assert dlg.add_type("kink", "#123456")
        assert dlg.set_colour("hole", "#0000ff")
        seen["removed"] = dlg.remove_type("V")
        seen["message"] = dlg.message.text()
        dlg.accept()
        return dlg.result()

    monkeypatch.setattr(DefectTypesDialog, "exec_", fake_exec)
    ctl.act_types.trigger()
    assert seen["used"] == {"vacancy": 2, "hole": 1}
    assert not seen["removed"] and "used by 2 defects" in seen["message"]
    edited = [dict(t, name="V") if t["name"] == "vacancy" else dict(t, colour="#0000ff") if t["name"] == "hole"
              else dict(t) for t in original] + [{"name": "kink", "colour": "#123456"}]
    assert ann.defect_types == edited and ctl.undo_stack.count() == 4
    assert [d["type"] for d in ann.defects] == ["V", "V", "hole"]
    assert ctl.defect_combo.currentText() == "V" and ctl.defect_combo.findText("kink") >= 0
    assert sorted(lab.textItem.toPlainText() for lab in ctl.view.labels) == ["V", "V", "hole"]
    assert ctl.view.boxes[0].pen().color().name() == "#0000ff" and ctl.defect_colour() == ann.defect_types[0]["colour"]
    assert default_types(win.settings) == edited
    # removing a type still in use through the API is refused and changes nothing
    with pytest.raises(ValueError, match="'V'"):
        ctl.set_defect_types([t for t in edited if t["name"] != "V"])
    assert ann.defect_types == edited and ctl.undo_stack.count() == 4

    # one undo step: the types, the defects' types and the default go back; redo again
    ctl.undo_stack.undo()
    assert ann.defect_types == original and [d["type"] for d in ann.defects] == ["vacancy", "vacancy", "hole"]
    assert ctl.defect_combo.currentText() == "vacancy" and default_types(win.settings) == original
    ctl.undo_stack.redo()
    assert ann.defect_types == edited and [d["type"] for d in ann.defects] == ["V", "V", "hole"]
    assert ctl.save() and load_sidecar(sim_file).defect_types == edited
    win.close()

    # the next image annotated (a new window, the same settings file) starts with the user's types
    other = tmp_path / "other.npy"
    np.save(other, sim.image[:64, :64])
    win2 = make_window(qtbot, tmp_path)
    ctl2 = start_empty(qtbot, win2, other)
    assert ctl2.ann.defect_types == edited
    assert [ctl2.defect_combo.itemText(i) for i in range(ctl2.defect_combo.count())] == [t["name"] for t in edited]
    # ... also when it starts from an analysis result
    third = tmp_path / "third.npy"
    np.save(third, sim.image)
    open_and_run(qtbot, win2, third)
    ctl2.set_active(True)
    assert len(ctl2.ann) > 20 and ctl2.ann.defect_types[:len(edited)] == edited

    # without annotations the dialog edits the default only
    ctl2.finish()
    monkeypatch.setattr(DefectTypesDialog, "exec_", lambda dlg: dlg.add_type("extra") and 1)
    assert ctl2.ann is None and ctl2.act_types.isEnabled() and ctl2.edit_defect_types()
    assert [t["name"] for t in default_types(win2.settings)] == [t["name"] for t in edited] + ["extra"]


def test_unwritable_folder_uses_user_data_and_a_failed_save_is_told_once(qtbot, window, sim_file, boxes,
                                                                         user_models, monkeypatch):
    from atomlens.analysis import sidecar as mod

    win = window
    open_and_run(qtbot, win, sim_file)
    ctl = win.annotate
    ctl.set_active(True)
    real_write = mod.write_sidecar_text
    folder = str(sim_file.parent)

    def read_only(path, text):  # the image's folder cannot be written (a read-only share)
        if str(path).startswith(folder + "/") and "userdata" not in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, text)

    monkeypatch.setattr(mod, "write_sidecar_text", read_only)
    ctl.add_atom(10.0, 12.0)
    with qtbot.waitSignal(ctl.saved) as s:
        assert ctl.save()
    fallback = mod.fallback_sidecar_path(sim_file, ctl.ann.image_sha256)
    assert s.args == [str(fallback)] and fallback.parent == user_models.parent / "annotations"
    assert not sidecar_path(sim_file).exists() and "cannot be written" in win.statusBar().currentMessage()
    # reopened: the annotations come back from the user data folder
    n = len(ctl.ann)
    ctl.finish()
    ctl.set_active(True)
    assert len(ctl.ann) == n and (ctl.ann.x == 10.0).any()

    def broken(path, text):  # nowhere can be written (a full disk)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "write_sidecar_text", broken)
    ctl.add_atom(20.0, 22.0)
    assert not ctl.save() and not ctl.save()
    told = [b for b in boxes if b[0] == "Annotations not saved"]
    assert len(told) == 1 and "stay in memory" in told[0][1]  # one box, not one per autosave
    assert "No space left" in win.statusBar().currentMessage() and len(ctl.ann) == n + 1
    monkeypatch.setattr(mod, "write_sidecar_text", real_write)
    assert ctl.save()  # space again: saved, and a later failure would be told again
    assert not ctl._save_failed_shown


def test_images_annotated_earlier_in_the_session_are_offered_for_training(qtbot, window, sim, sim_file, tmp_path):
    win = window
    open_and_run(qtbot, win, sim_file)
    ctl = win.annotate
    ctl.set_active(True)
    ctl.add_atom(5.0, 6.0)
    first = ctl.ann
    pixels = win.image_view.current_frame().copy()
    other = tmp_path / "other.npy"
    np.save(other, sim.image[:96, :112] * 2.0)  # another image of the session
    open_and_run(qtbot, win, other)
    assert ctl.ann is None
    ctx = ctl.training_context()  # the closed image is still offered, with its own pixels
    assert len(ctx) == 1 and ctx[0]["annotations"] is first and ctx[0]["name"] == "graphene.npy"
    np.testing.assert_array_equal(ctx[0]["image"], pixels)
    ctl.set_active(True)
    ctl.add_atom(7.0, 8.0)
    ctx = ctl.training_context()
    assert [d["name"] for d in ctx] == ["other.npy", "graphene.npy"]  # the open image first
    assert ctx[0]["image"].shape == (96, 112)
    # reopening the first image does not list it twice; the retrain dialog shows both
    open_and_run(qtbot, win, sim_file)
    ctl.set_active(True)
    assert [d["name"] for d in ctl.training_context()] == ["graphene.npy", "other.npy"]
    win.act_retrain.trigger()
    w = win._retrain_dialog.settings_widget
    assert w.real_list.count() == 2 and len(w.annotated_images()) == 2
    win._retrain_dialog.close()


def test_escape_cancels_a_drag_and_not_the_analysis(qtbot, window, sim_file):
    win = window
    open_and_run(qtbot, win, sim_file)
    ctl = win.annotate
    ctl.set_active(True)
    ann = ctl.ann
    n0, x0, y0 = len(ann), float(ann.x[5]), float(ann.y[5])
    ctl.set_tool("move")
    send_mouse(win, "press", x0, y0)
    send_mouse(win, "move", x0 + 6, y0 + 4)
    assert ann.x[5] == pytest.approx(x0 + 6, abs=0.5)  # the preview follows the mouse
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_Escape)
    send_mouse(win, "release", x0 + 6, y0 + 4)
    assert (ann.x[5], ann.y[5]) == (x0, y0) and ctl.undo_stack.count() == 0
    ctl.set_tool("delete")  # a rubber band cancelled: nothing deleted
    send_mouse(win, "press", 20, 20)
    send_mouse(win, "move", 90, 90)
    assert ctl.view.band.isVisible()
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_Escape)
    send_mouse(win, "release", 90, 90)
    assert len(ann) == n0 and not ctl.view.band.isVisible() and ctl.undo_stack.count() == 0
    assert win.analysis.current_result() is not None  # Esc did not cancel or clear the analysis


def test_annotate_toolbar_is_not_restored_outside_annotate_mode(qtbot, tmp_path, sim_file, boxes, user_models):
    """The window state kept in the settings (saved while annotating) must not bring the
    Annotate toolbar back, empty, in the next session; Annotate mode shows it filled."""
    win = make_window(qtbot, tmp_path)
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS):
        win.open_file(sim_file)
    win.annotate.set_active(True)
    assert win.annotate.toolbar.isVisible() and win.annotate.class_combo.count() > 0
    win.close()  # saves the window state with the toolbar shown

    win2 = make_window(qtbot, tmp_path)
    ctl = win2.annotate
    assert not ctl.active and not ctl.toolbar.isVisible()
    assert not ctl.toolbar.toggleViewAction().isVisible()  # not offered in the toolbars' menu either
    with qtbot.waitSignal(win2.resultChanged, timeout=LOAD_MS):
        win2.open_file(sim_file)
    ctl.set_active(True)
    assert ctl.toolbar.isVisible() and ctl.class_combo.count() > 0 and ctl.defect_combo.count() > 0
    ctl.set_active(False)
    assert not ctl.toolbar.isVisible()
