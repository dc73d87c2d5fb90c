"""Is this image outside what the model knows?  (issue 24, "Say when an image is outside
what the model knows".)

A network trained on simulations can return no atoms at all on a real image it cannot handle
(a strong background ramp, a bright contamination patch, single atoms on thick carbon) without
any sign that something went wrong.  :func:`domain_check` looks at the image, the pixel size
used, the class probability maps and the atoms found, and returns notes that say so, each
starting with :data:`OOD_PREFIX`, plus the figures it computed:

1. **A lattice but few atoms.**  The power spectrum shows clear peaks at a period of 1-6 Å,
   but far fewer atoms were found than that period implies for the field of view.
2. **Unsure probability maps.**  The share of pixels whose largest foreground probability
   lies between 0.2 and 0.8 is far above what clean images give.
3. **Image statistics far from the training range.**  The smooth background (the image
   smoothed over many lattice periods) varies many times more than the local contrast; many
   pixels are clipped; a bright region covers a large share of the field.

The thresholds were measured on images simulated with the bundled stem-haadf recipe and on
the clean real files of ``../shared/data/real`` (``bench/ood_notes.py`` prints the figures);
a model card may override them with a ``"domain"`` entry (see :data:`DEFAULT_LIMITS`).
numpy and scipy only; about 20-40 ms on a 1024 x 1024 image.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = ["OOD_PREFIX", "DEFAULT_LIMITS", "domain_check", "is_ood_note", "lattice_peaks", "background_stats",
           "unsure_fraction"]

#: Every note of :func:`domain_check` starts with this.
OOD_PREFIX = "outside the model's experience:"

#: Thresholds of the checks (a model card's ``"domain"`` dict overrides any of them).
#:
#: ``peak_ratio``: a Fourier peak at least this many times its ring's typical power is a lattice
#: reflection; ``period_A``: the periods searched (Å); ``found_fraction``: fewer atoms than this
#: share of those the period implies is "few"; ``unsure_fraction``: share of pixels whose
#: largest foreground probability lies in ``unsure_band``; ``background_ratio``: range of the
#: smooth background over the local contrast; ``clipped_fraction``: share of pixels at the
#: image's minimum or maximum value; ``bright_fraction``: share of the field where the smooth
#: background lies more than ``bright_level`` local contrasts above its median;
#: ``smooth_A``: the smoothing scale of the background (Å; at most an eighth of the field).
#:
#: Measured with ``bench/ood_notes.py --sim 16`` (stem-haadf 1.1, stm-topo 1.1): the peak ratio of
#: lattices is 700-30,000 on the clean real STEM/STM files (but 12-15 on the noisy 60 kV graphene
#: images, which therefore count as "no clear lattice") and 27-2,100 on simulations, against at
#: most 41 without a lattice (simulated single atoms 2-19, real Pt on carbon 6-34, a scan artefact
#: in the FeBr2 STM file 41); the background ratio is at most 0.21 on 46 simulated training images,
#: at most 1.22 on the clean real files (the FeBr2 STM topograph; the others at most 0.31), and
#: 1.5-5.1 under ramps of 2-10x, 1.6-3.4 on 10 of the 11 Pt images; the bright fraction is 0 on
#: every clean and simulated image and 0.06-0.37 on the bad cases; the unsure share (away from the
#: atoms found) is at most 0.02 on simulations and 0.065 on the clean real STEM files, but 0.39 on
#: the Ag(111) STM file with stm-topo, above any bad case (0.04-0.16): that check only fires on
#: maps far more unsure than anything seen so far.
DEFAULT_LIMITS = {
    "peak_ratio": 100.0,
    "period_A": (1.0, 6.0),
    "found_fraction": 0.3,
    "unsure_band": (0.2, 0.8),
    "unsure_fraction": 0.5,
    "background_ratio": 1.4,
    "clipped_fraction": 0.05,
    "bright_level": 0.5,
    "bright_fraction": 0.05,
    "smooth_A": 6.0,
}

#: The spectrum is taken over at most this many pixels square at the image's centre.
FFT_REGION_PX = 512
#: The smooth background is computed on an image binned so that its sigma is about this (px).
_BINNED_SIGMA_PX = 4.0


def is_ood_note(note: str) -> bool:
    """Whether `note` is one of :func:`domain_check`'s.

    Parameters
    ----------
    note : str
        A note of an analysis result (anything: it is converted with ``str``).

    Returns
    -------
    bool
        True when it starts with :data:`OOD_PREFIX`.

    Examples
    --------
    >>> is_ood_note(OOD_PREFIX + " a bright region covers 12% of the field"), is_ood_note("stripes: ...")
    (True, False)
    """
    return str(note).startswith(OOD_PREFIX)


def _limits(overrides) -> dict:
    """:data:`DEFAULT_LIMITS` with the known entries of `overrides` (a card written by a newer
    AtomLens may hold others: they are ignored)."""
    lim = dict(DEFAULT_LIMITS)
    if isinstance(overrides, dict):
        lim.update({k: v for k, v in overrides.items() if k in lim})
    return lim


def _interp_index(n: int, b: int, nb: int, at=None):
    """(i0, i1, f): the linear interpolation, at pixels `at` (default: all `n`), of values given
    at the centres of `nb` bins of `b` px ((i + 0.5) b - 0.5), edges held: value(i0) (1 - f) +
    value(i1) f."""
    at = np.arange(n) if at is None else np.asarray(at)
    t = np.clip((at + 0.5) / b - 0.5, 0, nb - 1)
    i0 = np.minimum(t.astype(np.int64), max(nb - 2, 0))
    return i0, np.minimum(i0 + 1, nb - 1), (t - i0).astype(np.float32)


def _background(img, sigma_px: float, rows=None, cols=None):
    """(binned smooth background, the same at pixels `rows` x `cols` of `img`, default all):
    `img` block-averaged so that the Gaussian of `sigma_px` spans about
    :data:`_BINNED_SIGMA_PX` bins, smoothed, and interpolated back (bilinear: no steps at the
    block edges, which would show as a period in the spectrum)."""
    H, W = img.shape
    sigma_px = min(max(1.0, float(sigma_px)), max(1.0, min(H, W) / 8.0))  # a small field: its own scale
    b = max(1, min(int(sigma_px / _BINNED_SIGMA_PX), H // 4, W // 4))
    hb, wb = H // b, W // b
    binned = img[:hb * b, :wb * b].reshape(hb, b, wb, b).mean(axis=(1, 3), dtype=np.float64)
    smooth = ndimage.gaussian_filter(binned, sigma_px / b, mode="reflect", truncate=3.0)
    sm = smooth.astype(np.float32)
    y0, y1, fy = _interp_index(H, b, hb, rows)
    x0, x1, fx = _interp_index(W, b, wb, cols)
    r = sm[y0] * (1 - fy)[:, None] + sm[y1] * fy[:, None]  # (rows, wb); BLAS-free: no thread start-up
    return smooth, r[:, x0] * (1 - fx) + r[:, x1] * fx


def background_stats(image, px_size_A: float, *, smooth_A: float = 6.0, bright_level: float = 0.5) -> dict:
    """The smooth background of `image` against its local contrast.

    The image is block-averaged, smoothed with a Gaussian of `smooth_A` (several lattice
    periods, so that no lattice is left in it) and compared with the local contrast, the 1-99 %
    range of the image minus that background (measured where the blocks allow it, on the
    binned grid's residual at full resolution).

    Parameters
    ----------
    image : (H, W) array
    px_size_A : float
        Pixel size (Å/px).
    smooth_A : float
        Gaussian sigma of the background (Å).
    bright_level : float
        A pixel is "bright" where the background lies more than this many local contrasts
        above its median.

    Returns
    -------
    dict
        ``local_contrast`` (image units), ``background_range`` (1-99 % range of the smooth
        background, image units), ``background_ratio`` (their ratio), ``bright_fraction``
        (share of the field), ``clipped_fraction`` (share of pixels at the image's minimum or
        maximum value, whichever is larger).
    """
    img = np.asarray(image, np.float32)
    H, W = img.shape
    step = max(1, int(math.sqrt(H * W / 65536)))  # percentiles of about 64k pixels at most
    rows, cols = np.arange(0, H, step), np.arange(0, W, step)
    sub = img[::step, ::step]
    smooth, up = _background(img, float(smooth_A) / float(px_size_A), rows, cols)
    lo, hi = np.percentile(sub - up, [1, 99])
    contrast = float(hi - lo)
    blo, bhi = np.percentile(smooth, [1, 99])
    bg_range = float(bhi - blo)
    ratio = bg_range / contrast if contrast > 0 else (math.inf if bg_range > 0 else 0.0)
    bright = float(np.mean(smooth - np.median(smooth) > bright_level * contrast)) if contrast > 0 else 0.0
    vmin, vmax = float(img.min()), float(img.max())
    clipped = 0.0 if vmax <= vmin else float(max(np.mean(sub == vmin), np.mean(sub == vmax)))
    return {"local_contrast": contrast, "background_range": bg_range, "background_ratio": float(ratio),
            "bright_fraction": bright, "clipped_fraction": clipped}


def lattice_peaks(image, px_size_A: float, *, period_A=(1.0, 6.0), peak_ratio: float = 100.0,
                  smooth_A: float = 6.0, region_px: int = FFT_REGION_PX) -> dict:
    """Lattice reflections in the power spectrum of the image's central region.

    The smooth background (Gaussian of `smooth_A`) is taken off, the region is Hann-windowed
    and Fourier transformed; each frequency's power is compared with the typical power of its
    ring (the geometric mean over the ring, which a few Bragg spots barely move).

    Parameters
    ----------
    image : (H, W) array
    px_size_A : float
        Pixel size (Å/px).
    period_A : (float, float)
        Periods searched (Å); periods shorter than 2.2 px are left out.
    peak_ratio : float
        A frequency at least this many times its ring's typical power is a reflection.
    smooth_A : float
        Gaussian sigma of the smooth background taken off first (Å).
    region_px : int
        Side of the largest central region transformed (px).

    Returns
    -------
    dict
        ``peak_ratio`` (the strongest frequency in the band over its ring's typical power;
        0 when the band is empty), ``period_A`` (the longest period among the reflections,
        Å; None without one).
    """
    img = np.asarray(image, np.float32)
    H, W = img.shape
    h, w = min(H, region_px), min(W, region_px)
    y0, x0 = (H - h) // 2, (W - w) // 2
    reg = img[y0:y0 + h, x0:x0 + w]
    reg = reg - _background(reg, float(smooth_A) / float(px_size_A))[1]
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    a = reg * win
    a -= win * (a.sum(dtype=np.float64) / win.sum(dtype=np.float64))
    F = scipy.fft.rfft2(a)
    pw = (F.real ** 2 + F.imag ** 2).astype(np.float64)
    fy = np.broadcast_to(np.fft.fftfreq(h)[:, None], pw.shape)
    fx = np.broadcast_to(np.fft.rfftfreq(w)[None, :], pw.shape)
    q = np.hypot(fx, fy)  # cycles/px
    q_lo = float(px_size_A) / float(period_A[1])
    q_hi = min(float(px_size_A) / float(period_A[0]), 1.0 / 2.2)
    n = max(h, w)
    band = (q >= max(q_lo, 3.0 / n)) & (q <= q_hi)
    if not band.any() or q_hi <= q_lo:
        return {"peak_ratio": 0.0, "period_A": None}
    # power summed over 3 x 3 frequencies: a reflection (spread by the window over about that)
    # keeps its power while the noise's spread shrinks (a sum of 9 exponential variables);
    # the lines fx = 0 and fy = 0 are left out (scan lines and flyback put power there)
    pw = ndimage.uniform_filter(pw, 3, mode="wrap")
    off_axes = (np.abs(fx) > 0.5 / w) & (np.abs(fy) > 0.5 / h)
    if not (band & off_axes).any():
        return {"peak_ratio": 0.0, "period_A": None}
    # each ring's typical power: its median (a few spots barely move it)
    rb = np.rint(q[band] * n).astype(np.int64)
    pb = pw[band]
    order = np.lexsort((pb, rb))
    rs = rb[order]
    starts = np.r_[0, np.nonzero(rs[1:] != rs[:-1])[0] + 1]
    counts = np.diff(np.r_[starts, len(rs)])
    ring = np.zeros(int(rb.max()) + 1)
    ring[rs[starts]] = pb[order][starts + counts // 2]
    ratio = np.zeros_like(pw)
    ratio[band] = pb / np.maximum(ring[rb], 1e-300)
    strongest = float(ratio[off_axes].max())
    if strongest < peak_ratio:
        return {"peak_ratio": strongest, "period_A": None}
    # a lattice: its reflections are those at least a quarter as strong (the first ring of a
    # lattice can be weaker than the second; a weaker one taken for a reflection only lowers
    # the atoms expected), each made of the frequencies above a tenth of the threshold around
    # it (those on the axes too: a reflection next to one is not cut in half), located at
    # their power-weighted centre
    seeds = (ratio >= peak_ratio / 4.0) & off_axes
    lab, n_peaks = ndimage.label(ratio >= peak_ratio / 10.0)
    keep = np.unique(lab[seeds])
    period = None
    if len(keep):
        sel = np.isin(lab, keep)
        ids, wt = lab[sel], pw[sel]
        tot = np.bincount(ids, weights=wt, minlength=n_peaks + 1)[keep]
        cx = np.bincount(ids, weights=wt * fx[sel], minlength=n_peaks + 1)[keep] / tot
        cy = np.bincount(ids, weights=wt * fy[sel], minlength=n_peaks + 1)[keep] / tot
        period = float(px_size_A / np.hypot(cx, cy).min())
    return {"peak_ratio": strongest, "period_A": period}


def unsure_fraction(prob, band=(0.2, 0.8), atoms_xy=None, near_px: float = 0.0) -> float:
    """Share of pixels whose largest foreground probability lies inside `band`, leaving out
    those within `near_px` of an atom found (the rims of the atoms found are always unsure).

    Parameters
    ----------
    prob : (C, H, W) array
        Class probabilities, class 0 background.
    band : (float, float)
        The open interval of "unsure" probabilities.
    atoms_xy : (n, 2) array, optional
        Atoms found (px).
    near_px : float
        Radius around each atom left out (px).

    Returns
    -------
    float
        In 0..1, measured on every k-th pixel of every k-th row (k chosen so that at most about
        65,536 pixels are read); the pixels left out near atoms count as sure.

    Raises
    ------
    ValueError
        When `prob` is not (C, H, W) with C >= 2.

    Examples
    --------
    >>> import numpy as np
    >>> prob = np.full((2, 10, 10), 0.5)  # every pixel half atom, half background
    >>> prob[1, :5] = 0.95
    >>> unsure_fraction(prob)
    0.5
    """
    p = np.asarray(prob)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"expected (C, H, W) probabilities with C >= 2, got shape {p.shape}")
    step = max(1, int(math.sqrt(p.shape[1] * p.shape[2] / 65536)))
    fg = p[1:, ::step, ::step].max(axis=0)
    unsure = (fg > band[0]) & (fg < band[1])
    xy = np.zeros((0, 2)) if atoms_xy is None else np.asarray(atoms_xy, np.float64).reshape(-1, 2)
    if len(xy) and near_px > 0:
        seeds = np.ones(fg.shape, bool)
        iy = np.clip(np.rint(xy[:, 1] / step).astype(np.int64), 0, fg.shape[0] - 1)
        ix = np.clip(np.rint(xy[:, 0] / step).astype(np.int64), 0, fg.shape[1] - 1)
        seeds[iy, ix] = False
        unsure &= ndimage.distance_transform_edt(seeds) * step > near_px
    return float(np.mean(unsure))


def domain_check(image, px_size_A: float, prob=None, atoms_xy=None, *, limits=None) -> tuple[list, dict]:
    """Notes that say when `image` is outside what the model knows, and the figures behind them.

    Parameters
    ----------
    image : (H, W) array
        The image as the network saw it (an ABF image inverted).
    px_size_A : float
        Pixel size used for the analysis (Å/px, ``info["px_size_A"]``).
    prob : (C, H, W) array or None
        Class probabilities (class 0 background); None (an image processed in strips) skips
        the check of the maps.
    atoms_xy : (n, 2) array or None
        Atoms found (px); None is taken as none found.
    limits : dict, optional
        Overrides of :data:`DEFAULT_LIMITS` (a model card's ``"domain"`` entry).

    Returns
    -------
    notes : list of str
        Each starting with :data:`OOD_PREFIX`; empty when nothing is out of the ordinary.
    figures : dict
        ``peak_ratio``, ``period_A``, ``atoms_found``, ``atoms_expected``, ``found_fraction``,
        ``unsure_fraction`` (None without maps), ``local_contrast``, ``background_range``,
        ``background_ratio``, ``bright_fraction``, ``clipped_fraction`` (JSON-friendly: floats,
        ints or None).  Empty (and no notes) for a flat image or one with non-finite values.

    Raises
    ------
    ValueError
        When `image` is not 2-D or `px_size_A` is not a positive finite number.
    """
    lim = _limits(limits)
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected one 2D image, got shape {img.shape}")
    px_A = float(px_size_A)
    if not (math.isfinite(px_A) and px_A > 0):
        raise ValueError(f"the pixel size must be a positive number of Å/px, not {px_size_A!r}")
    notes = []
    if not np.all(np.isfinite(img)) or float(img.max()) <= float(img.min()):
        return notes, {}  # flat or broken images are reported elsewhere
    fig = background_stats(img, px_A, smooth_A=lim["smooth_A"], bright_level=lim["bright_level"])
    fig.update(lattice_peaks(img, px_A, period_A=lim["period_A"], peak_ratio=lim["peak_ratio"],
                             smooth_A=lim["smooth_A"]))
    n_found = 0 if atoms_xy is None else int(len(atoms_xy))
    fig["atoms_found"] = n_found
    fig["atoms_expected"] = fig["found_fraction"] = None
    if fig["period_A"] is not None:
        # the sparsest common lattice for this reflection: one atom per hexagonal cell whose
        # first ring is at the period d (cell area 2 d^2 / sqrt(3))
        d_px = fig["period_A"] / px_A
        expected = img.size / (2.0 * d_px * d_px / math.sqrt(3.0))
        fig["atoms_expected"] = int(round(expected))
        fig["found_fraction"] = n_found / expected
        if fig["found_fraction"] < lim["found_fraction"]:
            notes.append(f"{OOD_PREFIX} the image shows a lattice of period {fig['period_A']:.2f} Å in its Fourier "
                         f"transform, which implies at least ~{expected:.0f} columns here, but only {n_found} "
                         f"were found ({fig['found_fraction']:.0%})")
    near_px = 1.0 / px_A  # the rims of the atoms found (1 Å, or 0.6 of their spacing) are always unsure
    if n_found >= 2:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(np.asarray(atoms_xy, np.float64)).query(atoms_xy, k=2)
        near_px = max(near_px, 0.6 * float(np.median(d[:, 1])))
    fig["unsure_fraction"] = (None if prob is None else
                              unsure_fraction(prob, lim["unsure_band"], atoms_xy, near_px))
    if fig["unsure_fraction"] is not None and fig["unsure_fraction"] > lim["unsure_fraction"]:
        lo, hi = lim["unsure_band"]
        notes.append(f"{OOD_PREFIX} the network is unsure over {fig['unsure_fraction']:.0%} of the image "
                     f"away from the atoms found (probabilities between {lo:g} and {hi:g})")
    if fig["background_ratio"] > lim["background_ratio"]:
        notes.append(f"{OOD_PREFIX} the smooth background varies by {fig['background_ratio']:.1f}x the local "
                     f"contrast (a ramp, a thickness change or contamination; the limit is "
                     f"{lim['background_ratio']:g}x)")
    if fig["bright_fraction"] > lim["bright_fraction"]:
        notes.append(f"{OOD_PREFIX} a bright region (contamination, a thick area or a strong ramp) covers "
                     f"{fig['bright_fraction']:.0%} of the field")
    if fig["clipped_fraction"] > lim["clipped_fraction"]:
        notes.append(f"{OOD_PREFIX} {fig['clipped_fraction']:.0%} of the pixels are clipped at the image's "
                     f"lowest or highest value (saturated detector or export)")
    return notes, {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fig.items()}
