"""Batch processing of a folder: core function, `atomlens batch`, and the GUI dialog."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
from PyQt5 import QtCore

from atomlens.workflows.analyse import AnalysisSettings
from atomlens.workflows.batch import SUMMARY_NAME, iter_micrograph_files, process_paths
from atomlens.workflows.models import ModelCache
from atomlens.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from atomlens.sim import simulate

PX_NM = 0.01  # the simulations' 0.1 Å/px


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two simulated graphene images, one corrupt .npy, and files that are not micrographs."""
    d = tmp_path_factory.mktemp("batch")
    for i, name in enumerate(("graphene_a", "graphene_b")):
        r = simulate({"structure": "graphene", "shape": (128, 128), "px_size_A": 0.1, "noise": {}}, 10 + i)
        np.save(d / f"{name}.npy", r.image.astype(np.float32))
    (d / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00garbage that is no array header")
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.npy").write_bytes(b"x")
    return d


@pytest.fixture(scope="module")
def predictors():
    return ModelCache(remember_failures=True)  # one stem-haadf Predictor for all tests of this module


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_iter_micrograph_files(folder, tmp_path):
    assert [p.name for p in iter_micrograph_files(folder)] == ["broken.npy", "graphene_a.npy", "graphene_b.npy"]
    sub = tmp_path / "sub"
    sub.mkdir()
    (tmp_path / "a.DM4").write_bytes(b"")
    (sub / "b.tif").write_bytes(b"")
    (tmp_path / "a.cam.npy").write_bytes(b"")  # our own output
    (tmp_path / "scan.emi").write_bytes(b"")
    (tmp_path / "scan_1.ser").write_bytes(b"")  # TIA: the .ser holds the data
    assert [p.name for p in iter_micrograph_files(tmp_path)] == ["a.DM4", "scan_1.ser"]
    assert [p.name for p in iter_micrograph_files(tmp_path, recursive=True)] == ["a.DM4", "scan_1.ser", "b.tif"]
    with pytest.raises(NotADirectoryError):
        iter_micrograph_files(tmp_path / "a.DM4")


def test_process_paths_writes_csvs_and_reports_bad_file(folder, tmp_path, predictors):
    files = iter_micrograph_files(folder)
    logs, prog = [], []
    rows = process_paths(files, tmp_path / "out", device="cpu", settings=AnalysisSettings(px_size_nm=PX_NM), log=logs.append,
                         progress=lambda f, m: prog.append((f, m)), models=predictors)
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    assert "broken.npy" in rows[0]["message"] and any("broken.npy" in m for m in logs if m.startswith("error"))
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.atoms.csv")) == ["graphene_a.atoms.csv", "graphene_b.atoms.csv"]
    for r in rows[1:]:
        table = _csv_rows(out / f"{r['path'].rsplit('/', 1)[-1][:-4]}.atoms.csv")
        assert r["n_atoms"] == len(table) > 50 and r["model"] == "stem-haadf"
        assert sum(r["counts"].values()) == r["n_atoms"]
        assert float(table[0]["x_nm"]) == pytest.approx(float(table[0]["x"]) * PX_NM, abs=1e-4)
    summary = _csv_rows(out / SUMMARY_NAME)
    assert [s["status"] for s in summary] == ["error", "ok", "ok"]
    assert summary[1]["n_atoms"] == str(rows[1]["n_atoms"]) and "n_atom" in summary[1]
    # progress: monotone, ends at 1, names the file and its index
    fr = [f for f, _ in prog]
    assert fr == sorted(fr) and fr[-1] == 1.0 and any("graphene_b.npy (3/3)" in m for _, m in prog)
    assert "stem-haadf" in predictors  # the model is cached for the next call


def test_batch_csv_equals_detect(folder, tmp_path, predictors):
    f = folder / "graphene_a.npy"
    process_paths([f], tmp_path / "b", device="cpu", settings=AnalysisSettings(px_size_nm=PX_NM), json_summary=True, log=lambda m: None,
                  models=predictors)
    assert main(["detect", str(f), "--out", str(tmp_path / "d"), "--px-size-nm", str(PX_NM), "--device", "cpu",
                 "--json"]) == EXIT_OK
    for name in ("graphene_a.atoms.csv", "graphene_a.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "d" / name).read_bytes()


def test_cancel_stops_after_current_file(folder, tmp_path, predictors):
    files = iter_micrograph_files(folder)[1:]  # the two good ones
    cancel = threading.Event()

    def progress(frac, msg):
        if "(1/2)" in msg:
            cancel.set()  # while the first file is being analysed

    rows = process_paths(files, tmp_path / "o", device="cpu", settings=AnalysisSettings(px_size_nm=PX_NM), progress=progress, cancel=cancel,
                         log=lambda m: None, models=predictors)
    assert [r["status"] for r in rows] == ["ok", "skipped"]
    assert [p.name for p in (tmp_path / "o").glob("*.atoms.csv")] == ["graphene_a.atoms.csv"]


def test_stem_clash_and_bad_options(tmp_path, predictors):
    img = simulate({"structure": "graphene", "shape": (96, 96), "px_size_A": 0.1, "noise": {}}, 1).image
    d = tmp_path / "in"
    (d / "x").mkdir(parents=True)
    np.save(d / "same.npy", img.astype(np.float32))
    np.save(d / "x" / "same.npy", img.astype(np.float32))
    rows = process_paths(iter_micrograph_files(d, recursive=True), tmp_path / "o", device="cpu", settings=AnalysisSettings(px_size_nm=PX_NM),
                         log=lambda m: None, models=predictors)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.csv")) == [
        "batch_summary.csv", "same.atoms.csv", "same_npy.atoms.csv"]  # nothing overwritten
    rows = process_paths([d / "same.npy"], tmp_path / "o2", model="no-such-model", log=lambda m: None)
    assert rows[0]["status"] == "error" and "no-such-model" in rows[0]["message"]
    with pytest.raises(ValueError, match="threshold"):
        process_paths([], tmp_path, settings=AnalysisSettings(threshold=1.5))
    with pytest.raises(ValueError, match="refine"):
        process_paths([], tmp_path, settings=AnalysisSettings(refine="spline"))


def test_cli_batch(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["batch", str(folder), "--out", str(out), "--px-size-nm", str(PX_NM), "--device", "cpu"])
    assert rc == EXIT_BAD_INPUT  # one corrupt file
    cap = capsys.readouterr()
    assert "2 of 3 files processed" in cap.out and "broken.npy" in cap.err
    assert sorted(p.name for p in out.glob("*.atoms.csv")) == ["graphene_a.atoms.csv", "graphene_b.atoms.csv"]
    assert (out / SUMMARY_NAME).exists()
    good = tmp_path / "good"
    good.mkdir()
    (good / "g.npy").write_bytes((folder / "graphene_b.npy").read_bytes())
    assert main(["batch", str(good), "--out", str(tmp_path / "o2"), "--px-size-nm", str(PX_NM),
                 "--device", "cpu"]) == EXIT_OK
    # a material hint that does not fit the lattice (graphene is no MoS2) is reported, not applied
    assert main(["batch", str(good), "--out", str(tmp_path / "o4"), "--px-size-nm", str(PX_NM),
                 "--device", "cpu", "--material", "MoS2", "--json"]) == EXIT_OK
    summary = json.loads((tmp_path / "o4" / "g.json").read_text())
    assert summary["material"] == "MoS2"
    assert any(n.startswith("material hint MoS2 not applied") for n in summary["notes"])
    # the defect options of detect: passed through (the JSON records them), out of range refused
    assert main(["batch", str(good), "--out", str(tmp_path / "o5"), "--px-size-nm", str(PX_NM), "--device", "cpu",
                 "--json", "--min-defect-score", "0.3", "--no-defect-check"]) == EXIT_OK
    d = json.loads((tmp_path / "o5" / "g.json").read_text())
    assert d["min_defect_score"] == 0.3 and d["defect_check"] is False
    assert main(["batch", str(good), "--out", str(tmp_path / "o6"), "--min-defect-score", "2"]) == EXIT_USAGE
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")]) == EXIT_USAGE
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", str(empty), "--out", str(tmp_path / "o3")]) == EXIT_BAD_INPUT
    assert "no micrographs" in capsys.readouterr().err


# ------------------------------------------------------------------ GUI dialog
def _dialog(qtbot, folder, out, **kw):
    from atomlens.gui.batch_dialog import BatchDialog

    dlg = BatchDialog(None, dict({"folder": str(folder), "out_dir": str(out), "device": "cpu",
                                  "px_size_nm": PX_NM, "threshold": 0.5}, **kw))
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def _log(dlg):
    return [dlg.log_list.item(i).text() for i in range(dlg.log_list.count())]


def test_batch_dialog_runs_without_blocking(qtbot, folder, tmp_path):
    dlg = _dialog(qtbot, folder, tmp_path / "gui")
    assert dlg.options()["model"] == "auto" and dlg.options()["px_size_nm"] == PX_NM
    assert dlg.options()["material"] is None
    assert dlg.options()["edge_margin_px"] == 0
    hinted = _dialog(qtbot, folder, tmp_path / "gui2", material="WSe2", edge_margin_px=5)
    assert hinted.options()["material"] == "WSe2" and hinted.options()["edge_margin_px"] == 5
    hinted.close()
    ticks = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    with qtbot.waitSignal(dlg.batchFinished, timeout=180_000) as sig:
        qtbot.mouseClick(dlg.start_button, QtCore.Qt.LeftButton)
        assert dlg.running and not dlg.start_button.isEnabled() and dlg.cancel_button.isEnabled()
    timer.stop()
    assert len(ticks) >= 3  # the event loop kept running during the batch
    rows = sig.args[0]
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    log = _log(dlg)
    assert log[0].startswith("error:") and "broken.npy" in log[0]
    assert log[1].startswith("graphene_a.npy: ") and "atoms" in log[1]
    assert log[2].startswith("graphene_b.npy: ")
    assert log[-1] == "Done: 2 ok, 1 failed"
    assert dlg.progress_bar.value() == 1000 and not dlg.running and dlg.start_button.isEnabled()
    assert sorted(p.name for p in (tmp_path / "gui").glob("*.atoms.csv")) == [
        "graphene_a.atoms.csv", "graphene_b.atoms.csv"]


def test_batch_dialog_cancel_and_bad_folder(qtbot, folder, tmp_path):
    dlg = _dialog(qtbot, folder, tmp_path / "c")
    with qtbot.waitSignal(dlg.batchFinished, timeout=180_000) as sig:
        dlg.start()
        dlg.cancel()
    statuses = [r["status"] for r in sig.args[0]]
    assert statuses.count("skipped") >= 2  # at most the file in progress was finished
    assert "skipped (cancelled)" in _log(dlg)[-1]
    dlg.folder_edit.setText(str(tmp_path / "nope"))
    assert dlg.start() is False and not dlg.running
    assert _log(dlg)[-1].startswith("error:") and "nope" in _log(dlg)[-1]


def test_a_gpu_failure_with_device_auto_falls_back_to_the_cpu(folder, tmp_path, predictors):
    """The GUI's fall-back is the workflow layer's: with device "auto" a GPU that fails mid-run is
    replaced by the CPU for the rest of the run, and the result says so."""

    class _FailingGPU:
        def __init__(self, card):
            self.card = card

        def detect(self, *a, **k):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    class _Cache(ModelCache):
        def get(self, model, device="auto", cpu_bf16=None):
            real = predictors.get(model, "cpu")
            return real if (device == "cpu" or self.gpu_failed) else _FailingGPU(real.card)

    cache = _Cache()
    out = tmp_path / "fb"
    rows = process_paths([folder / "graphene_a.npy", folder / "graphene_b.npy"], out, device="auto",
                         settings=AnalysisSettings(px_size_nm=PX_NM), json_summary=True, log=lambda m: None,
                         models=cache)
    assert [r["status"] for r in rows] == ["ok", "ok"] and cache.gpu_failed
    notes = json.loads((out / "graphene_a.json").read_text())["notes"]
    assert any(n.startswith("the GPU failed (CUDA error: an illegal memory access") for n in notes)
    assert not any("GPU failed" in n for n in json.loads((out / "graphene_b.json").read_text())["notes"])
    ref = tmp_path / "ref"
    process_paths([folder / "graphene_a.npy"], ref, device="cpu", settings=AnalysisSettings(px_size_nm=PX_NM),
                  log=lambda m: None, models=predictors)
    assert (out / "graphene_a.atoms.csv").read_bytes() == (ref / "graphene_a.atoms.csv").read_bytes()


def test_single_atoms_without_a_lattice_go_to_the_single_atom_model(tmp_path, user_models, predictors):
    """With the model picked from the mode, a Z-contrast image whose columns form no lattice is
    analysed again with stem-single-atoms (when installed), and the notes say so; a lattice stays
    with stem-haadf, and a model the user names is never replaced."""
    import shutil

    from _bundles import make_tiny_bundle

    shutil.move(str(make_tiny_bundle(tmp_path / "b", name="single")), str(user_models / "stem-single-atoms"))
    sa = simulate({"structure": "single_atoms", "shape": (160, 160), "px_size_A": 0.1, "mode": "HAADF",
                   "structure_params": {"element": "Pt", "n_atoms": 12, "n_clusters": 0}}, 3).image
    lat = simulate({"structure": "graphene", "shape": (128, 128), "px_size_A": 0.1, "noise": {}}, 12).image
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "pt.npy", sa.astype(np.float32))
    np.save(d / "graphene.npy", lat.astype(np.float32))
    out = tmp_path / "o"
    rows = process_paths([d / "pt.npy", d / "graphene.npy"], out, device="cpu", json_summary=True,
                         settings=AnalysisSettings(px_size_nm=PX_NM), log=lambda m: None, models=predictors)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    pt, gr = (json.loads((out / f"{n}.json").read_text()) for n in ("pt", "graphene"))
    assert pt["model"] == "single" and any(n.startswith("single atoms on a support: the columns stem-haadf found")
                                           for n in pt["notes"])
    assert gr["model"] == "stem-haadf" and not any("single atoms on a support" in n for n in gr["notes"])
    named = tmp_path / "named"
    process_paths([d / "pt.npy"], named, model="stem-haadf", device="cpu", json_summary=True,
                  settings=AnalysisSettings(px_size_nm=PX_NM), log=lambda m: None, models=predictors)
    assert json.loads((named / "pt.json").read_text())["model"] == "stem-haadf"
