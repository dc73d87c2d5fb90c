"""Write analysis results for other tools: the atom table (CSV, JSON) and a HyperSpy file.

:func:`export_csv` and :func:`export_json` are the code path of ``atomlens detect``
(:meth:`AtomList.to_csv`, :meth:`AnalysisResult.to_dict`), so the GUI's export and the CLI
write identical files.  :func:`to_hspy` writes the image as a calibrated HyperSpy
``Signal2D`` with the atoms as permanent point markers (one marker set per class, in the
class colour, positions in calibrated units) and the full atom table in
``metadata.AtomLens``.  Every file is written through a temporary file and a rename.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text, atomic_write_with

__all__ = ["DEFAULT_CLASS_COLOURS", "DEFECT_MARKER_COLOUR", "export_csv", "export_json", "to_hspy"]

#: Colours of the standard classes (as in the bundled model cards).
DEFAULT_CLASS_COLOURS = {"atom": "#50c8ff", "dopant": "#ff5050", "vacancy": "#ffdc00"}
#: Colour of defect markers in the HyperSpy file.
DEFECT_MARKER_COLOUR = "#ff00ff"
#: Marker size (matplotlib points) of the atom markers.
MARKER_SIZE_PT = 8


def export_csv(result, path) -> Path:
    """Write the atom table ``x,y,class,score,x_nm,y_nm`` of `result` (an
    :class:`~atomlens.analysis.pipeline.AnalysisResult`) to `path`, atomically; exactly what
    ``atomlens detect`` writes as ``<stem>.atoms.csv``."""
    path = Path(path)
    result.atoms.to_csv(path, px_size_nm=result.px_size_nm, offset_nm=result.offset_nm)
    return path


def export_json(result, path) -> Path:
    """Write the JSON summary of `result` (settings, calibration, counts, atoms, defects) to
    `path`, atomically; exactly what ``atomlens detect --json`` writes as ``<stem>.json``."""
    from ..analysis.pipeline import _json_default

    path = Path(path)
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, default=_json_default))
    return path


def _key(name: str) -> str:
    """A metadata/marker key for a class name (letters, digits and '_' only)."""
    k = re.sub(r"\W+", "_", str(name)).strip("_") or "unnamed"
    return k if not k[0].isdigit() else "_" + k


def _image_of(result, micrograph) -> tuple[np.ndarray, float | None]:
    """The analysed frame and its y pixel size (nm)."""
    if isinstance(micrograph, np.ndarray):
        img, px_y = micrograph, None
    elif micrograph is not None and hasattr(micrograph, "frame"):
        img = micrograph.frame(result.frame if micrograph.is_stack else 0)
        px_y = micrograph.px_size_y_nm if micrograph.px_size_nm == result.px_size_nm else None
    else:
        raise TypeError("to_hspy needs the Micrograph (or the (H, W) image) the result belongs to")
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    if tuple(img.shape) != tuple(result.shape):
        raise ValueError(f"the image is {img.shape[1]} x {img.shape[0]} px but the result was found on "
                         f"{result.shape[1]} x {result.shape[0]} px")
    return img, px_y


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
    The signal axes are named ``x`` and ``y`` with ``scale = px_size_nm``, ``offset =
    offset_nm`` and ``units = 'nm'`` (scale 1 and units ``px`` when uncalibrated).  Markers
    are ``hs.plot.markers.Points`` in those axis units, one set per class named after the
    class (``metadata.Markers.<class>``), defects one set per type (``defect_<type>``).
    ``metadata.AtomLens`` holds ``atoms`` (x, y in px, x_nm, y_nm, class, score), ``defects``
    and ``summary`` (the JSON text of :meth:`AnalysisResult.to_dict`).
    """
    import hyperspy.api as hs

    from ..analysis.pipeline import _json_default

    path = Path(path)
    if path.suffix.lower() != ".hspy":
        path = path.with_name(path.name + ".hspy")
    img, px_y = _image_of(result, micrograph)
    colours = dict(DEFAULT_CLASS_COLOURS, **(class_colours or {}))
    cal = result.px_size_nm is not None
    sx = float(result.px_size_nm) if cal else 1.0
    sy = float(px_y) if (cal and px_y) else sx
    ox, oy = (float(v) for v in result.offset_nm) if cal else (0.0, 0.0)

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
    ax_pos = np.stack([ox + atoms.x * sx, oy + atoms.y * sy], axis=1) if len(atoms) else np.zeros((0, 2))
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
        meta["x_nm"], meta["y_nm"] = ox + atoms.x * sx, oy + atoms.y * sy
    sig.metadata.set_item("AtomLens.atoms", meta)
    if result.defects is not None:
        d = result.defects
        dnames = np.array(d.names(), dtype=str)
        dpos = np.stack([ox + d.x * sx, oy + d.y * sy], axis=1) if len(d) else np.zeros((0, 2))
        for tname in sorted(set(dnames.tolist())):
            m = hs.plot.markers.Points(offsets=dpos[dnames == tname], sizes=2 * MARKER_SIZE_PT,
                                       facecolors="none", edgecolors=DEFECT_MARKER_COLOUR, units="points")
            m.name = "defect_" + _key(tname)
            sig.add_marker(m, permanent=True, plot_marker=False)
        sig.metadata.set_item("AtomLens.defects", {"x": d.x, "y": d.y, "type": dnames, "score": d.score})
    sig.metadata.set_item("AtomLens.summary", json.dumps(result.to_dict(), default=_json_default))
    sig.metadata.set_item("AtomLens.px_size_nm", result.px_size_nm if cal else -1.0)

    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: sig.save(tmp, overwrite=True), suffix=".tmp.hspy")
    return path
