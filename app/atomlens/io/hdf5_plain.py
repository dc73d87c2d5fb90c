"""Reader for plain HDF5 files that hold one image dataset (not written by HyperSpy).

Such files are common in published ML data sets, e.g. AtomNet's ``image_data`` dataset with
a JSON ``metadata`` dataset beside it (``"scan size"`` in nm, ``"type of data"``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .micrograph import LoadError, Micrograph

__all__ = ["read_plain_hdf5"]

_SCAN_SIZE_KEYS = ("scan size", "scan_size", "field of view", "fov", "scan size (nm)")
_PX_SIZE_KEYS = ("pixel size", "pixel_size", "px_size_nm", "scale", "pixel size (nm)")


def _image_datasets(h5) -> list[tuple[str, tuple[int, ...]]]:
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.dtype.kind in "uifc":
            if min(obj.shape[-2:]) >= 2:
                found.append((name, obj.shape))

    h5.visititems(visit)
    return found


def _json_metadata(h5) -> dict:
    import h5py

    for key in ("metadata", "meta", "Metadata"):
        obj = h5.get(key)
        if isinstance(obj, h5py.Dataset) and obj.shape == ():
            raw = obj[()]
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            try:
                val = json.loads(raw)
            except (TypeError, ValueError):
                continue
            if isinstance(val, dict):
                return val
    return {}


def _length_from(meta: dict, keys) -> tuple[float | None, str | None]:
    from .units import length_unit_to_nm

    for k, v in meta.items():
        if str(k).strip().lower() in keys:
            if isinstance(v, (list, tuple)) and v:
                v = v[0]
            unit = meta.get(f"{k} units") or meta.get("units") or "nm"
            try:
                val = float(str(v).split()[0])
                if len(str(v).split()) > 1:
                    unit = str(v).split()[1]
            except (ValueError, IndexError):
                continue
            factor = length_unit_to_nm(unit)
            if factor and val > 0:
                return val * factor, str(unit)
    return None, None


def _mode_from(meta: dict) -> str | None:
    from .modes import mode_from_text

    for k in ("type of data", "signal_type", "mode", "detector", "imaging mode"):
        for mk, v in meta.items():
            if str(mk).strip().lower() == k and isinstance(v, str):
                m = mode_from_text(v)
                if m:
                    return m
    return None


def read_plain_hdf5(path, channel: str | None = None) -> Micrograph:
    """Read the single image dataset of a plain HDF5 file.

    With several image datasets, `channel` names the one to read (default: the first one,
    preferring a dataset called ``image_data``, ``image`` or ``data``).

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    channel : str, optional
        Full name of the dataset to read (``"group/image"``), one of the returned
        ``channels``.  None (default): chosen as above.

    Returns
    -------
    Micrograph
        Not yet checked nor converted (:func:`atomlens.io.load` does that): ``data`` is the
        dataset as stored, (H, W) or (N, H, W) in its own dtype.  ``px_size_nm`` (nm per pixel)
        comes from a JSON ``metadata`` dataset's pixel size, else its scan size over the width
        W, else None; ``channels`` lists every 2D/3D numeric dataset.

    Raises
    ------
    LoadError
        When the file is not readable HDF5, holds no image dataset, has no dataset `channel`,
        or the dataset cannot be read.
    """
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise LoadError(f"{path}: not a readable HDF5 file ({exc}).") from exc
    with h5:
        sets = _image_datasets(h5)
        if not sets:
            raise LoadError(f"{path}: the HDF5 file holds no 2D image dataset.")
        names = [n for n, _ in sets]
        if channel is not None:
            if channel not in names:
                raise LoadError(f"{path}: no dataset {channel!r}; the file holds {', '.join(names)}.")
            name = channel
        else:
            preferred = [n for n in names if n.split("/")[-1] in ("image_data", "image", "data")]
            name = (preferred or names)[0]
        try:
            data = h5[name][()]
        except OSError as exc:
            raise LoadError(f"{path}: dataset {name!r} cannot be read (damaged file?): {exc}") from exc
        meta = _json_metadata(h5)
    notes = []
    h, w = data.shape[-2:]
    px_nm, unit = _length_from(meta, _PX_SIZE_KEYS)
    if px_nm is None:
        fov_nm, unit = _length_from(meta, _SCAN_SIZE_KEYS)
        if fov_nm is not None:
            if h != w:
                notes.append(f"scan size {fov_nm:g} nm taken as the width ({w} px)")
            px_nm = fov_nm / w
            notes.append(f"pixel size from the scan size in the metadata ({fov_nm:g} nm / {w} px)")
    return Micrograph(
        data=data,
        px_size_nm=px_nm,
        mode=_mode_from(meta),
        metadata={"hdf5_dataset": name, **meta},
        path=path,
        channel=name,
        channels=names,
        units_original=unit,
        notes=notes,
    )
