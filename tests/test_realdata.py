"""Annotated real images as training data: patches, mixing with simulations, evaluation on the
user's atoms, and a tiny fine-tune that records them in the card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from atomlens.analysis.annotations import Annotations
from atomlens.analysis.training_labels import export_training_pair
from atomlens.analysis.atoms import AtomList
from atomlens.nn.bundle import read_card, save_bundle
from atomlens.nn.models import build_model
from atomlens.nn.evaluate import evaluate_on_annotations
from atomlens.nn.realdata import AnnotatedImage, MixedStream, RealPatches, holdout_row
from atomlens.nn.train import train

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}


def _lattice_image(shape=(128, 128), spacing=12.0, sigma=2.0, seed=0):
    """Gaussian 'atoms' on a square grid, a few of them 'dopants' (brighter), with noise."""
    rng = np.random.default_rng(seed)
    g = np.arange(spacing / 2, shape[0] - 2, spacing)
    gy, gx = np.meshgrid(g, np.arange(spacing / 2, shape[1] - 2, spacing), indexing="ij")
    x = gx.ravel() + rng.uniform(-1, 1, gx.size)
    y = gy.ravel() + rng.uniform(-1, 1, gy.size)
    cls = np.where(rng.random(x.size) < 0.15, 2, 1)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.zeros(shape, np.float32)
    for xi, yi, c in zip(x, y, cls):
        img += (1.0 if c == 1 else 2.0) * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma ** 2))
    img += rng.normal(0, 0.05, shape).astype(np.float32)
    ann = Annotations(x=x, y=y, cls=cls, score=1.0, source="user", shape=shape, px_size_nm=0.01,
                      image_name=f"lattice{seed}.tif", image_sha256=f"{seed:02d}" * 32)
    return img.astype(np.float32), ann


@pytest.fixture(scope="module")
def item():
    img, ann = _lattice_image()
    return AnnotatedImage(img, ann)


def test_annotated_image_defaults_and_files(item, tmp_path):
    assert item.name == "lattice0.tif" and item.sha256 == "00" * 32 and item.px_size_A() == pytest.approx(0.1)
    assert item.match_radius_px() == pytest.approx(5.0)  # 0.5 Å at 0.1 Å/px
    coarse = AnnotatedImage(item.image, item.ann, px_size_nm=0.0293)  # 0.5 Å is 1.7 px here: hand clicks
    assert coarse.match_radius_px() == pytest.approx(3.0)  # miss by more, so 3 px at least
    paths = export_training_pair(item.image, item.ann, tmp_path, "lat")
    back = AnnotatedImage.from_files(paths[0], paths[2], weight=2.5)
    assert back.weight == 2.5 and back.sha256 == item.sha256 and back.n_atoms == item.n_atoms
    np.testing.assert_array_equal(back.image, item.image)
    np.testing.assert_array_equal(back.ann.x, item.ann.x)
    with pytest.raises(ValueError, match="weight"):
        AnnotatedImage(item.image, item.ann, weight=0)
    # uncalibrated: the pixel size comes from the lattice period (12 px taken as 2.5 Å)
    ann = Annotations.from_dict({**item.ann.to_dict(), "px_size_nm": None})
    unc = AnnotatedImage(item.image, ann)
    assert unc.px_size_A() == pytest.approx(2.5 / 12, rel=0.05) and unc.match_radius_px() == 2.0
    assert holdout_row(100, 0.2) == 80 and holdout_row(100, 0.0) == 100


def test_patches_label_the_atoms_where_they_are(item):
    """Windows at the model's pixel size: labelled pixels are the bright atoms, through any
    rotation or flip, and nothing comes from the held-out strip."""
    rp = RealPatches([item], model_px_A=0.2, patch_shape=(32, 32), holdout=0.25)
    img, lab = rp.images[0], rp.labels[0]
    assert img.shape == (48, 64)  # rows 0..95 of 128 (the strip is held out), halved
    # atoms land on their resampled positions with their class
    s = 0.5
    keep = item.ann.y < 95
    for x, y, c in zip(item.ann.x[keep], item.ann.y[keep], item.ann.cls[keep]):
        assert lab[int(round((y + 0.5) * s - 0.5)), int(round((x + 0.5) * s - 0.5))] == c
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(24):
        x, y = rp.sample(rng)
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32
        assert y.shape == (32, 32) and y.dtype == torch.int64
        x, y = x[0].numpy(), y.numpy()
        fg = y > 0
        assert fg.any() and abs(float(x.mean())) < 1e-3  # normalised like training images
        assert x[fg].mean() > x[~fg].mean() + 1.0  # the labels sit on the bright columns
        assert x[y == 2].mean() > x[y == 1].mean()  # dopants are the brighter ones
        seen.add(y.tobytes())
    assert len(seen) > 12  # random windows, rotations and flips


def test_dark_atom_images_are_inverted_for_bright_atom_models(item, tmp_path):
    """An ABF image (dark columns) gives windows with bright labelled columns to a HAADF model,
    as the analysis inverts it; to an ABF model it is given as it is.  The mode travels with
    the annotations through the sidecar format and the training pair."""
    ann = Annotations.from_dict({**item.ann.to_dict(), "mode": "ABF"})
    assert ann.mode == "ABF" and ann.to_dict()["mode"] == "ABF"
    abf = AnnotatedImage(200.0 - 50.0 * item.image, ann)  # dark columns on a bright background
    assert abf.mode == "ABF"
    paths = export_training_pair(abf.image, ann, tmp_path, "abf")
    assert AnnotatedImage.from_files(paths[0], paths[2]).mode == "ABF"
    rng = np.random.default_rng(1)
    for model_mode, sign in (("HAADF", 1.0), ("ABF", -1.0)):
        rp = RealPatches([abf], model_px_A=0.2, patch_shape=(32, 32), holdout=0.25, model_mode=model_mode)
        for _ in range(6):
            x, y = rp.sample(rng)
            x, y = x[0].numpy(), y.numpy()
            fg = y > 0
            assert sign * (x[fg].mean() - x[~fg].mean()) > 1.0
    # evaluation sees the image as the model does: a predictor that finds bright blobs only
    seen = {}

    class Bright(_TruthPredictor):
        card = {"mode": "HAADF"}

        def detect(self, image, px_size_nm, threshold=0.5):
            seen["centre"] = float(image[int(ann.y[0]), int(ann.x[0])] - np.median(image))
            return super().detect(image, px_size_nm, threshold)

    evaluate_on_annotations(Bright(ann), [abf])
    assert seen["centre"] > 0  # the column is bright in what the model was given


class _Const(IterableDataset):
    """A stand-in simulation: constant images of value -7 (so they are recognisable)."""

    def __iter__(self):
        while True:
            yield torch.full((1, 32, 32), -7.0), torch.zeros(32, 32, dtype=torch.int64)


@pytest.mark.parametrize("workers", [0, 2])
def test_mixed_stream_draws_the_real_fraction(item, workers):
    rp = RealPatches([item], 0.2, (32, 32), holdout=0.25)
    for frac in (0.0, 1.0, 0.5):
        loader = DataLoader(MixedStream(_Const(), rp, frac, seed=1), batch_size=16, num_workers=workers,
                            multiprocessing_context="fork" if workers else None)
        it = iter(loader)
        xs = torch.cat([next(it)[0] for _ in range(8)])
        is_sim = (xs == -7).flatten(1).all(1)
        share = 1.0 - is_sim.float().mean().item()
        if frac in (0.0, 1.0):
            assert share == frac
        else:
            assert 0.35 < share < 0.65
            if workers:  # the two workers draw different windows
                real = xs[~is_sim]
                assert len({r.numpy().tobytes() for r in real}) == len(real)
        del it, loader


class _TruthPredictor:
    """A 'model' that returns the annotated atoms (of the part of the image it is given,
    which is always a bottom part), optionally without some of them or with extras."""

    def __init__(self, ann, drop=(), extra=(), cls_override=None):
        self.ann, self.drop, self.extra, self.cls_override = ann, set(drop), list(extra), cls_override

    def detect(self, image, px_size_nm, threshold=0.5):
        off = self.ann.shape[0] - image.shape[0]
        keep = np.array([i not in self.drop for i in range(len(self.ann))], bool) & (self.ann.y >= off - 0.5)
        x, y, c = self.ann.x[keep], self.ann.y[keep] - off, self.ann.cls[keep].copy()
        if self.cls_override is not None:
            c[:] = self.cls_override
        for ex, ey in self.extra:
            x, y, c = np.append(x, ex), np.append(y, ey - off), np.append(c, 1)
        return AtomList(x, y, c, 1.0), None, {}


def test_evaluate_on_annotations(item):
    ann = item.ann
    s = evaluate_on_annotations(_TruthPredictor(ann), [item])
    assert s["f1"] == s["precision"] == s["recall"] == 1.0 and s["n_true"] == s["n_pred"] == len(ann)
    assert s["per_class"] == {"atom": 1.0, "dopant": 1.0} and s["class_accuracy"] == 1.0
    s = evaluate_on_annotations(_TruthPredictor(ann, drop=range(0, len(ann), 4)), [item])
    n_missing = len(range(0, len(ann), 4))
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(1 - n_missing / len(ann)) and s["f1"] < 1.0
    s = evaluate_on_annotations(_TruthPredictor(ann, cls_override=1), [item])
    assert s["f1"] == 1.0 and s["per_class"]["dopant"] == 0.0 and s["class_accuracy"] < 1.0
    # the held-out strip: only its atoms count; a false atom in it lowers the precision
    y0 = holdout_row(128, 0.2)
    in_strip = int((ann.y >= y0 - 0.5).sum())
    s = evaluate_on_annotations(_TruthPredictor(ann), [item], region="holdout", holdout=0.2)
    assert s["f1"] == 1.0 and s["n_true"] == in_strip
    s = evaluate_on_annotations(_TruthPredictor(ann, extra=[(64.0, 125.0), (64.0, 20.0)]), [item],
                                region="holdout", holdout=0.2)
    assert s["n_pred"] == in_strip + 1 and s["precision"] == pytest.approx(in_strip / (in_strip + 1))
    s2 = evaluate_on_annotations(_TruthPredictor(ann), [item, item], region="holdout", holdout=0.2)
    assert s2["n_true"] == 2 * in_strip


def test_tiny_fine_tune_with_annotated_images(item, tmp_path):
    torch.manual_seed(0)
    card = {"name": "tiny", "version": "0", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    parent = read_card(save_bundle(build_model(TINY_UNET), card, tmp_path / "parent"))
    img2, ann2 = _lattice_image(seed=1)
    files = export_training_pair(img2, ann2, tmp_path / "pairs", "second")
    recipe = {"name": "tuned", "architecture": TINY_UNET, "px_size_A": 0.2, "steps": 26, "eval_every": 13,
              "val_n": 1, "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 0, "patience": 10,
              "init_from": str(tmp_path / "parent"), "real_fraction": 0.5, "real_holdout": 0.25,
              "real": [{"image": str(files[0]), "annotations": str(files[2]), "weight": 2.0}],
              "sim": {"structure": "graphene", "shape": [32, 32], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5}}}
    calls = []
    best = train(recipe, tmp_path / "out", real_images=[item], on_metrics=calls.append, log=lambda m: None)
    assert {"user_precision", "user_recall", "user_f1", "val_f1", "mean_f1"} <= best.keys()
    assert 0.0 <= best["user_f1"] <= 1.0
    # on_metrics: the parent's baseline, evaluations at 13 and 26, the training loss at 25
    assert [c["step"] for c in calls] == [0, 13, 25, 26]
    assert calls[0]["baseline"] and "user_f1" in calls[0] and np.isnan(calls[0]["train_loss"])
    assert set(calls[2]) == {"step", "train_loss"} and np.isfinite(calls[2]["train_loss"])
    assert "user_f1" in calls[1] and "val_loss" in calls[1]
    logged = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [0, 13, 26]
    out = read_card(tmp_path / "out")
    assert out["parent"]["weights_sha256"] == parent["weights_sha256"]
    assert {(a["name"], a["sha256"], a["n_atoms"], a["weight"]) for a in out["annotated_images"]} == {
        ("lattice1.tif", "01" * 32, len(ann2), 2.0), ("lattice0.tif", "00" * 32, len(item.ann), 1.0)}
    assert out["recipe"]["real_fraction"] == 0.5 and "user_f1" in out["validation"]
    # the new bundle scores on the user's atoms through the public function too
    s = evaluate_on_annotations(str(tmp_path / "out"), [item], region="holdout", holdout=0.25)
    assert {"precision", "recall", "f1", "n_true", "n_pred", "per_class"} <= s.keys()
    with pytest.raises(ValueError, match="only train atom-finding"):
        train({**recipe, "task": "cam", "init_from": None, "architecture": {"name": "gapcnn", "params": {}}},
              tmp_path / "cam", log=lambda m: None)


def test_cli_fine_tunes_on_annotated_images_and_compares(tmp_path, capsys):
    """``atomlens train --annotated IMAGE`` trains on the image's saved annotations (as the
    Retrain dialog does) and scores the base and the new model on its held-back corrected atoms."""
    import dataclasses

    from atomlens.analysis.sidecar import save_sidecar
    from atomlens.cli import EXIT_BAD_INPUT, EXIT_OK, main
    from atomlens.fileio import sha256_file

    torch.manual_seed(0)
    card = {"name": "tiny", "version": "0", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    save_bundle(build_model(TINY_UNET), card, tmp_path / "parent")
    img, ann = _lattice_image(seed=3)
    image = tmp_path / "lattice3.npy"
    np.save(image, img)
    bare = tmp_path / "bare.npy"
    np.save(bare, img)
    save_sidecar(dataclasses.replace(ann, image_sha256=sha256_file(image), image_name=image.name), image)
    recipe = {"name": "tuned", "architecture": TINY_UNET, "px_size_A": 0.2, "steps": 6, "eval_every": 3,
              "val_n": 1, "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 0, "patience": 10,
              "real_fraction": 0.5, "real_holdout": 0.25,
              "sim": {"structure": "graphene", "shape": [32, 32], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5}}}
    rfile = tmp_path / "recipe.json"
    rfile.write_text(json.dumps(recipe))
    args = ["train", "--recipe", str(rfile), "--init-from", str(tmp_path / "parent"), "--out", str(tmp_path / "out")]
    assert main(args + ["--annotated", str(bare)]) == EXIT_BAD_INPUT  # no annotations saved for it
    assert "no annotations saved" in capsys.readouterr().err
    assert main(args + ["--annotated", str(image)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "parent: F1 " in out and "out: F1 " in out and "corrected atoms of the held-back rows of 1 image" in out
    new = read_card(tmp_path / "out")
    assert [a["name"] for a in new["annotated_images"]] == ["lattice3.npy"]
    assert new["annotated_images"][0]["n_atoms"] == len(ann)
