"""A training recipe: :class:`Recipe`, the one description of what a recipe holds.

A recipe is written as a JSON object (the bundled models' recipes are in
``resources/recipes/``) and read with :meth:`Recipe.from_dict`; :func:`atomlens.nn.train.train`
takes either.  Each field's meaning, unit and default is documented on the field (see the
class's Attributes, generated from them).  The model card records the recipe as
:meth:`Recipe.to_dict` gives it: the keys in the order they were given (the fields with a
default first, in :data:`DEFAULTS`'s order), fields without a default only when they were
given or set by training, and keys this version does not know kept as they were (a newer
recipe, or notes such as the command line's ``recipe_file``).

A Recipe reads like the dict it came from (``rec["steps"]``, ``rec.get("calibrate_n", 25)``,
``"real" in rec``: only the keys it holds), and :meth:`Recipe.updated` changes it as
``dict.update`` would, so training records exactly what it used.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULTS", "REQUIRED", "Recipe", "apply_profile"]


def _required(doc: str):
    return dataclasses.field(metadata={"doc": doc, "kind": "required"})


def _default(value, doc: str):
    if isinstance(value, (list, dict)):
        return dataclasses.field(default_factory=lambda v=value: copy.deepcopy(v),
                                 metadata={"doc": doc, "kind": "default"})
    return dataclasses.field(default=value, metadata={"doc": doc, "kind": "default"})


def _optional(doc: str):
    return dataclasses.field(default=None, metadata={"doc": doc, "kind": "optional"})


@dataclasses.dataclass
class Recipe(Mapping):
    """What :func:`atomlens.nn.train.train` trains (or fine-tunes): data, model, schedule.

    Build one with :meth:`from_dict` (which fills in the defaults, reads a ``sim`` given as a
    path and checks the required fields, as training always did) or directly with keywords.
    Fields marked *optional* are absent unless given (``None`` as attributes, and not listed
    by :meth:`to_dict`); unknown keys are kept in :attr:`extra`.
    """

    # ------------------------------------------------------------------ required
    name: str = _required("The bundle's name (its card's ``name``).")
    sim: dict = _required(
        "The simulation config (:func:`atomlens.sim.simulate`; ``variants`` for a mix), or the path of a "
        "JSON file holding it (read by :meth:`from_dict`; the card records the config itself).")
    architecture: dict = _required(
        '``{"name": "unet" | "gapcnn", "params": {...}}`` (:func:`atomlens.nn.models.build_model`); '
        "replaced by the parent's when fine-tuning (``init_from``).")
    px_size_A: float = _required("The model's pixel size (Å/px): images are resampled to it.")
    # ------------------------------------------------------------------ with defaults (always recorded)
    task: str = _default("segmentation", '"segmentation" (atom finding) or "cam" (defect types).')
    mode: str = _default("HAADF", "The imaging mode the model is for (dark-atom images are inverted for a "
                                  "bright-atom model).")
    batch_size: int = _default(8, "Samples per step.")
    steps: int = _default(2000, "Optimiser steps (the budget, with ``time_limit_min``).")
    lr: float = _default(3e-3, "The peak learning rate of the one-cycle schedule "
                               "(:class:`atomlens.nn.train.BudgetSchedule`).")
    weight_decay: float = _default(1e-4, "AdamW's weight decay.")
    eval_every: int = _default(200, "Evaluate (and maybe save) every this many steps; also at the last one.")
    val_n: int = _default(32, "Simulated validation images.")
    patience: int = _default(5, "Stop after this many evaluations without improvement.")
    num_workers: int = _default(2, "Simulation workers (DataLoader processes; 0 simulates in the training thread).")
    device: str = _default("auto", '"auto", "cpu", "cuda" or "mps" (:func:`atomlens.nn.device.select_device`).')
    seed: int = _default(0, "Seeds the initial weights, the simulation stream and the mixing of real images.")
    time_limit_min: float = _default(
        60, "Minutes of training at most: the one-cycle learning-rate schedule runs over the steps or this "
            "time, whichever ends first, and training stops (keeping the best bundle) when it is up.")
    init_from: str | None = _default(None, "A bundle (name or folder) to fine-tune; None trains from scratch.")
    loss: str = _default("ce+dice", 'Segmentation loss: "ce+dice" or "focal".')
    valid_px_size_A: list = _default([0.05, 0.4], "[min, max] image pixel sizes (Å/px) the model is meant for.")
    match_radius_A: float = _default(0.5, "Validation matches a found atom to a true one within this distance (Å).")
    version: str = _default("1.0", "The bundle's version (its card's ``version``).")
    # ------------------------------------------------------------------ optional (absent unless given)
    normalisation: str | dict | None = _optional(
        'How images are scaled for the network: "clip-zscore" (the default), "clip-robust" or "local-contrast", '
        'a name or ``{"method": ..., parameters}`` (:data:`atomlens.nn.norm.NORMALISATION_METHODS`, '
        ":mod:`atomlens.analysis.background`).  Training records it completed with the method's defaults; a "
        "fine-tuned model keeps its parent's unless the recipe names one.")
    class_weights: list | None = _optional(
        "Cross-entropy weight per class, e.g. [1, 1, 3, 3] to favour the rare dopants and vacancies.")
    select_by: str | None = _optional(
        'The metric that picks the best checkpoint: "auto" (the default), "val_f1", "val_class_f1" (the mean of '
        'the detection F1 and the F1 of each class present, for runs whose aim is dopants and vacancies), '
        '"user_f1", "mean_f1" (the mean of the simulated and the user F1) or "val_loss".  "auto" is "user_f1" '
        "when the held-out strips hold atoms the user corrected or confirmed (ties go to the lower simulated "
        'validation loss, then to the earlier step), else "val_f1" (segmentation) or "val_loss" (CAM).  The '
        'card\'s and the returned metrics\' ``selection`` (``{"metric", "step", "why"}``) say which evaluation '
        "was kept and why.")
    real: list | None = _optional(
        'Annotated real images to fine-tune on: ``{"image": "<x.image.npy>", "annotations": '
        '"<x.annotations.json>", "weight": 1.0}`` entries, as '
        ":func:`atomlens.analysis.training_labels.export_training_pair` writes them (more can be given to "
        "``train(real_images=...)`` as :class:`~atomlens.nn.realdata.AnnotatedImage` objects).  The card lists "
        "the images used under ``annotated_images`` (name, sha256 of the image file, number of atoms, weight).  "
        "Segmentation models only.")
    real_fraction: float | None = _optional(
        "With annotated images (default 0.3): the chance that a training sample is a window of one of them "
        "rather than a simulation; in [0, 1].")
    real_holdout: float | None = _optional(
        "With annotated images (default 0.2): a strip of this fraction of each image's rows, at its bottom, is "
        "never trained on; in [0, 1).  Validation then adds ``user_precision``, ``user_recall`` and ``user_f1`` "
        "on the atoms the user corrected or confirmed there, with their number ``user_n_true`` in "
        "``user_n_images`` images (:func:`atomlens.nn.evaluate.evaluate_on_annotations`; with none the three "
        "figures are left out).  When fine-tuning, the parent is evaluated once before the first step "
        "(``step`` 0, ``baseline`` true; logged, not saved).")
    sim_pool: int | None = _optional(
        "Simulate only this many images and reuse them with random 90-degree rotations and mirror images (a "
        "fixed set, for machines where simulating is the bottleneck); 0 or absent: an endless stream of new "
        "simulations.")
    calibrate_n: int | None = _optional(
        "CAM models (default 25): after training, per-type decision thresholds are fitted on this many "
        "simulated images per variant of the mix, with seeds of their own, and recorded in the card "
        "(:mod:`atomlens.nn.calibrate`); 0 skips it.")
    cam_localisation: dict | None = _optional(
        'CAM models: ``{"weight": 0.5, "sigma_A": 1.0}``: besides the image-level loss, ask each present '
        "defect type's class activation map to put its mass on that type's sites, which the simulation knows "
        "(:func:`atomlens.nn.train.cam_localisation_loss`; sigma_A in Å).  Global average pooling alone lets a "
        "map peak anywhere within the features' receptive field (about 18 Å), and a heavy adatom's map was "
        "found to peak 3-15 Å away from it.  Validation then also reports ``val_cam_within_1A``, the fraction "
        "of present types whose map peaks within 1 Å of one of their sites.")
    eval_every_s: float | None = _optional(
        "Also evaluate when this many seconds of training have passed since the last evaluation (live curves "
        "at a steady pace whatever the speed of the machine).")
    profiles: dict | None = _optional(
        '``{"cuda": {...}}``: fields that replace the ones above when training runs on that device (a GPU '
        "affords larger batches, more steps and more simulation workers in the same wall-clock time).")
    profile: str | None = _optional("The device whose ``profiles`` entry was applied (set by training).")
    # ------------------------------------------------------------------ the rest
    extra: dict = dataclasses.field(default_factory=dict, metadata={
        "doc": "Keys this version does not know, kept (and recorded in the card) as given.", "kind": "extra"})

    def __post_init__(self):
        if isinstance(self.sim, str):
            self.sim = json.loads(Path(self.sim).read_text())
        keys = [k for k in DEFAULTS]
        keys += [f.name for f in dataclasses.fields(self) if f.metadata["kind"] == "required"]
        keys += [f.name for f in dataclasses.fields(self)
                 if f.metadata["kind"] == "optional" and getattr(self, f.name) is not None]
        self._keys = keys + [k for k in self.extra if k not in keys]

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, d: Mapping) -> "Recipe":
        """A Recipe from a recipe as JSON gives it.

        Parameters
        ----------
        d : mapping
            Recipe fields (see the class); deep-copied.  Missing fields with a default take
            :data:`DEFAULTS`; ``sim`` may be the path of a JSON file; keys this version does not
            know go to :attr:`extra`.

        Returns
        -------
        Recipe
            Whose :meth:`to_dict` lists the defaults' keys first (in :data:`DEFAULTS`'s order,
            with `d`'s values), then the other keys in `d`'s order.

        Raises
        ------
        ValueError
            ``the recipe lacks '<key>'`` for a missing required field (:data:`REQUIRED`).
        OSError, json.JSONDecodeError
            When ``sim`` names a file that cannot be read.
        """
        merged = {**DEFAULTS, **copy.deepcopy(dict(d))}
        if isinstance(merged.get("sim"), str):
            merged["sim"] = json.loads(Path(merged["sim"]).read_text())
        for key in REQUIRED:
            if key not in merged:
                raise ValueError(f"the recipe lacks '{key}'")
        known = {k: v for k, v in merged.items() if k in _FIELDS}
        rec = cls(**known, extra={k: v for k, v in merged.items() if k not in _FIELDS})
        rec._keys = list(merged)
        return rec

    def to_dict(self) -> dict:
        """The recipe as a dict, as the model card records it.

        Returns
        -------
        dict
            The keys held, in order (see the module notes); the values themselves, not copies.
        """
        return {k: self[k] for k in self._keys}

    def updated(self, changes: Mapping) -> "Recipe":
        """A copy with `changes` applied as ``dict.update`` applies them.

        Parameters
        ----------
        changes : mapping
            Field (or unknown) keys and their new values; a key not held yet is added after
            the others.  Values are used as given (not copied).

        Returns
        -------
        Recipe
            This one is left as it was.
        """
        new = copy.copy(self)
        new.extra, new._keys = dict(self.extra), list(self._keys)
        for k, v in changes.items():
            if k in _FIELDS:
                object.__setattr__(new, k, v)
            else:
                new.extra[k] = v
            if k not in new._keys:
                new._keys.append(k)
        return new

    def with_profile(self, device: str) -> "Recipe":
        """This recipe as it runs on `device`.

        Parameters
        ----------
        device : str
            The device training runs on (:func:`atomlens.nn.device.select_device`).

        Returns
        -------
        Recipe
            With the fields of ``profiles[device]`` (deep-copied) applied and ``profile`` set to
            `device`; this recipe itself when it has no profile for `device`.
        """
        prof = (self.profiles or {}).get(device)
        if not prof:
            return self
        return self.updated({**copy.deepcopy(prof), "profile": device})

    def for_real_images(self) -> "Recipe":
        """This recipe checked and completed for training with annotated real images.

        Returns
        -------
        Recipe
            With ``real_fraction`` (default 0.3) and ``real_holdout`` (default 0.2) set, as
            floats.

        Raises
        ------
        ValueError
            For a task other than segmentation, a ``real_fraction`` outside [0, 1] or a
            ``real_holdout`` outside [0, 1).
        """
        if self.task != "segmentation":
            raise ValueError("annotated images can only train atom-finding (segmentation) models, "
                             f"not a {self.task!r} model")
        rec = self.updated({k: v for k, v in (("real_fraction", 0.3), ("real_holdout", 0.2)) if k not in self})
        rec = rec.updated({"real_fraction": float(rec.real_fraction), "real_holdout": float(rec.real_holdout)})
        if not 0.0 <= rec.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be between 0 and 1, got {rec.real_fraction}")
        if not 0.0 <= rec.real_holdout < 1.0:
            raise ValueError(f"real_holdout must be in [0, 1), got {rec.real_holdout}")
        return rec

    # ------------------------------------------------------------------ reading like a dict
    def __getitem__(self, key: str) -> Any:
        """The value of a key held (a field given or defaulted, or an unknown key); KeyError else."""
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key) if key in _FIELDS else self.extra[key]

    def __iter__(self):
        """The keys held, in order."""
        return iter(list(self._keys))

    def __len__(self) -> int:
        """The number of keys held."""
        return len(self._keys)

    def __contains__(self, key) -> bool:
        """Whether `key` is held (an optional field only when given or set)."""
        return key in self._keys


_FIELDS = frozenset(f.name for f in dataclasses.fields(Recipe) if f.metadata["kind"] != "extra")

#: The fields a recipe must give.
REQUIRED = tuple(f.name for f in dataclasses.fields(Recipe) if f.metadata["kind"] == "required")

#: The fields with a default, and the defaults (a recipe always records them).
DEFAULTS = {f.name: (f.default_factory() if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(Recipe) if f.metadata["kind"] == "default"}


def _attributes_doc() -> str:
    """The class docstring's Attributes section, from the fields' docs (numpydoc)."""
    lines = ["", "    Attributes", "    ----------"]
    for f in dataclasses.fields(Recipe):
        kind = f.metadata["kind"]
        if kind == "default":
            note = f"default {DEFAULTS[f.name]!r}"
        else:
            note = {"required": "required", "optional": "optional", "extra": "unknown keys"}[kind]
        lines.append(f"    {f.name} : {f.type}, {note}")
        words, line = f.metadata["doc"].split(), "       "
        for w in words:
            if len(line) + 1 + len(w) > 96:
                lines.append(line)
                line = "       "
            line += " " + w
        lines.append(line)
    return "\n".join(lines) + "\n"


Recipe.__doc__ = (Recipe.__doc__ or "").rstrip() + "\n" + _attributes_doc()


def apply_profile(recipe, device: str):
    """`recipe` as it runs on `device` (:meth:`Recipe.with_profile`).

    Parameters
    ----------
    recipe : dict or Recipe
    device : str

    Returns
    -------
    dict or Recipe
        Of `recipe`'s type: with the fields of its ``profiles[device]`` applied and ``profile``
        set to `device`, or `recipe` itself when it has no profile for `device`.
    """
    if isinstance(recipe, Recipe):
        return recipe.with_profile(device)
    prof = (recipe.get("profiles") or {}).get(device)
    if not prof:
        return recipe
    return {**recipe, **copy.deepcopy(prof), "profile": device}
