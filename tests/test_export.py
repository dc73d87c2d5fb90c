"""Exports: HyperSpy file with markers, CSV/JSON identical to `atomlens detect`, snapshots."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PyQt5 import QtGui

from atomlens.analysis.atoms import AtomList
from atomlens.analysis.cam import DefectList
from atomlens.analysis.pipeline import AnalysisResult
from atomlens.workflows.export import DEFAULT_CLASS_COLOURS, export_csv, export_json, to_hspy
from atomlens.io.micrograph import Micrograph

SVG = "{http://www.w3.org/2000/svg}"


def small_result(px_size_nm=0.02, offset_nm=(1.5, -0.5), shape=(40, 60)):
    atoms = AtomList([5.0, 12.5, 30.25, 44.0, 50.0], [6.0, 20.0, 10.5, 30.0, 33.0], [1, 2, 1, 3, 1],
                     [0.9, 0.8, 0.7, 0.6, 0.95])
    defects = DefectList([30.0], [10.0], np.array(["dopant"]), [0.7])
    return AnalysisResult(atoms=atoms, prob=None, defects=defects, cam=None,
                          info={"model": "stem-haadf", "device": "cpu", "px_size_A": 0.2, "notes": ["a note"]},
                          px_size_nm=px_size_nm, offset_nm=offset_nm, threshold=0.5, refine="centroid",
                          frame=0, shape=shape)


# ------------------------------------------------------------------ HyperSpy
def test_hspy_round_trip(tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    res = small_result()
    img = np.random.default_rng(0).random(res.shape).astype(np.float32)
    mg = Micrograph(img, px_size_nm=0.02, offset_nm=(1.5, -0.5), mode="HAADF", path=tmp_path / "scan.dm4")
    out = to_hspy(res, mg, tmp_path / "scan_atoms")
    assert out == tmp_path / "scan_atoms.hspy" and out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["scan_atoms.hspy"]  # no temporary file left
    s = hs.load(out)
    np.testing.assert_allclose(s.data, img)
    ax = s.axes_manager.signal_axes
    assert [a.name for a in ax] == ["x", "y"] and [a.units for a in ax] == ["nm", "nm"]
    assert ax[0].scale == pytest.approx(0.02) and ax[0].offset == pytest.approx(1.5)
    assert ax[1].offset == pytest.approx(-0.5)
    markers = dict(s.metadata.Markers)
    assert set(markers) == {"atom", "dopant", "vacancy", "defect_dopant"}
    atom = markers["atom"]
    sel = res.atoms.cls == 1
    exp = np.stack([1.5 + res.atoms.x[sel] * 0.02, -0.5 + res.atoms.y[sel] * 0.02], 1)
    np.testing.assert_allclose(atom.kwargs["offsets"], exp)  # calibrated units, not px
    assert atom.kwargs["color"][0] == DEFAULT_CLASS_COLOURS["atom"]
    assert markers["dopant"].kwargs["color"][0] == DEFAULT_CLASS_COLOURS["dopant"]
    np.testing.assert_allclose(markers["vacancy"].kwargs["offsets"], [[1.5 + 44 * 0.02, -0.5 + 30 * 0.02]])
    # the whole table is kept in the metadata
    md = s.metadata.AtomLens
    np.testing.assert_allclose(md.atoms.x, res.atoms.x)
    np.testing.assert_allclose(md.atoms.y_nm, -0.5 + res.atoms.y * 0.02)
    assert list(md.atoms["class"]) == res.atoms.names()
    np.testing.assert_allclose(md.atoms.score, res.atoms.score)
    assert list(md.defects.type) == ["dopant"]
    summary = json.loads(md.summary)
    assert summary["counts"] == res.counts() and summary["notes"] == ["a note"]
    assert md.mode == "HAADF"
    # the markers plot (HyperSpy users can open and plot it)
    import matplotlib

    matplotlib.use("Agg")
    s.plot()


def test_hspy_uncalibrated_and_checks(tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    res = small_result(px_size_nm=None)
    img = np.zeros(res.shape, np.float32)
    out = to_hspy(res, img, tmp_path / "plain.hspy", class_colours={"atom": "#00ff00"})
    s = hs.load(out)
    assert s.axes_manager.signal_axes[0].units == "px" and s.axes_manager.signal_axes[0].scale == 1
    m = s.metadata.Markers.atom
    np.testing.assert_allclose(m.kwargs["offsets"][:, 0], res.atoms.x[res.atoms.cls == 1])
    assert m.kwargs["color"][0] == "#00ff00"
    assert "x_nm" not in s.metadata.AtomLens.atoms
    with pytest.raises(ValueError, match="60 x 40 px"):
        to_hspy(res, np.zeros((10, 10), np.float32), tmp_path / "bad.hspy")
    with pytest.raises(TypeError):
        to_hspy(res, None, tmp_path / "bad.hspy")


# ------------------------------------------------------------------ CSV and JSON = atomlens detect
def test_csv_json_identical_to_detect(tmp_path):
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.cli import EXIT_OK, main
    from atomlens.nn.infer import Predictor
    from atomlens.sim import simulate

    img = simulate({"structure": "graphene", "shape": (128, 128), "px_size_A": 0.1, "noise": {}}, 3).image
    f = tmp_path / "g.npy"
    np.save(f, img.astype(np.float32))
    # the model and pixel size given: detect assumes nothing about the image (no such notes)
    assert main(["detect", str(f), "--out", str(tmp_path / "cli"), "--px-size-nm", "0.01", "--device", "cpu",
                 "--model", "stem-haadf", "--json"]) == EXIT_OK
    res = analyse_image(np.load(f), Predictor("stem-haadf", "cpu"), px_size_nm=0.01)
    assert len(res.atoms) > 20
    export_csv(res, tmp_path / "gui.csv")
    export_json(res, tmp_path / "gui.json")
    assert (tmp_path / "gui.csv").read_bytes() == (tmp_path / "cli" / "g.atoms.csv").read_bytes()
    assert (tmp_path / "gui.json").read_bytes() == (tmp_path / "cli" / "g.json").read_bytes()
    back = AtomList.from_csv(tmp_path / "gui.csv")
    np.testing.assert_allclose(back.x, res.atoms.x, atol=1e-3)


# ------------------------------------------------------------------ snapshots
def _spec(scale=3, px_size_nm=0.05, **kw):
    from atomlens.gui.snapshot import SnapshotSpec

    img = np.full((40, 60), 0.5, np.float32)
    atoms = AtomList([10.0, 30.0, 45.0], [10.0, 20.0, 12.0], [1, 2, 3], [0.9, 0.8, 0.7])
    return SnapshotSpec(image=img, levels=(0.0, 1.0), atoms=atoms, marker_radius_px=4.0,
                        px_size_nm=px_size_nm, scale=scale, **kw)


def _rgb(img: QtGui.QImage, x, y):
    c = img.pixelColor(int(x), int(y))
    return np.array([c.red(), c.green(), c.blue()])


def test_snapshot_png(qapp, tmp_path):
    from atomlens.gui.snapshot import render_png, scale_bar_geometry

    spec = _spec()
    render_png(spec, tmp_path / "snap.png")
    img = QtGui.QImage(str(tmp_path / "snap.png"))
    assert (img.width(), img.height()) == (180, 120)  # image size x scale
    grey = np.array([128, 128, 128])
    s, r = 3, 4.0 * 3
    for x, y, name in zip(spec.atoms.x, spec.atoms.y, spec.atoms.names()):
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        want = np.array(QtGui.QColor(DEFAULT_CLASS_COLOURS[name]).getRgb()[:3])
        assert np.abs(_rgb(img, cx + r, cy) - want).max() <= 40, name  # on the ring
        assert np.abs(_rgb(img, cx - r, cy) - want).max() <= 40, name
        assert np.abs(_rgb(img, cx, cy) - grey).max() <= 2  # hollow: the image shows inside
    # the scale bar: 0.2 x 3 nm -> a 0.5 nm bar, 10 image px = 30 output px, bottom right, white
    length, label, (bx, by, bw, bh) = scale_bar_geometry(spec)
    assert length == pytest.approx(0.5) and label == "500 pm" and bw == pytest.approx(30)
    assert bx + bw < 180 and by + bh < 120 and bx > 90 and by > 60
    assert (_rgb(img, bx + bw / 2, by + bh / 2) == 255).all()
    assert np.abs(_rgb(img, 5, 115) - grey).max() <= 2  # nothing bottom-left
    # uncalibrated: no bar
    spec2 = _spec(scale=1, px_size_nm=None)
    render_png(spec2, tmp_path / "nobar.png")
    img2 = QtGui.QImage(str(tmp_path / "nobar.png"))
    assert (img2.width(), img2.height()) == (60, 40)
    assert scale_bar_geometry(spec2) is None
    corner = np.array([_rgb(img2, x, y) for x in range(40, 60) for y in range(30, 40)])
    assert np.abs(corner - 128).max() <= 2


def test_snapshot_heatmap_lut_and_defects(qapp, tmp_path):
    from atomlens.gui.snapshot import SnapshotSpec, compose_rgba, render_png

    img = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (16, 1))
    red = np.zeros((256, 3), np.uint8)
    red[:, 0] = np.arange(256)
    hm = np.full((16, 32), np.nan, np.float32)
    hm[:, 16:] = 1.0
    spec = SnapshotSpec(image=img, levels=(0, 1), lut=red, heatmap=hm, heatmap_opacity=0.5,
                        heatmap_levels=(0, 1), heatmap_lut=np.tile([[0, 0, 255]], (256, 1)).astype(np.uint8))
    rgba = compose_rgba(spec)
    assert tuple(rgba[0, 31, :3]) == (128, 0, 128)  # red 255 half-covered by blue
    assert tuple(rgba[0, 0, :3]) == (0, 0, 0) and rgba[0, 15, 0] == round(15 / 31 * 255)  # NaN: no heatmap
    d = DefectList([8.0], [8.0], np.array(["vacancy"]), [0.5])
    spec.defects, spec.scale = d, 4
    render_png(spec, tmp_path / "d.png")
    q = QtGui.QImage(str(tmp_path / "d.png"))
    assert (q.width(), q.height()) == (128, 64)
    with pytest.raises(ValueError):
        SnapshotSpec(image=img, heatmap=np.zeros((3, 3)))
    with pytest.raises(ValueError):
        SnapshotSpec(image=img, scale=0)


def test_snapshot_svg(qapp, tmp_path):
    from atomlens.gui.snapshot import render_svg

    spec = _spec(scale=2)
    spec.defects = DefectList([30.0], [20.0], np.array(["dopant"]), [0.7])
    render_svg(spec, tmp_path / "snap.svg")
    root = ET.parse(tmp_path / "snap.svg").getroot()
    assert root.tag == SVG + "svg" and root.get("width") == "120" and root.get("height") == "80"
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == len(spec.atoms)
    got = sorted((float(c.get("cx")), float(c.get("cy"))) for c in circles)
    assert got == sorted(((x + 0.5) * 2, (y + 0.5) * 2) for x, y in zip(spec.atoms.x, spec.atoms.y))
    groups = {g.get("class"): g.get("stroke") for g in root.findall(f"{SVG}g") if "atoms" in (g.get("class") or "")}
    assert groups == {f"atoms {n}": DEFAULT_CLASS_COLOURS[n] for n in ("atom", "dopant", "vacancy")}
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "dopant" in texts and "500 pm" in texts
    # the raster is embedded at the image's own resolution
    href = root.find(f"{SVG}image").get("{http://www.w3.org/1999/xlink}href")
    png = QtGui.QImage.fromData(base64.b64decode(href.split(",", 1)[1]), "PNG")
    assert (png.width(), png.height()) == (60, 40)


def test_json_outputs_are_strict_json_even_with_non_finite_values(tmp_path):
    """NaN or inf anywhere in a result (a score, a note's figure) becomes null: the files parse
    with strict JSON readers (``NaN`` is not JSON)."""
    import json as _json

    from atomlens.workflows.export import write_results

    res = small_result()
    res.atoms.score[1] = np.nan
    res.info["domain"] = {"local_contrast": float("inf"), "ratio": np.float32("nan")}
    write_results(res, tmp_path, "r", json_summary=True)
    export_json(res, tmp_path / "e.json")

    def refuse(c):
        raise ValueError(f"not JSON: {c}")

    for name in ("r.json", "e.json"):
        d = _json.loads((tmp_path / name).read_text(), parse_constant=refuse)
        assert d["atoms"]["score"][1] is None and d["domain"]["local_contrast"] is None
        assert d["domain"]["ratio"] is None
