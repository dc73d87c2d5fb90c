"""The projected-column table that the whole simulation engine works on.

A *column* is what a microscope sees from above: one or more atoms stacked along the beam,
at a projected position (x, y) in Å.  Positions use the image convention of AtomLens:
x to the right, y downwards.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["AtomTable", "CLASSES", "ATOM", "DOPANT", "VACANCY", "BACKGROUND", "DEFECT_TYPES"]

#: Pixel/point classes of the segmentation labels, in the order of the FCN's output channels.
CLASSES = ("background", "atom", "dopant", "vacancy")
BACKGROUND, ATOM, DOPANT, VACANCY = range(4)

#: Image-level defect types (for the GAP-CNN / CAM classifier), and the per-column ``defect``
#: codes.  0 means the column belongs to no defect.
DEFECT_TYPES = ("pristine", "vacancy", "dopant", "topological", "adatom", "hole", "edge",
                "grain_boundary", "contamination")


@dataclasses.dataclass
class AtomTable:
    """Projected atom columns.

    Attributes
    ----------
    xy : (n, 2) float64, Å
        Projected column positions (x, y).
    Z : (n,) int
        Atomic number of the column's atoms (the heaviest one for mixed columns).
    count : (n,) float
        Number of atoms in the column (0 for an empty vacancy site).  Mixed columns keep
        their dominant Z and an effective count: HAADF intensity is ``count * Z**n``.
    height : (n,) float, Å
        Height of the column's top atom above the support (for STM and for top/bottom
        layers of 2D materials).
    cls : (n,) int
        Class label: ATOM, DOPANT or VACANCY (see :data:`CLASSES`).
    defect : (n,) int
        Index into :data:`DEFECT_TYPES` of the defect the column belongs to (0 = none).
    labelled : (n,) bool
        False for columns that are rendered but not labelled (amorphous support,
        contamination).
    site : (n,) int
        Index of the column's site in its unit cell (-1 for atoms added by defects), so
        that defects can pick e.g. metal or chalcogen sites.
    """

    xy: np.ndarray
    Z: np.ndarray
    count: np.ndarray
    height: np.ndarray
    cls: np.ndarray
    defect: np.ndarray
    labelled: np.ndarray
    site: np.ndarray

    @classmethod
    def empty(cls) -> "AtomTable":
        """A table with no columns.

        Returns
        -------
        AtomTable
            Zero rows; every field an empty array of its usual dtype.

        Examples
        --------
        >>> len(AtomTable.empty())
        0
        """
        return cls.from_arrays(np.zeros((0, 2)), np.zeros(0, int))

    @classmethod
    def from_arrays(cls, xy, Z, count=None, height=None, klass=None, defect=None,
                    labelled=None, site=None) -> "AtomTable":
        """Build a table, filling optional columns with defaults (1 atom, height 0, ATOM).

        Each optional argument may be a scalar or a sequence; it is broadcast to the number
        of rows and copied.

        Parameters
        ----------
        xy : array_like, (n, 2), Å
            Projected column positions (x, y); reshaped to (n, 2).
        Z : int or array_like (n,), optional
            Atomic numbers (stored as int16); None means carbon (6).
        count : float or array_like (n,), optional
            Atoms per column (float32); default 1.
        height : float or array_like (n,), optional
            Height of the top atom above the support, Å (float32); default 0.
        klass : int or array_like (n,), optional
            Class label (int8: ATOM, DOPANT or VACANCY); default ATOM.
        defect : int or array_like (n,), optional
            Index into :data:`DEFECT_TYPES` (int8); default 0 (no defect).
        labelled : bool or array_like (n,), optional
            Whether the column is labelled; default True.
        site : int or array_like (n,), optional
            Site index in the unit cell (int16); default -1 (no site).

        Returns
        -------
        AtomTable
            n rows.

        Raises
        ------
        ValueError
            If a column cannot be broadcast to (n,), or `xy` has an odd number of values.

        Examples
        --------
        >>> t = AtomTable.from_arrays([[0.0, 0.0], [1.4, 0.0]], 42, klass=[ATOM, DOPANT])
        >>> t.Z.tolist(), t.cls.tolist(), t.count.tolist()
        ([42, 42], [1, 2], [1.0, 1.0])
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        n = len(xy)

        def col(v, default, dtype):
            if v is None:
                return np.full(n, default, dtype=dtype)
            return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

        return cls(
            xy=xy,
            Z=col(Z, 6, np.int16),
            count=col(count, 1.0, np.float32),
            height=col(height, 0.0, np.float32),
            cls=col(klass, ATOM, np.int8),
            defect=col(defect, 0, np.int8),
            labelled=col(labelled, True, bool),
            site=col(site, -1, np.int16),
        )

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, index) -> "AtomTable":
        """Rows selected by a boolean mask or an index array (a copy).

        Parameters
        ----------
        index : (n,) bool array, int array or slice
            Which rows to keep, as for numpy indexing; an index array may repeat or reorder rows.

        Returns
        -------
        AtomTable
            A new table whose arrays do not share memory with this one.
        """
        return AtomTable(**{f.name: getattr(self, f.name)[index].copy() for f in dataclasses.fields(self)})

    def concat(self, other: "AtomTable") -> "AtomTable":
        """This table's rows followed by `other`'s.

        Parameters
        ----------
        other : AtomTable
            The rows to append.

        Returns
        -------
        AtomTable
            ``len(self) + len(other)`` rows (new arrays; dtypes as numpy promotes them).
        """
        return AtomTable(**{
            f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
            for f in dataclasses.fields(self)
        })

    def copy(self) -> "AtomTable":
        """A deep copy (every array copied).

        Returns
        -------
        AtomTable
            Same rows, no shared memory.
        """
        return self.subset(slice(None))

    @property
    def occupied(self) -> np.ndarray:
        """Mask of columns that hold at least part of an atom (rendered ones)."""
        return self.count > 0

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Labelled points: (xy in Å, class) for every labelled column, vacancies included."""
        m = self.labelled
        return self.xy[m].copy(), self.cls[m].copy()

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}
