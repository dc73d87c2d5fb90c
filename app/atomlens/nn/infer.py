"""Inference: resample to the model's pixel size, tile with feathered overlaps, map back.

``Predictor(bundle).probabilities(image, px_size_nm)`` returns (C, H, W) class probabilities
in the input's own pixels; ``detect`` turns them into an :class:`~atomlens.analysis.atoms.AtomList`.
An uncalibrated image is given a pixel size from its lattice period (FFT), and every
assumption is reported in ``info["notes"]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..analysis.background import contrast_floor, floor_sample, local_contrast, margin_A
from .bundle import load_bundle, resolve_bundle
from .data import (TTA_VIEWS, dihedral_unview, dihedral_view, inverse_scale, normalisation_spec,
                   normalisation_stats, normalise, sample_stats, stats_sample)
from .device import (CPU_BF16_ENV, autocast, channels_last, cpu_bf16_choice, cpu_has_fast_bf16, select_device,
                     use_bf16)
from .norm import LOCAL_METHODS
from .scale import TYPICAL_PERIOD_A, as_tensor, period_px_size_A, resample

__all__ = ["CPU_BF16_ENV", "Predictor", "TYPICAL_PERIOD_A", "cpu_bf16_choice", "cpu_has_fast_bf16", "use_bf16"]

#: Images with more pixels than this are processed in tiles of STRIP_PX x STRIP_PX pixels
#: (memory bounded by the tile, whatever the image's shape).
STRIP_MIN_PIXELS = 2048 * 2048
STRIP_PX = 1024


def _window(n: int, overlap: int) -> np.ndarray:
    """1D feathering weights: a raised-cosine ramp over `overlap` px at both ends."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        w[:overlap] = r
        w[-overlap:] = r[::-1]
    return w


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(s))


#: one pass of the network
ONE_VIEW = ((0, False),)
#: the default for segmentation models: the tile and its half turn.  On validation images
#: (48 per family) it gained on the atoms of every family (F1 and RMSE) and on most dopant
#: and vacancy classes, at about 1.4 times the time of one pass (README, "Views").
HALF_TURN_VIEWS = ((0, False), (2, False))


class Predictor:
    """A loaded model bundle, ready to run.  Keep one alive between images (the GUI worker
    does): loading costs far more than a small image.

    A segmentation model's output is by default the mean over the tile and its half turn
    (rotated by 180 degrees and back), which steadies the maps at about 1.4 times the time of
    one pass; ``single_view=True`` runs one pass.  ``tta=True`` averages over all 8 rotations
    and mirror images (test-time augmentation): 8 times the network time.  A ``cam`` model
    runs one pass unless ``tta`` (its decision thresholds were calibrated on one).

    :meth:`from_model` wraps a model in memory (one being trained) the same way.

    Parameters
    ----------
    bundle : str or path
        A bundle name or folder (:func:`atomlens.nn.bundle.resolve_bundle`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (:func:`atomlens.nn.device.select_device`).
    tile, overlap : int
        Network tiles of ``tile`` x ``tile`` model pixels, feathered over ``overlap`` pixels.
    tta, single_view : bool
        The views averaged (see above and :attr:`views`).
    cpu_bf16 : bool or str, optional
        bf16 autocast on the CPU: ``"on"``, ``"off"``, ``"auto"``, a bool, or None for the
        ``ATOMLENS_CPU_BF16`` environment variable (:func:`atomlens.nn.precision.use_bf16`).

    Attributes
    ----------
    model : torch.nn.Module
        The network, on `device` (channels-last on the CPU).
    card : dict
        The bundle's card.
    path : pathlib.Path or None
        The bundle's folder (None for :meth:`from_model`).
    device : str
    task : str
        ``"segmentation"`` or ``"cam"``.
    classes : tuple of str
    px_size_A : float
        The model's pixel size (Å/px).
    valid_px_A : (float, float)
        The range of image pixel sizes (Å/px) the model was trained for.
    bf16 : bool
        Whether the network runs under bf16 autocast.
    logit_shift : torch.Tensor or None
        (K,) offsets added to a CAM model's logits (its calibrated thresholds), or None.
    """

    tta = False
    single_view = False
    logit_shift = None

    def __init__(self, bundle="stem-haadf", device: str = "auto", tile: int = 512, overlap: int = 48,
                 tta: bool = False, single_view: bool = False, cpu_bf16=None):
        path = resolve_bundle(bundle)
        device = select_device(device)
        model, card = load_bundle(path, device)
        self._setup(model, card, device, path, tile, overlap, tta, single_view, cpu_bf16)

    @classmethod
    def from_model(cls, model, card: dict, device: str = "cpu", tile: int = 512, overlap: int = 48, *,
                   tta: bool = False, single_view: bool = False, cpu_bf16=None) -> "Predictor":
        """A Predictor around a model in memory (e.g. one being trained), set up as
        :meth:`__init__` sets up a loaded bundle.

        Parameters
        ----------
        model : torch.nn.Module
            The network, already on `device` (it is not moved; on the CPU it is converted to
            channels-last in place, as a loaded bundle is).
        card : dict
            What a bundle's card gives: ``classes`` and ``px_size_A`` (Å/px) are needed;
            ``task`` (default ``"segmentation"``), ``valid_px_size_A`` (default: any),
            ``mode``, ``normalisation``, ``name`` and ``cam_thresholds`` are read when present.
        device : str
            Where `model` is (checked by :func:`atomlens.nn.device.select_device`).
        tile, overlap, tta, single_view, cpu_bf16
            As for the class.

        Returns
        -------
        Predictor
            With ``path`` None.
        """
        self = cls.__new__(cls)
        self._setup(model, card, select_device(device), None, tile, overlap, tta, single_view, cpu_bf16)
        return self

    def _setup(self, model, card: dict, device: str, path, tile: int, overlap: int, tta: bool,
               single_view: bool, cpu_bf16) -> None:
        """Everything :meth:`__init__` and :meth:`from_model` share, once the model is at hand:
        the card's entries, the views, the arithmetic (bf16), the memory layout and the CAM
        thresholds (:meth:`_set_logit_shift`).  A bundle's card has every entry
        (:data:`atomlens.nn.bundle.CARD_REQUIRED`); the defaults serve in-memory cards."""
        self.tta = bool(tta)
        self.single_view = bool(single_view)
        self.path = path
        self.device = device
        self.model, self.card = model, card
        self.task = card.get("task", "segmentation")
        self.classes = tuple(card["classes"])
        self.px_size_A = float(card["px_size_A"])
        self.valid_px_A = tuple(card.get("valid_px_size_A", (0.0, math.inf)))
        self.tile, self.overlap = int(tile), int(overlap)
        self.bf16 = use_bf16(self.device, cpu_bf16)
        self.model = channels_last(self.model, self.device)
        self._set_logit_shift()

    @property
    def norm(self) -> str:
        """str: the card's normalisation method (:data:`atomlens.nn.norm.NORMALISATION_METHODS`)."""
        return self.norm_spec["method"]

    @property
    def norm_spec(self) -> dict:
        """dict: the card's normalisation entry, completed with the defaults of its method."""
        return normalisation_spec(self.card.get("normalisation"))

    @property
    def local_norm(self) -> bool:
        """bool: True when the card's normalisation works on local windows (lengths in Å)."""
        return self.norm in LOCAL_METHODS

    def normalise(self, image: np.ndarray, stats=None) -> np.ndarray:
        """`image` scaled as this model was trained.

        Parameters
        ----------
        image : (H, W) numpy.ndarray
            At the model's pixel size.
        stats : optional
            The whole image's statistics (:func:`atomlens.nn.data.normalisation_stats`, or a
            contrast floor for a local method) when `image` is a part of it; None computes
            them from `image`.

        Returns
        -------
        (H, W) float32 numpy.ndarray
        """
        return normalise(image, stats, self.norm_spec, px_A=self.px_size_A)

    def _set_logit_shift(self) -> None:
        """A CAM card's per-type decision thresholds (:mod:`atomlens.nn.calibrate`) as logit
        offsets, so that 0.5 is every type's decision point."""
        thr = self.card.get("cam_thresholds") or {}
        shift = [-math.log(t / (1 - t)) if (t := float(thr.get(n, 0.5))) != 0.5 else 0.0 for n in self.classes]
        self.logit_shift = torch.tensor(shift, dtype=torch.float32) if any(shift) else None

    # ------------------------------------------------------------------ scale
    def choose_scale(self, image: np.ndarray, px_size_nm: float | None) -> tuple[float, list[str]]:
        """The pixel size to use for `image`, with notes on what was assumed.

        Parameters
        ----------
        image : (H, W) numpy.ndarray
        px_size_nm : float or None
            The calibration (nm/px); None estimates it from the lattice period
            (:func:`atomlens.nn.scale.period_px_size_A`).

        Returns
        -------
        px_size_A : float
            Å/px.
        notes : list of str
            What was assumed, and a warning when the pixel size is outside the model's range.
        """
        notes = []
        if px_size_nm is None:
            px_A, period = period_px_size_A(image)
            notes.append(f"no calibration: lattice period {period:.2f} px taken as {TYPICAL_PERIOD_A} Å, "
                         f"so {px_A * 100:.3g} pm/px is assumed (give the pixel size to override)")
        else:
            px_A = float(px_size_nm) * 10
        lo, hi = self.valid_px_A
        if not lo <= px_A <= hi:
            notes.append(f"pixel size {px_A * 100:.3g} pm is outside this model's range "
                         f"{lo * 100:.3g}-{hi * 100:.3g} pm: results may be poor")
        return px_A, notes

    # ------------------------------------------------------------------ network
    def _net(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) float output for a batch: class probabilities (segmentation), or class
        activation maps weighted by the presence probabilities and made non-negative (CAM)."""
        with autocast(self.device, self.bf16):
            if self.task == "cam":
                logits, maps = self.model.cam(t)
                return torch.relu(maps.float()) * torch.sigmoid(self._shifted(logits))[:, :, None, None]
            return self.model(t).float().softmax(1)

    @property
    def views(self) -> tuple:
        """tuple of (int, bool): the (quarter turns, mirror) views whose outputs are averaged
        (see the class)."""
        if self.tta:
            return TTA_VIEWS
        if self.single_view or self.task != "segmentation":
            return ONE_VIEW
        return HALF_TURN_VIEWS

    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        """`_net` of a (1, 1, h, w) tile, averaged over :attr:`views` (each mapped back), run
        as batches of equal shape."""
        views = self.views
        if len(views) == 1:
            return self._net(t)
        acc = None
        for parity in (0, 1):  # odd quarter turns swap height and width: a batch of each shape
            group = [v for v in views if v[0] % 2 == parity]
            if not group:
                continue
            batch = channels_last(torch.cat([dihedral_view(t, k, f) for k, f in group]), self.device)
            out = self._net(batch)
            for i, (k, f) in enumerate(group):
                o = dihedral_unview(out[i:i + 1], k, f)
                acc = o if acc is None else acc + o
        return acc / len(views)

    def _shifted(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits if self.logit_shift is None else logits + self.logit_shift.to(logits.device)

    @torch.inference_mode()
    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-level defect types and class activation maps of a ``cam`` model.

        Parameters
        ----------
        x : (1, 1, H, W) torch.Tensor
            One image, normalised (:meth:`normalise`) at the model's pixel size.

        Returns
        -------
        logits : (K,) torch.Tensor
            Calibrated defect-type logits (shifted by the card's thresholds: a type is present
            when its logit is positive), on the CPU.
        maps : (K, h, w) torch.Tensor
            Raw class activation maps at the feature resolution, on the CPU.  Both are the
            mean over the 8 views with ``tta``.

        Raises
        ------
        ValueError
            For a model that is not a ``cam`` model.
        """
        if self.task != "cam":
            raise ValueError(f"model {self.card['name']} is not a defect-CAM model")
        views = self.views
        logits, maps = 0.0, 0.0
        for k, f in views:
            lg, mp = self.model.cam(dihedral_view(x, k, f).to(self.device))
            logits, maps = logits + lg.float(), maps + dihedral_unview(mp.float(), k, f)
        return self._shifted(logits / len(views))[0].cpu(), (maps / len(views))[0].cpu()

    def _tile_output(self, t: torch.Tensor) -> np.ndarray:
        """(C, h, w) maps for one tile (see :meth:`_net`)."""
        return self._forward(t)[0].cpu().numpy()

    @torch.inference_mode()
    def _run(self, x: np.ndarray, progress=None, cancel=None) -> np.ndarray:
        """Network output for a normalised (H, W) image, tiled with feathered overlaps (C, H, W)."""
        h, w = x.shape
        T, ov = self.tile, self.overlap
        ys, xs = _starts(h, T, T - ov), _starts(w, T, T - ov)
        acc = None
        wsum = np.zeros((h, w), np.float32)
        n, k = len(ys) * len(xs), 0
        for y0 in ys:
            for x0 in xs:
                if cancel is not None and cancel.is_set():
                    raise InterruptedError("cancelled")
                th, tw = min(T, h - y0), min(T, w - x0)
                t = torch.from_numpy(np.ascontiguousarray(x[y0:y0 + th, x0:x0 + tw]))[None, None].to(self.device)
                t = channels_last(t, self.device)
                p = self._tile_output(t)
                if acc is None:
                    acc = np.zeros((p.shape[0], h, w), np.float32)
                wy = _window(th, ov if len(ys) > 1 else 0)
                wx = _window(tw, ov if len(xs) > 1 else 0)
                # keep full weight at the image's own borders
                if y0 == 0:
                    wy[: ov] = 1
                if y0 + th == h:
                    wy[-ov:] = 1
                if x0 == 0:
                    wx[: ov] = 1
                if x0 + tw == w:
                    wx[-ov:] = 1
                wt = wy[:, None] * wx[None, :]
                acc[:, y0:y0 + th, x0:x0 + tw] += p * wt
                wsum[y0:y0 + th, x0:x0 + tw] += wt
                k += 1
                if progress:
                    progress(k / n, f"tile {k}/{n}")
        return acc / np.maximum(wsum, 1e-6)

    def probabilities(self, image: np.ndarray, px_size_nm: float | None = None, *, progress=None,
                      cancel=None, _scale=None) -> tuple[np.ndarray, dict]:
        """Class probabilities (class activation maps for a ``cam`` model) in `image`'s pixels.

        Parameters
        ----------
        image : (H, W) array
        px_size_nm : float, optional
            The calibration (nm/px); None estimates it (:meth:`choose_scale`).
        progress : callable(fraction, message), optional
            Called after each network tile.
        cancel : object with ``is_set()``, optional
            Raises InterruptedError between tiles when set.

        Returns
        -------
        prob : (C, H, W) float32 numpy.ndarray
        info : dict
            ``px_size_A`` (Å/px used), ``model_px_size_A``, ``scale`` (the resampling factor),
            ``notes`` (what was assumed), ``device``, ``bf16``, ``model`` (its name), ``tta``
            and ``views`` (the number of views averaged).
        """
        img = np.asarray(image, np.float32)
        if img.ndim != 2:
            raise ValueError(f"expected a 2D image, got shape {img.shape}")
        h, w = img.shape
        # _scale = (px_A, notes, normalisation stats): fixed by detect() for all strips of an image
        px_A, notes, stats = _scale if _scale is not None else (*self.choose_scale(img, px_size_nm), None)
        s = px_A / self.px_size_A  # >1: the image's pixels are larger than the model's
        # resample first, then normalise: the network was trained on images normalised at
        # its own pixel size (down-sampling averages noise away)
        x = self.normalise(self._resample(img, s), stats)
        hs, ws = x.shape
        prob = self._run(np.ascontiguousarray(x, np.float32), progress, cancel)
        if (hs, ws) != (h, w):
            prob = F.interpolate(torch.from_numpy(prob)[None], size=(h, w), mode="bilinear",
                                 align_corners=False)[0].numpy()
        info = {"px_size_A": px_A, "model_px_size_A": self.px_size_A, "scale": s, "notes": notes,
                "device": self.device, "bf16": self.bf16, "model": self.card["name"], "tta": self.tta,
                "views": len(self.views)}
        return prob, info

    @staticmethod
    def _resample(img: np.ndarray, s: float) -> np.ndarray:
        """`img` resampled by the factor `s` (:func:`atomlens.nn.scale.resample`)."""
        return resample(img, s)

    @torch.inference_mode()
    def _detect_on_device(self, img, px_A, notes, threshold, refine, keep_prob, progress):
        """detect() with every step on the model's device (one tile: the whole image)."""
        from ..analysis.atoms import AtomList
        from .fastpeaks import find_atoms_tensor

        h, w = img.shape
        s = px_A / self.px_size_A
        hs, ws = max(16, round(h * s)), max(16, round(w * s))
        if self.local_norm:  # the filters run on the CPU (scipy), the rest on the device
            x = as_tensor(self.normalise(self._resample(img, s))).to(self.device)[None, None]
        else:
            stats = normalisation_stats(self._resample(img, s) if s < 1 else img, self.norm)
            lo, hi, m, _sd = stats
            t = as_tensor(img).to(self.device)[None, None]
            if (hs, ws) != (h, w):
                t = F.interpolate(t, size=(hs, ws), mode="area" if s < 1 else "bilinear",
                                  **({} if s < 1 else {"align_corners": False}))
            x = (t.clamp(lo, hi) - m) * inverse_scale(stats)
        prob_s = self._forward(channels_last(x, self.device))[0]
        min_d_model = max(2.0, 1.0 / self.px_size_A)
        xs, ys, cls, score = find_atoms_tensor(prob_s, threshold=threshold, min_distance_px=min_d_model,
                                               refine=refine)
        # model pixel i covers image coordinates around (i + 0.5) / s - 0.5
        atoms = AtomList((xs + 0.5) * (w / ws) - 0.5, (ys + 0.5) * (h / hs) - 0.5, cls, score, self.classes)
        prob = None
        if keep_prob:
            pf = prob_s[None] if (hs, ws) == (h, w) else F.interpolate(prob_s[None], size=(h, w), mode="bilinear",
                                                                      align_corners=False)
            prob = pf[0].cpu().numpy()
        if progress:
            progress(1.0, "done")
        info = {"px_size_A": px_A, "model_px_size_A": self.px_size_A, "scale": s, "notes": notes,
                "device": self.device, "bf16": self.bf16, "model": self.card["name"], "min_distance_px": max(2.0, 1.0 / px_A),
                "on_device": True, "tta": self.tta, "views": len(self.views)}
        return atoms, prob, info

    def defects(self, image, px_size_nm=None, *, threshold_rel: float = 0.5, progress=None, cancel=None):
        """The defects a ``cam`` model finds.

        Parameters
        ----------
        image : (H, W) array
        px_size_nm : float, optional
            The calibration (nm/px); None estimates it (:meth:`choose_scale`).
        threshold_rel : float
            A peak of a type's map counts when it exceeds this fraction of the map's maximum
            (:func:`atomlens.analysis.cam.defects_from_cam`).
        progress, cancel
            As for :meth:`probabilities`.

        Returns
        -------
        found : DefectList
            Positions in the image's pixels.
        cam : (K, H, W) float32 numpy.ndarray
            The class activation maps in the image's pixels.
        info : dict
            As for :meth:`probabilities`.

        Raises
        ------
        ValueError
            For a model that is not a ``cam`` model.
        """
        from ..analysis.cam import defects_from_cam

        if self.task != "cam":
            raise ValueError(f"model {self.card['name']} is not a defect-CAM model")
        cam, info = self.probabilities(image, px_size_nm, progress=progress, cancel=cancel)
        min_d = max(3.0, 3.0 / info["px_size_A"])  # defects closer than ~3 Å merge
        found = defects_from_cam(cam, list(self.classes), threshold_rel=threshold_rel, min_distance_px=min_d)
        return found, cam, info

    def detect(self, image, px_size_nm=None, *, threshold: float = 0.5, refine: str = "centroid",
               progress=None, cancel=None, strip_px: int = STRIP_PX, keep_prob: bool = True,
               fast: bool | None = None):
        """The atoms a segmentation model finds.

        On a GPU (``fast=None`` and device "cuda"), images up to STRIP_MIN_PIXELS with
        refine "centroid" or "none" stay on the device from the resampling to the atom
        table (:func:`atomlens.nn.fastpeaks.find_atoms_tensor`); `keep_prob=False` then
        skips copying the probability maps back (None is returned in their place).

        Images larger than STRIP_MIN_PIXELS are processed in `strip_px` x `strip_px` tiles
        (both axes) with margins of at least 8 Å, each normalised like the whole image; each
        tile keeps the atoms whose centres lie in its own pixels.  Memory then grows with the
        tile, not the image, and probabilities are not returned (None); ``info["tiles"]``
        counts the tiles, ``info["strips"]`` their rows.

        Parameters
        ----------
        image : (H, W) array
        px_size_nm : float, optional
            The calibration (nm/px); None estimates it (:meth:`choose_scale`).
        threshold : float
            Probability above which a pixel belongs to an atom.
        refine : {"centroid", "none", "gaussian"}
            Sub-pixel refinement (:func:`atomlens.analysis.atoms.find_atoms`).
        progress, cancel
            As for :meth:`probabilities`.
        strip_px : int
            Tile side (px of the image) for images larger than STRIP_MIN_PIXELS.
        keep_prob : bool
            On the GPU path, False skips copying the probabilities back.
        fast : bool, optional
            Force the GPU path on or off; None decides as above.

        Returns
        -------
        atoms : AtomList
            Positions in the image's pixels, classes and scores.
        prob : (C, H, W) float32 numpy.ndarray or None
            The class probabilities in the image's pixels (None as said above).
        info : dict
            As for :meth:`probabilities`, with ``min_distance_px`` (the closest two atoms may
            be, px) and, for tiled images, ``strips`` and ``tiles``.
        """
        from ..analysis.atoms import find_atoms

        img = np.asarray(image, np.float32)
        h, w = img.shape
        px_A, notes = self.choose_scale(img, px_size_nm)
        min_d = max(2.0, 1.0 / px_A)  # columns are never closer than ~1 Å
        if fast is None:
            fast = self.device == "cuda" and self.task != "cam" and refine in ("centroid", "none")
        if fast and h * w <= STRIP_MIN_PIXELS:
            return self._detect_on_device(img, px_A, notes, threshold, refine, keep_prob, progress)
        if h * w <= STRIP_MIN_PIXELS:
            prob, info = self.probabilities(img, progress=progress, cancel=cancel, _scale=(px_A, notes, None))
            atoms = find_atoms(prob, threshold=threshold, min_distance_px=min_d, refine=refine,
                               image=img, class_names=self.classes)
            info["min_distance_px"] = min_d
            return atoms, prob, info
        return self._detect_tiled(img, px_A, notes, min_d, threshold, refine, progress, cancel, max(16, int(strip_px)))

    def _detect_tiled(self, img, px_A, notes, min_d, threshold, refine, progress, cancel, side):
        """detect() of a large image in `side` x `side` tiles (both axes), each with a margin of
        at least 8 Å and normalised like the whole image; each tile keeps the atoms whose
        centres lie in its own pixels.  Memory is bounded by the tile, whatever the image's shape."""
        from ..analysis.atoms import AtomList, find_atoms

        h, w = img.shape
        # a local normalisation reads its neighbours out to margin_A: a tile's margin covers it
        reach_A = 8.0 + (margin_A(self.norm_spec) if self.local_norm else 0.0)
        pad = int(math.ceil(max(64, reach_A / px_A)))
        ys, xs = list(range(0, h, side)), list(range(0, w, side))
        tiles = [(y0, x0) for y0 in ys for x0 in xs]
        # one normalisation for all tiles, that of the whole image at the model's pixel size
        # (as in training): each resampled tile gives its share of one random sample
        s = px_A / self.px_size_A
        sample = []
        for y0, x0 in tiles:
            share = min(side, h - y0) * min(side, w - x0) / (h * w)
            t = self._resample(img[y0:y0 + side, x0:x0 + side], s)
            if self.local_norm:
                _hp, r, unit = local_contrast(t, self.px_size_A, self.norm_spec)
                sample.append(floor_sample(r, unit))
            else:
                sample.append(stats_sample(t, share))
        joined = np.concatenate(sample)
        scale = (px_A, notes, contrast_floor(joined) if self.local_norm else sample_stats(joined, self.norm))
        parts, info = [], {}
        for k, (y0, x0) in enumerate(tiles):
            y1, x1 = min(h, y0 + side), min(w, x0 + side)
            a, b, c, d = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)

            def part(frac, msg, k=k):
                if progress:
                    progress((k + frac) / len(tiles), f"tile {k + 1}/{len(tiles)}: {msg}")

            prob, info = self.probabilities(img[a:b, c:d], progress=part, cancel=cancel, _scale=scale)
            got = find_atoms(prob, threshold=threshold, min_distance_px=min_d, refine=refine,
                             image=img[a:b, c:d], class_names=self.classes)
            del prob
            got.y, got.x = got.y + a, got.x + c
            own = ((got.y >= y0 - 0.5) & ((got.y < y1 - 0.5) | (y1 == h))
                   & (got.x >= x0 - 0.5) & ((got.x < x1 - 0.5) | (x1 == w)))
            parts.append(got.subset(own))
        found = AtomList(*(np.concatenate([getattr(g, f) for g in parts]) for f in ("x", "y", "cls", "score")),
                         self.classes)
        found = _drop_seam_twins(found, np.repeat(np.arange(len(parts)), [len(g) for g in parts]), 0.5 * min_d)
        info["strips"], info["tiles"] = len(ys), len(tiles)
        info["min_distance_px"] = min_d
        return found, None, info


def _drop_seam_twins(atoms, tile, r):
    """`atoms` without the weaker of each pair closer than `r` found by two different tiles
    (one column next to a seam, seen by both tiles a hair to either side of it)."""
    if len(atoms) < 2:
        return atoms
    from scipy.spatial import cKDTree

    pairs = cKDTree(atoms.xy).query_pairs(r, output_type="ndarray")
    pairs = pairs[tile[pairs[:, 0]] != tile[pairs[:, 1]]]
    if not len(pairs):
        return atoms
    keep = np.ones(len(atoms), bool)
    keep[np.where(atoms.score[pairs[:, 0]] >= atoms.score[pairs[:, 1]], pairs[:, 1], pairs[:, 0])] = False
    return atoms.subset(keep)

