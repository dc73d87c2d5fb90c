"""Detection under smooth backgrounds: ramps, bright contamination patches, a thickness bowl,
gain and offset (issue 24, "How to measure").

Each perturbation is added to a clean image, which is analysed as `atomlens detect` does
(the bundled model, the image's own calibration); the atoms found are compared with those
found on the clean image (one to one within 0.5 Å), outside the patch where there is one
(pixels where the patch is above 5 % of its peak are left out, together with the atoms
there).  Amplitudes are in units of the clean image's contrast, its 1-99 % intensity range.

    python bench/background_sweep.py [--model stem-haadf] [--images G-Si-2nm,graphene,...]

Real images are read from ../shared/data/real (G-Si-2nm and G-GrainBoundary-4nm); the
simulated ones (graphene, MoS2, SrTiO3) are made by the simulator with fixed seeds.
Prints one line per image and perturbation with F1 against the clean image, and the worst F1
of each kind.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_data's overlay()
ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
REAL_IMAGES = ("G-Si-2nm", "G-GrainBoundary-4nm")
SIM_IMAGES = {"graphene": 0.1, "MoS2": 0.15, "SrTiO3": 0.15}  # structure: Å/px
PATCH_EDGE = 0.05  # a pixel belongs to the patch where it is above this fraction of its peak


def contrast(img: np.ndarray) -> float:
    """The 1-99 % intensity range."""
    lo, hi = np.percentile(img, [1, 99])
    return float(hi - lo)


def ramp(shape, angle_rad: float) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image along `angle_rad`."""
    yy, xx = np.indices(shape, dtype=np.float64)
    t = np.cos(angle_rad) * xx + np.sin(angle_rad) * yy
    return (t - t.min()) / max(np.ptp(t), 1e-12)


def patch(shape, fraction: float, corner: int) -> np.ndarray:
    """A smooth bright blob (peak 1) in one corner covering about `fraction` of the field
    (a disc of that area with a soft edge of a tenth of its radius)."""
    h, w = shape
    r = np.sqrt(4 * fraction * h * w / np.pi)  # a quarter disc of radius r in the corner
    cy, cx = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)][corner % 4]
    yy, xx = np.indices(shape, dtype=np.float64)
    d = np.hypot(yy - cy, xx - cx)
    soft = max(2.0, 0.1 * r)
    return 1.0 / (1.0 + np.exp((d - r) / soft))


def bowl(shape) -> np.ndarray:
    """A background that rises towards the edges (0 in the centre, 1 in the corners)."""
    yy, xx = np.indices(shape, dtype=np.float64)
    u = (yy - (shape[0] - 1) / 2) / (shape[0] / 2)
    v = (xx - (shape[1] - 1) / 2) / (shape[1] / 2)
    return (u**2 + v**2) / 2


def perturbations(shape, seed: int = 0):
    """(name, kind, additive background in contrast units or None, gain, offset) for one image."""
    rng = np.random.default_rng(seed)
    out = []
    for a in (0.5, 2.0, 10.0):
        out.append((f"ramp {a:g}x", "ramp", a * ramp(shape, rng.uniform(0, 2 * np.pi)), 1.0, 0.0))
    for frac in (0.05, 0.15, 0.30):
        for b in (1.0, 10.0):
            out.append((f"patch {frac:.0%} at {b:g}x", "patch", b * patch(shape, frac, int(rng.integers(4))), 1.0, 0.0))
    for a in (2.0, 10.0):
        out.append((f"bowl {a:g}x", "bowl", a * bowl(shape), 1.0, 0.0))
    out.append(("gain 1e3, offset 1e5", "gain", None, 1e3, 1e5))
    return out


def load_images(names):
    """(name, image, px_size_nm) for the real and simulated images named."""
    from atomlens.io import load
    from atomlens.sim import simulate

    out = []
    for name in names:
        if name in REAL_IMAGES:
            if not REAL.is_dir():
                print(f"(no real data at {REAL}: {name} skipped)", file=sys.stderr)
                continue
            mg = load(REAL / f"{name}.hdf5")
            out.append((name, mg.frame(0).astype(np.float64), mg.px_size_nm))
        elif name in SIM_IMAGES:
            px = SIM_IMAGES[name]
            r = simulate({"structure": name, "shape": [384, 384], "px_size_A": px,
                          "noise": {"dose_e_per_A2": 1e5}}, 24_000_000 + len(out))
            out.append((f"sim {name}", r.image.astype(np.float64), px / 10))
        else:
            raise SystemExit(f"unknown image {name!r}; known: {', '.join(REAL_IMAGES + tuple(SIM_IMAGES))}")
    return out


def score(atoms, ref, keep_mask, r_px: float) -> float:
    """F1 of `atoms` against `ref`, both restricted to pixels where `keep_mask` is true."""
    from atomlens.analysis.metrics import detection_scores

    def inside(a):
        if not len(a):
            return np.zeros((0, 2))
        iy = np.clip(np.round(a.y).astype(int), 0, keep_mask.shape[0] - 1)
        ix = np.clip(np.round(a.x).astype(int), 0, keep_mask.shape[1] - 1)
        return a.xy[keep_mask[iy, ix]]

    p, t = inside(atoms), inside(ref)
    return float(detection_scores(p, np.ones(len(p), int), t, np.ones(len(t), int), r_px)["f1"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stem-haadf")
    ap.add_argument("--images", default=",".join(REAL_IMAGES + tuple(SIM_IMAGES)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pictures", default=None,
                    help="folder for overlays of the grain boundary with a 15 %% patch at 10x and a 10x ramp")
    ap.add_argument("--prefix", default="sweep", help="file name prefix of the overlays")
    args = ap.parse_args(argv)
    from atomlens.nn.infer import Predictor

    warnings.simplefilter("ignore")
    pred = Predictor(args.model, args.device)
    worst: dict[str, float] = {}
    t0 = time.perf_counter()
    for k, (name, img, px_nm) in enumerate(load_images(args.images.split(","))):
        ref, _, _ = pred.detect(img.astype(np.float32), px_nm)
        c = contrast(img)
        r_px = 0.05 / px_nm
        print(f"{name}: {len(ref)} atoms on the clean image ({img.shape[1]} x {img.shape[0]} px, {px_nm * 1000:.2f} pm/px)")
        for label, kind, bg, gain, offset in perturbations(img.shape, seed=k):
            pert = img * gain + offset + (0.0 if bg is None else c * bg)
            atoms, _, _ = pred.detect(pert.astype(np.float32), px_nm)
            keep = np.ones(img.shape, bool) if kind != "patch" else bg < PATCH_EDGE * bg.max()
            f1 = score(atoms, ref, keep, r_px)
            if args.pictures and name == "G-GrainBoundary-4nm" and label in ("patch 15% at 10x", "ramp 10x"):
                from real_data import overlay

                tag = "patch" if kind == "patch" else "ramp"
                overlay(pert, atoms, Path(args.pictures) / f"{args.prefix}_{tag}_{pred.card['name']}-{pred.card['version']}.png")
            worst[kind] = min(worst.get(kind, 1.0), f1)
            print(f"  {label:24s} F1 {f1:.3f} against the clean image ({len(atoms)} atoms; "
                  f"{keep.mean():.0%} of the field scored)")
    print("worst F1 per kind: " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items())
          + f" ({time.perf_counter() - t0:.1f} s of detection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
