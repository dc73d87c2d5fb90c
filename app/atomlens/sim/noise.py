"""Detector noise and scan artefacts, applied after rendering, in physical units.

Scan distortions that move atoms (drift, shear, flyback) are applied to the coordinates
instead (see :mod:`atomlens.sim.augment`), so that labels stay exact.  Scan-line jitter is
the one row-wise artefact applied here; :func:`line_jitter` returns the shifts so that
labels can follow.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["robust_peak", "poisson", "stem_counts", "read_noise", "line_jitter", "background", "gain_offset", "blur",
           "stm_noise"]


def robust_peak(image: np.ndarray) -> float:
    """The 99.9th percentile of a 1-in-9 subsample: the brightest columns, not hot pixels."""
    sub = np.ascontiguousarray(image[::3, ::3]).ravel()
    k = min(len(sub) - 1, int(0.999 * len(sub)))
    return float(np.partition(sub, k)[k])


#: Above this mean count, shot noise is drawn as a rounded normal of variance lambda
#: (skewness 1/sqrt(lambda) <= 0.32; numpy itself switches algorithm at 10): several times
#: cheaper than exact Poisson sampling.  ``noise.exact_poisson`` in a config forces exact.
POISSON_EXACT_BELOW = 10.0


def poisson(lam: np.ndarray, rng, exact: bool = False) -> np.ndarray:
    """Poisson samples of mean `lam` (float32 out).  Exact below POISSON_EXACT_BELOW counts
    (everywhere with ``exact=True``), a rounded normal approximation above."""
    lam = np.asarray(lam, dtype=np.float32)
    if exact:
        return rng.poisson(lam).astype(np.float32)
    out = rng.standard_normal(lam.shape, dtype=np.float32)
    out *= np.sqrt(lam)
    out += lam
    np.rint(out, out=out)
    np.maximum(out, 0, out=out)
    low = lam < POISSON_EXACT_BELOW
    if low.any():
        out[low] = rng.poisson(lam[low])
    return out


def stem_counts(image: np.ndarray, rng, dose_e_per_A2: float, px_size_A: float,
                collection: float = 0.05, exact: bool = False) -> np.ndarray:
    """Shot noise for a dose in e-/Å^2 (see :func:`poisson`).

    `image` is scaled so that its 99.9th percentile receives `collection` (the fraction of
    the probe current that the detector collects on the brightest columns) of the
    electrons per pixel, dose * px^2.  Returns detected electron counts (float32).
    """
    peak = robust_peak(image) or 1.0
    lam = np.clip(image, 0, None) * np.float32(dose_e_per_A2 * px_size_A**2 * collection / peak)
    return poisson(lam, rng, exact)


def read_noise(image: np.ndarray, rng, sigma: float) -> np.ndarray:
    """Additive Gaussian read-out noise of std `sigma` (in the image's units)."""
    if sigma <= 0:
        return image
    return image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)


def line_jitter(image: np.ndarray, rng, sigma_px: float, corr_rows: float = 1.0):
    """Shift each scan row sideways by a random amount (std `sigma_px`), as from
    mechanical or electrical instabilities of the scan.

    Returns ``(image, shifts)`` where ``shifts[row]`` (px) is how far row `row` moved:
    an atom at row y appears at x + shifts(y).
    """
    h, w = image.shape
    if sigma_px <= 0:
        return image, np.zeros(h, np.float32)
    s = rng.normal(0, sigma_px, h)
    if corr_rows > 1:
        s = ndimage.gaussian_filter1d(s, corr_rows) * np.sqrt(corr_rows * 2 * np.sqrt(np.pi))
    # row r is sampled at x - s_r = x - k_r - f_r (k integer, 0 <= f < 1): a blend of the
    # pixels j - k_r - 1 (weight f) and j - k_r (weight 1 - f), edges clamped
    k = np.floor(s).astype(np.int32)
    f = (s - k).astype(np.float32)[:, None]
    cols = np.arange(w, dtype=np.int32)[None, :] - k[:, None]
    rowbase = (np.arange(h, dtype=np.int32) * w)[:, None]
    flat = np.ascontiguousarray(image, dtype=np.float32).ravel()
    right = flat.take(np.clip(cols, 0, w - 1) + rowbase)
    left = flat.take(np.clip(cols - 1, 0, w - 1) + rowbase)
    out = right + f * (left - right)
    return out.astype(np.float32), s.astype(np.float32)


def background(shape, rng, amplitude: float, scale_px: float) -> np.ndarray:
    """A slowly varying background (thickness, carbon film, detector non-uniformity):
    a random field with correlation length ~`scale_px` plus a tilt, std ~ amplitude."""
    h, w = shape
    # a Gaussian random field with correlation length `scale_px`, by random Fourier features:
    # a few plane waves with wave vectors drawn from the field's (Gaussian) spectrum, summed as
    # one small complex product (H x m)(m x W); a real-space filter this wide costs ~20 ms
    m = 8
    kvec = rng.normal(0, 1.0 / (2 * np.pi * max(scale_px, 1e-3)), (m, 2)) * 2 * np.pi  # rad/px
    phase = rng.uniform(0, 2 * np.pi, m)
    ay = np.outer(np.arange(h), kvec[:, 1]) + phase  # cos(a + b) = cos a cos b - sin a sin b
    ax = np.outer(kvec[:, 0], np.arange(w))
    coarse = (np.cos(ay).astype(np.float32) @ np.cos(ax).astype(np.float32)
              - np.sin(ay).astype(np.float32) @ np.sin(ax).astype(np.float32))
    coarse *= np.float32(1.0 / np.sqrt(m / 2.0))  # unit variance on average
    n = max(h, w)
    tilt_x = rng.normal() * (np.arange(w) / n - 0.5)
    tilt_y = rng.normal() * (np.arange(h) / n - 0.5)
    return (amplitude * (coarse + tilt_x[None, :] + tilt_y[:, None])).astype(np.float32)


def gain_offset(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Detector gain and dark offset: counts -> recorded values."""
    return (image * gain + offset).astype(np.float32)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Extra Gaussian blur (vibration, defocus spread, sample drift during the dwell)."""
    if sigma_px <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma_px).astype(np.float32)


def stm_noise(height_A: np.ndarray, rng, *, sigma_A: float = 0.02, line_offset_A: float = 0.05,
              tip_change_prob: float = 0.0) -> np.ndarray:
    """STM noise: white z noise, a random-walk offset per scan line (feedback and 1/f drift),
    and optionally a tip change (a step in apparent height from a random line on)."""
    h, _ = height_A.shape
    out = height_A + rng.normal(0, sigma_A, height_A.shape)
    steps = rng.normal(0, line_offset_A, h)
    out += (np.cumsum(steps) * 0.3 + steps)[:, None]
    if rng.random() < tip_change_prob:
        row = rng.integers(h // 8, h - h // 8)
        out[row:] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.4)
    return out.astype(np.float32)
