"""Every real file in ../shared/data/real loads with its shape, dtype and calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from atomlens.io import LoadError, LoadWarning, load

# file, shape, px size nm (x), mode, channel
REAL_FILES = [
    ("16_STOimage_1.ser", (1024, 1024), 0.0100127, None, "image 1"),
    ("16_STOimage.emi", (1024, 1024), 0.0100127, None, "image 1"),
    ("Acquisition_18.emd", (1024, 1024), 0.0122465, None, "single"),
    ("test_ADF_cropped.hdf5", (400, 380), 0.00932627, "ADF", "image 1"),
    ("test_ABF_cropped.hdf5", (400, 380), 0.00932627, "ABF", "image 1"),
    ("G-Si-2nm.hdf5", (256, 256), 2.0 / 256, "HAADF", "image_data"),
    ("G-GrainBoundary-4nm.hdf5", (512, 512), 4.0 / 512, "HAADF", "image_data"),
    ("STM_nanonis_generic_4_5.sxm", (256, 256), 4.0 / 256, "STM", "Z forward"),
    ("example_TOPO.sxm", (256, 256), 5.0 / 256, "STM", "Z forward"),
    ("WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg", (512, 512), None, None, "image 1"),
]


@pytest.mark.parametrize("name,shape,px_nm,mode,channel", REAL_FILES, ids=[r[0] for r in REAL_FILES])
def test_real_file_loads_with_calibration(real_data, name, shape, px_nm, mode, channel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        mg = load(real_data / name)
    assert mg.data.shape == shape
    assert mg.data.dtype == np.float32
    assert mg.data.flags.c_contiguous
    assert np.isfinite(mg.data).all()
    assert mg.data.std() > 0
    if px_nm is None:
        assert mg.px_size_nm is None and not mg.calibrated
        assert any("no spatial calibration" in n for n in mg.notes)
    else:
        assert mg.px_size_nm == pytest.approx(px_nm, rel=1e-4)
        assert mg.px_size_y_nm == pytest.approx(px_nm, rel=1e-4)
    assert mg.mode == mode
    assert mg.channel == channel
    assert mg.path.name == name
    assert isinstance(mg.metadata, dict) and mg.metadata


def test_tia_offset_is_converted_from_metres(real_data):
    # the TIA header stores the offset in metres: -5.1265e-9 m is -5.13 nm (half the field)
    mg = load(real_data / "16_STOimage_1.ser")
    assert mg.offset_nm == pytest.approx((-5.1265, -5.1265), abs=1e-3)
    assert mg.to_nm(512, 512)[0] == pytest.approx(-5.1265 + 512 * 0.0100127, abs=1e-3)


def test_emd_unit_n_m_is_normalised(real_data):
    mg = load(real_data / "Acquisition_18.emd")
    assert mg.units_original == "n_m"
    assert mg.field_of_view_nm == pytest.approx((12.54, 12.54), abs=0.01)


def test_hspy_without_units_warns_and_assumes_nm(real_data):
    with pytest.warns(LoadWarning, match="assumed in nm"):
        mg = load(real_data / "test_ADF_cropped.hdf5")
    assert mg.px_size_nm == pytest.approx(0.00932627, rel=1e-5)


def test_emd_and_ser_orientation_matches_hyperspy(real_data):
    import hyperspy.api as hs

    mg = load(real_data / "Acquisition_18.emd")
    ref = hs.load(str(real_data / "Acquisition_18.emd")).data
    np.testing.assert_array_equal(mg.data, ref.astype(np.float32))


def test_plain_hdf5_reads_image_data_and_json_metadata(real_data):
    mg = load(real_data / "G-Si-2nm.hdf5")
    assert mg.metadata["type of data"] == "HAADF"
    assert mg.metadata["acc voltage"] == 60.0
    # reference atom positions from AtomNet lie inside the image and on bright pixels
    xy = np.loadtxt(real_data / "G-Si-2nm-coord.csv", delimiter=",", skiprows=1)[:, :2]
    on_atoms = mg.data[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)]
    assert np.median(on_atoms) > np.median(mg.data)


class TestNanonis:
    def test_channels_listed_and_selectable(self, real_data):
        mg = load(real_data / "example_TOPO.sxm", channel="Current backward")
        assert mg.channels == [
            "Z forward", "Z backward", "Bias forward", "Bias backward",
            "Current forward", "Current backward",
        ]
        assert mg.channel == "Current backward"
        assert mg.value_units == "A"
        # a bare channel name means its forward scan
        assert load(real_data / "example_TOPO.sxm", channel="current").channel == "Current forward"

    def test_z_is_height_in_metres(self, real_data):
        mg = load(real_data / "STM_nanonis_generic_4_5.sxm")
        assert mg.value_units == "m"
        span = float(mg.data.max() - mg.data.min())
        assert 1e-12 < span < 1e-8  # a few Å of corrugation, not volts or nm

    @pytest.mark.parametrize("name,min_corr", [("STM_nanonis_generic_4_5.sxm", 0.9), ("example_TOPO.sxm", 0.75)])
    def test_backward_scan_is_mirrored_to_match_forward(self, real_data, name, min_corr):
        f = load(real_data / name, channel="Z forward").data
        b = load(real_data / name, channel="Z backward").data

        def corr(a, c):
            a, c = a - a.mean(), c - c.mean()
            return float((a * c).sum() / np.sqrt((a * a).sum() * (c * c).sum()))

        assert corr(f, b) > min_corr
        assert corr(f, b) > corr(f, b[:, ::-1]) + 0.1

    def test_scan_offset_in_nm(self, real_data):
        mg = load(real_data / "example_TOPO.sxm")
        # SCAN_OFFSET is the frame centre: -3.163728E-9, -1.225518E-7 m
        cx, cy = mg.to_nm(127.5, 127.5)
        assert (cx, cy) == pytest.approx((-3.163728, -122.5518), abs=1e-4)

    def test_unknown_channel(self, real_data):
        with pytest.raises(LoadError, match="no channel 'Phase'.*Z forward"):
            load(real_data / "example_TOPO.sxm", channel="Phase")

    def test_truncated_file(self, real_data, tmp_path):
        raw = (real_data / "example_TOPO.sxm").read_bytes()
        bad = tmp_path / "cut.sxm"
        bad.write_bytes(raw[: len(raw) // 3])
        assert load(bad, channel="Z forward").shape == (256, 256)  # the first image survives
        with pytest.raises(LoadError, match="truncated"):
            load(bad, channel="Current forward")

    def test_not_an_sxm(self, tmp_path):
        p = tmp_path / "fake.sxm"
        p.write_bytes(b"hello world" * 100)
        with pytest.raises(LoadError, match="not a Nanonis"):
            load(p)
