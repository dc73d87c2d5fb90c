"""The atoms and defects the user sees after correcting them in Annotate mode.

:func:`corrected_result` turns an analysis result and the
:class:`~atomlens.analysis.annotations.Annotations` into the result the user sees: the
corrected atoms and defects, each with an *origin* (:data:`ORIGINS`): found by the network and
left as it was, relabelled, moved, or added by the user.  The writers in
:mod:`atomlens.workflows.export` write such a result with its origins; pure numpy (and scipy).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ORIGINS", "annotation_defects", "atom_origins", "corrected_result", "corrections_of", "origin_counts"]

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
            from .lattice import median_nn_distance

            med = median_nn_distance(pred_xy)
        return MOVE_FRACTION * med if med and med > 0 else 5.0

    xy = np.column_stack([ann.x, ann.y]) if len(ann) else np.zeros((0, 2))
    names = np.asarray(ann.class_names, dtype=str)[ann.cls] if len(ann) else np.zeros(0, str)
    pred_names = np.asarray(predicted.class_names, dtype=str)[predicted.cls] if len(predicted) else []
    return _match(pred_xy, pred_names, xy, names, ann.source == "user",
                  tolerance if move_tol_px is None else float(move_tol_px))


def annotation_defects(ann, score=1.0):
    """The defects of the annotations `ann` as a DefectList (positions px, type names in the
    order of ``ann.defect_types``, then any others), with `score` (one value or one per defect).

    Parameters
    ----------
    ann : Annotations
        Or any object with ``defects`` (a list of dicts with ``type``, ``x`` and ``y`` in px;
        a box's ``w``, ``h`` are not read here) and ``defect_types`` (dicts with ``name``).
    score : float or array_like (n,), optional
        Score of every defect, 0..1.

    Returns
    -------
    DefectList
        One defect per entry of ``ann.defects``, in order; its ``type_names`` are the
        declared types, then the undeclared names used, in order of appearance.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> ann = SimpleNamespace(defects=[{"type": "adatom", "x": 1.0, "y": 2.0}],
    ...                       defect_types=[{"name": "hole"}, {"name": "vacancy"}])
    >>> d = annotation_defects(ann, 0.5)
    >>> d.names(), d.type_names, d.score.tolist()
    (['adatom'], ('hole', 'vacancy', 'adatom'), [0.5])
    """
    from .cam import DefectList

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

    Parameters
    ----------
    result : AnalysisResult or None
        The network's result (None is returned as it is).
    ann : Annotations or None
        The user's corrections of that image and frame.
    move_tol_px : float, px, optional
        How far a dragged atom may lie from the predicted atom it came from (see
        :func:`atom_origins`; default from the result's ``info["median_nn_px"]``).

    Returns
    -------
    AnalysisResult or None
        `result` itself, or a shallow copy (``dataclasses.replace``: the maps are shared)
        with the annotations' atoms (:meth:`Annotations.to_atom_list`), their defects
        (:func:`annotation_defects`, a defect the result found keeping its score) and the
        ``corrections`` entry in a copy of ``info``.
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
    """``result.info["corrections"]`` (see :func:`corrected_result`), or None.

    Parameters
    ----------
    result : AnalysisResult or None
        Any result, corrected or not.

    Returns
    -------
    dict or None
        The corrections (``origin``, ``defect_origin``, ``defect_box``, ``deleted``,
        ``deleted_defects``, ``edits``); None for None, an uncorrected result, or an entry
        that is not a dict.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> corrections_of(SimpleNamespace(info={})), corrections_of(None)
    (None, None)
    """
    c = result.info.get("corrections") if result is not None else None
    return c if isinstance(c, dict) else None


def origin_counts(origin) -> dict:
    """Number of atoms (or defects) of each origin: ``{origin: n}`` for every one of :data:`ORIGINS`.

    Parameters
    ----------
    origin : array_like of str, (n,)
        Origins, as in ``corrections["origin"]``; values not in :data:`ORIGINS` are not counted.

    Returns
    -------
    dict of str to int
        Every origin of :data:`ORIGINS`, in that order, with its count (0 included).

    Examples
    --------
    >>> origin_counts(["predicted", "added", "added"])
    {'predicted': 1, 'relabelled': 0, 'moved': 0, 'added': 2}
    """
    return {o: int(np.sum(np.asarray(origin, dtype=object) == o)) for o in ORIGINS}
