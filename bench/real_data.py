"""Detection on the real files in ../shared/data/real: agreement with AtomNet's published
positions for the graphene images, and overlay pictures of every STEM file for docs/.

    python bench/real_data.py [--model stem-haadf] [--pictures docs/]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
ATOMNET_EDGE_PX = 5
COLOURS = {1: (80, 200, 255), 2: (255, 60, 60), 3: (255, 220, 0)}


def overlay(image, atoms, path, size=512):
    from PIL import Image, ImageDraw

    from atomlens.sim.dataset import stretch_to_uint8

    g = stretch_to_uint8(image)
    s = size / max(image.shape)
    im = Image.fromarray(g).resize((round(image.shape[1] * s), round(image.shape[0] * s)), Image.BILINEAR).convert("RGB")
    d = ImageDraw.Draw(im)
    r = max(2, min(6, s * 3))
    for x, y, c in zip(atoms.x, atoms.y, atoms.cls):
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=COLOURS.get(int(c), (255, 255, 255)), width=2)
    im.save(path)


def stripes(img, atoms) -> str:
    """The stripes check's ratio for the atoms found (a note from 20 up; lattices score 1-5)."""
    from atomlens.analysis.lattice import STRIPE_RATIO, stripes_ratio

    ratio = stripes_ratio(img, atoms.xy)[0]
    return f"stripes ratio {ratio:.1f}" + (" (stripes note)" if ratio >= STRIPE_RATIO else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stem-haadf")
    ap.add_argument("--pictures", default=None, help="folder for overlay PNGs")
    ap.add_argument("--stm-model", default="stm-topo")
    args = ap.parse_args()
    if not REAL.is_dir():
        print(f"no real data at {REAL}", file=sys.stderr)
        return 1
    from atomlens.analysis.metrics import detection_scores
    from atomlens.io import load
    from atomlens.nn.infer import Predictor

    warnings.simplefilter("ignore")
    pred = Predictor(args.model, "auto")
    for name in ("G-Si-2nm", "G-GrainBoundary-4nm"):
        mg = load(REAL / f"{name}.hdf5")
        img = mg.frame(0)
        atoms, _, info = pred.detect(img, mg.px_size_nm)
        ref = np.loadtxt(REAL / f"{name}-coord.csv", delimiter=",", skiprows=1)
        r_px = 0.05 / mg.px_size_nm  # 0.5 Å
        s = detection_scores(atoms.xy, np.ones(len(atoms), int), ref[:, :2], np.ones(len(ref), int), r_px)
        # AtomNet's lists leave out the columns within 5 px of the image edge (its locator's
        # dist_edge = 5; none of its positions is nearer than 4.3 px): the same margin, as
        # `detect --edge-margin-px 5` applies it, compares like with like
        inner = atoms.away_from_edges(img.shape, ATOMNET_EDGE_PX)
        si = detection_scores(inner.xy, np.ones(len(inner), int), ref[:, :2], np.ones(len(ref), int), r_px)
        # AtomNet's files class every position 0, so the dopant is judged from the image: the
        # brightest column (the Si in G-Si-2nm) must be the one called a dopant
        heavy = atoms.xy[atoms.cls == 2]
        iy, ix = np.clip(np.round(atoms.y).astype(int), 0, img.shape[0] - 1), np.clip(np.round(atoms.x).astype(int), 0, img.shape[1] - 1)
        from scipy import ndimage

        smooth = ndimage.gaussian_filter(img, 0.3 / (mg.px_size_nm * 10) * 2)
        brightest = atoms.xy[np.argmax(smooth[iy, ix])] if len(atoms) else None
        found = f"; dopants called: {len(heavy)} at {np.round(heavy, 1).tolist()}"
        if brightest is not None:
            found += f"; brightest column at {np.round(brightest, 1).tolist()}"
        print(f"{name}: {len(atoms)} atoms vs {len(ref)} AtomNet positions: F1 {s['f1']:.4f}, "
              f"precision {s['precision']:.4f}, recall {s['recall']:.4f}, RMSE {s['rmse'] * mg.px_size_nm * 10:.3f} Å; "
              f"with AtomNet's {ATOMNET_EDGE_PX} px edge margin: {len(inner)} atoms, F1 {si['f1']:.4f}, precision {si['precision']:.4f}, "
              f"recall {si['recall']:.4f}{found}")
        if args.pictures:
            overlay(img, atoms, Path(args.pictures) / f"detect_{name}.png")
    from atomlens.nn.bundle import BundleError

    try:
        stm = Predictor(args.stm_model, "auto")
    except BundleError as exc:
        stm = None
        print(f"(no STM pictures: {exc})")
    if stm is not None:
        # WSe2 JPEG: 5 x 5 nm over 512 px, known only from its file name
        for f, px in (("example_TOPO.sxm", None), ("STM_nanonis_generic_4_5.sxm", None),
                      ("WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg", 5.0 / 512)):
            mg = load(REAL / f)
            img = mg.frame(0)
            img = img - np.polyval(np.polyfit(np.arange(img.shape[1]), img.mean(0), 1), np.arange(img.shape[1]))[None]
            atoms, _, info = stm.detect(img, px or mg.px_size_nm)
            print(f"{f}: {len(atoms)} columns ({', '.join(f'{n} {c}' for c, n in zip(*np.unique(atoms.names(), return_counts=True)))})"
                  f"; {stripes(img, atoms)}")
            if args.pictures:
                overlay(img, atoms, Path(args.pictures) / f"detect_{Path(f).stem[:24]}.png")
    if args.pictures:
        for f in ("Acquisition_18.emd", "16_STOimage_1.ser", "test_ADF_cropped.hdf5"):
            mg = load(REAL / f)
            atoms, _, info = pred.detect(mg.frame(0), mg.px_size_nm)
            overlay(mg.frame(0), atoms, Path(args.pictures) / f"detect_{Path(f).stem}.png")
            print(f"{f}: {len(atoms)} atoms ({', '.join(f'{n} {c}' for c, n in zip(*np.unique(atoms.names(), return_counts=True)))})"
                  f"; {stripes(mg.frame(0), atoms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
