"""Does the out-of-domain note fire where it should, and only there?  (issue 24, "Say when an
image is outside what the model knows".)

Each image is analysed as ``atomlens detect`` does (the default model for its imaging mode,
the file's own calibration, names read as detect reads them) and the notes of
:func:`atomlens.analysis.domain.domain_check` are looked at:

* **bad cases**: G-GrainBoundary-4nm and G-Si-2nm plus an additive linear ramp of 2x and 10x
  the image's 1-99 % intensity range, and plus a smooth bright patch over 15 % of the field
  (a gaussian-edged disc in a corner) as bright as 1x and 10x that range; the 11 real images of
  single Pt atoms on carbon in ../shared/data/real-labelled/pt-on-carbon (0.293 Å/px).  The
  note must fire where the model fails there (fewer than half the atoms found on the clean image,
  or of the hand-labelled Pt atoms); where a model copes (after the background fix) it may stay
  quiet ("either");
* **must stay quiet**: every micrograph in ../shared/data/real, untouched.

With ``--sim N`` it also analyses N images simulated from the model's recipe (its ``sim``
config, as the model was trained on) and prints the figures' spread there: the training
range the thresholds of :data:`atomlens.analysis.domain.DEFAULT_LIMITS` were set against.

    python bench/ood_notes.py [--sim 24] [--device cpu]

Prints one row per image: its figures, the number of atoms found, whether the note fired,
and whether that is what it should do; the last line counts the misses.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from background_sweep import contrast, patch, ramp  # noqa: E402  (the sweep's own perturbations)

REAL = ROOT.parent / "shared" / "data" / "real"
PT = ROOT.parent / "shared" / "data" / "real-labelled" / "pt-on-carbon"
PT_PX_NM = 0.0293
#: Files of ../shared/data/real that are not micrographs of their own (the .emi goes with the .ser).
NOT_IMAGES = (".md", ".csv", ".emi")
COLUMNS = ("peak", "period", "found", "unsure", "bg", "bright", "clip")


def _row(name, res, should_fire, dt):
    """Print one row; `should_fire`: True, False or None (either is right)."""
    from atomlens.analysis.domain import is_ood_note

    d = res.info.get("domain") or {}
    fired = [n for n in res.info.get("notes", []) if is_ood_note(n)]
    ok = should_fire is None or bool(fired) == should_fire

    def f(key, fmt):
        v = d.get(key)
        return "-" if v is None else format(v, fmt)

    print(f"{name[:34]:34s} {f('peak_ratio', '9.3g')} {f('period_A', '6.2f')} {f('found_fraction', '6.2f')} "
          f"{f('unsure_fraction', '6.3f')} {f('background_ratio', '6.2f')} {f('bright_fraction', '6.2f')} "
          f"{f('clipped_fraction', '6.3f')} {len(res.atoms):6d}  {'FIRES' if fired else 'quiet':5s} "
          f"{('ok' if ok else 'WRONG') + ('' if should_fire is not None else ' (either)')} {dt:5.1f}s", flush=True)
    for n in fired:
        print(f"{'':36s}{n}")
    return ok, d


def _header(title):
    print(f"\n{title}")
    print(f"{'image':34s} {'peak':>9s} {'per.Å':>6s} {'found':>6s} {'unsure':>6s} {'bg':>6s} {'bright':>6s} "
          f"{'clip':>6s} {'atoms':>6s}  note  verdict")


def real_files():
    """(name, Micrograph) of every micrograph in ../shared/data/real, read as detect reads it."""
    from atomlens.io import load
    from atomlens.io.filename_hints import apply_filename_hints

    for p in sorted(REAL.iterdir()):
        if p.suffix.lower() in NOT_IMAGES or p.name.startswith("."):
            continue
        mg = load(p)
        apply_filename_hints(mg)
        yield p.name, mg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sim", type=int, default=0, help="also analyse this many images simulated from the recipe")
    ap.add_argument("--seed", type=int, default=31_000_000)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.io import load
    from atomlens.nn.infer import Predictor

    preds = {}

    def pred(name):
        if name not in preds:
            preds[name] = Predictor(name, args.device)
        return preds[name]

    def run(img, px_nm, mode=None, model="stem-haadf"):
        t0 = time.perf_counter()
        res = analyse_image(np.asarray(img, np.float32), pred(model), px_size_nm=px_nm, mode=mode)
        return res, time.perf_counter() - t0

    misses = total = 0
    figures: dict[str, list] = {"clean": [], "bad": [], "sim": []}
    _header("clean real files (must stay quiet)")
    for name, mg in real_files():
        model = "stm-topo" if (mg.mode or "").upper() in ("STM", "SPM", "AFM") else "stem-haadf"
        res, dt = run(mg.frame(0), mg.px_size_nm, mg.mode, model)
        ok, d = _row(f"{name} [{model}]", res, False, dt)
        misses += not ok
        total += 1
        figures["clean"].append(d)

    _header("perturbed real lattices (must fire where the model fails)")
    for stem in ("G-GrainBoundary-4nm", "G-Si-2nm"):
        mg = load(REAL / f"{stem}.hdf5")
        img = mg.frame(0).astype(np.float64)
        n_clean = len(run(img, mg.px_size_nm, mg.mode)[0].atoms)
        c = contrast(img)
        cases = [(f"{stem} ramp {a:g}x", a * ramp(img.shape, 0.6)) for a in (2.0, 10.0)]
        cases += [(f"{stem} patch 15% {a:g}x", a * patch(img.shape, 0.15, 1)) for a in (1.0, 10.0)]
        for label, bg in cases:
            res, dt = run(img + c * bg, mg.px_size_nm, mg.mode)
            ok, d = _row(label, res, True if len(res.atoms) < 0.5 * n_clean else None, dt)
            misses += not ok
            total += 1
            figures["bad"].append(d)

    _header(f"Pt single atoms on carbon, {PT_PX_NM * 10:.3f} Å/px (must fire where the model fails)")
    for p in sorted(PT.glob("*.tif")):
        mg = load(p)
        n_true = len(p.with_name(p.name.split("_")[0] + "_Results.csv").read_text().strip().splitlines()) - 1
        res, dt = run(mg.frame(0), PT_PX_NM, "HAADF")
        ok, d = _row(f"{p.name} ({n_true} Pt)", res, True if len(res.atoms) < 0.5 * n_true else None, dt)
        misses += not ok
        total += 1
        figures["bad"].append(d)

    if args.sim:
        import json

        from atomlens.sim import simulate

        recipe = json.loads((ROOT / "resources" / "recipes" / "stem-haadf.json").read_text())
        _header(f"{args.sim} images simulated from the stem-haadf recipe (training range; should stay quiet)")
        for k in range(args.sim):
            r = simulate(recipe["sim"], args.seed + k)
            res, dt = run(r.image, r.px_size_A / 10, None)
            _row(f"sim {k} {r.meta.get('structure', '')}", res, False, dt)
            figures["sim"].append(res.info.get("domain") or {})

    print("\nspread of the figures (min / max):")
    for key in ("peak_ratio", "found_fraction", "unsure_fraction", "background_ratio", "bright_fraction",
                "clipped_fraction"):
        parts = []
        for group, ds in figures.items():
            v = [d[key] for d in ds if d.get(key) is not None]
            if v:
                parts.append(f"{group} {min(v):.3g} / {max(v):.3g}")
        print(f"  {key:18s} " + ", ".join(parts))
    print(f"\n{total - misses} of {total} images as they should be ({misses} wrong)")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
