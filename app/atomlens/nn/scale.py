"""Pixel sizes: bringing an image to a model's pixel size, and the pixel size assumed for an
uncalibrated image.

Shared by inference (:class:`atomlens.nn.infer.Predictor`) and the annotated real images that
fine-tuning trains on (:mod:`atomlens.nn.realdata`), so that both resample and assume alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["TYPICAL_PERIOD_A", "as_tensor", "period_px_size_A", "resample"]

#: For an uncalibrated image, the strongest lattice period is assumed to be this long (Å):
#: the {100} spacing of graphene is 2.13 Å, of MoS2 2.74 Å; perovskites [001] show 3.9/2.76 Å.
TYPICAL_PERIOD_A = 2.5


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing `a`'s memory where it can.

    Parameters
    ----------
    a : numpy.ndarray
        Any shape; converted to contiguous float32 first.  A read-only array (a memory map, a
        HyperSpy view) is copied, since torch cannot wrap a buffer it may not write.

    Returns
    -------
    torch.Tensor
        float32, on the CPU, of `a`'s shape.
    """
    a = np.ascontiguousarray(a, np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def resample(img: np.ndarray, s: float) -> np.ndarray:
    """`img` resampled by the factor `s` (area averaging for shrinking, bilinear for enlarging).

    Parameters
    ----------
    img : (H, W) numpy.ndarray
        The image.
    s : float
        Scale factor: the image's pixel size over the target's (> 1 enlarges).

    Returns
    -------
    (round(H * s), round(W * s)) float32 numpy.ndarray
        At least 16 x 16 pixels; `img` itself when the size does not change.  Pixel centres
        map as ``x' = (x + 0.5) * s - 0.5``.
    """
    h, w = img.shape
    hs, ws = max(16, round(h * s)), max(16, round(w * s))
    if (hs, ws) == (h, w):
        return img
    t = as_tensor(img)[None, None]
    if s < 1:
        return F.interpolate(t, size=(hs, ws), mode="area")[0, 0].numpy()
    return F.interpolate(t, size=(hs, ws), mode="bilinear", align_corners=False)[0, 0].numpy()


def period_px_size_A(image: np.ndarray) -> tuple[float, float]:
    """The pixel size assumed for an uncalibrated image: its strongest lattice period taken as
    :data:`TYPICAL_PERIOD_A`.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        The image.

    Returns
    -------
    px_size_A : float
        Assumed pixel size (Å/px).
    period_px : float
        The lattice period measured (px; :func:`atomlens.analysis.lattice.estimate_period_px`).

    Raises
    ------
    ValueError
        For a flat, tiny or periodless image (from the period estimate).
    """
    from ..analysis.lattice import estimate_period_px

    period = estimate_period_px(image)
    return TYPICAL_PERIOD_A / period, period
