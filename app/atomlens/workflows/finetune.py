"""Fine-tuning a model on simulations and the user's annotated images, headless: the recipe the
Retrain dialog's settings make (:func:`build_finetune_recipe`), the job (:class:`TrainingJob`)
and the before/after comparison on the user's corrected atoms (:func:`compare_models`).

The GUI's training manager runs a job on a QThread with :func:`train` and then
:func:`compare_models`; a script does the same in two calls.  :func:`train` and
``AnnotatedImage`` (imported when asked for) are offered here, so that the GUI and the CLI call
this layer only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

__all__ = ["DEFAULT_AMOUNT_KEY", "TrainingJob", "base_recipe", "build_finetune_recipe", "compare_models",
           "load_annotated_image", "other_model", "train", "variant_for"]


def __getattr__(name):
    """``AnnotatedImage`` (:class:`atomlens.nn.realdata.AnnotatedImage`) is imported when first
    asked for: it loads torch, which the GUI's start-up must not wait for."""
    if name == "AnnotatedImage":
        from ..nn.realdata import AnnotatedImage

        return AnnotatedImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(recipe, out_dir, **kwargs):
    """:func:`atomlens.nn.train.train` (imported when called: it loads torch): train or fine-tune
    a bundle from `recipe` into `out_dir`; see there for the keyword arguments.

    Parameters
    ----------
    recipe : dict or atomlens.nn.recipe.Recipe
    out_dir : str or Path
    **kwargs
        ``progress``, ``cancel``, ``log``, ``overrides``, ``real_images``, ``on_metrics``, ``resume``.

    Returns
    -------
    dict
        The best checkpoint's metrics.
    """
    from ..nn.train import train as _train

    return _train(recipe, out_dir, **kwargs)


def base_recipe(card: dict) -> dict:
    """The training recipe of a model, to fine-tune it with.

    Parameters
    ----------
    card : dict
        The model's card.

    Returns
    -------
    dict
        The recipe its card records (with the values it had before a device profile replaced
        them, where its recipe file says), else the bundled recipe for its imaging mode
        (:func:`atomlens.workflows.models.recipe_name_for_mode`) with the card's architecture,
        pixel size and mode.  A deep copy: changing it changes nothing else.
    """
    from ..samples import resource_path

    rec = card.get("recipe")
    if isinstance(rec, dict) and isinstance(rec.get("sim"), dict):
        rec = copy.deepcopy(rec)
        prof = rec.pop("profile", None)  # the card holds the recipe after a device profile was applied:
        fields = (rec.get("profiles") or {}).get(prof) or {}  # take the plain values back from its file
        if fields and rec.get("recipe_file"):
            try:
                orig = json.loads(resource_path("recipes", Path(rec["recipe_file"]).name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                orig = {}
            rec.update({k: orig[k] for k in fields if k in orig})
        return rec

    from ..workflows.models import recipe_name_for_mode

    name = recipe_name_for_mode(card.get("mode"))
    rec = json.loads(resource_path("recipes", f"{name}.json").read_text(encoding="utf-8"))
    rec.update({k: copy.deepcopy(card[k]) for k in ("architecture", "px_size_A", "valid_px_size_A", "mode")
                if k in card})
    return rec


#: The amount key a defect uses when the base recipe does not say.
DEFAULT_AMOUNT_KEY = {"vacancy": "rate", "partial_vacancy": "rate", "dopant": "rate", "multi_vacancy": "n",
                       "stone_wales": "n", "adatom": "n", "hole": "prob", "edge": "prob", "grain_boundary": "prob",
                       "contamination": "prob", "strain": "amplitude_A"}


def variant_for(sim: dict, structure: str) -> dict:
    """The variant of a simulation mix that simulates one structure.

    Parameters
    ----------
    sim : dict
        A recipe's ``sim`` (with ``variants``, or without: then there is none).
    structure : str
        A structure name ("graphene", "MoS2"...).

    Returns
    -------
    dict
        A deep copy of the first variant whose ``structure`` is (or lists) `structure`; {} when none.

    Examples
    --------
    >>> variant_for({"variants": [{"structure": ["MoS2", "WS2"], "weight": 2}]}, "WS2")
    {'structure': ['MoS2', 'WS2'], 'weight': 2}
    """
    for v in sim.get("variants") or []:
        s = v.get("structure")
        if s == structure or (isinstance(s, list) and structure in s):
            return copy.deepcopy(v)
    return {}


def _with_max(entry: dict, value: float, default_key: str) -> dict:
    """A defect entry with its amount (whichever of rate / n / prob / amplitude_A it uses)
    set to `value` (a rate, count or amplitude drawn from [0, value]; a probability as is)."""
    out = dict(entry)
    key = next((k for k in ("rate", "n", "prob", "amplitude_A") if k in out), default_key)
    out[key] = float(value) if key == "prob" else [0.0, float(value)]
    return out


def build_finetune_recipe(card: dict, base_path, s: dict) -> tuple[dict, dict]:
    """The recipe and the overrides for fine-tuning a bundle with the Retrain dialog's settings.

    Parameters
    ----------
    card : dict
        The base model's card.
    base_path : str or Path
        The base model's bundle folder (the new model starts from its weights).
    s : dict
        The dialog's choices (below).

    Returns
    -------
    (dict, dict)
        The recipe for :func:`atomlens.nn.train.train` and its overrides.

    Notes
    -----
    `s` holds the dialog's choices: ``name``, ``mode``, ``px_size_A`` (the new model's
    pixel size), ``structure`` ({"kind": "mix" | "named" | "custom" | "cif", "name", "a1",
    "a2", "sites", "cif", "zone_axis"}), ``defects`` ({sim key: {"value", "element"?}}, the
    checked ones; ignored for "mix"), ``noise`` ({"key": "dose_e_per_A2" | "sigma_A",
    "value"}), ``noise_spread`` (training draws value / spread .. value * spread),
    ``augment`` ({"rotation", "jiggle_A", "drift_A", "jitter_px"}), ``patch_px``, ``steps``,
    ``batch_size``, ``time_limit_min``, ``sim_pool`` (0: an endless stream), ``device``, ``lr``, ``val_n``, ``num_workers``
    (None: the recipe's), ``real_fraction``, ``real_holdout``.  The overrides repeat the
    budget fields so that they win over the recipe's device profile.  About ten evaluations
    are made (and one a minute at least); there is no early stop: the user's budget (steps or
    time) ends the run and the best checkpoint is kept.
    """
    rec = base_recipe(card)
    # select_by goes too: the user's run keeps the checkpoint its own default picks (the F1 on
    # the held-back annotated atoms when there are any), not the base recipe's choice
    for k in ("profile", "recipe_file", "real", "select_by"):
        rec.pop(k, None)
    px = float(s["px_size_A"])
    lo, hi = rec.get("valid_px_size_A", card.get("valid_px_size_A", [px, px]))
    rec.update({"name": s["name"], "init_from": str(base_path), "mode": s["mode"], "px_size_A": px,
                "task": "segmentation", "valid_px_size_A": [min(float(lo), px), max(float(hi), px)]})
    sim = copy.deepcopy(rec["sim"])
    sim.update({"shape": [int(s["patch_px"])] * 2, "px_size_A": [round(0.9 * px, 4), round(1.1 * px, 4)],
                "mode": s["mode"]})
    st = s["structure"]
    if st["kind"] != "mix":
        variant = variant_for(sim, st["name"]) if st["kind"] == "named" else {}
        base_defects = variant.get("defects", {})
        defects = {}
        for key, d in (s.get("defects") or {}).items():
            entry = _with_max(base_defects.get(key, {}), d["value"], DEFAULT_AMOUNT_KEY.get(key, "rate"))
            if d.get("element"):
                els = [e.strip() for e in str(d["element"]).replace(";", ",").split(",") if e.strip()]
                entry["element"] = els[0] if len(els) == 1 else els
            defects[key] = entry
        sim.pop("variants", None)
        sim.pop("cif", None)
        sim["defects"] = defects
        if st["kind"] == "named":
            sim["structure"] = st["name"]
            sim["structure_params"] = variant.get("structure_params", {})
            sim["thickness"] = variant.get("thickness", 1.0)
        elif st["kind"] == "custom":
            sim["structure"] = "custom"
            sim["structure_params"] = {"a1": list(st["a1"]), "a2": list(st["a2"]), "sites": list(st["sites"])}
            sim["thickness"] = 1.0
        else:  # a CIF (or any file ASE reads), projected along the zone axis
            sim.update({"structure": "cif", "structure_params": {}, "cif": str(st["cif"]),
                        "zone_axis": [int(v) for v in st.get("zone_axis", (0, 0, 1))], "thickness": [5, 30]})
    noise = dict(sim.get("noise") or {})
    nz, spread = s["noise"], max(1.0, float(s.get("noise_spread", 3.0)))
    noise[nz["key"]] = [float(nz["value"]) / spread, float(nz["value"]) * spread]
    aug = dict(sim.get("augment") or {})
    a = s["augment"]
    aug["rotation"] = bool(a["rotation"])
    aug["jiggle_A"] = [0.0, float(a["jiggle_A"])]
    aug["drift_A"] = [0.0, float(a["drift_A"])]
    noise["jitter_px"] = [0.0, float(a["jitter_px"])]
    sim["noise"], sim["augment"] = noise, aug
    rec["sim"] = sim
    steps = int(s["steps"])
    overrides = {"steps": steps, "batch_size": int(s["batch_size"]), "time_limit_min": float(s["time_limit_min"]),
                 "device": s.get("device", "auto"), "lr": float(s["lr"]), "val_n": int(s["val_n"]),
                 "eval_every": max(1, steps // 10), "eval_every_s": 60, "patience": 1_000_000,
                 "real_fraction": float(s["real_fraction"]),
                 "real_holdout": float(s["real_holdout"]), "sim_pool": int(s.get("sim_pool") or 0)}
    if s.get("num_workers") is not None:
        overrides["num_workers"] = int(s["num_workers"])
    rec.update(overrides)
    return rec, overrides


@dataclasses.dataclass
class TrainingJob:
    """One fine-tuning run: `recipe` and `overrides` for :func:`~atomlens.nn.train.train`,
    trained into `out_dir` (a new folder), with `real_images`
    (:class:`~atomlens.nn.realdata.AnnotatedImage`) mixed in.  `base_model` (a bundle
    folder) is scored against the new model on the images' held-back strips afterwards, and
    so is `current_model` (the model in use, a name or folder) when it is another one."""

    name: str
    recipe: dict
    out_dir: Path
    overrides: dict = dataclasses.field(default_factory=dict)
    real_images: list = dataclasses.field(default_factory=list)
    base_model: str | None = None
    current_model: str | None = None

    @property
    def holdout(self) -> float:
        """The fraction of each annotated image's rows (at the bottom) held back for scoring."""
        return float(self.overrides.get("real_holdout", self.recipe.get("real_holdout", 0.2)))


def compare_models(job: "TrainingJob", out) -> dict:
    """Precision/recall/F1 of the base and the new model (and of the model in use, when it is
    neither) on the atoms the user corrected or confirmed.

    Parameters
    ----------
    job : TrainingJob
        The job that trained the new model (its annotated images, held-back fraction, base and
        current model).
    out : str or Path
        The new model's bundle folder.

    Returns
    -------
    dict
        ``region`` ("holdout" or "all"), ``holdout``, ``base``, ``new`` (names),
        ``n_confirmed``, ``n_images`` and, when any confirmed atom lies in the region, ``before``,
        ``after`` (and ``current``, ``current_name``) as
        :func:`atomlens.nn.evaluate.evaluate_on_annotations` gives them; ``error`` instead when a
        model could not be run.  With no confirmed atom in the scored region no model is run.
    """
    out = Path(out)
    region = "holdout" if job.holdout > 0 else "all"
    res = {"region": region, "holdout": job.holdout, "base": Path(job.base_model).name, "new": out.name}
    try:
        from ..nn.infer import Predictor
        from ..nn.evaluate import evaluate_on_annotations
        from ..nn.realdata import count_confirmed

        res["n_confirmed"], res["n_images"] = count_confirmed(job.real_images, region, job.holdout)
        if not res["n_confirmed"]:
            return res
        device = str(job.overrides.get("device", "auto"))
        todo = [("before", job.base_model), ("after", str(out))]
        cur = other_model(job.current_model, job.base_model)
        if cur is not None:
            res["current_name"] = cur.name
            todo.append(("current", str(cur)))
        for key, path in todo:
            res[key] = evaluate_on_annotations(Predictor(path, device), job.real_images, region=region,
                                               holdout=job.holdout)
    except Exception as exc:  # noqa: BLE001 - shown in the dialog's table instead
        res["error"] = f"{type(exc).__name__}: {exc}"
    return res


def other_model(current, base):
    """The model in use, when it is worth comparing too.

    Parameters
    ----------
    current : str or None
        The model in use (a name or a bundle folder).
    base : str
        The base model of the fine-tuning.

    Returns
    -------
    Path or None
        `current`'s bundle folder when it is a segmentation bundle other than `base`, else None
        (also when it cannot be found).
    """
    if not current:
        return None
    try:
        from ..nn.bundle import read_card, resolve_bundle

        cur = resolve_bundle(current)
        if cur.resolve() == resolve_bundle(base).resolve() or read_card(cur).get("task") != "segmentation":
            return None
        return cur
    except Exception:  # noqa: BLE001 - a model that cannot be found is not compared
        return None


def load_annotated_image(path, sidecar=None, weight: float = 1.0):
    """A micrograph and the annotations saved for it (Annotate mode's sidecar), for fine-tuning.

    Parameters
    ----------
    path : str or Path
        The image file (any format AtomLens reads).
    sidecar : str or Path, optional
        Its annotation file; None finds the one Annotate mode saved (next to the image, or in the
        user data folder for a read-only folder).
    weight : float
        How often windows are drawn from this image relative to the others.

    Returns
    -------
    atomlens.nn.realdata.AnnotatedImage
        The annotated frame, its pixel size from the annotations (else the file), its mode.

    Raises
    ------
    ValueError
        When the image cannot be read, has no annotations, or they belong to another image.
    """
    from ..analysis.annotations import SidecarError
    from ..analysis.sidecar import load_sidecar, read_sidecar
    from ..fileio import sha256_file
    from ..io import LoadError
    from ..nn.realdata import AnnotatedImage
    from .analyse import load_micrograph

    try:
        mg = load_micrograph(path)
    except LoadError as exc:
        raise ValueError(str(exc)) from exc
    digest = sha256_file(path)
    try:
        ann = read_sidecar(sidecar, digest)[0] if sidecar is not None else load_sidecar(path, digest)
    except (SidecarError, OSError) as exc:
        raise ValueError(f"{Path(path).name}: its annotations cannot be used: {exc}") from exc
    if ann is None:
        raise ValueError(f"{Path(path).name}: no annotations saved for it (correct its atoms in Annotate mode, "
                         "or import a point list there, first)")
    frame = mg.frame(ann.frame if mg.is_stack else 0)
    return AnnotatedImage(frame, ann, ann.px_size_nm if ann.px_size_nm is not None else mg.px_size_nm,
                          float(weight), ann.image_name or Path(path).name, digest, ann.mode or mg.mode)
