"""Coordinate-level augmentation: transforms applied to atom positions before rendering, so
that every label stays exact (the image is rendered from the transformed positions)."""

from __future__ import annotations

import numpy as np

from .atoms import AtomTable

__all__ = ["affine", "jiggle", "scan_drift"]


def affine(t: AtomTable, matrix, centre_A) -> AtomTable:
    """Apply a 2x2 linear map about `centre_A` (shear, anisotropic scaling)."""
    t = t.copy()
    c = np.asarray(centre_A, float)
    t.xy = (t.xy - c) @ np.asarray(matrix, float).T + c
    return t


def jiggle(t: AtomTable, rng, sigma_A: float) -> AtomTable:
    """Independent random displacements of std `sigma_A` (frozen phonons, local disorder)."""
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
