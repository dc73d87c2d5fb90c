"""The real-image artefacts of the simulator (issue 24): backgrounds, contamination patches,
thickness changes, probe tails, scan streaks, thick amorphous supports with vacuum."""

import time

import numpy as np
import pytest

from atomlens.sim import noise
from atomlens.sim.simulate import simulate

BASE = {"shape": [96, 96], "structure": "graphene", "px_size_A": 0.15, "noise": {},
        "augment": {"rotation": False, "shift": False}}


def _sim(seed=3, **noise_keys):
    return simulate({**BASE, "noise": dict(noise_keys)}, seed)


def test_new_code_paths_stay_unused_without_their_keys(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a new artefact ran although its key is absent")

    for name in ("ramp", "bowl", "patch_mask", "thickness_field", "probe_tail", "scan_streaks",
                 "band_limited_noise", "contrast", "line_blur"):
        monkeypatch.setattr(noise, name, boom)
    cfg = {**BASE, "noise": {"dose_e_per_A2": 1e4, "jitter_px": 0.3, "background": 0.1, "floor": 0.2}}
    a, b = simulate(cfg, 5), simulate(cfg, 5)
    assert np.array_equal(a.image, b.image)
    sa = simulate({"shape": [64, 64], "structure": "single_atoms", "px_size_A": 0.3}, 2)
    assert "support" not in sa.meta


def test_ramp_is_a_plane_of_the_requested_height():
    clean, r = _sim(), _sim(ramp=4.0)
    d = (r.image - clean.image).astype(np.float64)
    c = noise.contrast(clean.image)
    assert d.max() - d.min() == pytest.approx(4.0 * c, rel=1e-3)
    yy, xx = np.mgrid[:96, :96]
    A = np.c_[xx.ravel(), yy.ravel(), np.ones(xx.size)]
    coef, res, *_ = np.linalg.lstsq(A, d.ravel(), rcond=None)
    assert np.abs(A @ coef - d.ravel()).max() < 1e-3 * c  # exactly planar
    assert np.array_equal(r.masks, clean.masks)  # labels untouched


def test_bowl_rises_towards_the_edges():
    clean, r = _sim(), _sim(bowl=2.0)
    d = r.image - clean.image
    iy, ix = np.unravel_index(np.argmin(d), d.shape)
    assert 10 < iy < 86 and 10 < ix < 86  # the bottom lies inside
    border = np.r_[d[0], d[-1], d[:, 0], d[:, -1]]
    assert border.min() > d[iy, ix] and d.max() == pytest.approx(2.0 * noise.contrast(clean.image), rel=1e-3)


def test_patch_covers_its_area_with_its_brightness_and_texture():
    spec = {"prob": 1.0, "n": 1, "area": 0.2, "brightness": 3.0}
    clean = _sim(seed=7)
    c = noise.contrast(clean.image)
    smooth = _sim(seed=7, patch={**spec, "texture": 0.0}).image - clean.image
    rough = _sim(seed=7, patch={**spec, "texture": 1.0}).image - clean.image
    core = smooth > 0.9 * 3.0 * c
    assert 0.03 < (smooth > 1.5 * c).mean() < 0.4  # about the requested area (may run off an edge)
    assert smooth.max() == pytest.approx(3.0 * c, rel=0.02)
    # texture: speckle inside the patch, absent from a smooth one
    hp = lambda im: im - (np.roll(im, 1, 0) + np.roll(im, -1, 0) + np.roll(im, 1, 1) + np.roll(im, -1, 1)) / 4
    assert core.sum() > 50
    assert hp(rough)[core].std() > 5 * hp(smooth)[core].std()


def test_thick_patch_hides_the_atoms_under_it_thin_one_does_not():
    spec = {"prob": 1.0, "n": 1, "area": 0.3, "texture": 0.5}
    clean = _sim(seed=11)
    thin = _sim(seed=11, patch={**spec, "brightness": 2.0})
    thick = _sim(seed=11, patch={**spec, "brightness": 10.0})
    assert len(thin.atoms) == len(clean.atoms)
    assert len(thick.atoms) < len(clean.atoms)
    assert thick.meta["artefacts"]["hidden_atoms"] == len(clean.atoms) - len(thick.atoms)


def test_thickness_var_changes_mean_and_contrast_smoothly():
    clean, r = _sim(seed=4), _sim(seed=4, thickness_var=0.3)
    on = clean.image > 0.05 * clean.image.max()
    ratio = r.image[on] / clean.image[on]
    assert 0.02 < ratio.std() < 1.0  # multiplicative, not constant
    assert ratio.min() >= 0.1 - 1e-6
    img_ratio = np.where(on, r.image / np.maximum(clean.image, 1e-9), np.nan)
    # smooth: neighbouring pixels see almost the same factor
    dif = np.nanmedian(np.abs(np.diff(img_ratio, axis=1)))
    assert dif < 0.1 * ratio.std()


def test_probe_tail_moves_intensity_into_a_halo_conserving_it():
    clean, r = _sim(seed=2), _sim(seed=2, probe_tail=0.3, probe_tail_sigma_A=3.0)
    assert r.image.sum() == pytest.approx(clean.image.sum(), rel=0.05)
    assert np.ptp(r.image) < 0.8 * np.ptp(clean.image)  # 30 % of the contrast went into the halo
    assert r.image.min() > clean.image.min()  # the halo fills the gaps between columns
    assert r.meta["artefacts"]["probe_tail_sigma_A"] == 3.0


def test_streaks_change_whole_scan_lines_only():
    clean, r = _sim(seed=9), _sim(seed=9, streaks=3.0)
    ev = r.meta["streaks"]
    rows = np.nonzero(np.abs(r.image - clean.image).max(axis=1) > 0)[0]
    hit = set()
    for row, k, kind in ev:
        assert kind in ("gain", "offset")
        hit.update(range(row, min(row + k, 96)))
    assert len(ev) > 0 and set(rows) <= hit


def test_everything_together_with_flyback_jitter_and_low_dose():
    cfg = {**BASE, "augment": {"rotation": True, "flyback_A": 0.5},
           "noise": {"dose_e_per_A2": 1e2, "jitter_px": 0.5, "ramp": [0, 3], "bowl": [0, 2], "thickness_var": 0.2,
                     "probe_tail": 0.2, "streaks": 2, "patch": {"prob": 1, "n": [1, 3], "area": [0.05, 0.3],
                                                                 "brightness": [1, 20], "texture": [0, 1]}}}
    t0 = time.perf_counter()
    for s in range(5):
        r = simulate(cfg, s)
        assert np.isfinite(r.image).all() and r.masks.shape == (4, 96, 96)
        assert r.image.mean() < 5  # a few counts per pixel at 100 e/A^2
    assert (time.perf_counter() - t0) / 5 < 0.5
    a, b = simulate(cfg, 3), simulate(cfg, 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)


def _support(layers, seed=0, **kw):
    p = {"support_layers": layers, "n_atoms": 0, "n_clusters": 0, **kw}
    return simulate({"shape": [128, 128], "structure": "single_atoms", "px_size_A": 0.3, "structure_params": p,
                     "probe": {"source_fwhm_A": 0.8}, "noise": {}}, seed)


def test_support_layers_mean_grows_with_thickness_speckle_with_its_root():
    thin, thick = _support(4), _support(16)
    assert thick.image.mean() / thin.image.mean() == pytest.approx(4.0, rel=0.1)
    assert thick.image.std() / thin.image.std() == pytest.approx(2.0, rel=0.15)
    # speckle at the probe's scale, not white: the probe cuts the highest frequencies
    f = np.abs(np.fft.rfft2(thick.image - thick.image.mean())) ** 2
    k = np.hypot(*np.meshgrid(np.fft.rfftfreq(128), np.fft.fftfreq(128)))
    assert f[k > 0.4].mean() < 0.05 * f[(k > 0.02) & (k < 0.1)].mean()


def test_vacuum_region_holds_neither_support_nor_atoms():
    p = {"support_layers": 8, "vacuum_prob": 1.0, "n_atoms": 60, "n_clusters": 0}
    r = simulate({"shape": [128, 128], "structure": "single_atoms", "px_size_A": 0.3, "structure_params": p,
                  "noise": {}}, 1)
    assert r.meta["support"]["vacuum"]
    img = r.image
    vac = img < 0.05 * np.median(img)
    assert 0.02 < vac.mean() < 0.8
    xy, _ = r.points_px()
    ij = np.clip(np.rint(xy).astype(int), 0, 127)
    assert not vac[ij[:, 1], ij[:, 0]].any() and len(xy) > 10


def test_support_thickness_var_varies_the_mean_smoothly():
    flat, var = _support(10, seed=4), _support(10, seed=4, support_thickness_var=0.5)

    def block_means(im):
        return im.reshape(8, 16, 8, 16).mean(axis=(1, 3))

    assert block_means(var.image).std() > 3 * block_means(flat.image).std()


def test_support_roughness_adds_mottling_at_its_scale():
    smooth, rough = _support(30, seed=6), _support(30, seed=6, support_roughness=0.3, support_roughness_scale_A=4.0)

    def band_power(im):
        f = np.abs(np.fft.rfft2(im - im.mean())) ** 2
        k = np.hypot(*np.meshgrid(np.fft.rfftfreq(128), np.fft.fftfreq(128))) / 0.3  # 1/A
        return f[(k > 0.01) & (k < 0.06)].mean()  # periods of 15-100 A: the roughness band

    assert band_power(rough.image) > 5 * band_power(smooth.image)
    assert rough.image.mean() == pytest.approx(smooth.image.mean(), rel=0.1)  # same thickness on average


def test_film_edge_is_smooth_and_covers_part_of_the_field():
    from atomlens.sim.structures import film_edge

    for seed in range(5):
        f = film_edge(50.0, 50.0, np.random.default_rng(seed))
        yy, xx = np.mgrid[0:50:0.5, 0:50:0.5]
        s = f(xx, yy)
        assert 0.0 <= s.min() and s.max() <= 1.0
        assert 0.2 < s.mean() < 0.97  # film and vacuum both present
        assert np.abs(np.diff(s, axis=0)).max() < 0.3  # soft, not a jump between 0.5 A samples


def test_stm_topographs_take_a_tilt_and_a_bow_in_units_of_their_contrast():
    base = {"shape": [96, 96], "structure": "graphene", "px_size_A": 0.15, "mode": "STM",
            "noise": {"sigma_A": 0.0, "line_offset_A": 0.0}}
    clean = simulate(base, 5)
    tilted = simulate({**base, "noise": {**base["noise"], "ramp": 3.0}}, 5)
    bowed = simulate({**base, "noise": {**base["noise"], "bowl": 2.0}}, 5)
    c = tilted.meta["artefacts"]["contrast"]
    for r, height in ((tilted, 3.0), (bowed, 2.0)):
        d = r.image - clean.image
        assert np.ptp(d) == pytest.approx(height * c, rel=1e-3)
        assert np.array_equal(r.masks, clean.masks)  # the labels do not move
    yy, xx = np.indices(tilted.image.shape)
    A = np.c_[np.ones(xx.size), xx.ravel(), yy.ravel()]
    res = (tilted.image - clean.image).ravel() - A @ np.linalg.lstsq(A, (tilted.image - clean.image).ravel(), rcond=None)[0]
    assert np.abs(res).max() < 1e-4 * c * 3  # a plane


def test_line_blur_correlates_the_noise_along_the_scan_lines_only():
    from scipy import ndimage

    base = {"shape": [128, 128], "structure": "graphene", "px_size_A": 0.15, "noise": {"dose_e_per_A2": 300.0}}
    a, b = simulate(base, 3), simulate({**base, "noise": {**base["noise"], "line_blur_px": 1.5}}, 3)

    def corr(img, axis):  # lag-1 correlation of the fine-scale part (mostly noise at this dose)
        d = img - ndimage.gaussian_filter(img, 3.0)
        return float((d * np.roll(d, 1, axis)).mean() / (d * d).mean())

    assert corr(b.image, 1) > corr(a.image, 1) + 0.2  # along the rows: correlated
    assert abs(corr(b.image, 0) - corr(a.image, 0)) < 0.1  # across them: as before
    assert np.array_equal(a.masks, b.masks)
