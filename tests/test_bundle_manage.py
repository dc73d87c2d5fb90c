"""Managing user model bundles: rename, export (zip or folder), import, delete."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from atomlens.nn.bundle import (BundleError, delete_bundle, export_bundle, import_bundle, list_bundles,
                                load_bundle, read_card, rename_bundle, resolve_bundle, save_bundle,
                                user_models_dir)
from atomlens.nn.models import build_model

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ATOMLENS_USER_DATA", str(tmp_path / "userdata"))
    d = user_models_dir()
    assert d == tmp_path / "userdata" / "models"
    return d


def _make(folder, name="mine"):
    torch.manual_seed(0)
    card = {"name": name, "version": "1", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF", "parent": {"name": "stem-haadf"},
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}}
    path = save_bundle(build_model(TINY_UNET), card, folder)
    (path / "metrics.jsonl").write_text('{"step": 1}\n')
    (path / "resume").mkdir()
    (path / "resume" / "optim.pt").write_bytes(b"x" * 100)
    return path


def _same_weights(a, b):
    ma, _ = load_bundle(a)
    mb, _ = load_bundle(b)
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_rename(user_dir):
    p = _make(user_dir / "mine")
    _make(user_dir / "other", "other")
    new = rename_bundle(p, "mine v2")
    assert new == user_dir / "mine v2" and not p.exists()
    assert read_card(new)["name"] == "mine v2"
    load_bundle(new)  # the sha256 still matches: only the card changed
    assert resolve_bundle("mine v2") == new
    with pytest.raises(BundleError, match="already exists"):
        rename_bundle(new, "other")
    with pytest.raises(BundleError, match="already exists"):
        rename_bundle(new, "stem-haadf")  # would shadow the bundled model
    for bad in ("../escape", "a/b", ".hidden", "", "x" * 81):
        with pytest.raises(BundleError, match="not a usable model name"):
            rename_bundle(new, bad)
    with pytest.raises(BundleError, match="bundled models are read-only"):
        rename_bundle(resolve_bundle("stem-haadf"), "mine3")
    assert sorted(n for n, _, o in list_bundles() if o == "user") == ["mine v2", "other"]


def test_export_zip_and_import_round_trip(user_dir, tmp_path):
    p = _make(user_dir / "mine")
    z = export_bundle(p, tmp_path / "exports")
    assert z == tmp_path / "exports" / "mine.zip"
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["mine/card.json", "mine/metrics.jsonl", "mine/weights.safetensors"]
    assert [f.name for f in (tmp_path / "exports").iterdir()] == ["mine.zip"]  # no temporary file left
    got = import_bundle(z)  # "mine" is taken here: the copy becomes "mine-2"
    assert got == user_dir / "mine-2" and read_card(got)["name"] == "mine-2"
    assert read_card(got)["weights_sha256"] == read_card(p)["weights_sha256"]
    assert read_card(got)["parent"] == {"name": "stem-haadf"}
    assert (got / "metrics.jsonl").read_text() == '{"step": 1}\n'
    _same_weights(p, got)
    assert import_bundle(z) == user_dir / "mine-3"
    # on another machine (an empty user folder) it keeps its name
    delete_bundle(user_dir / "mine")
    assert import_bundle(tmp_path / "exports" / "mine.zip") == user_dir / "mine"
    # the bundled model can be exported too, to a named zip
    z2 = export_bundle(resolve_bundle("stem-haadf"), tmp_path / "shared" / "haadf.zip")
    assert import_bundle(z2) == user_dir / "stem-haadf-2"  # never shadows the bundled one
    assert not [d for d in user_dir.iterdir() if d.name.startswith(".")]


def test_export_folder_and_import_folder(user_dir, tmp_path):
    p = _make(user_dir / "mine")
    out = export_bundle(p, tmp_path / "usb", as_zip=False)
    assert out == tmp_path / "usb" / "mine" and not (out / "resume").exists()
    assert sorted(f.name for f in out.iterdir()) == ["card.json", "metrics.jsonl", "weights.safetensors"]
    with pytest.raises(BundleError, match="already exists"):
        export_bundle(p, tmp_path / "usb", as_zip=False)
    delete_bundle(p)
    assert not p.exists()
    got = import_bundle(out)
    assert got == user_dir / "mine"
    _same_weights(out, got)


def _zip_with(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_import_refuses_path_traversal_and_odd_zips(user_dir, tmp_path):
    p = _make(tmp_path / "src" / "evil")
    card, weights = (p / "card.json").read_bytes(), (p / "weights.safetensors").read_bytes()
    cases = {
        "dots": ({"evil/card.json": card, "evil/weights.safetensors": weights, "../../outside.txt": b"pwned"},
                 "outside the bundle"),
        "nested dots": ({"evil/../../x/card.json": card, "evil/weights.safetensors": weights}, "outside the bundle"),
        "absolute": ({"/tmp/card.json": card, "evil/weights.safetensors": weights}, "absolute"),
        "windows": ({"C:/evil/card.json": card}, "absolute"),
        "two bundles": ({"a/card.json": card, "b/card.json": card}, "found 2 card.json"),
        "no bundle": ({"readme.txt": b"hi"}, "found 0 card.json"),
    }
    for label, (entries, msg) in cases.items():
        with pytest.raises(BundleError, match=msg):
            import_bundle(_zip_with(tmp_path / f"{label}.zip", entries))
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a readable zip"):
        import_bundle(tmp_path / "junk.zip")
    assert not (tmp_path / "outside.txt").exists() and not (user_dir.parent / "outside.txt").exists()
    assert list(user_dir.iterdir()) == []  # nothing installed, no temporary folder left
    # a flat zip (files at the top) is fine
    assert import_bundle(_zip_with(tmp_path / "flat.zip", {"card.json": card, "weights.safetensors": weights})) \
        == user_dir / "mine"  # named after its card


def test_import_refuses_damaged_weights(user_dir, tmp_path):
    p = _make(tmp_path / "src" / "mine")
    raw = bytearray((p / "weights.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = _zip_with(tmp_path / "bad.zip", {"mine/card.json": (p / "card.json").read_bytes(),
                                           "mine/weights.safetensors": bytes(raw)})
    with pytest.raises(BundleError, match="damaged"):
        import_bundle(bad)
    card = json.loads((p / "card.json").read_text())
    del card["px_size_A"]
    incomplete = _zip_with(tmp_path / "inc.zip", {"mine/card.json": json.dumps(card),
                                                  "mine/weights.safetensors": (p / "weights.safetensors").read_bytes()})
    with pytest.raises(BundleError, match="lacks px_size_A"):
        import_bundle(incomplete)
    (p / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="damaged"):
        export_bundle(p, tmp_path / "exp")  # a damaged bundle is not exported either
    with pytest.raises(BundleError, match="damaged"):
        import_bundle(p)
    assert list(user_dir.iterdir()) == []


def test_delete_refuses_bundled_models(user_dir):
    with pytest.raises(BundleError, match="read-only"):
        delete_bundle(resolve_bundle("stem-haadf"))
    assert (resolve_bundle("stem-haadf") / "weights.safetensors").is_file()
    p = _make(user_dir / "gone")
    delete_bundle(p)
    assert not p.exists() and np.all([n != "gone" for n, _, _ in list_bundles()])
