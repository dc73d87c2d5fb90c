"""Background-free, locally scaled images: what a ``local-contrast`` model sees.

Real micrographs carry smooth backgrounds (thickness ramps and bowls, detector drift) and bright
patches (hydrocarbon contamination) many times stronger than the lattice's own contrast.  A
global clip and z-score lets such a background set the scale of the whole image, so the lattice
everywhere else shrinks to nothing.  Here instead, at a length set by the physics (a few
neighbour distances, in Å):

1. the smooth background is removed by a local quadratic fit (Gaussian weights of
   ``background_sigma_A``, over the pixels inside the image, so that a ramp or a bowl is
   removed exactly up to the image edges);
2. the result is divided by the local RMS contrast (Gaussian window of ``contrast_sigma_A``;
   squares above (OUTLIER_CAP x the median local RMS)^2 count as that, so that the residue of
   a sharp bright edge does not spread), but never by less than the image's median local
   contrast (``floor``), so that a bright, busy patch is scaled down where it is while flat
   regions (vacuum, thin support) are not blown up into false atoms;
3. values are clipped to ``clip`` (in units of that contrast).

Only the floor is a statistic of the whole image; an image processed in tiles passes the
floor of the whole image to every tile (:func:`contrast_floor` of joined samples).  (The
outlier cap is each tile's own: tiles are 1024 px or more, whose median local contrast is
that of the image unless most of the tile is vacuum or contamination.)

numpy and scipy only: importable without torch.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LOCAL_DEFAULTS", "contrast_floor", "floor_sample", "local_background", "local_contrast",
           "local_normalise", "margin_A"]

#: The parameters of the ``local-contrast`` normalisation (model cards record them).
LOCAL_DEFAULTS = {"background_sigma_A": 3.0, "contrast_sigma_A": 3.0, "clip": [-6.0, 12.0]}
_TRUNCATE = 3.0
#: Squares of the background-free image above (this x the median local RMS)^2 count as that
#: in the local contrast (see :func:`local_contrast`).
OUTLIER_CAP = 3.0


#: The normalisation statistics use every pixel of an image up to this many, else this many
#: pixels drawn at random (seeded by the shape, so an image is always scaled the same way).
#: A random draw cannot alias with a lattice, as a fixed stride can (a stride of 25 columns
#: on a lattice of period 25/k samples one phase of it only).
STATS_SAMPLE_PX = 2**18


def _subsample(img: np.ndarray, n: int = STATS_SAMPLE_PX) -> np.ndarray:
    """The pixels of the 2D `img` the statistics are taken from (float64, 1D): all of them
    up to `n`, else `n` drawn uniformly at random (seeded by the shape)."""
    img = np.asarray(img)
    h, w = img.shape[-2:]
    if h * w <= n:
        return np.asarray(img, np.float64).ravel()
    rng = np.random.default_rng([h, w, 0x5CA1E])
    idx = np.sort(rng.integers(0, h * w, int(n)))  # sorted: memory maps are read in order
    return np.asarray(img[idx // w, idx % w], np.float64)


#: The stride of the samples of smooth maps (and of the image for its prescaling).
SAMPLE_STRIDE = 4


def _strided(a: np.ndarray) -> np.ndarray:
    """Every SAMPLE_STRIDE-th pixel of every SAMPLE_STRIDE-th row of `a`, float64, finite only."""
    v = np.asarray(a[::SAMPLE_STRIDE, ::SAMPLE_STRIDE], np.float64).ravel()
    return v[np.isfinite(v)]


def margin_A(spec: dict) -> float:
    """How far (Å) a pixel's normalised value depends on its neighbours: tiles of a large image
    need at least this margin to be normalised as the whole image is.

    Parameters
    ----------
    spec : dict or None
        A ``local-contrast`` card entry; missing keys (or None) take :data:`LOCAL_DEFAULTS`.

    Returns
    -------
    float
        ``3 * (background_sigma_A + contrast_sigma_A)``, Å.

    Examples
    --------
    >>> margin_A({}), margin_A({"background_sigma_A": 5.0})
    (18.0, 24.0)
    """
    p = {**LOCAL_DEFAULTS, **(spec or {})}
    return _TRUNCATE * (float(p["background_sigma_A"]) + float(p["contrast_sigma_A"]))


def _prescale(img: np.ndarray) -> tuple[np.ndarray, float]:
    """(`img` as float32 of order one, the factor it was divided by): minus its median, over
    its 1-99 % spread (from a seeded sample, in float64), so that data scaled by 1e19 or 1e-25
    neither overflow nor underflow.  A flat image gives zeros and a factor of 0."""
    sub = _strided(img)
    med = float(np.median(sub))
    spread = float(np.percentile(sub, 99) - np.percentile(sub, 1)) or float(np.ptp(sub))
    if not (math.isfinite(spread) and spread > 0 and math.isfinite(med)):
        return np.zeros(img.shape, np.float32), 0.0
    out = np.asarray((np.asarray(img, np.float64) - med) / spread, np.float32)
    return out, spread


def _bin(a: np.ndarray, b: int):
    """Block means of `a` over b x b blocks (the last ones partial): (means, row centres,
    column centres, rows per block, columns per block), float64."""
    h, w = a.shape
    ry, rx = np.arange(0, h, b), np.arange(0, w, b)
    ny = np.diff(np.append(ry, h)).astype(np.float64)
    nx = np.diff(np.append(rx, w)).astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(np.asarray(a, np.float32), ry, axis=0), rx, axis=1)
    return sums / np.outer(ny, nx), ry + (ny - 1) / 2, rx + (nx - 1) / 2, ny, nx


def _weights(n: int, centres: np.ndarray, counts: np.ndarray, sigma: float, at=None) -> np.ndarray:
    """(n, len(centres)): Gaussian weight of each block (its pixel count times the Gaussian of
    its centre's distance) for each of n positions (`at`; default the pixels 0..n-1), cut at
    _TRUNCATE sigma."""
    pos = np.arange(n, dtype=np.float64) if at is None else np.asarray(at, np.float64)
    d = pos[:, None] - centres[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2) * counts[None, :]
    g[np.abs(d) > _TRUNCATE * sigma + 0.5] = 0.0
    return g


def _block(sigma_px: float) -> int:
    """Block size for a Gaussian window of `sigma_px`: a third of it (the window then spans
    about 18 blocks; blocks smooth nothing the window does not)."""
    return max(1, int(sigma_px // 3))


def _interp_matrix(n: int, centres: np.ndarray) -> np.ndarray:
    """(n, len(centres)): linear interpolation from values at `centres` (increasing) to the
    pixel positions 0..n-1, extrapolated linearly beyond the first and last centre."""
    m = len(centres)
    out = np.zeros((n, m))
    if m == 1:
        out[:, 0] = 1.0
        return out
    pos = np.arange(n, dtype=np.float64)
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, m - 2)
    t = (pos - centres[j]) / (centres[j + 1] - centres[j])
    out[np.arange(n), j] = 1.0 - t
    out[np.arange(n), j + 1] = t
    return out


def local_background(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """The local quadratic fit of `img` ((H, W)) under Gaussian weights of `sigma_px`: the
    smooth background (float32), exact for a plane or a bowl (any quadratic) up to the edges.

    The fit reads block means of `img` (blocks of a third of `sigma_px`, weighted by their
    pixel counts and the Gaussian at their centres); it is solved at the block centres and
    interpolated linearly to every pixel, so its cost is a few small matrix products.

    Parameters
    ----------
    img : (H, W) array
        Real values of order one (:func:`local_contrast` prescales the image first).
    sigma_px : float
        Standard deviation of the Gaussian weights, px (> 0; the fit spans 3 sigma).

    Returns
    -------
    (H, W) ndarray, float32
        The background, in the units of `img`.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:64, 0:64].astype(float)
    >>> bowl = 3 + 0.5 * xx - 0.2 * yy + 0.01 * (xx - 30) ** 2
    >>> bool(np.abs(local_background(bowl, 4.0) - bowl).max() < 1e-4)  # a quadratic is fitted exactly
    True
    """
    h, w = img.shape
    C, cy, cx, ny, nx = _bin(img, _block(sigma_px))
    hc, wc = C.shape
    Wy, Wx = _weights(hc, cy, ny, sigma_px, at=cy), _weights(wc, cx, nx, sigma_px, at=cx)
    dy = cy[None, :] - cy[:, None]  # [target, block]: block centre - target centre
    dx = cx[None, :] - cx[:, None]
    Py = [Wy * dy**q for q in range(5)]  # weights times powers of the offsets
    Px = [Wx * dx**q for q in range(5)]
    my = [P.sum(1) for P in Py]
    mx = [P.sum(1) for P in Px]
    # basis 1, x, y, x^2, y^2, xy (offsets from the target): normal matrix M[i, j] = sum w b_i b_j
    powers = [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1)]  # (power of x, power of y)
    M = np.empty((hc, wc, 6, 6))
    for i, (pi, qi) in enumerate(powers):
        for j, (pj, qj) in enumerate(powers):
            M[:, :, i, j] = np.outer(my[qi + qj], mx[pi + pj])
    rhs = np.empty((hc, wc, 6))
    for i, (pi, qi) in enumerate(powers):
        rhs[:, :, i] = Py[qi] @ C @ Px[pi].T
    # scale the offsets to order one so that the normal matrix is well conditioned
    sc = np.array([1.0, sigma_px, sigma_px, sigma_px**2, sigma_px**2, sigma_px**2])
    M /= sc[:, None] * sc[None, :]
    rhs /= sc
    M += np.eye(6) * 1e-9 * M[:, :, :1, :1]
    value = np.linalg.solve(M, rhs[..., None])[..., 0, 0]  # the fit at each block centre
    f32 = np.float32
    return (_interp_matrix(h, cy).astype(f32) @ value.astype(f32)) @ _interp_matrix(w, cx).T.astype(f32)


def local_mean(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """The Gaussian-weighted mean of `img` over a window of `sigma_px` around each pixel,
    over the pixels inside the image (float32), from block means as in :func:`local_background`."""
    h, w = img.shape
    C, cy, cx, ny, nx = _bin(img, _block(sigma_px))
    Wy, Wx = _weights(h, cy, ny, sigma_px), _weights(w, cx, nx, sigma_px)
    Wy = (Wy / Wy.sum(1, keepdims=True)).astype(np.float32)
    Wx = (Wx / Wx.sum(1, keepdims=True)).astype(np.float32)
    return (Wy @ C.astype(np.float32)) @ Wx.T


def local_contrast(img: np.ndarray, px_A: float, spec: dict | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(background-free image, local RMS contrast, unit), the first two float32 (H, W) in units
    of `unit` times the image's own intensity unit, of `img` at `px_A` Å/px.

    Parameters
    ----------
    img : (H, W) array
        The image, any real dtype and intensity scale.
    px_A : float
        Pixel size, Å/px: the sigmas of `spec` (Å) become ``sigma_A / px_A`` px (at least 0.5).
    spec : dict, optional
        ``background_sigma_A`` and ``contrast_sigma_A`` (Å); missing keys take
        :data:`LOCAL_DEFAULTS`.

    Returns
    -------
    hp : (H, W) ndarray, float32
        The image less its median and its smooth background (:func:`local_background`), divided
        by `unit`.
    r : (H, W) ndarray, float32
        Local RMS of `hp` (Gaussian window, squares capped at ``(OUTLIER_CAP x median)^2``), same
        units.
    unit : float
        The 1-99 % spread of the image (its intensity units) that `hp` and `r` were divided by;
        0.0 for a flat image (then both are zeros).
    """
    p = {**LOCAL_DEFAULTS, **(spec or {})}
    x, unit = _prescale(np.asarray(img))
    sb = max(0.5, float(p["background_sigma_A"]) / float(px_A))
    sc = max(0.5, float(p["contrast_sigma_A"]) / float(px_A))
    hp = x - local_background(x, sb)
    sq = hp * hp
    # a robust local RMS: squares capped at (OUTLIER_CAP x the median local RMS)^2, so that
    # the residue of a sharp bright edge does not spread its scale over the window
    r0 = np.sqrt(local_mean(sq, sc))
    cap = (OUTLIER_CAP * float(np.median(_strided(r0)))) ** 2
    r = local_mean(np.minimum(sq, np.float32(cap), out=sq), sc) if cap > 0 else r0 * r0
    return hp, np.sqrt(np.maximum(r, 0, out=r), out=r), unit


def floor_sample(r: np.ndarray, unit: float) -> np.ndarray:
    """A sample (float64, in the image's intensity units) of the local contrast `r` of
    :func:`local_contrast` (in units of `unit`), for :func:`contrast_floor`: every
    SAMPLE_STRIDE-th pixel of every SAMPLE_STRIDE-th row (`r` is smooth at the scale of its
    window), so the samples of the tiles of an image, joined, are that of the whole image.

    Parameters
    ----------
    r : (H, W) array
        The local contrast `r` of :func:`local_contrast`.
    unit : float
        Its `unit` (the factor back to the image's intensity units).

    Returns
    -------
    (m,) float64 array
        The finite values of ``r[::SAMPLE_STRIDE, ::SAMPLE_STRIDE] * unit``.
    """
    return _strided(r) * float(unit)


def contrast_floor(r_sample: np.ndarray) -> float:
    """The image's contrast floor: the median of (a sample of) its local RMS contrast, in the
    image's own intensity units (see :func:`floor_sample`).

    Parameters
    ----------
    r_sample : array
        Local-contrast samples (:func:`floor_sample` of an image or its tiles, joined); any
        shape, NaN and inf ignored.

    Returns
    -------
    float
        Their median; 0.0 when none is finite.

    Examples
    --------
    >>> import numpy as np
    >>> contrast_floor(np.array([1.0, np.nan, 3.0, 2.0])), contrast_floor(np.array([]))
    (2.0, 0.0)
    """
    r = np.asarray(r_sample, np.float64).ravel()
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else 0.0


def local_normalise(img: np.ndarray, px_A: float, spec: dict | None = None, floor: float | None = None,
                    *, return_floor: bool = False):
    """`img` (H, W) at `px_A` Å/px without its smooth background, in units of its local contrast
    (never less than `floor`, in the image's intensity units; None: this image's own
    :func:`contrast_floor`), clipped (float32).

    A flat image (no contrast) becomes all zeros.

    Parameters
    ----------
    img : (H, W) array
        The image (or a tile of it with a margin of :func:`margin_A`), any intensity scale.
    px_A : float
        Pixel size, Å/px.
    spec : dict, optional
        A ``local-contrast`` card entry (``background_sigma_A``, ``contrast_sigma_A`` in Å,
        ``clip`` in units of the local contrast); missing keys take :data:`LOCAL_DEFAULTS`.
    floor : float, optional
        The whole image's :func:`contrast_floor`, for a tile.
    return_floor : bool
        Return the floor used as well.

    Returns
    -------
    out : (H, W) ndarray, float32
        The background-free image over ``max(local contrast, floor)``, clipped to ``clip``.
    floor : float
        Only with `return_floor`: the floor used, in the image's intensity units.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> img = 100 + 2.0 * xx + np.cos(2 * np.pi * xx / 4) * np.cos(2 * np.pi * yy / 4)  # a lattice on a ramp
    >>> out = local_normalise(img, px_A=0.5)
    >>> out.dtype.name, bool(abs(out.mean()) < 0.05), bool(2 < out.max() < 2.2)  # the ramp is gone
    ('float32', True, True)
    >>> float(np.abs(local_normalise(np.full((32, 32), 7.0), px_A=0.5)).max())
    0.0
    """
    p = {**LOCAL_DEFAULTS, **(spec or {})}
    hp, r, unit = local_contrast(img, px_A, p)
    if floor is None:
        floor = contrast_floor(floor_sample(r, unit))
    lo, hi = (float(v) for v in p["clip"])
    f = floor / unit if unit > 0 else 0.0  # in the prescaled units of hp and r
    if not (math.isfinite(f) and f > 1e-6):  # prescaled to order one: this is flat
        out = np.zeros(hp.shape, np.float32)
    else:
        np.maximum(r, np.float32(f), out=r)
        out = np.divide(hp, r, out=hp)
        np.clip(out, lo, hi, out=out)
    return (out, floor) if return_floor else out
