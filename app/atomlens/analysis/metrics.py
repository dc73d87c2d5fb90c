"""Detection metrics: one-to-one matching of predicted to true points, precision/recall/F1."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["match_points", "detection_scores"]


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
    n, m = len(P), len(T)
    g = coo_matrix((np.ones(len(pi)), (pi, n + ti)), shape=(n + m, n + m))
    _, comp = connected_components(g, directed=False)
    gid = comp[pi]
    order = np.argsort(gid, kind="stable")
    pi, ti, d, gid = pi[order], ti[order], d[order], gid[order]
    starts = np.nonzero(np.r_[True, gid[1:] != gid[:-1]])[0]
    ends = np.r_[starts[1:], len(gid)]
    sizes = ends - starts
    # groups of one candidate pair match directly
    one = starts[sizes == 1]
    out_p, out_t, out_d = [pi[one]], [ti[one]], [d[one]]
    big = max_dist * 1e6 + 1.0
    for a, b in zip(starts[sizes > 1], ends[sizes > 1]):
        gp, gt, gd = pi[a:b], ti[a:b], d[a:b]
        up, rp = np.unique(gp, return_inverse=True)
        ut, rt = np.unique(gt, return_inverse=True)
        cost = np.full((len(up), len(ut)), big)
        cost[rp, rt] = gd
        r, c = linear_sum_assignment(cost)
        good = cost[r, c] <= max_dist
        out_p.append(up[r[good]])
        out_t.append(ut[c[good]])
        out_d.append(cost[r[good], c[good]])
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
