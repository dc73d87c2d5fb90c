"""Atoms from class probabilities with tensor operations only, for GPUs.

:func:`find_atoms_tensor` is the device-side counterpart of
:func:`atomlens.analysis.atoms.find_atoms` for ``refine="centroid"``/``"none"``: local maxima
of the smoothed foreground probability (max-pool non-maximum suppression), then
foreground-weighted centroids, class sums and scores in a small window around each maximum,
all as convolutions.  Only the per-atom numbers leave the device, so on a GPU the step from
probabilities to the atom table takes about a millisecond instead of the ~100 ms the
CPU labelling and watershed need for a megapixel.  It does not split blobs by watershed:
atoms closer than the suppression window merge, which at the model's pixel size
(atoms >= 1 Å apart) does not happen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["find_atoms_tensor"]


def _gauss_kernel(sigma: float, device) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@torch.no_grad()
def find_atoms_tensor(prob: torch.Tensor, *, threshold: float = 0.5, min_distance_px: float = 5.0,
                      window_radius_px: int | None = None, refine: str = "centroid"):
    """Atom positions, classes and scores from (C, H, W) class probabilities on any device.

    Parameters
    ----------
    prob : (C, H, W) tensor
        Softmax output; channel 0 is background.
    threshold : float
        A maximum counts as an atom when its foreground probability ``1 - prob[0]`` exceeds it.
    min_distance_px : float
        Two maxima closer than this (px, max-norm) are suppressed to the stronger one.
    window_radius_px : int, optional
        Half-width of the square window for the centroid and class sums (default:
        ``round(min_distance_px / 2)``, at least 1).
    refine : {"centroid", "none"}

    Returns
    -------
    x, y : (n,) float64 numpy arrays, px of `prob`
    cls : (n,) int64, index of the winning class (>= 1)
    score : (n,) float64, foreground-weighted mean probability of that class in the window
    """
    C, H, W = prob.shape
    p = prob.float()
    f = (1.0 - p[0]).clamp_(0, 1)[None, None]
    # light smoothing makes flat-topped blobs single-peaked
    k = _gauss_kernel(max(0.5, 0.2 * min_distance_px), p.device)
    r = k.numel() // 2
    fs = F.conv2d(F.pad(f, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    fs = F.conv2d(F.pad(fs, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    nms = 2 * max(1, int(round(min_distance_px / 2))) + 1
    # a tiny ramp breaks ties on plateaus, so one plateau gives one maximum
    ramp = torch.arange(H * W, device=p.device, dtype=torch.float32).view(1, 1, H, W) * (1e-7 / (H * W))
    fsr = fs + ramp
    peak = (fsr == F.max_pool2d(fsr, nms, stride=1, padding=nms // 2)) & (f > threshold)
    ys, xs = torch.nonzero(peak[0, 0], as_tuple=True)
    if ys.numel() == 0:
        z = np.zeros(0)
        return z, z, np.zeros(0, np.int64), z
    wr = window_radius_px if window_radius_px is not None else max(1, int(round(min_distance_px / 2)))
    fw = f * (f > threshold * 0.5)  # foreground weights, the faint rim ignored
    # window sums by convolution with box kernels (and coordinate ramps for the centroid)
    box = torch.ones(1, 1, 2 * wr + 1, 2 * wr + 1, device=p.device)
    d = torch.arange(-wr, wr + 1, dtype=torch.float32, device=p.device)
    kx = box * d.view(1, 1, 1, -1)
    ky = box * d.view(1, 1, -1, 1)
    planes = torch.cat([fw, fw * p[1:][None]], 1)  # (1, C, H, W): foreground, then each class
    sums = F.conv2d(planes.transpose(0, 1), box, padding=wr)[:, 0]  # (C, H, W)
    s_f = sums[0, ys, xs].clamp_min(1e-12)
    cls_sums = sums[1:, ys, xs]  # (C-1, n)
    cls = cls_sums.argmax(0)
    score = (cls_sums.gather(0, cls[None])[0] / s_f).clamp_(0, 1)
    if refine == "centroid":
        dx = F.conv2d(fw, kx, padding=wr)[0, 0, ys, xs] / s_f
        dy = F.conv2d(fw, ky, padding=wr)[0, 0, ys, xs] / s_f
        xf, yf = xs.float() + dx, ys.float() + dy
    else:
        xf, yf = xs.float(), ys.float()
    out = torch.stack([xf, yf, (cls + 1).float(), score]).cpu().numpy().astype(np.float64)
    return out[0], out[1], out[2].astype(np.int64), out[3]
