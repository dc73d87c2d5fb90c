"""The Layers dock: visibility of the overlays, atom classes, heatmap channel and opacity.

It edits the layer models of an :class:`~atomlens.gui.layer_views.Overlays`; the views follow.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtGui, QtWidgets

from .layer_views import Overlays
from .layers import HeatmapLayer, Layer

__all__ = ["LayersDock"]


def _swatch(colour: str, size: int = 12) -> QtGui.QIcon:
    """A round icon of `colour` (readable on any palette, unlike coloured text)."""
    pix = QtGui.QPixmap(size, size)
    pix.fill(QtCore.Qt.transparent)
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.Antialiasing)
    p.setPen(QtGui.QPen(QtGui.QColor(40, 40, 40), 1))
    p.setBrush(QtGui.QColor(colour))
    p.drawEllipse(1, 1, size - 2, size - 2)
    p.end()
    return QtGui.QIcon(pix)


class _HeatmapRow(QtWidgets.QWidget):
    """Checkbox, channel picker and opacity slider of one heatmap layer."""

    def __init__(self, layer: HeatmapLayer, parent=None):
        super().__init__(parent)
        self.layer = layer
        lay = QtWidgets.QGridLayout(self)
        lay.setContentsMargins(0, 4, 0, 4)
        self.check = QtWidgets.QCheckBox(layer.name)
        self.check.setChecked(layer.visible)
        self.check.toggled.connect(layer.set_visible)
        self.channel_combo = QtWidgets.QComboBox()
        self.channel_combo.activated.connect(lambda i: layer.set_channel(self.channel_combo.itemData(i)))
        self.opacity = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(layer.opacity * 100))
        self.opacity.valueChanged.connect(lambda v: layer.set_opacity(v / 100.0))
        lay.addWidget(self.check, 0, 0, 1, 2)
        lay.addWidget(QtWidgets.QLabel("Class:"), 1, 0)
        lay.addWidget(self.channel_combo, 1, 1)
        lay.addWidget(QtWidgets.QLabel("Opacity:"), 2, 0)
        lay.addWidget(self.opacity, 2, 1)
        layer.changed.connect(self.sync)
        layer.visibilityChanged.connect(self._sync_check)
        layer.channelChanged.connect(self._sync_channel)
        self.sync()

    def sync(self) -> None:
        self.channel_combo.clear()
        for i in self.layer.channels:
            self.channel_combo.addItem(self.layer.names[i], i)
        self._sync_channel(self.layer.channel)
        empty = self.layer.is_empty()
        for w in (self.check, self.channel_combo, self.opacity):
            w.setEnabled(not empty)
        self.check.setToolTip("Run the analysis first" if empty else "")

    def _sync_check(self, visible: bool) -> None:
        if self.check.isChecked() != visible:
            self.check.setChecked(visible)

    def _sync_channel(self, channel: int) -> None:
        i = self.channel_combo.findData(channel)
        if i >= 0:
            self.channel_combo.setCurrentIndex(i)


class LayersDock(QtWidgets.QDockWidget):
    """Visibility checkboxes of the overlay layers (atoms per class, defects, heatmaps)."""

    def __init__(self, overlays: Overlays, parent=None):
        super().__init__("Layers", parent)
        self.setObjectName("LayersDock")
        self.overlays = overlays
        body = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)

        self.atoms_check = self._layer_check(overlays.atoms)
        lay.addWidget(self.atoms_check)
        self.class_box = QtWidgets.QWidget()
        self.class_layout = QtWidgets.QVBoxLayout(self.class_box)
        self.class_layout.setContentsMargins(20, 0, 0, 0)
        self.class_checks: dict[str, QtWidgets.QCheckBox] = {}
        lay.addWidget(self.class_box)
        self.defects_check = self._layer_check(overlays.defects, "Defect markers")
        lay.addWidget(self.defects_check)
        self.cam_row = _HeatmapRow(overlays.cam)
        lay.addWidget(self.cam_row)
        self.prob_row = _HeatmapRow(overlays.prob)
        lay.addWidget(self.prob_row)
        lay.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)
        overlays.atoms.changed.connect(self._sync_classes)
        overlays.atoms.classVisibilityChanged.connect(self._sync_class_check)
        overlays.layersChanged.connect(self._sync_enabled)
        self._sync_classes()
        self._sync_enabled()

    def _layer_check(self, layer: Layer, text: str | None = None) -> QtWidgets.QCheckBox:
        check = QtWidgets.QCheckBox(text or layer.name)
        check.setChecked(layer.visible)
        check.toggled.connect(layer.set_visible)
        layer.visibilityChanged.connect(lambda v, c=check: c.isChecked() != v and c.setChecked(v))
        return check

    def _sync_classes(self) -> None:
        atoms = self.overlays.atoms
        for check in self.class_checks.values():
            self.class_layout.removeWidget(check)
            check.deleteLater()
        self.class_checks = {}
        for name in atoms.classes_present():
            row = QtWidgets.QCheckBox(f"{name} ({len(atoms.indices_of(name))})")
            row.setChecked(atoms.class_visible.get(name, True))
            row.setIcon(_swatch(atoms.colours[name]))
            row.toggled.connect(lambda on, n=name: atoms.set_class_visible(n, on))
            self.class_layout.addWidget(row)
            self.class_checks[name] = row

    def _sync_class_check(self, name: str, visible: bool) -> None:
        check = self.class_checks.get(name)
        if check is not None and check.isChecked() != visible:
            check.setChecked(visible)

    def _sync_enabled(self) -> None:
        self.atoms_check.setEnabled(not self.overlays.atoms.is_empty())
        self.defects_check.setEnabled(not self.overlays.defects.is_empty())
