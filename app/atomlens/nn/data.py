"""Training data: simulated images drawn on the fly, and image normalisation.

Training seeds count up from the recipe's seed; validation seeds start at VAL_SEED_BASE,
which training never reaches, so the validation set is never trained on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..sim import simulate
from ..sim.simulate import SimConfig
from ..analysis.background import STATS_SAMPLE_PX, _subsample, local_normalise
from .norm import LOCAL_METHODS, NORMALISATION, NORMALISATION_METHODS, normalisation_spec

__all__ = ["NORMALISATION", "NORMALISATION_METHODS", "STATS_SAMPLE_PX", "VAL_SEED_BASE", "SimStream", "defect_site_maps",
           "inverse_scale", "is_flat", "make_validation_set", "normalisation_spec", "normalisation_stats", "normalise",
           "sample_stats", "stats_sample"]

VAL_SEED_BASE = 2_000_000_000


def _centre_scale(clipped: np.ndarray, method: str) -> tuple[float, float]:
    """(centre, scale) of the clipped pixels by `method`, in float64: the squares of 1e19-scaled
    float32 data overflow float32, those of 1e-25-scaled data underflow it."""
    clipped = np.asarray(clipped, np.float64)
    if method == "clip-zscore":
        return float(clipped.mean()), float(clipped.std())
    if method == "clip-robust":
        q1, med, q3 = np.percentile(clipped, [25, 50, 75])
        sd = float(clipped.std())
        spread = float(q3 - q1) / 1.349
        # an almost flat image (a few atoms on an empty field): the IQR is noise only; the
        # standard deviation is then the better scale, and never less than 5 % of it is used
        return float(med), spread if spread > 0.05 * sd else sd
    raise ValueError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATION_METHODS)}")


def is_flat(lo: float, hi: float, scale: float) -> bool:
    """True when an image whose clip range is `lo`..`hi` and whose spread is `scale` holds no
    contrast: no spread, or a clip range of at most two float32 steps at its level.

    The test is relative, so it holds at any intensity scale (STM heights in metres have
    standard deviations of 1e-11; counts times 1e19 are as good an image as the counts).

    Parameters
    ----------
    lo, hi : float
        The clip range (0.1 and 99.9 percentiles), in the image's intensity units.
    scale : float
        The spread (standard deviation or IQR-based), same units.

    Returns
    -------
    bool
        True also when any of them is not finite.

    Examples
    --------
    >>> is_flat(1.0, 1.0, 0.0), is_flat(1e-11, 2e-11, 3e-12)
    (True, False)
    """
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(lo) and np.isfinite(hi)):
        return True
    level = np.float32(min(max(abs(lo), abs(hi)), float(np.finfo(np.float32).max)))
    return not hi - lo > 2 * float(np.spacing(level))


def inverse_scale(stats) -> float:
    """The factor :func:`normalise` multiplies the centred image by: 1 / scale, or 0 for a
    flat image (:func:`is_flat`), which becomes all zeros.

    Parameters
    ----------
    stats : (lo, hi, centre, scale) tuple
        As :func:`normalisation_stats` or :func:`sample_stats` return them.

    Returns
    -------
    float
        ``1 / scale`` (per intensity unit), or 0.0.
    """
    lo, hi, _m, s = stats
    return 0.0 if is_flat(lo, hi, s) else 1.0 / float(s)


def normalisation_stats(image: np.ndarray, method: str = "clip-zscore") -> tuple[float, float, float, float]:
    """(lo, hi, centre, scale) that :func:`normalise` applies, from a subsample of `image`
    (float64, any intensity scale): computed once for a whole image, they let parts of it
    be normalised identically.

    Parameters
    ----------
    image : (H, W) array
        Any real dtype (a memory map is only sampled).  Up to :data:`STATS_SAMPLE_PX` pixels all
        count, beyond that as many drawn at random, seeded by the shape (so always the same).
    method : {"clip-zscore", "clip-robust"}
        How centre and scale are measured (see :data:`NORMALISATION_METHODS`).

    Returns
    -------
    lo, hi : float
        The 0.1 and 99.9 percentiles, in the image's intensity units.
    centre, scale : float
        Of the clipped pixels, same units: mean and standard deviation (``clip-zscore``), or
        median and IQR / 1.349 (``clip-robust``; the standard deviation when the IQR is below 5 %
        of it).

    Raises
    ------
    ValueError
        For another `method` (``local-contrast`` has no such statistics).

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi, centre, scale = normalisation_stats(np.arange(100.0).reshape(10, 10))
    >>> round(lo, 3), round(hi, 3), centre, round(scale, 3)
    (0.099, 98.901, 49.5, 28.863)
    """
    return sample_stats(_subsample(image), method)


def stats_sample(image: np.ndarray, share: float = 1.0) -> np.ndarray:
    """The pixels of `image` (float64, 1D) that stand for it in :func:`sample_stats`: for a
    part of an image that makes `share` of its pixels, that share of the sample.  The samples
    of the parts of an image, joined, give the statistics of the whole image without it being
    held (or resampled) at once.

    Parameters
    ----------
    image : (H, W) array
        The image or a part (tile) of it.
    share : float
        The part's fraction of the whole image's pixels (1.0: the whole image).

    Returns
    -------
    (m,) float64 array
        Every pixel when there are at most ``ceil(STATS_SAMPLE_PX * share)``, else that many drawn
        at random (seeded by the shape), in the image's intensity units.

    Examples
    --------
    >>> import numpy as np
    >>> stats_sample(np.zeros((1024, 1024)), share=0.25).shape  # a quarter of 2**18
    (65536,)
    """
    return _subsample(image, max(1, math.ceil(STATS_SAMPLE_PX * float(share))))


def sample_stats(sample: np.ndarray, method: str = "clip-zscore") -> tuple[float, float, float, float]:
    """(lo, hi, centre, scale) of an image from a sample of its pixels (see :func:`stats_sample`).

    Parameters
    ----------
    sample : array
        Pixel values, any shape (flattened), in the image's intensity units.
    method : {"clip-zscore", "clip-robust"}
        As in :func:`normalisation_stats`.

    Returns
    -------
    (lo, hi, centre, scale) tuple of float
        As :func:`normalisation_stats` returns them.

    Raises
    ------
    ValueError
        For an unknown `method`.
    """
    sub = np.asarray(sample, np.float64).ravel()
    lo, hi = (float(v) for v in np.percentile(sub, NORMALISATION["clip_percentiles"]))
    return (lo, hi, *_centre_scale(np.clip(sub, lo, hi), method))


def normalise(image: np.ndarray, stats=None, method="clip-zscore", px_A: float | None = None) -> np.ndarray:
    """`image` scaled as a model whose card gives normalisation `method` (a name of
    :data:`NORMALISATION_METHODS` or a card entry) expects (float32).

    "clip-zscore" and "clip-robust": clip to the 0.1-99.9 percentiles, then centre and scale.
    The result does not depend on the image's intensity scale: any affine rescaling that
    float32 holds gives the same values.  `stats` (from :func:`normalisation_stats`) applies
    another image's scaling instead.

    "local-contrast" (:mod:`atomlens.analysis.background`) needs the pixel size `px_A` (Å/px) of
    `image`; `stats` is then the contrast floor (image intensity units) of the whole image.

    Parameters
    ----------
    image : (H, W) array
        Any real dtype and intensity scale.
    stats : tuple or float, optional
        ``clip-*``: ``(lo, hi, centre, scale)`` from :func:`normalisation_stats` (of the whole
        image, when `image` is a tile of it).  ``local-contrast``: the contrast floor (float).
        None (default): computed from `image` itself.
    method : str or dict
        A name of :data:`NORMALISATION_METHODS` or a model card's ``normalisation`` entry
        (see :func:`atomlens.nn.norm.normalisation_spec`).
    px_A : float, optional
        Pixel size of `image`, Å/px; required for ``local-contrast``, unused otherwise.

    Returns
    -------
    (H, W) ndarray, float32
        ``clip-*``: ``(clip(image, lo, hi) - centre) / scale`` (all zeros for a flat image).
        ``local-contrast``: see :func:`atomlens.analysis.background.local_normalise`.

    Raises
    ------
    ValueError
        For an unknown method or bad card parameters, or ``local-contrast`` without `px_A`.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(100, dtype=np.float32).reshape(10, 10)
    >>> out = normalise(img)
    >>> out.dtype.name, round(float(out.mean()), 6), round(float(out.std()), 4)
    ('float32', 0.0, 1.0)
    >>> bool(np.allclose(normalise(img * 1e19), out, atol=1e-6))  # the intensity scale does not matter
    True
    """
    spec = normalisation_spec(method)
    if spec["method"] in LOCAL_METHODS:
        if px_A is None:
            raise ValueError("the local-contrast normalisation needs the pixel size (px_A)")
        return local_normalise(image, px_A, spec, stats)
    method = spec["method"]
    img = np.asarray(image, np.float32)
    lo, hi, m, s = normalisation_stats(img, method) if stats is None else stats
    inv = inverse_scale((lo, hi, m, s))
    out = np.clip(img, np.float32(lo), np.float32(hi))  # the one copy of the image
    if hi - lo < 0.5 * _F32_MAX:
        out -= np.float32(m)
        _scale_in_place(out, inv)
    else:  # centred values would overflow float32: scale first
        _scale_in_place(out, inv)
        out -= np.float32(m * inv)
    return out


_F32_MAX = float(np.finfo(np.float32).max)


def _scale_in_place(a: np.ndarray, factor: float) -> None:
    """a *= factor, also for a factor float32 cannot hold (the spread of values near 1e-39)."""
    if factor < 1e38:
        a *= np.float32(factor)
        return
    mant, exp = math.frexp(factor)
    a *= np.float32(mant)
    np.ldexp(a, exp, out=a)


def defect_site_maps(r, n_types: int, stride: int, sigma_A: float = 1.0) -> np.ndarray:
    """Where each defect type's sites are, on the grid of a GAP-CNN's feature cells.

    (n_types, H // stride, W // stride) float32: a Gaussian of `sigma_A` at every labelled
    site (atom column or vacant site) of each defect type of `r` (a SimResult; types indexed
    as in ``DEFECT_TYPES``), zero for types without sites.  The CAM localisation loss
    (:func:`atomlens.nn.train.cam_localisation_loss`) asks a type's class activation map to
    put its mass there.

    Parameters
    ----------
    r : SimResult
        A simulated image (:func:`atomlens.sim.simulate`): ``image`` (H, W), ``px_size_A``
        (Å/px), ``atoms.xy`` (n, 2) in Å and ``atoms.defect`` (n,) type codes (0: none).
    n_types : int
        Number of map channels; codes of ``n_types`` or more are left out.
    stride : int
        The feature cell of the GAP-CNN, px (:meth:`atomlens.nn.models.GapCNN.stride`).
    sigma_A : float
        Standard deviation of each site's Gaussian, Å (at least 0.3 cell).

    Returns
    -------
    (n_types, H // stride, W // stride) ndarray, float32
        Unnormalised sums of Gaussians of peak 1; channel 0 (no defect) stays zero.
    """
    h, w = (d // stride for d in r.image.shape)
    out = np.zeros((n_types, h, w), np.float32)
    code = np.asarray(r.atoms.defect)
    sel = (code > 0) & (code < n_types)
    if not sel.any():
        return out
    xy = r.atoms.xy[sel] / r.px_size_A  # px, pixel centres at integers
    cxy = (xy - (stride - 1) / 2.0) / stride  # feature cells, cell centres at integers
    sig = max(sigma_A / (r.px_size_A * stride), 0.3)
    gy, gx = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    for k, (cx, cy) in zip(code[sel], cxy):
        out[k] += np.exp(-((gy[:, None] - cy) ** 2 + (gx[None, :] - cx) ** 2) / (2 * sig * sig))
    return out


def _sample(cfg: SimConfig, seed: int, task: str, n_types: int, norm="clip-zscore", loc_stride: int = 0,
            loc_sigma_A: float = 1.0):
    r = simulate(cfg, seed)
    x = torch.from_numpy(normalise(r.image, method=norm, px_A=r.px_size_A))[None]
    if task == "cam":
        y = torch.from_numpy(r.defect_labels[:n_types].astype(np.float32))
        if loc_stride:
            return x, y, torch.from_numpy(defect_site_maps(r, n_types, loc_stride, loc_sigma_A))
    else:
        y = torch.from_numpy(r.masks.argmax(0).astype(np.int64))
    return x, y


#: The 8 views of a square image under rotations and mirroring: (quarter turns k, mirrored
#: first), used by test-time augmentation and by the pooled training set.
TTA_VIEWS = tuple((k, f) for f in (False, True) for k in range(4))


def dihedral_view(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """`t` mirrored (left-right) if `flip`, then turned by k quarter turns (last two dims)."""
    return torch.rot90(t.flip(-1) if flip else t, k, (-2, -1))


def dihedral_unview(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`dihedral_view`: maps an output of the view back onto the original."""
    t = torch.rot90(t, -k, (-2, -1))
    return t.flip(-1) if flip else t


class SimStream(IterableDataset):
    """An endless stream of (image (1, H, W), target) pairs simulated from `sim_config`.

    Targets: (H, W) class maps for ``task="segmentation"``; multi-hot defect-type vectors for
    ``task="cam"``.  Each DataLoader worker takes every n-th seed, so no two workers repeat.

    With ``pool=N`` (> 0) only N images are simulated (each worker its share, once) and then
    drawn again and again in random order, each time rotated by a random multiple of 90
    degrees and mirrored at random: a fixed training set for machines where simulating is
    the bottleneck (a few CPU cores), at the cost of variety.
    """

    def __init__(self, sim_config, task: str = "segmentation", seed: int = 0, n_types: int = 9, pool: int = 0,
                 norm="clip-zscore", loc_stride: int = 0, loc_sigma_A: float = 1.0):
        super().__init__()
        self.cfg = SimConfig.from_any(sim_config)
        self.task, self.seed, self.n_types, self.norm = task, int(seed), n_types, norm
        self.pool = max(0, int(pool or 0))
        self.loc = (int(loc_stride), float(loc_sigma_A)) if task == "cam" and loc_stride else (0, 1.0)

    def _pooled(self, wid: int, nw: int):
        mine = [self.seed + i for i in range(self.pool) if i % nw == wid] or [self.seed + wid % self.pool]
        cache = []
        for s in mine:  # the first pass simulates
            cache.append(_sample(self.cfg, s, self.task, self.n_types, self.norm, *self.loc))
            yield cache[-1]
        rng = np.random.default_rng([self.seed, wid, 0x9001])
        # a non-square image keeps its shape only under half turns
        views = TTA_VIEWS if self.cfg.shape[0] == self.cfg.shape[1] else [v for v in TTA_VIEWS if v[0] % 2 == 0]
        while True:
            x, y, *site = cache[int(rng.integers(len(cache)))]
            k, flip = views[int(rng.integers(len(views)))]
            if self.task != "cam":  # class maps turn with the image; defect types do not
                y = dihedral_view(y, k, flip).contiguous()
            # defect-site maps turn with the image (an odd size loses its last pixels to the
            # feature grid, so a view of a site map is off by up to one cell there: accepted)
            yield (dihedral_view(x, k, flip).contiguous(), y, *(dihedral_view(m, k, flip).contiguous() for m in site))

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if self.pool:
            yield from self._pooled(wid, nw)
            return
        k = 0
        while True:
            s = self.seed + wid + k * nw
            if s >= VAL_SEED_BASE:
                raise RuntimeError("training seeds reached the validation range")
            yield _sample(self.cfg, s, self.task, self.n_types, self.norm, *self.loc)
            k += 1


def make_validation_set(sim_config, n: int, task: str = "segmentation", seed: int = VAL_SEED_BASE,
                        n_types: int = 9) -> list:
    """A fixed list of n SimResults (kept whole: the truth points are needed for F1/RMSE).

    Parameters
    ----------
    sim_config : SimConfig, dict or str
        Anything :meth:`atomlens.sim.simulate.SimConfig.from_any` accepts (a dict of settings or
        the path of a JSON file).
    n : int
        Number of images.
    task, n_types
        Not used (kept for the callers' symmetry with :class:`SimStream`).
    seed : int
        Seed of the first image; image i uses ``seed + i``.  The default,
        :data:`VAL_SEED_BASE`, lies beyond every training seed.

    Returns
    -------
    list of SimResult
        Images with their truth (atoms, masks, defect labels), in seed order.
    """
    cfg = SimConfig.from_any(sim_config)
    return [simulate(cfg, seed + i) for i in range(n)]
