"""Files generated in the tests (hspy, tif, png, npy, hdf5) and bad input of every kind."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from atomlens.io import LAZY_STACK_BYTES, LoadError, LoadWarning, load
from atomlens.io.units import length_unit_to_nm, normalise_length_unit


@pytest.fixture(scope="module")
def hs():
    import hyperspy.api as hs

    return hs


def _lattice(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.cos(2 * np.pi * x / 8) * np.cos(2 * np.pi * y / 8) + 0.1 * rng.standard_normal((h, w))
    return (1000 + 500 * img).astype(np.float32)


def _signal2d(hs, data, scale=0.02, units="nm", title=""):
    s = hs.signals.Signal2D(data)
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = scale, units
    s.metadata.General.title = title
    return s


# ------------------------------------------------------------------ generated files
@pytest.mark.parametrize("units,factor", [("nm", 1.0), ("Å", 0.1), ("pm", 1e-3), ("µm", 1e3)])
def test_hspy_image_units_converted_to_nm(hs, tmp_path, units, factor):
    data = _lattice()
    p = tmp_path / "img.hspy"
    _signal2d(hs, data, scale=0.25, units=units, title="HAADF").save(p)
    mg = load(p)
    assert mg.data.shape == (64, 80) and mg.data.dtype == np.float32
    np.testing.assert_allclose(mg.data, data)
    assert mg.px_size_nm == pytest.approx(0.25 * factor)
    assert mg.mode == "HAADF"
    assert not mg.is_stack


def test_hspy_stack_is_n_h_w(hs, tmp_path):
    data = np.stack([_lattice(seed=i) for i in range(5)])
    s = _signal2d(hs, data, scale=0.05)
    p = tmp_path / "movie.hspy"
    s.save(p)
    mg = load(p)
    assert mg.data.shape == (5, 64, 80) and mg.is_stack and mg.n_frames == 5
    np.testing.assert_allclose(mg.frame(3), data[3])
    assert mg.px_size_nm == pytest.approx(0.05)


def test_hspy_offset_in_nm(hs, tmp_path):
    s = _signal2d(hs, _lattice(), scale=0.5, units="Å")
    for ax in s.axes_manager.signal_axes:
        ax.offset = 10.0  # Å
    p = tmp_path / "off.hspy"
    s.save(p)
    mg = load(p)
    assert mg.offset_nm == pytest.approx((1.0, 1.0))
    assert mg.to_nm(4, 2) == pytest.approx((1.0 + 4 * 0.05, 1.0 + 2 * 0.05))


def test_zspy(hs, tmp_path):
    pytest.importorskip("zarr")
    p = tmp_path / "img.zspy"
    _signal2d(hs, _lattice(), scale=0.03).save(p)
    assert load(p).px_size_nm == pytest.approx(0.03)


def test_tif_keeps_calibration(hs, tmp_path):
    p = tmp_path / "img.tif"
    _signal2d(hs, _lattice().astype(np.uint16), scale=0.015).save(p)
    mg = load(p)
    assert mg.data.shape == (64, 80) and mg.data.dtype == np.float32
    assert mg.px_size_nm == pytest.approx(0.015, rel=1e-3)


def test_png_uncalibrated(tmp_path):
    from PIL import Image

    data = (np.arange(64 * 80) % 251).reshape(64, 80).astype(np.uint8)
    p = tmp_path / "img.png"
    Image.fromarray(data).save(p)
    mg = load(p)
    np.testing.assert_array_equal(mg.data, data.astype(np.float32))
    assert mg.px_size_nm is None and not mg.calibrated
    mg.set_px_size_nm(0.01)
    assert mg.calibrated and mg.to_nm(10, 20) == pytest.approx((0.1, 0.2))
    with pytest.raises(ValueError):
        mg.set_px_size_nm(-1)


def test_rgb_png_becomes_grey(tmp_path):
    from PIL import Image

    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10
    rgb[:8, :8] = 255
    p = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(p)
    with pytest.warns(LoadWarning, match="RGB"):
        mg = load(p)
    assert mg.data.shape == (32, 40)
    assert mg.data[20, 20] == pytest.approx(0.2126 * 200 + 0.7152 * 100 + 0.0722 * 10, abs=0.01)
    assert mg.data[0, 0] == pytest.approx(255, abs=0.01)


def test_npy_image_stack_and_rgb(tmp_path):
    img = _lattice()
    np.save(tmp_path / "a.npy", img.astype(np.float64))
    mg = load(tmp_path / "a.npy")
    assert mg.data.dtype == np.float32 and not isinstance(mg.data, np.memmap)
    np.testing.assert_allclose(mg.data, img)
    np.save(tmp_path / "s.npy", np.stack([img, img + 1]).astype(np.uint16))
    assert load(tmp_path / "s.npy").data.shape == (2, 64, 80)
    np.save(tmp_path / "rgb.npy", np.repeat(img[..., None], 3, axis=2))
    with pytest.warns(LoadWarning, match="RGB"):
        assert load(tmp_path / "rgb.npy").data.shape == (64, 80)


def test_plain_hdf5_with_several_datasets(tmp_path):
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["haadf"] = _lattice()
        f["abf"] = -_lattice()
        f["metadata"] = '{"type of data": "HAADF", "pixel size": "0.5 Å"}'
    mg = load(p)
    assert mg.channels == ["abf", "haadf"] and mg.channel == "abf"
    assert mg.px_size_nm == pytest.approx(0.05)
    mg2 = load(p, channel="haadf")
    np.testing.assert_allclose(mg2.data, _lattice())
    with pytest.raises(LoadError, match="no dataset 'bf'"):
        load(p, channel="bf")


# ------------------------------------------------------------------ bad input
def test_missing_file(tmp_path):
    with pytest.raises(LoadError, match="file not found"):
        load(tmp_path / "nope.dm3")


def test_folder(tmp_path):
    with pytest.raises(LoadError, match="folder"):
        load(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dm4"
    p.touch()
    with pytest.raises(LoadError, match="empty"):
        load(p)


def test_unknown_format(tmp_path):
    p = tmp_path / "notes.docx"
    p.write_bytes(b"PK\x03\x04 not an image")
    with pytest.raises(LoadError, match=r"unsupported file type '\.docx'.*\.dm3"):
        load(p)


@pytest.mark.parametrize("ext", ["dm3", "dm4", "emd", "tif", "png", "ser", "mrc", "hspy", "hdf5"])
def test_corrupt_file(tmp_path, ext):
    p = tmp_path / f"junk.{ext}"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(LoadError) as err:
        load(p)
    msg = str(err.value)
    assert "junk." in msg and "Traceback" not in msg and len(msg) < 600


def test_truncated_real_file(real_data, tmp_path):
    for name in ("Acquisition_18.emd", "16_STOimage_1.ser"):
        raw = (real_data / name).read_bytes()
        p = tmp_path / name
        p.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(LoadError, match=name):
            load(p)


def test_1d_signal(hs, tmp_path):
    p = tmp_path / "spec.hspy"
    hs.signals.Signal1D(np.arange(100.0)).save(p)
    with pytest.raises(LoadError, match="1D signal"):
        load(p)


def test_spectrum_image_without_image(hs, tmp_path):
    p = tmp_path / "si.hspy"
    hs.signals.Signal1D(np.ones((16, 16, 64))).save(p)
    with pytest.raises(LoadError, match="spectrum image"):
        load(p)


def test_4d_data(hs, tmp_path):
    p = tmp_path / "4d.hspy"
    hs.signals.Signal2D(np.ones((3, 4, 16, 16))).save(p)
    with pytest.raises(LoadError, match="4D"):
        load(p)


def test_nan_and_inf_are_cleaned_with_warning(tmp_path):
    img = _lattice()
    img[3, 4], img[10, 11], img[0, 0] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "nan.npy", img)
    with pytest.warns(LoadWarning, match="3 NaN/infinite values"):
        mg = load(tmp_path / "nan.npy")
    assert np.isfinite(mg.data).all()
    finite_mean = np.nanmean(np.where(np.isfinite(img), img, np.nan))
    assert mg.data[3, 4] == pytest.approx(finite_mean, rel=1e-4)
    assert mg.data[5, 5] == img[5, 5]
    assert any("NaN" in n for n in mg.notes)


def test_all_nan(tmp_path):
    np.save(tmp_path / "allnan.npy", np.full((16, 16), np.nan))
    with pytest.raises(LoadError, match="NaN or infinite"):
        load(tmp_path / "allnan.npy")


def test_complex_data_gives_modulus(hs, tmp_path):
    z = _lattice() * np.exp(1j * 0.7)
    p = tmp_path / "wave.hspy"
    hs.signals.ComplexSignal2D(z).save(p)
    with pytest.warns(LoadWarning, match="modulus"):
        mg = load(p)
    np.testing.assert_allclose(mg.data, np.abs(z), rtol=1e-5)


def test_tiny_image(tmp_path):
    np.save(tmp_path / "tiny.npy", np.ones((4, 6)))
    with pytest.raises(LoadError, match="only 6 x 4 px"):
        load(tmp_path / "tiny.npy")


def test_smallest_allowed_image(tmp_path):
    np.save(tmp_path / "small.npy", np.arange(64.0).reshape(8, 8))
    assert load(tmp_path / "small.npy").shape == (8, 8)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(LoadError, match="unpickle"):
        load(tmp_path / "obj.npy")


def test_huge_stack_stays_on_disk(tmp_path):
    # 24 x 4096 x 4096 uint8: 1.5 GiB as float32, more than LAZY_STACK_BYTES; a sparse file
    p = tmp_path / "huge.npy"
    mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(24, 4096, 4096))
    mm[7, 100, 200] = 42
    mm.flush()
    del mm
    assert 24 * 4096 * 4096 * 4 > LAZY_STACK_BYTES
    mg = load(p)
    assert isinstance(mg.data, np.memmap) and mg.data.shape == (24, 4096, 4096)
    assert any("read on demand" in n for n in mg.notes)
    f = mg.frame(7)
    assert f.dtype == np.float32 and f.shape == (4096, 4096) and f[100, 200] == 42


def test_huge_single_frame_refused_with_message(tmp_path):
    p = tmp_path / "enormous.npy"
    np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(40000, 30000))
    with pytest.raises(LoadError, match="crop or bin"):
        load(p)


def test_lazy_hspy_stack(hs, tmp_path):
    data = np.stack([_lattice(seed=i) for i in range(3)])
    p = tmp_path / "lazy.hspy"
    _signal2d(hs, data).save(p)
    mg = load(p, lazy=True)
    assert isinstance(mg.data, np.ndarray)  # small: computed after a lazy open
    np.testing.assert_allclose(mg.frame(2), data[2])


def test_frame_index_errors(tmp_path):
    np.save(tmp_path / "a.npy", _lattice())
    mg = load(tmp_path / "a.npy")
    with pytest.raises(IndexError):
        mg.frame(1)


# ------------------------------------------------------------------ units
@pytest.mark.parametrize(
    "spelling,factor",
    [("nm", 1), ("n_m", 1), ("n m", 1), ("Nanometers", 1), ("Å", 0.1), ("A", 0.1),
     ("angstrom", 0.1), ("pm", 1e-3), ("um", 1e3), ("µm", 1e3), ("μm", 1e3), ("u_m", 1e3),
     ("m", 1e9), ("mm", 1e6)],
)
def test_length_units(spelling, factor):
    assert length_unit_to_nm(spelling) == pytest.approx(factor)


@pytest.mark.parametrize("spelling", [None, "", "<undefined>", "px", "1/nm", "nm^-1", "eV", "s"])
def test_not_length_units(spelling):
    assert normalise_length_unit(spelling) is None


def test_reciprocal_space_image_is_uncalibrated(hs, tmp_path):
    p = tmp_path / "fft.hspy"
    _signal2d(hs, _lattice(), scale=0.1, units="1/nm").save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        mg = load(p)
    assert mg.px_size_nm is None
    assert any("reciprocal" in n for n in mg.notes)
