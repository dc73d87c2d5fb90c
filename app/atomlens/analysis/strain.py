"""Local lattice distortion from atom positions: first-shell bonds and their deviation.

The first coordination shell of an atom is taken to be its neighbours closer than
``shell_factor`` x the median nearest-neighbour distance of the whole image (1.3 by default:
for graphene the 3 bonds at a / sqrt(3) are kept and the 6 second neighbours at
1.73 x that distance are not; for a square lattice the 4 edges are kept and the diagonals
at 1.41 x are not).
"""

from __future__ import annotations

import numpy as np

from .lattice import nearest_neighbour_distances, neighbours

__all__ = ["SHELL_FACTOR", "first_shell", "local_distortion"]

#: Neighbours closer than this multiple of the median nearest-neighbour distance are bonds.
SHELL_FACTOR = 1.3


def first_shell(xy, *, shell_factor: float = SHELL_FACTOR, k: int = 8):
    """Bonds of each point to its first-shell neighbours.

    Parameters
    ----------
    xy : (n, 2) array
        Positions (any unit; the distances come out in the same unit).
    shell_factor : float
        Neighbours up to ``shell_factor * median nearest-neighbour distance`` are bonds.
    k : int
        At most this many bonds per point.

    Returns
    -------
    dist : (n, k) float64
        Bond lengths, ascending; inf where there is no (further) bond.
    idx : (n, k) int64
        Indices of the bonded points; -1 where there is none.
    cutoff : float
        The distance limit used (NaN for fewer than 2 points).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not shell_factor > 1:
        raise ValueError(f"shell_factor must be > 1, got {shell_factor!r}")
    if len(xy) < 2:
        return np.full((len(xy), k), np.inf), np.full((len(xy), k), -1, np.int64), float("nan")
    cutoff = float(shell_factor * np.median(nearest_neighbour_distances(xy)))
    dist, idx = neighbours(xy, k=k, max_dist=cutoff)
    return dist, idx, cutoff


def local_distortion(xy, *, shell_factor: float = SHELL_FACTOR, k: int = 8) -> np.ndarray:
    """Per-atom deviation (%) of the mean first-shell bond length from the median bond length.

    Parameters
    ----------
    xy : (n, 2) array
        Atom positions (px or nm: the result is a ratio).
    shell_factor, k : see :func:`first_shell`.

    Returns
    -------
    (n,) float64, percent
        ``100 * (mean bond length of the atom / median of all bonds - 1)``: positive where the
        lattice is locally stretched, negative where it is compressed.  NaN for atoms without
        a first-shell neighbour.
    """
    dist, _idx, _cutoff = first_shell(xy, shell_factor=shell_factor, k=k)
    out = np.full(len(dist), np.nan)
    finite = np.isfinite(dist)
    if not finite.any():
        return out
    median = float(np.median(dist[finite]))
    n = finite.sum(axis=1)
    has = n > 0
    mean = np.where(finite, dist, 0.0).sum(axis=1)[has] / n[has]
    out[has] = 100.0 * (mean / median - 1.0)
    return out
