"""Cost of the material hint (atomlens.analysis.material) next to the detection it follows.

Times `detect` on a simulated MoSe2 image (warm model, median of several runs) and, in the same
run, `apply_material_hint` on its atoms, and prints the hint's share; then the same for a
larger image, where the hint works in strips.  It also times `suggest_material` (the note that
suggests the hint when no material is given, computed on every calibrated HAADF analysis),
which reads only the centre of the image.  Accuracy with and without the hint is measured
by `bench/accuracy.py --material-hint`.

    python bench/material_hint.py [--runs 5] [--sizes 1024,2048]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from atomlens.analysis.material import apply_material_hint, suggest_material
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    pred = Predictor("stem-haadf", args.device)
    cfg = {"structure": "MoSe2", "shape": [512, 512], "px_size_A": 0.1, "mode": "HAADF",
           "defects": {"dopant": {"element": "W", "rate": 0.1, "sites": "metal"},
                       "partial_vacancy": {"rate": 0.05, "sites": "chalcogen"}},
           "noise": {"dose_e_per_A2": 1e5}}
    tile = simulate(cfg, 0).image
    print(f"stem-haadf on {pred.device}, MoSe2 at 0.1 Å/px, median of {args.runs} runs")
    print(f"{'size':>6s} {'columns':>8s} {'detect s':>9s} {'hint s':>7s} {'hint/detect':>11s} {'changed':>8s} "
          f"{'suggest s':>9s} {'suggest/detect':>14s}")
    for n in (int(s) for s in args.sizes.split(",")):
        img = np.tile(tile, (n // 512,) * 2)
        pred.detect(img[:256, :256], 0.01)  # warm
        t_det, t_hint, t_sug = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            atoms, _, info = pred.detect(img, 0.01, keep_prob=False)
            t_det.append(time.perf_counter() - t)
            t = time.perf_counter()
            out, note = apply_material_hint(atoms, img, "MoSe2", px_size_A=info["px_size_A"])
            t_hint.append(time.perf_counter() - t)
            t = time.perf_counter()
            suggestion = suggest_material(atoms, img, info["px_size_A"])
            t_sug.append(time.perf_counter() - t)
            assert suggestion and "MoSe2" in suggestion, suggestion
        d, h, g = statistics.median(t_det), statistics.median(t_hint), statistics.median(t_sug)
        print(f"{n:6d} {len(atoms):8d} {d:9.3f} {h:7.3f} {h / d:11.2f} {int((out.cls != atoms.cls).sum()):8d} "
              f"{g:9.3f} {g / d:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
