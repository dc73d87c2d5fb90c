"""Accuracy of a segmentation bundle on held-out simulated images, per structure family.

Seeds start at 3,000,000,000: training seeds count up from recipe.seed * 1e7 and validation
seeds from 2e9, so none of these images was seen.  Matching is one-to-one within 0.5 Å.
Targets (issue 4): atoms F1 >= 0.99 and RMSE <= 0.1 Å; dopants F1 >= 0.95; vacancies >= 0.90.

    python bench/accuracy.py [--model stem-haadf] [--n 100] [--ci] [--px 0.1] [--dose 1e5]

Rare classes (graphene's 0-3 dopants per image) need many images: ``--ci`` prints how many true
columns of each class were seen and a 95 % bootstrap interval (over the images) of each F1.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 3_000_000_000


def families(recipe: dict):
    """One test config per variant of the recipe's simulation mix."""
    base = {k: v for k, v in recipe["sim"].items() if k != "variants"}
    for v in recipe["sim"]["variants"]:
        v = {k: val for k, val in v.items() if k != "weight"}
        names = v["structure"] if isinstance(v["structure"], list) else [v["structure"]]
        for name in names:
            yield name, {**base, **v, "structure": name}


def sized(cfg: dict, *, size: int, px_A: float, dose: float) -> dict:
    """A family's config (from :func:`families`) for `size` x `size` images at `px_A` Å/px and
    `dose` e/Å²."""
    return {**cfg, "shape": [size, size], "px_size_A": px_A,
            "noise": {**cfg.get("noise", {}), "dose_e_per_A2": dose}}


def confusion(out: dict, atoms, txy, tcls, count, r_px: float) -> None:
    """Add to `out` what each true dopant and vacancy was called ("missed": no column within
    `r_px`), and what each false dopant or vacancy call sat on ("nothing": no true column).
    A partial vacancy (a column that lost one of its atoms, still visible) counts apart from a
    full one."""
    from atomlens.analysis.metrics import match_points
    from atomlens.sim.atoms import CLASSES

    ip, it, _ = match_points(atoms.xy, txy, r_px)
    called = np.full(len(txy), -1)
    called[it] = atoms.cls[ip]
    for j in np.nonzero(tcls >= 2)[0]:
        kind = CLASSES[tcls[j]] if tcls[j] == 2 else ("partial vacancy" if count[j] > 0 else "full vacancy")
        key = ("true " + kind, CLASSES[called[j]] if called[j] >= 0 else "missed")
        out[key] = out.get(key, 0) + 1
    truth = np.full(len(atoms), -1)
    truth[ip] = tcls[it]
    for j in np.nonzero((atoms.cls >= 2) & (truth != atoms.cls))[0]:
        key = ("false " + CLASSES[atoms.cls[j]], "on " + (CLASSES[truth[j]] if truth[j] >= 0 else "nothing"))
        out[key] = out.get(key, 0) + 1


def bootstrap_f1(per_image: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """2.5 and 97.5 percentiles of F1 = 2 tp / (n_pred + n_true) over images drawn with
    replacement; `per_image` is (images, groups, 3) of tp, n_pred, n_true."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_image), (n_boot, len(per_image)))
    tot = per_image[idx].sum(1)  # (n_boot, groups, 3)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class never seen nor called: NaN, wanted
        f1 = 2 * tot[..., 0] / (tot[..., 1] + tot[..., 2])
        return np.nanpercentile(f1, 2.5, axis=0), np.nanpercentile(f1, 97.5, axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stem-haadf")
    ap.add_argument("--recipe", default=str(ROOT / "resources" / "recipes" / "stem-haadf.json"))
    ap.add_argument("--n", type=int, default=20, help="images per family")
    ap.add_argument("--px", type=float, default=None, help="test pixel size in Å (default: the model's)")
    ap.add_argument("--dose", type=float, default=1e5, help="dose in e-/Å^2")
    ap.add_argument("--sigma-A", type=float, default=None,
                    help="STM: height noise in Å for every image (default: the recipe's range)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--refine", default="centroid")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--tta", action="store_true", help="average over the 8 rotations/mirror images")
    ap.add_argument("--single-view", action="store_true",
                    help="one pass of the network (default: the mean over the image and its half turn)")
    ap.add_argument("--seed-base", type=int, default=TEST_SEED,
                    help="first seed (default: the test seeds; to choose between models use validation "
                         "seeds, e.g. 2100000000, which training never reaches)")
    ap.add_argument("--families", help="comma-separated subset of the families")
    ap.add_argument("--confusion", action="store_true",
                    help="also print, per family, what the true dopants and vacancies were called "
                         "(partial vacancies, S2 -> S, apart) and what the false ones sat on")
    ap.add_argument("--ci", action="store_true",
                    help="also print, per family, the number of true columns of each class and a 95 %% "
                         "confidence interval of each F1 (bootstrap over the images): rare classes, "
                         "such as a few dopants per image, need many images for a steady figure")
    ap.add_argument("--material-hint", action="store_true",
                    help="tell the detection each family's material where it is one that "
                         "atomlens.analysis.material knows (the TMDs), as `atomlens detect --material` does")
    ap.add_argument("--single-atoms", default=None, metavar="MODEL",
                    help="as the app routes: an image whose columns form no lattice is detected again with this "
                         "model (stem-single-atoms); prints how many images of each family went to it")
    ap.add_argument("--no-scene", action="store_true",
                    help="leave out the test for single atoms on a support that `atomlens detect` applies "
                         "to Z-contrast images (atomlens.analysis.scene): the network's calls alone")
    args = ap.parse_args()
    from atomlens.analysis.material import MATERIALS, apply_material_hint
    from atomlens.io.modes import is_z_contrast
    from atomlens.analysis.scene import isolated_atoms
    from atomlens.analysis.metrics import detection_scores
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    pred = Predictor(args.model, "auto", tta=args.tta, single_view=args.single_view)
    recipe = json.loads(Path(args.recipe).read_text())
    from atomlens.analysis.scene import is_lattice

    single = Predictor(args.single_atoms, device="cpu") if args.single_atoms else None
    px = args.px or pred.px_size_A
    scene = not args.no_scene and is_z_contrast(pred.card.get("mode"))
    allres = {}
    print(f"model {args.model} ({len(pred.views)} view(s)), test pixel size {px} Å, dose {args.dose:g} e/Å², {args.n} images per family, "
          f"seeds from {args.seed_base}" + (", material hint for the TMDs" if args.material_hint else "")
          + (", no test for single atoms on a support" if args.no_scene else "")
          + (f", STM height noise {args.sigma_A} Å" if args.sigma_A is not None else ""))
    print(f"{'family':14s} {'atoms F1':>9s} {'RMSE Å':>7s} {'atom F1':>8s} {'dopant F1':>9s} {'vacancy F1':>10s}")
    for name, cfg in families(recipe):
        if args.families and name not in args.families.split(","):
            continue
        cfg = sized(cfg, size=args.size, px_A=px, dose=args.dose)
        if args.sigma_A is not None:
            cfg["noise"]["sigma_A"] = args.sigma_A
        sq = []
        per_image = []  # per image (4 x 3): all columns, then atom, dopant, vacancy; tp, n_pred, n_true
        conf: dict[tuple[str, str], int] = {}
        routed = 0
        for i in range(args.n):
            r = simulate(cfg, args.seed_base + i)
            atoms, _, info = pred.detect(r.image, r.px_size_A / 10, refine=args.refine)
            if single is not None and scene and not is_lattice(atoms.xy):
                routed += 1
                atoms, _, info = single.detect(r.image, r.px_size_A / 10, refine=args.refine)
            if scene:
                atoms, _note = isolated_atoms(atoms, r.image, info["px_size_A"])
            if args.material_hint and name in MATERIALS:
                atoms, _note = apply_material_hint(atoms, r.image, name, px_size_A=info["px_size_A"])
            txy, tcls = r.points_px()
            s = detection_scores(atoms.xy, atoms.cls, txy, tcls, 0.5 / r.px_size_A)
            if s["tp"]:
                sq.append((s["rmse"] * r.px_size_A) ** 2 * s["tp"])
            rows = [[s["tp"], s["n_pred"], s["n_true"]]]
            for c in (1, 2, 3):
                pc = s["per_class"].get(c, {})
                rows.append([round(pc.get("recall", 0) * pc.get("n_true", 0)), pc.get("n_pred", 0), pc.get("n_true", 0)])
            per_image.append(rows)
            if args.confusion:
                confusion(conf, atoms, txy, tcls, r.atoms.count, 0.5 / r.px_size_A)

        counts = np.array(per_image, np.int64).reshape(-1, 4, 3)
        total = counts.sum(0)
        tp, n_pred, n_true = (int(v) for v in total[0])
        per = {c: [int(v) for v in total[c]] for c in (1, 2, 3)}  # tp, n_pred, n_true

        def f1(t, p, n):
            # no true member of a class (dopants in a pure metal): F1 is undefined; the false
            # calls are counted instead
            return 2 * t / (p + n) if n else float("nan")

        res = {"f1": f1(tp, n_pred, n_true), "rmse_A": float(np.sqrt(np.sum(sq) / max(tp, 1))),
               "f1_atom": f1(*per[1]), "f1_dopant": f1(*per[2]), "f1_vacancy": f1(*per[3]), "n_true": n_true,
               "n_true_dopant": per[2][2], "n_true_vacancy": per[3][2],
               "false_dopant": per[2][1] - per[2][0], "false_vacancy": per[3][1] - per[3][0]}
        allres[name] = res

        def cell(c, width):
            if per[c][2]:
                return f"{f1(*per[c]):{width}.4f}"
            return f"{'- (' + str(per[c][1]) + ' false)':>{width}s}"

        print(f"{name:14s} {res['f1']:9.4f} {res['rmse_A']:7.3f} {res['f1_atom']:8.4f} "
              f"{cell(2, 9)} {cell(3, 10)}" + (f"  ({routed} of {args.n} to {args.single_atoms})" if single else ""))
        if single is not None:
            res["routed_to_single_atoms"] = routed
        if args.ci:
            lo, hi = bootstrap_f1(counts.astype(float))
            res["ci95"] = {}
            parts = []
            for j, label in enumerate(("all", "atom", "dopant", "vacancy")):
                n = int(total[j, 2])
                if n:
                    res["ci95"][label] = [float(lo[j]), float(hi[j])]
                    parts.append(f"{label} {lo[j]:.3f}-{hi[j]:.3f} (n={n})")
            print("    95 % CI over images: " + ", ".join(parts))
        if args.confusion and conf:
            res["confusion"] = {f"{a} -> {b}": n for (a, b), n in sorted(conf.items())}
            for (a, b), n in sorted(conf.items()):
                print(f"    {a:>22s} -> {b:<10s} {n:5d}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "px_A": px, "dose": args.dose,
                                               "n": args.n, "material_hint": args.material_hint,
                                               "families": allres}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
