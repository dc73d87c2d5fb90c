"""Networks, bundles, inference tiling and resampling, and the training loop (tiny sizes)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from atomlens.nn.bundle import BundleError, load_bundle, read_card, resolve_bundle, save_bundle
from atomlens.nn.models import GapCNN, UNet, build_model
from atomlens.nn.device import select_device
from atomlens.nn.train import train
from atomlens.sim.atoms import DEFECT_TYPES

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}


def _card(arch=TINY_UNET, **kw):
    card = {"name": "tiny", "version": "0", "task": "segmentation", "architecture": arch,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    card.update(kw)
    return card


@pytest.fixture
def tiny_bundle(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY_UNET).eval()
    return save_bundle(model, _card(), tmp_path / "tiny"), model


@pytest.mark.parametrize("shape", [(64, 64), (97, 130), (33, 17)])
def test_unet_keeps_input_resolution(shape):
    m = UNet(base=4, depth=3).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 1, *shape))
    assert y.shape == (2, 4, *shape)


def test_gap_cnn_cam_is_weighted_sum_of_features():
    torch.manual_seed(0)
    g = GapCNN(n_types=5, base=4, depth=2).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        f = g.features(x)
        logits, maps = g.cam(x)
        manual = torch.einsum("ck,nkhw->nchw", g.fc.weight, f)
        # GAP of the CAM plus the bias is the logit (the defining property of CAMs)
        np.testing.assert_allclose(manual.mean((2, 3)) + g.fc.bias, logits, rtol=1e-4, atol=1e-5)
    assert maps.shape == (1, 5, 64, 64)


def test_bundle_round_trip(tiny_bundle):
    path, model = tiny_bundle
    loaded, card = load_bundle(path)
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert card["weights_sha256"] and read_card(path)["name"] == "tiny"
    assert resolve_bundle(path) == path
    assert not list(path.glob(".*"))  # no temporary files left


def test_damaged_weights_are_refused(tiny_bundle):
    path, _ = tiny_bundle
    raw = bytearray((path / "weights.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="damaged"):
        load_bundle(path)


def test_bad_cards_are_refused(tiny_bundle, tmp_path):
    path, _ = tiny_bundle
    card = json.loads((path / "card.json").read_text())
    (path / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot be read"):
        load_bundle(path)
    (path / "card.json").write_text(json.dumps({k: v for k, v in card.items() if k != "px_size_A"}))
    with pytest.raises(BundleError, match="lacks px_size_A"):
        load_bundle(path)
    card["architecture"] = {"name": "unet", "params": {"base": 8, "depth": 2}}
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no model 'nope'"):
        resolve_bundle("nope")


def test_device_selection():
    assert select_device("auto") in ("cpu", "cuda", "mps")
    assert select_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            select_device("cuda")


def test_tta_averages_the_eight_views_so_rotating_the_image_rotates_the_maps(tiny_bundle):
    """With tta the maps of a rotated or mirrored image are the rotated or mirrored maps (the
    mean over the dihedral group is equivariant); a plain untrained network is not."""
    from atomlens.nn.infer import Predictor

    path, _ = tiny_bundle
    img = np.random.default_rng(4).normal(size=(64, 64)).astype(np.float32)
    px_nm = Predictor(path, "cpu").px_size_A / 10  # no resampling
    for tta in (False, True):
        pred = Predictor(path, "cpu", tta=tta, cpu_bf16=False)  # exact float32 arithmetic
        p0, info = pred.probabilities(img, px_nm)
        assert info["tta"] is tta and p0.shape == (4, 64, 64)
        pr, _ = pred.probabilities(np.ascontiguousarray(np.rot90(img)), px_nm)
        pf, _ = pred.probabilities(np.ascontiguousarray(img[:, ::-1]), px_nm)
        err = max(np.abs(pr - np.rot90(p0, axes=(1, 2))).max(), np.abs(pf - p0[:, :, ::-1]).max())
        if tta:
            assert err < 1e-5
            np.testing.assert_allclose(p0.sum(0), 1.0, atol=1e-5)  # still probabilities
        else:
            assert err > 1e-3


def test_tiled_inference_matches_whole_image(tiny_bundle):
    from atomlens.nn.infer import Predictor

    path, _ = tiny_bundle
    img = np.random.default_rng(0).normal(size=(150, 170)).astype(np.float32)
    whole, _ = Predictor(path, "cpu", tile=1024).probabilities(img, 0.02)
    tiled, _ = Predictor(path, "cpu", tile=64, overlap=24).probabilities(img, 0.02)
    assert whole.shape == tiled.shape == (4, 150, 170)
    np.testing.assert_allclose(whole.sum(0), 1, atol=1e-4)
    assert np.abs(whole - tiled).mean() < 0.01
    assert np.abs(whole - tiled).max() < 0.15


def test_resampling_maps_back_to_input_pixels(tiny_bundle, monkeypatch):
    """A 'network' that passes its input through shows where each model pixel comes from:
    a bright pixel must come back at the same place at any pixel size."""
    from atomlens.nn.infer import Predictor

    path, _ = tiny_bundle
    pred = Predictor(path, "cpu", tile=4096)

    def passthrough(t):
        x = t[0].float().cpu().numpy()
        return np.concatenate([-x, x, np.zeros_like(x), np.zeros_like(x)])

    monkeypatch.setattr(pred, "_tile_output", passthrough)
    yy, xx = np.mgrid[0:120, 0:100]
    img = np.exp(-((xx - 62) ** 2 + (yy - 41) ** 2) / (2 * 4.0**2)).astype(np.float32)  # at x 62, y 41
    img += np.random.default_rng(0).normal(0, 0.01, img.shape).astype(np.float32)
    for px_nm in (0.01, 0.02, 0.035):  # model at 0.02 nm/px: up, same, down
        prob, info = pred.probabilities(img, px_nm)
        w = np.clip(prob[1], 0, None)
        w = w * (w > 0.5 * w.max())
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        assert (cx, cy) == pytest.approx((62, 41), abs=0.35), (px_nm, info["scale"])


def test_out_of_range_and_uncalibrated_notes(tiny_bundle):
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    path, _ = tiny_bundle
    pred = Predictor(path, "cpu")
    img = simulate({"structure": "graphene", "shape": (128, 128), "px_size_A": 0.1, "noise": {}}, 0).image
    _, info = pred.probabilities(img, None)
    assert "no calibration" in info["notes"][0]
    # graphene's strongest period is 2.13 Å = 21.3 px here; 2.5 Å is assumed, so 0.117 Å/px
    assert info["px_size_A"] == pytest.approx(2.5 / 21.3, rel=0.05)
    _, info = pred.probabilities(img, 0.1)  # 1 Å/px: far outside 0.05-0.4 Å
    assert any("outside this model's range" in n for n in info["notes"])


SMALL_RECIPE = {
    "name": "unit", "architecture": TINY_UNET, "px_size_A": 0.2, "steps": 4, "eval_every": 2, "val_n": 2,
    "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 3, "time_limit_min": 5, "patience": 10,
    "sim": {"structure": "graphene", "shape": [48, 48], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5},
            "defects": {"vacancy": {"rate": 0.05}}},
}


def test_sim_pool_reuses_a_fixed_set_rotated_and_mirrored():
    from atomlens.nn.data import SimStream

    cfg = {"structure": "graphene", "shape": [32, 32], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5},
           "defects": {"vacancy": {"rate": 0.1}}}
    stream = iter(SimStream(cfg, seed=11, pool=3))
    first = [next(stream) for _ in range(3)]  # the set, simulated once
    fresh = iter(SimStream(cfg, seed=11))
    for (x, y), (x2, y2) in zip(first, [next(fresh) for _ in range(3)]):
        assert torch.equal(x, x2) and torch.equal(y, y2)  # the same seeds as the endless stream

    def views(x, y):
        for k in range(4):
            for f in (False, True):
                xv, yv = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
                yield (xv.flip(-1), yv.flip(-1)) if f else (xv, yv)

    seen = set()
    for _ in range(40):  # then only rotations and mirror images of those, labels turned alike
        x, y = next(stream)
        hits = [(i, j) for i, (x0, y0) in enumerate(first) for j, (xv, yv) in enumerate(views(x0, y0))
                if torch.equal(x, xv) and torch.equal(y, yv)]
        assert hits
        seen.add(hits[0])
    assert len({i for i, _ in seen}) == 3 and len(seen) > 10


def test_training_on_a_sim_pool_records_it(tmp_path):
    out = tmp_path / "pool"
    best = train({**SMALL_RECIPE, "sim_pool": 4, "steps": 3, "eval_every": 3}, out, log=lambda m: None)
    assert best["step"] == 3 and read_card(out)["recipe"]["sim_pool"] == 4


def test_train_writes_bundle_metrics_and_resumes(tmp_path):
    out = tmp_path / "m"
    best = train(SMALL_RECIPE, out, log=lambda m: None)
    assert {"val_loss", "val_f1", "step"} <= best.keys()
    card = read_card(out)
    assert card["recipe"]["steps"] == 4 and card["training"]["device"] == "cpu"
    assert card["validation"]["step"] == best["step"] and card["parent"] is None
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 4]
    load_bundle(out)  # loads and checks its sha256
    more = {**SMALL_RECIPE, "steps": 6}
    train(more, out, resume=True, log=lambda m: None)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # continued from step 4, did not start again


def test_budget_schedule_follows_steps_like_one_cycle_and_anneals_by_time():
    from atomlens.nn.train import BudgetSchedule

    def opt():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)

    ref_opt = opt()
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1e-3, total_steps=100, pct_start=0.15)
    lrs = [ref.get_last_lr()[0]]
    for _ in range(99):
        ref_opt.step()
        ref.step()
        lrs.append(ref.get_last_lr()[0])
    o = opt()
    ours = BudgetSchedule(o, 1e-3, 100, 0.15, time_limit_s=3600)
    for step in range(1, 99):  # no time pressure: the one-cycle shape by steps (within a step of torch's)
        lr = ours.update(step, seconds=step * 0.01)
        near = lrs[step - 1:step + 2]
        assert min(near) * 0.999 <= lr <= max(near) * 1.001
    # a time limit that binds first: at 90 % of the time the rate is near its end although only
    # 10 % of the steps are done, and it ends at the minimum when the time is up
    o = opt()
    s = BudgetSchedule(o, 1e-3, 1000, 0.05, time_limit_s=60)
    assert s.update(100, 54.0) < 0.03e-3 and s.progress == pytest.approx(0.9)
    assert s.update(101, 60.0) == pytest.approx(1e-3 / 25 / 1e4) and o.param_groups[0]["lr"] == s.get_last_lr()[0]
    assert s.update(5, 0.0) < 1e-3 and s.update(50, 0.0) == pytest.approx(1e-3)  # warm-up peak at 5 %


def test_time_limited_training_ends_with_an_annealed_rate(tmp_path, monkeypatch):
    from atomlens.nn import train as train_mod

    clock = {"t": 1000.0}

    def fake_time():  # every call advances 1 s: the 0.5 min limit binds after ~30 calls, not 10^4 steps
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(train_mod.time, "time", fake_time)
    out = tmp_path / "t"
    rec = {**SMALL_RECIPE, "steps": 10_000, "eval_every": 10_000, "time_limit_min": 0.5}
    train_mod.train(rec, out, log=lambda m: None)
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] < 100 and last["lr"] < 0.01 * train_mod.DEFAULTS["lr"]  # SMALL_RECIPE keeps the default


def test_train_cancel_keeps_best_and_fine_tune_records_parent(tmp_path):
    ev = threading.Event()
    ev.set()
    best = train({**SMALL_RECIPE, "steps": 50}, tmp_path / "a", cancel=ev, log=lambda m: None)
    assert best["step"] == 1  # stopped after the first step, evaluated and saved
    parent = read_card(tmp_path / "a")
    train({**SMALL_RECIPE, "init_from": str(tmp_path / "a"), "steps": 2}, tmp_path / "b", log=lambda m: None)
    child = read_card(tmp_path / "b")
    assert child["parent"]["weights_sha256"] == parent["weights_sha256"]


@pytest.mark.parametrize("name", ["stem-haadf", "stem-haadf-ft", "stm-topo", "stm-topo-ft", "defect-cam",
                                  "defect-cam-ft"])
def test_bundled_recipes_build_and_simulate(name):
    from atomlens.nn.data import SimStream
    from atomlens.samples import resource_path

    rec = json.loads(resource_path("recipes", f"{name}.json").read_text())
    model = build_model(rec["architecture"]).eval()
    x, y = next(iter(SimStream(rec["sim"], rec["task"], seed=5)))
    with torch.no_grad():
        out = model(x[None])
    if rec["task"] == "cam":
        assert out.shape == (1, 9) and y.shape == (9,)
    else:
        assert out.shape == (1, 4, *x.shape[-2:]) and y.shape == x.shape[-2:]
    n_bytes = sum(p.numel() for p in model.parameters()) * 4
    assert n_bytes < 10e6  # bundles stay under 10 MB


def test_strips_give_the_same_atoms_as_the_whole_image(tiny_bundle, monkeypatch):
    """Large images run in strips with bounded memory; the atoms must not change."""
    from atomlens.analysis.metrics import detection_scores
    from atomlens.nn import infer
    from atomlens.sim import simulate

    path, _ = tiny_bundle
    pred = infer.Predictor(path, "cpu", tile=128, overlap=32)

    def from_image(t):  # a stand-in network: atoms where the normalised image is bright
        x = t[0, 0].float()
        p1 = torch.sigmoid(3 * (x - 1.0))
        return torch.stack([1 - p1, p1, torch.zeros_like(p1), torch.zeros_like(p1)]).numpy()

    monkeypatch.setattr(pred, "_tile_output", lambda t: from_image(t))
    img = simulate({"structure": "graphene", "shape": (300, 180), "px_size_A": 0.1, "noise": {}}, 2).image
    whole, prob, _ = pred.detect(img, 0.01)
    monkeypatch.setattr(infer, "STRIP_MIN_PIXELS", 0)
    strips, none, info = pred.detect(img, 0.01, strip_px=70)
    assert info["strips"] == 5 and none is None and len(whole) > 100
    s = detection_scores(strips.xy, strips.cls, whole.xy, whole.cls, 0.5)
    assert s["f1"] == 1.0 and s["rmse"] < 0.05


def test_cam_thresholds_are_fitted_recorded_and_applied(tmp_path):
    """Decision thresholds: the fit raises the accuracy of an under-confident type; a CAM
    model trained by `train` gets them in its card; the Predictor shifts the logits by them."""
    from atomlens.nn.calibrate import decide, fit_thresholds
    from atomlens.nn.infer import Predictor

    names = ["pristine", "vacancy", "topological"]
    rng = np.random.default_rng(0)
    L, truths = [], []
    for _ in range(40):  # topological images score only ~0.35; pristine ones ~0.1
        L.append([0.0, -4.0, float(np.log(0.35 / 0.65) + rng.normal(0, 0.1))])
        truths.append({"topological"})
        L.append([0.0, -4.0, float(np.log(0.1 / 0.9) + rng.normal(0, 0.1))])
        truths.append({"pristine"})
    L = np.asarray(L)
    assert decide(L[0], names) == "pristine"
    thr, acc = fit_thresholds(L, truths, names)
    assert acc == 1.0 and 0.1 < thr["topological"] < 0.35 and thr["vacancy"] == 0.5
    assert decide(L[0], names, thr) == "topological" and decide(L[1], names, thr) == "pristine"
    # train() calibrates a CAM model and records it; the Predictor applies it
    rec = {"name": "cam", "task": "cam", "px_size_A": 0.2, "steps": 2, "eval_every": 2, "val_n": 2, "batch_size": 2,
           "num_workers": 0, "device": "cpu", "seed": 1, "calibrate_n": 2,
           "architecture": {"name": "gapcnn", "params": {"in_channels": 1, "n_types": 9, "base": 4, "depth": 2}},
           "sim": {"structure": "graphene", "shape": [48, 48], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5},
                   "variants": [{"structure": "graphene"},
                                {"structure": "graphene", "defects": {"vacancy": {"n": 1}}}]}}
    best = train(rec, tmp_path / "cam", log=lambda m: None)
    card = read_card(tmp_path / "cam")
    assert card["calibration"]["n_images"] == 4 and set(card["cam_thresholds"]) == set(card["classes"][1:])
    assert best["calibrated_type_accuracy"] == card["calibration"]["type_accuracy"]
    pred = Predictor(tmp_path / "cam", "cpu")
    x = torch.zeros(1, 1, 48, 48)
    with torch.no_grad():
        raw = pred.model.cam(x)[0][0].float()
    shifted, _ = pred.classify(x)
    expect = [-np.log(card["cam_thresholds"].get(n, 0.5) / (1 - card["cam_thresholds"].get(n, 0.5)))
              for n in card["classes"]]
    np.testing.assert_allclose((shifted - raw).numpy(), expect, atol=1e-5)


def _lattice(spot: bool) -> np.ndarray:
    """A 128 x 128 lattice of period 8 px with noise, and optionally one adatom-like spot
    80 times brighter than a lattice peak (about 30 px)."""
    yy, xx = np.mgrid[:128, :128]
    img = (np.cos(2 * np.pi * xx / 8) * np.cos(2 * np.pi * yy / 8)) ** 2
    img = img + np.random.default_rng(1).normal(0, 0.05, img.shape)
    if spot:
        img = img + 80 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 2.0**2))
    return img.astype(np.float32)


def test_robust_normalisation_keeps_the_lattice_contrast_next_to_a_bright_spot():
    from atomlens.nn.data import normalisation_stats, normalise

    def contrast(method, spot):
        z = normalise(_lattice(spot), method=method)[:40, :40]  # far from the spot
        return np.percentile(z, 95) - np.percentile(z, 5)

    # one bright spot inflates the standard deviation: z-scoring squeezes the lattice
    assert contrast("clip-zscore", True) < 0.75 * contrast("clip-zscore", False)
    assert contrast("clip-robust", True) == pytest.approx(contrast("clip-robust", False), rel=0.05)
    # the statistics of a subsample give the same scaling (used for strips of large images)
    st = normalisation_stats(_lattice(True), "clip-robust")
    np.testing.assert_allclose(normalise(_lattice(True), st), normalise(_lattice(True), method="clip-robust"),
                               atol=0.05)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(_lattice(False), method="minmax")


def test_normalisation_is_recorded_inherited_and_applied(tmp_path):
    from atomlens.nn.data import normalise
    from atomlens.nn.infer import Predictor

    train({**SMALL_RECIPE, "normalisation": "clip-robust", "steps": 2}, tmp_path / "r", log=lambda m: None)
    assert read_card(tmp_path / "r")["normalisation"]["method"] == "clip-robust"
    # fp32 on every CPU: with bf16 autocast (the default on CPUs with native bf16) the maps
    # differ from the fp32 reference by up to ~2e-3
    pred = Predictor(tmp_path / "r", "cpu", single_view=True, cpu_bf16=False)
    assert pred.norm == "clip-robust"
    img = _lattice(True)
    prob, info = pred.probabilities(img, 0.02)
    x = torch.from_numpy(normalise(img, method="clip-robust"))[None, None]
    with torch.no_grad():
        direct = pred.model(x).softmax(1)[0]
        turned = torch.rot90(pred.model(torch.rot90(x, 2, (2, 3))).softmax(1), 2, (2, 3))[0]
    np.testing.assert_allclose(prob, direct.numpy(), atol=1e-4)
    assert info["views"] == 1
    # by default the maps are the mean over the image and its half turn (each mapped back)
    prob2, info2 = Predictor(tmp_path / "r", "cpu", cpu_bf16=False).probabilities(img, 0.02)
    np.testing.assert_allclose(prob2, ((direct + turned) / 2).numpy(), atol=1e-4)
    assert info2["views"] == 2 and np.abs(prob2 - prob).max() > 1e-3  # the untrained net is not symmetric
    from atomlens.nn.data import TTA_VIEWS

    assert Predictor(tmp_path / "r", "cpu", tta=True).views == TTA_VIEWS
    # a fine-tuned model keeps its parent's scaling unless its recipe names another
    train({**SMALL_RECIPE, "init_from": str(tmp_path / "r"), "steps": 1}, tmp_path / "c", log=lambda m: None)
    assert read_card(tmp_path / "c")["normalisation"]["method"] == "clip-robust"
    train({**SMALL_RECIPE, "steps": 1}, tmp_path / "z", log=lambda m: None)
    assert read_card(tmp_path / "z")["normalisation"]["method"] == "clip-zscore"
    with pytest.raises(ValueError, match="unknown normalisation"):
        train({**SMALL_RECIPE, "normalisation": "minmax"}, tmp_path / "bad", log=lambda m: None)
    # a card from a newer version with a scaling this one does not know is refused clearly
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    card["normalisation"]["method"] = "learned-v9"
    (tmp_path / "r" / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="unknown normalisation"):
        load_bundle(tmp_path / "r")


def test_select_by_class_f1_picks_the_checkpoint_by_detection_and_classes(tmp_path):
    rec = {**SMALL_RECIPE, "select_by": "val_class_f1", "steps": 4, "eval_every": 2}
    best = train(rec, tmp_path / "k", log=lambda m: None)
    rows = [json.loads(x) for x in (tmp_path / "k" / "metrics.jsonl").read_text().splitlines()]
    for m in rows:
        parts = [m["val_f1"]] + [m[k] for k in ("val_f1_atom", "val_f1_dopant", "val_f1_vacancy") if k in m]
        assert m["val_class_f1"] == pytest.approx(np.mean(parts))
    assert best["val_class_f1"] == max(m["val_class_f1"] for m in rows)
    with pytest.raises(ValueError, match="select_by"):
        train({**rec, "select_by": "user_f1"}, tmp_path / "x", log=lambda m: None)


def test_defect_site_maps_mark_each_type_on_the_feature_grid():
    from atomlens.nn.data import defect_site_maps
    from atomlens.sim import simulate

    cfg = {"structure": "graphene", "shape": [96, 96], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5},
           "defects": {"dopant": {"element": "Si", "n": 1}, "vacancy": {"rate": 0.01}}}
    # the first seed whose image holds both (a site may fall outside the field of view)
    r = next(r for r in (simulate(cfg, s) for s in range(20)) if set(r.meta["defect_types"]) == {"dopant", "vacancy"})
    m = defect_site_maps(r, 9, 8)
    assert m.shape == (9, 12, 12)
    for name in ("dopant", "vacancy"):
        k = DEFECT_TYPES.index(name)
        xy = r.atoms.xy[r.atoms.defect == k] / r.px_size_A
        cy, cx = np.unravel_index(np.argmax(m[k]), m[k].shape)
        # the brightest cell holds a site (cell j covers pixels 8j..8j+7)
        assert (cx, cy) in {(int(round(x)) // 8, int(round(y)) // 8) for x, y in xy}
    others = [k for k in range(9) if DEFECT_TYPES[k] not in ("dopant", "vacancy")]
    assert m[others].max() == 0


def test_cam_localisation_loss_rewards_a_map_that_peaks_on_the_site():
    from atomlens.nn.train import cam_localisation_loss

    sites = torch.zeros(1, 2, 8, 8)
    sites[0, 1, 5, 2] = 1.0
    labels = torch.tensor([[0.0, 1.0]])
    on, off = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    on[0, 1, 5, 2] = 5.0
    off[0, 1, 1, 6] = 5.0
    assert cam_localisation_loss(on, sites, labels) < cam_localisation_loss(torch.zeros(1, 2, 8, 8), sites, labels)
    assert cam_localisation_loss(torch.zeros(1, 2, 8, 8), sites, labels) < cam_localisation_loss(off, sites, labels)
    # an absent type, or a present one without sites, adds nothing
    assert float(cam_localisation_loss(off, sites, torch.tensor([[1.0, 0.0]]))) == 0.0


def test_cam_localisation_training_moves_the_map_onto_the_defect(tmp_path):
    """A few dozen steps on one dopant per image: with the localisation loss the dopant map
    peaks near its dopant more often than without; validation reports it."""
    base = {"name": "cam", "task": "cam", "px_size_A": 0.2, "steps": 40, "eval_every": 40, "val_n": 10,
            "batch_size": 8, "num_workers": 0, "device": "cpu", "seed": 4, "calibrate_n": 0, "lr": 3e-3,
            "architecture": {"name": "gapcnn", "params": {"in_channels": 1, "n_types": 9, "base": 8, "depth": 2}},
            "sim": {"structure": "graphene", "shape": [64, 64], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e6},
                    "defects": {"dopant": {"element": "Pt", "n": 1}}}}
    plain = train(base, tmp_path / "plain", log=lambda m: None)
    loc = train({**base, "cam_localisation": {"weight": 1.0, "sigma_A": 1.0}}, tmp_path / "loc", log=lambda m: None)
    assert 0.0 <= plain["val_cam_within_1A"] <= 1.0
    assert loc["val_cam_within_1A"] >= plain["val_cam_within_1A"] + 0.25
    assert read_card(tmp_path / "loc")["recipe"]["cam_localisation"]["weight"] == 1.0


def test_cpu_bf16_follows_the_environment_and_the_argument(tiny_bundle, monkeypatch):
    """bf16 autocast on the CPU: ATOMLENS_CPU_BF16=on/off/auto, or the cpu_bf16 argument (the
    GUI setting), decides; auto means CPUs with native bf16.  Forced on, the maps stay within
    bf16 rounding of fp32 ones on any CPU; a word it does not know is a clear error."""
    from atomlens.nn import precision
    from atomlens.nn.infer import CPU_BF16_ENV, Predictor, cpu_bf16_choice, use_bf16

    path, _ = tiny_bundle
    img = np.random.default_rng(1).normal(size=(64, 64)).astype(np.float32)
    px_nm = Predictor(path, "cpu").px_size_A / 10
    for native in (False, True):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda native=native: native)
        monkeypatch.delenv(CPU_BF16_ENV, raising=False)
        assert use_bf16("cpu") is native and use_bf16("cuda") is True
        for word, want in (("on", True), ("1", True), ("off", False), ("FP32", False), ("auto", native)):
            monkeypatch.setenv(CPU_BF16_ENV, word)
            assert Predictor(path, "cpu").bf16 is want
        assert Predictor(path, "cpu", cpu_bf16=True).bf16 and not Predictor(path, "cpu", cpu_bf16="off").bf16
    monkeypatch.setenv(CPU_BF16_ENV, "sometimes")
    with pytest.raises(ValueError, match="ATOMLENS_CPU_BF16='sometimes'.*on, off or auto"):
        cpu_bf16_choice()
    monkeypatch.delenv(CPU_BF16_ENV)
    p32, i32 = Predictor(path, "cpu", cpu_bf16=False).probabilities(img, px_nm)
    p16, i16 = Predictor(path, "cpu", cpu_bf16=True).probabilities(img, px_nm)
    assert i32["bf16"] is False and i16["bf16"] is True
    err = np.abs(p16 - p32).max()
    assert 0 < err < 0.03  # bf16 keeps 8 bits of mantissa: it differs, but only by rounding
