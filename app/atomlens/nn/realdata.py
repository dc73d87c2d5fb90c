"""Training and validation on the user's annotated real images, mixed with simulations.

An :class:`AnnotatedImage` is one real image with its corrected atoms (an
:class:`~atomlens.analysis.annotations.Annotations`).  For fine-tuning:

* a strip at the bottom of each image (``holdout``, a fraction of its rows) is kept out of
  training and used to measure precision/recall/F1 on the user's own atoms;
* :class:`RealPatches` cuts random windows of the simulation's patch size from the rest,
  resampled to the model's pixel size, with disc labels around the annotated atoms (as the
  simulation draws them), random 90-degree rotations and flips, normalised like every
  training image (:func:`atomlens.nn.data.normalise`);
* :class:`MixedStream` draws each training sample from the annotated images with probability
  ``real_fraction`` and from the simulation otherwise.

For *training*, every atom in the annotations counts as true (the user is expected to have
corrected the whole prediction; see :mod:`atomlens.analysis.annotations`).  For *scoring*
(:func:`evaluate_on_annotations`) only the atoms the user vouched for count, so that a model is
never scored against its own uncorrected predictions:

* an atom is **confirmed** (:func:`confirmed_mask`) when the user placed, moved or re-classed
  it (``source == "user"``) or marked it reviewed (``reviewed``); these are the only true
  atoms of the score (the sidecar records no reviewed regions, so these per-atom flags are
  all it offers);
* the user's labels are **authoritative** within :func:`authority_radius_px` (1.5 lattice
  spacings) of a confirmed atom: a prediction there that matches no annotated atom is a false
  one (the user, working there, would have kept an atom where there is one);
* where the user **deleted** a predicted atom (``Annotations.deleted_x/_y``), a prediction
  that matches no annotated atom is a false one wherever it lies: the user said there is none;
* a prediction matched to an annotated atom that is not confirmed, or lying away from every
  confirmed atom, is left out: unreviewed predictions neither reward nor punish a model.

An uncalibrated image is given a pixel size from its lattice period, as inference does
(:meth:`atomlens.nn.infer.Predictor.choose_scale`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..analysis.annotations import LABEL_RADIUS_A, LABEL_RADIUS_UNCALIBRATED_PX, Annotations, holdout_row, label_map
from ..analysis.atoms import names_to_indices
from ..analysis.metrics import match_points
from ..io.modes import needs_inversion
from .data import normalise
from .infer import TYPICAL_PERIOD_A, Predictor

__all__ = ["AnnotatedImage", "RealPatches", "MixedStream", "ModelPredictor", "authority_radius_px",
           "confirmed_mask", "count_confirmed", "evaluate_on_annotations", "holdout_row", "load_real_items"]


def confirmed_mask(ann: Annotations) -> np.ndarray:
    """(n,) bool: :meth:`Annotations.confirmed_mask` (placed, moved or re-classed by the user,
    or marked reviewed)."""
    return ann.confirmed_mask()


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
        """Read a pair written by :func:`atomlens.analysis.annotations.export_training_pair`."""
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
        return len(self.ann)

    @property
    def calibrated(self) -> bool:
        return self.px_size_nm is not None

    def px_size_A(self) -> float:
        """Pixel size in Å: the calibration, or for an uncalibrated image the lattice period
        taken as :data:`~atomlens.nn.infer.TYPICAL_PERIOD_A` (as inference assumes)."""
        if self.px_size_nm is not None:
            return float(self.px_size_nm) * 10.0
        if self._px_A is None:
            from ..analysis.lattice import estimate_period_px

            try:  # a flat, tiny or periodless image: the reason, and which image
                period = estimate_period_px(self.image)
            except ValueError as exc:
                raise ValueError(f"{self.name}: no calibration, and {exc}") from None
            self._px_A = TYPICAL_PERIOD_A / period
        return self._px_A

    def match_radius_px(self) -> float:
        """Largest distance of a match (px): 0.5 Å, or 2 px for an uncalibrated image."""
        return LABEL_RADIUS_A / self.px_size_A() if self.calibrated else LABEL_RADIUS_UNCALIBRATED_PX

    def image_for(self, model_mode) -> np.ndarray:
        """The image as a model of `model_mode` sees it: negated for a dark-atom image and a
        bright-atom model (normalisation takes care of the offset)."""
        return -self.image if needs_inversion(self.mode, model_mode) else self.image

    def card_entry(self) -> dict:
        """What a model card records about an image it was trained on."""
        return {"name": self.name, "sha256": self.sha256, "n_atoms": self.n_atoms, "weight": self.weight,
                "px_size_nm": self.px_size_nm, "mode": self.mode}


def load_real_items(entries) -> list[AnnotatedImage]:
    """AnnotatedImages from recipe entries ``{"image", "annotations", "weight"?}`` (paths)
    or AnnotatedImage objects."""
    out = []
    for e in entries or []:
        if isinstance(e, AnnotatedImage):
            out.append(e)
        elif isinstance(e, dict) and "image" in e and "annotations" in e:
            out.append(AnnotatedImage.from_files(e["image"], e["annotations"], float(e.get("weight", 1.0))))
        else:
            raise ValueError(f"a 'real' entry needs 'image' and 'annotations' paths, got {e!r}")
    return out


def _resample(img: np.ndarray, s: float) -> np.ndarray:
    return Predictor._resample(img, s)


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
            region = _resample(it.image_for(model_mode)[:y_end], s)
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
        """One (image (1, h, w) float32 tensor, class map (h, w) int64 tensor)."""
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
    forked DataLoader workers (each worker draws from its own random stream)."""

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


class ModelPredictor(Predictor):
    """A :class:`~atomlens.nn.infer.Predictor` around a model in memory (e.g. one being
    trained), with `card` giving its classes and pixel size."""

    def __init__(self, model, card: dict, device: str = "cpu", tile: int = 512, overlap: int = 48):
        from .precision import use_bf16

        self.path = None
        self.device = device
        self.model, self.card = model, card
        self.task = card.get("task", "segmentation")
        self.classes = tuple(card["classes"])
        self.px_size_A = float(card["px_size_A"])
        self.valid_px_A = tuple(card.get("valid_px_size_A", (0.0, math.inf)))
        self.tile, self.overlap = int(tile), int(overlap)
        self.bf16 = use_bf16(device)


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """(precision, recall, F1); NaN where nothing was counted (no score is not a perfect one)."""
    nan = float("nan")
    precision = tp / n_pred if n_pred else nan
    recall = tp / n_true if n_true else nan
    f1 = 2.0 * tp / (n_pred + n_true) if n_pred + n_true else nan
    return float(precision), float(recall), float(f1)


def authority_radius_px(item: AnnotatedImage) -> float:
    """How far (px) from a confirmed atom the user's labels are taken as complete: 1.5 lattice
    spacings (the median nearest-neighbour distance of the annotated atoms, or the typical
    period :data:`~atomlens.nn.infer.TYPICAL_PERIOD_A` with fewer than two atoms), so the
    neighbourhood the user looked at when placing or checking the atom, out past its nearest
    neighbours; at least twice the match radius.  A prediction within it that matches no
    annotated atom is a false one."""
    from ..analysis.lattice import median_nn_distance

    d = median_nn_distance(np.stack([item.ann.x, item.ann.y], 1)) if len(item.ann) > 1 else math.inf
    if not math.isfinite(d):
        d = TYPICAL_PERIOD_A / item.px_size_A()
    return float(max(1.5 * d, 2.0 * item.match_radius_px()))


def _within(points: np.ndarray, centres: np.ndarray, r: float) -> np.ndarray:
    """(n,) bool: which of `points` lie within `r` of any of `centres` (both (k, 2))."""
    if not len(points) or not len(centres):
        return np.zeros(len(points), bool)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(centres).query(points, k=1, distance_upper_bound=float(r))
    return np.isfinite(dist)


def _score_region(pxy, pcls, txy, tcls, conf, y0: float, r: float, r_zone: float, n_classes: int,
                  dxy=None) -> dict:
    """Counts for points in rows >= y0 (a row's pixels span y +- 0.5), on the confirmed atoms.

    Predictions are matched one to one with all annotated atoms (`conf` marks the confirmed
    ones), and points just above the strip take part in the matching, so that an atom on the
    border is neither missed nor doubled.  A confirmed atom in the strip is a true atom; a
    prediction is a true positive when matched to one, a false one when it lies in the strip,
    matches no annotated atom and lies within `r_zone` of a confirmed atom; any other
    prediction (matched to an unconfirmed atom, or away from every confirmed one) is left out.
    A prediction that matches no annotated atom within `r` of a place where the user deleted a
    predicted atom (`dxy`, (m, 2)) is a false one too: the user said there is none there."""
    lim = y0 - 0.5
    conf = np.asarray(conf, bool)
    ip, it, _ = match_points(pxy, txy, r)
    t_in = (txy[:, 1] >= lim) & conf
    p_in = pxy[:, 1] >= lim
    matched_p = np.zeros(len(pxy), bool)
    matched_p[ip] = True
    dxy = np.zeros((0, 2)) if dxy is None else np.asarray(dxy, np.float64).reshape(-1, 2)
    d_in = dxy[:, 1] >= lim
    near = _within(pxy, txy[conf], r_zone) | _within(pxy, dxy[d_in], r)
    fp = ~matched_p & p_in & near
    counted = t_in[it]
    ip, it = ip[counted], it[counted]
    tp = len(ip)
    out = {"tp": tp, "n_true": int(t_in.sum()), "n_pred": tp + int(fp.sum()),
           "n_left_out": int((p_in & ~fp).sum()) - tp, "n_unconfirmed": int(((txy[:, 1] >= lim) & ~conf).sum()),
           "n_images": int(t_in.any()), "n_deleted": int(d_in.sum()),
           "same_class": int(np.sum(pcls[ip] == tcls[it])), "per": np.zeros((n_classes, 3), np.int64)}
    for c in range(1, n_classes):
        out["per"][c] = (int(np.sum((pcls[ip] == c) & (tcls[it] == c))),
                         int(np.sum(pcls[ip] == c) + np.sum(pcls[fp] == c)), int(np.sum(tcls[t_in] == c)))
    return out


_COUNTS = ("tp", "n_true", "n_pred", "n_left_out", "n_unconfirmed", "n_images", "n_deleted", "same_class")


def count_confirmed(items, region: str = "holdout", holdout: float = 0.2) -> tuple[int, int]:
    """(N, M): the confirmed atoms (:func:`confirmed_mask`) that a score on `region` of `items`
    counts, and the number of images holding them (no model needed)."""
    n = m = 0
    for item in items:
        y0 = holdout_row(item.image.shape[0], holdout) if region == "holdout" else 0
        k = int((confirmed_mask(item.ann) & (item.ann.y >= y0 - 0.5)).sum())
        n, m = n + k, m + (k > 0)
    return n, m


def evaluate_on_annotations(bundle_or_predictor, items, region: str = "all", holdout: float = 0.2,
                            threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of a model on the atoms the user corrected or confirmed.

    Only confirmed atoms (:func:`confirmed_mask`) are true atoms, and predictions count only
    where the user's labels are authoritative (see the module notes): a model is not scored
    against annotated atoms that are its own (or another model's) untouched predictions.
    Images with no confirmed atom in `region` are not run.

    Parameters
    ----------
    bundle_or_predictor : a bundle name or folder, or a Predictor (anything with
        ``detect(image, px_size_nm, threshold=...) -> (AtomList, prob, info)``)
    items : list of AnnotatedImage
    region : {"all", "holdout"}
        The whole images, or only the held-out strips at their bottom (the part fine-tuning
        never trains on).  For the strips the network sees some rows above them as context.
    holdout : float
        Fraction of the rows in the held-out strip (as in training).
    threshold : float
        Detection threshold.

    Returns
    -------
    dict
        ``precision, recall, f1`` (class-agnostic one-to-one matching within 0.5 Å, or 2 px
        for uncalibrated images; NaN when there is no confirmed atom to score on), ``n_true``
        (N, the confirmed atoms scored on), ``n_images`` (M, the images holding them),
        ``n_pred, tp``, ``n_left_out`` (predictions neither rewarded nor punished),
        ``n_unconfirmed`` (annotated atoms in the region that are not confirmed),
        ``n_deleted`` (places in the region where the user deleted a predicted atom: a
        prediction there counts as a false one),
        ``class_accuracy`` (matched pairs with the right class; NaN with no match) and
        ``per_class {name: f1}`` (a prediction is right only with the right class), summed
        over all images.
    """
    if region not in ("all", "holdout"):
        raise ValueError(f"region must be 'all' or 'holdout', not {region!r}")
    pred = bundle_or_predictor
    if not hasattr(pred, "detect"):
        pred = Predictor(bundle_or_predictor, "auto")
    if not items:
        raise ValueError("no annotated images to evaluate on")
    names = tuple(items[0].ann.class_names)
    tot = {k: 0 for k in _COUNTS} | {"per": np.zeros((len(names), 3), np.int64)}
    for item in items:
        h = item.image.shape[0]
        px_A = item.px_size_A()
        y0, a = 0, 0
        if region == "holdout":
            y0 = holdout_row(h, holdout)
            if y0 >= h:
                raise ValueError("region='holdout' needs holdout > 0")
            a = max(0, y0 - int(math.ceil(max(32.0, 8.0 / px_A))))  # >= 8 Å of context above the strip
        conf = confirmed_mask(item.ann)
        if not (conf & (item.ann.y >= y0 - 0.5)).any():  # nothing the user vouched for here
            tot["n_unconfirmed"] += int((item.ann.y >= y0 - 0.5).sum())
            continue
        img = item.image_for(getattr(pred, "card", {}).get("mode"))
        atoms, _, _ = pred.detect(img[a:], px_A / 10.0, threshold=threshold)
        cn = tuple(item.ann.class_names)
        # bring predicted and true classes onto one list of names
        rp, names = names_to_indices(list(atoms.class_names), names)
        rt, names = names_to_indices(list(cn), names)
        pxy = np.stack([atoms.x, atoms.y + a], 1) if len(atoms) else np.zeros((0, 2))
        pcls = rp[atoms.cls] if len(atoms) else np.zeros(0, np.int64)
        txy = np.stack([item.ann.x, item.ann.y], 1) if len(item.ann) else np.zeros((0, 2))
        tcls = rt[item.ann.cls] if len(item.ann) else np.zeros(0, np.int64)
        dxy = np.stack([item.ann.deleted_x, item.ann.deleted_y], 1)
        s = _score_region(pxy, pcls, txy, tcls, conf, y0, item.match_radius_px(), authority_radius_px(item),
                          len(names), dxy)
        per = np.zeros((len(names), 3), np.int64)
        per[:len(tot["per"])] += tot["per"]
        per[:len(s["per"])] += s["per"]
        tot = {k: tot[k] + s[k] for k in _COUNTS} | {"per": per}
    p, r, f = _prf(tot["tp"], tot["n_pred"], tot["n_true"])
    per_class = {}
    for c in range(1, len(names)):
        tpc, npc, ntc = (int(v) for v in tot["per"][c])
        if npc or ntc:
            per_class[names[c]] = _prf(tpc, npc, ntc)[2]
    return {"precision": p, "recall": r, "f1": f, "n_true": int(tot["n_true"]), "n_pred": int(tot["n_pred"]),
            "tp": int(tot["tp"]), "n_images": int(tot["n_images"]), "n_left_out": int(tot["n_left_out"]),
            "n_unconfirmed": int(tot["n_unconfirmed"]), "n_deleted": int(tot["n_deleted"]),
            "class_accuracy": tot["same_class"] / tot["tp"] if tot["tp"] else float("nan"),
            "per_class": per_class}
