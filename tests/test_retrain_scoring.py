"""The retrain comparison scores models only on atoms the user corrected or confirmed, keeps the
checkpoint the user's atoms choose, and asks before a worse model replaces a better one
(issue 23, section 6).  Tiny images and tiny models: a few seconds each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from atomlens.analysis.annotations import Annotations
from atomlens.analysis.atoms import AtomList
from atomlens.nn.bundle import read_card, save_bundle
from atomlens.nn.models import build_model
from atomlens.nn.evaluate import evaluate_on_annotations
from atomlens.nn.realdata import (
    AnnotatedImage,
    count_confirmed,
    holdout_row,
)
from PyQt5 import QtWidgets
from test_retrain_gui import (  # noqa: F401
    TINY_UNET,
    _dialog,
    _lattice,
    context,
    manager,
    messages,
    tiny_base,
    user_dir,
)


class _Fixed:
    """A 'model' that finds the given atoms (px of the whole image) in whatever bottom part of
    the image it is given."""

    def __init__(self, x, y, h):
        self.x, self.y, self.h = np.asarray(x, float), np.asarray(y, float), h

    def detect(self, image, px_size_nm, threshold=0.5):
        off = self.h - image.shape[0]
        keep = self.y >= off - 0.5
        return AtomList(self.x[keep], self.y[keep] - off, 1, 1.0), None, {}


def _grid(shape=(96, 96), spacing=12.0):
    g = np.arange(spacing / 2, shape[0], spacing)
    gy, gx = np.meshgrid(g, np.arange(spacing / 2, shape[1], spacing), indexing="ij")
    return gx.ravel(), gy.ravel()


def _predicted(x, y, shape=(96, 96)):
    """Annotations that are a model's uncorrected predictions (all 'predicted', unreviewed)."""
    return Annotations(x=x, y=y, cls=1, score=0.9, source="predicted", shape=shape, px_size_nm=0.01,
                       image_name="pred.tif", image_sha256="ab" * 32)


# --------------------------------------------------------------------------- scoring
def test_the_base_model_is_not_scored_against_its_own_predictions():
    h = 96
    tx, ty = _grid()
    img = np.zeros((h, h), np.float32)
    strip = ty >= holdout_row(h, 0.25) - 0.5
    # the base model missed three atoms of the held-back strip and put one where there is none
    missed = np.flatnonzero(strip)[[1, 3, 5]]
    keep = np.ones(len(tx), bool)
    keep[missed] = False
    bx, by = np.append(tx[keep], 42.0), np.append(ty[keep], 84.0)  # the false one, between columns
    base = _Fixed(bx, by, h)
    # uncorrected: every label is the base's own prediction, so there is nothing to score on
    item = AnnotatedImage(img, _predicted(bx, by))
    s = evaluate_on_annotations(base, [item], region="holdout", holdout=0.25)
    assert s["n_true"] == 0 and s["n_images"] == 0 and np.isnan(s["f1"])  # not a perfect 1.000
    assert count_confirmed([item], "holdout", 0.25) == (0, 0)
    # the user adds the three missed atoms, deletes the false one and confirms two predicted ones
    ann = _predicted(bx[:-1], by[:-1])
    for i in missed:
        ann.add_atom(tx[i], ty[i], 1)
    in_strip = np.flatnonzero(ann.y[:len(bx) - 1] >= holdout_row(h, 0.25) - 0.5)
    ann.set_reviewed(in_strip[:2])
    item = AnnotatedImage(img, ann)
    assert count_confirmed([item], "holdout", 0.25) == (5, 1)
    s = evaluate_on_annotations(base, [item], region="holdout", holdout=0.25)
    # 5 atoms the user vouched for: the base finds the 2 confirmed ones, misses the 3 added,
    # and its false atom (beside the user's atoms) counts against it
    assert (s["n_true"], s["tp"], s["n_pred"], s["n_images"]) == (5, 2, 3, 1)
    assert s["f1"] == pytest.approx(2 * 2 / (3 + 5)) and s["n_unconfirmed"] == int(strip.sum()) - 5
    # a model that finds every true atom scores 1 on them ...
    good = _Fixed(tx, ty, h)
    assert evaluate_on_annotations(good, [item], region="holdout", holdout=0.25)["f1"] == 1.0
    # ... and the atoms the user never looked at neither reward nor punish it: dropping an
    # unconfirmed atom or adding one far from every confirmed atom changes nothing
    far = np.flatnonzero(strip & (tx > 80))
    assert not np.isin(far, missed).any()
    gx, gy = np.delete(tx, far[0]), np.delete(ty, far[0])
    alt = _Fixed(np.append(gx, 90.0), np.append(gy, 90.0), h)
    s2 = evaluate_on_annotations(alt, [item], region="holdout", holdout=0.25)
    assert s2["f1"] == 1.0 and s2["n_left_out"] >= 1


def test_deleted_predictions_are_recorded_and_a_model_that_finds_them_again_is_wrong(tmp_path):
    """Deleting a predicted atom records the place (kept in the sidecar, taken off by undo);
    a model that finds an atom there again is scored a false one, even far from the atoms the
    user placed or confirmed."""
    from atomlens.analysis.sidecar import read_sidecar, sidecar_text, write_sidecar_text

    h = 96
    tx, ty = _grid()
    strip = np.flatnonzero(ty >= holdout_row(h, 0.25) - 0.5)
    far_left, far_right = strip[tx[strip] < 10][0], strip[tx[strip] > 80][0]
    fx, fy = np.append(tx, 90.0), np.append(ty, 84.0)  # the model's false atom, far right
    ann = _predicted(fx, fy)
    ann.set_reviewed([far_left])  # the user checked one atom, on the far left
    rows = ann.remove_atoms([len(fx) - 1])  # ...and deleted the false atom
    assert ann.deleted_x.tolist() == [90.0] and ann.deleted_y.tolist() == [84.0]
    ann.insert_atoms(rows)  # undo
    assert len(ann.deleted_x) == 0
    ann.remove_atoms([len(fx) - 1])  # redo
    ann.add_atom(50.0, 2.0, 1)
    ann.remove_atoms([len(ann) - 1])  # the user's own atom, deleted: no place recorded
    assert ann.deleted_x.tolist() == [90.0]
    img = np.zeros((h, h), np.float32)
    side = tmp_path / "pred.tif.atomlens.json"
    write_sidecar_text(side, sidecar_text(ann))
    back, _ = read_sidecar(side, ann.image_sha256)
    assert back.deleted_x.tolist() == [90.0] and back.deleted_y.tolist() == [84.0]
    item = AnnotatedImage(img, back)
    base = _Fixed(fx, fy, h)  # finds the deleted one again, 80 px from the confirmed atom
    s = evaluate_on_annotations(base, [item], region="holdout", holdout=0.25)
    assert (s["n_true"], s["tp"], s["n_pred"], s["n_deleted"]) == (1, 1, 2, 1)
    assert s["f1"] == pytest.approx(2 / 3)
    fixed = _Fixed(tx, ty, h)
    s = evaluate_on_annotations(fixed, [item], region="holdout", holdout=0.25)
    assert (s["tp"], s["n_pred"], s["f1"]) == (1, 1, 1.0)
    assert far_right != far_left


# --------------------------------------------------------------------------- checkpoint
def _recipe(tmp_path, steps=6):
    torch.manual_seed(0)
    card = {"name": "tiny", "version": "0", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    save_bundle(build_model(TINY_UNET), card, tmp_path / "parent")
    return {"name": "tuned", "architecture": TINY_UNET, "px_size_A": 0.2, "steps": steps, "eval_every": 1,
            "val_n": 1, "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 0, "patience": 100,
            "init_from": str(tmp_path / "parent"), "real_fraction": 0.5, "real_holdout": 0.25,
            "sim": {"structure": "graphene", "shape": [32, 32], "px_size_A": 0.2, "noise": {"dose_e_per_A2": 1e5}}}


def _scripted(monkeypatch, script):
    """Evaluations report the scripted figures (step -> {key: value}) instead of the real ones."""
    from atomlens.nn import train as train_mod

    real = train_mod._validate
    calls = []

    def fake(model, recipe, val, device, reals=None):
        m = real(model, recipe, val, device, reals)
        m.update(script.get(len(calls), {}))
        calls.append(m)
        return m

    monkeypatch.setattr(train_mod, "_validate", fake)


def test_the_checkpoint_is_chosen_on_the_users_atoms(tmp_path, monkeypatch):
    """As in the issue: the simulated loss is lowest at step 4, the F1 on the user's atoms
    peaks at steps 3 and 5 (tied; step 5 has the lower simulated loss): step 5 is kept."""
    from atomlens.nn.train import train

    img, ann = _lattice()
    val_loss = [0.9, 0.5, 0.8, 0.3, 0.7, 0.6]
    val_f1 = [0.5, 0.9, 0.6, 0.95, 0.7, 0.6]
    user_f1 = [0.4, 0.6, 0.8, 0.5, 0.8, 0.7]
    script = {0: {"user_f1": 0.45}}  # call 0: the parent's baseline
    script.update({i + 1: {"val_loss": val_loss[i], "val_f1": val_f1[i], "user_f1": user_f1[i]} for i in range(6)})
    _scripted(monkeypatch, script)
    logs = []
    best = train(_recipe(tmp_path), tmp_path / "out", real_images=[AnnotatedImage(img, ann)], log=logs.append)
    card = read_card(tmp_path / "out")
    assert card["training"]["steps"] == 5 and best["step"] == 5 and best["user_f1"] == 0.8
    sel = best["selection"]
    assert sel["metric"] == "user_f1" and sel["step"] == 5 and card["selection"]["metric"] == "user_f1"
    n = count_confirmed([AnnotatedImage(img, ann)], "holdout", 0.25)[0]
    assert f"{n} atoms you corrected or confirmed" in sel["why"] and "tied with step 3" in sel["why"]
    assert "lower simulated validation loss" in sel["why"] and logs[-1].startswith("kept step 5:")


def test_ties_go_to_the_earlier_step_and_no_user_atoms_fall_back_to_simulations(tmp_path, monkeypatch):
    from atomlens.nn.train import train

    img, ann = _lattice()
    script = {i: {"val_loss": 0.5, "user_f1": 0.7} for i in range(1, 5)}
    script[2]["val_f1"] = 0.99
    _scripted(monkeypatch, script)
    best = train(_recipe(tmp_path, steps=4), tmp_path / "out", real_images=[AnnotatedImage(img, ann)],
                 log=lambda m: None)
    assert best["selection"]["step"] == 1 and "being the earliest" in best["selection"]["why"]
    # the user corrected nothing (all atoms are a model's predictions): no F1 on the user's
    # atoms is reported, and the simulated F1 chooses, saying why
    pred = Annotations.from_dict({**ann.to_dict(), "atoms": {**ann.to_dict()["atoms"],
                                                             "source": ["predicted"] * len(ann),
                                                             "reviewed": [False] * len(ann)}})
    _scripted(monkeypatch, {2: {"val_f1": 0.99}})  # a fresh script (counted from this run's baseline)
    logs = []
    best = train(_recipe(tmp_path / "b", steps=4), tmp_path / "b" / "out", real_images=[AnnotatedImage(img, pred)],
                 log=logs.append)
    assert "user_f1" not in best and best["user_n_true"] == 0 and best["selection"]["metric"] == "val_f1"
    assert best["selection"]["step"] == 2 and "none of the atoms in the held-out strips" in best["selection"]["why"]
    with pytest.raises(ValueError, match="corrected or confirmed"):
        train({**_recipe(tmp_path / "c", steps=2), "select_by": "user_f1"}, tmp_path / "c" / "out",
              real_images=[AnnotatedImage(img, pred)], log=lambda m: None)


# --------------------------------------------------------------------------- the dialog
@pytest.fixture
def asked(monkeypatch):
    """QMessageBox.question recorded; answers[0] is what the user clicks."""
    seen, answers = [], [QtWidgets.QMessageBox.No]

    def ask(_parent, title, text, *a, **k):
        seen.append((title, text))
        return answers[0]

    monkeypatch.setattr(QtWidgets.QMessageBox, "question", ask)
    return seen, answers


def _finished(mgr, path, comparison, val_f1=0.6):
    mgr.result_path, mgr.state, mgr.comparison = str(path), "finished", comparison
    mgr.best_metrics = {"val_f1": val_f1, "step": 3}


def test_a_worse_model_replaces_the_current_one_only_when_confirmed(qtbot, tiny_base, manager, context, asked):  # noqa: F811 (fixtures of test_retrain_gui)
    seen, answers = asked
    dlg = _dialog(qtbot, manager, context)
    chosen = []
    dlg.modelChosen.connect(chosen.append)
    score = lambda f1: {"precision": f1, "recall": f1, "f1": f1, "n_true": 17, "n_pred": 17}
    worse = {"region": "holdout", "holdout": 0.2, "base": "tiny", "new": "tiny-ft", "n_confirmed": 17,
             "n_images": 1, "before": score(0.905), "after": score(0.812)}
    _finished(manager, tiny_base, worse)
    dlg._show_comparison(worse)
    assert "F1 on 17 atoms you corrected or confirmed (1 image)" in dlg.compare_caption.text()
    assert dlg.use_button.isEnabled()
    dlg.use_button.click()  # the user answers No: nothing is replaced
    assert len(seen) == 1 and "0.812" in seen[0][1] and "0.905" in seen[0][1] and "17 atoms" in seen[0][1]
    assert chosen == []
    answers[0] = QtWidgets.QMessageBox.Yes
    dlg.use_button.click()
    assert chosen == [str(tiny_base)] and len(seen) == 2
    # a better (or equal) model is used without a question
    better = {**worse, "after": score(0.95)}
    _finished(manager, tiny_base, better)
    dlg.use_button.click()
    assert len(seen) == 2 and chosen == [str(tiny_base)] * 2
    # ... unless the model in use (another than the base) is better still
    inuse = {**better, "current": score(0.97), "current_name": "other"}
    _finished(manager, tiny_base, inuse)
    answers[0] = QtWidgets.QMessageBox.No
    dlg.use_button.click()
    assert len(seen) == 3 and "other" in seen[2][1] and "0.970" in seen[2][1] and len(chosen) == 2
    # no comparison possible: the user is asked too, and told why
    none = {"region": "holdout", "holdout": 0.2, "base": "tiny", "new": "tiny-ft", "n_confirmed": 0, "n_images": 0}
    _finished(manager, tiny_base, none)
    dlg._show_comparison(none)
    assert "No comparison is possible" in dlg.compare_caption.text()
    dlg.use_button.click()
    assert len(seen) == 4 and "No comparison" in seen[3][1] and "0.600" in seen[3][1] and len(chosen) == 2


def test_retraining_on_uncorrected_predictions_offers_no_comparison(qtbot, tiny_base, manager, asked):  # noqa: F811 (fixtures of test_retrain_gui)
    """End to end in the dialog: annotations that are the model's own predictions give no
    before/after (the base model is not scored 1.000 on them), and using the new model asks."""
    seen, _answers = asked
    img, ann = _lattice()
    pred = Annotations.from_dict({**ann.to_dict(), "atoms": {**ann.to_dict()["atoms"],
                                                             "source": ["predicted"] * len(ann),
                                                             "reviewed": [False] * len(ann)}})
    from atomlens.io.micrograph import Micrograph

    ctx = {"micrograph": Micrograph(data=img, px_size_nm=0.01, mode="HAADF"), "frame": 0, "current_model": "tiny",
           "annotated": [{"name": "lattice0.tif", "image": img, "annotations": pred, "px_size_nm": 0.01}]}
    dlg = _dialog(qtbot, manager, ctx, steps=2)
    group = dlg.settings_widget.real_group
    assert "0 corrected or confirmed" in group.real_list.item(0).text()
    assert "None of the atoms in the held-back strips" in group.holdout_note.text()
    with qtbot.waitSignal(manager.comparisonReady, timeout=120000):
        assert dlg.start_training()
    qtbot.waitUntil(lambda: not manager.is_running(), timeout=60000)
    assert manager.comparison["n_confirmed"] == 0 and "before" not in manager.comparison
    assert "No comparison is possible" in dlg.compare_caption.text()
    assert "no comparison on your atoms" in manager.status_text()
    chosen = []
    dlg.modelChosen.connect(chosen.append)
    dlg.use_button.click()
    assert len(seen) == 1 and "none of the atoms in the held-back strip" in seen[0][1] and chosen == []
