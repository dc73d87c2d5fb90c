"""The device-side atom finder (used on GPUs) agrees with the CPU one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomlens.analysis.metrics import match_points
from atomlens.nn.fastpeaks import find_atoms_tensor
from atomlens.nn.infer import Predictor
from atomlens.sim import simulate


def test_tensor_peaks_on_synthetic_blobs():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    centres = [(10.3, 12.7), (30.0, 30.5), (50.6, 20.2)]
    f = np.zeros((64, 64), np.float32)
    for cx, cy in centres:
        f = np.maximum(f, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2)))
    prob = np.stack([1 - f, f * 0.9, f * 0.1, np.zeros_like(f)])
    prob[:, 28:34, 27:34] = prob[[0, 2, 1, 3], 28:34, 27:34]  # the middle atom is a dopant
    x, y, cls, score = find_atoms_tensor(torch.from_numpy(prob), threshold=0.5, min_distance_px=5)
    assert len(x) == 3
    order = np.argsort(x)
    got = np.stack([x[order], y[order]], 1)
    want = np.array(sorted(centres))
    assert np.abs(got - want).max() < 0.15
    assert list(cls[order]) == [1, 2, 1]
    assert np.all((score > 0.5) & (score <= 1))


@pytest.mark.parametrize("structure,px", [("graphene", 0.1), ("MoS2", 0.2)])
def test_on_device_detect_matches_cpu_path(structure, px):
    p = Predictor("stem-haadf", "cpu")
    r = simulate({"structure": structure, "shape": [256, 256], "px_size_A": px,
                  "defects": {"vacancy": {"rate": 0.02}}}, 11)
    a, prob_a, _ = p.detect(r.image, px / 10, fast=False)
    b, prob_b, info = p.detect(r.image, px / 10, fast=True)
    assert info["on_device"] and prob_b.shape == prob_a.shape
    ib, ia, dist = match_points(b.xy, a.xy, 0.5 / px)
    assert len(ib) >= 0.99 * max(len(a), len(b))
    assert np.median(dist) * px < 0.05  # Å
    assert np.mean(b.cls[ib] == a.cls[ia]) > 0.99


@pytest.mark.parametrize("fast", [False, True])
def test_detect_accepts_a_read_only_image(fast):
    """Memory maps and HyperSpy views are read-only; both paths take them without copying
    warnings and give the same atoms as a writable copy."""
    import warnings

    p = Predictor("stem-haadf", "cpu")
    r = simulate({"structure": "graphene", "shape": [128, 128], "px_size_A": 0.1}, 5)
    img = np.ascontiguousarray(r.image, np.float32)
    ro = img.copy()
    ro.setflags(write=False)
    a, _, _ = p.detect(img, 0.01, fast=fast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b, _, _ = p.detect(ro, 0.01, fast=fast)
    assert len(a) > 50 and np.array_equal(a.xy, b.xy)


def test_local_maxima_keep_one_pixel_per_group_of_exactly_equal_maxima():
    """Exact ties on purpose: every plateau, ridge or pair of equal maxima within one window
    gives one maximum (the member nearest the group's centre); equal maxima farther apart stay
    two."""
    from atomlens.nn.fastpeaks import local_maxima_tensor

    v = np.zeros((40, 60), np.float32)
    v[5, 5] = v[5, 6] = 0.7            # two neighbouring pixels, equal
    v[5, 20:23] = v[6, 20:23] = v[7, 20:23] = 0.9  # a 3 x 3 flat top
    v[15, 5:45] = 0.8                   # a ridge 40 px long, wider than any window
    v[25:37, 5:17] = 1.0                # a saturated 12 x 12 block
    v[25, 30] = v[25, 32] = 0.6         # equal maxima 2 px apart, a dip between them
    v[30, 40] = v[30, 52] = 0.6         # equal maxima 12 px apart: two atoms
    t = torch.from_numpy(v)[None, None]
    peaks = local_maxima_tensor(t, 5, t > 0.1)[0, 0].numpy()
    got = sorted(map(tuple, np.argwhere(peaks)))
    assert got == [(5, 5), (6, 21), (15, 24), (25, 30), (30, 10), (30, 40), (30, 52)], got
    # without ties nothing changes: the maxima of a tie-free map are exactly v == max_pool(v)
    w = np.random.default_rng(3).random((40, 60)).astype(np.float32)
    tw = torch.from_numpy(w)[None, None]
    plain = (tw == torch.nn.functional.max_pool2d(tw, 5, 1, 2))[0, 0].numpy()
    assert np.array_equal(local_maxima_tensor(tw, 5)[0, 0].numpy(), plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_atom_finders_give_one_atom_per_flat_topped_blob(dtype):
    """Saturated probabilities (p = 1 exactly over a column, as bf16 arithmetic gives) make
    plateaus of exactly equal values: the device and the CPU finders give one atom each."""
    from atomlens.analysis.atoms import find_atoms

    f = np.zeros((64, 64), dtype)
    f[10:13, 10:13] = 1.0             # 3 x 3 saturated column
    f[40:44, 30:34] = 1.0             # 4 x 4
    f[30, 50:52] = 1.0                # two equal pixels side by side
    prob = np.stack([1 - f, f, np.zeros_like(f)])
    x, y, cls, _ = find_atoms_tensor(torch.from_numpy(prob), threshold=0.5, min_distance_px=5)
    got = sorted(zip(np.round(x, 2), np.round(y, 2)))
    assert len(got) == 3, got
    np.testing.assert_allclose(got, [(11.0, 11.0), (31.5, 41.5), (50.5, 30.0)], atol=0.05)
    atoms = find_atoms(prob.astype(np.float32), threshold=0.5)
    assert len(atoms) == 3
    np.testing.assert_allclose(sorted(map(tuple, atoms.xy)), [(11.0, 11.0), (31.5, 41.5), (50.5, 30.0)], atol=0.05)


def test_cam_defects_give_one_defect_per_flat_topped_peak():
    """A class activation map with exactly equal maxima: a 4 x 4 flat top was four defects
    (its corners are min_distance apart), two equal neighbouring pixels may not be two."""
    from atomlens.analysis.cam import defects_from_cam

    m = np.zeros((1, 40, 40))
    m[0, 10, 10] = m[0, 10, 11] = 1.0
    m[0, 20:24, 20:24] = 0.8
    m[0, 30, 5] = m[0, 30, 7] = 0.9
    m[0, 5, 30] = 0.95
    d = defects_from_cam(m, ("dopant",), min_distance_px=3)
    got = sorted(zip(d.x.tolist(), d.y.tolist()))
    assert got == [(5.0, 30.0), (10.0, 10.0), (21.0, 21.0), (30.0, 5.0)], got
