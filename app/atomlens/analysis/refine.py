"""Sub-pixel refinement of atom positions on the micrograph itself.

:func:`refine_gaussian` fits ``B + A * exp(-((x-x0)^2 + (y-y0)^2) / (2 s^2))`` (an isotropic
2D Gaussian on a constant background) in a square window around every atom at once: a
batched Levenberg-Marquardt solve in numpy, one 5 x 5 system per atom per iteration, no
Python loop per atom.
"""

from __future__ import annotations

import numpy as np

__all__ = ["refine_gaussian"]


def _patches(image: np.ndarray, xi: np.ndarray, yi: np.ndarray, r: int):
    """Pixel values (n, P), offsets dx, dy (P,) and validity (n, P) of (2r+1)^2 windows."""
    H, W = image.shape
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    ox, oy = ox.ravel(), oy.ravel()
    cols = xi[:, None] + ox[None]
    rows = yi[:, None] + oy[None]
    valid = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    vals = image[np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1)].astype(np.float64)
    return vals, ox.astype(np.float64), oy.astype(np.float64), valid


def refine_gaussian(image, x, y, window_px, *, n_iter: int = 30, dark: bool = False,
                    labels=None, ids=None):
    """Fit a 2D Gaussian plus a constant background around each atom.

    Parameters
    ----------
    image : (H, W) array
        The micrograph (bright atoms, e.g. HAADF; see `dark`).
    x, y : (n,) arrays, px
        Starting positions (column, row; pixel centres at integers).
    window_px : float
        Side length (px) of the square fitting window centred on the rounded start position,
        e.g. 0.6 x the nearest-neighbour distance.  At least 3 px are used.
    n_iter : int
        Levenberg-Marquardt iterations (all atoms together).
    dark : bool
        True for dark atoms on a bright background (BF/ABF): the image is negated.
    labels : (H, W) int array, optional
        Region labels (0 = background).  With `ids` ((n,) int, each atom's own label), pixels
        of other atoms' regions are left out of each fit.
    ids : (n,) int array, optional
        Each atom's label in `labels`; needed with `labels`, unused without.

    Returns
    -------
    x, y : (n,) float64, px
        Refined positions; the input position where the fit failed.
    ok : (n,) bool
        False where the fit failed (no positive peak, non-finite or implausible width, or a
        move of more than ``window_px / 2`` from the start); those atoms keep their input
        position.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:32, 0:32]
    >>> image = 0.1 + np.exp(-((xx - 10.3) ** 2 + (yy - 15.6) ** 2) / (2 * 1.5**2))
    >>> x, y, ok = refine_gaussian(image, [10.0], [16.0], window_px=7)
    >>> x.round(3).tolist(), y.round(3).tolist(), ok.tolist()
    ([10.3], [15.6], [True])
    """
    img = np.asarray(image, dtype=np.float64)
    if dark:
        img = -img
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(x)
    if n == 0:
        return x.copy(), y.copy(), np.zeros(0, bool)
    win = max(3.0, float(window_px))
    r = max(1, int(round(win / 2)))
    xi = np.rint(x).astype(np.int64)
    yi = np.rint(y).astype(np.int64)
    v, ox, oy, valid = _patches(img, xi, yi, r)
    if labels is not None:
        lab, _, _, _ = _patches(np.asarray(labels), xi, yi, r)
        own = np.asarray(ids).reshape(-1, 1)
        valid &= (lab == 0) | (lab == own)
    wgt = valid.astype(np.float64)
    # start from moments: background = low percentile, amplitude = max - background
    vm = np.where(valid, v, np.nan)
    B = np.nanpercentile(vm, 10, axis=1)
    A = np.nanmax(vm, axis=1) - B
    B = np.nan_to_num(B)
    A = np.nan_to_num(A)
    px0 = x - xi
    py0 = y - yi
    s = np.full(n, max(0.7, r / 2.0))
    p = np.stack([A, px0, py0, s, B], axis=1)  # (n, 5), positions relative to the window centre
    lam = np.full(n, 1e-3)

    def model(p, ox, oy):
        dx = ox[None] - p[:, 1:2]
        dy = oy[None] - p[:, 2:3]
        s2 = p[:, 3:4] ** 2
        g = np.exp(-(dx * dx + dy * dy) / (2 * s2))
        return g, dx, dy, s2

    def cost(p, v, wgt):
        g, *_ = model(p, ox, oy)
        res = (p[:, 0:1] * g + p[:, 4:5] - v) * wgt
        return np.einsum("ij,ij->i", res, res)

    cur = cost(p, v, wgt)
    eye = np.eye(5)
    act = np.arange(n)  # atoms still iterating
    for _ in range(n_iter):
        if len(act) == 0:
            break
        pa, va, wa, la = p[act], v[act], wgt[act], lam[act]
        g, dx, dy, s2 = model(pa, ox, oy)
        Ag = pa[:, 0:1] * g
        J = np.stack([g, Ag * dx / s2, Ag * dy / s2, Ag * (dx * dx + dy * dy) / (s2 * pa[:, 3:4]),
                      np.ones_like(g)], axis=2) * wa[:, :, None]
        res = (Ag + pa[:, 4:5] - va) * wa
        JTJ = np.einsum("npi,npj->nij", J, J)
        JTr = np.einsum("npi,np->ni", J, res)
        diag = np.einsum("nii->ni", JTJ)
        M = JTJ + la[:, None, None] * diag[:, :, None] * eye + 1e-12 * eye
        step = np.zeros_like(pa)
        try:
            step = np.linalg.solve(M, -JTr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            for i in range(len(act)):
                try:
                    step[i] = np.linalg.solve(M[i], -JTr[i])
                except np.linalg.LinAlgError:
                    pass
        trial = pa + step
        trial[:, 3] = np.abs(trial[:, 3]) + 1e-6
        new = cost(trial, va, wa)
        better = np.isfinite(new) & (new <= cur[act])
        p[act] = np.where(better[:, None], trial, pa)
        cur[act] = np.where(better, new, cur[act])
        la = np.clip(np.where(better, la * 0.3, la * 10.0), 1e-9, 1e9)
        lam[act] = la
        done = (better & (np.abs(step[:, 1:3]).max(axis=1) < 1e-4)) | (la >= 1e9) | ~np.all(np.isfinite(step), axis=1)
        act = act[~done]
    fx = xi + p[:, 1]
    fy = yi + p[:, 2]
    ok = (np.all(np.isfinite(p), axis=1) & (p[:, 0] > 0) & (p[:, 3] > 0.2) & (p[:, 3] < 2.0 * win)
          & (np.hypot(fx - x, fy - y) <= win / 2))
    return np.where(ok, fx, x), np.where(ok, fy, y), ok
