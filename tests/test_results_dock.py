"""Results dock: counts, sortable atom table, defects, bond-length histogram, neighbours,
and the local lattice distortion behind its distortion plot."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5 import QtCore

from atomlens.analysis.atoms import AtomList
from atomlens.analysis.cam import DefectList
from atomlens.analysis.pipeline import AnalysisResult
from atomlens.analysis.strain import first_shell, local_distortion
from atomlens.gui.atom_table import SORT_ROLE
from atomlens.gui.results_dock import ResultsDock

BOND_PX = 10.0
PX_NM = 0.0142  # 10 px bonds = 142 pm, graphene's C-C bond


def honeycomb(bond_px=BOND_PX, nx=12, ny=10, origin=(8.0, 8.0)):
    """(n, 2) positions of a graphene-like honeycomb lattice with bond length `bond_px`."""
    a = bond_px * np.sqrt(3)
    a1, a2 = np.array([a, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2])
    basis = [np.zeros(2), np.array([a / 2, bond_px / 2])]
    pts = [i * a1 + j * a2 + b - (j // 2) * a1 for i in range(nx) for j in range(ny) for b in basis]
    return np.array(pts) + np.asarray(origin)


def make_result(xy, px_size_nm=PX_NM, defects=True, seed=0):
    rng = np.random.default_rng(seed)
    n = len(xy)
    cls = np.ones(n, np.int64)
    cls[::7] = 2  # dopants
    cls[3::11] = 3  # vacancies
    atoms = AtomList(xy[:, 0], xy[:, 1], cls, rng.permutation(n) / n + 0.001)
    d = None
    if defects:
        d = DefectList([20.0, 50.0, 80.0], [30.0, 40.0, 60.0], np.array(["vacancy", "dopant", "vacancy"]),
                       [0.4, 0.9, 0.6])
    H = int(xy[:, 1].max() + 10)
    W = int(xy[:, 0].max() + 10)
    return AnalysisResult(atoms=atoms, prob=None, defects=d, cam=None, info={"model": "test", "notes": []},
                          px_size_nm=px_size_nm, offset_nm=(1.0, 2.0), threshold=0.5, refine="centroid",
                          frame=0, shape=(H, W))


@pytest.fixture
def dock(qtbot):
    w = ResultsDock()
    qtbot.addWidget(w)
    w.resize(500, 700)
    w.show()
    return w


def test_counts_table_and_histogram(dock):
    res = make_result(honeycomb())
    dock.set_result(res)
    n = len(res.atoms)
    counts = res.counts()
    assert counts["dopant"] == len(range(0, n, 7)) - len(set(range(0, n, 7)) & set(range(3, n, 11)))
    text = dock.counts_label.text()
    assert f"<b>{n}</b> atoms" in text
    for name, k in counts.items():
        assert f"<b>{k}</b>&nbsp;{name}" in text
    assert "#ff5050" in text  # dopants in their class colour
    assert dock.atom_model.rowCount() == n
    # nearest-neighbour histogram in pm, median = the bond length
    assert dock.nn_unit == "pm"
    assert dock.nn_median == pytest.approx(BOND_PX * PX_NM * 1000, abs=1e-6)
    edges, counts_h = dock.hist_curve.getData()
    k = np.searchsorted(edges, 142.0, side="right") - 1
    assert counts_h[k] == n  # every atom has a bond of exactly 142 pm
    assert dock.median_line.label.toPlainText() == "median 142.0 pm"
    assert "pm" in dock.hist_plot.getAxis("bottom").labelText
    # the defect list
    assert dock.defect_table.rowCount() == 3
    assert dock.tabs.tabText(1) == "Defects (3)"


def test_sort_by_score_and_click_emits_source_index(dock, qtbot):
    res = make_result(honeycomb())
    dock.set_result(res)
    dock.table.sortByColumn(2, QtCore.Qt.DescendingOrder)
    m = dock.atom_model
    scores = [m.data(m.index(r, 2), SORT_ROLE) for r in range(m.rowCount())]
    assert scores == sorted(scores, reverse=True)
    assert int(m.data(m.index(0, 0))) == int(np.argmax(res.atoms.score))
    # click the third row: the signal carries the index into result.atoms, not the row
    target = int(np.argsort(-res.atoms.score)[2])
    rect = dock.table.visualRect(m.index(2, 1))
    with qtbot.waitSignal(dock.atomActivated, timeout=2000) as sig:
        qtbot.mouseClick(dock.table.viewport(), QtCore.Qt.LeftButton, pos=rect.center())
    assert sig.args == [target]
    # ...and lists its neighbours
    assert dock.neigh_label.text().startswith(f"Atom {target} ")
    # sorting ascending by x and filtering by class keep the mapping right
    dock.class_filter.setCurrentText("dopant")
    dock.table.sortByColumn(3, QtCore.Qt.AscendingOrder)
    rows = [m.atom_index(r) for r in range(m.rowCount())]
    assert set(rows) == set(np.nonzero(res.atoms.cls == 2)[0])
    xs = res.atoms.x[rows]
    assert np.all(np.diff(xs) >= 0)
    emitted = []
    dock.atomActivated.connect(emitted.append)
    rect = dock.table.visualRect(m.index(1, 0))
    qtbot.mouseClick(dock.table.viewport(), QtCore.Qt.LeftButton, pos=rect.center())
    assert emitted == [rows[1]]


def test_neighbours_of_graphene_atom(dock, qtbot):
    xy = honeycomb()
    res = make_result(xy)
    dock.set_result(res)
    centre = int(np.argmin(np.hypot(*(xy - xy.mean(0)).T)))
    with qtbot.waitSignal(dock.neighboursShown) as sig:
        out = dock.show_neighbours(centre)
    assert len(out) == 3
    assert all(d == pytest.approx(142.0, abs=1e-6) for _, d in out)
    assert sig.args[0] == centre and sorted(sig.args[1].tolist()) == sorted(j for j, _ in out)
    assert dock.neigh_list.topLevelItemCount() == 3
    assert dock.neigh_list.topLevelItem(0).text(2) == "142.0 pm"
    # the neighbours' directions are 120 degrees apart
    ang = sorted(float(dock.neigh_list.topLevelItem(i).text(3).rstrip("°")) % 360 for i in range(3))
    assert np.diff(ang) == pytest.approx([120, 120], abs=1)
    with pytest.raises(IndexError):
        dock.show_neighbours(len(xy))


def test_select_atom_from_view_does_not_emit(dock, qtbot):
    res = make_result(honeycomb())
    dock.set_result(res)
    dock.table.sortByColumn(2, QtCore.Qt.AscendingOrder)
    emitted = []
    dock.atomActivated.connect(emitted.append)
    dock.select_atom(17)
    assert emitted == []
    assert dock.atom_model.atom_index(dock.table.currentIndex().row()) == 17
    assert dock.neigh_label.text().startswith("Atom 17 ")


def test_defect_click_after_sort(dock, qtbot):
    res = make_result(honeycomb())
    dock.set_result(res)
    dock.defect_table.sortItems(1, QtCore.Qt.DescendingOrder)  # by score
    assert [dock.defect_table.item(r, 1).text() for r in range(3)] == ["0.900", "0.600", "0.400"]
    rect = dock.defect_table.visualItemRect(dock.defect_table.item(0, 0))
    with qtbot.waitSignal(dock.defectActivated) as sig:
        qtbot.mouseClick(dock.defect_table.viewport(), QtCore.Qt.LeftButton, pos=rect.center())
    assert sig.args == [1]  # the dopant, defects[1]


def test_uncalibrated_and_empty(dock):
    res = make_result(honeycomb(), px_size_nm=None, defects=False)
    dock.set_result(res)
    assert dock.nn_unit == "px" and dock.nn_median == pytest.approx(BOND_PX)
    assert "px" in dock.hist_plot.getAxis("bottom").labelText
    assert "Uncalibrated" in dock.counts_label.text()
    assert dock.atom_model.data(dock.atom_model.index(0, 5)) == ""
    assert dock.show_neighbours(30)[0][1] == pytest.approx(BOND_PX)
    assert dock.tabs.tabText(1) == "Defects"
    dock.set_result(None)
    assert dock.atom_model.rowCount() == 0 and dock.defect_table.rowCount() == 0
    assert dock.counts_label.text() == "No analysis yet."


def test_table_handles_20000_atoms_quickly(dock):
    import time

    rng = np.random.default_rng(1)
    n = 20000
    atoms = AtomList(rng.random(n) * 2000, rng.random(n) * 2000, rng.integers(1, 4, n), rng.random(n))
    res = AnalysisResult(atoms, None, None, None, {"notes": []}, 0.01, (0.0, 0.0), 0.5, "centroid", 0, (2000, 2000))
    t = time.perf_counter()
    dock.set_result(res)
    dock.table.sortByColumn(2, QtCore.Qt.DescendingOrder)
    dock.table.sortByColumn(4, QtCore.Qt.AscendingOrder)
    assert time.perf_counter() - t < 3.0
    m = dock.atom_model
    assert m.atom_index(0) == int(np.argmin(res.atoms.y))


# ------------------------------------------------------------------ local distortion (core)
def test_first_shell_and_distortion_gradient():
    xy = honeycomb(nx=16, ny=14)
    _dist, idx, cutoff = first_shell(xy)
    assert cutoff == pytest.approx(1.3 * BOND_PX)
    nb = (idx >= 0).sum(1)
    assert nb.max() == 3 and np.median(nb) == 3  # graphene: 3 bonds, 2nd shell (1.73 x) excluded
    assert np.all(np.abs(local_distortion(xy)) < 1e-9)  # a perfect lattice is undistorted
    # stretch the lattice more and more towards +x: bonds get longer with x
    x0, w = xy[:, 0].min(), np.ptp(xy[:, 0])
    u = (xy[:, 0] - x0) / w
    warped = xy.copy()
    warped[:, 0] = x0 + w * (u + 0.05 * u ** 2)  # local stretch along x grows from 0 to 10 %
    v = local_distortion(warped)
    assert np.isfinite(v).all()
    left, right = v[u < 0.15], v[u > 0.85]
    assert left.mean() < -1.0 and right.mean() > 1.0
    assert np.corrcoef(u, v)[0, 1] > 0.9
    assert np.isnan(local_distortion(np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 3.0]]))).sum() == 1


def test_distortion_tab(dock, qtbot):
    res = make_result(honeycomb())
    dock.set_result(res)
    dock.tabs.setCurrentIndex(3)
    assert len(dock.distortion_scatter.data) == len(res.atoms)
    np.testing.assert_allclose(dock.distortion(), 0.0, atol=1e-9)
    pts = dock.distortion_scatter.points()
    with qtbot.waitSignal(dock.atomActivated) as sig:
        dock.distortion_scatter.sigClicked.emit(dock.distortion_scatter, [pts[5]], None)
    assert sig.args == [5]
