"""Exports and results after corrections in Annotate mode ("never silently wrong"): CSV, JSON
and HyperSpy files hold the corrected atoms with their origin, byte-identical files when
nothing was corrected, snapshots in Annotate mode show the annotated atoms, the Results dock
follows every edit and undo, and notes show apostrophes as typed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from _gui_helpers import (
    click,
    open_and_run,
    send_mouse,
    simulate_graphene,
)
from atomlens.analysis.annotations import Annotations
from atomlens.analysis.corrections import atom_origins, corrected_result
from atomlens.workflows.export import export_csv, export_json, to_hspy
from PyQt5 import QtCore, QtGui
from test_export import small_result

pytestmark = pytest.mark.usefixtures("user_models")


@pytest.fixture(scope="module")
def sim():
    return simulate_graphene((128, 128))


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _edited(res):
    """Annotations of `res` with atom 0 relabelled to dopant, a vacancy added at (20, 25),
    atom 3 moved by (1, 1), atom 4 deleted and a vacancy defect added."""
    ann = Annotations.from_result(res)
    ann.set_class([0], 2)
    ann.add_atom(20.0, 25.0, 3)
    ann.move_atom(3, 45.0, 31.0)
    ann.remove_atoms([4])
    ann.add_defect({"x": 20.0, "y": 25.0, "type": "vacancy"})
    return ann


# ------------------------------------------------------------------ files (no window)
def test_corrected_csv_json_hspy_hold_the_corrections(tmp_path):
    res = small_result()
    c = corrected_result(res, _edited(res))
    assert c is not res and c.info["notes"] == ["a note"]
    assert list(c.info["corrections"]["origin"]) == ["relabelled", "predicted", "predicted", "moved", "added"]

    rows = _rows(export_csv(c, tmp_path / "a.atoms.csv"))
    assert rows[0] == ["x", "y", "class", "score", "x_nm", "y_nm", "origin"]
    table = {(r[2], r[6]): r for r in rows[1:]}
    assert len(rows) == 6  # 5 atoms - 1 deleted + 1 added
    assert table[("dopant", "relabelled")][:2] == ["5.000", "6.000"]
    added = table[("vacancy", "added")]
    assert added[:4] == ["20.000", "25.000", "vacancy", "1.0000"]  # a user atom scores 1.0
    assert added[4:6] == [f"{1.5 + 20 * 0.02:.5f}", f"{-0.5 + 25 * 0.02:.5f}"]
    assert table[("vacancy", "moved")][:2] == ["45.000", "31.000"]
    # the first six columns are formatted exactly as `atomlens detect` formats them
    c.atoms.to_csv(tmp_path / "plain.csv", px_size_nm=c.px_size_nm, offset_nm=c.offset_nm)
    assert [r[:6] for r in rows] == _rows(tmp_path / "plain.csv")

    d = json.loads(export_json(c, tmp_path / "a.json").read_text())
    assert d["counts"] == {"atom": 1, "dopant": 2, "vacancy": 2}
    assert d["atoms"]["origin"] == ["relabelled", "predicted", "predicted", "moved", "added"]
    assert d["corrections"]["deleted_atoms"] == 1 and d["corrections"]["atoms"]["added"] == 1
    assert d["defects"]["type"] == ["dopant", "vacancy"] and d["defects"]["origin"] == ["predicted", "added"]
    assert d["defects"]["score"] == [0.7, 1.0]

    hs = pytest.importorskip("hyperspy.api")
    img = np.zeros(res.shape, np.float32)
    s = hs.load(to_hspy(c, img, tmp_path / "a.hspy"))
    md = s.metadata.AtomLens.atoms
    assert list(md.origin) == ["relabelled", "predicted", "predicted", "moved", "added"]
    assert list(md["class"]) == ["dopant", "dopant", "atom", "vacancy", "vacancy"]
    vac = s.metadata.Markers.vacancy.kwargs["offsets"]
    np.testing.assert_allclose(sorted(map(tuple, vac)), sorted([(1.5 + 45 * 0.02, -0.5 + 31 * 0.02),
                                                                (1.5 + 20 * 0.02, -0.5 + 25 * 0.02)]))
    assert list(s.metadata.AtomLens.defects.origin) == ["predicted", "added"]
    assert json.loads(s.metadata.AtomLens.summary)["corrections"]["deleted_atoms"] == 1


def test_no_corrections_writes_todays_files_byte_for_byte(tmp_path):
    res = small_result()
    export_csv(res, tmp_path / "raw.csv")
    export_json(res, tmp_path / "raw.json")
    ann = Annotations.from_result(res)
    assert corrected_result(res, ann) is res
    # an edit undone (as the undo stack does it: class and source put back)
    old = ann.set_class([2], 3)
    ann.set_class([2], old)
    ann.source[2] = "predicted"
    for name, write in (("csv", export_csv), ("json", export_json)):
        write(corrected_result(res, ann), tmp_path / f"undone.{name}")
        assert (tmp_path / f"undone.{name}").read_bytes() == (tmp_path / f"raw.{name}").read_bytes()
    assert _rows(tmp_path / "raw.csv")[0] == ["x", "y", "class", "score", "x_nm", "y_nm"]
    # annotations of another frame or image size are not applied
    ann.set_class([0], 3)
    assert corrected_result(res, ann) is not res
    ann.frame = 1
    assert corrected_result(res, ann) is res


def test_origins_by_matching():
    res = small_result()
    ann = Annotations.from_result(res)
    ann.move_atom(1, 30.0, 30.0)  # far from where it was (and from every atom): added + deleted
    ann.set_class([2], 1)  # re-classed to the class it had: unchanged
    origin, deleted = atom_origins(ann, res.atoms)
    assert list(origin) == ["predicted", "added", "predicted", "predicted", "predicted"] and deleted == 1
    origin, deleted = atom_origins(ann, res.atoms, move_tol_px=25.0)
    assert origin[1] == "moved" and deleted == 0


# ------------------------------------------------------------------ the window
def _counts(win):
    """The dock's counts, once the edits made are shown (``results.result`` brings it up to date)."""
    assert win.results.result is win.results.dock.result
    return win.results.dock.result.counts()


def test_window_exports_snapshot_and_dock_follow_the_corrections(qtbot, window, sim_file, tmp_path):
    from atomlens.gui.snapshot import render_qimage

    win = window
    raw = open_and_run(qtbot, win, sim_file)
    win.results.export_csv(str(tmp_path / "before.csv"))
    n_vac0, n_dop0 = raw.counts()["vacancy"], raw.counts()["dopant"]
    ctl = win.annotate
    ctl.set_active(True)
    ann = ctl.ann
    n0 = len(ann)
    ctl.timer.stop()

    # relabel a predicted atom to vacancy with the key: the dock counts it at once; undo, redo
    j = int(np.flatnonzero(ann.cls == 1)[3])
    send_mouse(win, "move", ann.x[j], ann.y[j], button=None)
    assert ctl.hovered == j
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_3)
    qtbot.waitUntil(lambda: win.results.dock.result.counts()["vacancy"] == n_vac0 + 1, timeout=3000)
    assert _counts(win)["vacancy"] == n_vac0 + 1
    assert win.results.dock.atom_model.origin(j) == "relabelled"
    assert f"<b>{n_vac0 + 1}</b>&nbsp;vacancy" in win.results.dock.counts_label.text()
    ctl.undo_stack.undo()
    assert _counts(win)["vacancy"] == n_vac0 and win.results.result is raw
    ctl.undo_stack.redo()
    assert _counts(win)["vacancy"] == n_vac0 + 1
    # relabel another to dopant, add a vacancy with a click (Add tool, class 3)
    k = int(np.flatnonzero(ann.cls == 1)[8])
    send_mouse(win, "move", ann.x[k], ann.y[k], button=None)
    qtbot.keyClick(win.image_view.graphics, QtCore.Qt.Key_2)
    ctl.class_combo.setCurrentIndex(2)
    ctl.tool_actions["add"].trigger()
    xs, ys = 64.0, 64.0
    while np.min(np.hypot(ann.x - xs, ann.y - ys)) < 4:
        xs += 1.0
    send_mouse(win, "move", 5, 5, button=None)  # nothing hovered
    click(qtbot, win, xs, ys)
    assert len(ann) == n0 + 1 and ann.class_names[ann.cls[-1]] == "vacancy"
    assert _counts(win) == {**raw.counts(), "atom": raw.counts()["atom"] - 2, "dopant": n_dop0 + 1,
                            "vacancy": n_vac0 + 2}
    assert win.results.dock.atom_model.rowCount() == n0 + 1
    assert len(win.results.dock.nn_values) == n0 + 1  # the histogram is of the corrected atoms

    # CSV, JSON and HyperSpy files hold the corrected atoms and their origins
    win.results.export_csv(str(tmp_path / "after.csv"))
    rows = _rows(tmp_path / "after.csv")
    assert rows[0][-1] == "origin" and len(rows) == n0 + 2
    by_origin = {}
    for r in rows[1:]:
        by_origin.setdefault(r[6], []).append(r)
    assert [(r[2]) for r in by_origin["relabelled"]] == ["vacancy", "dopant"]
    (added,) = by_origin["added"]
    assert added[2] == "vacancy" and abs(float(added[0]) - ann.x[-1]) < 1e-3
    assert len(by_origin["predicted"]) == n0 - 2
    assert len(_rows(tmp_path / "before.csv")) == n0 + 1 and _rows(tmp_path / "before.csv")[0][-1] == "y_nm"
    win.results.export_json(str(tmp_path / "after.json"))
    d = json.loads((tmp_path / "after.json").read_text())
    assert d["counts"]["vacancy"] == n_vac0 + 2 and d["atoms"]["origin"].count("added") == 1
    hs = pytest.importorskip("hyperspy.api")
    win.results.export_hspy(str(tmp_path / "after.hspy"))
    s = hs.load(tmp_path / "after.hspy")
    assert list(s.metadata.AtomLens.atoms.origin).count("relabelled") == 2
    assert len(s.metadata.Markers.vacancy.kwargs["offsets"]) == n_vac0 + 2

    # a snapshot in Annotate mode shows the atoms (the user's as filled diamonds)
    spec = win.results.snapshot_spec()
    assert spec.atoms is not None and len(spec.atoms) == n0 + 1 and spec.atom_user.sum() == 3
    assert win.results.export_snapshot("png", str(tmp_path / "snap.png"))
    snap = QtGui.QImage(str(tmp_path / "snap.png")).convertToFormat(QtGui.QImage.Format_ARGB32)
    spec.atoms, spec.atom_user, spec.defects, spec.defect_boxes = None, None, None, None
    bare = render_qimage(spec).convertToFormat(QtGui.QImage.Format_ARGB32)

    def rgb(q):
        ptr = q.constBits()
        ptr.setsize(q.sizeInBytes())
        return np.frombuffer(ptr, np.uint8).reshape(q.height(), q.width(), 4)[..., 2::-1].astype(int)

    a, b = rgb(snap), rgb(bare)
    changed = np.abs(a - b).max(axis=2) > 30
    assert changed.sum() > 5 * (n0 + 1)  # a marker outline around every atom
    cx, cy = round(float(ann.x[-1])), round(float(ann.y[-1]))
    assert changed[cy, cx]  # the added vacancy's diamond is filled
    assert a[cy, cx, 0] > 150 and a[cy, cx, 1] > 120 and a[cy, cx, 2] < 110  # in the vacancy yellow
    svg_path = tmp_path / "snap.svg"
    assert win.results.export_snapshot("svg", str(svg_path))
    text = svg_path.read_text()
    assert text.count("<polygon") == 3 and text.count("<circle") == n0 - 2

    # out of Annotate mode the layers show the corrected atoms too (clicks, table rows agree)
    ctl.set_active(False)
    assert len(win.overlays.atoms.atoms) == n0 + 1 and win.overlays.atoms.visible
    spec = win.results.snapshot_spec()
    assert len(spec.atoms) == n0 + 1
    # undoing everything gives back the network's atoms and today's files
    ctl.set_active(True)
    while ctl.undo_stack.canUndo():
        ctl.undo_stack.undo()
    assert win.results.result is raw and _counts(win) == raw.counts()
    win.results.export_csv(str(tmp_path / "undone.csv"))
    assert (tmp_path / "undone.csv").read_bytes() == (tmp_path / "before.csv").read_bytes()
    ctl.set_active(False)
    assert win.overlays.atoms.atoms is raw.atoms


def _shown_text(label) -> str:
    """What a QLabel displays: its text rendered as rich text when the label takes it as such."""
    text = label.text()
    fmt = label.textFormat()
    if fmt == QtCore.Qt.RichText or (fmt == QtCore.Qt.AutoText and QtCore.Qt.mightBeRichText(text)):
        doc = QtGui.QTextDocument()
        doc.setHtml(text)
        return doc.toPlainText()
    return text


def test_notes_show_apostrophes_as_typed(qtbot, window):
    stripes = ("stripes: at the scale of the atoms found, the image's strongest periodicity is one set "
               "of stripes")
    notes = [stripes, "Tom & Jerry's \"lattice\"", "a < b & c > d"]
    for dock in (window.analysis_dock, window.info_dock):
        label = dock.notes_label if dock is window.info_dock else dock.notes
        for note in notes:  # one note alone, as the stripes warning usually is
            dock.set_notes([note])
            assert _shown_text(label) == "⚠ " + note
        dock.set_notes(notes)
        assert _shown_text(label) == "\n".join("⚠ " + n for n in notes)
    window.analysis_dock.set_px_notice("the image's pixel size")
    assert _shown_text(window.analysis_dock.px_notice) == "the image's pixel size"
