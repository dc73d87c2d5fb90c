"""Detection on the real files in ../shared/data/real: agreement with AtomNet's published
positions for the graphene images, and overlay pictures of every STEM file for docs/.

    python bench/real_data.py [--model stem-haadf] [--pictures docs/]
    python bench/real_data.py --pt [--model stem-haadf] [--pictures docs/] [--json out.json]

``--pt`` scores the model on the 11 hand-labelled HAADF images of single Pt atoms on amorphous
carbon in ../shared/data/real-labelled/pt-on-carbon (481 atoms; the *train* split of the
published set, so every figure here is a validation figure) under the data set's published
rule (21x21 px boxes centred on a predicted and a labelled atom overlap with IoU >= 0.5, one
to one) and under one-to-one matching within 3 px, per image and pooled; with --pictures it
writes overlays of three images (true positives green, false positives red, misses yellow,
under the IoU rule).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
PT = ROOT.parent / "shared" / "data" / "real-labelled" / "pt-on-carbon"
#: The published rule of the Pt data set: 21x21 px boxes, IoU >= 0.5, one to one.
PT_BOX_PX, PT_MIN_IOU = 21.0, 0.5
#: The second rule: one-to-one matching within this distance (px).
PT_RADIUS_PX = 3.0
#: The images drawn as overlays (a sparse, a middling and a crowded one).
PT_PICTURES = ("021", "038", "049")
#: Class names that are not atoms (a vacancy marks a place without one).
NOT_ATOMS = ("vacancy", "background")
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


# ----------------------------------------------------------------------------- Pt single atoms
def pt_images(folder=PT) -> list[dict]:
    """The labelled Pt images: dicts ``id`` ("021"), ``path`` (the .tif), ``labels`` (the
    NNN_Results.csv), sorted by id.  Raises FileNotFoundError when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no Pt data at {folder}")
    out = []
    for tif in sorted(folder.glob("*_HAADF_*.tif")):
        key = tif.name.split("_")[0]
        csv = folder / f"{key}_Results.csv"
        if csv.is_file():
            out.append({"id": key, "path": tif, "labels": csv})
    if not out:
        raise FileNotFoundError(f"no NNN_HAADF_*.tif with NNN_Results.csv in {folder}")
    return out


def pt_labels(csv_path) -> np.ndarray:
    """(n, 2) labelled positions (x, y) in px, read by the same parser as Annotate's point import."""
    from atomlens.analysis.point_lists import read_point_list

    pts = read_point_list(csv_path)
    return np.stack([pts.x, pts.y], 1)


def atom_xy(atoms) -> np.ndarray:
    """(n, 2) positions of the found atoms that are atoms (vacancies left out)."""
    names = np.asarray(atoms.names(), object) if len(atoms) else np.zeros(0, object)
    keep = ~np.isin(names, NOT_ATOMS)
    return np.stack([atoms.x[keep], atoms.y[keep]], 1) if keep.any() else np.zeros((0, 2))


def pt_score(pred_xy, true_xy) -> dict:
    """Counts and precision/recall/F1 under both rules: ``{"iou": {...}, "r3": {...}}`` (each
    as :func:`atomlens.analysis.metrics.prf_counts`); ``"iou"`` also keeps ``matches``."""
    from atomlens.analysis.metrics import box_iou_scores, detection_scores, prf_counts

    iou = box_iou_scores(pred_xy, true_xy, PT_BOX_PX, PT_MIN_IOU)
    r3 = detection_scores(pred_xy, None, true_xy, None, PT_RADIUS_PX)
    return {"iou": iou, "r3": prf_counts(r3["tp"], r3["n_pred"], r3["n_true"])}


def pt_pool(scores) -> dict:
    """Pooled counts and figures of several :func:`pt_score` results."""
    from atomlens.analysis.metrics import prf_counts

    out = {}
    for rule in ("iou", "r3"):
        tp = sum(s[rule]["tp"] for s in scores)
        n_pred = sum(s[rule]["n_pred"] for s in scores)
        n_true = sum(s[rule]["n_true"] for s in scores)
        out[rule] = prf_counts(tp, n_pred, n_true)
    return out


def pt_line(name: str, s: dict) -> str:
    """One printed line of figures under both rules."""
    a, b = s["iou"], s["r3"]
    return (f"{name:>7}: {a['n_true']:4d} labelled, {a['n_pred']:5d} found | IoU>=0.5: F1 {a['f1']:.3f} "
            f"P {a['precision']:.3f} R {a['recall']:.3f} (tp {a['tp']}, fp {a['fp']}, fn {a['fn']}) | "
            f"3 px: F1 {b['f1']:.3f} P {b['precision']:.3f} R {b['recall']:.3f}")


def pt_detect(predictor, path, threshold: float = 0.5):
    """Run the analysis as the app does on one Pt image; returns (image, AnalysisResult)."""
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.io import load

    mg = load(path)
    img = mg.frame(0)
    return img, analyse_image(img, predictor, px_size_nm=mg.px_size_nm, mode=mg.mode, threshold=threshold)


def pt_overlay(image, pred_xy, true_xy, score: dict, path, size: int = 768, title: str = "") -> None:
    """Draw true positives (green rings at the prediction), false positives (red rings) and
    misses (yellow squares at the label) of the IoU rule on the image; written via a
    temporary file and a rename."""
    from PIL import Image, ImageDraw

    from atomlens.fileio import atomic_write_with
    from atomlens.sim.dataset import stretch_to_uint8

    s = size / max(image.shape)
    im = Image.fromarray(stretch_to_uint8(image)).resize((round(image.shape[1] * s), round(image.shape[0] * s)),
                                                        Image.BILINEAR).convert("RGB")
    d = ImageDraw.Draw(im)
    m = score["iou"]["matches"]
    tp_p = set(m[:, 0].tolist())
    tp_t = set(m[:, 1].tolist())
    r = 10.5 * s * 0.6
    for i, (x, y) in enumerate(np.asarray(pred_xy).reshape(-1, 2)):
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        colour = (60, 230, 60) if i in tp_p else (255, 50, 50)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=2)
    for j, (x, y) in enumerate(np.asarray(true_xy).reshape(-1, 2)):
        if j in tp_t:
            continue
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        d.rectangle([cx - r, cy - r, cx + r, cy + r], outline=(255, 220, 0), width=2)
    a = score["iou"]
    d.rectangle([0, 0, im.width, 18], fill=(0, 0, 0))
    d.text((4, 3), f"{title}  IoU rule: F1 {a['f1']:.2f} (tp {a['tp']} green, fp {a['fp']} red, "
                   f"missed {a['fn']} yellow)", fill=(255, 255, 255))

    def write(tmp):
        im.save(tmp, format="PNG")

    atomic_write_with(Path(path), write)


def pt_bench(predictor, pictures=None, ids=None, prefix: str = "pt", threshold: float = 0.5,
             log=print) -> dict:
    """Score `predictor` on the Pt images (`ids`, default all 11); print per image and pooled.

    Returns ``{"per_image": {id: score}, "pooled": score, "seconds": float}`` (scores as
    :func:`pt_score` without the match lists)."""
    import time

    t0 = time.time()
    per, scores = {}, []
    for e in pt_images():
        if ids is not None and e["id"] not in ids:
            continue
        img, res = pt_detect(predictor, e["path"], threshold)
        pred_xy, true_xy = atom_xy(res.atoms), pt_labels(e["labels"])
        s = pt_score(pred_xy, true_xy)
        log(pt_line(e["id"], s))
        scores.append(s)
        per[e["id"]] = {rule: {k: v for k, v in s[rule].items() if k != "matches"} for rule in s}
        if pictures and e["id"] in PT_PICTURES:
            Path(pictures).mkdir(parents=True, exist_ok=True)
            pt_overlay(img, pred_xy, true_xy, s, Path(pictures) / f"{prefix}_{e['id']}.png",
                       title=f"{e['id']} ({predictor.card.get('name')} {predictor.card.get('version', '')})")
    pooled = pt_pool(scores)
    log(pt_line("pooled", pooled))
    return {"per_image": per, "pooled": pooled, "seconds": round(time.time() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stem-haadf")
    ap.add_argument("--pictures", default=None, help="folder for overlay PNGs")
    ap.add_argument("--stm-model", default="stm-topo")
    ap.add_argument("--pt", action="store_true", help="score on the labelled Pt single-atom images only")
    ap.add_argument("--threshold", type=float, default=0.5, help="detection threshold (--pt)")
    ap.add_argument("--json", default=None, help="write the --pt figures to this JSON file")
    ap.add_argument("--prefix", default="pt", help="file name prefix of the --pt overlays (<prefix>_<id>.png)")
    args = ap.parse_args()
    if args.pt:
        import json

        from atomlens.nn.infer import Predictor

        warnings.simplefilter("ignore")
        pred = Predictor(args.model, "auto")
        print(f"Pt single atoms on a-C ({PT}), model {pred.card.get('name')} {pred.card.get('version', '')}, "
              f"threshold {args.threshold}: validation figures (the train split of the published set)")
        res = pt_bench(pred, args.pictures, prefix=args.prefix, threshold=args.threshold)
        print(f"({res['seconds']:.0f} s)")
        if args.json:
            from atomlens.fileio import atomic_write_text

            atomic_write_text(args.json, json.dumps({"model": pred.card.get("name"),
                                                     "version": pred.card.get("version"), **res}, indent=1))
        return 0
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
