"""Detection metrics: one-to-one matching of predicted to true points, precision/recall/F1.

Two matching rules:

* :func:`match_points` / :func:`detection_scores`: a predicted and a true point match when they
  lie within a distance of each other (one to one);
* :func:`match_boxes` / :func:`box_iou_scores`: they match when equal square boxes centred on
  them overlap with an intersection over union of at least a threshold (one to one), the rule
  of the published Pt single-atom data set (HPAI-BSC, J. Am. Chem. Soc. 2022; 21x21 px boxes,
  IoU >= 0.5).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["match_points", "detection_scores", "box_iou", "match_boxes", "box_iou_scores", "prf_counts"]


def match_points(pred_xy, true_xy, max_dist: float):
    """One-to-one matching of predicted to true points within `max_dist`.

    Candidate pairs (distance <= `max_dist`) come from a k-d tree; each connected group of
    candidates is solved on its own with ``linear_sum_assignment`` (the largest number of
    matches, then the smallest total distance), so 10^4 points take milliseconds.

    Parameters
    ----------
    pred_xy : (n, 2) array
    true_xy : (m, 2) array
        Positions, in any one unit (px, Å, ...).
    max_dist : float
        Largest distance of a match, in the same unit.

    Returns
    -------
    ip, it : (k,) int arrays
        Indices of matched predictions and their true points (sorted by `ip`).
    dist : (k,) float64
        Their distances.

    Examples
    --------
    >>> ip, it, dist = match_points([[0, 0], [10, 0], [50, 50]], [[1, 0], [10, 2]], max_dist=3)
    >>> ip.tolist(), it.tolist(), dist.tolist()
    ([0, 1], [0, 1], [1.0, 2.0])
    """
    P = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    T = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(P) == 0 or len(T) == 0 or not max_dist > 0:
        return empty
    sdm = cKDTree(P).sparse_distance_matrix(cKDTree(T), max_dist, output_type="coo_matrix")
    pi, ti, d = sdm.row.astype(np.int64), sdm.col.astype(np.int64), sdm.data
    if len(pi) == 0:
        return empty
    return _assign(pi, ti, d, len(P), len(T))


def _assign(pi, ti, cost, n: int, m: int):
    """Optimal one-to-one assignment over candidate pairs.

    Each connected group of candidate pairs (prediction `pi[k]`, true point `ti[k]`, `cost[k]`)
    is solved on its own with ``linear_sum_assignment``: the largest number of matches first,
    then the smallest total cost.

    Returns
    -------
    ip, it : (k,) int64
        Matched predictions and their true points (sorted by `ip`).
    cost : (k,) float64
        Their costs.
    """
    pi, ti = np.asarray(pi, np.int64), np.asarray(ti, np.int64)
    cost = np.asarray(cost, np.float64)
    if len(pi) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    g = coo_matrix((np.ones(len(pi)), (pi, n + ti)), shape=(n + m, n + m))
    _, comp = connected_components(g, directed=False)
    gid = comp[pi]
    order = np.argsort(gid, kind="stable")
    pi, ti, d, gid = pi[order], ti[order], cost[order], gid[order]
    starts = np.nonzero(np.r_[True, gid[1:] != gid[:-1]])[0]
    ends = np.r_[starts[1:], len(gid)]
    sizes = ends - starts
    # groups of one candidate pair match directly
    one = starts[sizes == 1]
    out_p, out_t, out_d = [pi[one]], [ti[one]], [d[one]]
    for a, b in zip(starts[sizes > 1], ends[sizes > 1]):
        gp, gt, gd = pi[a:b], ti[a:b], d[a:b]
        up, rp = np.unique(gp, return_inverse=True)
        ut, rt = np.unique(gt, return_inverse=True)
        # a non-pair costs more than all pairs of the group together: one more match always wins
        big = float(np.abs(gd).sum()) + 1.0
        cost_m = np.full((len(up), len(ut)), big)
        real = np.zeros((len(up), len(ut)), bool)
        cost_m[rp, rt] = gd
        real[rp, rt] = True
        r, c = linear_sum_assignment(cost_m)
        good = real[r, c]
        out_p.append(up[r[good]])
        out_t.append(ut[c[good]])
        out_d.append(cost_m[r[good], c[good]])
    ip, it, dist = np.concatenate(out_p), np.concatenate(out_t), np.concatenate(out_d)
    o = np.argsort(ip, kind="stable")
    return ip[o], it[o], dist[o]


def _prf(tp: int, n_pred: int, n_true: int):
    """Precision, recall, F1; empty sets count as perfectly matched (1) by each other only."""
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    if n_pred == 0 and n_true == 0:
        f1 = 1.0
    elif n_pred == 0 or n_true == 0:
        f1 = 0.0
    else:
        f1 = 2.0 * tp / (n_pred + n_true)
    return float(precision), float(recall), float(f1)


def detection_scores(pred_xy, pred_cls, true_xy, true_cls, max_dist: float, class_ids=None) -> dict:
    """Detection quality of predicted points against true points.

    Parameters
    ----------
    pred_xy, true_xy : (n, 2), (m, 2) arrays
        Positions in one unit (px or Å).
    pred_cls, true_cls : (n,), (m,) int arrays
        Class of each point (or None: all one class).
    max_dist : float
        Largest distance of a match (same unit as the positions).
    class_ids : iterable of int, optional
        Classes to score separately; default every class in either set.

    Returns
    -------
    dict
        ``n_pred, n_true, tp, fp, fn, precision, recall, f1`` for class-agnostic one-to-one
        matching; ``rmse`` over matched pairs (same unit as the inputs; NaN when nothing is
        matched); ``class_accuracy`` (fraction of matched pairs whose classes agree; NaN when
        nothing is matched); ``per_class[c] = {precision, recall, f1, n_true, n_pred, tp}``,
        where a prediction of class c is a true positive only when it is matched to a true
        point of class c.  Precision with no predictions and recall with no true points are
        1 when the other set is empty too and 0 otherwise; F1 is 1 when both sets are empty
        and 0 when only one is.

    Examples
    --------
    >>> s = detection_scores([[0, 0], [10, 0], [50, 50]], [1, 2, 1], [[1, 0], [10, 2]], [1, 1], max_dist=3)
    >>> s["tp"], s["fp"], s["fn"], s["f1"], round(s["rmse"], 3), s["class_accuracy"]
    (2, 1, 0, 0.8, 1.581, 0.5)
    >>> s["per_class"][1]
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'n_true': 2, 'n_pred': 2, 'tp': 1}
    """
    P = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    T = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    pc = np.zeros(len(P), np.int64) if pred_cls is None else np.asarray(pred_cls, np.int64).reshape(-1)
    tc = np.zeros(len(T), np.int64) if true_cls is None else np.asarray(true_cls, np.int64).reshape(-1)
    ip, it, dist = match_points(P, T, max_dist)
    tp = len(ip)
    prec, rec, f1 = _prf(tp, len(P), len(T))
    same = pc[ip] == tc[it]
    out = {"n_pred": len(P), "n_true": len(T), "tp": tp, "fp": len(P) - tp, "fn": len(T) - tp,
           "precision": prec, "recall": rec, "f1": f1,
           "rmse": float(np.sqrt(np.mean(dist ** 2))) if tp else float("nan"),
           "class_accuracy": float(same.mean()) if tp else float("nan")}
    if class_ids is None:
        class_ids = sorted(set(pc.tolist()) | set(tc.tolist()))
    per = {}
    for c in class_ids:
        c = int(c)
        tpc = int(np.sum(same & (pc[ip] == c)))
        npc, ntc = int(np.sum(pc == c)), int(np.sum(tc == c))
        p_, r_, f_ = _prf(tpc, npc, ntc)
        per[c] = {"precision": p_, "recall": r_, "f1": f_, "n_true": ntc, "n_pred": npc, "tp": tpc}
    out["per_class"] = per
    return out


def box_iou(dx, dy, box_px: float = 21.0):
    """Intersection over union of two equal axis-aligned square boxes whose centres are `dx`,
    `dy` apart.

    Parameters
    ----------
    dx, dy : float or array, px
        Offsets of the centres (any sign).
    box_px : float
        Side of each box (px); a box centred on ``x`` covers ``x - box_px/2 .. x + box_px/2``.

    Returns
    -------
    float or array
        IoU in 0..1 (0 when the boxes do not overlap).  Two 21 px boxes 7 px apart in x give
        ``14 * 21 / (2 * 441 - 294) = 294 / 588 = 0.5``.

    Examples
    --------
    >>> float(box_iou(7, 0))
    0.5
    """
    side = float(box_px)
    ix = np.clip(side - np.abs(np.asarray(dx, np.float64)), 0.0, None)
    iy = np.clip(side - np.abs(np.asarray(dy, np.float64)), 0.0, None)
    inter = ix * iy
    return inter / (2.0 * side * side - inter)


def match_boxes(pred_xy, true_xy, box_px: float = 21.0, min_iou: float = 0.5):
    """One-to-one matching of predicted to true points by the overlap of boxes centred on them.

    A pair is a candidate when the `box_px` x `box_px` boxes centred on the two points overlap
    with an intersection over union of at least `min_iou` (the boundary counts as a match; a
    relative tolerance of 1e-9 absorbs rounding).  Among the candidates an optimal assignment
    (``linear_sum_assignment``) gives the largest number of matches, then the largest total IoU.

    Parameters
    ----------
    pred_xy, true_xy : (n, 2), (m, 2) arrays, px
        Positions (x, y).
    box_px : float
        Side of the boxes (px): 21 in the published rule of the Pt single-atom data.
    min_iou : float
        Smallest IoU of a match, in (0, 1].

    Returns
    -------
    ip, it : (k,) int64 arrays
        Indices of matched predictions and their true points (sorted by `ip`).
    iou : (k,) float64
        Their IoU.

    Raises
    ------
    ValueError
        When `min_iou` is not in (0, 1] or `box_px` is not positive.

    Examples
    --------
    >>> ip, it, iou = match_boxes([[0, 0], [30, 0]], [[5, 0], [30, 12]])  # the second pair: IoU 0.27
    >>> ip.tolist(), it.tolist(), iou.round(3).tolist()
    ([0], [0], [0.615])
    """
    if not 0.0 < float(min_iou) <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    if not float(box_px) > 0:
        raise ValueError(f"box_px must be > 0, got {box_px}")
    P = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    T = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(P) == 0 or len(T) == 0:
        return empty
    # boxes that overlap at all have centres closer than box_px in both x and y (Chebyshev)
    pairs = cKDTree(P).query_ball_tree(cKDTree(T), float(box_px), p=np.inf)
    pi = np.fromiter((i for i, js in enumerate(pairs) for _ in js), np.int64)
    ti = np.fromiter((j for js in pairs for j in js), np.int64)
    if len(pi) == 0:
        return empty
    iou = box_iou(P[pi, 0] - T[ti, 0], P[pi, 1] - T[ti, 1], box_px)
    ok = iou >= float(min_iou) * (1.0 - 1e-9)
    pi, ti, iou = pi[ok], ti[ok], iou[ok]
    if len(pi) == 0:
        return empty
    ip, it, cost = _assign(pi, ti, 1.0 - iou, len(P), len(T))
    return ip, it, 1.0 - cost


def prf_counts(tp: int, n_pred: int, n_true: int) -> dict:
    """``tp, fp, fn, n_pred, n_true, precision, recall, f1`` from counts (pooling several
    images: add their counts, then call this).  Empty sets as in :func:`detection_scores`.

    Parameters
    ----------
    tp : int
        Matched predictions (true positives).
    n_pred, n_true : int
        Number of predicted and of true points.

    Returns
    -------
    dict
        ``n_pred, n_true, tp, fp, fn`` (ints) and ``precision, recall, f1`` (floats, 0..1).

    Examples
    --------
    >>> prf_counts(8, 10, 9)["f1"]
    0.8421052631578947
    """
    prec, rec, f1 = _prf(int(tp), int(n_pred), int(n_true))
    return {"n_pred": int(n_pred), "n_true": int(n_true), "tp": int(tp), "fp": int(n_pred) - int(tp),
            "fn": int(n_true) - int(tp), "precision": prec, "recall": rec, "f1": f1}


def box_iou_scores(pred_xy, true_xy, box_px: float = 21.0, min_iou: float = 0.5) -> dict:
    """Detection quality under the box-IoU rule (:func:`match_boxes`).

    Parameters
    ----------
    pred_xy, true_xy : (n, 2), (m, 2) arrays, px
        Positions (x, y).
    box_px, min_iou : as :func:`match_boxes` (defaults: the published rule, 21 px, 0.5).

    Returns
    -------
    dict
        ``n_pred, n_true, tp, fp, fn, precision, recall, f1`` (as :func:`prf_counts`), and
        ``matches`` ((k, 2) int array of (prediction, true point) index pairs) and
        ``mean_iou`` over them (NaN when nothing is matched).
    """
    ip, it, iou = match_boxes(pred_xy, true_xy, box_px, min_iou)
    n = len(np.asarray(pred_xy, np.float64).reshape(-1, 2))
    m = len(np.asarray(true_xy, np.float64).reshape(-1, 2))
    out = prf_counts(len(ip), n, m)
    out["matches"] = np.stack([ip, it], 1)
    out["mean_iou"] = float(iou.mean()) if len(iou) else float("nan")
    return out
