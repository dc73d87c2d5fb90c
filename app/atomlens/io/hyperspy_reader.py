"""Reading through HyperSpy/RosettaSciIO: every image format they know."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np

from .micrograph import LoadError, Micrograph
from .modes import mode_from_metadata
from .units import length_unit_to_nm, normalise_length_unit

__all__ = ["read_with_hyperspy", "NotHyperSpyFile"]

#: Files larger than this are opened lazily (dask), so that nothing is read until needed.
LAZY_FILE_BYTES = 256 * 2**20


class NotHyperSpyFile(Exception):
    """Raised when HyperSpy's HSPY reader says the file is not one of its own."""


@contextlib.contextmanager
def _quiet_hyperspy():
    """Silence HyperSpy's own log lines (we report errors ourselves) and its warnings."""
    loggers = [logging.getLogger(n) for n in ("hyperspy", "hyperspy.io", "rsciio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _title(sig, i: int) -> str:
    t = str(sig.metadata.get_item("General.title", "") or "").strip()
    return t or f"image {i + 1}"


def _describe(sig) -> str:
    am = sig.axes_manager
    nav = " x ".join(str(a.size) for a in am.navigation_axes)
    sg = " x ".join(str(a.size) for a in am.signal_axes)
    kind = type(sig).__name__
    return f"{kind} with navigation ({nav or '-'}) and signal ({sg or '-'})"


def _is_image(sig) -> bool:
    am = sig.axes_manager
    return am.signal_dimension == 2 or (am.signal_dimension == 0 and am.navigation_dimension == 2)


def _why_not_image(sig) -> str:
    am = sig.axes_manager
    if sig.data.size == 0:
        return "it is empty"
    if am.signal_dimension == 1 and am.navigation_dimension >= 2:
        return (
            f"it is a spectrum image ({_describe(sig)}) with no 2D image in it; "
            "sum or integrate it into an image in HyperSpy first, or open the survey/HAADF image"
        )
    if am.signal_dimension == 1:
        return f"it is a 1D signal (a spectrum or a profile: {_describe(sig)}), not an image"
    if am.signal_dimension == 2 and am.navigation_dimension >= 2:
        return (
            f"it is a 4D data set ({_describe(sig)}); compute a virtual image "
            "(e.g. HAADF) from it in HyperSpy/py4DSTEM and open that"
        )
    return f"it is not an image ({_describe(sig)})"


def _rgb_fields_to_array(data):
    """HyperSpy's structured rgb8/rgb16 dtype -> (..., 3) regular array."""
    names = data.dtype.names
    return np.stack([data[n] for n in names if n in ("R", "G", "B")], axis=-1)


def _spatial_calibration(sig, io_plugin: str):
    """(px_x_nm, px_y_nm, offset_nm, units_original, notes) of a 2D signal."""
    am = sig.axes_manager
    axes = am.signal_axes if am.signal_dimension == 2 else am.navigation_axes
    ax_x, ax_y = axes[0], axes[1]
    units = ax_x.units if isinstance(ax_x.units, str) else None
    notes: list[str] = []
    scale_x, scale_y = float(ax_x.scale), float(ax_y.scale)
    factor = length_unit_to_nm(units)
    if factor is None:
        if units and normalise_length_unit(units) is None and not str(units).startswith("<"):
            if "/" in units or "-1" in units:
                notes.append(f"axes are in reciprocal units ({units}): not a real-space image")
            else:
                notes.append(f"axis units {units!r} are not a length; treated as uncalibrated")
            return None, None, (0.0, 0.0), units, notes
        if scale_x == 1.0 and scale_y == 1.0:
            return None, None, (0.0, 0.0), units, notes
        if 1e-13 <= scale_x <= 1e-8:
            factor, assumed = 1e9, "m"
        elif 1e-4 <= scale_x <= 10:
            factor, assumed = 1.0, "nm"
        else:
            notes.append(f"pixel size {scale_x:g} has no units and is implausible; ignored")
            return None, None, (0.0, 0.0), units, notes
        notes.append(f"length units missing from the file; pixel size {scale_x:g} assumed in {assumed}")
    off_x, off_y = float(ax_x.offset) * factor, float(ax_y.offset) * factor
    if io_plugin.endswith("tia"):
        # RosettaSciIO 0.15 copies TIA's offsets, which are in metres, into axes labelled nm.
        hdr = sig.original_metadata.get_item("ser_header_parameters", None)
        if hdr is not None and hdr.has_item("CalibrationOffsetX"):
            off_x = float(hdr.CalibrationOffsetX) * 1e9
            off_y = float(hdr.CalibrationOffsetY) * 1e9
    return scale_x * factor, scale_y * factor, (off_x, off_y), units, notes


def _mode(sig) -> str | None:
    md = sig.metadata
    texts = [
        md.get_item("General.title", ""),
        md.get_item("Signal.signal_type", ""),
        str(md.get_item("Acquisition_instrument.TEM.Detector", "")),
        str(md.get_item("Acquisition_instrument.SEM.Detector", "")),
    ]
    return mode_from_metadata(*texts)


def read_with_hyperspy(path, channel: str | None = None, *, reader: str | None = None,
                       lazy: bool | None = None) -> Micrograph:
    """Read `path` with HyperSpy and return its (chosen) image as a Micrograph.

    Parameters
    ----------
    path : str or Path
        Any file HyperSpy/RosettaSciIO reads (see :data:`atomlens.io.formats.FORMATS`).
    channel : str, optional
        Which image to read, by its title as listed in the returned ``channels`` (a repeated
        title gets `` (i)``, its 1-based position).  None (default): the first image.
    reader : str, optional
        HyperSpy's reader to use (``"HSPY"`` for ``.hdf5``/``.h5``); None: chosen by extension.
    lazy : bool, optional
        Open with dask, reading nothing until needed.  None (default): lazy for files over
        :data:`LAZY_FILE_BYTES` (256 MiB).

    Returns
    -------
    Micrograph
        Not yet checked nor converted (:func:`atomlens.io.load` does that): ``data`` is (H, W)
        or (N, H, W) in the file's dtype (a dask array when lazy; RGB as (..., 3)).
        ``px_size_nm`` / ``px_size_y_nm`` in nm per pixel and ``offset_nm`` in nm, or None
        where the axes carry no length unit (a unitless scale is taken as m or nm where
        plausible, with a note).

    Raises
    ------
    NotHyperSpyFile
        With ``reader="HSPY"``, when the file is HDF5 but not written by HyperSpy.
    LoadError
        When HyperSpy cannot read the file or the file holds no 2D image.
    """
    path = Path(path)
    if lazy is None:
        lazy = path.stat().st_size > LAZY_FILE_BYTES
    import hyperspy.api as hs  # slow import: only here

    kwargs = {"lazy": lazy}
    if reader:
        kwargs["reader"] = reader
    with _quiet_hyperspy():
        try:
            loaded = hs.load(str(path), **kwargs)
        except Exception as exc:  # noqa: BLE001 - HyperSpy raises anything from its readers
            msg = str(exc) or type(exc).__name__
            if reader == "HSPY" and ("not a valid HyperSpy" in msg or "Experiments" in msg):
                raise NotHyperSpyFile(msg) from exc
            raise LoadError(
                f"{path.name}: the file could not be read; it may be damaged, truncated or "
                f"not a {path.suffix or 'supported'} file ({type(exc).__name__}: {msg.splitlines()[0]})."
            ) from exc
    signals = loaded if isinstance(loaded, list) else [loaded]
    if not signals:
        raise LoadError(f"{path.name}: the file holds no data.")
    images = [(i, s) for i, s in enumerate(signals) if _is_image(s) and s.data.size > 0]
    if not images:
        reasons = "; ".join(_why_not_image(s) for s in signals[:3])
        raise LoadError(f"{path.name}: no 2D image to open: {reasons}.")
    names = []
    for i, s in images:
        n = _title(s, i)
        names.append(n if n not in names else f"{n} ({i + 1})")
    if channel is None:
        k = 0
    elif channel in names:
        k = names.index(channel)
    else:
        raise LoadError(f"{path.name}: no image {channel!r}; the file holds {', '.join(names)}.")
    sig = images[k][1]
    am = sig.axes_manager
    if am.signal_dimension == 0:
        sig = sig.T
        am = sig.axes_manager
    if am.navigation_dimension > 1:
        raise LoadError(f"{path.name}: {_why_not_image(sig)}.")
    data = sig.data
    if data.dtype.names:
        data = _rgb_fields_to_array(data)
    io_plugin = str(sig.metadata.get_item("General.FileIO.0.io_plugin", ""))
    px_x, px_y, offset, units, notes = _spatial_calibration(sig, io_plugin)
    meta = {
        "metadata": sig.metadata.as_dictionary(),
        "original_metadata": sig.original_metadata.as_dictionary(),
    }
    return Micrograph(
        data=data,
        px_size_nm=px_x,
        px_size_y_nm=px_y,
        offset_nm=offset,
        mode=_mode(sig),
        metadata=meta,
        path=path,
        channel=names[k],
        channels=names,
        units_original=units,
        value_units=(sig.metadata.get_item("Signal.quantity", None) or None),
        notes=notes,
    )
