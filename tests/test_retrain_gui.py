"""The retrain dialog, the background training manager and the model manager (tiny sizes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PyQt5 import QtWidgets

from atomlens.analysis.annotations import Annotations
from atomlens.io.micrograph import Micrograph
from atomlens.nn.bundle import list_bundles, load_bundle, read_card, save_bundle, user_models_dir
from atomlens.nn.models import build_model
from atomlens.sim import simulate
from atomlens.sim.estimate import estimate_dose_or_noise

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}
TINY_SIM = {"structure": "graphene", "shape": [64, 64], "px_size_A": 0.2, "mode": "HAADF",
            "noise": {"dose_e_per_A2": [2e4, 2e5]}, "augment": {"rotation": True, "jiggle_A": [0, 0.03]},
            "variants": [{"structure": "graphene", "defects": {"vacancy": {"rate": [0, 0.03]}}},
                         {"structure": ["MoS2", "WS2"], "defects": {"dopant": {"element": "W", "rate": [0, 0.1],
                                                                                "sites": "metal"}}}]}


def _lattice(shape=(96, 96), spacing=12.0, seed=0, px_size_nm=0.01):
    """Gaussian 'atoms' on a square grid with Poisson noise, and their annotations."""
    rng = np.random.default_rng(seed)
    g = np.arange(spacing / 2, shape[0] - 2, spacing)
    gy, gx = np.meshgrid(g, np.arange(spacing / 2, shape[1] - 2, spacing), indexing="ij")
    x, y = gx.ravel() + rng.uniform(-1, 1, gx.size), gy.ravel() + rng.uniform(-1, 1, gy.size)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.zeros(shape, np.float32)
    for xi, yi in zip(x, y):
        img += np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / 8.0)
    img = rng.poisson(50 * img + 5).astype(np.float32)
    ann = Annotations(x=x, y=y, cls=np.ones(x.size, np.int64), score=1.0, source="user", shape=shape,
                      px_size_nm=px_size_nm, image_name=f"lattice{seed}.tif", image_sha256=f"{seed:02d}" * 32)
    return img, ann


@pytest.fixture
def messages(monkeypatch):
    """Message boxes are recorded instead of shown (they would block the test)."""
    seen = []

    def record(_parent, title, text, *a, **k):
        seen.append((title, text))
        return QtWidgets.QMessageBox.Ok

    def ask(_parent, title, text, *a, **k):  # "Use the new model?" and the like: answered Yes
        seen.append((title, text))
        return QtWidgets.QMessageBox.Yes

    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", record)
    monkeypatch.setattr(QtWidgets.QMessageBox, "information", record)
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", ask)
    return seen


@pytest.fixture
def user_dir(tmp_path, monkeypatch, messages):
    monkeypatch.setenv("ATOMLENS_USER_DATA", str(tmp_path / "userdata"))
    return user_models_dir()


@pytest.fixture
def tiny_base(user_dir):
    """A tiny user model whose card carries a small recipe (64 px simulations)."""
    torch.manual_seed(0)
    recipe = {"name": "tiny", "task": "segmentation", "mode": "HAADF", "px_size_A": 0.2, "architecture": TINY_UNET,
              "valid_px_size_A": [0.05, 0.4], "batch_size": 2, "steps": 4, "lr": 4e-3, "val_n": 2,
              "num_workers": 0, "device": "cpu", "seed": 1, "sim": TINY_SIM}
    card = {"name": "tiny", "version": "0", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2, "valid_px_size_A": [0.05, 0.4],
            "mode": "HAADF", "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]},
            "recipe": recipe, "validation": {"val_f1": 0.5}, "training": {"date": "2026-01-01", "device": "cpu"}}
    return save_bundle(build_model(TINY_UNET), card, user_dir / "tiny")


@pytest.fixture
def context():
    img, ann = _lattice()
    mg = Micrograph(data=img, px_size_nm=0.01, mode="HAADF")
    return {"micrograph": mg, "frame": 0, "current_model": "tiny",
            "annotated": [{"name": "lattice0.tif", "image": img, "annotations": ann, "px_size_nm": 0.01}]}


def _dialog(qtbot, manager, context, **budget):
    from atomlens.gui.retrain_dialog import RetrainDialog

    dlg = RetrainDialog(None, manager, context)
    qtbot.addWidget(dlg)
    w = dlg.settings_widget
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("graphene"))
    w.steps_spin.setValue(budget.get("steps", 3))
    w.batch_spin.setValue(2)
    w.patch_spin.setValue(64)
    w.val_spin.setValue(2)
    w.workers_spin.setValue(0)
    w.device_combo.setCurrentIndex(w.device_combo.findData("cpu"))
    return dlg


@pytest.fixture
def manager(qtbot):
    from atomlens.gui.training_manager import TrainingManager

    m = TrainingManager()
    yield m
    if m.is_running():
        m.cancel()
        qtbot.waitUntil(lambda: not m.is_running(), timeout=60000)


# --------------------------------------------------------------------------- estimate
def test_noise_estimates_match_the_simulation():
    for px, dose in ((0.1, 2e4), (0.2, 2e5)):
        r = simulate({"structure": "MoS2", "shape": (256, 256), "px_size_A": px, "noise": {"dose_e_per_A2": dose}}, 3)
        e = estimate_dose_or_noise(3.0 * r.image + 40.0, "HAADF", px)  # any gain and offset
        assert e["key"] == "dose_e_per_A2" and 0.5 < e["raw"] / dose < 2.0
    e = estimate_dose_or_noise(r.image, "HAADF", 0.2, dose_range=(1e3, 5e3))
    assert e["value"] == 5e3 and e["clamped"]
    r = simulate({"structure": "graphene", "shape": (192, 192), "px_size_A": 0.2, "mode": "STM",
                  "noise": {"sigma_A": 0.03, "line_offset_A": 0.05}}, 4)
    e = estimate_dose_or_noise(r.image * 1e-10, "STM", value_units="m")  # heights in metres
    assert e["key"] == "sigma_A" and e["raw"] == pytest.approx(0.03, rel=0.15)
    with pytest.raises(ValueError, match="flat|noise"):
        estimate_dose_or_noise(np.ones((64, 64)), "HAADF", 0.2)


# --------------------------------------------------------------------------- dialog
def test_dialog_prefills_from_the_image(qtbot, tiny_base, manager, context):
    import json
    import shutil

    # a base whose card holds the recipe after the CUDA profile (batch 32): stm-topo's stage 1
    src = {n: p for n, p, _ in list_bundles()}["stm-topo"]
    gpu = tiny_base.parent / "stm-topo-gpu"
    shutil.copytree(src, gpu)
    card = read_card(gpu)
    card.update(name="stm-topo-gpu", recipe=json.loads((gpu / "stage1_card.json").read_text())["recipe"])
    (gpu / "card.json").write_text(json.dumps(card))
    dlg = _dialog(qtbot, manager, context)
    w = dlg.settings_widget
    assert w.base_model()[0] == "tiny"
    assert w.image_px_spin.value() == pytest.approx(10.0)  # 0.01 nm/px = 10 pm/px
    assert w.px_spin.value() == pytest.approx(20.0)  # the new model works at its base's pixel size
    assert w.mode_combo.currentText() == "HAADF" and "calibration" in w.px_note.text()
    assert "Estimated from the image" in w.noise_note.text() and w.noise_spin.suffix().strip() == "e⁻/Å²"
    assert w.name_edit.text().startswith("tiny-ft-")
    assert w.real_list.count() == 1 and "atoms" in w.real_list.item(0).text()
    # the defects of the base recipe's variant for the chosen structure
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("MoS2"))
    row = w.defect_rows["dopant"]
    assert row["check"].isChecked() and row["spin"].value() == pytest.approx(0.1) and row["element"].text() == "W"
    s = w.settings()
    from atomlens.workflows.finetune import build_finetune_recipe

    rec, over = build_finetune_recipe(read_card(tiny_base), tiny_base, s)
    assert rec["init_from"] == str(tiny_base) and rec["px_size_A"] == pytest.approx(0.2)
    assert rec["sim"]["px_size_A"] == [0.18, 0.22] and rec["sim"]["mode"] == "HAADF"
    assert rec["sim"]["structure"] == "MoS2" and "variants" not in rec["sim"]
    assert rec["sim"]["defects"]["dopant"] == {"element": "W", "rate": [0.0, pytest.approx(0.1)], "sites": "metal"}
    assert rec["sim"]["noise"]["dose_e_per_A2"][1] == pytest.approx(9 * rec["sim"]["noise"]["dose_e_per_A2"][0])
    assert over["steps"] == 3 and over["device"] == "cpu" and over["real_fraction"] == 0.3
    assert over["sim_pool"] == 0 and "none is repeated" in w.images_label.text()  # an endless stream
    w.pool_spin.setValue(2)
    assert "from 2 simulated images" in w.images_label.text()
    assert build_finetune_recipe(read_card(tiny_base), tiny_base, w.settings())[0]["sim_pool"] == 2
    w.pool_spin.setValue(0)
    # a bundled base whose card holds the recipe after the CUDA profile (batch 32): the plain
    # values of its recipe file return, and fine-tuning starts at a quarter of its rate
    bundled = {n: str(p) for n, p, _ in list_bundles()}
    w.base_combo.setCurrentIndex(w.base_combo.findData(str(gpu)))
    assert read_card(gpu)["recipe"]["batch_size"] == 32
    assert w.name_edit.text().startswith("stm-topo-gpu-ft-") and w.batch_spin.value() == 12
    assert w.lr_spin.value() == pytest.approx(0.004 / 4) and w.patch_spin.value() == 160
    # stem-haadf 1.2 was fine-tuned on the CPU from stage 3: its card's own recipe (lr 4e-4)
    w.base_combo.setCurrentIndex(w.base_combo.findData(bundled["stem-haadf"]))
    assert w.name_edit.text().startswith("stem-haadf-ft-") and w.batch_spin.value() == 12
    assert w.lr_spin.value() == pytest.approx(read_card(bundled["stem-haadf"])["recipe"]["lr"] / 4)
    assert w.patch_spin.value() == 160
    # its recipe picks checkpoints by simulated class F1: the user's run does not inherit that
    # (its own default picks by the F1 on the held-back annotated atoms)
    assert read_card(bundled["stem-haadf"])["recipe"].get("select_by") == "val_class_f1"
    assert "select_by" not in build_finetune_recipe(read_card(bundled["stem-haadf"]), bundled["stem-haadf"],
                                                    w.settings())[0]
    # an STM image: STM mode and a height noise in pm
    img, _ = _lattice()
    stm = Micrograph(data=img * 1e-11, px_size_nm=0.02, mode="STM", value_units="m")
    dlg2 = _dialog(qtbot, manager, {"micrograph": stm, "annotated": []})
    w2 = dlg2.settings_widget
    assert w2.mode_combo.currentText() == "STM" and w2.noise_spin.suffix().strip() == "pm"
    assert w2.image_px_spin.value() == pytest.approx(20.0) and not w2.real_list.count()


def test_custom_cell_and_bad_settings_give_messages(qtbot, tiny_base, manager, context, messages, tmp_path):
    dlg = _dialog(qtbot, manager, context)
    w = dlg.settings_widget
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("custom"))
    assert w.custom_panel.isVisibleTo(dlg)
    s = w.settings()["structure"]
    assert s["kind"] == "custom" and len(s["sites"]) == 2 and s["a2"][0] == pytest.approx(-1.23)
    w.sites_table.item(0, 0).setText("abc")
    assert not dlg.start_training() and "must be numbers" in messages[-1][1]
    w.name_edit.setText("tiny")  # taken
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("graphene"))
    assert not dlg.start_training() and "already exists" in messages[-1][1]
    w.name_edit.setText("ok-name")
    w.structure_combo.setCurrentIndex(w.structure_combo.findData("cif"))
    assert not w.set_cif(tmp_path / "missing.cif") and "Cannot use it" in w.cif_info.text()
    assert not dlg.start_training() and "CIF" in messages[-1][1]
    from ase.build import bulk
    from ase.io import write

    write(tmp_path / "si.cif", bulk("Si", "diamond", a=5.431))
    w.zone_edit.setText("1 1 0")
    assert w.set_cif(tmp_path / "si.cif") and "columns" in w.cif_info.text()
    assert not manager.is_running()


def test_short_training_makes_a_loadable_model(qtbot, tiny_base, manager, context):
    dlg = _dialog(qtbot, manager, context)
    name = dlg.settings_widget.name_edit.text()
    with qtbot.waitSignal(manager.finished, timeout=120000) as sig:
        assert dlg.start_training()
        assert manager.is_running() and not dlg.start_button.isEnabled()
    path, best = sig.args
    assert path == str(user_models_dir() / name) and "val_f1" in best and "user_f1" in best
    qtbot.waitUntil(lambda: not manager.is_running(), timeout=60000)
    _model, card = load_bundle(path)
    assert name in [n for n, _, _ in list_bundles()]
    assert card["parent"]["name"] == "tiny" and card["recipe"]["init_from"] == str(tiny_base)
    assert [a["name"] for a in card["annotated_images"]] == ["lattice0.tif"]
    assert card["recipe"]["sim"]["shape"] == [64, 64] and card["px_size_A"] == pytest.approx(0.2)
    # live curves: the baseline (step 0) and an evaluation per step (eval_every = 1)
    curves = dlg.curve_data()
    assert curves["val_f1"][0] == [0.0, 1.0, 2.0, 3.0] and len(curves["user_f1"][0]) == 4
    assert curves["val_loss"][0] and all(np.isfinite(curves["train_loss"][1]))
    # before / after on the held-back strip, computed in the worker
    assert manager.comparison and {"before", "after"} <= manager.comparison.keys()
    assert dlg.compare_table.item(2, 0).text() == f"{manager.comparison['before']['f1']:.3f}"
    assert "held-back" in dlg.compare_caption.text() and dlg.use_button.isEnabled()
    with qtbot.waitSignal(dlg.modelChosen) as chosen:
        dlg.use_button.click()
    assert chosen.args == [path]
    assert manager.status_text().startswith(f"New model {name} saved")


def test_closing_the_dialog_keeps_training_and_reopening_shows_curves(qtbot, tiny_base, manager, context):
    from atomlens.gui.retrain_dialog import RetrainDialog

    from atomlens.gui.model_manager import ModelManagerDialog

    models = ModelManagerDialog(None, manager)
    qtbot.addWidget(models)
    dlg = _dialog(qtbot, manager, context, steps=6)
    assert dlg.start_training()
    models.select(dlg.settings_widget.name_edit.text())
    dlg.close()
    dlg.deleteLater()
    assert manager.is_running() and manager.status_text().startswith("Training ")
    # re-opened while training: locked settings, Stop enabled, curves so far, then live ones
    during = RetrainDialog(None, manager, context)
    qtbot.addWidget(during)
    assert not during.start_button.isEnabled() and during.cancel_button.isEnabled()
    assert not during.settings_widget.isEnabled()
    qtbot.waitUntil(lambda: manager.state in ("finished", "cancelled", "failed") and not manager.is_running(),
                    timeout=120000)
    assert manager.state == "finished" and manager.result_path
    assert Path(manager.result_path).name in models.names()  # listed as soon as it is saved
    steps = [m["step"] for m in manager.history if "val_f1" in m]
    assert steps == list(range(7)) and during.curve_data()["val_f1"][0] == steps
    assert during.start_button.isEnabled() and during.use_button.isEnabled()
    again = RetrainDialog(None, manager, context)  # after the end: the same curves and table
    qtbot.addWidget(again)
    assert again.curve_data() == during.curve_data()
    assert again.compare_table.item(2, 1).text() == f"{manager.comparison['after']['f1']:.3f}"


def test_cancel_keeps_the_best_model(qtbot, tiny_base, manager, context):
    from PyQt5 import sip

    from atomlens.gui.training_manager import TrainingManager

    dlg = _dialog(qtbot, manager, context, steps=5000)
    with qtbot.waitSignal(manager.metrics, timeout=60000):
        assert dlg.start_training()
    other = TrainingManager()  # deleting another manager (an old window's) leaves this job alone
    sip.delete(other)
    qtbot.wait(200)
    assert manager.is_running() and manager.state == "training"
    with qtbot.waitSignal(manager.cancelled, timeout=120000) as sig:
        dlg.cancel_button.click()
    path = sig.args[0]
    assert path and load_bundle(path)[1]["training"]["steps"] < 5000
    qtbot.waitUntil(lambda: not manager.is_running(), timeout=60000)
    assert manager.state == "cancelled" and "cancelled early" in manager.status_text()


def test_deleting_the_manager_stops_its_job(qtbot, tiny_base, context):
    from PyQt5 import sip

    from atomlens.gui import training_manager as tm

    m = tm.TrainingManager()
    dlg = _dialog(qtbot, m, context, steps=5000)
    with qtbot.waitSignal(m.metrics, timeout=60000):
        assert dlg.start_training()
    from atomlens.gui.threads import kept_threads

    thread, worker = kept_threads()[-1]
    sip.delete(m)  # e.g. the main window destroyed without closeEvent
    qtbot.waitUntil(lambda: worker.cancel_event.is_set() and worker.abort, timeout=60000)  # at its next step
    qtbot.waitUntil(lambda: thread.isFinished(), timeout=120000)


def test_failure_is_reported_and_leaves_no_folder(qtbot, tiny_base, manager, context, messages, monkeypatch):
    from atomlens.gui import retrain_dialog

    dlg = _dialog(qtbot, manager, context)
    name = dlg.settings_widget.name_edit.text()
    # annotations made on an image of another size cannot be trained on: refused up front
    good = context["annotated"][0]["image"]
    context["annotated"][0]["image"] = good[:64, :64]
    assert not dlg.start_training() and "cannot be used" in messages[-1][1] and not manager.is_running()
    context["annotated"][0]["image"] = good
    # an error inside the training thread (the core refuses a batch of 0) becomes `failed`
    orig = retrain_dialog.build_finetune_recipe

    def zero_batch(*a, **k):
        rec, over = orig(*a, **k)
        return rec, {**over, "batch_size": 0}

    monkeypatch.setattr(retrain_dialog, "build_finetune_recipe", zero_batch)
    with qtbot.waitSignal(manager.failed, timeout=60000) as sig:
        assert dlg.start_training()
    assert "batch_size" in sig.args[0]
    qtbot.waitUntil(lambda: not manager.is_running(), timeout=30000)
    assert manager.state == "failed" and not (user_models_dir() / name).exists()
    assert "failed" in dlg.status_label.text() and dlg.start_button.isEnabled()
    assert manager.status_text().startswith(f"Training {name} failed")


# --------------------------------------------------------------------------- model manager
def test_model_manager_rename_export_import_delete(qtbot, tiny_base, tmp_path, messages):
    from atomlens.gui.model_manager import ModelManagerDialog

    dlg = ModelManagerDialog(None)
    qtbot.addWidget(dlg)
    assert "tiny" in dlg.names() and "stem-haadf" in dlg.names()
    assert dlg.select("tiny") and dlg.rename_button.isEnabled() and "2026-01-01" in dlg.details.toPlainText()
    with qtbot.waitSignal(dlg.modelsChanged):
        new = dlg.rename_model(tiny_base, "renamed")
    assert new.name == "renamed" and read_card(new)["name"] == "renamed" and "tiny" not in dlg.names()
    assert dlg.rename_model(new, "stem-haadf") is None and "already exists" in messages[-1][1]
    # export and import run in the background: busy bar, buttons off, the result by a signal
    with qtbot.waitSignal(dlg.jobFinished, timeout=30000) as done:
        assert dlg.start_export(new, tmp_path / "out")
        assert dlg.is_busy() and dlg.busy_bar.isVisibleTo(dlg) and not dlg.import_button.isEnabled()
        assert not (dlg.export_button.isEnabled() or dlg.rename_button.isEnabled() or dlg.delete_button.isEnabled())
    zipped = Path(done.args[1])
    assert done.args[0] == "export" and zipped.suffix == ".zip" and zipped.is_file() and dlg.last_result == zipped
    assert not dlg.is_busy() and not dlg.busy_bar.isVisibleTo(dlg) and dlg.import_button.isEnabled()
    assert dlg.rename_button.isEnabled() and dlg.export_button.isEnabled()
    folder = dlg.export_model(new, tmp_path / "folder", as_zip=False)  # the waiting form
    assert (folder / "card.json").is_file()
    with qtbot.waitSignals([dlg.modelsChanged, dlg.jobFinished], timeout=30000):
        assert dlg.start_import(zipped)
    imported = dlg.last_result
    assert imported.name == "renamed-2" and load_bundle(imported)[1]["name"] == "renamed-2"
    assert "renamed-2" in dlg.names() and dlg.selected_path() == imported
    assert dlg.import_model(folder).name == "renamed-3"
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with qtbot.waitSignal(dlg.jobFinished, timeout=30000) as done:
        assert dlg.start_import(tmp_path / "junk.zip")
    assert done.args == ["import", ""] and "zip" in messages[-1][1] and dlg.last_result is None
    assert dlg.import_model(tmp_path / "junk.zip") is None and "zip" in messages[-1][1]
    stem = next(p for n, p, o in list_bundles() if n == "stem-haadf")
    dlg.select("stem-haadf")
    assert not dlg.delete_button.isEnabled() and dlg.export_button.isEnabled()
    assert not dlg.delete_model(stem, confirm=False) and "read-only" in messages[-1][1]
    with qtbot.waitSignal(dlg.modelsChanged):
        assert dlg.delete_model(imported, confirm=False)
    assert not imported.exists() and "renamed-2" not in dlg.names()
    # a damaged card is listed, not a crash
    bad = user_models_dir() / "broken"
    bad.mkdir()
    (bad / "card.json").write_text(json.dumps({"name": "broken"}))
    dlg.refresh()
    dlg.select("broken")
    assert "lacks" in dlg.details.toPlainText()


def test_model_manager_jobs_leave_the_gui_thread_free(qtbot, tiny_base, tmp_path, messages, monkeypatch):
    import threading
    import time
    import zipfile

    from PyQt5 import QtCore, sip

    from atomlens.gui import model_manager as mm
    from atomlens.gui import model_manager_jobs as mm_jobs
    from atomlens.workflows import models as bundle  # the layer the GUI calls

    dlg = mm.ModelManagerDialog(None)
    qtbot.addWidget(dlg)
    seen = {}

    def slowed(fn):
        def run(*a, **k):
            seen.setdefault("threads", []).append(threading.get_ident())
            time.sleep(0.6)
            seen["slept_until"] = time.monotonic()
            return fn(*a, **k)
        return run

    monkeypatch.setattr(bundle, "export_bundle", slowed(bundle.export_bundle))
    monkeypatch.setattr(bundle, "import_bundle", slowed(bundle.import_bundle))
    ticks = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    t0 = time.monotonic()
    with qtbot.waitSignal(dlg.jobFinished, timeout=30000) as done:
        assert dlg.start_export(tiny_base, tmp_path / "slow.zip")
        assert not dlg.start_import(tmp_path / "slow.zip") and "running" in messages[-1][1]  # one job at a time
        assert dlg.delete_model(tiny_base, confirm=False) is False and tiny_base.exists()
    # the job ran on another thread, and the GUI's event loop kept running timers meanwhile
    assert len(seen["threads"]) == 1 and seen["threads"][0] != threading.get_ident()
    assert len([t for t in ticks if t0 < t < seen["slept_until"]]) >= 5
    assert done.args == ["export", str(tmp_path / "slow.zip")]
    with qtbot.waitSignal(dlg.modelsChanged, timeout=30000):  # the import likewise
        assert dlg.start_import(tmp_path / "slow.zip")
        ticks.clear()
    assert len(ticks) >= 5 and len(seen["threads"]) == 2 and threading.get_ident() not in seen["threads"]
    timer.stop()
    # closing the dialog mid-job: the job finishes, its result still arrives
    with qtbot.waitSignal(dlg.modelsChanged, timeout=30000):
        assert dlg.start_import(tmp_path / "slow.zip")
        dlg.close()
    assert (user_models_dir() / "tiny-3" / "card.json").is_file() and not dlg.is_busy()
    # deleting it mid-job: the thread ends on its own, the zip is whole, nothing is left over
    other = mm.ModelManagerDialog(None)
    assert other.start_export(tiny_base, tmp_path / "gone" / "t.zip")
    thread = mm_jobs.JOBS[-1][0]
    sip.delete(other)
    qtbot.waitUntil(thread.isFinished, timeout=30000)
    qtbot.wait(50)  # its result signal has no receiver left: nothing happens
    assert zipfile.ZipFile(tmp_path / "gone" / "t.zip").namelist() and os.listdir(tmp_path / "gone") == ["t.zip"]


def test_exported_training_data_can_be_added(qtbot, tiny_base, manager, context, tmp_path):
    from atomlens.analysis.training_labels import export_training_pair

    img, ann = _lattice(seed=5)
    paths = export_training_pair(img, ann, tmp_path, "earlier")
    (tmp_path / "lonely.annotations.json").write_text(paths[2].read_text())  # no image beside it
    dlg = _dialog(qtbot, manager, context)
    group = dlg.settings_widget.real_group
    assert dlg.settings_widget.real_list.count() == 1
    errors = group.add_pairs([paths[2], tmp_path / "lonely.annotations.json", paths[2]])
    assert len(errors) == 2 and "lonely" in errors[0] and "already in the list" in errors[1]
    assert dlg.settings_widget.real_list.count() == 2
    items = dlg.settings_widget.annotated_images()
    assert [i.name for i in items] == ["lattice0.tif", "lattice5.tif"] and items[1].n_atoms == len(ann)
    np.testing.assert_array_equal(items[1].image, img)
    # with no image open and annotated, exported data alone can be trained on
    empty = _dialog(qtbot, manager, {"micrograph": context["micrograph"], "annotated": []})
    g = empty.settings_widget.real_group
    assert not g.real_list.isEnabled() and g.add_button.isEnabled()
    assert g.add_pairs([paths[2]]) == [] and g.real_list.isEnabled() and g.real_slider.isEnabled()
