"""The typed training recipe, the in-memory Predictor, and the layering of the nn package
(device <- infer <- evaluate <- train; realdata holds data only)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atomlens.nn.bundle import load_bundle, read_card, save_bundle
from atomlens.nn.models import build_model
from atomlens.nn.recipe import DEFAULTS, REQUIRED, Recipe, apply_profile

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}
SIM = {"structure": "graphene", "shape": [48, 48], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5}}
SMALL = {"name": "unit", "architecture": TINY_UNET, "px_size_A": 0.2, "steps": 2, "eval_every": 2, "val_n": 1,
         "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 3, "time_limit_min": 5, "sim": SIM}


def test_from_dict_keeps_the_order_and_the_unknown_keys_of_the_merged_dict():
    d = {"sim": SIM, "zzz_note": {"a": 1}, "name": "n", "steps": 7, "class_weights": None,
         "architecture": TINY_UNET, "px_size_A": 0.2, "recipe_file": "x.json"}
    rec = Recipe.from_dict(d)
    assert rec.to_dict() == {**DEFAULTS, **d}
    assert list(rec.to_dict()) == list({**DEFAULTS, **d})  # the card records the keys in this order
    assert rec.steps == 7 and rec.class_weights is None and "class_weights" in rec  # given as null: kept
    assert rec.select_by is None and "select_by" not in rec and rec.get("calibrate_n", 25) == 25
    assert rec.extra == {"zzz_note": {"a": 1}, "recipe_file": "x.json"} and rec["recipe_file"] == "x.json"
    d["zzz_note"]["a"] = 2
    assert rec["zzz_note"] == {"a": 1}  # a copy
    assert Recipe.from_dict(rec.to_dict()).to_dict() == rec.to_dict()
    assert list(Recipe.from_dict(rec.to_dict())) == list(rec)
    with pytest.raises(KeyError):
        rec["select_by"]


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_required_field_is_named(key):
    with pytest.raises(ValueError, match=f"the recipe lacks '{key}'"):
        Recipe.from_dict({k: v for k, v in SMALL.items() if k != key})


def test_sim_from_a_file_and_direct_construction(tmp_path):
    (tmp_path / "sim.json").write_text(json.dumps(SIM))
    rec = Recipe.from_dict({**SMALL, "sim": str(tmp_path / "sim.json")})
    assert rec.sim == SIM and rec.to_dict()["sim"] == SIM
    direct = Recipe(name="unit", sim=str(tmp_path / "sim.json"), architecture=TINY_UNET, px_size_A=0.2, steps=2,
                    select_by="val_f1")
    assert direct.sim == SIM and list(direct)[:len(DEFAULTS)] == list(DEFAULTS)
    assert "select_by" in direct and "real" not in direct and direct.valid_px_size_A is not DEFAULTS["valid_px_size_A"]


def test_updated_and_profiles_act_as_dict_update():
    d = {**SMALL, "profiles": {"cuda": {"batch_size": 32, "sim_pool": 4}}}
    rec = Recipe.from_dict(d)
    up = rec.updated({"steps": 9, "normalisation": "clip-robust", "new_key": 1})
    assert rec.steps == 2 and "normalisation" not in rec  # the original is unchanged
    assert list(up)[-2:] == ["normalisation", "new_key"] and up.steps == 9 and up.extra["new_key"] == 1
    for device in ("cuda", "cpu"):
        want = apply_profile(dict(Recipe.from_dict(d)), device)
        got = rec.with_profile(device)
        assert got.to_dict() == want and list(got) == list(want)
        assert apply_profile(rec, device).to_dict() == want
    assert rec.with_profile("cuda").profile == "cuda" and rec.with_profile("cpu") is rec


def test_real_image_checks_keep_their_messages():
    rec = Recipe.from_dict(SMALL)
    real = rec.for_real_images()
    assert (real.real_fraction, real.real_holdout) == (0.3, 0.2) and list(real)[-2:] == ["real_fraction",
                                                                                        "real_holdout"]
    assert isinstance(Recipe.from_dict({**SMALL, "real_fraction": 1}).for_real_images().real_fraction, float)
    with pytest.raises(ValueError, match="only train atom-finding"):
        Recipe.from_dict({**SMALL, "task": "cam"}).for_real_images()
    with pytest.raises(ValueError, match="real_fraction must be between 0 and 1, got 1.5"):
        Recipe.from_dict({**SMALL, "real_fraction": 1.5}).for_real_images()
    with pytest.raises(ValueError, match=r"real_holdout must be in \[0, 1\), got 1.0"):
        Recipe.from_dict({**SMALL, "real_holdout": 1}).for_real_images()


def test_every_field_is_documented_in_the_class():
    import dataclasses

    for f in dataclasses.fields(Recipe):
        assert f.metadata["doc"] and f"    {f.name} : " in Recipe.__doc__


def test_train_takes_a_recipe_or_a_dict_and_records_the_same_card(tmp_path):
    from atomlens.nn.train import train

    def card(p):
        c = read_card(p)
        for k in ("seconds", "date"):
            c["training"].pop(k)
        c["validation"].pop("seconds")
        return c

    d = {**SMALL, "note": "kept"}
    a = train(d, tmp_path / "a", log=lambda m: None)
    rec = Recipe.from_dict(d)
    b = train(rec, tmp_path / "b", log=lambda m: None)
    assert json.dumps(card(tmp_path / "a")) == json.dumps(card(tmp_path / "b"))  # NaN-safe: the text
    assert card(tmp_path / "a")["recipe"]["note"] == "kept"
    assert json.dumps({**a, "seconds": 0}) == json.dumps({**b, "seconds": 0})
    assert "normalisation" not in rec  # train() works on its own copy


@pytest.fixture
def cam_bundle(tmp_path):
    torch.manual_seed(0)
    arch = {"name": "gapcnn", "params": {"in_channels": 1, "n_types": 3, "base": 4, "depth": 2}}
    card = {"name": "tinycam", "version": "0", "task": "cam", "architecture": arch,
            "classes": ["pristine", "vacancy", "dopant"], "px_size_A": 0.2, "valid_px_size_A": [0.05, 0.4],
            "mode": "HAADF", "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]},
            "cam_thresholds": {"pristine": 0.5, "vacancy": 0.3, "dopant": 0.7}}
    return save_bundle(build_model(arch).eval(), card, tmp_path / "cam")


def test_from_model_sets_up_as_a_loaded_bundle(cam_bundle):
    from atomlens.nn.infer import Predictor

    loaded = Predictor(cam_bundle, "cpu", cpu_bf16=False)
    model, card = load_bundle(cam_bundle, "cpu")
    mem = Predictor.from_model(model, card, "cpu", cpu_bf16=False)
    assert mem.path is None and loaded.path == cam_bundle
    for attr in ("device", "task", "classes", "px_size_A", "valid_px_A", "tile", "overlap", "bf16", "tta",
                 "single_view"):
        assert getattr(mem, attr) == getattr(loaded, attr), attr
    # the calibrated thresholds and the CPU's channels-last layout, which the old in-memory copy missed
    assert mem.logit_shift is not None and torch.equal(mem.logit_shift, loaded.logit_shift)
    w = next(p for p in mem.model.parameters() if p.ndim == 4)
    assert w.is_contiguous(memory_format=torch.channels_last)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 48, 48)).astype(np.float32))
    np.testing.assert_allclose(mem.classify(x)[0], loaded.classify(x)[0], atol=1e-6)
    img = np.random.default_rng(1).normal(size=(60, 50)).astype(np.float32)
    np.testing.assert_allclose(mem.probabilities(img, 0.02)[0], loaded.probabilities(img, 0.02)[0], atol=1e-6)
    # an in-memory card needs only the classes and the pixel size
    bare = Predictor.from_model(model, {"classes": card["classes"], "px_size_A": 0.2})
    assert bare.task == "segmentation" and bare.valid_px_A == (0.0, float("inf")) and bare.logit_shift is None
    assert Predictor.from_model(model, card, cpu_bf16=True).bf16 and Predictor.from_model(model, card, tile=64).tile == 64


def test_device_helpers():
    from atomlens.nn import device, infer, precision

    assert device.select_device("cpu") == "cpu" and device.prefers_channels_last("cpu")
    assert not device.prefers_channels_last("cuda")
    t = torch.zeros(1, 2, 4, 4)
    assert device.channels_last(t, "cuda") is t
    assert device.channels_last(t, "cpu").is_contiguous(memory_format=torch.channels_last)
    with device.autocast("cpu", False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert infer.use_bf16 is precision.use_bf16 is device.use_bf16  # one implementation, importable from all three


def _imports(mod: str) -> set[str]:
    """The atomlens.nn modules `mod` (a file of atomlens/nn) imports, anywhere in it."""
    import atomlens.nn

    tree = ast.parse((Path(atomlens.nn.__file__).parent / f"{mod}.py").read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {a.name for a in node.names}
    return out


def test_the_nn_layers_import_only_downwards():
    assert not _imports("device") & {"infer", "evaluate", "train", "realdata"}
    assert not _imports("infer") & {"train", "realdata", "evaluate"}
    assert not _imports("realdata") & {"infer", "train", "evaluate"}
    assert not _imports("evaluate") & {"train"}
    assert {"device", "infer", "evaluate", "realdata", "recipe"} <= _imports("train")
