"""The user's annotated real images as training data, mixed with simulations.

An :class:`AnnotatedImage` is one real image with its corrected atoms (an
:class:`~atomlens.analysis.annotations.Annotations`).  For fine-tuning:

* a strip at the bottom of each image (``holdout``, a fraction of its rows) is kept out of
  training and used to measure precision/recall/F1 on the user's own atoms
  (:mod:`atomlens.nn.evaluate`, where the scoring rules are);
* :class:`RealPatches` cuts random windows of the simulation's patch size from the rest,
  resampled to the model's pixel size, with disc labels around the annotated atoms (as the
  simulation draws them), random 90-degree rotations and flips, normalised like every
  training image (:func:`atomlens.nn.data.normalise`);
* :class:`MixedStream` draws each training sample from the annotated images with probability
  ``real_fraction`` and from the simulation otherwise.

For *training*, every atom in the annotations counts as true (the user is expected to have
corrected the whole prediction; see :mod:`atomlens.analysis.annotations`).  For *scoring*, only
the atoms the user vouched for count (:func:`confirmed_mask`, :func:`count_confirmed`).

An uncalibrated image is given a pixel size from its lattice period, as inference does
(:func:`atomlens.nn.scale.period_px_size_A`).

This module holds data only: it runs no model (so it imports neither
:mod:`~atomlens.nn.infer` nor :mod:`~atomlens.nn.train`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..analysis.training_labels import LABEL_RADIUS_A, LABEL_RADIUS_UNCALIBRATED_PX, holdout_row, label_map
from ..analysis.annotations import Annotations
from ..io.modes import needs_inversion
from .data import normalise
from .scale import period_px_size_A, resample

__all__ = ["AnnotatedImage", "RealPatches", "MixedStream", "confirmed_mask", "count_confirmed", "holdout_row",
           "load_real_items"]


def confirmed_mask(ann: Annotations) -> np.ndarray:
    """Which annotated atoms the user vouched for.

    Parameters
    ----------
    ann : Annotations
        n atoms.

    Returns
    -------
    (n,) bool numpy.ndarray
        :meth:`Annotations.confirmed_mask`: placed, moved or re-classed by the user, or
        marked reviewed.
    """
    return ann.confirmed_mask()


#: The smallest match radius (px) between a prediction and an atom the user clicked: hand clicks
#: land within a pixel or two of the column (the Pt data set's second rule is 3 px).
MIN_MATCH_PX = 3.0

@dataclasses.dataclass
class AnnotatedImage:
    """One real image and the user's annotations of it.

    Attributes
    ----------
    image : (H, W) float32
    ann : Annotations
        All its atoms are taken as true.
    px_size_nm : float or None
        Pixel size (nm/px); None takes ``ann.px_size_nm``, and when that is None too the image
        is uncalibrated (its pixel size is estimated from the lattice period).
    weight : float
        Relative frequency with which patches are drawn from this image.
    name : str
        Default ``ann.image_name`` (or "image").
    sha256 : str
        sha256 of the original image file (default ``ann.image_sha256``; failing that, of the
        image's float32 pixels).
    mode : str or None
        Imaging mode (default ``ann.mode``).  Images of a dark-atom mode (ABF, BF) are
        inverted for a bright-atom model, in training windows and in evaluation alike, as the
        analysis inverts them (:func:`atomlens.io.modes.needs_inversion`).
    """

    image: np.ndarray
    ann: Annotations
    px_size_nm: float | None = None
    weight: float = 1.0
    name: str = ""
    sha256: str = ""
    mode: str | None = None

    def __post_init__(self):
        img = np.asarray(self.image, np.float32)
        if img.ndim == 3:
            img = img[self.ann.frame]
        if img.ndim != 2:
            raise ValueError(f"an annotated image must be 2D, got shape {img.shape}")
        if self.ann.shape is not None and tuple(self.ann.shape) != img.shape:
            raise ValueError(f"the annotations were made on a {self.ann.shape} image, not {img.shape}")
        self.image = np.ascontiguousarray(img)
        if self.px_size_nm is None:
            self.px_size_nm = self.ann.px_size_nm
        if self.px_size_nm is not None and not float(self.px_size_nm) > 0:
            raise ValueError(f"px_size_nm must be positive, got {self.px_size_nm}")
        self.weight = float(self.weight)
        if not self.weight > 0:
            raise ValueError(f"the weight of an annotated image must be positive, got {self.weight}")
        self.name = self.name or self.ann.image_name or "image"
        self.sha256 = self.sha256 or self.ann.image_sha256 or hashlib.sha256(self.image.tobytes()).hexdigest()
        self.mode = self.mode or self.ann.mode
        self._px_A = None

    @classmethod
    def from_files(cls, image_npy, annotations_json, weight: float = 1.0) -> "AnnotatedImage":
        """Read a pair written by :func:`atomlens.analysis.training_labels.export_training_pair`.

        Parameters
        ----------
        image_npy : path
            The ``.image.npy`` file: the (H, W) image (or a stack, of which the annotations'
            frame is taken).
        annotations_json : path
            The ``.annotations.json`` sidecar.
        weight : float
            Relative frequency of this image's patches (> 0).

        Returns
        -------
        AnnotatedImage
            Name, sha256, pixel size (nm/px) and mode from the annotations.

        Raises
        ------
        ValueError
            When a file cannot be read or the annotations do not fit the image, naming the file.
        """
        try:
            img = np.load(image_npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{image_npy}: cannot read the image ({exc}); export the training pair again") from None
        try:
            d = json.loads(Path(annotations_json).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{annotations_json}: cannot read the annotations ({exc})") from None
        try:
            ann = Annotations.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{annotations_json}: {exc}") from None
        return cls(img, ann, ann.px_size_nm, weight, ann.image_name or Path(image_npy).name.split(".")[0],
                   ann.image_sha256 or "", ann.mode)

    @property
    def n_atoms(self) -> int:
        """int: the number of annotated atoms."""
        return len(self.ann)

    @property
    def calibrated(self) -> bool:
        """bool: whether the image has a pixel size (else it is estimated, :meth:`px_size_A`)."""
        return self.px_size_nm is not None

    def px_size_A(self) -> float:
        """The image's pixel size.

        Returns
        -------
        float
            Å/px: the calibration, or for an uncalibrated image the lattice period taken as
            :data:`~atomlens.nn.scale.TYPICAL_PERIOD_A` (as inference assumes; estimated once).

        Raises
        ------
        ValueError
            For an uncalibrated image without a measurable lattice period, naming the image.
        """
        if self.px_size_nm is not None:
            return float(self.px_size_nm) * 10.0
        if self._px_A is None:
            try:  # a flat, tiny or periodless image: the reason, and which image
                self._px_A = period_px_size_A(self.image)[0]
            except ValueError as exc:
                raise ValueError(f"{self.name}: no calibration, and {exc}") from None
        return self._px_A

    def match_radius_px(self) -> float:
        """The largest distance of a match between a prediction and an annotated atom.

        Returns
        -------
        float
            px: 0.5 Å (:data:`~atomlens.analysis.training_labels.LABEL_RADIUS_A`), but never less
            than :data:`MIN_MATCH_PX` (a click by hand lands within a pixel or two of the column,
            which at 0.3 Å/px is more than 0.5 Å); 2 px for an uncalibrated image.
        """
        if not self.calibrated:
            return LABEL_RADIUS_UNCALIBRATED_PX
        return max(LABEL_RADIUS_A / self.px_size_A(), MIN_MATCH_PX)

    def image_for(self, model_mode) -> np.ndarray:
        """The image as a model of `model_mode` sees it.

        Parameters
        ----------
        model_mode : str or None
            The model's imaging mode (its card's ``mode``).

        Returns
        -------
        (H, W) float32 numpy.ndarray
            Negated for a dark-atom image and a bright-atom model (normalisation takes care of
            the offset); else the image itself.
        """
        return -self.image if needs_inversion(self.mode, model_mode) else self.image

    def card_entry(self) -> dict:
        """What a model card records about an image it was trained on.

        Returns
        -------
        dict
            ``name``, ``sha256``, ``n_atoms``, ``weight``, ``px_size_nm`` (nm/px or None) and
            ``mode``.
        """
        return {"name": self.name, "sha256": self.sha256, "n_atoms": self.n_atoms, "weight": self.weight,
                "px_size_nm": self.px_size_nm, "mode": self.mode}


def load_real_items(entries) -> list[AnnotatedImage]:
    """The annotated images a recipe's ``real`` entries name.

    Parameters
    ----------
    entries : list or None
        Each ``{"image": path, "annotations": path, "weight"?: float}`` (a pair written by
        :func:`atomlens.analysis.training_labels.export_training_pair`) or an AnnotatedImage.

    Returns
    -------
    list of AnnotatedImage
        In the order given; empty for None.

    Raises
    ------
    ValueError
        For an entry that is neither, or files that cannot be read.
    """
    out = []
    for e in entries or []:
        if isinstance(e, AnnotatedImage):
            out.append(e)
        elif isinstance(e, dict) and "image" in e and "annotations" in e:
            out.append(AnnotatedImage.from_files(e["image"], e["annotations"], float(e.get("weight", 1.0))))
        else:
            raise ValueError(f"a 'real' entry needs 'image' and 'annotations' paths, got {e!r}")
    return out


class RealPatches:
    """Random training windows from the annotated part (above the held-out strip) of images.

    Parameters
    ----------
    items : list of AnnotatedImage
    model_px_A : float
        The model's pixel size (Å/px); images are resampled to it.
    patch_shape : (h, w)
        Size of each window in model pixels (the simulation's ``shape``).
    holdout : float
        Fraction of each image's rows, at the bottom, never used here.
    label_radius_A : float
        Radius of the label discs (the simulation's ``labels.radius_A``).
    model_mode : str, optional
        The model's imaging mode; dark-atom images are inverted for a bright-atom model
        (:meth:`AnnotatedImage.image_for`).
    norm : str
        The model's normalisation method (:func:`atomlens.nn.data.normalise`).

    Images are prepared once (resampled and labelled) when this is built, so DataLoader
    workers forked afterwards share them.  Windows are drawn from image i with probability
    proportional to its weight.
    """

    def __init__(self, items, model_px_A: float, patch_shape, holdout: float = 0.2, label_radius_A: float = 0.5,
                 model_mode: str | None = None, norm="clip-zscore"):
        if not items:
            raise ValueError("no annotated images given")
        self.patch_shape = (int(patch_shape[0]), int(patch_shape[1]))
        self.norm, self.model_px_A = norm, float(model_px_A)
        self.images, self.labels = [], []
        ph, pw = self.patch_shape
        for it in items:
            h, w = it.image.shape
            y_end = holdout_row(h, holdout)
            if y_end < 8:
                raise ValueError(f"{it.name}: only {y_end} rows are left for training after the held-out strip")
            s = it.px_size_A() / float(model_px_A)  # > 1: the image's pixels are larger than the model's
            region = resample(it.image_for(model_mode)[:y_end], s)
            hs, ws = region.shape
            sy, sx = hs / y_end, ws / w
            # pixel centres: x' = (x + 0.5) * s - 0.5 (as F.interpolate maps them)
            lab = label_map((hs, ws), (it.ann.x + 0.5) * sx - 0.5, (it.ann.y + 0.5) * sy - 0.5, it.ann.cls,
                            float(label_radius_A) / float(model_px_A))
            py, pxx = max(0, ph - hs), max(0, pw - ws)
            if py or pxx:  # smaller than a window: mirror it out (the mirrored atoms are labelled too)
                pads = ((py // 2, py - py // 2), (pxx // 2, pxx - pxx // 2))
                region = np.pad(region, pads, mode="symmetric")
                lab = np.pad(lab, pads, mode="symmetric")
            self.images.append(np.ascontiguousarray(region, np.float32))
            self.labels.append(np.ascontiguousarray(lab, np.uint8))
        wts = np.array([it.weight for it in items], np.float64)
        self.p = wts / wts.sum()

    def sample(self, rng: np.random.Generator):
        """One random training window.

        Parameters
        ----------
        rng : numpy.random.Generator
            Chooses the image (by weight), the window, the rotation and the mirror.

        Returns
        -------
        image : (1, h, w) float32 torch.Tensor
            Normalised, (h, w) the patch shape.
        labels : (h, w) int64 torch.Tensor
            Class per pixel (0 background).
        """
        k = int(rng.choice(len(self.images), p=self.p))
        img, lab = self.images[k], self.labels[k]
        ph, pw = self.patch_shape
        y0 = int(rng.integers(0, img.shape[0] - ph + 1))
        x0 = int(rng.integers(0, img.shape[1] - pw + 1))
        x, y = img[y0:y0 + ph, x0:x0 + pw], lab[y0:y0 + ph, x0:x0 + pw]
        rot = int(rng.integers(4)) if ph == pw else 2 * int(rng.integers(2))
        x, y = np.rot90(x, rot), np.rot90(y, rot)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        x = normalise(np.ascontiguousarray(x), method=self.norm, px_A=self.model_px_A)
        return torch.from_numpy(x)[None], torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))


class MixedStream(IterableDataset):
    """Samples from `real` (a :class:`RealPatches`) with probability `real_fraction`, else
    from `sim` (a :class:`~atomlens.nn.data.SimStream`).  Works in the main process and in
    forked DataLoader workers (each worker draws from its own random stream).

    Parameters
    ----------
    sim : iterable of (image, labels)
        The simulation stream (not iterated when `real_fraction` is 1).
    real : RealPatches
    real_fraction : float
        In [0, 1]: the chance that a sample is a window of an annotated image.
    seed : int
        With the worker's id, seeds the choice and `real`'s windows.

    Yields
    ------
    (image, labels)
        As :meth:`RealPatches.sample` and the simulation stream give them.
    """

    def __init__(self, sim, real: RealPatches, real_fraction: float, seed: int = 0):
        super().__init__()
        if not 0.0 <= real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {real_fraction}")
        self.sim, self.real, self.real_fraction, self.seed = sim, real, float(real_fraction), int(seed)

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng([self.seed, wid, 0x5EA1])
        sim_it = iter(self.sim) if self.real_fraction < 1.0 else None
        while True:
            if rng.random() < self.real_fraction:
                yield self.real.sample(rng)
            else:
                yield next(sim_it)


def count_confirmed(items, region: str = "holdout", holdout: float = 0.2) -> tuple[int, int]:
    """How many atoms a score on the user's atoms (:func:`atomlens.nn.evaluate.evaluate_on_annotations`)
    would count; no model needed.

    Parameters
    ----------
    items : list of AnnotatedImage
    region : {"holdout", "all"}
        The held-out strips at the images' bottom, or the whole images.
    holdout : float
        Fraction of each image's rows in its held-out strip.

    Returns
    -------
    n : int
        The confirmed atoms (:func:`confirmed_mask`) in `region`.
    m : int
        The number of images holding them.
    """
    n = m = 0
    for item in items:
        y0 = holdout_row(item.image.shape[0], holdout) if region == "holdout" else 0
        k = int((confirmed_mask(item.ann) & (item.ann.y >= y0 - 0.5)).sum())
        n, m = n + k, m + (k > 0)
    return n, m
