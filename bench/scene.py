"""The test for single atoms on a support (atomlens.analysis.scene): where it fires, and what it
costs next to the detection it follows.

1. For each family of the stem-haadf recipe, on `--n` simulated images with seeds no training
   saw (2.1e9 onwards by default, the seeds the thresholds were chosen on; the test seeds 3e9
   with `--seed-base 3000000000`), how many images the step changed, how many columns it left
   out (film spots and vacancies) and how many dopants it called atoms, and the F1 of every
   column with and without it.  It must change nothing in a lattice.
2. Its time on 1024x1024 images (warm model, median of `--runs` runs), a lattice (it only
   measures the neighbour distances) and single atoms (it also reads the column intensities),
   against the detection's.

    python bench/scene.py [--n 30] [--runs 5] [--seed-base 2100005000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="images per family")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed-base", type=int, default=2_100_005_000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from accuracy import families, sized

    from atomlens.analysis.metrics import detection_scores
    from atomlens.analysis.scene import isolated_atoms
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    pred = Predictor("stem-haadf", args.device)
    px = pred.px_size_A
    recipe = json.loads((ROOT / "resources" / "recipes" / "stem-haadf.json").read_text())
    fams = dict(families(recipe))
    print(f"stem-haadf on {pred.device}, {args.n} images per family (256x256, {px} Å/px, 1e5 e/Å²), "
          f"seeds from {args.seed_base}")
    print(f"{'family':14s} {'changed':>8s} {'left out':>9s} {'to atoms':>10s} {'F1 without':>10s} {'F1 with':>8s}")
    for name, cfg in fams.items():
        cfg = sized(cfg, size=256, px_A=px, dose=1e5)
        changed = left = recl = 0
        tot = np.zeros((2, 3))
        for i in range(args.n):
            r = simulate(cfg, args.seed_base + i)
            atoms, _, info = pred.detect(r.image, px / 10)
            out, note = isolated_atoms(atoms, r.image, info["px_size_A"])
            txy, tcls = r.points_px()
            for k, a in enumerate((atoms, out)):
                s = detection_scores(a.xy, a.cls, txy, tcls, 0.5 / px)
                tot[k] += (s["tp"], s["n_pred"], s["n_true"])
            if note:
                changed += 1
                left += len(atoms) - len(out)
                recl += int((atoms.cls == 2).sum() - (out.cls == 2).sum())
        f1 = 2 * tot[:, 0] / (tot[:, 1] + tot[:, 2])
        print(f"{name:14s} {changed:8d} {left:9d} {recl:10d} {f1[0]:10.4f} {f1[1]:8.4f}")

    print(f"\n1024x1024 at {px} Å/px, median of {args.runs} runs")
    print(f"{'image':14s} {'columns':>8s} {'detect s':>9s} {'scene s':>8s} {'scene/detect':>12s}")
    for name, seed in (("graphene", 7), ("single_atoms", 7)):
        cfg = sized(fams[name], size=1024, px_A=px, dose=1e5)
        if name == "single_atoms":
            cfg["structure_params"] = {**cfg["structure_params"], "n_atoms": 200}
        img = simulate(cfg, seed).image
        pred.detect(img[:256, :256], px / 10)  # warm
        t_det, t_sc = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            atoms, _, info = pred.detect(img, px / 10, keep_prob=False)
            t_det.append(time.perf_counter() - t)
            t = time.perf_counter()
            isolated_atoms(atoms, img, info["px_size_A"])
            t_sc.append(time.perf_counter() - t)
        d, s = statistics.median(t_det), statistics.median(t_sc)
        print(f"{name:14s} {len(atoms):8d} {d:9.3f} {s:8.4f} {s / d:12.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
