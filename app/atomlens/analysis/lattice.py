"""Lattice statistics: the dominant lattice period of an image and neighbour look-ups."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["estimate_period_px", "radial_power_spectrum", "nearest_neighbour_distances", "neighbours"]


def radial_power_spectrum(image, *, pad: int = 2):
    """Radially averaged power spectrum of the Hann-windowed, mean-subtracted image.

    Parameters
    ----------
    image : (H, W) array
    pad : int
        Zero-padding factor of the FFT (finer frequency sampling).

    Returns
    -------
    q : (nb,) float64, cycles/px
        Spatial frequency of each bin (bin width ``1 / (pad * max(H, W))``).
    power : (nb,) float64
        Mean power in each bin (up to the Nyquist frequency 0.5 cycles/px).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    H, W = img.shape
    win = np.outer(np.hanning(H), np.hanning(W))
    a = (img - img.mean()) * win
    a -= win * (a.sum() / win.sum())  # zero mean after windowing too: no DC leakage
    N = pad * max(H, W)
    F = np.fft.rfft2(a, s=(N, N))
    pw = F.real ** 2 + F.imag ** 2
    fy = np.fft.fftfreq(N)[:, None]
    fx = np.fft.rfftfreq(N)[None, :]
    q = np.hypot(fx, fy)
    dq = 1.0 / N
    b = np.rint(q / dq).astype(np.int64)
    nb = N // 2 + 1
    ok = b < nb
    cnt = np.bincount(b[ok], minlength=nb)
    tot = np.bincount(b[ok], weights=pw[ok], minlength=nb)
    return np.arange(nb) * dq, tot / np.maximum(cnt, 1)


def estimate_period_px(image, *, min_period_px: float = 2.0, max_period_frac: float = 0.25) -> float:
    """Dominant lattice period of an image, in px.

    The image is mean-subtracted, Hann-windowed and Fourier transformed (zero-padded x2);
    the power spectrum is averaged over rings of equal spatial frequency q and the strongest
    ring is located with parabolic sub-bin refinement.  Frequencies of periods longer than
    `max_period_frac` of the image (background, slow contrast changes) and shorter than
    `min_period_px` are ignored.

    Physically the result is the spacing ``d = 1 / q`` of the lattice planes of the strongest
    Fourier peak, *not* the distance between neighbouring columns.  For a hexagonal lattice
    with constant a whose first ring is strongest (graphene, hBN, MoS2 in HAADF) that is the
    {100} spacing ``a * sqrt(3) / 2`` (graphene: 2.13 Å; MoS2: 2.74 Å); the column spacing of
    graphene is ``a / sqrt(3)`` = 1.42 Å = 2/3 of it.

    Parameters
    ----------
    image : (H, W) array
    min_period_px, max_period_frac : float
        Range of periods searched: ``min_period_px <= d <= max_period_frac * max(H, W)``.

    Returns
    -------
    float
        Period in px (NaN if no peak is found).
    """
    img = np.asarray(image, dtype=np.float64)
    q, p = radial_power_spectrum(img)
    L = max(img.shape)
    sel = (q >= 1.0 / (max_period_frac * L)) & (q <= 1.0 / min_period_px)
    idx = np.nonzero(sel)[0]
    if len(idx) < 3:
        return float("nan")
    lo, hi = idx[0], idx[-1]
    seg = p[lo:hi + 1]
    # interior local maxima only (a rising edge at the low-q cut-off is background, not a peak)
    inner = np.nonzero((seg[1:-1] >= seg[:-2]) & (seg[1:-1] > seg[2:]))[0] + 1
    if len(inner) == 0:
        return float("nan")
    i = lo + inner[np.argmax(seg[inner])]
    a, b, c = np.log(p[i - 1] + 1e-300), np.log(p[i] + 1e-300), np.log(p[i + 1] + 1e-300)
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    qpk = q[i] + float(np.clip(off, -0.5, 0.5)) * (q[1] - q[0])
    return float(1.0 / qpk)


def nearest_neighbour_distances(xy) -> np.ndarray:
    """Distance from each point to its nearest other point.

    Parameters
    ----------
    xy : (n, 2) array
        Positions (any unit).

    Returns
    -------
    (n,) float64
        Distances in the unit of `xy` (inf when n < 2).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 2:
        return np.full(len(xy), np.inf)
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


def neighbours(xy, k: int = 6, max_dist=None):
    """The `k` nearest other points of each point.

    Parameters
    ----------
    xy : (n, 2) array
    k : int
    max_dist : float, optional
        Neighbours farther than this are left out.

    Returns
    -------
    dist : (n, k) float64
        Distances, ascending; inf where there is no (further) neighbour.
    idx : (n, k) int64
        Indices into `xy`; -1 where there is no neighbour.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        return np.zeros((0, k)), np.zeros((0, k), np.int64)
    ub = np.inf if max_dist is None else float(max_dist)
    d, i = cKDTree(xy).query(xy, k=k + 1, distance_upper_bound=ub)
    d, i = d.reshape(n, k + 1)[:, 1:], i.reshape(n, k + 1)[:, 1:].astype(np.int64)
    i[~np.isfinite(d)] = -1
    return d, i
