"""Issue 23, sections 4 and 5: the intensity scale must not matter, and memory stays bounded.

* Any affine rescaling of an image that float32 holds gives the same atoms (the statistics are
  computed in float64; a flat image is told by a relative test, not a fixed cutoff).
* The clip range is sampled without a fixed stride, which can alias with a lattice.
* The lattice-period estimate uses a bounded central region; a flat or tiny image gives a
  clear ValueError instead of NaN.
* Large images are tiled along both axes, so memory is bounded by the tile.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from atomlens.analysis.lattice import estimate_period_px
from atomlens.nn import infer
from atomlens.nn.data import _subsample, is_flat, normalisation_stats, normalise
from atomlens.sim import simulate
from scipy.spatial import cKDTree


@pytest.fixture(scope="module")
def haadf():
    """The bundled stem-haadf model in exact float32 arithmetic, one view (fast)."""
    return infer.Predictor("stem-haadf", "cpu", single_view=True, cpu_bf16=False)


@pytest.fixture(scope="module")
def doped_graphene():
    cfg = {"structure": "graphene", "shape": (96, 96), "px_size_A": 0.2,
           "defects": {"dopant": {"element": "Si", "n": 3}}, "noise": {"dose_e_per_A2": 1e5}}
    return simulate(cfg, 5).image.astype(np.float64)


def _same_atoms(a, b, shape, tol_px=0.02):
    """The same atoms one to one, of the same class, each within `tol_px`; a column cut by the
    image's edge (its centre within 3 px of it) within 1 px: its probability is a flat ridge
    along the edge, where float32 rounding (of a resampled image) decides the peak."""
    assert len(a) == len(b), (len(a), len(b))
    d, i = cKDTree(b.xy).query(a.xy)
    assert len(np.unique(i)) == len(b) and (a.cls == b.cls[i]).all()
    edge = (np.minimum(a.x, shape[1] - 1 - a.x) < 3) | (np.minimum(a.y, shape[0] - 1 - a.y) < 3)
    assert d[~edge].max() < tol_px and (d[edge].max() if edge.any() else 0) < 1.0, (d[~edge].max(), d.max())


# ------------------------------------------------------------------ 4. intensity scale
@pytest.mark.parametrize("px_size_nm", [0.02, None], ids=["calibrated", "uncalibrated"])
def test_affine_rescaling_gives_the_same_atoms(haadf, doped_graphene, px_size_nm):
    """Factors 1e-15 to 1e25 and offsets (as float32 holds them: the image reaches 2e27 at
    most): the same atoms, classes and positions.  Before, 1e19 overflowed float32 in the
    statistics, and a spread below 1e-12 (STM heights in metres) was taken for a flat image."""
    img = doped_graphene
    ref, _, info = haadf.detect(img.astype(np.float32), px_size_nm)
    assert len(ref) > 30 and (ref.cls == haadf.classes.index("dopant")).any()
    spread = img.std()
    for factor, offset in [(1e-15, 0.0), (2e-12 / spread, 3e-9), (1e6, -1e8), (1e19, -7e20), (1e25, 1e26)]:
        scaled = (img * factor + offset).astype(np.float32)
        got, _, ginfo = haadf.detect(scaled, px_size_nm)
        _same_atoms(got, ref, img.shape)
        assert ginfo["px_size_A"] == pytest.approx(info["px_size_A"], rel=1e-6)


def test_files_at_any_scale_float64_holds_give_the_same_atoms(haadf, doped_graphene, tmp_path):
    """Through the loader: float64 files scaled by 1e-300..1e300 (beyond float32 there the loader
    keeps the contrast by an offset and a scale) and uint64 counts near 2^63."""
    from atomlens.io import load

    img = doped_graphene
    counts = np.round(img * 100)
    ref, _, _ = haadf.detect(img.astype(np.float32), 0.02)
    ref_counts, _, _ = haadf.detect(counts.astype(np.float32), 0.02)
    cases = {"tiny": (img * 1e-300, ref), "small": (img * 1e-15 + 4e-14, ref), "large": (img * 1e40, ref),
             "huge": (img * 1e300 - 1e302, ref), "u64": (np.uint64(2**63) + counts.astype(np.uint64), ref_counts)}
    for name, (data, expect) in cases.items():
        np.save(tmp_path / f"{name}.npy", data)
        got, _, _ = haadf.detect(load(tmp_path / f"{name}.npy").frame(0), 0.02)
        _same_atoms(got, expect, img.shape)


def test_device_path_is_scale_free_too(haadf, doped_graphene):
    """The path that keeps everything on the device (GPUs; forced here on the CPU) scales by
    the same statistics: 1e19 and an STM-like spread of 2e-12 give the same atoms."""
    img = doped_graphene
    ref, _, info = haadf.detect(img.astype(np.float32), 0.02, fast=True)
    assert info.get("on_device") and len(ref) > 30
    for factor in (1e19, 2e-12 / img.std()):
        got, _, _ = haadf.detect((img * factor).astype(np.float32), 0.02, fast=True)
        _same_atoms(got, ref, img.shape)


def test_flatness_is_relative_to_the_level():
    # STM heights in metres: a standard deviation of 2e-11 is contrast, not a flat image
    z = np.random.default_rng(0).normal(3e-9, 2e-11, (64, 64)).astype(np.float32)
    st = normalisation_stats(z)
    assert not is_flat(*st[:2], st[3])
    assert np.std(normalise(z)) == pytest.approx(1.0, rel=0.02)
    # a level of 1e20 with variations below float32's resolution there is flat: zeros
    flat = np.full((64, 64), 1e20, np.float32)
    flat[::7, ::5] = np.nextafter(np.float32(1e20), np.float32(np.inf))
    st = normalisation_stats(flat)
    assert is_flat(*st[:2], st[3])
    assert not normalise(flat).any()
    # statistics of 1e19-scaled data do not overflow
    big = (z.astype(np.float64) / 2e-11 * 1e19).astype(np.float32)
    np.testing.assert_allclose(normalise(big), normalise(z), atol=2e-3)


def test_clip_range_sampling_does_not_alias_with_a_lattice():
    """A lattice of period 25 px along the rows, 6400 columns wide: a stride of 25 columns
    (6400 // 256) sees one phase of it only (before: the clip range of a 'flat' image)."""
    yy, xx = np.mgrid[:256, :6400]
    img = np.exp(-(((xx % 25) - 12.0) ** 2) / 8.0) + 0.1 * np.cos(2 * np.pi * yy / 32)
    img = img.astype(np.float32)
    lo, hi, m, s = normalisation_stats(img)
    full_lo, full_hi = np.percentile(img, [0.1, 99.9])
    span = full_hi - full_lo
    assert abs(lo - full_lo) < 0.02 * span and abs(hi - full_hi) < 0.02 * span
    assert m == pytest.approx(float(np.clip(img, full_lo, full_hi).mean()), abs=0.02 * span)
    assert s == pytest.approx(float(np.clip(img, full_lo, full_hi).std()), rel=0.03)
    # the same sample each time (an image is always scaled the same way); small images: every pixel
    np.testing.assert_array_equal(_subsample(img), _subsample(img))
    assert _subsample(img[:64, :64]).size == 64 * 64


# ------------------------------------------------------------------ 3/5. lattice period
def _lattice(shape, period_px):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (np.cos(2 * np.pi * xx / period_px) * np.cos(2 * np.pi * yy / period_px)).astype(np.float32) ** 2


def test_period_of_a_flat_or_tiny_image_is_a_clear_error():
    with pytest.raises(ValueError, match="the image is flat"):
        estimate_period_px(np.full((64, 64), 7.0, np.float32))
    level = np.full((64, 64), 1e20, np.float32)
    level[:, ::2] = np.nextafter(np.float32(1e20), np.float32(np.inf))  # one float32 step
    with pytest.raises(ValueError, match="the image is flat"):
        estimate_period_px(level)
    with pytest.raises(ValueError, match=r"too small to estimate a lattice period \(6 x 6 px\); give the pixel size"):
        estimate_period_px(np.random.default_rng(0).random((6, 6)))
    # STM heights in metres still have a period
    assert estimate_period_px(_lattice((128, 128), 8.0) * 3e-11 + 1e-9) == pytest.approx(4.0, rel=0.02)


def test_uncalibrated_flat_image_detect_says_why(haadf):
    with pytest.raises(ValueError, match="the image is flat.*give the pixel size"):
        haadf.detect(np.full((64, 64), 3.0, np.float32))


def test_period_uses_a_bounded_region():
    """A 3000 x 40 lattice: the period is found, from at most 1024 x 1024 pixels zero-padded
    x2 (before: a 6000 x 6000 FFT, over 1 GB)."""
    img = _lattice((3000, 40), 10.0)  # cos^2 of period 10: intensity period 5 px
    tracemalloc.start()
    try:
        period = estimate_period_px(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert period == pytest.approx(5.0, rel=0.02)
    assert peak < 250e6, f"peak {peak / 1e6:.0f} MB"


# ------------------------------------------------------------------ 5. tiles
def test_large_images_are_tiled_along_both_axes(haadf, monkeypatch):
    """A wide image (fewer rows than a tile) is cut into tiles along its width too: every
    network call sees at most a tile and its margins; the atoms are those of the whole image."""
    img = np.tile(simulate({"structure": "graphene", "shape": (64, 128), "px_size_A": 0.2}, 1).image, (1, 4))
    whole, prob, _ = haadf.detect(img, 0.02)
    assert prob is not None and len(whole) > 300
    seen = []
    real = haadf.probabilities

    def spy(image, *a, **k):
        seen.append(image.shape)
        return real(image, *a, **k)

    monkeypatch.setattr(haadf, "probabilities", spy)
    monkeypatch.setattr(infer, "STRIP_MIN_PIXELS", 0)
    tiled, none, info = haadf.detect(img, 0.02, strip_px=160)
    # the margin: at least 64 px and 8 Å, plus the reach of a local normalisation's windows
    from atomlens.analysis.background import margin_A

    reach_A = 8.0 + (margin_A(haadf.norm_spec) if haadf.local_norm else 0.0)
    pad = int(np.ceil(max(64, reach_A / 0.2)))  # 0.2 Å/px
    assert none is None and info["tiles"] == 4 and info["strips"] == 1
    assert max(w for _, w in seen) <= 160 + 2 * pad
    # the tiles' seams are inside the image: there every column is found once, within a tenth
    # of a pixel (the network sees a little less context at a tile's margin).  Columns cut by the
    # image's own edge (weak, near the threshold) are left out of the comparison.
    inner_t, inner_w = tiled.away_from_edges(img.shape, 3.0), whole.away_from_edges(img.shape, 3.0)
    if haadf.local_norm:
        # a local normalisation's block grid starts at each tile's own corner, and its outlier
        # cap is each tile's (a known limitation): a column right at the threshold may go either
        # way (2 of 445 here) and positions differ by up to 0.3 px near the seams
        assert abs(len(inner_t) - len(inner_w)) <= 0.01 * len(inner_w)
        d, _ = cKDTree(inner_w.xy).query(inner_t.xy)
        assert d.max() < 0.5 and np.median(d) < 0.02
    else:
        _same_atoms(inner_t, inner_w, img.shape, tol_px=0.1)
        assert np.sqrt(np.mean(cKDTree(inner_w.xy).query(inner_t.xy)[0] ** 2)) < 0.02
