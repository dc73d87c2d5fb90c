"""`atomlens detect` end to end with a tiny (untrained) bundle: files, formats, exit codes."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from atomlens.cli import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, EXIT_USAGE, main

from _bundles import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b"))


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_detect_writes_atom_tables(bundle, real_data, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copyfile(real_data / "WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg", tmp_path / "wse2.jpg")  # no scan size in its name
    rc = main(["detect", str(real_data / "G-Si-2nm.hdf5"), str(tmp_path / "wse2.jpg"),
               "--out", str(out), "--model", str(bundle), "--device", "cpu", "--threshold", "0.3"])
    assert rc == EXIT_OK
    cal = _rows(out / "G-Si-2nm.atoms.csv")
    assert cal[0] == ["x", "y", "class", "score", "x_nm", "y_nm"]
    for x, y, cls, score, xnm, ynm in cal[1:]:
        assert 0 <= float(x) <= 255 and 0 <= float(y) <= 255
        assert cls in ("atom", "dopant", "vacancy") and 0 <= float(score) <= 1
        assert float(xnm) == pytest.approx(float(x) * 2 / 256, abs=1e-4)  # 2 nm over 256 px
    uncal = _rows(out / "wse2.atoms.csv")
    assert all(r[4] == "" and r[5] == "" for r in uncal[1:])  # no calibration: nm left empty
    err = capsys.readouterr().err
    assert "no calibration" in err  # the assumed scale is reported


def test_detect_and_batch_tta_average_the_eight_views(bundle, tmp_path):
    """--tta: the maps are the mean over the 8 rotations/mirrors, so a rotated image gives the
    rotated atoms (a plain untrained network does not); the JSON summary says it was used."""
    import json

    img = np.random.default_rng(2).normal(size=(48, 48)).astype(np.float32) + 5
    np.save(tmp_path / "a.npy", img)
    np.save(tmp_path / "b.npy", np.ascontiguousarray(np.rot90(img)))
    res = {}
    for tta in (False, True):
        out = tmp_path / f"out{tta}"
        args = ["detect", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out), "--model", str(bundle),
                "--device", "cpu", "--px-size-nm", "0.02", "--threshold", "0.3", "--json"] + (["--tta"] if tta else [])
        assert main(args) == EXIT_OK
        assert json.loads((out / "a.json").read_text())["tta"] is tta
        res[tta] = [np.array([[float(v) for v in r[:2]] for r in _rows(out / f"{s}.atoms.csv")[1:]]).reshape(-1, 2)
                    for s in "ab"]
    a, b = res[True]
    assert len(a) == len(b) > 0
    # rot90 (counter-clockwise): pixel (x, y) of a goes to (y, 47 - x) in b (within bf16 rounding)
    from atomlens.analysis.metrics import match_points

    ip, _, _ = match_points(np.column_stack([a[:, 1], 47 - a[:, 0]]), b, 0.5)
    assert len(ip) == len(a)
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "batch"), "--model", str(bundle), "--device", "cpu",
                 "--px-size-nm", "0.02", "--tta", "--json"]) == EXIT_OK
    assert json.loads((tmp_path / "batch" / "a.json").read_text())["tta"] is True
    assert json.loads((tmp_path / "batch" / "a.json").read_text())["views"] == 8
    assert json.loads((tmp_path / "outFalse" / "a.json").read_text())["views"] == 2  # image and half turn
    # --single-view: one pass; a half-turned image then gives other atoms than the default does
    np.save(tmp_path / "c.npy", np.ascontiguousarray(np.rot90(img, 2)))
    for one in (False, True):
        out = tmp_path / f"one{one}"
        assert main(["detect", str(tmp_path / "a.npy"), str(tmp_path / "c.npy"), "--out", str(out), "--model",
                     str(bundle), "--device", "cpu", "--px-size-nm", "0.02", "--threshold", "0.3", "--json"]
                    + (["--single-view"] if one else [])) == EXIT_OK
        assert json.loads((out / "a.json").read_text())["views"] == (1 if one else 2)
        a, c = (np.array([[float(v) for v in r[:2]] for r in _rows(out / f"{s}.atoms.csv")[1:]]).reshape(-1, 2)
                for s in "ac")
        ip, _, _ = match_points(47 - a, c, 0.5)  # (x, y) -> (47 - x, 47 - y) under the half turn
        assert (len(ip) == len(a) == len(c)) is not one


def test_detect_px_size_override_fills_nm(bundle, real_data, tmp_path):
    out = tmp_path / "o"
    f = real_data / "WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg"
    assert main(["detect", str(f), "--out", str(out), "--model", str(bundle), "--px-size-nm", "0.00977"]) == EXIT_OK
    rows = _rows(out / f"{f.stem}.atoms.csv")[1:]
    if rows:
        assert float(rows[0][4]) == pytest.approx(float(rows[0][0]) * 0.00977, abs=1e-4)


def test_detect_and_batch_edge_margin(bundle, real_data, tmp_path, capsys):
    """--edge-margin-px N leaves out exactly the columns within N px of an edge, in detect and
    batch alike; a negative or non-numeric margin is a usage error."""
    import json
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(real_data / "G-Si-2nm.hdf5", src / "G-Si-2nm.hdf5")
    common = ["--model", str(bundle), "--device", "cpu", "--threshold", "0.3"]
    assert main(["detect", str(src / "G-Si-2nm.hdf5"), "--out", str(tmp_path / "all")] + common) == EXIT_OK
    assert main(["detect", str(src / "G-Si-2nm.hdf5"), "--out", str(tmp_path / "m"), "--json",
                 "--edge-margin-px", "45"] + common) == EXIT_OK
    assert main(["batch", str(src), "--out", str(tmp_path / "b"), "--edge-margin-px", "45"] + common) == EXIT_OK
    every = np.array([[float(r[0]), float(r[1])] for r in _rows(tmp_path / "all" / "G-Si-2nm.atoms.csv")[1:]])
    inner = (every.min(1) >= 45) & (every.max(1) <= 255 - 45)
    assert 0 < inner.sum() < len(every)  # the untrained model finds a few blobs, some near the edges
    for out in ("m", "b"):
        got = np.array([[float(r[0]), float(r[1])] for r in _rows(tmp_path / out / "G-Si-2nm.atoms.csv")[1:]])
        np.testing.assert_allclose(got, every[inner])
    assert json.loads((tmp_path / "m" / "G-Si-2nm.json").read_text())["edge_margin_px"] == 45
    capsys.readouterr()
    for bad in ("-1", "inf"):
        assert main(["detect", str(src / "G-Si-2nm.hdf5"), "--out", str(tmp_path / "x"),
                     "--edge-margin-px", bad] + common) == EXIT_USAGE
        assert "--edge-margin-px must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["detect", str(src / "G-Si-2nm.hdf5"), "--out", str(tmp_path / "x"), "--edge-margin-px", "many"])


def test_detect_bad_inputs(bundle, tmp_path, capsys):
    bad = tmp_path / "broken.emd"
    bad.write_bytes(b"\x89HDF\r\n" + b"0" * 50)
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    rc = main(["detect", str(bad), str(good), "--out", str(tmp_path / "o"), "--model", str(bundle),
               "--px-size-nm", "0.02"])
    assert rc == EXIT_BAD_INPUT
    assert (tmp_path / "o" / "good.atoms.csv").exists()  # the good file is still processed
    assert "error: broken.emd" in capsys.readouterr().err
    assert main(["detect", str(good), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel")]) == EXIT_ERROR
    assert "no model" in capsys.readouterr().err
    assert main(["detect", str(good), "--out", str(tmp_path / "o"), "--threshold", "1.5"]) == EXIT_USAGE


def test_detect_stack_frames(bundle, tmp_path):
    stack = tmp_path / "movie.npy"
    np.save(stack, np.random.default_rng(1).random((3, 48, 48)).astype(np.float32))
    out = tmp_path / "o"
    assert main(["detect", str(stack), "--out", str(out), "--model", str(bundle), "--px-size-nm", "0.02",
                 "--frame", "all"]) == EXIT_OK
    assert sorted(p.name for p in out.glob("*.csv")) == [f"movie_f000{i}.atoms.csv" for i in range(3)]


def test_detect_inverts_abf_for_a_bright_atom_model(bundle, real_data, tmp_path, capsys):
    f = real_data / "test_ABF_cropped.hdf5"
    assert main(["detect", str(f), "--out", str(tmp_path), "--model", str(bundle)]) == EXIT_OK
    assert "ABF contrast inverted" in capsys.readouterr().err


def test_detect_hspy_writes_the_signal_with_its_atoms(bundle, real_data, tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    out = tmp_path / "out"
    assert main(["detect", str(real_data / "G-Si-2nm.hdf5"), "--out", str(out), "--model", str(bundle),
                 "--device", "cpu", "--threshold", "0.3", "--hspy"]) == EXIT_OK
    s = hs.load(out / "G-Si-2nm.hspy")
    assert s.data.shape == (256, 256) and s.axes_manager.signal_axes[0].scale == pytest.approx(2 / 256)
    rows = _rows(out / "G-Si-2nm.atoms.csv")[1:]
    np.testing.assert_allclose(s.metadata.AtomLens.atoms.x, [float(r[0]) for r in rows], atol=1e-3)
