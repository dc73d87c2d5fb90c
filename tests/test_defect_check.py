"""Defects checked against the lattice (atomlens.analysis.defect_check), and the score filter."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.analysis.atoms import AtomList
from atomlens.analysis.cam import DefectList
from atomlens.analysis.defect_check import (DEFAULT_MIN_DEFECT_SCORE, check_atom_defects, check_cam_defects,
                                            dopant_z, filter_by_score, vacancy_sites)
from atomlens.analysis.pipeline import _after_detection

A = 10.0  # lattice constant, px
SIZE = 112


def lattice(a=(A, 0.0), b=(0.0, A), origin=(6.0, 6.0), size=SIZE):
    """Sites of a 2D Bravais lattice inside a size x size image (x, y)."""
    pts = []
    for i in range(-20, 40):
        for j in range(-20, 40):
            p = np.array(origin) + i * np.array(a) + j * np.array(b)
            if 1 <= p[0] <= size - 2 and 1 <= p[1] <= size - 2:
                pts.append(p)
    return np.array(pts)


def render(xy, weights=None, size=SIZE, sigma=1.6, seed=0):
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    w = np.ones(len(xy)) if weights is None else weights
    for (x, y), wi in zip(xy, w):
        img += wi * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img + np.random.default_rng(seed).normal(0, 0.02, img.shape).astype(np.float32)


def nearest(xy, p):
    return int(np.argmin(np.hypot(*(xy - np.asarray(p)).T)))


def test_missing_column_is_a_vacancy_and_the_gaps_are_not():
    sites = lattice()
    miss = nearest(sites, (56, 56))
    cols = np.delete(sites, miss, axis=0)
    img = render(cols)
    vac = sites[miss] + [0.8, -0.6]  # the network's point, a little off the site
    cands = np.array([vac,
                      sites[nearest(sites, (36, 36))] + [A / 2, A / 2],   # a cell centre
                      sites[nearest(sites, (76, 36))] + [A / 2, 0.0],     # between two columns
                      sites[nearest(sites, (36, 76))] + [0.3, 0.2]])      # on a column
    keep, site, reason = vacancy_sites(cands, cols, img.shape, img)
    assert keep.tolist() == [True, False, False, False], reason
    assert np.hypot(*(site[0] - sites[miss])) < 0.5  # moved onto the lattice site
    assert reason[1] == reason[2] == "off lattice" and reason[3] == "column there"


def test_gaps_between_rows_of_a_rectangular_lattice_are_not_vacancies():
    # rows 16 px apart, columns 8 px apart along each row: the gap between rows is empty
    sites = lattice(a=(8.0, 0.0), b=(0.0, 16.0))
    img = render(sites)
    gaps = np.array([sites[nearest(sites, (x, 40))] + [0.0, 8.0] for x in (30, 46, 62, 78)])
    keep, _, reason = vacancy_sites(gaps, sites, img.shape, img)
    assert not keep.any(), reason


def test_vacancy_must_be_darker_than_its_sublattice():
    sites = lattice()
    i = nearest(sites, (56, 56))
    img = render(sites)  # the column is there in the image, only the atom list lacks it
    keep, _, reason = vacancy_sites(sites[i:i + 1], np.delete(sites, i, axis=0), img.shape, img)
    assert not keep[0] and reason[0] == "not dark"
    # a column with a third of the intensity (lost most of its atoms) is a vacancy
    w = np.ones(len(sites))
    w[i] = 0.3
    img = render(sites, w)
    keep, _, _ = vacancy_sites(sites[i:i + 1], np.delete(sites, i, axis=0), img.shape, img)
    assert keep[0]


def test_dark_superstructure_sites_are_not_vacancies():
    sites = lattice(size=128)
    ij = np.round((sites - 6.0) / A).astype(int)
    dark = (ij[:, 0] % 3 == 1) & (ij[:, 1] % 3 == 1)  # one site in nine, periodic
    img = render(sites, np.where(dark, 0.2, 1.0), size=128)
    keep, _, reason = vacancy_sites(sites[dark], sites[~dark], img.shape, img)
    assert dark.sum() >= 9 and not keep.any(), reason
    # two random missing columns in the same lattice are kept
    rng = np.random.default_rng(1)
    inner = np.flatnonzero(~dark & (sites[:, 0] > 25) & (sites[:, 0] < 100) & (sites[:, 1] > 25) & (sites[:, 1] < 100))
    pick = rng.choice(inner, 2, replace=False)
    pick = pick if np.hypot(*(sites[pick[0]] - sites[pick[1]])) > 2 * A else inner[[0, -1]]
    cols = np.delete(sites, pick, axis=0)
    img = render(cols, size=128)
    keep, _, reason = vacancy_sites(sites[pick], cols, img.shape, img)
    assert keep.all(), reason


def _atoms(xy, cls, score=0.9):
    return AtomList(xy[:, 0], xy[:, 1], cls, score)


def test_dopant_must_stand_out_in_z_contrast_only():
    sites = lattice()
    bright = nearest(sites, (56, 56))
    plain = nearest(sites, (26, 76))
    w = np.ones(len(sites))
    w[bright] = 3.0
    img = render(sites, w)
    cls = np.ones(len(sites), int)
    cls[[bright, plain]] = 2
    z = dopant_z(np.array([bright, plain]), sites, img)
    assert z[0] > 10 and abs(z[1]) < 3
    out, note = check_atom_defects(_atoms(sites, cls), img, z_contrast=True)
    names = out.names()
    assert names.count("dopant") == 1 and note and "1 of 2 dopants called atom" in note
    assert out.names()[nearest(out.xy, sites[bright])] == "dopant"
    same, note = check_atom_defects(_atoms(sites, cls), img, z_contrast=False)  # STM: left alone
    assert same.names().count("dopant") == 2 and note is None


def test_cam_defects_checked_against_the_columns():
    sites = lattice()
    miss = nearest(sites, (56, 56))
    bright = nearest(sites, (26, 26))
    cols = np.delete(sites, miss, axis=0)
    w = np.ones(len(cols))
    w[nearest(cols, sites[bright])] = 3.0
    img = render(cols, w)
    atoms = _atoms(cols, 1)
    pos = np.array([sites[miss] + 1.0, sites[nearest(sites, (76, 76))], sites[bright],
                    sites[nearest(sites, (86, 26))], sites[nearest(sites, (46, 86))] + 0.5 * A])
    d = DefectList(pos[:, 0], pos[:, 1], ["vacancy", "vacancy", "dopant", "dopant", "topological"], 0.8)
    out, note = check_cam_defects(d, atoms, img, z_contrast=True)
    assert out.names() == ["vacancy", "dopant", "topological"], note
    assert np.hypot(out.x[0] - sites[miss][0], out.y[0] - sites[miss][1]) < 0.5


def test_filter_by_score():
    xy = np.array([[10.0, 10], [20, 10], [30, 10], [40, 10]])
    atoms = AtomList(xy[:, 0], xy[:, 1], [1, 2, 2, 3], [0.9, 0.02, 0.8, 0.01])
    d = DefectList([5.0, 6.0], [5.0, 6.0], ["vacancy", "dopant"], [0.0, 0.7])
    a2, d2, n = filter_by_score(atoms, d, 0.05)
    assert a2.names() == ["atom", "atom", "dopant"] and d2.names() == ["dopant"] and n == 3
    a3, d3, n = filter_by_score(atoms, d, 0.0)
    assert a3 is atoms and d3 is d and n == 0
    with pytest.raises(ValueError):
        filter_by_score(atoms, d, -1)
    assert 0 < DEFAULT_MIN_DEFECT_SCORE < 0.5


def test_after_detection_applies_check_and_score():
    sites = lattice()
    miss = nearest(sites, (56, 56))
    cols = np.delete(sites, miss, axis=0)
    img = render(cols)
    gap = sites[nearest(sites, (36, 36))] + [A / 2, A / 2]
    xy = np.vstack([cols, sites[miss], gap])
    cls = np.r_[np.ones(len(cols), int), 3, 3]
    atoms = AtomList(xy[:, 0], xy[:, 1], cls, np.r_[np.full(len(cols), 0.9), 0.9, 0.9])
    info = {"model_mode": "HAADF", "defect_check": True, "min_defect_score": 0.05, "px_size_A": 0.5}
    out, notes = _after_detection(atoms, img, None, 0.0, img.shape, info)
    assert out.names().count("vacancy") == 1 and any(n.startswith("defect check") for n in notes)
    info["defect_check"] = False
    out, _ = _after_detection(atoms, img, None, 0.0, img.shape, info)
    assert out.names().count("vacancy") == 2


def test_cli_rejects_a_bad_min_defect_score(tmp_path, capsys):
    from atomlens.cli import EXIT_USAGE, main

    assert main(["detect", str(tmp_path / "x.tif"), "--out", str(tmp_path), "--min-defect-score", "1.5"]) == EXIT_USAGE
    assert "--min-defect-score" in capsys.readouterr().err


def test_results_dock_score_filter_follows_the_spin_box(qtbot):
    from atomlens.analysis.defect_check import result_above_score
    from atomlens.analysis.pipeline import AnalysisResult
    from atomlens.gui.results_dock import ResultsDock

    xy = np.array([[10.0, 10], [20, 10], [30, 10], [40, 10]])
    atoms = AtomList(xy[:, 0], xy[:, 1], [1, 2, 2, 3], [0.9, 0.2, 0.8, 0.3])
    d = DefectList([5.0, 6.0, 7.0], [5.0, 6.0, 7.0], ["vacancy", "dopant", "hole"], [0.1, 0.7, 0.5])
    res = AnalysisResult(atoms=atoms, prob=None, defects=d, cam=None, info={"notes": []}, px_size_nm=None,
                         offset_nm=(0.0, 0.0), threshold=0.5, refine="centroid", frame=0, shape=(20, 50))
    dock = ResultsDock()
    qtbot.addWidget(dock)
    assert dock.min_defect_score() == DEFAULT_MIN_DEFECT_SCORE
    assert result_above_score(res, dock.min_defect_score()) is res  # nothing below the default
    seen = []
    dock.minDefectScoreChanged.connect(seen.append)
    dock.min_score_spin.setValue(0.6)
    assert seen == [pytest.approx(0.6)]
    shown = result_above_score(res, dock.min_defect_score())
    assert shown.atoms.names() == ["atom", "atom", "dopant"] and shown.defects.names() == ["dopant"]
    assert res.atoms.names().count("vacancy") == 1  # the result itself is untouched
    dock.set_result(shown)
    assert dock.defect_table.rowCount() == 1


def test_window_layers_and_export_follow_the_score_filter(qtbot, tmp_path):
    from _gui_helpers import make_window

    from atomlens.analysis.pipeline import AnalysisResult

    win = make_window(qtbot, tmp_path)
    xy = np.array([[10.0, 10], [20, 10], [30, 10], [40, 10]])
    atoms = AtomList(xy[:, 0], xy[:, 1], [1, 2, 2, 3], [0.9, 0.2, 0.8, 0.3])
    d = DefectList([5.0, 6.0], [5.0, 6.0], ["vacancy", "dopant"], [0.1, 0.7])
    res = AnalysisResult(atoms=atoms, prob=None, defects=d, cam=None, info={"notes": []}, px_size_nm=None,
                         offset_nm=(0.0, 0.0), threshold=0.5, refine="centroid", frame=0, shape=(20, 50))
    win.overlays.atoms.set_atoms(res.atoms)  # as the analysis controller shows a new result
    win.overlays.defects.set_defects(res.defects)
    win.resultChanged.emit(res)
    assert win.results.result is res and len(win.overlays.defects.defects) == 2
    win.results.dock.min_score_spin.setValue(0.5)
    shown = win.results.result
    assert shown.atoms.names() == ["atom", "atom", "dopant"] and shown.defects.names() == ["dopant"]
    assert win.overlays.atoms.atoms.names() == shown.atoms.names() and len(win.overlays.defects.defects) == 1
    assert win.results.export_csv(str(tmp_path / "a.csv"))
    assert AtomList.from_csv(tmp_path / "a.csv").names() == ["atom", "atom", "dopant"]
    win.results.dock.min_score_spin.setValue(0.0)
    assert win.results.result is res and len(win.overlays.defects.defects) == 2
