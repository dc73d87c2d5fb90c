"""The atom table model of the results dock: numpy-backed, sorted and filtered with numpy.

A ``QSortFilterProxyModel`` calls Python once per comparison, which takes seconds for
20,000 atoms; this model keeps a view array of atom indices instead (the rows in their
displayed order, after the class filter) and re-sorts it with ``np.argsort`` in
milliseconds.  Row ``r`` shows atom ``atom_index(r)``.
"""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui

__all__ = ["INDEX_ROLE", "SORT_ROLE", "AtomTableModel"]

#: Role that gives a cell's raw value (float, int or str).
SORT_ROLE = QtCore.Qt.UserRole
#: Role that gives the row's index into ``result.atoms``.
INDEX_ROLE = QtCore.Qt.UserRole + 1


class AtomTableModel(QtCore.QAbstractTableModel):
    """The atoms of one result, sortable by any column and filterable by class.

    Columns: ``#`` (the index into ``result.atoms``), ``class``, ``score``, ``x px``,
    ``y px``, ``x nm``, ``y nm`` (the nm columns are empty for an uncalibrated image),
    ``origin`` (``predicted``, or for atoms corrected in Annotate mode ``relabelled``,
    ``moved``, ``added``).  Cells are formatted on demand, so setting 20,000 atoms costs
    nothing until rows are shown.
    """

    COLUMNS = ("#", "class", "score", "x px", "y px", "x nm", "y nm", "origin")
    ORIGIN_COLUMN = 7

    def __init__(self, parent=None):
        super().__init__(parent)
        self._atoms = None
        self._xnm = self._ynm = None
        self._origin = None  # (n,) str per atom, or None: all predicted
        self._view = np.zeros(0, np.int64)  # atom index of each row
        self._row = np.zeros(0, np.int64)  # row of each atom (-1: filtered out)
        self._brushes: dict = {}
        self._filter: str | None = None
        self._sort = (-1, QtCore.Qt.AscendingOrder)

    # ------------------------------------------------------------------ content
    def set_atoms(self, atoms, calibration=None, class_colours=None, origin=None) -> None:
        """Show `atoms` (an AtomList, or None for an empty table); keeps sort and filter.
        `calibration`: the result's :class:`~atomlens.analysis.calibration.Calibration` (None or
        uncalibrated: no nm columns).  `origin`: (n,) origin of each atom (None: all ``predicted``)."""
        self.beginResetModel()
        self._atoms = atoms if atoms is not None and len(atoms) else None
        self._origin = (None if origin is None or self._atoms is None
                        else np.asarray([str(o) for o in origin], dtype=str))
        if self._atoms is None or calibration is None or not calibration.calibrated:
            self._xnm = self._ynm = None
        else:
            self._xnm, self._ynm = calibration.to_nm(atoms.x, atoms.y)
        self._brushes = {n: QtGui.QBrush(QtGui.QColor(c)) for n, c in (class_colours or {}).items()}
        self._rebuild()
        self.endResetModel()

    def set_class_colours(self, colours: dict) -> None:
        self._brushes = {n: QtGui.QBrush(QtGui.QColor(c)) for n, c in colours.items()}
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 1), self.index(self.rowCount() - 1, 1))

    def set_class_filter(self, name: str | None) -> None:
        """Show only the atoms of class `name` (None: all)."""
        self.beginResetModel()
        self._filter = name
        self._rebuild()
        self.endResetModel()

    def atom_index(self, row: int) -> int:
        """Index into ``result.atoms`` of table row `row`."""
        return int(self._view[row])

    def row_of(self, atom_index: int) -> int:
        """Table row showing atom `atom_index`, or -1 when it is filtered out."""
        if not 0 <= atom_index < len(self._row):
            return -1
        return int(self._row[atom_index])

    def _n(self) -> int:
        return 0 if self._atoms is None else len(self._atoms)

    def origin(self, i: int) -> str:
        """Origin of atom `i` (``predicted`` unless corrected)."""
        return "predicted" if self._origin is None else str(self._origin[i])

    def _keys(self, column: int) -> np.ndarray:
        """Numeric sort keys of `column` for all atoms (classes and origins by name)."""
        a = self._atoms
        if column == 1:
            names = np.array(a.class_names, dtype=str)
            return np.argsort(np.argsort(names, kind="stable"), kind="stable")[a.cls]
        if column == self.ORIGIN_COLUMN:
            if self._origin is None:
                return np.zeros(len(a))
            _, inv = np.unique(self._origin, return_inverse=True)
            return inv.astype(np.float64)
        if column in (5, 6) and self._xnm is not None:
            return self._xnm if column == 5 else self._ynm
        return {2: a.score, 3: a.x, 4: a.y, 5: a.x, 6: a.y}.get(column, np.arange(len(a)))

    def _rebuild(self) -> None:
        n = self._n()
        view = np.arange(n)
        if n and self._filter is not None:
            names = tuple(self._atoms.class_names)
            code = names.index(self._filter) if self._filter in names else -1
            view = view[self._atoms.cls == code]
        col, order = self._sort
        if n and col >= 0 and len(view):
            keys = np.asarray(self._keys(col)[view], dtype=np.float64)
            sign = -1.0 if order == QtCore.Qt.DescendingOrder else 1.0
            view = view[np.argsort(sign * keys, kind="stable")]
        self._view = view
        self._row = np.full(n, -1, np.int64)
        self._row[view] = np.arange(len(view))

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._view)

    def columnCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=QtCore.Qt.DisplayRole):
        if role == QtCore.Qt.DisplayRole and orientation == QtCore.Qt.Horizontal:
            return self.COLUMNS[section]
        return None

    def sort(self, column: int, order=QtCore.Qt.AscendingOrder) -> None:
        """Sort the rows by `column` (numpy argsort; ties keep their index order)."""
        self.layoutAboutToBeChanged.emit([], QtCore.QAbstractItemModel.VerticalSortHint)
        old = self.persistentIndexList()
        atoms_of = [(int(self._view[i.row()]), i.column()) for i in old]
        self._sort = (int(column), order)
        self._rebuild()
        new = [self.index(int(self._row[a]), c) if self._row[a] >= 0 else QtCore.QModelIndex()
               for a, c in atoms_of]
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit([], QtCore.QAbstractItemModel.VerticalSortHint)

    def data(self, index, role=QtCore.Qt.DisplayRole):
        if not index.isValid():
            return None
        i, c = int(self._view[index.row()]), index.column()
        a = self._atoms
        if role == QtCore.Qt.DisplayRole:
            if c == 0:
                return str(i)
            if c == 1:
                return a.class_names[int(a.cls[i])]
            if c == self.ORIGIN_COLUMN:
                return self.origin(i)
            if c == 2:
                return f"{a.score[i]:.3f}"
            if c in (3, 4):
                return f"{(a.x if c == 3 else a.y)[i]:.2f}"
            return "" if self._xnm is None else f"{(self._xnm if c == 5 else self._ynm)[i]:.4f}"
        if role == SORT_ROLE:
            if c == 0:
                return i
            if c == 1:
                return a.class_names[int(a.cls[i])]
            if c == self.ORIGIN_COLUMN:
                return self.origin(i)
            if c in (5, 6) and self._xnm is not None:
                return float((self._xnm if c == 5 else self._ynm)[i])
            return float({2: a.score, 3: a.x, 4: a.y, 5: a.x, 6: a.y}[c][i])
        if role == INDEX_ROLE:
            return i
        if role == QtCore.Qt.ForegroundRole and c == 1:
            return self._brushes.get(a.class_names[int(a.cls[i])])
        if role == QtCore.Qt.TextAlignmentRole and c not in (1, self.ORIGIN_COLUMN):
            return int(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        return None
