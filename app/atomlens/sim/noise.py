"""Detector noise and scan artefacts, applied after rendering, in physical units.

Scan distortions that move atoms (drift, shear, flyback) are applied to the coordinates
instead (see :mod:`atomlens.sim.augment`), so that labels stay exact.  Scan-line jitter is
the one row-wise artefact applied here; :func:`line_jitter` returns the shifts so that
labels can follow.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["robust_peak", "poisson", "stem_counts", "read_noise", "line_jitter", "background", "gain_offset", "blur",
           "stm_noise", "contrast", "smooth_field", "ramp", "bowl", "thickness_field", "band_limited_noise",
           "patch_mask", "probe_tail", "scan_streaks", "line_blur"]


def robust_peak(image: np.ndarray) -> float:
    """The 99.9th percentile of a 1-in-9 subsample: the brightest columns, not hot pixels.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        Any real values; every third pixel along each axis is looked at.

    Returns
    -------
    float
        In the image's units: the value of rank ``int(0.999 m)`` (0-based, at most m - 1)
        among the m subsampled pixels; no interpolation.

    Examples
    --------
    >>> robust_peak(np.arange(900.0).reshape(30, 30))  # the subsample's maximum, pixel (27, 27)
    837.0
    """
    sub = np.ascontiguousarray(image[::3, ::3]).ravel()
    k = min(len(sub) - 1, int(0.999 * len(sub)))
    return float(np.partition(sub, k)[k])


#: Above this mean count, shot noise is drawn as a rounded normal of variance lambda
#: (skewness 1/sqrt(lambda) <= 0.32; numpy itself switches algorithm at 10): several times
#: cheaper than exact Poisson sampling.  ``noise.exact_poisson`` in a config forces exact.
POISSON_EXACT_BELOW = 10.0


def poisson(lam: np.ndarray, rng, exact: bool = False) -> np.ndarray:
    """Poisson samples of mean `lam` (float32 out).  Exact below POISSON_EXACT_BELOW counts
    (everywhere with ``exact=True``), a rounded normal approximation above.

    Parameters
    ----------
    lam : array_like
        Mean counts, >= 0, any shape (converted to float32).
    rng : numpy.random.Generator
        Source of the samples.
    exact : bool, optional
        Draw exact Poisson samples everywhere.

    Returns
    -------
    float32 numpy.ndarray
        Of `lam`'s shape: non-negative whole numbers of counts.

    Examples
    --------
    >>> c = poisson(np.full((2, 3), 4.0), np.random.default_rng(0))
    >>> c.dtype, c.shape, bool((c >= 0).all() and (c == np.rint(c)).all())
    (dtype('float32'), (2, 3), True)
    """
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

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        Noise-free intensity (arbitrary units); negative values count as 0.
    rng : numpy.random.Generator
        Source of the samples.
    dose_e_per_A2 : float, e⁻/Å²
        Electron dose.
    px_size_A : float, Å/px
        Pixel size.
    collection : float, optional
        Fraction (0..1] of the electrons collected on the brightest columns.
    exact : bool, optional
        Exact Poisson sampling everywhere (see :func:`poisson`).

    Returns
    -------
    (H, W) float32 numpy.ndarray
        Counts, mean ``dose * px² * collection`` at the :func:`robust_peak` level (a peak of
        0 is taken as 1).
    """
    peak = robust_peak(image) or 1.0
    lam = np.clip(image, 0, None) * np.float32(dose_e_per_A2 * px_size_A**2 * collection / peak)
    return poisson(lam, rng, exact)


def read_noise(image: np.ndarray, rng, sigma: float) -> np.ndarray:
    """Additive Gaussian read-out noise of std `sigma` (in the image's units).

    Parameters
    ----------
    image : numpy.ndarray
        Any shape.
    rng : numpy.random.Generator
        Source of the random numbers.
    sigma : float
        Standard deviation, image units.

    Returns
    -------
    numpy.ndarray
        `image` plus float32 normal noise (dtype as numpy promotes it); `image` itself when
        ``sigma <= 0``.
    """
    if sigma <= 0:
        return image
    return image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)


def line_jitter(image: np.ndarray, rng, sigma_px: float, corr_rows: float = 1.0):
    """Shift each scan row sideways by a random amount (std `sigma_px`), as from
    mechanical or electrical instabilities of the scan.

    Returns ``(image, shifts)`` where ``shifts[row]`` (px) is how far row `row` moved:
    an atom at row y appears at x + shifts(y).

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        The image.
    rng : numpy.random.Generator
        Source of the random numbers.
    sigma_px : float, px
        Standard deviation of the shifts.
    corr_rows : float, rows, optional
        When > 1, the shifts are smoothed along y by a Gaussian of this std (and rescaled to
        keep roughly `sigma_px`), so neighbouring rows move together.

    Returns
    -------
    image : (H, W) float32 numpy.ndarray
        Each row resampled at ``x - shift`` by linear interpolation, edge pixels repeated;
        the input itself when ``sigma_px <= 0``.
    shifts : (H,) float32 numpy.ndarray, px
        The shift of each row (zeros when ``sigma_px <= 0``).

    Examples
    --------
    >>> img = np.zeros((3, 4), np.float32)
    >>> out, shifts = line_jitter(img, np.random.default_rng(0), 0.0)
    >>> out is img, shifts.tolist()
    (True, [0.0, 0.0, 0.0])
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
    a random field with correlation length ~`scale_px` plus a tilt, std ~ amplitude.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Source of the random numbers.
    amplitude : float
        Scale of the field and of the tilt, image units.
    scale_px : float, px
        Correlation length of the field.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        ``amplitude * (f + tilt)``: f a smooth field of unit variance on average (8 random
        plane waves), the tilt a random normal slope (per max(H, W) px) along x and along y,
        each zero at x (or y) = max(H, W) / 2.
    """
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
    """Detector gain and dark offset: counts -> recorded values.

    Parameters
    ----------
    image : numpy.ndarray
        Counts, any shape.
    gain : float
        Recorded units per count.
    offset : float
        Dark level, recorded units.

    Returns
    -------
    float32 numpy.ndarray
        ``image * gain + offset``.

    Examples
    --------
    >>> gain_offset(np.array([0.0, 10.0]), 2.0, 100.0).tolist()
    [100.0, 120.0]
    """
    return (image * gain + offset).astype(np.float32)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Extra Gaussian blur (vibration, defocus spread, sample drift during the dwell).

    Parameters
    ----------
    image : numpy.ndarray
        Typically (H, W); blurred along every axis (mirrored edges).
    sigma_px : float, px
        Standard deviation of the Gaussian.

    Returns
    -------
    float32 numpy.ndarray
        Of `image`'s shape; `image` itself when ``sigma_px <= 0``.
    """
    if sigma_px <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma_px).astype(np.float32)


def line_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of `sigma_px` along the rows only (the fast scan direction): the finite
    response of a STEM detector and its amplifier smears each pixel's signal, and its noise,
    into the next pixels of the same scan line (float32).  Symmetric, so columns stay put.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        The image (mirrored at its left and right edges).
    sigma_px : float, px
        Standard deviation of the Gaussian along x.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        `image` itself when ``sigma_px <= 0``.
    """
    if sigma_px <= 0:
        return image
    return ndimage.gaussian_filter1d(image, sigma_px, axis=1).astype(np.float32)


def stm_noise(height_A: np.ndarray, rng, *, sigma_A: float = 0.02, line_offset_A: float = 0.05,
              tip_change_prob: float = 0.0) -> np.ndarray:
    """STM noise: white z noise, a random-walk offset per scan line (feedback and 1/f drift),
    and optionally a tip change (a step in apparent height from a random line on).

    Parameters
    ----------
    height_A : (H, W) numpy.ndarray, Å
        The topograph.
    rng : numpy.random.Generator
        Source of the random numbers.
    sigma_A : float, Å, optional
        Standard deviation of the white noise.
    line_offset_A : float, Å, optional
        Standard deviation of each line's step s_i; line i is offset by
        ``s_i + 0.3 * (s_0 + ... + s_i)``.
    tip_change_prob : float, optional
        Probability (0..1) of one tip change: from a random row in the middle 3/4 of the
        image down, the height steps by ±0.1..0.4 Å.

    Returns
    -------
    (H, W) float32 numpy.ndarray, Å
        A new array.
    """
    h, _ = height_A.shape
    out = height_A + rng.normal(0, sigma_A, height_A.shape)
    steps = rng.normal(0, line_offset_A, h)
    out += (np.cumsum(steps) * 0.3 + steps)[:, None]
    if rng.random() < tip_change_prob:
        row = rng.integers(h // 8, h - h // 8)
        out[row:] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.4)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- real-image artefacts
# Backgrounds, contamination, thickness changes, probe tails and scan streaks as real HAADF
# images show them (issue 24).  Every function draws its random numbers from `rng` only, so
# :func:`atomlens.sim.simulate.simulate` stays deterministic for a seed, and is called only
# when its config key is present, so configs without the keys give the images they gave.

def contrast(image: np.ndarray) -> float:
    """The 1-99 % intensity range of a 1-in-4 subsample (the "contrast" that the
    background and patch heights are multiples of); 1.0 for a flat image.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        Every second pixel along each axis is looked at.

    Returns
    -------
    float
        99th minus 1st percentile (interpolated), image units; 1.0 where that is 0.

    Examples
    --------
    >>> contrast(np.zeros((4, 4)))
    1.0
    """
    sub = np.ascontiguousarray(image[::2, ::2]).ravel()
    lo, hi = np.percentile(sub, (1.0, 99.0))
    return float(hi - lo) or 1.0


def smooth_field(shape, rng, scale_px: float, m: int = 8) -> np.ndarray:
    """A smooth Gaussian random field of unit variance (on average) and correlation length
    ~`scale_px` (px), by `m` random Fourier features (see :func:`background`); float32.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Source of the random numbers.
    scale_px : float, px
        Correlation length (values below 1e-3 count as 1e-3).
    m : int, optional
        Number of plane waves; more gives a more Gaussian field.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        Zero mean and unit variance in expectation (not normalised over this field).
    """
    h, w = shape
    kvec = rng.normal(0, 1.0 / (2 * np.pi * max(scale_px, 1e-3)), (m, 2)) * 2 * np.pi  # rad/px
    phase = rng.uniform(0, 2 * np.pi, m)
    ay = np.outer(np.arange(h), kvec[:, 1]) + phase
    ax = np.outer(kvec[:, 0], np.arange(w))
    f = (np.cos(ay).astype(np.float32) @ np.cos(ax).astype(np.float32)
         - np.sin(ay).astype(np.float32) @ np.sin(ax).astype(np.float32))
    f *= np.float32(1.0 / np.sqrt(m / 2.0))
    return f


def ramp(shape, rng, height: float) -> np.ndarray:
    """A linear background rising by `height` (image units) across the image, in a random
    direction, from 0 at the lowest corner; float32.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Draws the direction (one uniform angle).
    height : float
        Rise from the lowest to the highest corner, image units.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        From 0 to `height`.

    Examples
    --------
    >>> r = ramp((4, 5), np.random.default_rng(0), 2.0)
    >>> r.shape, float(r.min()), float(r.max())
    ((4, 5), 0.0, 2.0)
    """
    h, w = shape
    a = rng.uniform(0, 2 * np.pi)
    g = (np.cos(a) * np.arange(w, dtype=np.float32)[None, :]
         + np.sin(a) * np.arange(h, dtype=np.float32)[:, None])
    g -= g.min()
    return (np.float32(height / max(float(g.max()), 1e-9)) * g).astype(np.float32)


def bowl(shape, rng, height: float) -> np.ndarray:
    """A background rising quadratically from a random centre (inside the central half of
    the image) towards the edges, 0 at the centre and `height` at the farthest pixel, as a
    thickness bowl of a wedge-polished or ion-milled sample; float32.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Draws the centre and the ellipticity (x weighted by 0.6..1).
    height : float
        Value at the farthest pixel, image units.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        From about 0 (at the pixel nearest the centre) to `height`.
    """
    h, w = shape
    cy, cx = rng.uniform(0.25, 0.75) * (h - 1), rng.uniform(0.25, 0.75) * (w - 1)
    e = rng.uniform(0.6, 1.0)  # a slightly elliptical bowl
    yy = ((np.arange(h, dtype=np.float32) - cy) ** 2)[:, None]
    xx = ((np.arange(w, dtype=np.float32) - cx) ** 2 * e)[None, :]
    r2 = yy + xx
    return (np.float32(height / max(float(r2.max()), 1e-9)) * r2).astype(np.float32)


def thickness_field(shape, rng, amplitude: float, scale_px: float) -> np.ndarray:
    """A smooth multiplicative thickness factor 1 + amplitude * f (f a smooth field of
    correlation length `scale_px`, zero mean and unit std over this field), clipped to
    >= 0.1: multiplying a render by it
    changes both its mean and its contrast, as a change of sample thickness does.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Source of the random numbers.
    amplitude : float
        Relative standard deviation of the thickness over the field.
    scale_px : float, px
        Correlation length (see :func:`smooth_field`).

    Returns
    -------
    (H, W) float32 numpy.ndarray
        Dimensionless factor, mean 1 and std `amplitude` before the clip at 0.1.
    """
    f = smooth_field(shape, rng, scale_px)
    f -= f.mean()
    f *= np.float32(amplitude / (float(f.std()) or 1.0))  # relative std over this field
    f += np.float32(1.0)
    np.maximum(f, np.float32(0.1), out=f)
    return f


def band_limited_noise(shape, rng, kernel_ft: np.ndarray) -> np.ndarray:
    """Unit-std Gaussian noise whose power spectrum is |kernel_ft|^2: white noise seen
    through a probe (the speckle of amorphous material at the probe's scale).

    `kernel_ft` is a kernel's transform on the rfft grid of an (hp, wp) field with
    hp >= H, wp >= W (e.g. ``probe_ft`` of an unpadded :class:`atomlens.sim.render.Grid`);
    the noise is drawn in Fourier space (one inverse FFT) and cropped to `shape`.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px; at most (hp, wp).
    rng : numpy.random.Generator
        Source of the random numbers.
    kernel_ft : (hp, wp // 2 + 1) numpy.ndarray
        The kernel's transform; wp is taken as ``2 * (kernel_ft.shape[1] - 1)`` (even).

    Returns
    -------
    (H, W) float32 numpy.ndarray
        Zero mean and unit standard deviation over the crop (normalised exactly).
    """
    from scipy import fft as sfft

    hp, nkx = kernel_ft.shape
    wp = 2 * (nkx - 1)
    spec = np.empty((hp, nkx), np.complex64)
    spec.real = rng.standard_normal((hp, nkx), dtype=np.float32)
    spec.imag = rng.standard_normal((hp, nkx), dtype=np.float32)
    spec *= kernel_ft
    out = sfft.irfft2(spec, s=(hp, wp), workers=1)[:shape[0], :shape[1]]
    out -= out.mean()
    sd = float(out.std()) or 1.0
    return np.ascontiguousarray(out / sd, dtype=np.float32)


def patch_mask(shape, rng, area: float, edge_px: float | None = None) -> np.ndarray:
    """One contamination patch: a soft-edged blob of irregular outline covering about
    `area` (fraction of the field), centred anywhere in the image (so it may run off an
    edge).  Values 0..1, float32.

    Parameters
    ----------
    shape : (int, int)
        (H, W), px.
    rng : numpy.random.Generator
        Source of the random numbers.
    area : float
        Fraction of the field (values below 1e-4 count as 1e-4); the mean radius is
        ``sqrt(area * H * W / pi)`` px, modulated by harmonics 2, 3 and 5.
    edge_px : float, px, optional
        Softness of the rim (the tanh width); default 0.08..0.25 of the radius, at least 1 px.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        1 inside, 0 outside, 0.5 on the outline.
    """
    h, w = shape
    r0 = math.sqrt(max(area, 1e-4) * h * w / math.pi)
    cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
    yy = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.arange(w, dtype=np.float32)[None, :] - np.float32(cx)
    d = np.sqrt(yy * yy + xx * xx)
    th = np.arctan2(yy, xx)
    r = np.ones_like(d)
    for k in (2, 3, 5):  # an irregular outline: a few harmonics of the radius
        r += np.float32(rng.uniform(0, 0.45 / k)) * np.cos(k * th + np.float32(rng.uniform(0, 2 * np.pi)))
    r *= np.float32(r0)
    e = np.float32(edge_px if edge_px is not None else max(1.0, rng.uniform(0.08, 0.25) * r0))
    return (0.5 * (1.0 + np.tanh((r - d) / e))).astype(np.float32)


def probe_tail(image: np.ndarray, fraction: float, sigma_px: float) -> np.ndarray:
    """Move `fraction` of the intensity into a broad Gaussian halo of std `sigma_px` (px),
    as residual aberrations and the probe's tails do: (1 - f) I + f (G * I).

    The halo is smooth, so it is computed on a block-averaged copy (blocks of ~sigma/3 px)
    and interpolated back (mirror edges): the cost does not grow with its width.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        The image.
    fraction : float
        f, the share of the intensity moved into the halo (0..1).
    sigma_px : float, px
        Standard deviation of the halo's Gaussian (truncated at 3 sigma).

    Returns
    -------
    (H, W) float32 numpy.ndarray
        `image` itself when `fraction` or `sigma_px` is <= 0.
    """
    if fraction <= 0 or sigma_px <= 0:
        return image
    h, w = image.shape
    k = max(1, int(sigma_px // 3))
    if k > 1:
        hb, wb = -(-h // k), -(-w // k)
        big = np.pad(image, ((0, hb * k - h), (0, wb * k - w)), mode="edge")
        small = big.reshape(hb, k, wb, k).mean(axis=(1, 3), dtype=np.float32)
        small = ndimage.gaussian_filter(small, sigma_px / k, mode="reflect", truncate=3.0)
        # block centres sit at (k - 1) / 2 + k i: map the pixel grid onto them
        yy = (np.arange(h, dtype=np.float32) - (k - 1) / 2) / k
        xx = (np.arange(w, dtype=np.float32) - (k - 1) / 2) / k
        halo = ndimage.map_coordinates(small, np.meshgrid(yy, xx, indexing="ij"), order=1, mode="nearest")
    else:
        halo = ndimage.gaussian_filter(image, sigma_px, mode="reflect", truncate=3.0)
    return ((1.0 - fraction) * image + fraction * halo).astype(np.float32)


def scan_streaks(image: np.ndarray, rng, rate: float, *, max_rows: int = 3,
                 strength: float = 0.3) -> tuple[np.ndarray, list]:
    """Scan streaks: a Poisson(`rate`) number of events, each a run of 1-`max_rows` scan
    lines whose gain jumps (x U(1 - strength, 1 + strength)) or whose offset jumps
    (+- U(0.2, 1) * strength * the image's contrast), as detector or scan-electronics
    glitches give.  From a random column on, or the whole line.  Returns (image, events)
    with events as (row, n_rows, kind) for the record.

    Parameters
    ----------
    image : (H, W) numpy.ndarray
        The image; not modified.
    rng : numpy.random.Generator
        Source of the random numbers.
    rate : float
        Mean number of events per image (none when <= 0).
    max_rows : int, optional
        Longest run of lines per event (a run starting near the bottom is cut off there).
    strength : float, optional
        Relative size of the jumps (see above); 30 % of the events start at a random column.

    Returns
    -------
    image : (H, W) float32 numpy.ndarray
        A modified copy; `image` itself when there is no event.
    events : list of (int, int, str)
        ``(row, n_rows, kind)`` per event, kind ``"gain"`` or ``"offset"``.
    """
    n = int(rng.poisson(rate)) if rate > 0 else 0
    if n == 0:
        return image, []
    out = np.array(image, dtype=np.float32, copy=True)
    h, w = out.shape
    c = contrast(out)
    ev = []
    for _ in range(n):
        r = int(rng.integers(h))
        k = int(rng.integers(1, max_rows + 1))
        x0 = int(rng.integers(w)) if rng.random() < 0.3 else 0
        if rng.random() < 0.5:
            out[r:r + k, x0:] *= np.float32(rng.uniform(1 - strength, 1 + strength))
            ev.append((r, k, "gain"))
        else:
            out[r:r + k, x0:] += np.float32(rng.choice([-1, 1]) * rng.uniform(0.2, 1.0) * strength * c)
            ev.append((r, k, "offset"))
    return out, ev
