"""Speed of `detect` (pixels to atom table) with a warm model, and memory on a large image.

Prints the median of several runs for a 1024x1024 image at 0.1 Å/px, against a baseline
measured in the same run: the bare network forward pass on the resampled image (so the
overhead of resampling, tiling, softmax and atom finding shows as a ratio).  Then the peak
memory (max RSS) of a fresh process detecting on a 4096x4096 and an 8192x8192 image (images
this large run in strips and keep no probability map, so the growth from one to the other is
the image and the atom table, not the network's activations), and the process start-up time
of `atomlens detect --help`.

    python bench/detect_speed.py [--model stem-haadf] [--runs 5] [--device auto] [--big 4096,8192]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BIG = """
import resource, sys, time, numpy as np
from atomlens.nn.infer import Predictor
from atomlens.sim import simulate
p = Predictor(sys.argv[1], sys.argv[2])
tile = simulate({"structure": "graphene", "shape": [512, 512], "px_size_A": 0.1}, 0).image
img = np.tile(tile, (int(sys.argv[3]) // 512,) * 2)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
atoms, prob, info = p.detect(img, 0.01)
dt = time.perf_counter() - t
print(f"{len(atoms)} {dt:.2f} {r0 / 1024:.0f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
      f"{img.nbytes / 2**20:.0f} {-1 if prob is None else prob.nbytes / 2**20:.0f}")
"""


def _median_detect(pred, img, runs: int):
    """(median seconds of `runs` warm ``pred.detect`` calls on `img` at 0.01 nm/px, the last
    call's result); the GPU is synchronised around each call."""
    import torch

    pred.detect(img, 0.01, keep_prob=False)  # warm-up
    times = []
    for _ in range(runs):
        if pred.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = pred.detect(img, 0.01, keep_prob=False)
        if pred.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stem-haadf")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--big", default="4096,8192", help="sizes of the large images for the memory test")
    ap.add_argument("--tta", action="store_true",
                    help="also time detect --tta (the 8 rotations and mirror images averaged) on the same image")
    args = ap.parse_args()
    import torch

    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    pred = Predictor(args.model, args.device)
    img = simulate({"structure": "graphene", "shape": [1024, 1024], "px_size_A": 0.1,
                    "defects": {"vacancy": {"rate": 0.01}, "dopant": {"element": "Si", "n": 5}}}, 0).image
    med, (atoms, _, info) = _median_detect(pred, img, args.runs)
    s = info["scale"]
    x = torch.from_numpy(pred.normalise(img))[None, None]
    x = torch.nn.functional.interpolate(x, scale_factor=s, mode="area" if s < 1 else "bilinear").to(pred.device)
    if pred.device == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    base = []
    with torch.inference_mode():
        pred.model(x)
        for _ in range(args.runs):
            t = time.perf_counter()
            pred.model(x)
            if pred.device == "cuda":
                torch.cuda.synchronize()
            base.append(time.perf_counter() - t)
    b = statistics.median(base)
    print(f"device {pred.device}, torch threads {torch.get_num_threads()}, "
          f"{'all on the device' if info.get('on_device') else 'atom finding on the CPU'}")
    print(f"1024x1024 at 0.1 Å/px -> {x.shape[-1]}x{x.shape[-2]} at the model's {pred.px_size_A} Å/px: "
          f"detect median {med * 1e3:.0f} ms over {args.runs} runs ({len(atoms)} atoms, the mean of "
          f"{len(pred.views)} views); bare forward pass {b * 1e3:.0f} ms; ratio {med / b:.2f}")
    m1, _ = _median_detect(Predictor(args.model, args.device, single_view=True), img, args.runs)
    print(f"1024x1024 with --single-view (one pass): detect median {m1 * 1e3:.0f} ms; the default takes "
          f"{med / m1:.2f} x as long")
    if args.tta:
        mt, _ = _median_detect(Predictor(args.model, args.device, tta=True), img, args.runs)
        print(f"1024x1024 with --tta (8 views averaged): detect median {mt * 1e3:.0f} ms over {args.runs} runs; "
              f"{mt / med:.2f} x the default")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "atomlens", "detect", "--help"], capture_output=True, check=True)
    print(f"process start-up (atomlens detect --help): {time.perf_counter() - t:.2f} s")
    if not args.skip_big:
        for size in [int(v) for v in args.big.split(",")]:
            out = subprocess.run([sys.executable, "-c", BIG, args.model, args.device, str(size)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:])
                return 1
            n, dt, r0, r1, mi, mp = out.stdout.split()
            kept = "processed in strips, no probability map kept" if mp == "-1" else f"probability map {mp} MB"
            print(f"{size}x{size} at 0.1 Å/px: {n} atoms in {dt} s; peak RSS {r1} MB (after loading the "
                  f"model: {r0} MB; the float32 image is {mi} MB; {kept})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
