"""The Results dock: counts per class, the atom table, defects, bond lengths and distortion.

Signals: ``atomActivated(int)`` and ``defectActivated(int)`` with the index into
``result.atoms`` / ``result.defects`` when the user picks a row (or a point of the
distortion plot); ``neighboursShown(int, object)`` with the atom index and an int array of
its first-shell neighbours whenever :meth:`ResultsDock.show_neighbours` lists them;
``minDefectScoreChanged(float)`` when the user moves the defect-score filter (Defects tab).

A result corrected in Annotate mode (:func:`atomlens.analysis.corrections.corrected_result`) is shown as
corrected: its counts, table (with each atom's origin) and histogram, and a line saying what
the user changed.  The counts label is rich text (its names escaped once, so they read as
typed).
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from ..analysis.lattice import nearest_neighbour_distances
from ..analysis.strain import bond_length_histogram, bonds_of, first_shell, local_distortion
from ..analysis.corrections import ORIGINS, corrections_of
from ..workflows.export import DEFAULT_CLASS_COLOURS
from .atom_table import AtomTableModel

__all__ = ["ResultsDock"]

ALL_CLASSES = "All classes"


class _NumItem(QtWidgets.QTableWidgetItem):
    """A table item that sorts by a number, not by its text."""

    def __init__(self, text: str, value: float):
        super().__init__(text)
        self.value = float(value)
        self.setTextAlignment(int(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter))

    def __lt__(self, other):
        return self.value < getattr(other, "value", 0.0)


class ResultsDock(QtWidgets.QDockWidget):
    """Results of the analysis of the open image.

    Attributes (read by tests and the main window)
    ---------------------------------------------
    result : AnalysisResult or None
    nn_values : (n,) float64
        Nearest-neighbour distance of each atom in ``nn_unit`` (``pm`` when calibrated, else
        ``px``), as in the histogram.
    nn_median : float
        Their median (NaN with fewer than 2 atoms).
    """

    atomActivated = QtCore.pyqtSignal(int)
    defectActivated = QtCore.pyqtSignal(int)
    neighboursShown = QtCore.pyqtSignal(int, object)
    minDefectScoreChanged = QtCore.pyqtSignal(float)

    def __init__(self, parent=None):
        super().__init__("Results", parent)
        self.setObjectName("ResultsDock")
        self.result = None
        self.micrograph = None
        self.class_colours = dict(DEFAULT_CLASS_COLOURS)
        self.nn_values = np.zeros(0)
        self.nn_median = float("nan")
        self.nn_unit = "px"
        self._shell = None  # (dist px, idx, cutoff) of first-shell bonds, computed on demand
        self._distortion = None
        self._quiet = False  # True while selecting a row on behalf of the view

        body = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.counts_label = QtWidgets.QLabel("No analysis yet.")
        self.counts_label.setTextFormat(QtCore.Qt.RichText)  # built as HTML: names are escaped once
        self.counts_label.setWordWrap(True)
        self.counts_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        lay.addWidget(self.counts_label)
        self.tabs = QtWidgets.QTabWidget()
        lay.addWidget(self.tabs, 1)
        self._build_atoms_tab()
        self._build_defects_tab()
        self._build_bonds_tab()
        self._build_distortion_tab()
        self.tabs.currentChanged.connect(self._on_tab)
        self.setWidget(body)

    # ================================================================= construction
    def _build_atoms_tab(self) -> None:
        w = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(w)
        lay.setContentsMargins(0, 4, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Show:"))
        self.class_filter = QtWidgets.QComboBox()
        self.class_filter.addItem(ALL_CLASSES)
        self.class_filter.currentTextChanged.connect(self._on_filter)
        row.addWidget(self.class_filter, 1)
        lay.addLayout(row)
        self.atom_model = AtomTableModel(self)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.atom_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, QtCore.Qt.AscendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.clicked.connect(lambda idx: self._activate_row(idx.row()))
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        lay.addWidget(self.table, 3)
        self.neigh_label = QtWidgets.QLabel("Click an atom to see its neighbours.")
        self.neigh_label.setWordWrap(True)
        lay.addWidget(self.neigh_label)
        self.neigh_list = QtWidgets.QTreeWidget()
        self.neigh_list.setColumnCount(4)
        self.neigh_list.setHeaderLabels(["#", "class", "bond", "direction"])
        self.neigh_list.setRootIsDecorated(False)
        self.neigh_list.setMaximumHeight(130)
        self.neigh_list.itemActivated.connect(lambda it, _c: self.atomActivated.emit(int(it.text(0))))
        lay.addWidget(self.neigh_list, 1)
        self.tabs.addTab(w, "Atoms")

    def _build_defects_tab(self) -> None:
        from ..analysis.defect_check import DEFAULT_MIN_DEFECT_SCORE

        w = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(w)
        lay.setContentsMargins(0, 4, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Min. defect score:"))
        self.min_score_spin = QtWidgets.QDoubleSpinBox()
        self.min_score_spin.setObjectName("minDefectScore")
        self.min_score_spin.setRange(0.0, 1.0)
        self.min_score_spin.setDecimals(3)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setValue(DEFAULT_MIN_DEFECT_SCORE)
        self.min_score_spin.setToolTip(
            "Show and export only the defects scored at least this (0..1): defect markers and vacancies below it "
            f"are hidden, dopants below it shown as atoms. The analysis itself leaves out those below "
            f"{DEFAULT_MIN_DEFECT_SCORE:g} (atomlens detect --min-defect-score).")
        self.min_score_spin.valueChanged.connect(lambda v: self.minDefectScoreChanged.emit(float(v)))
        row.addWidget(self.min_score_spin)
        row.addStretch(1)
        lay.addLayout(row)
        self.defect_table = QtWidgets.QTableWidget(0, 5)
        self.defect_table.setHorizontalHeaderLabels(["type", "score", "x px", "y px", "#"])
        self.defect_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.defect_table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.defect_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.defect_table.verticalHeader().setVisible(False)
        self.defect_table.horizontalHeader().setStretchLastSection(True)
        self.defect_table.cellClicked.connect(
            lambda r, _c: self.defectActivated.emit(int(self.defect_table.item(r, 4).value)))
        lay.addWidget(self.defect_table, 1)
        self.tabs.addTab(w, "Defects")

    def _build_bonds_tab(self) -> None:
        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setMenuEnabled(False)
        self.hist_plot.setLabel("left", "atoms")
        self.hist_plot.setLabel("bottom", "nearest-neighbour distance (px)")
        self.hist_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(80, 200, 255, 120),
                                          pen=pg.mkPen((80, 200, 255), width=1))
        self.hist_plot.addItem(self.hist_curve)
        self.median_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ff5050", width=2), label="",
                                           labelOpts={"position": 0.9, "color": "#ff5050"})
        self.hist_plot.addItem(self.median_line)
        self.median_line.hide()
        self.tabs.addTab(self.hist_plot, "Bond lengths")

    def _build_distortion_tab(self) -> None:
        w = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(w)
        lay.setContentsMargins(0, 4, 0, 0)
        self.distortion_label = QtWidgets.QLabel(
            "Mean first-shell bond length of each atom relative to the median bond (%).")
        self.distortion_label.setWordWrap(True)
        lay.addWidget(self.distortion_label)
        self.distortion_plot = pg.PlotWidget()
        self.distortion_plot.setMenuEnabled(False)
        self.distortion_plot.setAspectLocked(True)
        self.distortion_plot.invertY(True)
        self.distortion_scatter = pg.ScatterPlotItem(size=5, pen=None)
        self.distortion_scatter.sigClicked.connect(self._on_scatter_click)
        self.distortion_plot.addItem(self.distortion_scatter)
        lay.addWidget(self.distortion_plot, 1)
        self.tabs.addTab(w, "Distortion")

    # ================================================================= public API
    def min_defect_score(self) -> float:
        """The defect-score filter (0..1): defects scored below it are neither shown nor exported."""
        return float(self.min_score_spin.value())

    def set_class_colours(self, colours: dict) -> None:
        """Class name -> '#rrggbb' used for counts and the class column."""
        self.class_colours = dict(DEFAULT_CLASS_COLOURS, **colours)
        self.atom_model.set_class_colours(self.class_colours)
        self._update_counts()

    def set_result(self, result, micrograph=None) -> None:
        """Show `result` (an AnalysisResult; None clears the dock)."""
        self.result, self.micrograph = result, micrograph
        self._shell = self._distortion = None
        atoms = result.atoms if result is not None else None
        corr = corrections_of(result)
        self.atom_model.set_atoms(atoms, result.calibration if result is not None else None, self.class_colours,
                                  origin=corr["origin"] if corr is not None else None)
        current = self.class_filter.currentText()
        self.class_filter.blockSignals(True)
        self.class_filter.clear()
        self.class_filter.addItem(ALL_CLASSES)
        if atoms is not None:
            self.class_filter.addItems(list(atoms.class_names[1:]))
        idx = self.class_filter.findText(current)
        self.class_filter.setCurrentIndex(max(0, idx))
        self.class_filter.blockSignals(False)
        self.atom_model.set_class_filter(None if self.class_filter.currentIndex() <= 0 else current)
        self._update_counts()
        self._fill_defects()
        self._update_histogram()
        self.neigh_list.clear()
        self.neigh_label.setText("Click an atom to see its neighbours.")
        self.distortion_scatter.clear()
        if self.tabs.currentIndex() == 3:
            self._update_distortion()

    def select_atom(self, index: int) -> None:
        """Select atom `index`'s row (scrolled into view) and list its neighbours, without
        emitting ``atomActivated`` (for clicks on the image)."""
        row = self.atom_model.row_of(int(index))
        self._quiet = True
        try:
            if row >= 0:
                mi = self.atom_model.index(row, 0)
                self.table.setCurrentIndex(mi)
                self.table.scrollTo(mi, QtWidgets.QAbstractItemView.PositionAtCenter)
            else:
                self.table.clearSelection()
        finally:
            self._quiet = False
        self.show_neighbours(int(index))

    def show_neighbours(self, index: int) -> list:
        """List atom `index`'s first-shell neighbours and bond lengths in the panel.

        Neighbours are the atoms closer than 1.3 x the median nearest-neighbour distance
        (:func:`atomlens.analysis.strain.first_shell`).  Returns ``[(neighbour index,
        bond length), ...]`` in ``nn_unit`` (pm when calibrated, else px), nearest first.
        """
        r = self.result
        if r is None or not 0 <= index < len(r.atoms):
            raise IndexError(f"no atom {index}")
        if self._shell is None:
            self._shell = first_shell(r.atoms.xy)
        bonds = bonds_of(r.atoms.xy, index, self._shell)
        nb = [j for j, _d, _a in bonds]
        f = self._unit_factor()
        names = r.atoms.names()
        self.neigh_list.clear()
        out = []
        for j, d, ang in bonds:
            item = QtWidgets.QTreeWidgetItem([str(int(j)), names[j], f"{d * f:.1f} {self.nn_unit}", f"{ang:.0f}°"])
            item.setForeground(1, QtGui.QBrush(QtGui.QColor(self.class_colours.get(names[j], "#000000"))))
            self.neigh_list.addTopLevelItem(item)
            out.append((int(j), float(d * f)))
        head = f"Atom {index} ({names[index]}): {len(out)} neighbour{'s' if len(out) != 1 else ''}"
        if out:
            head += f", mean bond {np.mean([d for _, d in out]):.1f} {self.nn_unit}"
        self.neigh_label.setText(head)
        self.neighboursShown.emit(int(index), np.asarray(nb, np.int64))
        return out

    def distortion(self) -> np.ndarray:
        """Local lattice distortion of each atom (%), see
        :func:`atomlens.analysis.strain.local_distortion` (computed once per result)."""
        if self._distortion is None:
            xy = self.result.atoms.xy if self.result is not None else np.zeros((0, 2))
            self._distortion = local_distortion(xy)
        return self._distortion

    # ================================================================= internals
    def _unit_factor(self) -> float:
        """pm per px of the shown result (1 when uncalibrated: lengths stay in px)."""
        length = self.result.calibration.length_nm(1.0) if self.result is not None else None
        return 1.0 if length is None else length * 1000.0

    def _update_counts(self) -> None:
        r = self.result
        if r is None:
            self.counts_label.setText("No analysis yet.")
            return
        parts = []
        for name, n in r.counts().items():
            c = self.class_colours.get(name, "#888888")
            parts.append(f"<span style='color:{c}; font-size:14pt'>●</span>&nbsp;<b>{n}</b>&nbsp;{html.escape(name)}")
        text = f"<b>{len(r.atoms)}</b> atoms: " + " &nbsp; ".join(parts)
        if r.defects is not None:
            text += f"<br><b>{len(r.defects)}</b> defects"
        corr = corrections_of(r)
        if corr is not None:
            origin = np.asarray(corr["origin"], dtype=object)
            done = [f"{int(np.sum(origin == o))} {o}" for o in ORIGINS[1:] if np.any(origin == o)]
            if corr["deleted"]:
                done.append(f"{corr['deleted']} deleted")
            d_origin = np.asarray(corr["defect_origin"], dtype=object)
            n_def = int(np.sum(d_origin != "predicted")) + corr["deleted_defects"]
            if n_def:
                done.append(f"{n_def} defect{'s' if n_def != 1 else ''} changed")
            text += "<br><i>With your corrections: " + html.escape(", ".join(done) or "none") + "</i>"
        if r.px_size_nm is None:
            text += "<br><i>Uncalibrated: distances in px.</i>"
        self.counts_label.setText(text)

    def _fill_defects(self) -> None:
        t = self.defect_table
        t.setSortingEnabled(False)
        d = self.result.defects if self.result is not None else None
        t.setRowCount(0 if d is None else len(d))
        if d is not None:
            for i, name in enumerate(d.names()):
                t.setItem(i, 0, QtWidgets.QTableWidgetItem(name))
                t.setItem(i, 1, _NumItem(f"{d.score[i]:.3f}", d.score[i]))
                t.setItem(i, 2, _NumItem(f"{d.x[i]:.1f}", d.x[i]))
                t.setItem(i, 3, _NumItem(f"{d.y[i]:.1f}", d.y[i]))
                t.setItem(i, 4, _NumItem(str(i), i))
        t.setSortingEnabled(True)
        self.tabs.setTabText(1, "Defects" if d is None else f"Defects ({len(d)})")

    def _update_histogram(self) -> None:
        r = self.result
        calibrated = r is not None and r.px_size_nm is not None
        self.nn_unit = "pm" if calibrated else "px"
        self.hist_plot.setLabel("bottom", f"nearest-neighbour distance ({self.nn_unit})")
        if r is None or len(r.atoms) < 2:
            self.nn_values, self.nn_median = np.zeros(0), float("nan")
            self.hist_curve.setData([], [])
            self.median_line.hide()
            return
        self.nn_values = nearest_neighbour_distances(r.atoms.xy) * self._unit_factor()
        counts, edges, self.nn_median = bond_length_histogram(self.nn_values)
        self.hist_curve.setData(edges, counts)
        self.median_line.show()  # (a hidden line's label is not updated)
        self.median_line.setValue(self.nn_median)
        self.median_line.label.setFormat("median {value:.1f} " + self.nn_unit)

    def _update_distortion(self) -> None:
        r = self.result
        if r is None or len(r.atoms) < 3:
            self.distortion_scatter.clear()
            return
        v = self.distortion()
        fin = np.isfinite(v)
        lim = float(np.nanpercentile(np.abs(v[fin]), 98)) if fin.any() else 1.0
        lim = max(lim, 0.5)
        cmap = pg.colormap.get("CET-D1")
        lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True)
        k = np.clip((np.nan_to_num(v) / lim + 1) / 2 * 255, 0, 255).astype(int)
        palette = [pg.mkBrush(*c) for c in lut]
        grey = pg.mkBrush(128, 128, 128, 80)
        brushes = [palette[kk] if ok else grey for kk, ok in zip(k, fin)]
        self.distortion_scatter.setData(x=r.atoms.x, y=r.atoms.y, brush=brushes, data=np.arange(len(v)))
        self.distortion_label.setText(
            "Mean first-shell bond length relative to the median bond: "
            f"blue −{lim:.1f} % (compressed) … red +{lim:.1f} % (stretched).")

    def _on_tab(self, i: int) -> None:
        if i == 3 and len(self.distortion_scatter.data) == 0:
            self._update_distortion()

    def _on_filter(self, text: str) -> None:
        self.atom_model.set_class_filter(None if text == ALL_CLASSES or not text else text)

    def _on_current_row(self, current, _previous) -> None:
        # keyboard navigation; mouse clicks are handled by `clicked` (once per click)
        if current.isValid() and not self._quiet and QtWidgets.QApplication.mouseButtons() == QtCore.Qt.NoButton:
            self._activate_row(current.row())

    def _activate_row(self, row: int) -> None:
        if self._quiet or not 0 <= row < self.atom_model.rowCount():
            return
        i = self.atom_model.atom_index(row)
        self.atomActivated.emit(i)
        self.show_neighbours(i)

    def _on_scatter_click(self, _item, points, *args) -> None:
        if len(points):
            i = int(points[0].data())
            self.select_atom(i)
            self.atomActivated.emit(i)
