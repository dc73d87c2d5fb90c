"""Per-type decision thresholds of a defect-CAM (GAP-CNN) model, fitted on simulations.

The GAP-CNN's presence probabilities are not equally confident for every defect type: a rare
or subtle type (a Stone-Wales defect) may rank first in its images yet rarely pass 0.5.  For
each defect type c a threshold t_c is fitted on calibration images, and the model's logits are
shifted by ``-logit(t_c)`` when it is used (:class:`~atomlens.nn.infer.Predictor`), so that
0.5 is the decision point of every type and the class activation maps are weighted by the
calibrated presence.

The rule scored: the image's type is the defect type with the largest calibrated logit if
that is positive, else "pristine" (``bench/cam_accuracy.py`` uses the same rule).

Calibration images come from the recipe's simulation variants with seeds from
:data:`CALIB_SEED_BASE` (training seeds are below 2e9, validation seeds start at 2e9, the
benchmarks' test seeds at 3e9), so the figures the benchmarks report are on images the
thresholds never saw.  ``atomlens train`` calibrates every CAM model it trains and records the
thresholds in the card (``cam_thresholds``, with ``calibration``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["CALIB_SEED_BASE", "variant_configs", "decide", "fit_thresholds", "calibrate_cam_bundle"]

CALIB_SEED_BASE = 2_500_000_000
GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def variant_configs(sim: dict, size: int, px_size_A: float, dose: float | None = None):
    """(index, label, config) per variant of a recipe's simulation mix (one per named structure).

    Parameters
    ----------
    sim : dict
        A recipe's ``sim`` entry: simulation settings, with an optional ``variants`` list of
        settings that override them (their ``weight`` is dropped).  No variants: one variant,
        the settings themselves.
    size : int
        Side of the square images, px (``shape`` becomes ``[size, size]``).
    px_size_A : float
        Pixel size, Å/px (the model's).
    dose : float, optional
        Electron dose, e/Å², set as the noise's ``dose_e_per_A2``; None keeps the recipe's.

    Yields
    ------
    index : int
        The variant's position in ``variants`` (it offsets the calibration seeds).
    label : str
        ``"<index>: <structure(s)> <defects or pristine>"``, for the log.
    config : dict
        Settings for :func:`atomlens.sim.simulate`.

    Examples
    --------
    >>> sim = {"structure": "graphene", "variants": [{"defects": {"vacancy": 1}, "weight": 2}]}
    >>> [(i, label, cfg["shape"]) for i, label, cfg in variant_configs(sim, 128, 0.1)]
    [(0, '0: graphene vacancy', [128, 128])]
    """
    base = {k: v for k, v in sim.items() if k != "variants"}
    for vi, v in enumerate(sim.get("variants") or [{}]):
        v = {k: val for k, val in v.items() if k != "weight"}
        cfg = {**base, **v, "shape": [size, size], "px_size_A": px_size_A}
        if dose is not None:
            cfg["noise"] = {**base.get("noise", {}), "dose_e_per_A2": dose}
        st = v.get("structure", base.get("structure"))
        label = f"{vi}: " + (st if isinstance(st, str) else "/".join(st))
        yield vi, label + " " + ",".join(v.get("defects", {}) or ["pristine"]), cfg


def decide(logits: np.ndarray, names, thresholds: dict | None = None) -> str:
    """The image's defect type from raw logits (K,): the type whose logit most exceeds its
    threshold's logit, or "pristine" when none does.

    Parameters
    ----------
    logits : (K,) array
        The GAP-CNN's raw (uncalibrated) logits of one image, one per class name.
    names : sequence of str
        The K class names, in the model's order (a ``"pristine"`` class is never chosen on its
        logit).
    thresholds : dict, optional
        Presence threshold (probability, 0-1) per type name, as :func:`fit_thresholds` gives
        them; a type without one, or None, uses 0.5.

    Returns
    -------
    str
        A type name, or ``"pristine"``.

    Examples
    --------
    >>> import numpy as np
    >>> names = ["pristine", "vacancy", "dopant"]
    >>> decide(np.array([0.0, 0.4, -1.0]), names), decide(np.array([0.0, 0.4, -1.0]), names, {"vacancy": 0.7})
    ('vacancy', 'pristine')
    """
    best, margin = "pristine", 0.0
    for k, n in enumerate(names):
        if n == "pristine":
            continue
        m = float(logits[k]) - _logit((thresholds or {}).get(n, 0.5))
        if m > margin:
            best, margin = n, m
    return best


def _accuracy(L, truths, names, thr) -> float:
    return float(np.mean([decide(lg, names, thr) in t for lg, t in zip(L, truths)]))


def fit_thresholds(L: np.ndarray, truths: list, names, rounds: int = 3) -> tuple[dict, float]:
    """Thresholds (one per defect type) that maximise the type accuracy on calibration images.

    L : (N, K) raw logits; truths : list of sets of true type names ({"pristine"} for none).
    Coordinate ascent over a grid of thresholds, starting from 0.5 for every type; a change
    is kept only when it raises the accuracy, so the result is never worse than 0.5 on these
    images, and types that need no change keep 0.5.  Returns (thresholds, accuracy).

    Parameters
    ----------
    L : (N, K) array
        Raw logits of N calibration images.
    truths : list of set of str
        The true type names of each image (``{"pristine"}`` for none); a decision is right when
        it is one of them.
    names : sequence of str
        The K class names.
    rounds : int
        At most this many passes over the types (fewer when a pass changes nothing).

    Returns
    -------
    thresholds : dict of str to float
        Probability threshold (0.05-0.95, on a 0.025 grid, or 0.5) per type except pristine.
    accuracy : float
        Fraction of the N images whose :func:`decide` is right with these thresholds.
    """
    thr = {n: 0.5 for n in names if n != "pristine"}
    best = _accuracy(L, truths, names, thr)
    for _ in range(rounds):
        changed = False
        for n in list(thr):
            for t in GRID:
                trial = {**thr, n: float(t)}
                a = _accuracy(L, truths, names, trial)
                if a > best + 1e-9:
                    best, thr, changed = a, trial, True
        if not changed:
            break
    return thr, best


def calibrate_cam_bundle(bundle, recipe: dict | None = None, n_per_variant: int = 25, size: int = 128,
                         dose: float | None = None, write: bool = True, log=print) -> dict:
    """Fit the thresholds of the CAM bundle at `bundle` on its recipe's simulations and (with
    `write`) record them in its card.  Returns the card's ``calibration`` entry.

    Parameters
    ----------
    bundle : str or Path
        A bundle folder or a model name (:func:`atomlens.nn.bundle.resolve_bundle`); it must be a
        defect-CAM model (card ``task`` ``"cam"``).
    recipe : dict, optional
        The training recipe, with its ``sim`` settings (a dict or a JSON file's path); None
        (default): the one recorded in the card.
    n_per_variant : int
        Calibration images per simulation variant (seeds from :data:`CALIB_SEED_BASE`).
    size : int
        Side of the square calibration images, px.
    dose : float, optional
        Electron dose (e/Å²) to simulate at instead of the recipe's.
    write : bool
        Record ``cam_thresholds`` and ``calibration`` in the bundle's card.
    log : callable
        Called with one line of text, the result.

    Returns
    -------
    dict
        ``n_images``, ``size_px``, ``seed_base``, ``type_accuracy_at_0.5`` and ``type_accuracy``
        (fractions, rounded to 4 decimals).

    Raises
    ------
    ValueError
        When the bundle is not a defect-CAM model or no recipe with ``sim`` settings is known.
    """
    from ..sim import simulate
    from ..sim.atoms import DEFECT_TYPES
    from .bundle import load_bundle, resolve_bundle, write_card
    from .data import normalisation_spec, normalise

    path = resolve_bundle(bundle)
    model, card = load_bundle(path, "cpu")
    if card.get("task") != "cam":
        raise ValueError(f"{card.get('name')} is not a defect-CAM model")
    recipe = recipe or card.get("recipe")
    if not recipe or "sim" not in recipe:
        raise ValueError("calibration needs the model's recipe (its simulation settings)")
    sim = recipe["sim"]
    if isinstance(sim, str):
        sim = json.loads(Path(sim).read_text())
    names = list(card["classes"])
    norm = normalisation_spec(card.get("normalisation"))
    L, truths = [], []
    model.eval()
    with torch.inference_mode():
        for vi, label, cfg in variant_configs(sim, size, float(card["px_size_A"]), dose):
            for i in range(n_per_variant):
                r = simulate(cfg, CALIB_SEED_BASE + 1000 * vi + i)
                logits, _maps = model.cam(torch.from_numpy(normalise(r.image, method=norm, px_A=r.px_size_A))[None, None])
                L.append(logits[0].float().numpy())
                truths.append({DEFECT_TYPES[k] for k in np.flatnonzero(r.defect_labels)} or {"pristine"})
    L = np.asarray(L)
    before = _accuracy(L, truths, names, None)
    thr, after = fit_thresholds(L, truths, names)
    entry = {"n_images": len(L), "size_px": size, "seed_base": CALIB_SEED_BASE, "type_accuracy_at_0.5": round(before, 4),
             "type_accuracy": round(after, 4)}
    log(f"calibrated on {len(L)} images: type accuracy {before:.3f} at 0.5 -> {after:.3f}; thresholds "
        + ", ".join(f"{n} {t:.3g}" for n, t in thr.items() if t != 0.5))
    if write:
        card["cam_thresholds"] = {n: round(float(t), 4) for n, t in thr.items()}
        card["calibration"] = entry
        write_card(path, card)
    return entry
