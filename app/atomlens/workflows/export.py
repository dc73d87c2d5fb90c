"""Every file AtomLens writes from a result: the files of ``atomlens detect`` (atom and defect
tables, defect maps, the JSON summary), the GUI's exports (CSV, JSON, a HyperSpy file) and the
JSON encoding they share.

:func:`write_results` writes what ``atomlens detect`` and ``atomlens batch`` write per image;
:func:`export_csv` and :func:`export_json` are the same code path (:meth:`AtomList.to_csv`,
:meth:`AnalysisResult.to_dict`), so the GUI's export and the CLI write identical files.
:func:`to_hspy` writes the image as a calibrated HyperSpy ``Signal2D`` with the atoms as
permanent point markers (one marker set per class, in the class colour, positions in calibrated
units) and the full atom table in ``metadata.AtomLens``.  Every file is written through a
temporary file and a rename.

A result corrected in Annotate mode (:func:`atomlens.analysis.corrections.corrected_result`)
is written with an ``origin`` column after the ``x,y,class,score,x_nm,y_nm`` columns of
``atomlens detect`` (CSV), an ``origin`` list and a ``corrections`` summary (JSON), and
``origin`` in ``metadata.AtomLens.atoms`` (HyperSpy).  A result without corrections is written
exactly as ``detect`` writes it (byte for byte for CSV and JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from ..analysis.colours import DEFECT_MARKER_COLOUR, default_class_colours
from ..analysis.corrections import corrections_of, origin_counts
from ..fileio import atomic_save_npy, atomic_write_text, atomic_write_with

__all__ = ["DEFAULT_CLASS_COLOURS", "DEFECT_MARKER_COLOUR", "dumps", "export_csv", "export_json", "finite",
           "json_default",
           "result_dict", "result_json", "to_hspy", "write_results"]

#: Colours of the standard classes (as in the bundled model cards).
DEFAULT_CLASS_COLOURS = default_class_colours()
#: Marker size (matplotlib points) of the atom markers.
MARKER_SIZE_PT = 8


def json_default(v):
    """The JSON encoding of the values :func:`json.dumps` does not know, for every file written
    here: numpy scalars as Python numbers, a non-finite float as null.

    Parameters
    ----------
    v : object
        A value json cannot encode itself.

    Returns
    -------
    int, float or None

    Raises
    ------
    TypeError
        For any other type (as :func:`json.dumps` expects).
    """
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    raise TypeError(f"not JSON serialisable: {type(v)}")


def finite(obj):
    """`obj` with every non-finite float (NaN, inf; Python's or numpy's) replaced by None, in
    nested dicts, lists and tuples (tuples become lists): what strict JSON can hold.

    Parameters
    ----------
    obj : object
        JSON-like data.

    Returns
    -------
    object
        A copy with the non-finite floats as None (other values as they are).

    Examples
    --------
    >>> finite({"a": [1.0, float("nan")], "b": (float("inf"), "x")})
    {'a': [1.0, None], 'b': [None, 'x']}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def dumps(obj, indent: int | None = 1) -> str:
    """Strict JSON text of `obj` as every file here writes it: numpy scalars as numbers, NaN and
    inf as null (:func:`finite`).

    Parameters
    ----------
    obj : object
        JSON-like data (dicts, lists, numbers, strings, numpy scalars).
    indent : int or None
        As :func:`json.dumps`.

    Returns
    -------
    str

    Raises
    ------
    TypeError
        For a value JSON cannot hold (see :func:`json_default`).
    """
    return json.dumps(finite(obj), indent=indent, default=json_default, allow_nan=False)


def result_json(result, indent: int | None = 1) -> str:
    """The JSON text of :func:`result_dict` (`indent` as :func:`json.dumps`).

    Parameters
    ----------
    result : AnalysisResult
        Corrected (:func:`~atomlens.analysis.corrections.corrected_result`) or not.
    indent : int or None, optional
        Indentation per level; None writes one line.

    Returns
    -------
    str
        What :func:`export_json` writes; numpy scalars encoded by :func:`json_default`.

    Raises
    ------
    TypeError
        For a value in the result's info that JSON cannot encode.
    """
    return dumps(result_dict(result), indent=indent)


def write_results(result, out_dir, stem: str, *, json_summary: bool = False) -> list[Path]:
    """Write what ``atomlens detect`` writes for one image, atomically.

    Parameters
    ----------
    result : AnalysisResult
    out_dir : str or Path
        Output folder (created if needed).
    stem : str
        File name stem: ``<stem>.atoms.csv``, ``<stem>.defects.csv`` (when the result has
        defects), ``<stem>.cam.npy`` (when it has defect maps, float32 (K, H, W)) and
        ``<stem>.json`` (when `json_summary`).
    json_summary : bool
        Also write the JSON summary (:meth:`AnalysisResult.to_dict`).

    Returns
    -------
    list of Path
        The files written, in that order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.atoms.csv"]
    result.write_tables(written[0], out / f"{stem}.defects.csv")
    if result.defects is not None:
        written.append(out / f"{stem}.defects.csv")
    if result.cam is not None:
        p = out / f"{stem}.cam.npy"
        atomic_save_npy(p, np.asarray(result.cam, np.float32))
        written.append(p)
    if json_summary:
        p = out / f"{stem}.json"
        atomic_write_text(p, dumps(result.to_dict(), indent=1))
        written.append(p)
    return written


def result_dict(result) -> dict:
    """:meth:`AnalysisResult.to_dict`, plus, for a corrected result, ``atoms.origin``,
    ``defects.origin`` / ``w`` / ``h`` and a ``corrections`` summary (origin counts and the
    number of atoms and defects deleted).

    Parameters
    ----------
    result : AnalysisResult
        Corrected or not.

    Returns
    -------
    dict
        A new dict (``result.to_dict()``'s).  For a corrected result: ``atoms["origin"]``,
        and where there are defects ``defects["origin"]`` and ``defects["w"]``,
        ``defects["h"]`` (box size px, None for a point), and ``corrections``:
        ``{"source": "annotations", "edits", "atoms": {origin: n}, "deleted_atoms",
        "defects": {origin: n}, "deleted_defects"}``.
    """
    d = result.to_dict()
    c = corrections_of(result)
    if c is None:
        return d
    d["atoms"]["origin"] = [str(o) for o in c["origin"]]
    if d.get("defects") is not None:
        d["defects"]["origin"] = [str(o) for o in c["defect_origin"]]
        d["defects"]["w"] = [None if b is None else b[0] for b in c["defect_box"]]
        d["defects"]["h"] = [None if b is None else b[1] for b in c["defect_box"]]
    d["corrections"] = {"source": "annotations", "edits": c["edits"], "atoms": origin_counts(c["origin"]),
                        "deleted_atoms": c["deleted"], "defects": origin_counts(c["defect_origin"]),
                        "deleted_defects": c["deleted_defects"]}
    return d


def _csv_with_origin(result, origin) -> str:
    """The atom table of ``atomlens detect`` (same columns and number formats) with an
    ``origin`` column appended."""
    from ..analysis.atoms import table_to_csv_text

    a = result.atoms
    cal = result.calibration
    base = table_to_csv_text(a.x, a.y, a.names(), a.score, cal.px_x_nm, cal.offset_nm, "class", cal.px_y_nm)
    rows = list(csv.reader(io.StringIO(base, newline="")))
    rows[0].append("origin")
    for row, o in zip(rows[1:], origin):
        row.append(str(o))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def export_csv(result, path) -> Path:
    """Write the atom table ``x,y,class,score,x_nm,y_nm`` of `result` (an
    :class:`~atomlens.analysis.pipeline.AnalysisResult`) to `path`, atomically; exactly what
    ``atomlens detect`` writes as ``<stem>.atoms.csv``.

    A corrected result (:func:`~atomlens.analysis.corrections.corrected_result`) gets a seventh
    column ``origin`` (:data:`~atomlens.analysis.corrections.ORIGINS`); atoms the user placed have
    score 1.0 (see :func:`~atomlens.analysis.corrections.corrected_result`).

    Parameters
    ----------
    result : AnalysisResult
        Positions in px; the nm columns through its calibration (empty when uncalibrated).
    path : str or os.PathLike
        The CSV file, replaced whole.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    path = Path(path)
    c = corrections_of(result)
    if c is None:
        result.write_tables(path)
    else:
        atomic_write_text(path, _csv_with_origin(result, c["origin"]))
    return path


def export_json(result, path) -> Path:
    """Write the JSON summary of `result` (settings, calibration, counts, atoms, defects) to
    `path`, atomically; exactly what ``atomlens detect --json`` writes as ``<stem>.json``
    (for a corrected result, :func:`result_dict`: with the atoms' origins and a
    ``corrections`` summary).

    Parameters
    ----------
    result : AnalysisResult
        Corrected or not.
    path : str or os.PathLike
        The JSON file, replaced whole (:func:`result_json`, indent 1).

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    OSError
        If the file cannot be written.
    TypeError
        As :func:`result_json`.
    """
    path = Path(path)
    atomic_write_text(path, result_json(result))
    return path


def _key(name: str) -> str:
    """A metadata/marker key for a class name (letters, digits and '_' only)."""
    k = re.sub(r"\W+", "_", str(name)).strip("_") or "unnamed"
    return k if not k[0].isdigit() else "_" + k


def _image_of(result, micrograph) -> np.ndarray:
    """The analysed frame."""
    if isinstance(micrograph, np.ndarray):
        img = micrograph
    elif micrograph is not None and hasattr(micrograph, "frame"):
        img = micrograph.frame(result.frame if micrograph.is_stack else 0)
    else:
        raise TypeError("to_hspy needs the Micrograph (or the (H, W) image) the result belongs to")
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    if tuple(img.shape) != tuple(result.shape):
        raise ValueError(f"the image is {img.shape[1]} x {img.shape[0]} px but the result was found on "
                         f"{result.shape[1]} x {result.shape[0]} px")
    return img


def to_hspy(result, micrograph, path, *, class_colours: dict | None = None) -> Path:
    """Write a HyperSpy ``.hspy`` file: the image, calibrated, with the atoms as markers.

    Parameters
    ----------
    result : AnalysisResult
    micrograph : Micrograph or (H, W) array
        The image the result was found on (frame ``result.frame`` of a stack).
    path : str or Path
        Output file; ``.hspy`` is appended when it has another extension.
    class_colours : dict, optional
        Class name -> ``'#rrggbb'`` (default :data:`DEFAULT_CLASS_COLOURS`).

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    The signal axes are named ``x`` and ``y`` with the scales and offsets of
    ``result.calibration`` (x and y pixel sizes, ``offset_nm``) and ``units = 'nm'`` (scale 1 and units ``px`` when uncalibrated).  Markers
    are ``hs.plot.markers.Points`` in those axis units, one set per class named after the
    class (``metadata.Markers.<class>``), defects one set per type (``defect_<type>``).
    ``metadata.AtomLens`` holds ``atoms`` (x, y in px, x_nm, y_nm, class, score, and
    ``origin`` for a corrected result), ``defects`` and ``summary`` (the JSON text of
    :func:`result_dict`).
    """
    import hyperspy.api as hs

    path = Path(path)
    if path.suffix.lower() != ".hspy":
        path = path.with_name(path.name + ".hspy")
    img = _image_of(result, micrograph)
    colours = dict(DEFAULT_CLASS_COLOURS, **(class_colours or {}))
    calib = result.calibration
    cal = calib.calibrated
    sx, sy = (float(calib.px_x_nm), calib.y_nm) if cal else (1.0, 1.0)
    ox, oy = calib.offset_nm if cal else (0.0, 0.0)

    sig = hs.signals.Signal2D(img)
    for ax, name, scale, offset in zip(sig.axes_manager.signal_axes, ("x", "y"), (sx, sy), (ox, oy)):
        ax.name, ax.scale, ax.offset, ax.units = name, scale, offset, "nm" if cal else "px"
    source = getattr(micrograph, "path", None)
    sig.metadata.General.title = Path(source).stem if source else "AtomLens result"
    mode = getattr(micrograph, "mode", None)
    if mode:
        sig.metadata.set_item("AtomLens.mode", str(mode))

    atoms = result.atoms
    names = np.array(atoms.names(), dtype=str)
    def axis_xy(x, y):  # (n, 2) positions in the axes' units: nm, or px when uncalibrated
        return np.stack(calib.to_nm(x, y) if cal else (np.asarray(x, float), np.asarray(y, float)), axis=1)

    ax_pos = axis_xy(atoms.x, atoms.y) if len(atoms) else np.zeros((0, 2))
    for cname in atoms.class_names[1:]:
        sel = names == cname
        if not sel.any():
            continue
        m = hs.plot.markers.Points(offsets=ax_pos[sel], sizes=MARKER_SIZE_PT,
                                   color=colours.get(cname, "#ffffff"), units="points")
        m.name = _key(cname)
        sig.add_marker(m, permanent=True, plot_marker=False)
    meta = {"x": atoms.x, "y": atoms.y, "class": names, "score": atoms.score,
            "class_names": np.array(atoms.class_names, dtype=str)}
    if cal:
        meta["x_nm"], meta["y_nm"] = calib.to_nm(atoms.x, atoms.y)
    corr = corrections_of(result)
    if corr is not None:
        meta["origin"] = np.array([str(o) for o in corr["origin"]], dtype=str)
    sig.metadata.set_item("AtomLens.atoms", meta)
    if result.defects is not None:
        d = result.defects
        dnames = np.array(d.names(), dtype=str)
        dpos = axis_xy(d.x, d.y) if len(d) else np.zeros((0, 2))
        for tname in sorted(set(dnames.tolist())):
            m = hs.plot.markers.Points(offsets=dpos[dnames == tname], sizes=2 * MARKER_SIZE_PT,
                                       facecolors="none", edgecolors=DEFECT_MARKER_COLOUR, units="points")
            m.name = "defect_" + _key(tname)
            sig.add_marker(m, permanent=True, plot_marker=False)
        dmeta = {"x": d.x, "y": d.y, "type": dnames, "score": d.score}
        if corr is not None:
            dmeta["origin"] = np.array([str(o) for o in corr["defect_origin"]], dtype=str)
        sig.metadata.set_item("AtomLens.defects", dmeta)
    sig.metadata.set_item("AtomLens.summary", result_json(result, indent=None))
    sig.metadata.set_item("AtomLens.px_size_nm", result.px_size_nm if cal else -1.0)

    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: sig.save(tmp, overwrite=True), suffix=".tmp.hspy")
    return path
