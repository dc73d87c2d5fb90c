"""Read micrographs into :class:`Micrograph` objects: ``load(path) -> Micrograph``.

Routing:

* ``.sxm`` (Nanonis STM) -> :func:`atomlens.io.sxm.read_sxm` (HyperSpy cannot read it);
* ``.npy`` -> NumPy, memory-mapped, never unpickled;
* ``.hdf5``/``.h5`` -> HyperSpy's HSPY reader, then a plain HDF5 file holding one image;
* every other supported extension -> HyperSpy/RosettaSciIO.

Whatever the route, the result is checked and repaired the same way: RGB becomes grey,
complex data its modulus, NaN/inf are replaced (with a :class:`LoadWarning`), lengths are
in nm, and anything that is not an image raises :class:`LoadError` with a readable message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .cleaning import clean_nonfinite, complex_to_real, float32_plan, to_float32, to_grey, value_range
from .formats import ALL_EXTENSIONS, FORMATS, file_dialog_filter
from .micrograph import LoadError, LoadWarning, Micrograph

__all__ = [
    "load", "Micrograph", "LoadError", "LoadWarning", "FORMATS", "ALL_EXTENSIONS",
    "file_dialog_filter", "MIN_SIDE_PX", "MAX_IMAGE_PIXELS", "LAZY_STACK_BYTES",
]

#: Images narrower or shorter than this hold no lattice worth analysing.
MIN_SIDE_PX = 8
#: One frame may hold at most this many pixels (2^30: 32768 x 32768, 4 GiB as float32).
MAX_IMAGE_PIXELS = 2**30
#: Stacks larger than this (as float32) stay on disk (memory map or dask); frames load on demand.
LAZY_STACK_BYTES = 1 * 2**30


def load(path, channel: str | None = None, *, lazy: bool | None = None, keep_on_disk: bool = False) -> Micrograph:
    """Load an image or image stack with its calibration.

    Parameters
    ----------
    path : str or Path
        The file.  See :data:`FORMATS` for what can be read.
    channel : str, optional
        For files with several images (Nanonis channels, Velox detectors, HDF5 datasets):
        which one to read.  Default: ``Z forward`` for Nanonis, else the first image.
        ``Micrograph.channels`` lists the names.
    lazy : bool, optional
        Force (or forbid) lazy reading through HyperSpy.  By default files over 256 MB
        are opened lazily, and stacks over 1 GiB stay lazy.
    keep_on_disk : bool
        Leave the values on disk whatever the shape (a memory-mapped ``.npy``, a lazy
        HyperSpy file): they are checked block by block, never held in memory at once, and
        :meth:`Micrograph.frame` reads and converts a frame when asked.  ``atomlens info``
        uses it.  ``data`` may then be in the file's own dtype (see ``value_transform``).

    Returns
    -------
    Micrograph
        ``data`` is float32 (H, W) or (N, H, W), row 0 at the top.

    Raises
    ------
    LoadError
        For a missing, unreadable, corrupt, truncated or unsupported file, or one that
        holds no 2D image.  The message names the file and the problem.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise LoadError(f"{path}: file not found.")
    ext = path.suffix.lower().lstrip(".")
    if path.is_dir() and ext != "zspy":  # zspy is a zarr folder store
        raise LoadError(f"{path}: is a folder, not a file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    if size == 0 and not path.is_dir():
        raise LoadError(f"{path.name}: the file is empty (0 bytes).")
    if ext not in ALL_EXTENSIONS:
        kinds = ", ".join(f".{e}" for e in ALL_EXTENSIONS)
        raise LoadError(
            f"{path.name}: unsupported file type {path.suffix or '(no extension)'!r}. "
            f"AtomLens opens {kinds}."
        )
    if keep_on_disk and lazy is None:
        lazy = True
    try:
        if ext == "sxm":
            from .sxm import read_sxm

            mg = read_sxm(path, channel)
        elif ext == "npy":
            mg = _read_npy(path)
        elif ext in ("hdf5", "h5"):
            mg = _read_hdf5(path, channel, lazy)
        else:
            from .hyperspy_reader import read_with_hyperspy

            mg = read_with_hyperspy(path, channel, lazy=lazy)
        return _finalise(mg, keep_on_disk=keep_on_disk)
    except (LoadError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a reader's surprise is still a file that cannot be read
        msg = (str(exc) or type(exc).__name__).splitlines()[0][:300]
        raise LoadError(f"{path.name}: the file could not be read; it may be damaged or not a "
                        f"{path.suffix or 'supported'} file ({type(exc).__name__}: {msg}).") from exc


def _read_hdf5(path: Path, channel, lazy) -> Micrograph:
    from .hdf5_plain import read_plain_hdf5
    from .hyperspy_reader import NotHyperSpyFile, read_with_hyperspy

    try:
        return read_with_hyperspy(path, channel, reader="HSPY", lazy=lazy)
    except NotHyperSpyFile:
        return read_plain_hdf5(path, channel)


def _read_npy(path: Path) -> Micrograph:
    """Memory-map a ``.npy`` after checking its header: never unpickled, never read whole."""
    from numpy.lib import format as npformat

    try:
        with open(path, "rb") as fh:
            try:
                version = npformat.read_magic(fh)
            except ValueError:
                raise LoadError(f"{path.name}: not a NumPy .npy file (it does not start with NumPy's "
                                "signature); it may be another kind of file renamed.") from None
            read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _fortran, dtype = read_header(fh)
            offset = fh.tell()
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from exc
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad headers
        raise LoadError(f"{path.name}: the .npy header is damaged ({str(exc).splitlines()[0][:200]}).") from exc
    if dtype.hasobject:
        raise LoadError(
            f"{path.name}: this .npy holds Python objects, which AtomLens does not unpickle "
            "for safety; save a plain numeric array instead."
        )
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        raise LoadError(f"{path.name}: the file is truncated: its header announces {dtype} data of shape "
                        f"{tuple(shape)} ({need - offset:,} bytes) but it holds {max(have - offset, 0):,}.")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise LoadError(f"{path.name}: not a valid .npy file ({str(exc).splitlines()[0][:200]}).") from exc
    mg = Micrograph(data=data, path=path, channel=None, channels=[])
    mg._npy_file = (path, offset)  # where the raw values lie, for block-wise scans
    return mg


def _range_of(data, file=None) -> tuple[int, object, object]:
    """:func:`value_range` for ndarrays, memory maps (read from `file`) and dask arrays."""
    if not hasattr(data, "compute"):
        return value_range(data, file)
    import dask
    import dask.array as da

    if data.dtype.kind in "iub":
        lo, hi = dask.compute(data.min(), data.max())
        return int(data.size), int(lo), int(hi)
    d64 = data.astype(np.float64)
    fin = da.isfinite(d64)
    n, lo, hi = dask.compute(fin.sum(), da.where(fin, d64, np.inf).min(), da.where(fin, d64, -np.inf).max())
    return (int(n), float(lo), float(hi)) if n else (0, None, None)


def _nonfinite_note(n_bad: int, size: int) -> str:
    return (f"{n_bad} NaN/infinite value{'s' if n_bad != 1 else ''} "
            f"({100 * n_bad / size:.2g} %) replaced by the mean intensity")


def _record_plan(mg: Micrograph, dtype, plan) -> None:
    """Keep the float32 conversion in the Micrograph, its metadata and its notes."""
    if plan is None:
        return
    offset, scale = plan
    mg.value_transform = plan
    mg.metadata["AtomLens"] = {**mg.metadata.get("AtomLens", {}), "original_dtype": str(dtype),
                               "value_offset": offset, "value_scale": scale,
                               "float32_values": "(raw - value_offset) / value_scale"}
    what = []
    if offset:
        what.append(f"{offset:.10g} subtracted")
    if scale != 1.0:
        what.append(f"divided by 2^{int(np.log2(scale))}")
    mg.notes.append(f"{dtype} values {' and '.join(what)} before conversion to float32, to keep the contrast")


def _finalise(mg: Micrograph, keep_on_disk: bool = False) -> Micrograph:
    """Check shape and dtype, convert to float32 (keeping the contrast of wide types), clean
    non-finite values; warn on repairs."""
    name = mg.path.name if mg.path else "data"
    data = mg.data
    npy_file = getattr(mg, "_npy_file", None)
    repairs: list[str] = []
    if data.dtype.kind in "OSUVMm" or data.dtype.names:
        raise LoadError(f"{name}: the data are not numbers ({data.dtype}); cannot show them.")
    if data.size == 0:
        raise LoadError(f"{name}: the image is empty (shape {tuple(data.shape)}).")
    if data.dtype.kind == "c":
        data = complex_to_real(data)
        npy_file = None
        repairs.append("complex data: showing the modulus |z|")
    if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) >= MIN_SIDE_PX:
        data = to_grey(data)
        npy_file = None
        repairs.append("colour (RGB) image converted to grey levels")
    if data.ndim == 4 and data.shape[-1] in (3, 4):
        data = to_grey(data)
        npy_file = None
        repairs.append("colour (RGB) frames converted to grey levels")
    if data.ndim < 2:
        raise LoadError(f"{name}: a {data.ndim}D signal of shape {tuple(data.shape)} is not an image.")
    if data.ndim > 3:
        raise LoadError(
            f"{name}: {data.ndim}D data of shape {tuple(data.shape)} is not an image or an "
            "image stack (4D-STEM? compute a virtual image first)."
        )
    h, w = data.shape[-2:]
    if min(h, w) < MIN_SIDE_PX:
        raise LoadError(
            f"{name}: the image is only {w} x {h} px; at least {MIN_SIDE_PX} x {MIN_SIDE_PX} "
            "px are needed to find atoms."
        )
    if h * w > MAX_IMAGE_PIXELS:
        raise LoadError(
            f"{name}: one frame is {w} x {h} px, more than AtomLens handles at once "
            f"({MAX_IMAGE_PIXELS:,} px); crop or bin it first."
        )
    dtype = data.dtype
    wide = dtype.kind in "iu" and dtype.itemsize >= 4 or dtype.kind == "f" and dtype.itemsize >= 8
    float_bytes = data.size * 4
    big_stack = data.ndim == 3 and float_bytes > LAZY_STACK_BYTES
    on_disk = isinstance(data, np.memmap) or hasattr(data, "compute")
    if big_stack or (keep_on_disk and on_disk):
        if big_stack:  # frames are read on demand: the first one sets the conversion
            first = data[0].compute() if hasattr(data, "compute") else np.asarray(data[0])
            n, lo, hi = value_range(first) if wide else (None, None, None)
            mg.notes.append(f"large stack ({float_bytes / 2**30:.1f} GiB as float32): frames are read on demand")
        else:  # keep_on_disk: every value is checked, block by block
            n, lo, hi = _range_of(data, npy_file if isinstance(data, np.memmap) else None)
            if n == 0:
                raise LoadError(f"{name}: every value is NaN or infinite; there is no image.")
            if dtype.kind in "fc" and n < data.size:
                repairs.append(_nonfinite_note(data.size - n, data.size))
        plan = float32_plan(dtype, lo, hi) if wide else None
        _record_plan(mg, dtype, plan)
        if hasattr(data, "compute"):
            data = data.map_blocks(to_float32, plan, dtype=np.float32) if plan else data.astype(np.float32)
    else:
        if hasattr(data, "compute"):
            data = data.compute()
        plan = None
        if wide:
            n, lo, hi = value_range(data)
            if n == 0:
                raise LoadError(f"{name}: every value is NaN or infinite; there is no image.")
            plan = float32_plan(dtype, lo, hi)
            _record_plan(mg, dtype, plan)
        if plan is None and isinstance(data, np.memmap):
            data = np.array(data, dtype=np.float32, order="C")  # a copy: the file may change or go
        else:
            data = to_float32(data, plan)
        if not np.isfinite(data).all():
            try:
                data, n_bad = clean_nonfinite(data)
            except ValueError:
                raise LoadError(f"{name}: every value is NaN or infinite; there is no image.") from None
            repairs.append(_nonfinite_note(n_bad, data.size))
    mg.data = data
    if mg.mode is None and mg.path is not None:
        from .modes import mode_from_text

        mg.mode = mode_from_text(mg.path.stem)
        if mg.mode:
            mg.notes.append(f"imaging mode {mg.mode} guessed from the file name")
    if mg.px_size_nm is not None and not (np.isfinite(mg.px_size_nm) and mg.px_size_nm > 0):
        repairs.append(f"invalid pixel size {mg.px_size_nm!r} in the file; treated as uncalibrated")
        mg.px_size_nm = mg.px_size_y_nm = None
    if mg.px_size_nm is None:
        mg.px_size_y_nm = None
        mg.notes.append("no spatial calibration: set the pixel size to get nm")
    elif mg.px_size_y_nm and abs(mg.px_size_y_nm / mg.px_size_nm - 1) > 0.01:
        mg.notes.append(
            f"non-square pixels: {mg.px_size_nm * 1000:.4g} x {mg.px_size_y_nm * 1000:.4g} pm"
        )
    for msg in [n for n in mg.notes if "assumed" in n or "ignored" in n] + repairs:
        warnings.warn(f"{name}: {msg}", LoadWarning, stacklevel=3)
    mg.notes.extend(repairs)
    return mg
