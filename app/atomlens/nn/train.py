"""``train(recipe, out_dir)``: train (or fine-tune) a model bundle on simulated data, and on
the user's annotated real images when given.

The recipe (a dict as JSON gives it, or a :class:`~atomlens.nn.recipe.Recipe`) says what to
train; its fields, their units and defaults are documented on :class:`~atomlens.nn.recipe.Recipe`
(the bundled models' recipes are in ``resources/recipes/``).

:func:`train` runs these steps, each a helper of its own: the recipe's checks
(:func:`_checked_recipe`), the device and its profile (:func:`_setup_device`), the model, new or
the parent's when fine-tuning (:func:`_init_model`), the annotated images to mix in
(:func:`_mix_real`), the metric that picks the best checkpoint (:func:`_plan_selection`), the
optimiser and schedule (:func:`_optimiser`), resuming (:func:`_resume`), the data
(:func:`_training_stream`, :func:`_loader`), the loop (:class:`_Run`: one optimiser step at a
time, :func:`_train_step`; evaluations and checkpoints) and the CAM calibration
(:func:`_calibrate`).

The best checkpoint (by ``select_by``) is saved as a bundle in `out_dir` whenever it
improves; ``metrics.jsonl`` logs every evaluation; ``resume/`` holds the state for
``resume=True``.  Cancelling (or the time limit) stops after the current step and keeps the
best bundle.  The card's and the returned metrics' ``selection`` (``{"metric", "step",
"why"}``) say which evaluation was kept and why; the log ends with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..analysis.colours import CLASS_COLOURS
from ..sim.atoms import CLASSES, DEFECT_TYPES
from .bundle import load_bundle, resolve_bundle, save_bundle
from .data import SimStream, defect_site_maps, make_validation_set, normalisation_spec, normalise
from .device import autocast, channels_last, select_device
from .evaluate import evaluate_on_annotations
from .infer import Predictor
from .models import build_model, count_parameters
from .realdata import MixedStream, RealPatches, count_confirmed, load_real_items
from .recipe import DEFAULTS, Recipe, apply_profile

__all__ = ["train", "DEFAULTS", "Recipe", "apply_profile", "select_device", "CLASS_COLOURS", "BudgetSchedule",
           "cam_localisation_loss"]



class BudgetSchedule:
    """One-cycle learning rate over whichever budget runs out first, the steps or the time.

    The shape is the one of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine warm-up from
    ``max_lr / 25`` to ``max_lr`` over the first `pct_start` of the budget, then cosine decay to
    ``max_lr / 25e4``), but its position is ``max(step / total_steps, seconds / time_limit_s)``:
    a run cut short by its time limit (a slow machine, the retrain dialog's minutes) still anneals
    to the end instead of stopping at a high rate, and a resumed run goes on where it was.

    Parameters
    ----------
    opt : torch.optim.Optimizer
        Its groups' ``lr`` is set by :meth:`update`.
    max_lr : float
        The peak learning rate.
    total_steps : int
        The step budget.
    pct_start : float
        The warm-up's share of the budget (clamped to [0, 0.5]).
    time_limit_s : float, optional
        The time budget (s); None or <= 0: steps only.
    div_factor, final_div_factor : float
        The start is ``max_lr / div_factor``, the end that divided by ``final_div_factor``.
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
        """The learning rate at a fraction of the budget.

        Parameters
        ----------
        progress : float
            The fraction of the budget used, clamped to [0, 1].

        Returns
        -------
        float
        """
        p = min(1.0, max(0.0, float(progress)))
        if self.pct > 0 and p < self.pct:
            return self._cos(self.initial_lr, self.max_lr, p / self.pct)
        return self._cos(self.max_lr, self.min_lr, (p - self.pct) / (1.0 - self.pct))

    def update(self, step: int, seconds: float) -> float:
        """Set the optimiser's rate for the budget used so far.

        Parameters
        ----------
        step : int
            Steps done.
        seconds : float
            Training time so far (s).

        Returns
        -------
        float
            The learning rate set (:attr:`progress` is the fraction of the budget used).
        """
        p = step / self.total
        if self.time_limit_s:
            p = max(p, seconds / self.time_limit_s)
        self.progress = min(1.0, p)
        lr = self.lr_at(self.progress)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def get_last_lr(self) -> list[float]:
        """The optimiser's current learning rate, as a one-element list (as torch's schedulers give it)."""
        return [self.opt.param_groups[0]["lr"]]


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

    Parameters
    ----------
    maps : (N, K, h, w) torch.Tensor
        Class activation maps at the feature resolution.
    sites : (N, K, h, w) torch.Tensor
        Site maps (:func:`atomlens.nn.data.defect_site_maps`), any scale.
    labels : (N, K) torch.Tensor
        Multi-hot image-level types.

    Returns
    -------
    torch.Tensor
        Scalar: the mean over the (image, type) pairs that are present and have sites; 0 (with
        a gradient path to `maps`) when there are none.
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
    confirmed in the held-out strips of `reals` (:func:`~.evaluate.evaluate_on_annotations`,
    through :meth:`Predictor.from_model <atomlens.nn.infer.Predictor.from_model>`), with their
    number ``user_n_true`` and that of the images holding them ``user_n_images``."""
    card = {"name": rec["name"], "task": "segmentation", "classes": list(CLASSES), "px_size_A": rec["px_size_A"],
            "valid_px_size_A": rec["valid_px_size_A"], "mode": rec["mode"], "normalisation": rec["normalisation"]}
    s = evaluate_on_annotations(Predictor.from_model(model, card, device), reals, region="holdout",
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
        "mode": recipe["mode"], "recipe": dict(recipe), "seed": recipe["seed"],
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


def train(recipe: dict | Recipe, out_dir, *, progress=None, cancel=None, resume: bool = False, log=print,
          overrides: dict | None = None, real_images=None, on_metrics=None) -> dict:
    """Train the model a recipe describes.

    Parameters
    ----------
    recipe : dict or Recipe
        See :class:`~atomlens.nn.recipe.Recipe` (a dict is read with
        :meth:`Recipe.from_dict <atomlens.nn.recipe.Recipe.from_dict>`; neither is changed).
    out_dir : path
        The bundle, ``metrics.jsonl`` and ``resume/`` go here (created if needed).
    progress : callable(fraction, message), optional
        Called after each step.
    cancel : object with ``is_set()``, optional
        Stops training after the current step, keeping the best bundle so far.
    resume : bool
        Continue from the state in ``out_dir/resume``.
    log : callable(str)
        Receives the log lines (each evaluation, the choice of the checkpoint, notes).
    overrides : dict, optional
        Replace recipe fields after the device profile is applied (the command line's
        --steps); None values are ignored.
    real_images : list of :class:`~atomlens.nn.realdata.AnnotatedImage`, optional
        Annotated real images to mix in, besides the recipe's ``real`` entries.
    on_metrics : callable(dict), optional
        Called in this thread (never from a DataLoader worker) after each evaluation with the
        metrics logged to ``metrics.jsonl``, and every :data:`METRICS_EVERY` steps in between
        with ``{"step", "train_loss"}`` (the mean loss since the last call): for live curves.

    Returns
    -------
    dict
        The metrics of the evaluation kept (``step``, ``val_loss``, ``train_loss``,
        ``seconds``, ``lr``; for segmentation ``val_f1``, ``val_rmse_A`` (Å), ``val_f1_<class>``
        and ``val_class_f1``; with annotated images ``user_*`` and ``mean_f1``; for CAM models
        ``val_cam_within_1A`` with localisation and ``calibrated_type_accuracy`` after
        calibration) and ``selection``; empty when nothing was evaluated.

    Raises
    ------
    ValueError
        For a recipe that does not pass its checks (a missing field, an unknown normalisation,
        annotated images for a CAM model, a ``select_by`` not available, ...).
    RuntimeError
        When the recipe's device is not available.
    """
    rec = _checked_recipe(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(rec.seed)
    device, rec = _setup_device(rec, overrides)
    model, rec, parent = _init_model(rec, device)
    reals, rec = _mix_real(rec, real_images)
    sel = _plan_selection(rec, reals, log)
    opt, sched = _optimiser(model, rec, fine_tune=parent is not None)
    state = _resume(out / "resume", model, opt, sched, sel.key, log) if resume else _State()
    stream, sim_cfg = _training_stream(rec, model, reals, state.step, log)
    loader = _loader(stream, rec, device)
    val = make_validation_set(rec.sim, rec.val_n, rec.task, n_types=len(DEFECT_TYPES))
    run = _Run(rec, model, opt, sched, device, out, val, reals, parent, sel, state, log, on_metrics)
    try:
        run.loop(loader, progress, cancel)
    finally:
        run.logf.close()
        del loader
    best_metrics = run.kept()
    return _calibrate(out, rec, best_metrics, int(sim_cfg.shape[0]), cancel, log)


def _checked_recipe(recipe) -> Recipe:
    """The recipe's checks: a :class:`~atomlens.nn.recipe.Recipe` of its own (defaults filled
    in, ``sim`` read from its file, the required fields there).

    Parameters
    ----------
    recipe : dict or Recipe
        Copied, never changed.

    Returns
    -------
    Recipe
    """
    return Recipe.from_dict(recipe.to_dict() if isinstance(recipe, Recipe) else recipe)


def _setup_device(rec: Recipe, overrides: dict | None) -> tuple[str, Recipe]:
    """The device set-up: the device the recipe asks for, its ``profiles`` entry applied, then
    the `overrides` (those that are not None).

    Returns
    -------
    device : str
    rec : Recipe
        As it runs on `device`.
    """
    device = select_device(rec.device)
    rec = rec.with_profile(device)
    rec = rec.updated({k: v for k, v in (overrides or {}).items() if v is not None})
    return device, rec


def _init_model(rec: Recipe, device: str) -> tuple[torch.nn.Module, Recipe, dict | None]:
    """The model to train: the parent bundle's when fine-tuning (``init_from``), else a new
    one from ``architecture``; in training mode, on `device`, in its preferred layout.

    Returns
    -------
    model : torch.nn.Module
    rec : Recipe
        With ``normalisation`` completed (:func:`~atomlens.nn.data.normalisation_spec`: the
        recipe's, else the parent's, else the default) and, when fine-tuning, the parent's
        ``architecture``.
    parent : dict or None
        ``{"name", "version", "weights_sha256"}`` of the parent, for the card.

    Raises
    ------
    ValueError
        For an unknown normalisation.
    """
    parent = None
    if rec.init_from:
        model, pcard = load_bundle(resolve_bundle(rec.init_from), device)
        rec = rec.updated({"architecture": pcard["architecture"]})
        parent = {"name": pcard["name"], "version": pcard["version"], "weights_sha256": pcard["weights_sha256"]}
        # the parent's scaling unless the recipe asks for another (the model then adapts to it)
        rec = rec.updated({"normalisation": normalisation_spec(rec.normalisation or pcard.get("normalisation"))})
        model.train()
    else:
        model = build_model(rec.architecture).to(device)
        rec = rec.updated({"normalisation": normalisation_spec(rec.normalisation)})
    return channels_last(model, device), rec, parent


def _mix_real(rec: Recipe, real_images) -> tuple[list, Recipe]:
    """The annotated real images to mix in: the recipe's ``real`` entries, then
    `real_images`.

    Returns
    -------
    reals : list of AnnotatedImage
    rec : Recipe
        Whose ``real`` keeps only the entries given as paths (the card lists all images under
        ``annotated_images``) and, with images, checked and completed
        (:meth:`Recipe.for_real_images <atomlens.nn.recipe.Recipe.for_real_images>`).
    """
    reals = load_real_items(rec.real) + load_real_items(real_images)
    if rec.real:
        rec = rec.updated({"real": [e for e in rec.real if isinstance(e, dict)]})
    if reals:
        rec = rec.for_real_images()
    return reals, rec


@dataclasses.dataclass
class _Selection:
    """How the best checkpoint is chosen: the metric (:func:`_select_key`), the atoms the user
    corrected or confirmed in the held-out strips (`n_user`, in `m_user` images), and why the
    user's F1 cannot choose when there are none (`why_not_user`, for the log and the card)."""

    key: str
    n_user: int = 0
    m_user: int = 0
    why_not_user: str = ""


def _plan_selection(rec: Recipe, reals: list, log) -> _Selection:
    """The metric that will pick the best checkpoint (logged when annotated images are mixed in).

    Raises
    ------
    ValueError
        For a ``select_by`` not available to this recipe (:func:`_select_key`).
    """
    n_user = m_user = 0
    why_not_user = ""
    if reals and rec.real_holdout > 0:
        n_user, m_user = count_confirmed(reals, "holdout", rec.real_holdout)
        if n_user == 0:
            why_not_user = ("; none of the atoms in the held-out strips was corrected or confirmed by you, so the "
                            "F1 on your atoms cannot choose")
    key = _select_key(rec, reals, n_user)
    if reals:
        log(f"checkpoint chosen by {key}" + (f" on {n_user} atoms you corrected or confirmed in the held-out "
                                             f"strips ({m_user} images)" if n_user else why_not_user))
    return _Selection(key, n_user, m_user, why_not_user)


def _optimiser(model, rec: Recipe, fine_tune: bool) -> tuple[torch.optim.Optimizer, BudgetSchedule]:
    """AdamW and its one-cycle schedule over the recipe's budget (steps or time); the warm-up
    is 15 % of the budget, 5 % when fine-tuning."""
    opt = torch.optim.AdamW(model.parameters(), lr=rec.lr, weight_decay=rec.weight_decay)
    sched = BudgetSchedule(opt, rec.lr, max(2, rec.steps), 0.15 if not fine_tune else 0.05,
                           time_limit_s=float(rec.time_limit_min) * 60.0)
    return opt, sched


@dataclasses.dataclass
class _State:
    """Where a run stands, as resume restores it: the step, the rank of the best evaluation
    (:func:`_rank`), the evaluations since it last improved and the training time (s)."""

    step: int = 0
    best: tuple | None = None
    bad_evals: int = 0
    seconds: float = 0.0


def _resume(state_dir: Path, model, opt, sched: BudgetSchedule, metric_key: str, log) -> _State:
    """Resume: the model, the optimiser and the :class:`_State` saved in `state_dir` by
    :func:`_save_resume`, the schedule moved on to where it was; a fresh state when there is
    none."""
    if not (state_dir / "state.json").is_file():
        return _State()
    st = json.loads((state_dir / "state.json").read_text())
    from safetensors.torch import load_file

    model.load_state_dict(load_file(state_dir / "model.safetensors"))
    opt.load_state_dict(torch.load(state_dir / "optim.pt", weights_only=True))  # our own file
    best = st["best"]
    if isinstance(best, (int, float)):  # a state saved before ranks were tuples
        best = (-best,) if metric_key == "val_loss" else (best,)
    elif best is not None:
        best = tuple(best)
    state = _State(st["step"], best, st["bad_evals"], st["seconds"])
    sched.update(state.step, state.seconds)  # the schedule is a function of the budget used, so it goes on from here
    log(f"resumed at step {state.step}")
    return state


def _training_stream(rec: Recipe, model, reals: list, step: int, log):
    """The training samples: the simulation stream (seeded for `step`, so a resumed run draws
    new ones), mixed with windows of the annotated images when there are any.

    Returns
    -------
    stream : SimStream or MixedStream
    sim_cfg
        The recipe's simulation, parsed (``shape`` is the patch size, px).
    """
    loc = _loc_spec(rec)
    stream = SimStream(rec.sim, rec.task, seed=rec.seed * 10_000_000 + step * rec.batch_size,
                       n_types=len(DEFECT_TYPES), pool=int(rec.sim_pool or 0), norm=rec.normalisation,
                       loc_stride=model.stride() if loc else 0, loc_sigma_A=loc["sigma_A"] if loc else 1.0)
    sim_cfg = stream.cfg  # the recipe's simulation, parsed once
    if reals:
        labels = sim_cfg.labels or {}
        patches = RealPatches(reals, rec.px_size_A, sim_cfg.shape,
                              holdout=rec.real_holdout, label_radius_A=float(labels.get("radius_A", 0.5)),
                              model_mode=rec.mode, norm=rec.normalisation)
        stream = MixedStream(stream, patches, rec.real_fraction, seed=rec.seed * 10_000_000 + step)
        log(f"{len(reals)} annotated image(s), {sum(r.n_atoms for r in reals)} atoms; "
            f"{rec.real_fraction:.0%} of the samples from them, {rec.real_holdout:.0%} of their rows held out")
    return stream, sim_cfg


def _loader(stream, rec: Recipe, device: str) -> torch.utils.data.DataLoader:
    """The loader of batches: ``num_workers`` forked simulation workers (each with one BLAS
    thread, :func:`_worker_init`), or none."""
    workers = rec.num_workers
    return torch.utils.data.DataLoader(stream, batch_size=rec.batch_size, num_workers=workers,
                                       persistent_workers=workers > 0,
                                       worker_init_fn=_worker_init if workers > 0 else None,
                                       pin_memory=device == "cuda",
                                       prefetch_factor=4 if workers > 0 else None,
                                       multiprocessing_context="fork" if workers > 0 else None)


def _train_step(model, opt, rec: Recipe, batch, device: str) -> float:
    """One optimiser step on `batch` ((x, y) or (x, y, sites) for CAM localisation), under bf16
    autocast on CUDA; returns the loss."""
    x, y, *sites = (t.to(device, non_blocking=True) for t in batch)
    x = channels_last(x, device)
    with autocast(device, device == "cuda"):
        if sites:  # CAM localisation: the maps at the feature resolution are needed too
            logits, maps = model.forward_maps(x)
            loss = _loss(rec, logits, y, maps, sites[0])
        else:
            logits = model(x)
            loss = _loss(rec, logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


class _Run:
    """The loop of one training run: steps, evaluations (logged to ``metrics.jsonl`` and
    passed to `on_metrics`), checkpoints and what resume needs.  Opens ``metrics.jsonl``
    (:attr:`logf`, for appending); the caller closes it."""

    def __init__(self, rec: Recipe, model, opt, sched, device: str, out: Path, val, reals, parent, sel: _Selection,
                 state: _State, log, on_metrics):
        self.rec, self.model, self.opt, self.sched, self.device, self.out = rec, model, opt, sched, device, out
        self.val, self.reals, self.parent, self.sel, self.state, self.log = val, reals, parent, sel, state, log
        self.on_metrics = on_metrics
        self.t0 = time.time() - state.seconds
        self.logf = open(out / "metrics.jsonl", "a", encoding="utf-8")
        self.best_metrics = {}
        self.evals = []  # the metrics of each evaluation (not the baseline), for the selection's reasons

    def emit(self, m: dict) -> None:
        """Pass a copy of `m` to `on_metrics`."""
        if self.on_metrics is not None:
            self.on_metrics(dict(m))

    def _record(self, m: dict) -> None:
        self.logf.write(json.dumps(m) + "\n")
        self.logf.flush()

    def baseline(self) -> None:
        """Evaluate the parent before the first step (``step`` 0, ``baseline`` true): logged, not saved."""
        m = _validate(self.model, self.rec, self.val, self.device, self.reals)
        m.update({"step": 0, "train_loss": float("nan"), "seconds": round(time.time() - self.t0, 1),
                  "lr": self.sched.get_last_lr()[0], "baseline": True})
        self._record(m)
        self.log("before fine-tuning: " + " ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))
        self.emit(m)

    def loop(self, loader, progress, cancel) -> None:
        """Train until the steps, the time or the patience run out, or `cancel` is set."""
        rec, st = self.rec, self.state
        if self.reals and self.parent is not None and st.step == 0 and rec.get("real_holdout", 0) > 0:
            self.baseline()
        it = iter(loader)
        self.model.train()
        running, recent = [], []
        last_eval = time.time()
        while st.step < rec.steps:
            loss = _train_step(self.model, self.opt, rec, next(it), self.device)
            st.step += 1
            running.append(loss)
            recent.append(loss)
            elapsed = time.time() - self.t0
            self.sched.update(st.step, elapsed)
            stop = (cancel is not None and cancel.is_set()) or elapsed > rec.time_limit_min * 60
            evaluate = (st.step % rec.eval_every == 0 or st.step == rec.steps or stop
                        or (rec.eval_every_s and time.time() - last_eval >= float(rec.eval_every_s)))
            if st.step % METRICS_EVERY == 0 and not evaluate:
                self.emit({"step": st.step, "train_loss": float(np.mean(recent))})
                recent = []
            if evaluate:
                recent = []
                self.evaluate(running, elapsed)
                running = []
                last_eval = time.time()
                if st.bad_evals >= rec.patience:
                    self.log(f"early stop: no improvement in {st.bad_evals} evaluations")
                    break
            if progress:
                progress(st.step / rec.steps, f"step {st.step}/{rec.steps}, loss {running[-1] if running else 0:.3f}")
            if stop:
                self.log("stopped (cancelled or time limit); the best bundle is kept")
                break

    def evaluate(self, running: list, elapsed: float) -> dict:
        """Validate, log (with the mean of the `running` training losses), then checkpoint."""
        m = _validate(self.model, self.rec, self.val, self.device, self.reals)
        m.update({"step": self.state.step, "train_loss": float(np.mean(running)), "seconds": round(elapsed, 1),
                  "lr": self.sched.get_last_lr()[0]})
        self._record(m)
        self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
        self.emit(m)
        self.evals.append(m)
        self.checkpoint(m, elapsed)
        return m

    def checkpoint(self, m: dict, elapsed: float) -> None:
        """Save the bundle when evaluation `m` is the best so far (else count it against the
        patience), then the state resume needs."""
        st, sel = self.state, self.sel
        rank = _rank(m, sel.key)
        if st.best is None or rank > st.best:
            st.best, st.bad_evals, self.best_metrics = rank, 0, m
            why = _selection(sel.key, m, [m], sel.n_user, sel.m_user, sel.why_not_user)
            save_bundle(self.model, _card(self.rec, self.model, m, self.device, elapsed, st.step, self.parent,
                                          self.reals, why), self.out)
        else:
            st.bad_evals += 1
        _save_resume(self.out / "resume", self.model, self.opt, st.step, st.best, st.bad_evals, elapsed)

    def kept(self) -> dict:
        """The metrics of the evaluation kept, with its ``selection`` (logged); {} with none."""
        if not self.best_metrics:
            return self.best_metrics
        sel = self.sel
        why = _selection(sel.key, self.best_metrics, self.evals, sel.n_user, sel.m_user, sel.why_not_user)
        self.log(f"kept step {why['step']}: {why['why']}")
        return {**self.best_metrics, "selection": why}


def _calibrate(out: Path, rec: Recipe, best_metrics: dict, size: int, cancel, log) -> dict:
    """Calibration: a CAM model's per-type decision thresholds, fitted on ``calibrate_n``
    (default 25) simulated images of `size` px per variant and written to the saved bundle's
    card (:func:`~atomlens.nn.calibrate.calibrate_cam_bundle`); skipped when cancelled or
    nothing was saved.  Returns `best_metrics` with ``calibrated_type_accuracy`` when done."""
    n_cal = int(rec.get("calibrate_n", 25) or 0)
    if rec.task == "cam" and n_cal > 0 and (out / "card.json").is_file() and not (cancel is not None
                                                                                  and cancel.is_set()):
        from .calibrate import calibrate_cam_bundle

        cal = calibrate_cam_bundle(out, rec.to_dict(), n_per_variant=n_cal, size=size, log=log)
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

