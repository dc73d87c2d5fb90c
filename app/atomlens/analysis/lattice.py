"""Lattice statistics: the dominant lattice period of an image and neighbour look-ups."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["PERIOD_REGION_PX", "estimate_period_px", "radial_power_spectrum", "nearest_neighbour_distances", "neighbours",
           "median_nn_distance", "one_directional_period", "stripes_note", "stripes_ratio", "STRIPE_RATIO"]

#: A Fourier peak this many times stronger than any peak in another direction at the same scale
#: is a stripe pattern, not a lattice.  Measured: real lattices 1.05-2.2 (the STEM and STM files
#: of ../shared/data/real), simulated ones up to 5.2 (Si [110]); the interference stripes of the
#: Ag(111) STM sample 300.
STRIPE_RATIO = 20.0


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

    Raises
    ------
    ValueError
        When `image` is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> q, power = radial_power_spectrum(np.cos(2 * np.pi * xx / 8))
    >>> len(q), float(q[np.argmax(power)])  # 1 / 8 px
    (65, 0.125)
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


#: The lattice period is estimated from at most this many pixels square at the image's centre:
#: memory and time stay bounded whatever the image's size or shape (a 1024 x 1024 region holds
#: hundreds of periods of any atomic lattice the models read).
PERIOD_REGION_PX = 1024


def estimate_period_px(image, *, min_period_px: float = 2.0, max_period_frac: float = 0.25,
                       region_px: int = PERIOD_REGION_PX) -> float:
    """Dominant lattice period of an image, in px.

    The central region of the image (at most `region_px` x `region_px`) is mean-subtracted,
    Hann-windowed and Fourier transformed (zero-padded x2); the power spectrum is averaged
    over rings of equal spatial frequency q and the strongest ring is located with parabolic
    sub-bin refinement.  Frequencies of periods longer than `max_period_frac` of the region
    (background, slow contrast changes) and shorter than `min_period_px` are ignored.

    Physically the result is the spacing ``d = 1 / q`` of the lattice planes of the strongest
    Fourier peak, *not* the distance between neighbouring columns.  For a hexagonal lattice
    with constant a whose first ring is strongest (graphene, hBN, MoS2 in HAADF) that is the
    {100} spacing ``a * sqrt(3) / 2`` (graphene: 2.13 Å; MoS2: 2.74 Å); the column spacing of
    graphene is ``a / sqrt(3)`` = 1.42 Å = 2/3 of it.

    Parameters
    ----------
    image : (H, W) array
    min_period_px, max_period_frac : float
        Range of periods searched: ``min_period_px <= d <= max_period_frac * L``, L the longer
        side of the region used.
    region_px : int
        Side of the largest central region used (memory: about 150 MB at 1024).

    Returns
    -------
    float
        Period in px.

    Raises
    ------
    ValueError
        When the image is flat (no contrast at its intensity level), holds NaN or infinite
        values, is too small for the range of periods, or shows no periodicity in it; the
        message says so and asks for the pixel size.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> round(estimate_period_px(np.cos(2 * np.pi * xx / 8) + np.cos(2 * np.pi * yy / 8)), 1)
    8.0
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    H, W = img.shape
    h, w = min(H, int(region_px)), min(W, int(region_px))
    y0, x0 = (H - h) // 2, (W - w) // 2
    region = np.asarray(img[y0:y0 + h, x0:x0 + w], dtype=np.float64)
    size = f"{H} x {W} px"
    if region.size == 0:
        raise ValueError(f"the image is too small to estimate a lattice period ({size}); give the pixel size")
    if not np.all(np.isfinite(region)):
        raise ValueError(f"the image holds NaN or infinite values: no lattice period can be estimated ({size}); "
                         f"give the pixel size")
    lo, hi = float(region.min()), float(region.max())
    eps = float(np.finfo(img.dtype).eps) if img.dtype.kind == "f" else 0.0
    if not hi - lo > 2 * eps * max(abs(lo), abs(hi)):  # relative: any intensity scale
        raise ValueError(f"the image is flat (no contrast), so no lattice period can be estimated ({size}); "
                         f"give the pixel size")
    q, p = radial_power_spectrum(region)
    L = max(h, w)
    sel = (q >= 1.0 / (max_period_frac * L)) & (q <= 1.0 / min_period_px)
    idx = np.nonzero(sel)[0]
    if len(idx) < 3:
        raise ValueError(f"the image is too small to estimate a lattice period ({size}); give the pixel size")
    lo, hi = idx[0], idx[-1]
    seg = p[lo:hi + 1]
    # interior local maxima only (a rising edge at the low-q cut-off is background, not a peak)
    inner = np.nonzero((seg[1:-1] >= seg[:-2]) & (seg[1:-1] > seg[2:]))[0] + 1
    if len(inner) == 0:
        raise ValueError(f"no lattice period found: the image shows no periodicity between {min_period_px:g} and "
                         f"{max_period_frac * L:.0f} px ({size}); give the pixel size")
    i = lo + inner[np.argmax(seg[inner])]
    a, b, c = np.log(p[i - 1] + 1e-300), np.log(p[i] + 1e-300), np.log(p[i + 1] + 1e-300)
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    qpk = q[i] + float(np.clip(off, -0.5, 0.5)) * (q[1] - q[0])
    return float(1.0 / qpk)


def one_directional_period(image, period_lo_px: float, period_hi_px: float, *, crop: int = 512):
    """The strongest Fourier peak of `image` with a period in [`period_lo_px`, `period_hi_px`],
    and how much stronger it is than the strongest peak in any other direction (more than 20°
    away) in the same range.

    A lattice has peaks in at least two directions at comparable strength; stripes (electrical
    interference, a periodic scan artefact) have one.  The central `crop` x `crop` pixels are
    used, mean-subtracted and Hann-windowed; the two axes of Fourier space are left out, where
    scan-line offsets put their power.

    Parameters
    ----------
    image : (H, W) array
        Any intensity scale; NaN or infinite values in the crop give NaN.
    period_lo_px, period_hi_px : float
        The range of periods searched, px; ``2 <= period_lo_px < period_hi_px``, else NaN.
    crop : int
        Side of the central square used, px (smaller images: their shorter side, at least 16).

    Returns
    -------
    (ratio, period_px, angle_deg) : floats; ratio is NaN when the range holds no usable peak.
        `ratio`: power of the strongest peak over the strongest more than 20° away (1 for a
        square lattice, thousands for stripes); `period_px`: its period, px; `angle_deg`: the
        direction of its wave vector (normal to the stripes), degrees from the x axis (rows
        downwards), in (-180, 180].  All three are NaN when nothing can be measured.

    Raises
    ------
    ValueError
        When `image` is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> ratio, period, angle = one_directional_period(np.cos(2 * np.pi * xx / 8) + np.cos(2 * np.pi * yy / 8), 4, 16)
    >>> round(ratio, 2), round(period)  # a square lattice: two directions as strong
    (1.0, 8)
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    n = min(int(crop), *img.shape)
    nan = (float("nan"),) * 3
    if n < 16 or not (2.0 <= period_lo_px < period_hi_px) or not np.all(np.isfinite((period_lo_px, period_hi_px))):
        return nan
    y0, x0 = (img.shape[0] - n) // 2, (img.shape[1] - n) // 2
    a = img[y0:y0 + n, x0:x0 + n]
    if not np.all(np.isfinite(a)):
        return nan
    w = np.hanning(n)
    power = np.abs(np.fft.fftshift(np.fft.fft2((a - a.mean()) * w[:, None] * w[None]))) ** 2
    ky, kx = np.indices(power.shape) - n // 2
    k = np.hypot(ky, kx)
    band = (k >= n / period_hi_px) & (k <= n / period_lo_px) & (np.abs(kx) > 1) & (np.abs(ky) > 1)
    if not band.any():
        return nan
    i = int(np.argmax(np.where(band, power, -1.0)))
    angle = math.atan2(ky.flat[i], kx.flat[i])
    off = np.abs((np.arctan2(ky, kx) - angle + np.pi / 2) % np.pi - np.pi / 2)  # direction, mod 180°
    other = band & (off > math.radians(20))
    if not other.any() or power.flat[i] <= 0:
        return nan
    return (float(power.flat[i] / max(float(power[other].max()), 1e-300 * power.flat[i])),
            float(n / k.flat[i]), math.degrees(angle))


def stripes_note(image, xy, px_size_A=None, *, nn_px: float | None = None, min_atoms: int = 20) -> str | None:
    """A warning when the atoms `xy` (px of `image`) follow stripes rather than a lattice.

    At the scale of the atoms' median nearest-neighbour distance d (periods d/2 to 2d), the
    image's strongest periodicity is compared with the other directions
    (:func:`one_directional_period`); :data:`STRIPE_RATIO` or more means one direction only.
    `nn_px`: that distance when already known (:func:`median_nn_distance` of `xy`).
    None when there is nothing to say (too few atoms, a lattice).

    Parameters
    ----------
    image : (H, W) array
        The micrograph the atoms were found in.
    xy : (n, 2) array
        Atom positions, px of `image`.
    px_size_A : float, optional
        Pixel size (Å/px): the note then gives the period in Å, else in px.
    nn_px : float, optional
        The atoms' median nearest-neighbour distance, px, when already computed.
    min_atoms : int
        Fewer atoms than this give no note.

    Returns
    -------
    str or None
        One sentence for the result's notes.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> grid = np.stack(np.meshgrid(np.arange(0, 128, 8.0), np.arange(0, 128, 8.0)), -1).reshape(-1, 2)
    >>> stripes_note(np.cos(2 * np.pi * xx / 8) + np.cos(2 * np.pi * yy / 8), grid) is None  # a lattice
    True
    >>> stripes_note(np.cos(2 * np.pi * (xx + 0.3 * yy) / 8), grid)[:8]  # stripes
    'stripes:'
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < min_atoms:
        return None
    ratio, period, angle = stripes_ratio(image, xy, nn_px=nn_px)
    if not ratio >= STRIPE_RATIO:
        return None
    size = f"{period * px_size_A:.2f} Å" if px_size_A else f"{period:.1f} px"
    return (f"stripes: at the scale of the atoms found, the image's strongest periodicity ({size}, at "
            f"{angle % 180:.0f}° from the x axis) runs in one direction only ({ratio:.0f}x any other), as interference "
            f"or scan noise does, not a lattice: atoms found along it may not be real")


def stripes_ratio(image, xy, *, nn_px: float | None = None) -> tuple[float, float, float]:
    """:func:`one_directional_period` of `image` at the scale of the atoms `xy`: periods from
    half to twice their median nearest-neighbour distance (`nn_px` when already known).
    (ratio, period_px, angle_deg); all NaN when the atoms give no scale.

    Parameters
    ----------
    image : (H, W) array
        The micrograph.
    xy : (n, 2) array
        Atom positions, px of `image` (unused when `nn_px` is given).
    nn_px : float, optional
        Their median nearest-neighbour distance, px.

    Returns
    -------
    (ratio, period_px, angle_deg) : tuple of float
        As :func:`one_directional_period` returns them, for periods from ``max(2, d / 2)`` to
        ``2 d`` px.
    """
    d = median_nn_distance(xy) if nn_px is None else float(nn_px)
    if not np.isfinite(d) or d <= 0:
        return (float("nan"),) * 3
    return one_directional_period(image, max(2.0, 0.5 * d), 2.0 * d)


def median_nn_distance(xy) -> float:
    """Median distance from a point of `xy` to its nearest other point (inf for fewer than
    two): the lattice's scale, e.g. for marker sizes and the material hint.

    Parameters
    ----------
    xy : (n, 2) array
        Positions (any unit).

    Returns
    -------
    float
        In the unit of `xy`.

    Examples
    --------
    >>> median_nn_distance([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    1.0
    """
    return float(np.median(nearest_neighbour_distances(xy))) if len(np.reshape(xy, (-1, 2))) > 1 else float("inf")


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

    Examples
    --------
    >>> nearest_neighbour_distances([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]).tolist()
    [1.0, 1.0, 2.0]
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
        Positions (any unit).
    k : int
        Number of neighbours per point.
    max_dist : float, optional
        Neighbours farther than this (unit of `xy`) are left out.

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
