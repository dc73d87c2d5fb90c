"""The simulation engine: exact labels, physics that orders and scales right, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from atomlens.sim import ATOM, DOPANT, VACANCY, AtomTable, SimConfig, simulate
from atomlens.sim import defects
from atomlens.sim.imaging import (ProbeParams, StmParams, electron_wavelength_A, probe_profile,
                                  render_stem, render_stm)
from atomlens.sim.structures import build, diamond110, from_ase, from_cif, graphene, tmd

FIELD = (25.6, 25.6)


def subpixel_peak(img, x0, y0, win=2):
    """Sub-pixel maximum near (x0, y0): brightest pixel, then a 1D parabola through it in x and y."""
    x0, y0 = int(round(x0)), int(round(y0))
    sl = img[y0 - win:y0 + win + 1, x0 - win:x0 + win + 1]
    iy, ix = np.unravel_index(np.argmax(sl), sl.shape)
    y, x = y0 - win + iy, x0 - win + ix

    def vertex(a, b, c):
        return 0.5 * (a - c) / (a - 2 * b + c)

    return x + vertex(img[y, x - 1], img[y, x], img[y, x + 1]), y + vertex(img[y - 1, x], img[y, x], img[y + 1, x])


# ------------------------------------------------------------------ exactness and physics
def test_maxima_sit_on_labels_within_0_1_px():
    rng = np.random.default_rng(3)
    xy_px = rng.uniform(20, 236, (12, 2))
    xy_px = xy_px[np.all(np.linalg.norm(xy_px[:, None] - xy_px[None], axis=2) + np.eye(12) * 99 > 40, axis=1)]
    t = AtomTable.from_arrays(xy_px * 0.1, 74)
    img = render_stem(t, (256, 256), 0.1, probe=ProbeParams(60, 30, 0, 0, 0.5))
    err = [np.hypot(*(np.array(subpixel_peak(img, x, y)) - (x, y))) for x, y in xy_px]
    assert len(err) >= 4
    assert max(err) < 0.1


def test_z_contrast_ordering():
    names = ["W", "Mo", "Se", "S", "C"]
    from atomlens.sim.elements import atomic_number

    xy = np.array([[30.0 + 40 * i, 50.0] for i in range(len(names))]) * 0.1
    t = AtomTable.from_arrays(xy, [atomic_number(n) for n in names])
    img = render_stem(t, (100, 220), 0.1, probe=ProbeParams(60, 30, 0, 0, 0.5), z_exponent=1.7)
    peaks = [img[50, 30 + 40 * i] for i in range(len(names))]
    assert all(a > b for a, b in zip(peaks, peaks[1:])), dict(zip(names, peaks))
    assert peaks[0] / peaks[1] == pytest.approx((74 / 42) ** 1.7, rel=0.02)


def test_probe_matches_airy_width_and_wavelength():
    assert electron_wavelength_A(200) == pytest.approx(0.02508, abs=1e-5)
    assert electron_wavelength_A(60) == pytest.approx(0.04866, abs=1e-5)
    for kv, alpha in ((60, 30), (200, 25)):
        img = probe_profile(ProbeParams(kv, alpha, 0, 0, 0), px_size_A=0.02, size=256)
        row = img[128]
        fwhm = (row > row.max() / 2).sum() * 0.02
        airy = 0.514 * electron_wavelength_A(kv) / (alpha * 1e-3)
        assert fwhm == pytest.approx(airy, rel=0.06)


def test_defocus_and_cs_broaden_the_probe():
    def peak(p):
        return probe_profile(p, 0.05, 256).max()

    base = peak(ProbeParams(200, 25, 0, 0, 0))
    assert peak(ProbeParams(200, 25, 80, 0, 0)) < 0.7 * base
    assert peak(ProbeParams(200, 25, 0, 0.5, 0)) < 0.7 * base
    assert peak(ProbeParams(200, 25, 0, 0, 1.0)) < 0.7 * base


def test_same_structure_two_pixel_sizes_same_image_in_angstrom():
    t = graphene().tile(12.8, 12.8, rotation_deg=17, shift_A=(0.3, 0.2), margin_A=4)
    probe = ProbeParams(60, 30, 0, 0, 0.6)
    fine = render_stem(t, (256, 256), 0.05, probe=probe)
    coarse = render_stem(t, (128, 128), 0.10, probe=probe)
    # pixel j of the coarse image is at 0.1 j Å, which is pixel 2j of the fine one;
    # pixel values are intensity integrated over the pixel area, hence the px^2
    a, b = fine[::2, ::2] / 0.05**2, coarse / 0.10**2
    assert np.abs(a - b).max() < 0.01 * b.max()


def test_stm_vacancy_pit_and_dopant_contrast_follows_bias():
    cell = tmd("W", "Se")
    t = cell.tile(*FIELD, margin_A=4)
    centre = np.array(FIELD) / 2
    top = np.nonzero(t.site == cell.role_index("chalcogen")[0])[0]
    i = top[np.argmin(np.linalg.norm(t.xy[top] - centre, axis=1))]
    metal = np.nonzero(t.site == 0)[0]
    j = metal[np.argmin(np.linalg.norm(t.xy[metal] - (centre + (8, 5)), axis=1))]
    t.count[i], t.cls[i] = 0, VACANCY
    t.Z[j], t.cls[j] = 74, DOPANT
    ref = cell.tile(*FIELD, margin_A=4)

    def diff(bias, px=(0.2)):
        a = render_stm(t, (128, 128), px, StmParams(bias_V=bias))
        b = render_stm(ref, (128, 128), px, StmParams(bias_V=bias))
        at = lambda k: (a - b)[int(round(t.xy[k, 1] / px)), int(round(t.xy[k, 0] / px))]  # noqa: E731
        return at(i), at(j)

    vac_pos, dop_pos = diff(+1.0)
    vac_neg, dop_neg = diff(-1.0)
    assert vac_pos < -0.2 and vac_neg < -0.2  # vacancies are pits at both polarities
    assert dop_pos > 0.1 and dop_neg < -0.05  # the dopant flips with bias


def test_double_tip_makes_ghost_copy():
    t = AtomTable.from_arrays([[12.8, 12.8]], 34, height=0)
    one = render_stm(t, (128, 128), 0.2, StmParams(tip_radius_A=0))
    two = render_stm(t, (128, 128), 0.2, StmParams(tip_radius_A=0, double_tip_offset_A=(3.0, 0.0)))
    assert two[64, 64 - 15] > 0.5 * one[64, 64]  # a ghost 3 Å (15 px) away
    assert one[64, 64 - 15] < 0.05 * one[64, 64]


# ------------------------------------------------------------------ structures
def test_structures_have_right_spacings():
    assert graphene().nn_distance_A == pytest.approx(1.42, abs=0.01)
    assert tmd("Mo", "S").nn_distance_A == pytest.approx(3.16 / np.sqrt(3), abs=0.01)
    assert diamond110().nn_distance_A == pytest.approx(5.431 / 4, abs=0.01)  # Si dumbbell
    assert build("SrTiO3").nn_distance_A == pytest.approx(3.905 / 2, abs=0.01)
    assert build("fcc", element="Au", zone="001").nn_distance_A == pytest.approx(4.078 / np.sqrt(2), abs=0.01)


def test_from_ase_and_cif_project_si_along_110(tmp_path):
    pytest.importorskip("ase")
    from ase.build import bulk
    from ase.io import write

    cell = from_ase(bulk("Si", "diamond", a=5.431, cubic=True), (1, 1, 0))
    assert cell.nn_distance_A == pytest.approx(5.431 / 4, abs=0.02)  # dumbbells
    assert sorted({s.Z for s in cell.sites}) == [14]

    def density(c):  # columns per Å^2 of the projection
        return len(c.sites) / abs(c.a1[0] * c.a2[1] - c.a1[1] * c.a2[0])

    # the projected Si[110] cell, a/sqrt2 x a, holds four columns (two dumbbells)
    assert density(cell) == pytest.approx(4 / (5.431**2 / np.sqrt(2)), rel=1e-3)
    assert density(cell) == pytest.approx(density(diamond110()), rel=1e-3)
    # one atom per column per repeat along [110] (a/sqrt2 of the 3D cell... of the cut slab)
    assert {round(s.count, 6) for s in cell.sites} == {round(cell.sites[0].count, 6)}
    write(tmp_path / "si.cif", bulk("Si", "diamond", a=5.431, cubic=True))
    cif_cell = from_cif(tmp_path / "si.cif", (1, 1, 0))
    assert density(cif_cell) == pytest.approx(density(cell), rel=1e-6)
    assert cif_cell.nn_distance_A == pytest.approx(cell.nn_distance_A, abs=1e-6)


# ------------------------------------------------------------------ defects change only what they should
@pytest.fixture
def lattice():
    return tmd("Mo", "Se").tile(*FIELD, margin_A=0)


def _same(a: AtomTable, b: AtomTable, rows):
    for name in ("xy", "Z", "count", "cls", "defect", "labelled"):
        np.testing.assert_array_equal(getattr(a, name)[rows], getattr(b, name)[rows], err_msg=name)


def test_vacancies_touch_only_picked_sites(lattice):
    chal = tmd("Mo", "Se").role_index("chalcogen")
    t = defects.vacancies(lattice, np.random.default_rng(0), 0.2, sites=chal)
    hit = t.cls == VACANCY
    assert hit.sum() > 0 and np.all(np.isin(t.site[hit], chal))
    assert np.all(t.count[hit] == 0)
    _same(t, lattice, ~hit)


def test_partial_vacancy_removes_one_of_two(lattice):
    t = defects.vacancies(lattice, np.random.default_rng(1), 0.3, partial=True)
    hit = t.cls == VACANCY
    assert hit.sum() > 0
    np.testing.assert_array_equal(t.count[hit], lattice.count[hit] - 1)
    assert np.all(lattice.count[hit] == 2)
    _same(t, lattice, ~hit)


def test_substitution_changes_z_and_class_only(lattice):
    t = defects.substitute(lattice, np.random.default_rng(2), 74, 0.3, sites=[0])
    hit = t.cls == DOPANT
    assert hit.sum() > 0 and np.all(t.Z[hit] == 74) and np.all(t.site[hit] == 0)
    np.testing.assert_array_equal(t.xy, lattice.xy)
    _same(t, lattice, ~hit)


def test_stone_wales_rotates_one_bond_by_90_degrees():
    g = graphene().tile(*FIELD, margin_A=0)
    t = defects.stone_wales(g, np.random.default_rng(4), 1, FIELD)
    moved = np.nonzero(np.any(t.xy != g.xy, axis=1))[0]
    assert len(moved) == 2
    i, j = moved
    b0, b1 = g.xy[j] - g.xy[i], t.xy[j] - t.xy[i]
    assert np.linalg.norm(b1) == pytest.approx(np.linalg.norm(b0), abs=1e-9)
    assert abs(b0 @ b1) < 1e-9  # perpendicular
    np.testing.assert_allclose(t.xy[i] + t.xy[j], g.xy[i] + g.xy[j])  # same centre
    assert (t.defect == defects.DEFECT_CODE["topological"]).sum() >= 2


def test_adatoms_add_rows_and_keep_the_rest(lattice):
    t = defects.adatoms(lattice, np.random.default_rng(5), 3, 78, FIELD)
    assert len(t) == len(lattice) + 3
    _same(t, lattice, np.arange(len(lattice)))
    new = t.subset(np.arange(len(lattice), len(t)))
    assert np.all(new.Z == 78) and np.all(new.cls == DOPANT)
    d = np.linalg.norm(new.xy[:, None] - lattice.xy[None], axis=2).min(axis=1)
    assert np.all(d >= 1.0)


def test_hole_and_edge_only_remove(lattice):
    for t in (defects.hole(lattice, np.random.default_rng(6), 5.0, FIELD),
              defects.edge(lattice, np.random.default_rng(7), FIELD)):
        assert 0 < len(t) < len(lattice)
        # every remaining column is an original one, unchanged but for its defect mark
        orig = {tuple(np.round(p, 9)) for p in lattice.xy}
        assert all(tuple(np.round(p, 9)) in orig for p in t.xy)
        assert not np.any(t.cls == VACANCY)


def test_strain_moves_atoms_smoothly_and_nothing_else(lattice):
    t = defects.strain_field(lattice, np.random.default_rng(8), 0.3, FIELD)
    u = t.xy - lattice.xy
    assert np.abs(u).max() > 0.05
    np.testing.assert_array_equal(t.Z, lattice.Z)
    np.testing.assert_array_equal(t.cls, lattice.cls)
    # neighbours move together (a smooth field, not noise)
    from scipy.spatial import cKDTree

    _, nb = cKDTree(lattice.xy).query(lattice.xy, k=2)
    assert np.abs(u - u[nb[:, 1]]).max() < 0.5 * np.abs(u).max()


def test_vacancy_changes_image_only_near_the_site():
    cell = graphene()
    ref = cell.tile(*FIELD, margin_A=4)
    t = ref.copy()
    k = np.argmin(np.linalg.norm(t.xy - np.array(FIELD) / 2, axis=1))
    t.count[k], t.cls[k] = 0, VACANCY
    p = ProbeParams(60, 30, 0, 0, 0.6)
    d = np.abs(render_stem(t, (256, 256), 0.1, probe=p) - render_stem(ref, (256, 256), 0.1, probe=p))
    yy, xx = np.mgrid[0:256, 0:256] * 0.1
    far = np.hypot(xx - t.xy[k, 0], yy - t.xy[k, 1]) > 3.0
    assert d.max() > 0.1 * render_stem(ref, (256, 256), 0.1, probe=p).max()
    assert d[far].max() < 0.02 * d.max()


def test_contamination_is_rendered_but_not_labelled(lattice):
    t = defects.contamination(lattice, np.random.default_rng(9), 2, FIELD)
    assert len(t) > len(lattice)
    _same(t, lattice, np.arange(len(lattice)))
    assert not t.labelled[len(lattice):].any()


# ------------------------------------------------------------------ simulate(): labels, seeds, configs
CFG = {
    "structure": ["graphene", "MoSe2"],
    "px_size_A": [0.08, 0.14],
    "defects": {"vacancy": {"rate": 0.03}, "dopant": {"element": "W", "n": 2}},
    "noise": {"dose_e_per_A2": [5e4, 2e5], "jitter_px": 0.3, "background": 0.1, "read_noise": 0.02},
    "augment": {"rotation": True, "shift": True, "jiggle_A": 0.02, "shear": 0.01, "drift_A": 0.5},
}


def test_seed_is_deterministic():
    a, b, c = simulate(CFG, 11), simulate(CFG, 11), simulate(CFG, 12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.atoms.xy, b.atoms.xy)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.meta == b.meta
    assert not np.array_equal(a.image, c.image)


def test_config_round_trips_through_json(tmp_path):
    cfg = SimConfig.from_any(CFG)
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg.to_dict()))
    np.testing.assert_array_equal(simulate(str(p), 3).image, simulate(CFG, 3).image)
    with pytest.raises(ValueError, match="unknown simulation setting"):
        SimConfig.from_any({"structur": "graphene"})


@pytest.mark.parametrize("seed", range(4))
def test_masks_and_points_agree(seed):
    r = simulate(CFG, seed)
    xy, cls = r.points_px()
    h, w = r.image.shape
    assert r.masks.shape == (4, h, w)
    np.testing.assert_array_equal(r.masks.sum(axis=0), 1)  # one-hot
    ix, iy = np.round(xy).astype(int).T
    ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    assert ok.all()
    assert np.all(r.masks[cls, iy, ix] == 1)  # each point is in its class's mask
    for c in (ATOM, DOPANT, VACANCY):  # each mask blob holds a point of that class
        lab, n = ndimage.label(r.masks[c])
        hit = set(lab[iy[cls == c], ix[cls == c]]) - {0}
        assert len(hit) == n
    assert r.meta["n_atoms"]["dopant"] == 2 == int((cls == DOPANT).sum())


def test_labels_follow_line_jitter():
    cfg = {"structure": "single_atoms", "structure_params": {"support_density": 0.0, "n_atoms": 8, "n_clusters": 0},
           "px_size_A": 0.1, "augment": {"rotation": False},
           "noise": {"jitter_px": 0.6}, "probe": {"source_fwhm_A": 0.5}}
    r = simulate(cfg, 2)
    still = simulate({**cfg, "noise": {"jitter_px": 0.0}}, 2)  # same atoms, no jitter
    xy, _ = r.points_px()
    xy0, _ = still.points_px()
    assert len(xy) == len(xy0) >= 3
    err_followed, err_ignored = [], []
    crowded = (np.linalg.norm(xy[:, None] - xy[None], axis=2) + 99 * np.eye(len(xy))).min(axis=1) < 20
    for (x, y), (x0, _), busy in zip(xy, xy0, crowded):
        if 5 < x < 250 and 5 < y < 250 and not busy:
            px_, py_ = subpixel_peak(r.image, x, y, win=3)
            err_followed.append(abs(px_ - x))
            err_ignored.append(abs(px_ - x0))
            assert abs(py_ - y) < 0.3  # rows do not move
    assert len(err_followed) >= 3
    assert np.mean(err_followed) < 0.25 and np.mean(err_followed) < 0.6 * np.mean(err_ignored)


def test_every_mode_and_structure_simulates():
    for structure in ("graphene", "hbn", "MoS2", "WS2", "WSe2", "SrTiO3", "Si110", "single_atoms"):
        for mode in ("HAADF", "ABF", "STM"):
            r = simulate({"structure": structure, "mode": mode, "shape": (64, 64), "px_size_A": 0.15,
                          "thickness": 3, "stm": {"double_tip_prob": 0.5},
                          "noise": {"dose_e_per_A2": 1e5}}, 1)
            assert r.image.shape == (64, 64) and np.isfinite(r.image).all() and r.image.std() > 0


def test_image_level_defect_labels():
    r = simulate({"structure": "graphene", "defects": {"stone_wales": {"n": 1}}, "shape": (128, 128)}, 0)
    assert r.meta["defect_types"] == ["topological"]
    assert r.defect_labels[defects.DEFECT_CODE["topological"]] == 1
    assert simulate({"structure": "graphene", "shape": (64, 64)}, 0).meta["defect_types"] == ["pristine"]


# ------------------------------------------------------------------ data sets and the CLI
def test_write_dataset_and_read_back(tmp_path):
    from atomlens.sim.dataset import read_shard, write_dataset

    cfg = {**CFG, "shape": (64, 64)}
    seen = []
    man = write_dataset(cfg, 10, tmp_path, seed=100, shard_size=4, progress=lambda f, m: seen.append(f))
    assert man["n"] == 10 and [s["n"] for s in man["shards"]] == [4, 4, 2]
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert json.loads((tmp_path / "manifest.json").read_text())["n"] == 10
    assert (tmp_path / "gallery.png").stat().st_size > 1000
    sh = read_shard(tmp_path / "shard_00001.h5")
    ref = simulate(cfg, 104)  # shard 1 starts at seed 104
    np.testing.assert_array_equal(sh["images"][0], ref.image)
    np.testing.assert_array_equal(sh["labels"][0], ref.masks.argmax(0))
    xy, cls = sh["points"][0]
    np.testing.assert_allclose(xy, ref.points_px()[0], rtol=1e-6)
    np.testing.assert_array_equal(cls, ref.atoms.cls)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left


def test_write_dataset_cancel_keeps_complete_shards(tmp_path):
    import threading

    from atomlens.sim.dataset import write_dataset

    ev = threading.Event()
    man = write_dataset({**CFG, "shape": (32, 32)}, 12, tmp_path, shard_size=3,
                        progress=lambda f, m: ev.set() if f >= 0.5 else None, cancel=ev)
    assert man["n"] == 6 and len(man["shards"]) == 2
    assert sorted(p.name for p in tmp_path.glob("shard_*.h5")) == ["shard_00000.h5", "shard_00001.h5"]


def test_cli_simulate(tmp_path, capsys):
    from atomlens.cli import EXIT_OK, EXIT_USAGE, main

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"structure": "hbn", "shape": [48, 48], "px_size_A": 0.12}))
    assert main(["simulate", "--config", str(cfg), "--n", "5", "--out", str(tmp_path / "ds"), "--shard-size", "2"]) == EXIT_OK
    assert "wrote 5 images in 3 shard(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"structure": "kryptonite"}))
    assert main(["simulate", "--config", str(bad), "--n", "5", "--out", str(tmp_path / "x")]) == EXIT_USAGE
    assert "unknown structure 'kryptonite'" in capsys.readouterr().err


def test_bundled_configs_simulate():
    from atomlens.samples import resource_path

    for name in ("graphene_haadf.json", "mose2_w_haadf.json", "wse2_stm.json"):
        cfg = json.loads(resource_path("sim_configs", name).read_text())
        cfg["shape"] = [64, 64]
        r = simulate(cfg, 7)
        assert np.isfinite(r.image).all() and len(r.atoms) > 0


@pytest.mark.parametrize("lam", [0.3, 3.0, 15.0, 25.0, 80.0, 400.0])
def test_shot_noise_has_poisson_mean_and_variance(lam):
    from atomlens.sim.noise import poisson

    rng = np.random.default_rng(0)
    for exact in (False, True):
        x = poisson(np.full(200_000, lam, np.float32), rng, exact=exact)
        assert x.min() >= 0 and np.all(x == np.round(x))  # counts
        assert x.mean() == pytest.approx(lam, rel=0.01, abs=0.01)
        assert x.var() == pytest.approx(lam, rel=0.03, abs=0.01)


def test_noise_floor_raises_the_background_between_columns():
    base = {"structure": "graphene", "shape": (96, 96), "augment": {"rotation": False}, "px_size_A": 0.1}
    clean = simulate({**base, "noise": {}}, 4).image
    floor = simulate({**base, "noise": {"floor": 0.5}}, 4).image
    from atomlens.sim.noise import robust_peak

    peak = robust_peak(clean)
    assert peak == pytest.approx(np.percentile(clean[::3, ::3], 99.9), rel=0.02)
    np.testing.assert_allclose(floor - clean, 0.5 * peak, rtol=1e-4)


def test_multi_vacancy_empties_neighbouring_sites(lattice):
    t = defects.multi_vacancy(lattice, np.random.default_rng(10), 1, 3, FIELD, sites=[0])
    hit = np.nonzero(t.cls == VACANCY)[0]
    assert len(hit) == 3 and np.all(t.site[hit] == 0) and np.all(t.count[hit] == 0)
    d = np.linalg.norm(t.xy[hit][:, None] - t.xy[hit][None], axis=2)
    assert d.max() < 2.1 * 3.29  # a compact cluster of metal sites (a = 3.29 Å)
    _same(t, lattice, np.setdiff1d(np.arange(len(t)), hit))


def test_grain_boundary_has_two_orientations_and_no_overlaps():
    cell = graphene()
    t = defects.grain_boundary(cell, FIELD, np.random.default_rng(11), misorientation_deg=21.8)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(t.xy).query(t.xy, k=2)
    assert d[:, 1].min() > 0.75 * 1.42 - 1e-9  # no two columns on top of each other
    gb = t.defect == defects.DEFECT_CODE["grain_boundary"]
    assert 0 < gb.sum() < len(t)
    # far from the boundary each grain is a perfect lattice with 1.42 Å bonds
    assert np.median(d[~gb, 1]) == pytest.approx(1.42, abs=0.01)


def test_custom_cell_from_config():
    cfg = {"structure": "custom", "shape": (64, 64), "px_size_A": 0.1, "noise": {}, "augment": {"rotation": False, "shift": False},
           "structure_params": {"a1": [4.0, 0], "a2": [0, 4.0],
                                "sites": [{"frac": [0, 0], "element": "Ba"}, {"frac": [0.5, 0.5], "element": "O"}]}}
    r = simulate(cfg, 0)
    xy, _ = r.points_px()
    assert set(np.unique(r.atoms.Z)) == {56, 8}
    assert np.allclose((xy * 0.1) % 2.0, 0, atol=1e-6) | np.allclose((xy * 0.1) % 2.0, 2.0, atol=1e-6)
    with pytest.raises(ValueError, match="parallel"):
        simulate({**cfg, "structure_params": {**cfg["structure_params"], "a2": [8.0, 0]}}, 0)


def test_variants_pick_one_override_per_image():
    cfg = {"shape": (48, 48), "noise": {}, "variants": [
        {"structure": "graphene", "defects": {"dopant": {"element": "Si", "n": 1}}},
        {"structure": "MoS2", "weight": 3, "defects": {"dopant": {"element": "W", "n": 1, "sites": "metal"}}}]}
    seen = {}
    for seed in range(40):
        r = simulate(cfg, seed)
        dz = set(r.atoms.Z[r.atoms.cls == DOPANT].tolist())
        seen.setdefault(r.meta["structure"], set()).update(dz)
    assert seen.keys() == {"graphene", "MoS2"}
    assert seen["graphene"] <= {14} and seen["MoS2"] <= {74}


def test_stm_labels_only_what_the_tip_can_see():
    from atomlens.sim.elements import atomic_number

    cfg = {"structure": "WSe2", "mode": "STM", "shape": (96, 96), "px_size_A": 0.15, "noise": {},
           "defects": {"dopant": {"element": "Mo", "n": 2, "sites": "metal"}}}
    r = simulate(cfg, 1)
    host = r.atoms.cls == ATOM
    assert host.sum() > 20 and np.all(r.atoms.Z[host] == atomic_number("Se"))  # top Se only
    assert np.sum(r.atoms.cls == DOPANT) == 2  # sub-surface Mo dopants show by their halo
    haadf = simulate({**cfg, "mode": "HAADF"}, 1)
    assert np.any(haadf.atoms.Z == atomic_number("W"))  # STEM sees (and labels) the metal
