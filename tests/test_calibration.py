"""One Calibration per result: every conversion to nm (CSV, JSON, HyperSpy, the atom table, the
hover text, the Results dock's lengths) agrees, also for non-square pixels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from atomlens.analysis.calibration import Calibration
from atomlens.io.micrograph import Micrograph
from atomlens.workflows.export import export_csv, to_hspy, write_results
from test_export import small_result


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_calibration_converts_each_axis_with_its_own_pixel_size():
    cal = Calibration(0.02, 0.03, (1.0, -2.0))
    x, y = cal.to_nm([0.0, 10.0], [0.0, 10.0])
    np.testing.assert_allclose(x, [1.0, 1.2])
    np.testing.assert_allclose(y, [-2.0, -1.7])
    np.testing.assert_allclose(np.stack(cal.to_px(x, y)), [[0.0, 10.0], [0.0, 10.0]])
    assert cal.px_A == pytest.approx(0.2) and not cal.square and cal.y_nm == 0.03
    assert Calibration(0.02).square and Calibration(0.02).y_nm == 0.02
    none = Calibration(None, None, (0, 0))
    assert not none.calibrated and none.to_nm([1.0], [2.0]) == (None, None) and none.px_A is None
    with pytest.raises(ValueError, match="not calibrated"):
        none.to_px([0.0], [0.0])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            Calibration(bad)


def test_from_micrograph_keeps_the_file_calibration_unless_the_user_gives_one():
    mg = Micrograph(np.zeros((8, 8), np.float32), px_size_nm=0.02, px_size_y_nm=0.025, offset_nm=(0.5, 0.25))
    assert Calibration.from_micrograph(mg) == Calibration(0.02, 0.025, (0.5, 0.25))
    assert Calibration.from_micrograph(mg, 0.01) == Calibration(0.01, None, (0.5, 0.25))  # square, the user's
    sq = Micrograph(np.zeros((8, 8), np.float32), px_size_nm=0.02)
    assert Calibration.from_micrograph(sq).square


def test_non_square_pixels_reach_every_output(tmp_path):
    res = small_result(px_size_nm=0.02, offset_nm=(1.5, -0.5))
    res.px_size_y_nm = 0.04
    cal = res.calibration
    write_results(res, tmp_path, "r", json_summary=True)
    rows = _csv(tmp_path / "r.atoms.csv")
    for row, x, y in zip(rows, res.atoms.x, res.atoms.y):
        assert float(row["x_nm"]) == pytest.approx(1.5 + x * 0.02, abs=1e-5)
        assert float(row["y_nm"]) == pytest.approx(-0.5 + y * 0.04, abs=1e-5)  # was x's pixel size before
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["px_size_y_nm"] == 0.04
    np.testing.assert_allclose(d["atoms"]["y_nm"], cal.to_nm(res.atoms.x, res.atoms.y)[1])
    np.testing.assert_allclose([float(r["y_nm"]) for r in _csv(export_csv(res, tmp_path / "e.csv"))],
                               [float(r["y_nm"]) for r in rows])
    defect = _csv(tmp_path / "r.defects.csv")[0]
    assert float(defect["y_nm"]) == pytest.approx(-0.5 + 10.0 * 0.04, abs=1e-5)
    hs = pytest.importorskip("hyperspy.api")
    img = np.zeros(res.shape, np.float32)
    s = hs.load(to_hspy(res, img, tmp_path / "r.hspy"))
    assert s.axes_manager.signal_axes[1].scale == pytest.approx(0.04)
    np.testing.assert_allclose(s.metadata.AtomLens.atoms.y_nm, d["atoms"]["y_nm"])


def test_square_pixels_write_no_y_pixel_size():
    d = small_result().to_dict()
    assert "px_size_y_nm" not in d  # the JSON of square pixels is as before, key for key


def test_gui_tables_and_hover_use_the_result_calibration(qtbot):
    from atomlens.gui.atom_table import AtomTableModel
    from atomlens.gui.layers import AtomsLayer

    res = small_result(px_size_nm=0.02, offset_nm=(1.5, -0.5))
    res.px_size_y_nm = 0.04
    model = AtomTableModel()
    model.set_atoms(res.atoms, res.calibration)
    xs, ys = res.calibration.to_nm(res.atoms.x, res.atoms.y)
    np.testing.assert_allclose(model._xnm, xs)
    np.testing.assert_allclose(model._ynm, ys)
    layer = AtomsLayer()
    layer.set_atoms(res.atoms, calibration=res.calibration)
    assert layer.describe(1).endswith(f"= ({xs[1]:.4f}, {ys[1]:.4f}) nm")
    layer.set_atoms(res.atoms)  # uncalibrated: px only
    assert layer.describe(1).endswith(" px")
