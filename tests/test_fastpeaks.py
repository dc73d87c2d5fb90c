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
