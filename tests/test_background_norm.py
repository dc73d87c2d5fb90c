"""The local-contrast normalisation (issue 24): smooth backgrounds and bright patches leave the
rest of the image as it was; older cards keep their global normalisation."""

import numpy as np
import pytest

from atomlens.analysis.background import LOCAL_DEFAULTS, local_background, local_normalise, margin_A
from atomlens.nn.norm import normalisation_spec

PX_A = 0.2


def _lattice(shape=(160, 200), period_px=12.0, seed=0):
    """A square lattice of Gaussian columns with a little noise (unit peak)."""
    yy, xx = np.indices(shape, dtype=np.float64)
    img = np.zeros(shape)
    for cy in np.arange(period_px / 2, shape[0], period_px):
        for cx in np.arange(period_px / 2, shape[1], period_px):
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
    return img + np.random.default_rng(seed).normal(0, 0.02, shape)


def test_local_fit_removes_planes_and_bowls_exactly_up_to_the_edges():
    yy, xx = np.indices((150, 173), dtype=np.float64)
    plane = 3 + 0.5 * xx - 0.2 * yy
    bowl = 0.001 * (xx - 60) ** 2 + 0.002 * (yy - 20) ** 2 - 0.0005 * xx * yy
    for bg in (plane, bowl):
        err = local_background(bg.astype(np.float32), 15.0) - bg
        assert np.abs(err).max() < 1e-3 * np.ptp(bg)


def test_local_fit_leaves_the_lattice_alone():
    yy, xx = np.indices((128, 128))
    lattice = np.cos(2 * np.pi * xx / 12) * np.cos(2 * np.pi * yy / 12)
    # a period of 12 px (2.4 Å at 0.2 Å/px) keeps over 90 % of its amplitude
    assert np.abs(local_background(lattice.astype(np.float32), 15.0)).max() < 0.1


@pytest.mark.parametrize("kind", ["ramp", "bowl"])
def test_strong_smooth_backgrounds_leave_the_normalised_image_as_it_was(kind):
    img = _lattice()
    c = np.ptp(np.percentile(img, [1, 99]))
    yy, xx = np.indices(img.shape, dtype=np.float64)
    if kind == "ramp":
        bg = (0.6 * xx + 0.8 * yy) / (0.6 * img.shape[1] + 0.8 * img.shape[0])
    else:
        bg = ((yy / img.shape[0] - 0.5) ** 2 + (xx / img.shape[1] - 0.5) ** 2) * 2
    ref = local_normalise(img.astype(np.float32), PX_A)
    out = local_normalise((img + 10 * c * bg).astype(np.float32), PX_A)
    assert np.abs(out - ref).max() < 0.05 * np.ptp(ref)


def test_a_bright_patch_does_not_rescale_the_rest_of_the_image():
    img = _lattice((300, 300))
    c = np.ptp(np.percentile(img, [1, 99]))
    yy, xx = np.indices(img.shape, dtype=np.float64)
    d = np.hypot(yy, xx - 299)
    patch = 1 / (1 + np.exp((d - 60) / 10.0))  # a quarter disc in a corner, soft edge 2 Å
    ref = local_normalise(img.astype(np.float32), PX_A)
    out = local_normalise((img + 10 * c * patch).astype(np.float32), PX_A)
    far = d > 60 + 6 * 10 + margin_A(LOCAL_DEFAULTS) / PX_A  # beyond the patch and the windows' reach
    assert far.mean() > 0.3
    assert np.abs(out - ref)[far].max() < 0.02 * np.ptp(ref)
    # the old global normalisation shrinks the lattice there (what the issue measured)
    from atomlens.nn.data import normalise

    g_ref, g_out = normalise(img.astype(np.float32)), normalise((img + 10 * c * patch).astype(np.float32))
    assert np.std(g_out[far]) < 0.5 * np.std(g_ref[far])


def test_gain_offset_invariance_and_extreme_scales():
    img = _lattice().astype(np.float32)
    ref = local_normalise(img, PX_A)
    for gain, off in ((1e3, 1e5), (1e19, 0.0), (1e-25, 0.0), (-1.0, 7.0)):
        out = local_normalise((img.astype(np.float64) * gain + off).astype(np.float32), PX_A)
        assert np.isfinite(out).all()
        target = ref if gain > 0 else local_normalise(-img, PX_A)
        assert np.abs(out - target).max() < 1e-3 * np.ptp(ref)


def test_flat_and_tiny_images_become_zeros_not_nans():
    for img in (np.full((64, 64), 5.0, np.float32), np.zeros((20, 30), np.float32)):
        out = local_normalise(img, PX_A)
        assert np.isfinite(out).all() and not out.any()


def test_vacuum_is_not_amplified_into_structure():
    """Half the field holds only weak noise (vacuum): its values stay small, below the lattice's."""
    img = _lattice((160, 160))
    img[:, :80] = np.random.default_rng(3).normal(0, 0.02, (160, 80))
    out = local_normalise(img.astype(np.float32), PX_A)
    assert np.std(out[:, :40]) < 0.3 * np.std(out[:, 120:])


def test_values_are_clipped_and_of_order_one():
    out = local_normalise(_lattice().astype(np.float32), PX_A)
    lo, hi = LOCAL_DEFAULTS["clip"]
    assert out.min() >= lo and out.max() <= hi
    assert 0.5 < out.std() < 2.0


def test_card_spec_round_trip_and_old_cards_unchanged():
    assert normalisation_spec(None)["method"] == "clip-zscore"
    assert normalisation_spec({"method": "clip-robust"}) == {"method": "clip-robust", "clip_percentiles": [0.1, 99.9]}
    spec = normalisation_spec({"method": "local-contrast", "background_sigma_A": 4})
    assert spec["background_sigma_A"] == 4.0 and spec["contrast_sigma_A"] == LOCAL_DEFAULTS["contrast_sigma_A"]
    with pytest.raises(ValueError):
        normalisation_spec({"method": "local-contrast", "clip": [3, -3]})


def test_normalise_needs_the_pixel_size_for_a_local_method():
    from atomlens.nn.data import normalise

    with pytest.raises(ValueError, match="pixel size"):
        normalise(np.ones((32, 32), np.float32), method="local-contrast")
    a = normalise(_lattice().astype(np.float32), method={"method": "local-contrast"}, px_A=PX_A)
    assert np.array_equal(a, local_normalise(_lattice().astype(np.float32), PX_A))


def test_tiled_detection_normalises_tiles_like_the_whole_image(tmp_path):
    """A local-contrast model's tiles (large images) give the atoms the whole image gives."""
    import json

    from _bundles import make_tiny_bundle
    from atomlens.nn.infer import Predictor

    b = make_tiny_bundle(tmp_path / "m")
    card = json.loads((b / "card.json").read_text())
    card["normalisation"] = {"method": "local-contrast"}
    (b / "card.json").write_text(json.dumps(card))
    pred = Predictor(b, "cpu")
    assert pred.local_norm
    img = _lattice((300, 300)).astype(np.float32)
    px_nm = card["px_size_A"] / 10
    whole, prob, _ = pred.detect(img, px_nm)
    prob_t, _ = pred.probabilities(img, px_nm)
    assert np.allclose(prob, prob_t)
    tiled, _, info = pred._detect_tiled(img, card["px_size_A"], [], 2.0, 0.5, "centroid", None, None, 150)
    assert info["tiles"] == 4
    assert abs(len(tiled) - len(whole)) <= max(2, 0.02 * len(whole))
