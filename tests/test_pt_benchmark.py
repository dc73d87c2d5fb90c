"""The Pt single-atom benchmark's scoring (issue 24) and its fine-tuning path.

* the data set's published rule: 21x21 px boxes centred on a predicted and a labelled atom
  match when their IoU is >= 0.5, one to one by an optimal assignment
  (:func:`atomlens.analysis.metrics.match_boxes`), and one-to-one matching within 3 px
  (:func:`atomlens.analysis.metrics.detection_scores`), on hand-built cases;
* bench/real_data.py's per-image and pooled counts;
* bench/pt_finetune.py's path (labels imported as annotations, the Retrain dialog's settings
  form, build_finetune_recipe, TrainingJob, train) on a tiny model for a few steps: it trains
  and writes a bundle that the analysis can load.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from atomlens.analysis.metrics import box_iou, box_iou_scores, detection_scores, match_boxes, prf_counts

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_box_iou_exact_boundary():
    assert box_iou(7, 0) == 294 / 588 == 0.5  # 14 x 21 px overlap of two 441 px boxes
    assert box_iou(0, -7) == 0.5 and box_iou(0, 0) == 1.0 and box_iou(21, 0) == 0.0
    assert box_iou(3, 3) == pytest.approx(18 * 18 / (882 - 324))
    # the boundary matches, a hair beyond it does not; in x, in y and with sub-pixel positions
    for dx, dy, ok in ((7, 0, True), (0, 7, True), (7.01, 0, False), (3, 3, True), (4, 4, False)):
        ip, _, iou = match_boxes([[100.25 + dx, 50.5 + dy]], [[100.25, 50.5]])
        assert (len(ip) == 1) == ok, (dx, dy)
    assert box_iou_scores([[0, 0]], [[7, 0]], min_iou=0.51)["tp"] == 0
    # another box size: 11 px boxes 4 px apart: 7 x 11 / (242 - 77) = 0.467
    assert box_iou(4, 0, 11) == pytest.approx(77 / 165) and match_boxes([[0, 0]], [[4, 0]], 11)[0].size == 0


def test_box_matching_is_one_to_one_and_optimal():
    # two predictions on one label: one match, one false positive
    s = box_iou_scores([[10, 10], [11, 10]], [[10.5, 10]])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 0) and s["precision"] == 0.5 and s["recall"] == 1.0
    # greedy by best IoU would pair P0 with T0 (IoU 1) and leave P1 alone; the optimal assignment
    # pairs P0 with T1 (IoU exactly 0.5) and P1 with T0 (IoU 0.826): two matches
    P, T = [[0, 0], [-2, 0]], [[0, 0], [7, 0]]
    ip, it, iou = match_boxes(P, T)
    assert ip.tolist() == [0, 1] and it.tolist() == [1, 0]
    assert iou == pytest.approx([0.5, 399 / 483])
    s = box_iou_scores(P, T)
    assert (s["tp"], s["fp"], s["fn"], s["f1"]) == (2, 0, 0, 1.0)
    # far apart, empty sets
    assert box_iou_scores([[0, 0]], [[30, 0]])["f1"] == 0.0
    e = box_iou_scores(np.zeros((0, 2)), [[1, 1]])
    assert (e["tp"], e["fn"], e["precision"], e["recall"], e["f1"]) == (0, 1, 0.0, 0.0, 0.0)
    assert box_iou_scores(np.zeros((0, 2)), np.zeros((0, 2)))["f1"] == 1.0


def test_three_px_rule_is_one_to_one_within_radius():
    # detection_scores already matches one to one within a radius (<= max_dist)
    s = detection_scores([[0, 0], [0.5, 0], [20, 20]], None, [[3, 0], [50, 50]], None, 3.0)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 1)
    assert detection_scores([[0, 0]], None, [[3.01, 0]], None, 3.0)["tp"] == 0
    # the same optimal pairing as above: both labels matched
    s = detection_scores([[0, 0], [-2.5, 0]], None, [[0, 0], [2.9, 0]], None, 3.0)
    assert s["tp"] == 2


def test_bench_scores_and_pools_per_image_counts():
    sys.path.insert(0, str(BENCH))
    import real_data

    a = real_data.pt_score([[10, 10], [40, 40], [70.5, 70]], [[10, 11], [42, 40], [90, 90]])
    assert (a["iou"]["tp"], a["iou"]["fp"], a["iou"]["fn"]) == (2, 1, 1)
    assert (a["r3"]["tp"], a["r3"]["fp"], a["r3"]["fn"]) == (2, 1, 1)
    b = real_data.pt_score([[10, 16]], [[10, 11], [5, 5]])  # 5 px off: a box match, not a 3 px one
    assert b["iou"]["tp"] == 1 and b["r3"]["tp"] == 0
    pooled = real_data.pt_pool([a, b])
    assert pooled["iou"] == prf_counts(3, 4, 5) and pooled["r3"] == prf_counts(2, 4, 5)
    assert pooled["iou"]["f1"] == pytest.approx(2 * 3 / 9)

    class Atoms:  # vacancies are places without an atom: never scored as atoms
        x, y, cls = np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([1, 3])

        def __len__(self):
            return 2

        def names(self):
            return ["atom", "vacancy"]

    assert real_data.atom_xy(Atoms()).tolist() == [[1.0, 3.0]]


def _spots(rng, n, size):
    xy = rng.uniform(8, size - 8, (n, 2))
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.2, 0.05, (size, size))
    for x, y in xy:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0 ** 2))
    return img.astype(np.float32), xy


def test_finetune_path_trains_tiny_model_and_writes_bundle(tmp_path, user_models, qapp):
    from _bundles import make_tiny_bundle

    from atomlens.analysis.point_lists import read_point_list
    from atomlens.io.micrograph import Micrograph
    from atomlens.nn.infer import Predictor

    sys.path.insert(0, str(BENCH))
    import pt_finetune

    base = make_tiny_bundle(tmp_path)
    rng = np.random.default_rng(1)
    entries, mg = [], None
    for k in range(2):
        img, xy = _spots(rng, 6, 80)
        csv = tmp_path / f"{k:03d}_Results.csv"
        csv.write_text(" ,X,Y\n" + "".join(f"{i + 1},{x:.1f},{y:.1f}\n" for i, (x, y) in enumerate(xy)))
        m = Micrograph(data=img, px_size_nm=0.0293, mode="HAADF", path=tmp_path / f"{k:03d}.tif")
        mg = mg or m
        e = pt_finetune.entry_for(m, read_point_list(csv), f"{k:064x}")
        assert e["annotations"].confirmed_mask().all() and len(e["annotations"]) == 6
        entries.append(e)
    out = tmp_path / "ft"
    lines = []
    path, best, s = pt_finetune.finetune(str(base), entries, mg, out, steps=2, minutes=1.0, real_share=100,
                                         batch=2, patch=32, val_n=1, num_workers=0, seed=0, log=lines.append)
    assert path == out and (out / "card.json").is_file() and (out / "weights.safetensors").is_file()
    assert s["steps"] == 2 and s["real_fraction"] == 1.0 and s["patch_px"] == 32
    assert any("2 annotated image(s), 12 atoms" in line for line in lines)
    assert best.get("step") in (1, 2) and np.isfinite(best["train_loss"])
    pred = Predictor(str(out), "cpu")
    assert pred.card["parent"]["name"] == "tiny"
    # the bundle runs in the analysis the benchmark scores
    sys.path.insert(0, str(BENCH))
    import real_data

    atoms = pred.detect(entries[0]["image"], 0.0293)[0]
    assert real_data.atom_xy(atoms).shape[1] == 2
