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

__all__ = ["SHELL_FACTOR", "bond_length_histogram", "bonds_of", "first_shell", "local_distortion"]

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


def bonds_of(xy, index: int, shell=None) -> list[tuple[int, float, float]]:
    """The first-shell bonds of one atom: its neighbours, bond lengths and directions.

    Parameters
    ----------
    xy : (n, 2) array, px
        Atom positions (x = column, y = row).
    index : int
        The atom.
    shell : tuple, optional
        :func:`first_shell` of `xy`, when the caller keeps it (it is computed otherwise).

    Returns
    -------
    list of (int, float, float)
        ``(neighbour index, bond length in px, angle in degrees)``, nearest first; the angle is
        counter-clockwise from the +x axis as the image is shown (y runs down the rows).

    Raises
    ------
    IndexError
        When `index` is not an atom of `xy`.

    Examples
    --------
    >>> xy = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.2], [2.0, 2.2]]
    >>> [(j, round(d, 2), round(a)) for j, d, a in bonds_of(xy, 0)]
    [(1, 2.0, 0), (2, 2.2, -90)]
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    if not 0 <= index < len(xy):
        raise IndexError(f"no atom {index}")
    dist, idx, _cutoff = first_shell(xy) if shell is None else shell
    ok = idx[index] >= 0
    out = []
    for j, d in zip(idx[index][ok], dist[index][ok]):
        ang = np.degrees(np.arctan2(-(xy[j, 1] - xy[index, 1]), xy[j, 0] - xy[index, 0]))
        out.append((int(j), float(d), float(ang)))
    return out


def bond_length_histogram(lengths) -> tuple[np.ndarray, np.ndarray, float]:
    """The histogram the Results dock draws of nearest-neighbour distances.

    Parameters
    ----------
    lengths : (n,) array
        Distances (any unit), n >= 1.

    Returns
    -------
    (counts, edges, median)
        ``np.histogram`` of `lengths` over at least +-10 % around the median (a perfect
        lattice is one spike) and at most 3 x the median, with sqrt(n) bins (10 to 80);
        `median` in the unit of `lengths`.

    Examples
    --------
    >>> counts, edges, med = bond_length_histogram([1.0, 1.0, 1.0, 1.2])
    >>> int(counts.sum()), len(edges), med
    (4, 11, 1.0)
    """
    v = np.asarray(lengths, float).ravel()
    med = float(np.median(v))
    hi = max(min(float(v.max()), 3.0 * med), 1.1 * med)
    lo = min(max(0.0, float(v.min())), 0.9 * med)
    nbins = int(np.clip(np.sqrt(len(v)), 10, 80))
    counts, edges = np.histogram(v, bins=nbins, range=(lo, hi if hi > lo else lo + 1))
    return counts, edges, med
