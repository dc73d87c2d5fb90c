"""Coordinate-level augmentation: transforms applied to atom positions before rendering, so
that every label stays exact (the image is rendered from the transformed positions)."""

from __future__ import annotations

import numpy as np

from .atoms import AtomTable

__all__ = ["affine", "jiggle", "scan_drift"]


def affine(t: AtomTable, matrix, centre_A) -> AtomTable:
    """Apply a 2x2 linear map about `centre_A` (shear, anisotropic scaling).

    Parameters
    ----------
    t : AtomTable
        The columns; not modified.
    matrix : array_like, (2, 2)
        The linear map: a position p becomes ``matrix @ (p - centre_A) + centre_A``.
    centre_A : array_like, (2,), Å
        The fixed point (x, y).

    Returns
    -------
    AtomTable
        A copy with transformed ``xy``; every other field unchanged.

    Examples
    --------
    >>> from atomlens.sim.atoms import AtomTable
    >>> t = AtomTable.from_arrays([[2.0, 1.0]], 6)
    >>> affine(t, [[2.0, 0.0], [0.0, 1.0]], (1.0, 1.0)).xy.tolist()
    [[3.0, 1.0]]
    """
    t = t.copy()
    c = np.asarray(centre_A, float)
    t.xy = (t.xy - c) @ np.asarray(matrix, float).T + c
    return t


def jiggle(t: AtomTable, rng, sigma_A: float) -> AtomTable:
    """Independent random displacements of std `sigma_A` (frozen phonons, local disorder).

    Parameters
    ----------
    t : AtomTable
        The columns; not modified.
    rng : numpy.random.Generator
        Source of the normal displacements (one draw per coordinate).
    sigma_A : float, Å
        Standard deviation of each of x and y.

    Returns
    -------
    AtomTable
        A displaced copy; `t` itself (not a copy, and `rng` not drawn from) when
        ``sigma_A <= 0``.
    """
    if sigma_A <= 0:
        return t
    t = t.copy()
    t.xy = t.xy + rng.normal(0, sigma_A, t.xy.shape)
    return t


def scan_drift(t: AtomTable, rng, field_A, *, drift_A: float = 0.0, flyback_A: float = 0.0,
               flyback_len_A: float = 3.0) -> AtomTable:
    """Distortions of a raster scan that runs row by row, top to bottom.

    drift_A: sample drift over the frame (a random direction): an atom in row y has moved
    by drift * y / H when it is scanned.  flyback_A: the scan coil lags at the start of each
    line, compressing the left edge: x -> x + flyback * exp(-x / flyback_len).

    Parameters
    ----------
    t : AtomTable
        The columns; not modified.
    rng : numpy.random.Generator
        Draws the drift direction (one uniform angle, only when `drift_A` is non-zero).
    field_A : (float, float), Å
        The field of view (W, H); H scales the drift.
    drift_A : float, Å, optional
        Total drift over the frame (at y = H); 0 for none.
    flyback_A : float, Å, optional
        Shift of a column at x = 0 (x below 0 is treated as 0); 0 for none.
    flyback_len_A : float, Å, optional
        Decay length of the flyback shift along x.

    Returns
    -------
    AtomTable
        A copy with distorted ``xy``.
    """
    t = t.copy()
    w, h = field_A
    if drift_A:
        ang = rng.uniform(0, 2 * np.pi)
        d = drift_A * np.array([np.cos(ang), np.sin(ang)])
        t.xy = t.xy + (t.xy[:, 1:2] / h) * d
    if flyback_A:
        t.xy[:, 0] = t.xy[:, 0] + flyback_A * np.exp(-np.clip(t.xy[:, 0], 0, None) / flyback_len_A)
    return t
