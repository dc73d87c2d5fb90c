"""Scoring a model on the user's annotated real images (:mod:`atomlens.nn.realdata`).

:func:`evaluate_on_annotations` runs a model (a bundle, or a
:class:`~atomlens.nn.infer.Predictor`, e.g. :meth:`~atomlens.nn.infer.Predictor.from_model`
around a model being trained) on :class:`~atomlens.nn.realdata.AnnotatedImage` objects and
scores its atoms against the user's.

For *training*, every atom in the annotations counts as true (the user is expected to have
corrected the whole prediction; see :mod:`atomlens.analysis.annotations`).  For *scoring*
only the atoms the user vouched for count, so that a model is never scored against its own
uncorrected predictions:

* an atom is **confirmed** (:func:`~atomlens.nn.realdata.confirmed_mask`) when the user placed,
  moved or re-classed it (``source == "user"``) or marked it reviewed (``reviewed``); these
  are the only true atoms of the score (the sidecar records no reviewed regions, so these
  per-atom flags are all it offers);
* the user's labels are **authoritative** within :func:`authority_radius_px` (1.5 lattice
  spacings) of a confirmed atom: a prediction there that matches no annotated atom is a false
  one (the user, working there, would have kept an atom where there is one);
* where the user **deleted** a predicted atom (``Annotations.deleted_x/_y``), a prediction
  that matches no annotated atom is a false one wherever it lies: the user said there is none;
* a prediction matched to an annotated atom that is not confirmed, or lying away from every
  confirmed atom, is left out: unreviewed predictions neither reward nor punish a model.
"""

from __future__ import annotations

import math

import numpy as np

from ..analysis.training_labels import holdout_row
from ..analysis.atoms import names_to_indices
from ..analysis.metrics import match_points
from .infer import Predictor
from .realdata import AnnotatedImage, confirmed_mask
from .scale import TYPICAL_PERIOD_A

__all__ = ["authority_radius_px", "evaluate_on_annotations"]


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """(precision, recall, F1); NaN where nothing was counted (no score is not a perfect one)."""
    nan = float("nan")
    precision = tp / n_pred if n_pred else nan
    recall = tp / n_true if n_true else nan
    f1 = 2.0 * tp / (n_pred + n_true) if n_pred + n_true else nan
    return float(precision), float(recall), float(f1)


def authority_radius_px(item: AnnotatedImage) -> float:
    """How far from a confirmed atom the user's labels are taken as complete.

    1.5 lattice spacings (the median nearest-neighbour distance of the annotated atoms, or the
    typical period :data:`~atomlens.nn.scale.TYPICAL_PERIOD_A` with fewer than two atoms), so
    the neighbourhood the user looked at when placing or checking the atom, out past its
    nearest neighbours; at least twice the match radius.  A prediction within it that matches
    no annotated atom is a false one.

    Parameters
    ----------
    item : AnnotatedImage

    Returns
    -------
    float
        The radius in the image's pixels.
    """
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


def evaluate_on_annotations(bundle_or_predictor, items, region: str = "all", holdout: float = 0.2,
                            threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of a model on the atoms the user corrected or confirmed.

    Only confirmed atoms (:func:`~atomlens.nn.realdata.confirmed_mask`) are true atoms, and predictions count only
    where the user's labels are authoritative (see the module notes): a model is not scored
    against annotated atoms that are its own (or another model's) untouched predictions.
    Images with no confirmed atom in `region` are not run.

    Parameters
    ----------
    bundle_or_predictor : str, path or Predictor
        A bundle name or folder (run on the best device), or a Predictor (anything with
        ``detect(image, px_size_nm, threshold=...) -> (AtomList, prob, info)`` and optionally
        a ``card`` whose ``mode`` decides whether dark-atom images are inverted), e.g.
        :meth:`Predictor.from_model <atomlens.nn.infer.Predictor.from_model>` around a model in
        memory.
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
