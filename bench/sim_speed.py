"""Throughput of the simulation engine: labelled 256x256 images per second on all cores.

Each image is a randomly rotated, shifted graphene lattice of ~600 columns at 0.15 Å/px with
vacancies and a dopant, rendered as HAADF with a physical probe, Poisson dose noise, line
jitter and a background, with its disc masks and point labels: what training draws on the fly.
Prints the median over several rounds for 1 process and for N processes (N = cores), and,
as a baseline measured in the same run, the time of one bare 256x256 FFT convolution
(scipy.ndimage.gaussian_filter, sigma 2 px) so that figures from different machines compare.

    python bench/sim_speed.py [--n 400] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

CONFIG = {
    "structure": "graphene",
    "shape": [256, 256],
    "px_size_A": 0.15,
    "defects": {"vacancy": {"rate": 0.02}, "dopant": {"element": "Si", "n": 1}},
    "probe": {"kv": 60, "alpha_mrad": 30, "source_fwhm_A": 0.6},
    "noise": {"dose_e_per_A2": 1e5, "jitter_px": 0.3, "background": 0.1},
    "augment": {"rotation": True, "shift": True, "jiggle_A": 0.02},
}


def _work(seeds):
    from atomlens.sim import simulate

    n_atoms = 0
    for s in seeds:
        n_atoms += len(simulate(CONFIG, int(s)).atoms)
    return n_atoms


def run(n: int, workers: int) -> tuple[float, float]:
    seeds = np.arange(n)
    t = time.perf_counter()
    if workers == 1:
        atoms = _work(seeds)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            atoms = sum(pool.map(_work, np.array_split(seeds, workers * 4)))
    return n / (time.perf_counter() - t), atoms / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    from scipy import ndimage

    from atomlens.sim import simulate

    simulate(CONFIG, 0)  # warm caches (probe, grids)
    img = np.random.default_rng(0).random((256, 256)).astype(np.float32)
    base = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for _ in range(50):
            ndimage.gaussian_filter(img, 2.0)
        base.append((time.perf_counter() - t) / 50)
    b = statistics.median(base)
    print(f"baseline: one 256x256 gaussian_filter(sigma=2): {b * 1e3:.2f} ms")
    for w in sorted({1, args.workers}):
        rates, atoms = [], 0
        for _ in range(args.rounds):
            r, atoms = run(args.n if w > 1 else args.n // 2, w)
            rates.append(r)
        med = statistics.median(rates)
        print(f"{w} process(es): {med:7.1f} images/s (median of {args.rounds}; {atoms:.0f} atoms/image; "
              f"{1e3 * w / med:.2f} ms per image per process = {w / med / b:.1f} baseline filters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
