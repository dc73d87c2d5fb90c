"""``train(recipe, out_dir)``: train (or fine-tune) a model bundle on simulated data.

A recipe is a JSON-serialisable dict; the bundled models' recipes are in
``resources/recipes/``.  Fields (defaults in :data:`DEFAULTS`):

name, task ("segmentation" | "cam"), mode, sim (a simulation config dict, or a path),
architecture ({"name": "unet"|"gapcnn", "params": {...}}), px_size_A, valid_px_size_A,
batch_size, steps, lr, weight_decay, eval_every, val_n, patience, num_workers, device,
seed, time_limit_min (the one-cycle learning-rate schedule, :class:`BudgetSchedule`, runs over the
steps or this time, whichever ends first), init_from (a bundle to fine-tune), loss ("ce+dice" | "focal"),
class_weights (cross-entropy weight per class, e.g. [1, 1, 3, 3] to favour the rare dopants and
vacancies), profiles ({"cuda": {...}}: fields that replace the ones above when training runs on
that device - a GPU affords larger batches, more steps and more simulation workers in the
same wall-clock time; the card records the profile used).

Fine-tuning on the user's annotated real images (:mod:`atomlens.nn.realdata`): ``real`` (a
list of ``{"image": "<x.image.npy>", "annotations": "<x.annotations.json>", "weight": 1.0}``,
as :func:`atomlens.analysis.annotations.export_training_pair` writes them; or in-memory
:class:`~atomlens.nn.realdata.AnnotatedImage` objects through ``train(real_images=...)``),
``real_fraction`` (default 0.3: the chance that a training sample is a window of an annotated
image rather than a simulation), ``real_holdout`` (default 0.2: a strip at the bottom of each
annotated image is never trained on; validation adds ``user_precision``, ``user_recall`` and
``user_f1`` measured on the atoms the user corrected or confirmed there, and their number
``user_n_true`` in ``user_n_images`` images, :func:`atomlens.nn.realdata.evaluate_on_annotations`;
with none the three figures are left out), ``select_by`` ("auto" | "val_f1" | "val_class_f1" |
"user_f1" | "mean_f1" | "val_loss": the metric that picks the best checkpoint; "val_class_f1" is
the mean of the detection F1 and the F1 of each class present, for runs whose aim is dopants and
vacancies; "mean_f1" the mean of the simulated and the user F1; "auto" is "user_f1" when the
held-out strips hold atoms the user corrected or confirmed (what the user asked the model to
get right; ties go to the lower simulated validation loss, then to the earlier step), else
"val_f1" (segmentation) or "val_loss" (CAM)).  The card's ``selection`` and the returned
metrics' ``selection`` (``{"metric", "step", "why"}``) say which evaluation was kept and why;
the log ends with it.  When fine-tuning (``init_from``) with annotated images, the parent
model is evaluated once before the first step (``step`` 0, ``baseline`` true; it is logged,
not saved).  The card lists the images used under ``annotated_images`` (name, sha256 of the
image file, number of atoms, weight).

``sim_pool`` (optional, default 0: an endless stream of new simulations): simulate only this
many images and reuse them with random 90-degree rotations and mirror images (a fixed set, for
machines where simulating is the bottleneck).

``normalisation`` (optional: "clip-zscore", the default, "clip-robust", or "local-contrast", a
name or ``{"method": ..., parameters}``; see :data:`atomlens.nn.norm.NORMALISATION_METHODS`
and :mod:`atomlens.analysis.background`): how images are scaled for the network;
recorded in the card, and a fine-tuned model keeps its parent's unless the recipe names one.

``calibrate_n`` (CAM models, default 25): after training, per-type decision thresholds are
fitted on this many simulated images per variant of the mix, with seeds of their own, and
recorded in the card (:mod:`atomlens.nn.calibrate`); 0 skips it.

``cam_localisation`` (CAM models, optional: ``{"weight": 0.5, "sigma_A": 1.0}``): besides the
image-level loss, ask each present defect type's class activation map to put its mass on that
type's sites, which the simulation knows (:func:`cam_localisation_loss`).  Global average
pooling alone lets a map peak anywhere within the features' receptive field (about 18 Å), and
a heavy adatom's map was found to peak 3-15 Å away from it.  Validation then also reports
``val_cam_within_1A``, the fraction of present types whose map peaks within 1 Å of one of
their sites.

``eval_every_s`` (optional): also evaluate when this many seconds of training have passed since
the last evaluation (live curves at a steady pace whatever the speed of the machine).

The best checkpoint (by ``select_by``) is saved as a bundle in `out_dir` whenever it improves; ``metrics.jsonl`` logs every evaluation;
``resume/`` holds the state for ``resume=True``.  Cancelling (or the time limit) stops after
the current step and keeps the best bundle.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..sim.atoms import CLASSES, DEFECT_TYPES
from .bundle import load_bundle, resolve_bundle, save_bundle
from .data import SimStream, defect_site_maps, make_validation_set, normalisation_spec, normalise
from .models import build_model, count_parameters

__all__ = ["train", "DEFAULTS", "select_device", "CLASS_COLOURS", "BudgetSchedule", "cam_localisation_loss"]

CLASS_COLOURS = {"background": "#000000", "atom": "#50c8ff", "dopant": "#ff5050", "vacancy": "#ffdc00"}

DEFAULTS = {
    "task": "segmentation", "mode": "HAADF", "batch_size": 8, "steps": 2000, "lr": 3e-3,
    "weight_decay": 1e-4, "eval_every": 200, "val_n": 32, "patience": 5, "num_workers": 2,
    "device": "auto", "seed": 0, "time_limit_min": 60, "init_from": None, "loss": "ce+dice",
    "valid_px_size_A": [0.05, 0.4], "match_radius_A": 0.5, "version": "1.0",
}


class BudgetSchedule:
    """One-cycle learning rate over whichever budget runs out first, the steps or the time.

    The shape is the one of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine warm-up from
    ``max_lr / 25`` to ``max_lr`` over the first `pct_start` of the budget, then cosine decay to
    ``max_lr / 25e4``), but its position is ``max(step / total_steps, seconds / time_limit_s)``:
    a run cut short by its time limit (a slow machine, the retrain dialog's minutes) still anneals
    to the end instead of stopping at a high rate, and a resumed run goes on where it was.
    """

    def __init__(self, opt, max_lr: float, total_steps: int, pct_start: float, time_limit_s: float | None = None,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.opt, self.max_lr = opt, float(max_lr)
        self.total = max(1, int(total_steps))
        self.pct = float(min(0.5, max(0.0, pct_start)))
        self.time_limit_s = float(time_limit_s) if time_limit_s and time_limit_s > 0 else None
        self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.progress = 0.0
        self.update(0, 0.0)

    @staticmethod
    def _cos(start: float, end: float, t: float) -> float:
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, t))))

    def lr_at(self, progress: float) -> float:
        """The learning rate at a fraction `progress` of the budget."""
        p = min(1.0, max(0.0, float(progress)))
        if self.pct > 0 and p < self.pct:
            return self._cos(self.initial_lr, self.max_lr, p / self.pct)
        return self._cos(self.max_lr, self.min_lr, (p - self.pct) / (1.0 - self.pct))

    def update(self, step: int, seconds: float) -> float:
        """Set the optimiser's rate for the budget used so far; returns it."""
        p = step / self.total
        if self.time_limit_s:
            p = max(p, seconds / self.time_limit_s)
        self.progress = min(1.0, p)
        lr = self.lr_at(self.progress)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def get_last_lr(self) -> list[float]:
        return [self.opt.param_groups[0]["lr"]]


def select_device(pref: str = "auto") -> str:
    """'cuda' if available, then Apple 'mps', else 'cpu'; an explicit choice is checked."""
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA GPU is available")
    if pref == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("MPS was requested but is not available")
    return pref


def _dice_ce(logits, target, n_classes, weight=None):
    ce = F.cross_entropy(logits.float(), target, weight=weight)
    p = logits.float().softmax(1)
    onehot = F.one_hot(target, n_classes).permute(0, 3, 1, 2).float()
    inter = (p * onehot).sum((0, 2, 3))
    denom = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return ce + dice[1:].mean()


def _focal(logits, target, gamma=2.0, weight=None):
    """Focal loss (Lin et al. 2017); `weight` (per class) plays the role of its alpha."""
    logp = F.log_softmax(logits.float(), 1)
    lp = logp.gather(1, target[:, None])[:, 0]
    loss = -(1 - lp.exp()) ** gamma * lp
    if weight is not None:
        loss = loss * weight[target]
    return loss.mean()


def cam_localisation_loss(maps, sites, labels):
    """Cross-entropy between each present defect type's class activation map, as a spatial
    softmax, and where that type's sites are.

    maps : (N, K, h, w) class activation maps at the feature resolution.
    sites : (N, K, h, w) site maps (:func:`atomlens.nn.data.defect_site_maps`), any scale.
    labels : (N, K) multi-hot image-level types.
    Averaged over the (image, type) pairs that are present and have sites; 0 when none.
    """
    mass = sites.flatten(2).float()
    total = mass.sum(-1)
    use = (total > 0) & (labels > 0)
    if not bool(use.any()):
        return maps.sum() * 0.0
    logp = F.log_softmax(maps.flatten(2).float(), -1)
    ce = -(mass / total.clamp_min(1e-12)[..., None] * logp).sum(-1)
    return ce[use].mean()


def _loc_spec(recipe) -> dict | None:
    spec = recipe.get("cam_localisation")
    if recipe["task"] != "cam" or not spec or float(spec.get("weight", 0)) <= 0:
        return None
    return {"weight": float(spec["weight"]), "sigma_A": float(spec.get("sigma_A", 1.0))}


def _loss(recipe, logits, target, maps=None, sites=None):
    if recipe["task"] == "cam":
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        loc = _loc_spec(recipe)
        if loc and maps is not None and sites is not None:
            loss = loss + loc["weight"] * cam_localisation_loss(maps, sites, target)
        return loss
    w = recipe.get("class_weights")
    w = torch.as_tensor(w, dtype=torch.float32, device=logits.device) if w else None
    if recipe["loss"] == "focal":
        return _focal(logits, target, weight=w)
    return _dice_ce(logits, target, logits.shape[1], w)


def apply_profile(recipe: dict, device: str) -> dict:
    """`recipe` with the fields of its ``profiles[device]`` applied (and ``profile`` set to
    the device's name when there was one)."""
    prof = (recipe.get("profiles") or {}).get(device)
    if not prof:
        return recipe
    return {**recipe, **copy.deepcopy(prof), "profile": device}


def _worker_init(_wid):
    """One BLAS/OpenMP thread per simulation worker (many workers each running a full-size
    thread pool would oversubscribe the CPU), and the garbage collector on (a worker forked
    from the GUI inherits it turned off: :mod:`atomlens.gui.gcguard`)."""
    import gc

    gc.enable()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def _user_validation(model, rec, reals, device) -> dict:
    """user_precision/recall/f1 (and per class) of `model` on the atoms the user corrected or
    confirmed in the held-out strips of `reals` (:func:`~.realdata.evaluate_on_annotations`),
    with their number ``user_n_true`` and that of the images holding them ``user_n_images``."""
    from .realdata import ModelPredictor, evaluate_on_annotations

    card = {"name": rec["name"], "task": "segmentation", "classes": list(CLASSES), "px_size_A": rec["px_size_A"],
            "valid_px_size_A": rec["valid_px_size_A"], "mode": rec["mode"], "normalisation": rec["normalisation"]}
    s = evaluate_on_annotations(ModelPredictor(model, card, device), reals, region="holdout",
                                holdout=rec["real_holdout"])
    out = {"user_n_true": s["n_true"], "user_n_images": s["n_images"]}
    if s["n_true"]:  # no figures without atoms the user corrected or confirmed (never NaN in the logs)
        out.update({"user_precision": s["precision"], "user_recall": s["recall"], "user_f1": s["f1"]})
        out.update({f"user_f1_{k}": v for k, v in s["per_class"].items() if math.isfinite(v)})
    return out


@torch.no_grad()
def _validate(model, recipe, val, device, reals=None) -> dict:
    from ..analysis.atoms import find_atoms
    from ..analysis.metrics import detection_scores

    model.eval()
    losses, f1s, rmses, per = [], [], [], {c: [] for c in CLASSES[1:]}
    cam_hits = []
    for r in val:
        x = torch.from_numpy(normalise(r.image, method=recipe["normalisation"], px_A=r.px_size_A))[None, None].to(device)
        if recipe["task"] == "cam":
            out, maps = model.forward_maps(x)
            y = torch.from_numpy(r.defect_labels[: out.shape[1]].astype(np.float32))[None].to(device)
            loc = _loc_spec(recipe)
            sites = torch.from_numpy(defect_site_maps(r, out.shape[1], model.stride(),
                                                      loc["sigma_A"] if loc else 1.0))[None].to(device)
            losses.append(float(_loss(recipe, out, y, maps, sites)))
            cam_hits += _cam_peak_hits(r, maps[0], y[0], x.shape[-2:])
            continue
        out = model(x)
        y = torch.from_numpy(r.masks.argmax(0).astype(np.int64))[None].to(device)
        losses.append(float(_loss(recipe, out, y)))
        prob = out.float().softmax(1)[0].cpu().numpy()
        atoms = find_atoms(prob, threshold=0.5)
        txy, tcls = r.points_px()
        s = detection_scores(atoms.xy, atoms.cls, txy, tcls, recipe["match_radius_A"] / r.px_size_A)
        f1s.append(s["f1"])
        rmses.append(s["rmse"] * r.px_size_A if s["tp"] else np.nan)
        for c, name in enumerate(CLASSES):
            if c and s["per_class"].get(c, {}).get("n_true", 0):
                per[name].append(s["per_class"][c]["f1"])
    out = {"val_loss": float(np.mean(losses))}
    if cam_hits:
        out["val_cam_within_1A"] = float(np.mean(cam_hits))
    if f1s:
        finite = [r for r in rmses if np.isfinite(r)]
        out.update({"val_f1": float(np.mean(f1s)), "val_rmse_A": float(np.mean(finite)) if finite else float("nan")})
        out.update({f"val_f1_{k}": float(np.mean(v)) for k, v in per.items() if v})
        # detection and classification together: the mean of the detection F1 and the F1 of
        # each class the validation set contains (select_by "val_class_f1")
        out["val_class_f1"] = float(np.mean([out["val_f1"]] + [out[f"val_f1_{k}"] for k, v in per.items() if v]))
    if reals and recipe.get("real_holdout", 0) > 0:
        out.update(_user_validation(model, recipe, reals, device))
        if "val_f1" in out and "user_f1" in out:
            out["mean_f1"] = 0.5 * (out["val_f1"] + out["user_f1"])
    model.train()
    return out


def _cam_peak_hits(r, maps, labels, shape) -> list:
    """For each defect type present in SimResult `r` that has labelled sites: is the peak of
    its map (upsampled to the image, as :meth:`GapCNN.cam` does) within 1 Å of one of them?"""
    up = F.interpolate(maps[None].float(), size=tuple(shape), mode="bilinear", align_corners=False)[0].cpu().numpy()
    hits = []
    for k in np.flatnonzero(labels.cpu().numpy() > 0):
        sel = np.asarray(r.atoms.defect) == k
        if k == 0 or not sel.any():
            continue
        py, px = np.unravel_index(np.argmax(up[k]), up[k].shape)
        xy = r.atoms.xy[sel] / r.px_size_A
        hits.append(bool(np.min(np.hypot(xy[:, 0] - px, xy[:, 1] - py)) * r.px_size_A <= 1.0))
    return hits


def _card(recipe, model, metrics, device, seconds, steps_done, parent, reals=None, selection=None) -> dict:
    task = recipe["task"]
    card = {
        "name": recipe["name"], "version": recipe["version"], "task": task,
        "architecture": recipe["architecture"],
        "classes": list(DEFECT_TYPES if task == "cam" else CLASSES),
        "colours": CLASS_COLOURS if task != "cam" else {},
        "normalisation": recipe["normalisation"],
        "px_size_A": recipe["px_size_A"], "valid_px_size_A": recipe["valid_px_size_A"],
        "mode": recipe["mode"], "recipe": recipe, "seed": recipe["seed"],
        "training": {"steps": steps_done, "seconds": round(seconds, 1), "device": device,
                     "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                     "date": time.strftime("%Y-%m-%d"), "parameters": count_parameters(model)},
        "validation": metrics, "parent": parent,
    }
    if reals:
        card["annotated_images"] = [r.card_entry() for r in reals]
    if selection:
        card["selection"] = selection
    return card


#: on_metrics gets {"step", "train_loss"} every this many steps between evaluations.
METRICS_EVERY = 25


def _select_key(rec, reals, n_user: int = 0) -> str:
    """The metric that picks the best checkpoint (see the module notes); `n_user` is the
    number of atoms the user corrected or confirmed in the held-out strips."""
    key = rec.get("select_by") or "auto"
    held = bool(reals) and rec.get("real_holdout", 0) > 0
    if key == "auto":
        if rec["task"] == "cam":
            return "val_loss"
        return "user_f1" if held and n_user > 0 else "val_f1"
    allowed = {"val_f1", "val_class_f1", "val_loss"} | ({"user_f1", "mean_f1"} if held else set())
    if rec["task"] == "cam":
        allowed = {"val_loss"}
    if key not in allowed:
        raise ValueError(f"select_by {key!r} is not available for this recipe; use one of {sorted(allowed)} or 'auto'")
    if key in ("user_f1", "mean_f1") and n_user == 0:
        raise ValueError(f"select_by {key!r} needs atoms you corrected or confirmed in the held-out strips of the "
                         "annotated images, and there are none; use 'auto' or a simulated metric")
    return key


def _rank(m: dict, key: str) -> tuple:
    """What the best checkpoint maximises: the metric (the loss negated); for the user's F1,
    ties go to the lower simulated validation loss (and then, by strict comparison, to the
    earlier step)."""
    if key == "val_loss":
        return (-float(m["val_loss"]),)
    if key == "user_f1":
        return (float(m["user_f1"]), -float(m.get("val_loss", math.inf)))
    return (float(m[key]),)


_METRIC_WORDS = {"val_f1": "the best atom F1 on the simulated validation set",
                 "val_class_f1": "the best mean of detection and per-class F1 on the simulated validation set",
                 "val_loss": "the lowest simulated validation loss",
                 "mean_f1": "the best mean of the simulated F1 and the F1 on your atoms"}


def _selection(key: str, best_m: dict, evals: list[dict], n_user: int, m_user: int, why_not_user: str) -> dict:
    """{"metric", "step", "why"}: which evaluation was kept and why, in words."""
    step = int(best_m["step"])
    if key == "user_f1":
        why = (f"the best F1 on the {n_user} atoms you corrected or confirmed in the held-out strips "
               f"({m_user} image{'s' if m_user != 1 else ''}): {best_m['user_f1']:.3f}")
        tied = [int(e["step"]) for e in evals if e is not best_m and e.get("user_f1") == best_m["user_f1"]]
        if tied:
            lower = all(e.get("val_loss", math.inf) > best_m.get("val_loss", math.inf)
                        for e in evals if int(e["step"]) in tied)
            why += (f", tied with step{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}; kept for "
                    + ("its lower simulated validation loss" if lower else "being the earliest"))
    else:
        v = best_m.get(key)
        why = _METRIC_WORDS.get(key, key) + (f" ({v:.4g})" if isinstance(v, float) else "") + why_not_user
    return {"metric": key, "step": step, "why": why}


def train(recipe: dict, out_dir, *, progress=None, cancel=None, resume: bool = False, log=print,
          overrides: dict | None = None, real_images=None, on_metrics=None) -> dict:
    """Train the model a recipe describes; returns the best validation metrics.

    Parameters
    ----------
    recipe : dict
        See the module docstring.
    out_dir : path
        The bundle, ``metrics.jsonl`` and ``resume/`` go here.
    progress : callable(fraction, message), optional
        Called after each step.
    cancel : object with ``is_set()``, optional
        Stops training after the current step, keeping the best bundle so far.
    resume : bool
        Continue from the state in ``out_dir/resume``.
    log : callable(str)
    overrides : dict, optional
        Replace recipe fields after the device profile is applied (the command line's --steps).
    real_images : list of :class:`~atomlens.nn.realdata.AnnotatedImage`, optional
        Annotated real images to mix in, besides the recipe's ``real`` entries.
    on_metrics : callable(dict), optional
        Called in this thread (never from a DataLoader worker) after each evaluation with the
        metrics logged to ``metrics.jsonl``, and every :data:`METRICS_EVERY` steps in between
        with ``{"step", "train_loss"}`` (the mean loss since the last call): for live curves.
    """
    rec = {**DEFAULTS, **copy.deepcopy(recipe)}
    if isinstance(rec.get("sim"), str):
        rec["sim"] = json.loads(Path(rec["sim"]).read_text())
    for key in ("name", "sim", "architecture", "px_size_A"):
        if key not in rec:
            raise ValueError(f"the recipe lacks '{key}'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(rec["seed"])
    device = select_device(rec["device"])
    rec = apply_profile(rec, device)
    rec.update({k: v for k, v in (overrides or {}).items() if v is not None})
    parent = None
    if rec["init_from"]:
        bpath = resolve_bundle(rec["init_from"])
        model, pcard = load_bundle(bpath, device)
        rec["architecture"] = pcard["architecture"]
        parent = {"name": pcard["name"], "version": pcard["version"], "weights_sha256": pcard["weights_sha256"]}
        # the parent's scaling unless the recipe asks for another (the model then adapts to it)
        rec["normalisation"] = normalisation_spec(rec.get("normalisation") or pcard.get("normalisation"))
        model.train()
    else:
        model = build_model(rec["architecture"]).to(device)
        rec["normalisation"] = normalisation_spec(rec.get("normalisation"))
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    from .realdata import load_real_items

    reals = load_real_items(rec.get("real")) + load_real_items(real_images)
    if rec.get("real"):  # the card keeps the paths; images given as objects are listed in annotated_images
        rec["real"] = [e for e in rec["real"] if isinstance(e, dict)]
    if reals:
        if rec["task"] != "segmentation":
            raise ValueError("annotated images can only train atom-finding (segmentation) models, "
                             f"not a {rec['task']!r} model")
        rec.setdefault("real_fraction", 0.3)
        rec.setdefault("real_holdout", 0.2)
        rec["real_fraction"], rec["real_holdout"] = float(rec["real_fraction"]), float(rec["real_holdout"])
        if not 0.0 <= rec["real_fraction"] <= 1.0:
            raise ValueError(f"real_fraction must be between 0 and 1, got {rec['real_fraction']}")
        if not 0.0 <= rec["real_holdout"] < 1.0:
            raise ValueError(f"real_holdout must be in [0, 1), got {rec['real_holdout']}")
    n_user = m_user = 0
    why_not_user = ""
    if reals and rec["real_holdout"] > 0:
        from .realdata import count_confirmed

        n_user, m_user = count_confirmed(reals, "holdout", rec["real_holdout"])
        if n_user == 0:
            why_not_user = ("; none of the atoms in the held-out strips was corrected or confirmed by you, so the "
                            "F1 on your atoms cannot choose")
    metric_key = _select_key(rec, reals, n_user)
    if reals:
        log(f"checkpoint chosen by {metric_key}" + (f" on {n_user} atoms you corrected or confirmed in the held-out "
                                                    f"strips ({m_user} images)" if n_user else why_not_user))
    opt = torch.optim.AdamW(model.parameters(), lr=rec["lr"], weight_decay=rec["weight_decay"])
    total = max(2, rec["steps"])
    # warm-up: 15 % (5 % when fine-tuning) of the budget
    sched = BudgetSchedule(opt, rec["lr"], total, 0.15 if not parent else 0.05,
                           time_limit_s=float(rec["time_limit_min"]) * 60.0)
    state_dir = out / "resume"
    step, best, bad_evals, elapsed0 = 0, None, 0, 0.0
    if resume and (state_dir / "state.json").is_file():
        st = json.loads((state_dir / "state.json").read_text())
        from safetensors.torch import load_file

        model.load_state_dict(load_file(state_dir / "model.safetensors"))
        opt.load_state_dict(torch.load(state_dir / "optim.pt", weights_only=True))  # our own file
        step, best, bad_evals, elapsed0 = st["step"], st["best"], st["bad_evals"], st["seconds"]
        if isinstance(best, (int, float)):  # a state saved before ranks were tuples
            best = (-best,) if metric_key == "val_loss" else (best,)
        elif best is not None:
            best = tuple(best)
        sched.update(step, elapsed0)  # the schedule is a function of the budget used, so it goes on from here
        log(f"resumed at step {step}")
    n_types = len(DEFECT_TYPES)
    loc = _loc_spec(rec)
    stream = SimStream(rec["sim"], rec["task"], seed=rec["seed"] * 10_000_000 + step * rec["batch_size"],
                       n_types=n_types, pool=int(rec.get("sim_pool") or 0), norm=rec["normalisation"],
                       loc_stride=model.stride() if loc else 0, loc_sigma_A=loc["sigma_A"] if loc else 1.0)
    sim_cfg = stream.cfg  # the recipe's simulation, parsed once
    if reals:
        from .realdata import MixedStream, RealPatches

        labels = sim_cfg.labels or {}
        patches = RealPatches(reals, rec["px_size_A"], sim_cfg.shape,
                              holdout=rec["real_holdout"], label_radius_A=float(labels.get("radius_A", 0.5)),
                              model_mode=rec.get("mode"), norm=rec["normalisation"])
        stream = MixedStream(stream, patches, rec["real_fraction"], seed=rec["seed"] * 10_000_000 + step)
        log(f"{len(reals)} annotated image(s), {sum(r.n_atoms for r in reals)} atoms; "
            f"{rec['real_fraction']:.0%} of the samples from them, {rec['real_holdout']:.0%} of their rows held out")
    loader = torch.utils.data.DataLoader(stream, batch_size=rec["batch_size"], num_workers=rec["num_workers"],
                                         persistent_workers=rec["num_workers"] > 0,
                                         worker_init_fn=_worker_init if rec["num_workers"] > 0 else None,
                                         pin_memory=device == "cuda",
                                         prefetch_factor=4 if rec["num_workers"] > 0 else None,
                                         multiprocessing_context="fork" if rec["num_workers"] > 0 else None)
    val = make_validation_set(rec["sim"], rec["val_n"], rec["task"], n_types=n_types)
    use_amp = device == "cuda"
    t0 = time.time() - elapsed0
    logf = open(out / "metrics.jsonl", "a", encoding="utf-8")
    best_metrics = {}
    evals = []  # the metrics of each evaluation (not the baseline), for the selection's reasons

    def emit(m):
        if on_metrics is not None:
            on_metrics(dict(m))

    try:
        if reals and parent is not None and step == 0 and rec.get("real_holdout", 0) > 0:
            m = _validate(model, rec, val, device, reals)
            m.update({"step": 0, "train_loss": float("nan"), "seconds": round(time.time() - t0, 1),
                      "lr": sched.get_last_lr()[0], "baseline": True})
            logf.write(json.dumps(m) + "\n")
            logf.flush()
            log("before fine-tuning: " + " ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))
            emit(m)
        it = iter(loader)
        model.train()
        running, recent = [], []
        last_eval = time.time()
        while step < rec["steps"]:
            x, y, *sites = (t.to(device, non_blocking=True) for t in next(it))
            if device == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                if sites:  # CAM localisation: the maps at the feature resolution are needed too
                    logits, maps = model.forward_maps(x)
                    loss = _loss(rec, logits, y, maps, sites[0])
                else:
                    logits = model(x)
                    loss = _loss(rec, logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running.append(loss.item())
            recent.append(running[-1])
            elapsed = time.time() - t0
            sched.update(step, elapsed)
            stop = (cancel is not None and cancel.is_set()) or elapsed > rec["time_limit_min"] * 60
            evaluate = (step % rec["eval_every"] == 0 or step == rec["steps"] or stop
                        or (rec.get("eval_every_s") and time.time() - last_eval >= float(rec["eval_every_s"])))
            if step % METRICS_EVERY == 0 and not evaluate:
                emit({"step": step, "train_loss": float(np.mean(recent))})
                recent = []
            if evaluate:
                recent = []
                m = _validate(model, rec, val, device, reals)
                m.update({"step": step, "train_loss": float(np.mean(running)), "seconds": round(elapsed, 1),
                          "lr": sched.get_last_lr()[0]})
                running = []
                logf.write(json.dumps(m) + "\n")
                logf.flush()
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
                emit(m)
                evals.append(m)
                rank = _rank(m, metric_key)
                if best is None or rank > best:
                    best, bad_evals, best_metrics = rank, 0, m
                    sel = _selection(metric_key, m, [m], n_user, m_user, why_not_user)
                    save_bundle(model, _card(rec, model, m, device, elapsed, step, parent, reals, sel), out)
                else:
                    bad_evals += 1
                _save_resume(state_dir, model, opt, step, best, bad_evals, elapsed)
                last_eval = time.time()
                if bad_evals >= rec["patience"]:
                    log(f"early stop: no improvement in {bad_evals} evaluations")
                    break
            if progress:
                progress(step / rec["steps"], f"step {step}/{rec['steps']}, loss {running[-1] if running else 0:.3f}")
            if stop:
                log("stopped (cancelled or time limit); the best bundle is kept")
                break
    finally:
        logf.close()
        del loader
    if best_metrics:
        sel = _selection(metric_key, best_metrics, evals, n_user, m_user, why_not_user)
        best_metrics = {**best_metrics, "selection": sel}
        log(f"kept step {sel['step']}: {sel['why']}")
    n_cal = int(rec.get("calibrate_n", 25) or 0)
    if rec["task"] == "cam" and n_cal > 0 and (out / "card.json").is_file() and not (cancel is not None
                                                                                    and cancel.is_set()):
        from .calibrate import calibrate_cam_bundle

        cal = calibrate_cam_bundle(out, rec, n_per_variant=n_cal, size=int(sim_cfg.shape[0]), log=log)
        best_metrics = {**best_metrics, "calibrated_type_accuracy": cal["type_accuracy"]}
    return best_metrics


def _save_resume(d: Path, model, opt, step, best, bad, seconds):
    """What resume needs; the learning rate follows from the step and the seconds (BudgetSchedule)."""
    from safetensors.torch import save_file

    d.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, d / "model.safetensors.tmp")
    torch.save(opt.state_dict(), d / "optim.pt.tmp")
    (d / "state.json.tmp").write_text(json.dumps({"step": step, "best": best, "bad_evals": bad, "seconds": seconds},
                                                 default=float))
    for n in ("model.safetensors", "optim.pt", "state.json"):
        (d / f"{n}.tmp").replace(d / n)

