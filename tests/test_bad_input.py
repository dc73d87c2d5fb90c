"""Bad input: every kind of bad file and bad model bundle gives one error type with a readable
message, through ``load``, ``atomlens info``, ``atomlens detect`` and ``atomlens batch``; a bad file
never stops the others; pickles are never run; wide dtypes keep their contrast."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from atomlens.cli import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, main
from atomlens.io import ALL_EXTENSIONS, LoadError, load

from _bundles import TINY_UNET, make_tiny_bundle

PX_NM = 0.01
_RNG = np.random.default_rng(7)


def _sxm_bytes(over=None, data=None, trunc=None) -> bytes:
    h = {"NANONIS_VERSION": "2", "SCANIT_TYPE": "FLOAT MSBFIRST", "SCAN_PIXELS": "16 16",
         "SCAN_RANGE": "5e-9 5e-9", "SCAN_OFFSET": "0 0", "SCAN_ANGLE": "0", "SCAN_DIR": "down",
         "DATA_INFO": "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset\n\t14\tZ\tm\tboth\t1\t0\n"}
    h.update(over or {})
    text = "".join(f":{k}:\n{v}\n" for k, v in h.items()) + ":SCANIT_END:\n"
    body = data if data is not None else _RNG.random(16 * 16 * 2).astype(">f4").tobytes()
    raw = text.encode("latin-1") + b"\x1a\x04" + body
    return raw[:trunc] if trunc else raw


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_bad_files(d: Path) -> dict[str, tuple[Path, str]]:
    """{kind: (path, words the message must hold)}: files that no reader can make an image of."""
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    def put(kind, name, raw, words):
        p = d / name
        p.write_bytes(raw)
        out[kind] = (p, words)

    def npy(kind, arr, words, pickle=False):
        p = d / f"{kind}.npy"
        with open(p, "wb") as fh:
            np.save(fh, arr, allow_pickle=pickle)
        out[kind] = (p, words)

    for ext in ALL_EXTENSIONS:
        if ext != "zspy":  # a zspy is a folder: see "zspy-file"
            put(f"random-{ext}", f"random.{ext}", _RNG.bytes(3000), "")
        put(f"empty-{ext}", f"empty.{ext}", b"", "empty")
    put("zspy-file", "random.zspy", _RNG.bytes(3000), "")
    put("wrong-extension", "image.xyz", b"P5 16 16 255\n" + bytes(256), "unsupported")
    put("no-extension", "image", _RNG.bytes(300), "unsupported")
    raw_npy = _npy_bytes(_RNG.random((64, 64)))
    put("npy-truncated", "cut.npy", raw_npy[:500], "truncated")
    put("npy-bad-header", "header.npy", b"\x93NUMPY\x01\x00" + b"\xff" * 200, "header")
    put("png-named-npy", "png.npy", _png_bytes(), "not a NumPy")
    put("npy-named-png", "npy.png", raw_npy, "")
    put("png-truncated", "cut.png", _png_bytes()[:60], "")
    npy("npy-0d", np.array(3.0), "0D")
    npy("npy-1d", np.arange(100.0), "1D")
    npy("npy-4d", np.zeros((2, 2, 16, 16)), "4D")
    npy("npy-5d", np.zeros((2, 2, 2, 16, 16)), "5D")
    npy("npy-all-nan", np.full((16, 16), np.nan), "NaN")
    npy("npy-all-inf", np.full((16, 16), -np.inf), "NaN or infinite")
    npy("npy-strings", np.array([["a"] * 16] * 16), "not numbers")
    npy("npy-datetime", np.zeros((16, 16), "datetime64[s]"), "not numbers")
    npy("npy-timedelta", np.zeros((16, 16), "timedelta64[s]"), "not numbers")
    npy("npy-structured", np.zeros((16, 16), [("a", "f4"), ("b", "i4")]), "not numbers")
    npy("npy-void", np.zeros((16, 16), "V4"), "not numbers")
    npy("npy-tiny", np.ones((2, 2)), "only 2 x 2")
    npy("npy-one-row", _RNG.random((1, 5000)), "only 5000 x 1")
    npy("npy-empty-array", np.zeros((0, 16)), "empty")
    npy("npy-objects", np.array([{"a": 1}], dtype=object), "Python objects", pickle=True)
    npy("npy-pickle-payload", np.array([_Payload(d / "PAYLOAD_RAN")], dtype=object), "Python objects", pickle=True)
    put("sxm-random-header", "junk.sxm", b":NANONIS_VERSION:\n2\n" + _RNG.bytes(500), "not a Nanonis")
    put("sxm-nan-pixels", "nanpix.sxm", _sxm_bytes({"SCAN_PIXELS": "nan nan"}), "SCAN_PIXELS")
    put("sxm-inf-pixels", "infpix.sxm", _sxm_bytes({"SCAN_PIXELS": "inf 16"}), "SCAN_PIXELS")
    put("sxm-text-pixels", "textpix.sxm", _sxm_bytes({"SCAN_PIXELS": "sixteen 16"}), "SCAN_PIXELS")
    put("sxm-fraction-pixels", "fracpix.sxm", _sxm_bytes({"SCAN_PIXELS": "16.5 16"}), "whole number")
    put("sxm-negative-pixels", "negpix.sxm", _sxm_bytes({"SCAN_PIXELS": "-16 16"}), "empty scan")
    put("sxm-huge-pixels", "hugepix.sxm", _sxm_bytes({"SCAN_PIXELS": "1e30 16"}), "implausible")
    put("sxm-no-channels", "nochan.sxm", _sxm_bytes({"DATA_INFO": "nothing"}), "no data channels")
    put("sxm-int-data", "int.sxm", _sxm_bytes({"SCANIT_TYPE": "INT MSBFIRST"}), "not supported")
    put("sxm-truncated", "cut.sxm", _sxm_bytes(trunc=450), "truncated")
    put("sxm-no-data-mark", "nomark.sxm", _sxm_bytes().split(b"\x1a\x04")[0], "no data block")
    put("sxm-all-nan", "allnan.sxm", _sxm_bytes(data=np.full(512, np.nan, ">f4").tobytes()), "NaN")
    import h5py

    with h5py.File(d / "noimage.h5", "w") as f:
        f["x"] = np.arange(10)
    out["h5-no-image"] = (d / "noimage.h5", "no 2D image")
    with h5py.File(d / "cut.hdf5", "w") as f:
        f["image"] = _RNG.random((64, 64))
    (d / "cut.hdf5").write_bytes((d / "cut.hdf5").read_bytes()[:1500])
    out["hdf5-truncated"] = (d / "cut.hdf5", "")
    (d / "folder.dm4").mkdir(exist_ok=True)
    out["folder"] = (d / "folder.dm4", "folder")
    return out


def _npy_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png_bytes() -> bytes:
    import io

    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, (_RNG.random((16, 16)) * 255).astype(np.uint8), extension=".png")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_files(tmp_path_factory.mktemp("bad"))


def _readable(msg: str, path: Path):
    assert path.name in msg, msg
    assert "Traceback" not in msg and "NaN to integer" not in msg and len(msg) < 600, msg


def test_at_least_40_kinds(bad):
    assert len(bad) >= 40


def test_load_gives_one_error_type(bad):
    for kind, (path, words) in bad.items():
        with pytest.raises(LoadError) as info:
            load(path)
        _readable(str(info.value), path)
        assert words.lower() in str(info.value).lower(), (kind, str(info.value))
    assert not (path.parent / "PAYLOAD_RAN").exists()  # the pickle never ran


def test_random_bytes_are_not_called_pickles(bad):
    for kind in ("random-npy", "png-named-npy", "npy-truncated"):
        with pytest.raises(LoadError) as info:
            load(bad[kind][0])
        assert "Python objects" not in str(info.value), (kind, str(info.value))


def test_info_reports_every_bad_file_and_goes_on(bad, tmp_path, capsys):
    good = tmp_path / "good.npy"
    np.save(good, _RNG.random((32, 32)).astype(np.float32))
    paths = [str(p) for p, _ in bad.values()]
    assert main(["info", paths[0], str(good), *paths[1:]]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert "32 x 32 px" in out  # the good file, second on the line, was read
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == len(bad) and all(ln.startswith("error: ") for ln in lines), err[:2000]
    assert "Traceback" not in err and not (tmp_path.parent / "PAYLOAD_RAN").exists()


def _sim(seed=3, shape=(96, 96)):
    from atomlens.sim import simulate

    return simulate({"structure": "graphene", "shape": shape, "px_size_A": 0.1, "noise": {}}, seed).image


def test_detect_goes_on_after_bad_files(bad, tmp_path, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, _sim(3).astype(np.float32))
    np.save(b, _sim(4).astype(np.float32))
    sxm = [str(p) for k, (p, _) in bad.items() if k.startswith("sxm")]
    others = [str(p) for k, (p, _) in bad.items() if not k.startswith("sxm")]
    rc = main(["detect", str(a), *sxm, str(b), *others, "--out", str(tmp_path / "out"), "--px-size-nm", str(PX_NM),
               "--device", "cpu", "--single-view"])
    out, err = capsys.readouterr()
    assert rc == EXIT_BAD_INPUT
    assert (tmp_path / "out" / "a.atoms.csv").is_file() and (tmp_path / "out" / "b.atoms.csv").is_file()
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == len(bad) and "Traceback" not in err


def test_header_values_the_image_can_do_without_give_notes(tmp_path):
    for key, val in (("SCAN_ANGLE", "abc"), ("SCAN_OFFSET", "inf 0"), ("SCAN_RANGE", "nan 5e-9")):
        p = tmp_path / f"{key}.sxm"
        p.write_bytes(_sxm_bytes({key: val}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mg = load(p)
        assert mg.shape == (16, 16) and any(key in n for n in mg.notes)
        assert all(np.isfinite(mg.offset_nm))
    assert main(["info", str(tmp_path / "SCAN_ANGLE.sxm")]) == EXIT_OK


def test_flat_and_tiny_uncalibrated_images(tmp_path, capsys):
    flat, tiny = tmp_path / "flat.npy", tmp_path / "tiny.npy"
    np.save(flat, np.full((64, 64), 3.0, np.float32))
    np.save(tiny, _RNG.random((8, 8)).astype(np.float32))
    ok = tmp_path / "ok.npy"
    np.save(ok, _sim(5).astype(np.float32))
    rc = main(["detect", str(flat), str(tiny), str(ok), "--out", str(tmp_path / "o"), "--device", "cpu",
               "--single-view"])
    _, err = capsys.readouterr()
    assert rc == EXIT_BAD_INPUT, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and "NaN" not in err and "Traceback" not in err, err
    assert all("pixel size" in ln for ln in errors), errors
    assert (tmp_path / "o" / "ok.atoms.csv").is_file()


def test_batch_goes_on_and_lists_bad_files(bad, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "good.npy", _sim(6).astype(np.float32))
    np.save(folder / "flat.npy", np.zeros((64, 64), np.float32))
    for kind in ("sxm-nan-pixels", "sxm-inf-pixels", "random-npy", "npy-pickle-payload", "empty-tif"):
        (folder / bad[kind][0].name).write_bytes(bad[kind][0].read_bytes())
    rc = main(["batch", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu", "--single-view"])
    _, err = capsys.readouterr()
    assert rc == EXIT_BAD_INPUT and "Traceback" not in err
    with open(tmp_path / "out" / "batch_summary.csv", newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert rows["good.npy"]["status"] == "ok" and int(rows["good.npy"]["n_atoms"]) > 20
    bad_rows = [r for n, r in rows.items() if n != "good.npy"]
    assert len(bad_rows) == 6 and all(r["status"] == "error" and r["message"] for r in bad_rows)
    assert "pixel size" in rows["flat.npy"]["message"] and "NaN" not in rows["flat.npy"]["message"]
    assert not (folder / "PAYLOAD_RAN").exists() and not (bad["npy-pickle-payload"][0].parent / "PAYLOAD_RAN").exists()


def test_batch_without_cuda_is_a_device_error(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "good.npy", _sim(6).astype(np.float32))
    assert main(["batch", str(folder), "--out", str(tmp_path / "out"), "--device", "cuda"]) == EXIT_ERROR
    assert main(["detect", str(folder / "good.npy"), "--out", str(tmp_path / "o2"), "--device", "cuda"]) == EXIT_ERROR
    _, err = capsys.readouterr()
    assert "CUDA" in err and "Traceback" not in err


# ---------------------------------------------------------------- dtypes and contrast
DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
          "float64", "longdouble", "complex64", "complex128", "clongdouble"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_loads_as_float32_with_contrast(tmp_path, dtype):
    pattern = (_RNG.random((16, 16)) * 100).astype(np.int64) + 1
    arr = (pattern > 50) if dtype == "bool" else pattern.astype(dtype)
    np.save(tmp_path / "x.npy", arr)
    mg = load(tmp_path / "x.npy")
    assert mg.data.dtype == np.float32 and np.ptp(mg.data) > 0 and np.isfinite(mg.data).all()
    ref = np.abs(np.asarray(arr, dtype=np.complex128 if arr.dtype.kind == "c" else np.float64))
    assert np.corrcoef(mg.data.ravel(), ref.ravel())[0, 1] > 0.999


def _as(pattern, dtype, scale, offset):
    """pattern * scale + offset in `dtype`, computed exactly (Python ints for integers)."""
    if np.dtype(dtype).kind in "iu":
        return np.array([[int(v) * int(scale) + int(offset) for v in row] for row in pattern.tolist()], dtype=dtype)
    return (pattern.astype(np.float64) * scale + offset).astype(dtype)


def test_wide_types_keep_contrast_exactly(tmp_path):
    pattern = (_sim(8, (48, 48)) * 1000).round().astype(np.int64)
    pattern -= pattern.min()
    for dtype, scale, offset in (("uint64", 1, 2**63), ("uint64", 3, 2**63 + 12345), ("int64", 1, -(2**62)),
                                 ("int64", 2**20, 2**61), ("uint32", 1, 2**31), ("int32", 1, -(2**30)),
                                 ("float64", 1e300, 0.0), ("float64", 1e-300, 0.0), ("float64", 1.0, 1e12),
                                 ("float64", 2.0**-40, 1.0)):
        np.save(tmp_path / "w.npy", _as(pattern, dtype, scale, offset))
        mg = load(tmp_path / "w.npy")
        got = mg.data.astype(np.float64)
        got = (got - got.min()) / np.ptp(got)
        want = pattern / np.ptp(pattern)
        assert np.abs(got - want).max() < 1e-6, (dtype, scale, offset)
        if offset:
            assert mg.value_transform is not None and mg.metadata["AtomLens"]["original_dtype"] == dtype
            assert any("to keep the contrast" in n for n in mg.notes)


def test_affine_rescalings_give_the_same_atoms(tmp_path):
    pattern = (_sim(9) * 1000).round().astype(np.int64)
    pattern -= pattern.min()
    variants = {"f32": pattern.astype(np.float32), "u64": _as(pattern, "uint64", 1, 2**63),
                "i64": _as(pattern, "int64", 5, -(2**60)), "f64big": _as(pattern, "float64", 1e300, 0.0),
                "f64offset": _as(pattern, "float64", 1e-3, 1e9)}
    for name, arr in variants.items():
        np.save(tmp_path / f"{name}.npy", arr)
    assert main(["detect", *[str(tmp_path / f"{n}.npy") for n in variants], "--out", str(tmp_path / "o"),
                 "--px-size-nm", str(PX_NM), "--device", "cpu", "--single-view"]) == EXIT_OK
    tables = {n: (tmp_path / "o" / f"{n}.atoms.csv").read_text().splitlines() for n in variants}
    ref = [ln.split(",")[:3] for ln in tables["f32"]]
    assert len(ref) > 30
    for name, lines in tables.items():
        got = [ln.split(",")[:3] for ln in lines]
        assert len(got) == len(ref), name
        from scipy.spatial import cKDTree

        xy = np.array([[float(v) for v in r[:2]] for r in got[1:]])
        xy_ref = np.array([[float(v) for v in r[:2]] for r in ref[1:]])
        dist, idx = cKDTree(xy_ref).query(xy)
        # u64 (an offset alone) is exact; other rescalings differ in float32's last bits, which the
        # network's bf16 arithmetic turns into shifts of a few hundredths of a pixel
        assert dist.max() < (1e-9 if name == "u64" else 0.06) and sorted(idx) == list(range(len(ref) - 1)), (name, dist.max())  # one to one
        assert [got[i + 1][2] for i in range(len(idx))] == [ref[j + 1][2] for j in idx], name  # same classes


def test_info_does_not_read_a_big_file_into_memory(tmp_path):
    """Peak RSS of `atomlens info` on a 4000 x 4000 float32 .npy (61 MiB) stays near that on a tiny one."""
    big, small = tmp_path / "big.npy", tmp_path / "small.npy"
    m = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(4000, 4000))
    m[:] = 1.0
    m[::7] = np.nan  # the NaNs are counted, the values never held
    del m
    np.save(small, np.ones((16, 16), np.float32))
    code = ("import resource,sys,io,contextlib;from atomlens.cli import main;"
            "buf=io.StringIO();\nwith contextlib.redirect_stdout(buf): rc=main(['info',sys.argv[1]])\n"
            "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'NaN' in buf.getvalue())")
    res = {}
    for p in (small, big):
        r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        rc, kb, nan_note = r.stdout.split()
        assert rc == "0", r.stderr
        res[p.name] = (int(kb), nan_note)
    assert res["big.npy"][1] == "True"  # the NaN rows were found
    assert res["big.npy"][0] - res["small.npy"][0] < 30 * 1024, res  # < 30 MB more for a 61 MB file


# ---------------------------------------------------------------- model bundles
@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles"), version="1")


CARD_EDITS = {
    "classes-number": {"classes": 5},
    "classes-too-few": {"classes": ["atom"]},
    "classes-wrong-count": {"classes": ["background", "atom"]},
    "classes-repeated": {"classes": ["a", "a", "b", "c"]},
    "px-text": {"px_size_A": "abc"},
    "px-zero": {"px_size_A": 0},
    "px-negative": {"px_size_A": -0.2},
    "px-bool": {"px_size_A": True},
    "range-one": {"valid_px_size_A": [0.1]},
    "range-reversed": {"valid_px_size_A": [0.4, 0.05]},
    "range-text": {"valid_px_size_A": "0.05-0.4"},
    "task": {"task": "classification"},
    "task-cam-on-unet": {"task": "cam"},
    "architecture-text": {"architecture": "unet"},
    "architecture-unknown": {"architecture": {"name": "resnet", "params": {}}},
    "architecture-params": {"architecture": {"name": "unet", "params": {"base": "four"}}},
    "architecture-rgb": {"architecture": {"name": "unet", "params": {**TINY_UNET["params"], "in_channels": 3}}},
    "normalisation": {"normalisation": {"method": "magic"}},
    "normalisation-clip": {"normalisation": {"method": "clip-zscore", "clip_percentiles": [99, 1]}},
    "sha-not-hex": {"weights_sha256": "not a hash"},
    "weights-bytes": {"weights_bytes": 12},
    "mode-empty": {"mode": ""},
    "name-number": {"name": 5},
    "colours": {"colours": ["red"]},
    "cam-thresholds": {"cam_thresholds": {"vacancy": 1.0}},
    "validation-list": {"validation": [1, 2]},
    "missing-classes": {"classes": None},
}


def _edited_zip(src: Path, dest: Path, edit=None, card_text=None, weights=None) -> Path:
    card = json.loads((src / "card.json").read_text())
    for k, v in (edit or {}).items():
        if v is None:
            card.pop(k)
        else:
            card[k] = v
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("tiny/card.json", card_text if card_text is not None else json.dumps(card))
        zf.writestr("tiny/weights.safetensors",
                    weights if weights is not None else (src / "weights.safetensors").read_bytes())
    return dest


def _lie_about_size(z: Path, entry: str, size: int) -> None:
    """Rewrite the uncompressed size that `z`'s central directory and local header give `entry`."""
    raw = bytearray(z.read_bytes())
    name = entry.encode()
    i = 0
    while True:
        i = raw.find(b"PK\x01\x02", i)
        if i < 0:
            break
        n = struct.unpack_from("<H", raw, i + 28)[0]
        if bytes(raw[i + 46:i + 46 + n]) == name:
            struct.pack_into("<I", raw, i + 24, size)
            local = struct.unpack_from("<I", raw, i + 42)[0]
            struct.pack_into("<I", raw, local + 22, size)
        i += 4
    z.write_bytes(bytes(raw))


def _bad_bundles(good: Path, d: Path) -> dict[str, Path]:
    out = {k: _edited_zip(good, d / f"{k}.zip", e) for k, e in CARD_EDITS.items()}
    out["card-not-json"] = _edited_zip(good, d / "card-not-json.zip", card_text="{not json")
    out["card-a-list"] = _edited_zip(good, d / "card-a-list.zip", card_text="[1, 2]")
    w = (good / "weights.safetensors").read_bytes()
    out["weights-truncated"] = _edited_zip(good, d / "weights-truncated.zip", weights=w[: len(w) // 2])
    out["weights-random"] = _edited_zip(good, d / "weights-random.zip", weights=_RNG.bytes(len(w)))
    small = _edited_zip(good, d / "size-smaller.zip")
    _lie_about_size(small, "tiny/weights.safetensors", len(w) - 100)
    out["size-smaller"] = small
    larger = _edited_zip(good, d / "size-larger.zip")
    _lie_about_size(larger, "tiny/weights.safetensors", len(w) + 100)
    out["size-larger"] = larger
    huge = _edited_zip(good, d / "size-huge.zip")
    _lie_about_size(huge, "tiny/weights.safetensors", 2**31)
    out["size-huge"] = huge
    (d / "not-a-zip.zip").write_bytes(_RNG.bytes(500))
    out["not-a-zip"] = d / "not-a-zip.zip"
    return out


def test_bad_bundles_are_refused_on_import_naming_the_users_file(good_bundle, tmp_path, user_models):
    from atomlens.nn.bundle import BundleError, import_bundle, list_bundles

    assert import_bundle(_edited_zip(good_bundle, tmp_path / "ok.zip")).name == "tiny"  # the base is good
    before = {n for n, _, _ in list_bundles()}
    bundles = _bad_bundles(good_bundle, tmp_path)
    assert len(bundles) >= 30
    for kind, z in bundles.items():
        with pytest.raises(BundleError) as info:
            import_bundle(z)
        msg = str(info.value)
        assert z.name in msg and ".import-" not in msg and "Traceback" not in msg, (kind, msg)
    assert {n for n, _, _ in list_bundles()} == before  # nothing half-imported
    assert not [p for p in user_models.iterdir() if p.name.startswith(".import-")]


def test_bad_bundles_are_refused_on_load_and_by_detect(good_bundle, tmp_path, capsys):
    import shutil

    from atomlens.nn.bundle import BundleError, load_bundle

    img = tmp_path / "img.npy"
    np.save(img, _sim(3, (48, 48)).astype(np.float32))
    for kind in ("classes-number", "px-text", "px-zero", "range-one", "classes-wrong-count", "task-cam-on-unet"):
        folder = tmp_path / kind
        shutil.copytree(good_bundle, folder)
        card = json.loads((folder / "card.json").read_text())
        card.update(CARD_EDITS[kind])
        (folder / "card.json").write_text(json.dumps(card))
        with pytest.raises(BundleError, match=kind):
            load_bundle(folder)
        rc = main(["detect", str(img), "--model", str(folder), "--out", str(tmp_path / "o"), "--px-size-nm",
                   str(PX_NM), "--device", "cpu"])
        _, err = capsys.readouterr()
        assert rc == EXIT_ERROR and err.startswith("error: ") and "Traceback" not in err, (kind, err)


def test_gui_loader_reports_bad_files_as_expected_failures(bad, qapp):
    """The GUI's background loader gets the same LoadError: a message box text, no traceback."""
    from atomlens.gui.loader import LoadRequest, LoadWorker

    worker, got = LoadWorker(), []
    worker.failed.connect(got.append)
    worker.finished.connect(got.append)
    kinds = ("sxm-nan-pixels", "sxm-inf-pixels", "random-npy", "npy-pickle-payload", "npy-4d", "random-dm4")
    for i, kind in enumerate(kinds):
        worker.load(LoadRequest(i, path=str(bad[kind][0])))
    assert [type(g).__name__ for g in got] == ["LoadFailure"] * len(kinds)
    assert all(g.expected and g.details is None and bad[k][0].name in g.message for g, k in zip(got, kinds))
