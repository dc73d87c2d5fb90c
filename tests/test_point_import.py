"""Import of point lists (CSV of atom positions in pixels) as annotations: the Qt-free parser
and Annotations.import_points, then Annotate > Import atoms from a point list… in the window
(pytest-qt, offscreen): the file dialog, one undo step, replace or add, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.analysis.annotations import Annotations
from atomlens.analysis.point_lists import PointListError, parse_point_list, read_point_list
from atomlens.analysis.sidecar import load_sidecar, parse_sidecar, sidecar_text

PT = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "real-labelled" / "pt-on-carbon"


# ----------------------------------------------------------------------------- parser (no Qt)
@pytest.mark.parametrize("text, layout", [
    (" ,X,Y\n1,152,351\n2,174.5,332\n3,10,20\n", "header ,X,Y"),  # ImageJ Results.csv
    ("x,y\n152,351\n174.5,332\n10,20\n", "header x,y"),
    ("152,351\n174.5,332\n10,20\n", "x, y"),
    ("1,152,351\n2,174.5,332\n3,10,20\n", "row number, x, y"),
    ("0\t152\t351\n1\t174.5\t332\n2\t10\t20\n", "row number, x, y"),
    ("# clicked by hand\n\n152 351\n174.5   332\n10 20\n", "x, y"),
    ("\ufeffX;Y;Area\n152;351;3\n174.5;332;4\n10;20;5\n", "header X;Y;Area".replace(";", ",")),
])
def test_parse_layouts(text, layout):
    p = parse_point_list(text, "f.csv")
    assert np.allclose(p.x, [152, 174.5, 10]) and np.allclose(p.y, [351, 332, 20])
    assert p.classes is None and p.score is None
    assert p.layout == layout.replace("\ufeff", "")


def test_parse_atomlens_atoms_csv():
    p = parse_point_list("x,y,class,score,x_nm,y_nm\n1.5,2.5,atom,0.9,0.1,0.2\n3,4,dopant,0.4,,\n")
    assert np.allclose(p.x, [1.5, 3]) and np.allclose(p.y, [2.5, 4])
    assert p.classes == ["atom", "dopant"] and np.allclose(p.score, [0.9, 0.4])


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("x,y\n", "only a header"),
    ("a,b\n1,2\n", "names no 'x' and 'y'"),
    ("x_nm,y_nm\n0.1,0.2\n", "nm only"),
    ("5,1,2\n9,3,4\n", "not a row number"),
    ("1,2,3,4\n", "4 column(s) without a header"),
    ("x,y\n1,2\n3\n", "line 3 has 1 field(s), 2 expected"),
    ("x,y\n1,2\n3,abc\n", "line 3: y is 'abc'"),
    ("x,y\n1,inf\n", "not a finite number"),
    ("x,y,class\n1,2,\n", "line 2: the class is empty"),
])
def test_parse_errors_are_clear(text, words):
    with pytest.raises(PointListError) as e:
        parse_point_list(text, "bad.csv")
    assert "bad.csv" in str(e.value) and words in str(e.value)


def test_read_binary_and_missing(tmp_path):
    f = tmp_path / "img.csv"
    f.write_bytes(b"\x89PNG\x00\x00\x01")
    with pytest.raises(PointListError, match="not a text file"):
        read_point_list(f)
    with pytest.raises(PointListError, match="cannot be read"):
        read_point_list(tmp_path / "none.csv")


def test_pt_label_files_read_as_published():
    """The 11 Pt label files: 481 atoms, all inside their 512x512 images."""
    if not PT.is_dir():
        pytest.skip(f"no Pt data at {PT}")
    files = sorted(PT.glob("*_Results.csv"))
    pts = [read_point_list(f) for f in files]
    assert len(files) == 11 and sum(len(p) for p in pts) == 481
    assert all(p.layout == "header ,X,Y" and p.x.min() >= 0 and p.x.max() < 512 and p.y.max() < 512 for p in pts)


def test_import_points_replace_add_undo_and_sidecar():
    ann = Annotations(x=[5.0, 6.0], y=[5.0, 7.0], cls=1, score=0.7, source="predicted", shape=(40, 50),
                      px_size_nm=0.03, mode="HAADF")
    pts = parse_point_list("x,y,class\n10,20,dopant\n30,5,atom\n")
    before = ann.atom_state()
    old = ann.import_points(pts, replace=True)
    assert np.allclose(ann.x, [10, 30]) and [ann.class_names[c] for c in ann.cls] == ["dopant", "atom"]
    assert ann.confirmed_mask().all() and (ann.source == "user").all() and np.allclose(ann.score, 1)
    assert len(ann.deleted_x) == 0  # replaced, not 'deleted': the list does not say where there is none
    # the sidecar keeps them as confirmed user atoms
    back = parse_sidecar(sidecar_text(ann).encode(), "x.json")
    assert back.confirmed_mask().all() and np.allclose(back.y, [20, 5])
    ann.restore_atom_state(old)
    assert all(np.array_equal(ann.atom_state()[k], before[k]) for k in before)
    ann.import_points(parse_point_list("3,4\n"), default_cls=2, replace=False)
    assert len(ann) == 3 and ann.cls[-1] == 2 and ann.source[-1] == "user" and ann.source[0] == "predicted"


@pytest.mark.parametrize("text, words", [
    ("x,y\n10,20\n60,5\n", "1 of 2 points lie outside this 50x40 px image (point 2 at x=60"),
    ("x,y,class\n10,20,carbon\n", "unknown atom class(es) ['carbon']"),
    ("x,y,class\n10,20,background\n", "unknown atom class(es) ['background']"),
])
def test_import_points_refuses_without_change(text, words):
    ann = Annotations(x=[5.0], y=[5.0], cls=1, score=1.0, source="user", shape=(40, 50))
    before, edits = ann.atom_state(), ann.edits
    with pytest.raises(PointListError) as e:
        ann.import_points(parse_point_list(text, "l.csv"))
    assert words in str(e.value)
    assert ann.edits == edits and all(np.array_equal(ann.atom_state()[k], before[k]) for k in before)


# ----------------------------------------------------------------------------- the window
def _gui():
    pytest.importorskip("pytestqt")
    from _gui_helpers import open_and_wait

    return open_and_wait


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "flat.npy"
    np.save(path, rng.normal(1.0, 0.1, (64, 80)).astype(np.float32))
    return path


def test_menu_import_undo_add_and_errors(qtbot, window, image_file, tmp_path, boxes, monkeypatch):
    from PyQt5 import QtWidgets

    open_and_wait = _gui()
    win, ctl = window, window.annotate
    open_and_wait(qtbot, win, image_file, px_size_nm=0.03)
    menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "Annotate")
    assert ctl.act_import in menu.actions() and ctl.act_import.isEnabled()
    good = tmp_path / "labels.csv"
    good.write_text(" ,X,Y\n1,10,12\n2,40.5,30\n3,70,50\n")
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (asked.append(a[1]) or str(good), "")))
    ctl.act_import.trigger()  # the menu action: file dialog, then the import (Annotate mode starts)
    assert asked == ["Import atoms from a point list"]
    ann = ctl.ann
    assert ctl.active and len(ann) == 3 and np.allclose(ann.x, [10, 40.5, 70]) and ann.confirmed_mask().all()
    assert ctl.undo_stack.count() == 1 and ctl.undo_stack.undoText() == "Import 3 atoms"
    assert len(ctl.view.user.getData()[0]) == 3  # drawn as user atoms
    ctl.undo_stack.undo()
    assert len(ann) == 0
    ctl.undo_stack.redo()
    assert len(ann) == 3

    # with atoms there, the user is asked: add keeps them, replace (undone in one step) does not
    ctl.add_atom(5.0, 5.0)
    monkeypatch.setattr(ctl, "ask_import_mode", lambda n: "add")
    assert ctl.import_point_list(good)
    assert len(ann) == 7
    monkeypatch.setattr(ctl, "ask_import_mode", lambda n: "replace")
    assert ctl.import_point_list(good)
    assert len(ann) == 3
    ctl.undo_stack.undo()
    assert len(ann) == 7
    monkeypatch.setattr(ctl, "ask_import_mode", lambda n: None)  # cancelled
    assert not ctl.import_point_list(good) and len(ann) == 7

    # malformed files and points outside the image: a message naming the problem, nothing changed
    n_steps = ctl.undo_stack.count()
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,oops\n")
    outside = tmp_path / "outside.csv"
    outside.write_text("x,y\n10,10\n500,10\n")
    del boxes[:]
    assert not ctl.import_point_list(bad, replace=True)
    assert not ctl.import_point_list(outside, replace=True)
    assert [t for t, _ in boxes] == ["Atoms not imported"] * 2
    assert "line 3: y is 'oops'" in boxes[0][1] and "outside this 80x64 px image" in boxes[1][1]
    assert len(ann) == 7 and ctl.undo_stack.count() == n_steps

    # saved to the sidecar as confirmed atoms
    assert ctl.save()
    saved = load_sidecar(image_file)
    assert len(saved) == 7 and saved.confirmed_mask().all()
