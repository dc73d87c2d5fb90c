"""Annotations: editing with undo data, the atomic sidecar file, and export as training data."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from atomlens.analysis.annotations import SIDECAR_FORMAT, Annotations, SidecarMismatch
from atomlens.analysis.training_labels import export_training_pair, label_map
from atomlens.analysis.sidecar import file_sha256, load_sidecar, save_sidecar, sidecar_path
from atomlens.analysis.atoms import AtomList
from atomlens.analysis.cam import DefectList
from atomlens.analysis.pipeline import AnalysisResult


def _result(n=6, shape=(64, 80), px_size_nm=0.02):
    rng = np.random.default_rng(1)
    atoms = AtomList(rng.uniform(5, shape[1] - 5, n), rng.uniform(5, shape[0] - 5, n),
                     np.array([1, 1, 2, 1, 3, 1][:n]), rng.uniform(0.5, 1, n))
    defects = DefectList(np.array([20.0]), np.array([30.0]), np.array(["vacancy"]), np.array([0.8]))
    return AnalysisResult(atoms=atoms, prob=None, defects=defects, cam=None, info={"model": "m"},
                          px_size_nm=px_size_nm, offset_nm=(0.0, 0.0), threshold=0.5, refine="centroid",
                          frame=0, shape=shape)


CARD = {"name": "stem-haadf", "version": "1.0", "weights_sha256": "ab" * 32, "task": "segmentation"}


def _ann():
    return Annotations.from_result(_result(), CARD, image_sha256="cd" * 32, image_name="a.hdf5")


def _same(a: Annotations, b: Annotations, ignore_edits=False):
    da, db = a.to_dict(), b.to_dict()
    if ignore_edits:
        da.pop("edits"), db.pop("edits")
    assert da == db


def test_from_result_records_model_and_predicted_atoms():
    ann = _ann()
    assert len(ann) == 6 and ann.edits == 0 and ann.shape == (64, 80) and ann.px_size_nm == 0.02
    assert ann.model == {"name": "stem-haadf", "version": "1.0", "weights_sha256": "ab" * 32}
    assert set(ann.source) == {"predicted"} and not ann.reviewed.any() and not ann.user_mask().any()
    assert ann.defects == [{"x": 20.0, "y": 30.0, "type": "vacancy", "w": None, "h": None}]
    names = [t["name"] for t in ann.defect_types]
    assert "pristine" not in names and "vacancy" in names
    assert len({t["colour"] for t in ann.defect_types}) == len(names)  # distinct colours
    al = ann.to_atom_list()
    np.testing.assert_array_equal(al.cls, [1, 1, 2, 1, 3, 1])
    assert al.class_names == ("background", "atom", "dopant", "vacancy")


def test_edits_mark_user_atoms_count_and_return_undo_data():
    ann = _ann()
    i = ann.add_atom(10.5, 11.25, 2)
    assert i == 6 and ann.source[i] == "user" and ann.reviewed[i] and ann.score[i] == 1.0
    old = ann.move_atom(0, 3.0, 4.0)
    assert old == (_ann().x[0], _ann().y[0]) and (ann.x[0], ann.y[0]) == (3.0, 4.0)
    assert ann.source[0] == "user"
    old_cls = ann.set_class([2, 1], 3)
    np.testing.assert_array_equal(old_cls, [2, 1])  # in the order of the indices given
    assert ann.cls[1] == ann.cls[2] == 3
    ann.set_class([2, 1], old_cls)  # undo
    np.testing.assert_array_equal(ann.cls[:3], [1, 1, 2])
    assert ann.edits == 4
    np.testing.assert_array_equal(ann.user_mask(), [True, True, True, False, False, False, True])
    with pytest.raises(ValueError, match="class must be an index"):
        ann.add_atom(1, 1, 0)  # background is not an atom class
    with pytest.raises(ValueError, match="finite"):
        ann.add_atom(np.nan, 1, 1)
    with pytest.raises(IndexError):
        ann.remove_atoms([99])


def test_remove_then_insert_restores_exactly():
    ann = _ann()
    ann.add_atom(1.0, 2.0, 3)
    ann.set_reviewed([4], True)
    before = copy.deepcopy(ann)
    rows = ann.remove_atoms([5, 0, 6, 3])
    assert len(ann) == 3 and list(rows["index"]) == [0, 3, 5, 6]
    np.testing.assert_array_equal(ann.x, before.x[[1, 2, 4]])
    ann.insert_atoms(rows)
    _same(ann, before, ignore_edits=True)
    assert ann.edits == before.edits + 2
    for k in ("x", "y", "cls", "score", "source", "reviewed"):
        assert getattr(ann, k).dtype == getattr(before, k).dtype


def test_defect_edits_and_undo():
    ann = _ann()
    j = ann.add_defect({"x": 5, "y": 6, "type": "my-blob", "w": 4, "h": 3})
    assert j == 1 and ann.defects[1] == {"x": 5.0, "y": 6.0, "type": "my-blob", "w": 4.0, "h": 3.0}
    assert ann.defect_types[-1]["name"] == "my-blob"  # new types join the project's list
    d = ann.remove_defect(0)
    ann.insert_defect(0, d)
    assert ann.defects[0]["type"] == "vacancy" and len(ann.defects) == 2
    with pytest.raises(ValueError, match="'type' is missing"):
        ann.add_defect({"x": 1, "y": 2})


def test_sidecar_round_trip(tmp_path):
    img = tmp_path / "a.hdf5"
    img.write_bytes(b"pixels")
    assert sidecar_path(img) == tmp_path / "a.hdf5.atomlens.json"
    assert load_sidecar(img) is None  # none yet
    ann = Annotations.from_result(_result(), CARD, image_sha256=file_sha256(img), image_name=img.name)
    ann.add_atom(7.125, 8.0625, 2)
    ann.remove_atoms([1])
    ann.add_defect({"x": 3, "y": 4, "type": "hole", "w": 10, "h": 12})
    path = save_sidecar(ann, img)
    raw = json.loads(path.read_text())
    assert raw["format"] == SIDECAR_FORMAT and "saved" in raw and raw["image_name"] == "a.hdf5"
    back = load_sidecar(img, expected_sha256=file_sha256(img))
    _same(back, ann)
    np.testing.assert_array_equal(back.x, ann.x)  # floats round-trip exactly
    assert back.edits == 3 and list(back.source) == list(ann.source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.hdf5", "a.hdf5.atomlens.json"]


def test_save_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    """A crash while saving (here: the final rename fails) leaves the old sidecar intact."""
    img = tmp_path / "b.tif"
    ann = _ann()
    path = save_sidecar(ann, img)
    old_bytes = path.read_bytes()
    ann.add_atom(1, 1, 1)
    ann.remove_atoms([0, 1, 2])

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        save_sidecar(ann, img)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert len(load_sidecar(img)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif.atomlens.json"]  # no temporary file left


def test_read_only_image_folder_keeps_annotations_in_user_data(tmp_path, monkeypatch):
    """When the image's folder cannot be written, the annotations go to the user data folder,
    keyed by the image's sha256, and are found there on the next load (the newer copy wins)."""
    from atomlens.analysis import sidecar as mod

    monkeypatch.setenv("ATOMLENS_USER_DATA", str(tmp_path / "userdata"))
    shared = tmp_path / "shared"
    shared.mkdir()
    img = shared / "c.emd"
    img.write_bytes(b"more pixels")
    sha = file_sha256(img)
    ann = Annotations.from_result(_result(), CARD, image_sha256=sha, image_name=img.name)
    real_write = mod.write_sidecar_text

    def read_only(path, text):
        if os.path.dirname(os.path.abspath(path)) == str(shared):
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, text)

    monkeypatch.setattr(mod, "write_sidecar_text", read_only)
    path = save_sidecar(ann, img)
    assert path == mod.fallback_sidecar_path(img, sha) and path.parent == tmp_path / "userdata" / "annotations"
    assert path.name == f"{sha[:16]}-c.emd.atomlens.json" and list(shared.iterdir()) == [img]
    _same(load_sidecar(img, expected_sha256=sha), ann)
    assert load_sidecar(img) is None  # without the sha256 the fallback cannot be found
    # the folder becomes writable again: the next save goes next to the image and is the one loaded
    monkeypatch.setattr(mod, "write_sidecar_text", real_write)
    ann.add_atom(2.0, 3.0, 1)
    assert save_sidecar(ann, img) == sidecar_path(img)
    os.utime(path, ns=(1, 1))  # the fallback copy is older
    assert len(load_sidecar(img, expected_sha256=sha)) == len(ann)
    # an image with no sha256 recorded has nowhere else to go: the error is raised
    monkeypatch.setattr(mod, "write_sidecar_text", read_only)
    with pytest.raises(PermissionError):
        save_sidecar(Annotations(image_name="c.emd"), img)


def test_sidecar_of_another_image_is_refused(tmp_path):
    img = tmp_path / "c.dm4"
    img.write_bytes(b"one")
    sha_one = file_sha256(img)
    save_sidecar(Annotations.from_result(_result(), None, image_sha256=sha_one), img)
    img.write_bytes(b"two")  # the image was replaced
    with pytest.raises(SidecarMismatch, match="another version of the image") as exc:
        load_sidecar(img, expected_sha256=file_sha256(img))
    assert isinstance(exc.value, ValueError)
    assert len(load_sidecar(img, expected_sha256=sha_one)) == 6
    assert load_sidecar(img).model is None


def test_damaged_sidecars_give_clear_errors(tmp_path):
    img = tmp_path / "d.png"
    sc = sidecar_path(img)
    sc.write_text('{"format": "atomlens-annotations/1", "atoms": {"x": [1, 2')
    with pytest.raises(ValueError, match=r"d.png.atomlens.json: damaged annotation file, not valid JSON .*delete"):
        load_sidecar(img)
    sc.write_text(json.dumps({"format": "something-else/2"}))
    with pytest.raises(ValueError, match="not an AtomLens annotation file"):
        load_sidecar(img)
    good = _ann().to_dict()
    bad = copy.deepcopy(good)
    bad["atoms"]["y"] = bad["atoms"]["y"][:-1]
    sc.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="differ in length"):
        load_sidecar(img)
    bad = copy.deepcopy(good)
    bad["atoms"]["class"][0] = "unobtainium"
    sc.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unknown atom class.*unobtainium"):
        load_sidecar(img)
    bad = copy.deepcopy(good)
    bad["atoms"]["source"][0] = "martian"
    with pytest.raises(ValueError, match="source' must be one of"):
        Annotations.from_dict(bad)
    sc.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="delete it"):
        load_sidecar(img)


def test_label_map_discs_and_class_order():
    lab = label_map((20, 20), [5.0, 6.0, 15.0], [5.0, 5.0, 15.2], [2, 1, 3], 2.0)
    assert lab.dtype == np.uint8 and lab.shape == (20, 20)
    assert lab[5, 5] == 2  # dopant drawn after the overlapping atom disc: it wins
    assert lab[5, 8] == 1 and lab[5, 9] == 0  # atom at x 6: radius 2 px
    assert lab[15, 15] == 3 and lab[17, 15] == 3 and lab[13, 15] == 0  # centre at y 15.2
    # brute force: each pixel takes the highest class among the discs covering its centre
    yy, xx = np.mgrid[:20, :20]
    want = np.zeros((20, 20), np.uint8)
    for x, y, c in sorted(zip([5.0, 6.0, 15.0], [5.0, 5.0, 15.2], [2, 1, 3]), key=lambda t: t[2]):
        want[(xx - x) ** 2 + (yy - y) ** 2 <= 4.0] = c
    np.testing.assert_array_equal(lab, want)
    empty = label_map((4, 4), [], [], [], 2.0)
    assert not empty.any()


def test_export_training_pair(tmp_path):
    shape = (64, 80)
    ann = _ann()
    img = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    paths = export_training_pair(img, ann, tmp_path / "train", "scan1")
    assert [p.name for p in paths] == ["scan1.image.npy", "scan1.labels.npy", "scan1.annotations.json"]
    im = np.load(paths[0], allow_pickle=False)
    lab = np.load(paths[1], allow_pickle=False)
    assert im.dtype == np.float32 and im.shape == shape and np.array_equal(im, img)
    assert lab.dtype == np.uint8 and lab.shape == shape
    # 0.02 nm/px: discs of 0.5 Å = 2.5 px around each atom, with its class
    for x, y, c in zip(ann.x, ann.y, ann.cls):
        assert lab[int(round(y)), int(round(x))] == c
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    d = np.min(np.hypot(xx[..., None] - ann.x, yy[..., None] - ann.y), axis=-1)
    assert not lab[d > 2.5].any() and lab[d <= 2.4].all()
    d2 = json.loads(paths[2].read_text())
    assert d2["label_radius_px"] == pytest.approx(2.5) and d2["px_size_nm"] == 0.02
    _same(Annotations.from_dict(d2), ann)
    # uncalibrated: 2 px discs; a stack takes the annotated frame
    ann.px_size_nm = None
    stack = np.stack([img, img + 1])
    ann.frame = 1
    p2 = export_training_pair(stack, ann, tmp_path / "train", "scan2")
    assert np.array_equal(np.load(p2[0]), img + 1)
    lab2 = np.load(p2[1])
    assert not lab2[d > 2.0].any() and lab2[d <= 1.9].all()
    with pytest.raises(ValueError, match="annotations were made on a 80x64 image"):
        export_training_pair(np.zeros((10, 10)), ann, tmp_path, "x")
