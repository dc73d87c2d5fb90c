"""Z-contrast images whose columns form no lattice: heavy single atoms and small clusters on
an amorphous support (a single-atom catalyst on carbon, say).

The segmentation network is trained on both lattices and single atoms, and on a few images
of the second kind it reads them as the first: when there are only a handful of heavy atoms
and the carbon film shows, it calls a carpet of faint film maxima "atoms", the heavy atoms
"dopants" and some gaps "vacancies" (3 test images of 300 in ``bench/accuracy.py``'s
``single_atoms`` family; a few more call a lone heavy atom a dopant).  A dopant or a vacancy
is a site of a host lattice, so neither means anything where there is none.
:func:`isolated_atoms` tests for a lattice and, where there is none,

* leaves out a carpet of faint columns: a group of at least :data:`SUPPORT_MIN_COLUMNS`
  columns, all at least :data:`SUPPORT_GAP` times fainter than every other column (the
  largest jump in the sorted column intensities) and as dense as a film's maxima (median
  neighbour distance at most :data:`SUPPORT_NN_A`), since a heavy atom scatters tens of times
  more than a carbon atom in HAADF (intensity about Z^1.7);
* calls the dopants atoms and leaves out the vacancies.

A scattered group of faint columns (a few sparse false calls) is kept: it could as well be
single atoms beside a thick cluster, whose columns are many times brighter.
"""

from __future__ import annotations

import numpy as np

from .atoms import AtomList
from .lattice import nearest_neighbour_distances
from .material import column_levels

__all__ = ["isolated_atoms", "is_lattice", "SCENE_NOTE"]

#: The note :func:`isolated_atoms` writes starts with this.
SCENE_NOTE = "no lattice"
#: Fewer columns than this are never taken for a lattice.
MIN_LATTICE_COLUMNS = 10
#: A lattice: at least this fraction of the columns have their nearest neighbour within
#: :data:`NN_TOLERANCE` of the median neighbour distance (0.91-1.0 in every simulated lattice
#: family, Si [110] dumbbells and fcc included; 0.1-0.5 for single atoms on carbon).
LATTICE_FRACTION = 0.7
NN_TOLERANCE = 0.15
#: The faint group must be this many times fainter than the rest (a column of three heavy
#: atoms is at most about 3 times a single one; film maxima were 3.3-8 times fainter).
SUPPORT_GAP = 2.5
SUPPORT_MIN_COLUMNS = 10
#: Median neighbour distance of a film's false columns (1.6-2.6 Å measured; sparse single
#: atoms lie 4-17 Å apart).
SUPPORT_NN_A = 3.5
#: Scale of the intensity measurement: a C-C bond.
LEVEL_SCALE_A = 1.4


def is_lattice(xy) -> bool:
    """Whether the columns `xy` (n, 2) form a lattice: enough of them, and most at the
    common neighbour distance.

    Parameters
    ----------
    xy : (n, 2) array
        Column positions, any unit (the test is on ratios of distances).

    Returns
    -------
    bool
        True when there are at least :data:`MIN_LATTICE_COLUMNS` columns and at least
        :data:`LATTICE_FRACTION` of them have their nearest neighbour within
        :data:`NN_TOLERANCE` (relative) of the median nearest-neighbour distance.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1).reshape(-1, 2)
    >>> is_lattice(grid), is_lattice(np.random.default_rng(0).uniform(0, 20, (30, 2)))
    (True, False)
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) < MIN_LATTICE_COLUMNS:
        return False
    d = nearest_neighbour_distances(xy)
    med = float(np.median(d))
    if not med > 0:
        return False
    return float(np.mean(np.abs(d / med - 1) < NN_TOLERANCE)) >= LATTICE_FRACTION


def _support_carpet(atoms: AtomList, image, px_size_A: float) -> np.ndarray:
    """Boolean mask of the columns that form a faint, dense carpet (none: all False)."""
    carpet = np.zeros(len(atoms), bool)
    if len(atoms) <= SUPPORT_MIN_COLUMNS:
        return carpet
    level = column_levels(image, atoms.xy, LEVEL_SCALE_A / px_size_A)
    top = np.nanmax(level)
    if not np.isfinite(top) or top <= 0:
        return carpet
    # a level at or below zero (a column on a dip of the background) is faint, not infinitely so
    lv = np.maximum(np.nan_to_num(level, nan=0.0), 0.01 * top)
    order = np.argsort(lv, kind="stable")
    s = lv[order]
    jumps = s[1:] / s[:-1]
    j = int(np.argmax(jumps))
    low = order[: j + 1]
    if jumps[j] < SUPPORT_GAP or len(low) < SUPPORT_MIN_COLUMNS:
        return carpet
    if np.median(nearest_neighbour_distances(atoms.xy[low])) * px_size_A > SUPPORT_NN_A:
        return carpet
    carpet[low] = True
    return carpet


def isolated_atoms(atoms: AtomList, image, px_size_A: float | None) -> tuple[AtomList, str | None]:
    """Atoms of a Z-contrast image read as single atoms on a support when their columns form
    no lattice (see the module's doc); returns (atoms, note), the note None and the atoms
    unchanged when there is a lattice or nothing to change.

    Parameters
    ----------
    atoms : AtomList
        The columns found, in the image's pixels.
    image : (H, W) array
        The image as the network saw it (bright columns).
    px_size_A : float or None
        Pixel size in Å (the one the detection used); None changes nothing.

    Returns
    -------
    atoms : AtomList
        `atoms` itself when nothing changes, else a copy without the support's carpet and the
        vacancies, dopants relabelled ``atom``.
    note : str or None
        Starts with :data:`SCENE_NOTE` and says what was left out or relabelled.
    """
    if px_size_A is None or not len(atoms) or is_lattice(atoms.xy):
        return atoms, None
    names = atoms.class_names
    atom_i = names.index("atom") if "atom" in names else None
    dopant = atoms.cls == names.index("dopant") if "dopant" in names else np.zeros(len(atoms), bool)
    vacancy = atoms.cls == names.index("vacancy") if "vacancy" in names else np.zeros(len(atoms), bool)
    if atom_i is None:
        return atoms, None
    carpet = _support_carpet(atoms, np.asarray(image, np.float32), float(px_size_A))
    keep = ~carpet & ~vacancy
    relabel = dopant & keep
    if keep.all() and not relabel.any():
        return atoms, None
    out = atoms.subset(keep)
    out.cls[relabel[keep]] = atom_i
    parts = []
    if carpet.any():
        parts.append(f"{int(carpet.sum())} faint columns of the support left out")
    if relabel.any():
        parts.append(f"{int(relabel.sum())} dopants called atoms")
    if (vacancy & ~carpet).any():
        parts.append(f"{int((vacancy & ~carpet).sum())} vacancies left out")
    note = (f"{SCENE_NOTE}: the columns read as single atoms on a support, so "
            + ", ".join(parts) + " (a dopant or a vacancy needs a host lattice)")
    return out, note
