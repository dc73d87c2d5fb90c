"""Analysis layer: probability maps -> atoms, refinement, metrics, lattice period, CAM peaks."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from scipy import ndimage

from atomlens.analysis import (AtomList, DefectList, defects_from_cam, detection_scores,
                               estimate_period_px, find_atoms, match_points,
                               nearest_neighbour_distances, neighbours, refine_gaussian)
from atomlens.sim import AtomTable, simulate
from atomlens.sim.imaging import render_stem

DEFECTS = {"vacancy": {"rate": 0.05}, "dopant": {"element": "Si", "rate": 0.05}}


def gaussian_prob(r):
    """'Perfect' FCN output from float Gaussian label masks (exact sub-pixel centres)."""
    p = np.asarray(r.masks, np.float32)
    return p / p.sum(0, keepdims=True)


def blurred_prob(r, sigma_px=1.0):
    """'Perfect' FCN output from Gaussian-blurred one-hot disc masks."""
    p = np.stack([ndimage.gaussian_filter(m.astype(np.float32), sigma_px) for m in r.masks])
    return p / p.sum(0, keepdims=True)


def interior(xy, shape, margin):
    h, w = shape
    return (xy[:, 0] > margin) & (xy[:, 0] < w - 1 - margin) & (xy[:, 1] > margin) & (xy[:, 1] < h - 1 - margin)


# --------------------------------------------------------------------------- find_atoms
@pytest.mark.parametrize("structure,px,defects", [
    ("graphene", 0.1, DEFECTS),
    ("MoS2", 0.12, {"vacancy": {"rate": 0.05, "sites": "chalcogen"},
                    "dopant": {"element": "W", "rate": 0.05, "sites": "metal"}}),
])
def test_find_atoms_perfect_maps_recover_every_point(structure, px, defects):
    cfg = dict(structure=structure, shape=(192, 192), px_size_A=px, defects=defects,
               labels={"kind": "gaussian", "sigma_A": 0.3})
    r = simulate(cfg, 3)
    xy, cls = r.points_px()
    assert {1, 2, 3} <= set(cls.tolist())  # vacancies and dopants are present
    atoms = find_atoms(gaussian_prob(r))
    s = detection_scores(atoms.xy, atoms.cls, xy, cls, 0.5 / r.px_size_A)
    assert s["f1"] == 1.0 and s["n_pred"] == len(xy)
    assert all(v["f1"] == 1.0 for v in s["per_class"].values())
    ip, it, d = match_points(atoms.xy, xy, 0.5 / r.px_size_A)
    inner = interior(xy[it], r.image.shape, 4)
    assert np.sqrt(np.mean(d[inner] ** 2)) < 0.1  # px
    assert np.sqrt(np.mean(d ** 2)) < 0.3  # edge atoms included
    assert np.all((atoms.score > 0.5) & (atoms.score <= 1.0))
    assert np.all(atoms.cls > 0)


def test_find_atoms_blurred_disc_masks():
    r = simulate(dict(structure="graphene", shape=(160, 160), px_size_A=0.1, defects=DEFECTS), 1)
    xy, cls = r.points_px()
    for thr in (0.3, 0.5, 0.8):
        atoms = find_atoms(blurred_prob(r), threshold=thr)
        s = detection_scores(atoms.xy, atoms.cls, xy, cls, 0.5 / r.px_size_A)
        assert s["f1"] == 1.0 and s["class_accuracy"] == 1.0


@pytest.mark.parametrize("px", [0.05, 0.08])
def test_find_atoms_splits_touching_dumbbells(px):
    # Si[110]: columns 1.36 Å apart; broad Gaussian labels make each dumbbell one blob
    r = simulate(dict(structure="Si110", shape=(160, 160), px_size_A=px,
                      labels={"kind": "gaussian", "sigma_A": 0.45}), 0)
    xy, cls = r.points_px()
    prob = gaussian_prob(r)
    thr = 0.3
    n_blobs = ndimage.label(1 - prob[0] > thr)[1]
    assert n_blobs < 0.75 * len(xy)  # the pairs really touch at this threshold
    atoms = find_atoms(prob, threshold=thr)
    s = detection_scores(atoms.xy, atoms.cls, xy, cls, 0.5 / px)
    assert s["f1"] == 1.0
    ip, it, d = match_points(atoms.xy, xy, 0.5 / px)
    inner = interior(xy[it], r.image.shape, 0.8 / px)
    # the map's own maxima are pulled ~0.015 Å towards each other by the partner's tail
    assert np.sqrt(np.mean(d[inner] ** 2)) * px < 0.06  # Å


@pytest.mark.parametrize("angle_deg", range(0, 180, 15))
def test_find_atoms_minimum_distance_is_euclidean(angle_deg):
    # Si[110] at the stem-haadf model's 0.2 Å/px: a dumbbell's columns are 1.36 Å = 6.8 px
    # apart, and detection passes min_distance_px = 1 Å = 5 px.  Along a diagonal both
    # offsets (4.8 px) lie inside a square 11 x 11 window, which used to suppress the dimmer
    # column and put one atom at the dumbbell's centre; the distance must be Euclidean.
    t = math.radians(angle_deg)
    c, h = np.array([20.0, 20.0]), 3.4 * np.array([math.cos(t), math.sin(t)])
    pts = np.array([c - h, c + h])
    yy, xx = np.indices((40, 40), dtype=np.float64)
    f = sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0 ** 2)) for a, (x, y) in zip((0.95, 0.8), pts))
    p = np.zeros((4, 40, 40))
    p[1] = np.clip(f, 0, 1)
    p[0] = 1 - p[1]
    assert ndimage.label(p[1] > 0.3)[1] == 1  # the two columns touch: one blob to split
    atoms = find_atoms(p, threshold=0.3, min_distance_px=5.0)
    assert len(atoms) == 2
    ip, _, d = match_points(atoms.xy, pts, 1.0)
    assert len(ip) == 2 and d.max() < 1.0


@pytest.mark.parametrize("saddle,same_blob,dist,kept", [
    (0.60, True, 7, 2),   # a clear dip: two columns
    (0.78, True, 7, 1),   # a dip of 2.5 % of the lower peak: a shoulder of the brighter one
    (0.78, False, 7, 2),  # no dip needed between separate blobs
    (0.60, True, 4, 1),   # closer than the minimum distance: one atom whatever the dip
])
def test_distinct_peaks_needs_a_dip_between_columns_of_one_blob(saddle, same_blob, dist, kept):
    from atomlens.analysis.atoms import MIN_DIP, _distinct_peaks

    s = np.full((20, 30), saddle)
    pk = np.array([[10, 8], [10, 8 + dist]])
    s[10, 8], s[10, 8 + dist] = 1.0, 0.8
    comp = np.ones((20, 30), int)
    if not same_blob:
        comp[:, 8 + dist // 2 + 1:] = 2
    out = _distinct_peaks(pk, s, comp, min_distance=5.0, min_dip=MIN_DIP)
    assert len(out) == kept
    assert [10, 8] in out.tolist()  # the brighter one always stays


def blob_map(points, shape, sigma=2.0, cls=None, C=4):
    """Probability map of Gaussian blobs (peak 0.95) at (x, y) points."""
    yy, xx = np.indices(shape, dtype=np.float64)
    cls = np.ones(len(points), int) if cls is None else np.asarray(cls)
    p = np.zeros((C,) + shape)
    for (x, y), c in zip(points, cls):
        p[c] = np.maximum(p[c], 0.95 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
    p[0] = 1 - p[1:].sum(0)
    return p


def test_find_atoms_edge_atoms_kept_and_located():
    pts = np.array([[0.3, 20.0], [39.6, 17.2], [20.0, 0.0], [20.4, 39.0], [0.0, 0.0], [20.0, 20.0]])
    atoms = find_atoms(blob_map(pts, (40, 40)), threshold=0.5)
    assert len(atoms) == len(pts)
    ip, it, d = match_points(atoms.xy, pts, 1.0)
    assert len(ip) == len(pts) and np.median(d) < 0.3 and d.max() < 1.0  # corner atom: a quarter blob
    assert np.all((atoms.x >= -0.5) & (atoms.x <= 39.5) & (atoms.y >= -0.5) & (atoms.y <= 39.5))


def test_atoms_away_from_edges():
    atoms = AtomList([0.0, 4.9, 5.0, 20.0, 34.0, 35.0, 20.0, 20.0], [20.0, 20.0, 20.0, 5.0, 20.0, 20.0, 4.0, 35.1],
                     [1, 2, 1, 1, 1, 3, 1, 1], 0.9)
    kept = atoms.away_from_edges((40, 40), 5)
    # 5 px from the first pixel centre (0) and from the last (39): 5 <= x <= 34
    np.testing.assert_allclose(kept.xy, [[5.0, 20.0], [20.0, 5.0], [34.0, 20.0]])
    assert kept.names() == ["atom", "atom", "atom"] and kept.score.tolist() == [0.9] * 3
    assert len(atoms.away_from_edges((40, 40), 0)) == len(atoms)
    assert len(atoms.away_from_edges((40, 80), 5)) == 4  # a wider image keeps x = 35, not y = 35.1
    assert len(AtomList.empty().away_from_edges((40, 40), 5)) == 0
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="edge margin"):
            atoms.away_from_edges((40, 40), bad)


def test_find_atoms_refine_modes_and_classes():
    pts = np.array([[10.3, 10.6], [30.0, 12.2], [20.7, 30.4]])
    p = blob_map(pts, (44, 44), cls=[1, 2, 3])
    a = find_atoms(p, refine="centroid")
    order = np.argsort(a.x)
    assert [a.names()[i] for i in order] == ["atom", "vacancy", "dopant"]
    ip, it, d = match_points(a.xy, pts, 1.0)
    assert d.max() < 0.15  # small blobs (sigma 2 px): pixelation of the thresholded region
    n = find_atoms(p, refine="none")
    assert np.all(n.x == np.round(n.x)) and np.all(n.y == np.round(n.y))
    assert match_points(n.xy, pts, 1.0)[2].max() <= 0.75
    with pytest.raises(ValueError):
        find_atoms(p, refine="gaussian")


def test_find_atoms_duplicate_suppression():
    # one flat-topped blob is one atom at its centre even without smoothing or merging (the
    # plateau's pixels are exactly equal maxima; skimage's peak_local_max returns its corners)
    p = np.zeros((2, 30, 30))
    p[1, 10:14, 8:22] = 1.0
    p[0] = 1 - p[1]
    flat = find_atoms(p, min_distance_px=2, sigma_px=0, merge_px=0)
    assert len(flat) == 1 and abs(flat.x[0] - 14.5) < 1e-6 and abs(flat.y[0] - 11.5) < 1e-6
    # two bumps on the blob are split into two peaks...
    p[1, 10:14, 8:22] = 0.8
    p[1, 11:13, 10] = p[1, 11:13, 19] = 1.0
    p[0] = 1 - p[1]
    split = find_atoms(p, min_distance_px=2, sigma_px=0, merge_px=0)
    assert len(split) == 2
    # ...which duplicate suppression merges back into one atom at the blob's centre
    merged = find_atoms(p, min_distance_px=2, sigma_px=0, merge_px=10)
    assert len(merged) == 1
    assert abs(merged.x[0] - 14.5) < 1e-6 and abs(merged.y[0] - 11.5) < 1e-6
    # and two real atoms farther apart than the merge distance stay two
    two = find_atoms(blob_map(np.array([[10.0, 10.0], [20.0, 10.0]]), (20, 30)))
    assert len(two) == 2


def test_find_atoms_threshold_monotonic_and_noise():
    rng = np.random.default_rng(0)
    r = simulate(dict(structure="graphene", shape=(128, 128), px_size_A=0.1, defects=DEFECTS), 2)
    p = blurred_prob(r, 1.5)
    # soft map: per-pixel confidence varies smoothly, low-level smooth clutter between atoms
    clutter = ndimage.gaussian_filter(rng.random(p.shape[1:]), 3)
    fg = np.clip((1 - p[0]) * (0.6 + 0.4 * clutter / clutter.max()) + 0.1 * clutter / clutter.max(), 0, 1)
    q = np.concatenate([1 - fg[None], p[1:] / np.maximum(p[1:].sum(0), 1e-9) * fg])
    counts = [len(find_atoms(q, threshold=t, min_distance_px=5, min_area_px=3)) for t in np.linspace(0.3, 1.0, 12)]
    assert all(a >= b for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] < counts[0]
    # pure salt noise (single pixels) next to a real atom: the noise is dropped by area
    m = blob_map(np.array([[15.0, 15.0]]), (30, 30))
    m[1, 3, 3], m[0, 3, 3] = 0.9, 0.1
    assert len(find_atoms(m)) == 1
    assert len(find_atoms(np.stack([np.ones((8, 8)), np.zeros((8, 8))]))) == 0


def test_find_atoms_gaussian_refine_uses_image():
    pts = np.array([[12.3, 11.6], [30.8, 12.1], [20.2, 29.7]])
    p = blob_map(pts + 0.4, (44, 44))  # the map is off by 0.4 px; the image is right
    img = blob_map(pts, (44, 44), sigma=2.5)[1] * 100 + 10
    a = find_atoms(p, refine="gaussian", image=img)
    assert match_points(a.xy, pts, 1.0)[2].max() < 0.02


# --------------------------------------------------------------------------- refine
def test_refine_gaussian_subpixel_on_stem_columns():
    rng = np.random.default_rng(1)
    xy = np.array([[16 + 22 * i + rng.uniform(-0.5, 0.5), 16 + 22 * j + rng.uniform(-0.5, 0.5)]
                   for i in range(6) for j in range(6)])
    px = 0.1
    img = np.clip(render_stem(AtomTable.from_arrays(xy * px, 74), (140, 140), px), 0, None)
    noisy = rng.poisson(img * (2e4 / img.max())).astype(np.float64)
    start = np.rint(xy) + rng.uniform(-0.4, 0.4, xy.shape)
    gx, gy, ok = refine_gaussian(noisy, start[:, 0], start[:, 1], 8)
    err = np.hypot(gx - xy[:, 0], gy - xy[:, 1])
    assert ok.all() and np.sqrt(np.mean(err ** 2)) < 0.1 and err.max() < 0.2
    # pure Gaussians at sub-pixel positions + Poisson noise
    g = blob_map(xy, (140, 140), sigma=2.5)[1] * 1000 + 50
    gx, gy, ok = refine_gaussian(rng.poisson(g).astype(float), start[:, 0], start[:, 1], 12)
    err = np.hypot(gx - xy[:, 0], gy - xy[:, 1])
    assert ok.all() and np.sqrt(np.mean(err ** 2)) < 0.05


def test_refine_gaussian_falls_back():
    img = np.zeros((40, 40))
    img[20, 20] = 0.0
    x, y, ok = refine_gaussian(img, [10.2, 30.0], [10.7, 5.0], 8)  # flat: no peak to fit
    assert not ok.any() and np.allclose(x, [10.2, 30.0]) and np.allclose(y, [10.7, 5.0])
    bright = blob_map(np.array([[24.0, 20.0]]), (40, 40), sigma=2.0)[1]
    x, y, ok = refine_gaussian(bright, [20.0], [20.0], 6)  # the only peak is > window/2 away
    assert not ok[0] and x[0] == 20.0
    e = refine_gaussian(img, [], [], 5)
    assert all(len(v) == 0 for v in e)


# --------------------------------------------------------------------------- CSV
def test_atom_csv_round_trip(tmp_path):
    a = AtomList([1.23456, 10.0, 0.0], [2.5, 3.25, 7.0], [1, 2, 3], [0.9, 0.51234, 1.0])
    p = tmp_path / "img.atoms.csv"
    a.to_csv(p)
    lines = p.read_text().splitlines()
    assert lines[0] == "x,y,class,score,x_nm,y_nm"
    assert lines[1] == "1.235,2.500,atom,0.9000,,"
    b = AtomList.from_csv(p)
    assert b.names() == ["atom", "dopant", "vacancy"]
    assert np.allclose(b.x, [1.235, 10.0, 0.0]) and np.allclose(b.score, [0.9, 0.5123, 1.0])
    a.to_csv(p, px_size_nm=0.01, offset_nm=(1.0, 2.0))
    row = p.read_text().splitlines()[2].split(",")
    assert row[2] == "dopant" and float(row[4]) == pytest.approx(1.1) and float(row[5]) == pytest.approx(2.0325)
    assert row[4] == "1.10000"
    assert sorted(os.listdir(tmp_path)) == ["img.atoms.csv"]  # no temporary files left
    # unknown class names are appended
    p.write_text("x,y,class,score,x_nm,y_nm\n1,2,adatom,0.5,,\n3,4,atom,1,,\n")
    c = AtomList.from_csv(p)
    assert c.class_names[-1] == "adatom" and c.names() == ["adatom", "atom"]
    # helpers
    assert len(a.subset(a.cls > 1)) == 2 and len(a.concat(c)) == 5
    assert a.concat(c).names()[3] == "adatom"
    d = a.to_dict()
    assert d["class"] == ["atom", "dopant", "vacancy"] and len(d["x"]) == 3
    e = AtomList.empty()
    e.to_csv(p)
    assert p.read_text() == "x,y,class,score,x_nm,y_nm\n" and len(AtomList.from_csv(p)) == 0


def test_atomic_write_failure_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.csv"
    p.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        AtomList([1.0], [2.0], [1], [1.0]).to_csv(p)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.csv"]


# --------------------------------------------------------------------------- metrics
def test_match_points_one_to_one():
    true = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    pred = np.array([[0.2, 0.0], [0.0, 0.3], [10.5, 0.0], [50.0, 50.0]])
    ip, it, d = match_points(pred, true, 1.0)
    assert ip.tolist() == [0, 2] and it.tolist() == [0, 1]
    assert np.allclose(d, [0.2, 0.5])
    s = detection_scores(pred, None, true, None, 1.0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 1)
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 2 / 7) and s["rmse"] == pytest.approx(math.sqrt((0.04 + 0.25) / 2))
    # the assignment maximises matches: a chain where greedy nearest would lose one
    t2 = np.array([[0.0, 0.0], [1.0, 0.0]])
    p2 = np.array([[0.6, 0.0], [-0.5, 0.0]])
    assert len(match_points(p2, t2, 0.6)[0]) == 2


def test_detection_scores_per_class():
    true = np.array([[0, 0], [10, 0], [20, 0], [30, 0]], float)
    tcls = np.array([1, 1, 2, 3])
    pred = np.array([[0, 0.1], [10, 0.1], [20, 0.1], [40, 0]], float)
    pcls = np.array([1, 2, 2, 3])
    s = detection_scores(pred, pcls, true, tcls, 0.5)
    assert s["tp"] == 3 and s["class_accuracy"] == pytest.approx(2 / 3)
    pc = s["per_class"]
    assert pc[1] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "n_true": 2, "n_pred": 1, "tp": 1}
    assert pc[2]["tp"] == 1 and pc[2]["precision"] == 0.5 and pc[2]["recall"] == 1.0
    assert pc[3]["tp"] == 0 and pc[3]["f1"] == 0.0
    assert set(detection_scores(pred, pcls, true, tcls, 0.5, class_ids=[1, 2, 5])["per_class"]) == {1, 2, 5}


def test_detection_scores_empty():
    e = np.zeros((0, 2))
    s = detection_scores(e, [], e, [], 1.0)
    assert s["f1"] == 1.0 and s["precision"] == 1.0 and s["recall"] == 1.0 and s["tp"] == 0
    assert math.isnan(s["rmse"])
    s = detection_scores(e, [], [[1, 2]], [1], 1.0)
    assert s["f1"] == 0.0 and s["recall"] == 0.0 and s["n_true"] == 1
    s = detection_scores([[1, 2]], [1], e, [], 1.0)
    assert s["f1"] == 0.0 and s["precision"] == 0.0
    assert s["per_class"][1]["f1"] == 0.0


def test_match_points_many_points_fast():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1000, (10000, 2))
    pred = true + rng.normal(0, 0.3, true.shape)
    ip, it, d = match_points(pred, true, 1.5)
    assert len(ip) > 9900 and np.mean(ip == it) > 0.99
    assert len(np.unique(ip)) == len(ip) and len(np.unique(it)) == len(it)


# --------------------------------------------------------------------------- lattice
@pytest.mark.parametrize("structure,a_A", [("graphene", 2.46), ("MoS2", 3.16)])
@pytest.mark.parametrize("px", [0.08, 0.15])
def test_lattice_period(structure, a_A, px):
    r = simulate(dict(structure=structure, shape=(256, 256), px_size_A=px), 0)
    d100 = a_A * math.sqrt(3) / 2  # {100} plane spacing of the hexagonal lattice
    assert estimate_period_px(r.image) * px == pytest.approx(d100, rel=0.02)


def test_neighbours():
    xy = np.array([[0, 0], [1, 0], [3, 0], [10, 10]], float)
    assert np.allclose(nearest_neighbour_distances(xy), [1, 1, 2, math.hypot(7, 10)])
    d, i = neighbours(xy, k=2, max_dist=2.5)
    assert i[0].tolist() == [1, -1] and i[3].tolist() == [-1, -1] and np.isinf(d[3]).all()
    assert i[2].tolist() == [1, -1]


# --------------------------------------------------------------------------- CAM
def test_defects_from_cam(tmp_path):
    names = ("pristine", "vacancy", "dopant")
    shape = (64, 80)
    yy, xx = np.indices(shape)

    def blob(x, y, a, s=3.0):
        return a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))

    cam = np.zeros((3,) + shape)
    cam[0] = blob(40, 30, 5.0, 20)  # pristine everywhere: excluded
    cam[1] = blob(10, 12, 2.0) + blob(60, 50, 1.6) + blob(30, 40, 0.5)  # last one below half
    cam[2] = blob(70, 8, 4.0)
    d = defects_from_cam(cam, names, threshold_rel=0.5, min_distance_px=5)
    got = sorted(zip(d.names(), d.x.tolist(), d.y.tolist()))
    assert got == [("dopant", 70.0, 8.0), ("vacancy", 10.0, 12.0), ("vacancy", 60.0, 50.0)]
    assert d.score.tolist() == pytest.approx([4 / 5, 2 / 5, 1.6 / 5], abs=1e-3)
    p = tmp_path / "d.csv"
    d.to_csv(p, px_size_nm=0.02)
    assert p.read_text().splitlines()[0] == "x,y,type,score,x_nm,y_nm"
    back = DefectList.from_csv(p, names)
    assert back.names() == d.names() and np.allclose(back.x, d.x)
    d.to_csv(p)
    assert p.read_text().splitlines()[1].endswith(",,")
    assert len(defects_from_cam(np.zeros((3, 8, 8)), names)) == 0


def test_snap_defects_pins_dopants_to_their_class_and_adatoms_to_the_brightest_column():
    from atomlens.analysis.cam import snap_defects

    # a square lattice of 8 px with one dopant-classed column and one much brighter column
    yy, xx = np.mgrid[4:60:8, 4:60:8]
    xs, ys = xx.ravel().astype(float), yy.ravel().astype(float)
    cls = np.ones(len(xs), int)
    i_dop = int(np.flatnonzero((xs == 20) & (ys == 20))[0])
    i_ad = int(np.flatnonzero((xs == 44) & (ys == 36))[0])
    cls[i_dop] = 2
    atoms = AtomList(xs + 0.3, ys - 0.2, cls, np.ones(len(xs)))
    img = np.zeros((64, 64), np.float32)
    img[ys.astype(int), xs.astype(int)] = 1.0
    img[36, 44] = 30.0
    img = ndimage.gaussian_filter(img, 1.5)
    names = DefectList([0], [0], [0], [0]).type_names
    # CAM peaks about one lattice cell off their defect
    d = DefectList([26.0, 40.0, 10.0, 30.0], [25.0, 31.0, 50.0, 6.0], ["dopant", "adatom", "hole", "topological"],
                   [1.0, 0.9, 0.8, 0.7], names)
    out = snap_defects(d, atoms, max_dist_px=12.0, image=img)
    assert (out.x[0], out.y[0]) == (atoms.x[i_dop], atoms.y[i_dop])  # the dopant-classed column
    assert (out.x[1], out.y[1]) == (atoms.x[i_ad], atoms.y[i_ad])  # the brightest, not the nearest
    assert (out.x[2], out.y[2]) == (10.0, 50.0)  # extended defects stay at their CAM peak
    i_sw = int(np.flatnonzero((xs == 28) & (ys == 4))[0])
    assert (out.x[3], out.y[3]) == (atoms.x[i_sw], atoms.y[i_sw])  # the nearest column of any class
    # without the image an adatom cannot be judged by brightness and stays put
    assert snap_defects(d, atoms, 12.0).x[1] == 40.0
    # nothing within reach: no move
    far = snap_defects(d, atoms, max_dist_px=1.0, image=img)
    assert far.x[1] == 40.0 and far.x[0] == 26.0


# --------------------------------------------------------------------------- stripes
def test_one_directional_period_tells_stripes_from_lattices():
    from atomlens.analysis.lattice import STRIPE_RATIO, one_directional_period

    for structure in ("graphene", "MoS2", "Si110"):
        r = simulate(dict(structure=structure, shape=(256, 256), px_size_A=0.2), 5)
        ratio = one_directional_period(r.image, 4.0, 20.0)[0]
        assert ratio < STRIPE_RATIO / 3, structure
    yy, xx = np.indices((256, 256), dtype=np.float64)
    t = math.radians(30)
    stripes = np.sin(2 * np.pi * (xx * math.cos(t) + yy * math.sin(t)) / 8.0)
    stripes += np.random.default_rng(0).normal(0, 0.5, stripes.shape)
    ratio, period, angle = one_directional_period(stripes, 4.0, 16.0)
    assert ratio > 5 * STRIPE_RATIO
    assert period == pytest.approx(8.0, rel=0.05) and angle % 180 == pytest.approx(30, abs=3)
    assert all(math.isnan(v) for v in one_directional_period(np.full((64, 64), np.nan), 4.0, 16.0))
    assert all(math.isnan(v) for v in one_directional_period(stripes, 1.0, 16.0))  # below 2 px


def test_stripes_note_on_real_stm_files(real_data):
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.io import load
    from atomlens.nn.infer import Predictor

    stm = Predictor("stm-topo", "cpu")
    # the Ag(111) topograph does not resolve the atoms; a 1.7 Å interference pattern crosses it
    mg = load(real_data / "example_TOPO.sxm")
    res = analyse_image(mg.frame(0), stm, px_size_nm=mg.px_size_nm, mode="STM")
    note = [n for n in res.info["notes"] if n.startswith("stripes")]
    assert len(note) == 1 and "1.68 Å" in note[0]
    # a real atomic lattice (WSe2, 5 x 5 nm over 512 px) says nothing of the kind
    mg = load(real_data / "WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg")
    res = analyse_image(mg.frame(0), stm, px_size_nm=5.0 / 512, mode="STM")
    assert len(res.atoms) > 200 and not any(n.startswith("stripes") for n in res.info["notes"])


def test_median_nn_distance_and_stripes_note_on_grids():
    # 90,000 points 2 px apart (a random 5000 of them alone would be sparser: median 4.4 px)
    from atomlens.analysis.lattice import median_nn_distance, stripes_note

    g = np.arange(0.0, 600.0, 2.0)
    dense = np.array([(x, y) for x in g for y in g]) + np.random.default_rng(1).normal(0, 0.02, (300 * 300, 2))
    assert median_nn_distance(dense) == pytest.approx(2.0, abs=0.1)
    assert median_nn_distance(dense[:1]) == np.inf
    # the stripes check at that scale: rows 6 px apart with atoms on a 6 px grid
    g = np.arange(2.0, 510.0, 6.0)
    xy = np.array([(x, y) for x in g for y in g])
    yy, xx = np.indices((512, 512), dtype=np.float64)
    stripes = np.sin(2 * np.pi * (xx + yy) / math.sqrt(2) / 6.0)  # rows 6 px apart, at 45°
    stripes += np.random.default_rng(1).normal(0, 0.3, stripes.shape)
    note = stripes_note(stripes, xy, px_size_A=0.25)
    assert note is not None and re.search(r"\((1\.\d\d) Å", note)
    assert float(re.search(r"\((1\.\d\d) Å", note).group(1)) == pytest.approx(1.5, abs=0.05)
    assert stripes_note(stripes, xy[:10]) is None  # too few atoms to say
