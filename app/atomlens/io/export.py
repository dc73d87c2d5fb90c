"""Write analysis results for other tools: the atom table (CSV, JSON) and a HyperSpy file.

:func:`export_csv` and :func:`export_json` are the code path of ``atomlens detect``
(:meth:`AtomList.to_csv`, :meth:`AnalysisResult.to_dict`), so the GUI's export and the CLI
write identical files.  :func:`to_hspy` writes the image as a calibrated HyperSpy
``Signal2D`` with the atoms as permanent point markers (one marker set per class, in the
class colour, positions in calibrated units) and the full atom table in
``metadata.AtomLens``.  Every file is written through a temporary file and a rename.

Corrections
-----------
When the user has corrected the atoms in Annotate mode, :func:`corrected_result` turns the
analysis result and the :class:`~atomlens.analysis.annotations.Annotations` into the result the
user sees: the corrected atoms and defects, each with an *origin* (:data:`ORIGINS`).  The three
exports write such a result with an ``origin`` column after the ``x,y,class,score,x_nm,y_nm``
columns of ``atomlens detect`` (CSV), an ``origin`` list and a ``corrections`` summary (JSON),
and ``origin`` in ``metadata.AtomLens.atoms`` (HyperSpy).  A result without corrections is
written exactly as before (byte for byte for CSV and JSON), so the CLI's output is unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text, atomic_write_with

__all__ = ["DEFAULT_CLASS_COLOURS", "DEFECT_MARKER_COLOUR", "ORIGINS", "annotation_defects", "atom_origins",
           "corrected_result", "corrections_of", "export_csv", "export_json", "result_dict", "to_hspy"]

#: Colours of the standard classes (as in the bundled model cards).
DEFAULT_CLASS_COLOURS = {"atom": "#50c8ff", "dopant": "#ff5050", "vacancy": "#ffdc00"}
#: Colour of defect markers in the HyperSpy file.
DEFECT_MARKER_COLOUR = "#ff00ff"
#: Marker size (matplotlib points) of the atom markers.
MARKER_SIZE_PT = 8
#: Where a corrected atom (or defect) comes from: found by the network and left as it was;
#: found by the network and given another class (type) by the user; found by the network and
#: dragged by the user (its class may have changed too); placed by the user.
ORIGINS = ("predicted", "relabelled", "moved", "added")
#: Distance (px) within which an annotated atom still sits "at" a predicted one: the
#: annotations copy the predicted positions exactly, so this only absorbs float round-off.
SAME_PLACE_PX = 1e-3
#: An atom the user dragged is matched to the predicted atom it came from when it lies within
#: this fraction of the predicted atoms' median nearest-neighbour distance.
MOVE_FRACTION = 0.5


# ---------------------------------------------------------------------- corrections
def _match(pred_xy, pred_names, xy, names, movable, move_tol_px):
    """Origins of the points `xy` (`names`) against the predicted points `pred_xy`.

    A point at a predicted point's place (within :data:`SAME_PLACE_PX`) is "predicted" (same
    name) or "relabelled"; a `movable` point elsewhere is "moved" when an unclaimed predicted
    point lies within `move_tol_px` (nearest pairs first, each predicted point used once),
    else "added".  Points not `movable` (the annotations' untouched atoms) are "predicted".
    `move_tol_px` may be a callable giving it (only called when some point moved).
    Returns (origin (n,) object array, number of predicted points without a counterpart).
    """
    n = len(xy)
    origin = np.full(n, "predicted", dtype=object)
    movable = np.asarray(movable, bool)
    if not len(pred_xy):
        origin[movable] = "added"
        return origin, 0
    from scipy.spatial import cKDTree

    names, pred_names = np.asarray(names, dtype=str).reshape(-1), np.asarray(pred_names, dtype=str).reshape(-1)
    tree = cKDTree(pred_xy)
    claimed = np.zeros(len(pred_xy), bool)
    loose = np.zeros(n, bool)
    if n:
        d, j = tree.query(xy, k=1)
        same = d <= SAME_PLACE_PX
        claimed[j[same]] = True
        origin[movable & same & (names != pred_names[j])] = "relabelled"
        loose = movable & ~same
    idx = np.flatnonzero(loose)
    tol = move_tol_px() if callable(move_tol_px) and len(idx) else move_tol_px
    if len(idx) and tol > 0:
        pairs = []
        for i, near in zip(idx, tree.query_ball_point(xy[idx], tol)):
            pairs += [(float(np.hypot(*(xy[i] - pred_xy[k]))), int(i), int(k)) for k in near if not claimed[k]]
        done = set()
        for _d, i, k in sorted(pairs):
            if i not in done and not claimed[k]:
                origin[i] = "moved"
                claimed[k] = True
                done.add(i)
        idx = np.array([i for i in idx if i not in done], np.int64)
    origin[idx] = "added"
    return origin, int((~claimed).sum())


def atom_origins(ann, predicted, *, move_tol_px: float | None = None,
                 median_nn_px: float | None = None) -> tuple[np.ndarray, int]:
    """The origin (:data:`ORIGINS`) of each atom of the annotations `ann`.

    The annotations record only whether an atom is the network's untouched (``source ==
    "predicted"``) or the user's (placed, dragged or re-classed); which of these it is comes
    from matching the user's atoms to the `predicted` atoms (an AtomList, the analysis
    result's): at a predicted atom's place with another class, "relabelled"; within
    `move_tol_px` of a predicted atom left without a counterpart, "moved"; else "added".
    A predicted atom deleted and an atom added close to it read as "moved".

    Parameters
    ----------
    ann : Annotations
    predicted : AtomList
    move_tol_px : float, optional
        Default :data:`MOVE_FRACTION` x the predicted atoms' median nearest-neighbour
        distance (`median_nn_px` when given, else computed; 5 px with fewer than two atoms).

    Returns
    -------
    origin : (n,) object array of str
    deleted : int
        Predicted atoms that have no counterpart among the annotations (deleted by the user).
    """
    pred_xy = predicted.xy if len(predicted) else np.zeros((0, 2))

    def tolerance():
        med = median_nn_px
        if not med and len(predicted) >= 2:
            from ..analysis.lattice import median_nn_distance

            med = median_nn_distance(pred_xy)
        return MOVE_FRACTION * med if med and med > 0 else 5.0

    xy = np.column_stack([ann.x, ann.y]) if len(ann) else np.zeros((0, 2))
    names = np.asarray(ann.class_names, dtype=str)[ann.cls] if len(ann) else np.zeros(0, str)
    pred_names = np.asarray(predicted.class_names, dtype=str)[predicted.cls] if len(predicted) else []
    return _match(pred_xy, pred_names, xy, names, ann.source == "user",
                  tolerance if move_tol_px is None else float(move_tol_px))


def annotation_defects(ann, score=1.0):
    """The defects of the annotations `ann` as a DefectList (positions px, type names in the
    order of ``ann.defect_types``, then any others), with `score` (one value or one per defect)."""
    from ..analysis.cam import DefectList

    names = [d["type"] for d in ann.defects]
    xy = np.array([[d["x"], d["y"]] for d in ann.defects], np.float64).reshape(-1, 2)
    type_names = tuple(dict.fromkeys([t["name"] for t in ann.defect_types] + names))
    return DefectList(xy[:, 0], xy[:, 1], np.array(names, dtype=object) if names else np.zeros(0, np.int64),
                      score, type_names)


def _defects_of(ann, result):
    """(DefectList, origin, boxes, deleted) of the annotations' defects; scores are the
    result's for defects it found, 1.0 for the user's."""
    ad = ann.defects
    xy = np.array([[d["x"], d["y"]] for d in ad], np.float64).reshape(-1, 2)
    names = [d["type"] for d in ad]
    rd = result.defects
    pred_xy = rd.xy if rd is not None and len(rd) else np.zeros((0, 2))
    pred_names = rd.names() if rd is not None else []
    movable = np.array([d.get("w") is not None for d in ad], bool)  # a box is always the user's
    origin, deleted = _match(pred_xy, pred_names, xy, names, np.ones(len(ad), bool), 0.0)
    origin[movable & (origin == "predicted")] = "added"
    score = np.ones(len(ad))
    if len(pred_xy) and len(ad):
        from scipy.spatial import cKDTree

        dist, j = cKDTree(pred_xy).query(xy, k=1)
        keep = (dist <= SAME_PLACE_PX) & (origin != "added")
        score[keep] = rd.score[j[keep]]
    defects = annotation_defects(ann, score)
    boxes = [None if d.get("w") is None else (float(d["w"]), float(d["h"])) for d in ad]
    return defects, origin, boxes, deleted


def corrected_result(result, ann, *, move_tol_px: float | None = None):
    """The analysis `result` as the user corrected it in the annotations `ann`.

    Returns `result` itself when `ann` is None, belongs to another frame or image size, or
    holds exactly the result's atoms and defects (nothing corrected, or every edit undone):
    then every export is what it was without annotations.  Otherwise a copy whose ``atoms``
    and ``defects`` are the annotations' and whose ``info["corrections"]`` holds

    ``origin``
        (n,) object array: the origin of each atom (:func:`atom_origins`);
    ``defect_origin``, ``defect_box``
        Per defect: its origin, and ``(w, h)`` px of a box defect (None for a point);
    ``deleted``, ``deleted_defects``
        The result's atoms and defects the user deleted;
    ``edits``
        The annotations' edit count.

    Scores: an atom the user placed has score 1.0, as the annotations and the training export
    record it (the user vouches for it), so the column stays numeric for every reader; the
    ``origin`` column tells such atoms apart.  Relabelled and moved atoms keep the network's
    detection score.  The maps (``prob``, ``cam``) and notes are the result's.
    """
    if ann is None or result is None:
        return result
    if int(getattr(ann, "frame", 0)) != int(result.frame) or (
            ann.shape is not None and tuple(ann.shape) != tuple(result.shape)):
        return result
    a = result.atoms
    origin, deleted = atom_origins(ann, a, move_tol_px=move_tol_px, median_nn_px=result.info.get("median_nn_px"))
    defects, d_origin, boxes, d_deleted = _defects_of(ann, result)
    n_res_def = 0 if result.defects is None else len(result.defects)
    untouched = (len(ann) == len(a) and deleted == 0 and not (origin != "predicted").any()
                 and np.array_equal(ann.x, a.x) and np.array_equal(ann.y, a.y)
                 and np.array_equal(np.asarray(ann.class_names, dtype=str)[ann.cls],
                                    np.asarray(a.class_names, dtype=str)[a.cls])
                 and len(defects) == n_res_def and d_deleted == 0 and not (d_origin != "predicted").any())
    if untouched:
        return result
    info = dict(result.info)
    info["corrections"] = {"origin": origin, "defect_origin": d_origin, "defect_box": boxes,
                           "deleted": int(deleted), "deleted_defects": int(d_deleted), "edits": int(ann.edits)}
    return dataclasses.replace(result, atoms=ann.to_atom_list(), defects=defects, info=info)


def corrections_of(result) -> dict | None:
    """``result.info["corrections"]`` (see :func:`corrected_result`), or None."""
    c = result.info.get("corrections") if result is not None else None
    return c if isinstance(c, dict) else None


def _origin_counts(origin) -> dict:
    return {o: int(np.sum(np.asarray(origin, dtype=object) == o)) for o in ORIGINS}


def result_dict(result) -> dict:
    """:meth:`AnalysisResult.to_dict`, plus, for a corrected result, ``atoms.origin``,
    ``defects.origin`` / ``w`` / ``h`` and a ``corrections`` summary (origin counts and the
    number of atoms and defects deleted)."""
    d = result.to_dict()
    c = corrections_of(result)
    if c is None:
        return d
    d["atoms"]["origin"] = [str(o) for o in c["origin"]]
    if d.get("defects") is not None:
        d["defects"]["origin"] = [str(o) for o in c["defect_origin"]]
        d["defects"]["w"] = [None if b is None else b[0] for b in c["defect_box"]]
        d["defects"]["h"] = [None if b is None else b[1] for b in c["defect_box"]]
    d["corrections"] = {"source": "annotations", "edits": c["edits"], "atoms": _origin_counts(c["origin"]),
                        "deleted_atoms": c["deleted"], "defects": _origin_counts(c["defect_origin"]),
                        "deleted_defects": c["deleted_defects"]}
    return d


def _csv_with_origin(result, origin) -> str:
    """The atom table of ``atomlens detect`` (same columns and number formats) with an
    ``origin`` column appended."""
    from ..analysis.atoms import table_to_csv_text

    a = result.atoms
    base = table_to_csv_text(a.x, a.y, a.names(), a.score, result.px_size_nm, result.offset_nm, "class")
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

    A corrected result (:func:`corrected_result`) gets a seventh column ``origin``
    (:data:`ORIGINS`); atoms the user placed have score 1.0 (see :func:`corrected_result`)."""
    path = Path(path)
    c = corrections_of(result)
    if c is None:
        result.atoms.to_csv(path, px_size_nm=result.px_size_nm, offset_nm=result.offset_nm)
    else:
        atomic_write_text(path, _csv_with_origin(result, c["origin"]))
    return path


def export_json(result, path) -> Path:
    """Write the JSON summary of `result` (settings, calibration, counts, atoms, defects) to
    `path`, atomically; exactly what ``atomlens detect --json`` writes as ``<stem>.json``
    (for a corrected result, :func:`result_dict`: with the atoms' origins and a
    ``corrections`` summary)."""
    from ..analysis.pipeline import _json_default

    path = Path(path)
    atomic_write_text(path, json.dumps(result_dict(result), indent=1, default=_json_default))
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
    ``metadata.AtomLens`` holds ``atoms`` (x, y in px, x_nm, y_nm, class, score, and
    ``origin`` for a corrected result), ``defects`` and ``summary`` (the JSON text of
    :func:`result_dict`).
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
    corr = corrections_of(result)
    if corr is not None:
        meta["origin"] = np.array([str(o) for o in corr["origin"]], dtype=str)
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
        dmeta = {"x": d.x, "y": d.y, "type": dnames, "score": d.score}
        if corr is not None:
            dmeta["origin"] = np.array([str(o) for o in corr["defect_origin"]], dtype=str)
        sig.metadata.set_item("AtomLens.defects", dmeta)
    sig.metadata.set_item("AtomLens.summary", json.dumps(result_dict(result), default=_json_default))
    sig.metadata.set_item("AtomLens.px_size_nm", result.px_size_nm if cal else -1.0)

    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: sig.save(tmp, overwrite=True), suffix=".tmp.hspy")
    return path
