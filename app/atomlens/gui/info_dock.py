"""The Info dock: summary, calibration notice, channel picker, notes and the metadata tree."""

from __future__ import annotations

import html

from PyQt5 import QtCore, QtWidgets

from .widgets import notes_html, notes_label

__all__ = ["InfoDock", "fill_metadata_tree", "MAX_CHILDREN", "MAX_TEXT"]

MAX_CHILDREN = 200  # per node; the rest is summarised in one line
MAX_TEXT = 200  # characters of a value shown
MAX_DEPTH = 12
MAX_LIST_ITEMS = 20  # longer lists/tuples are summarised


def _short(value) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "ndim", 0) > 0:
        return f"array {tuple(shape)} {getattr(value, 'dtype', '')}"
    if isinstance(value, bytes):
        value = value[:MAX_TEXT].decode("utf-8", "replace")
    text = str(value)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"… ({len(text)} characters)"
    return text.replace("\n", " ⏎ ")


def _add_children(parent: QtWidgets.QTreeWidgetItem, value, depth: int) -> None:
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = [(f"[{i}]", v) for i, v in enumerate(value)]
    for key, child in items[:MAX_CHILDREN]:
        _add_item(parent, str(key), child, depth + 1)
    if len(items) > MAX_CHILDREN:
        QtWidgets.QTreeWidgetItem(parent, ["…", f"{len(items) - MAX_CHILDREN} more entries"])


def _add_item(parent, key: str, value, depth: int) -> None:
    nested = isinstance(value, dict) or (
        isinstance(value, (list, tuple)) and 0 < len(value) <= MAX_LIST_ITEMS
        and any(isinstance(v, (dict, list, tuple)) for v in value))
    if nested and depth < MAX_DEPTH:
        item = QtWidgets.QTreeWidgetItem(parent, [key, ""])
        _add_children(item, value, depth)
    elif isinstance(value, (list, tuple)) and len(value) > MAX_LIST_ITEMS:
        head = _short(list(value[:MAX_LIST_ITEMS]))[:MAX_TEXT]
        item = QtWidgets.QTreeWidgetItem(parent, [key, f"[{len(value)} items] {head}"])
    else:
        item = QtWidgets.QTreeWidgetItem(parent, [key, _short(value)])
    item.setToolTip(1, item.text(1))


def fill_metadata_tree(tree: QtWidgets.QTreeWidget, metadata: dict) -> None:
    """Fill `tree` (2 columns: key, value) from a nested dict, capping long values/lists."""
    tree.setUpdatesEnabled(False)
    try:
        tree.clear()
        root = tree.invisibleRootItem()
        if metadata:
            _add_children(root, metadata, 0)
        tree.expandToDepth(0)
    finally:
        tree.setUpdatesEnabled(True)


class InfoDock(QtWidgets.QDockWidget):
    """Information about the open micrograph.

    Signals: ``channelRequested(str)`` when the user picks another channel;
    ``setPixelSizeRequested()`` from the calibration notice's button.
    """

    channelRequested = QtCore.pyqtSignal(str)
    setPixelSizeRequested = QtCore.pyqtSignal()

    def __init__(self, parent=None):
        super().__init__("Info", parent)
        self.setObjectName("InfoDock")
        body = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)

        self.calibration_notice = QtWidgets.QFrame()
        self.calibration_notice.setStyleSheet(
            "QFrame { background: #fff3cd; border: 1px solid #e0c060; border-radius: 4px; }"
            "QLabel { border: none; color: #5c4400; }")
        nl = QtWidgets.QHBoxLayout(self.calibration_notice)
        nl.addWidget(QtWidgets.QLabel("<b>No pixel size</b> in this file: positions are in "
                                      "pixels and there is no scale bar."), 1)
        self.set_px_button = QtWidgets.QPushButton("Set pixel size…")
        self.set_px_button.clicked.connect(self.setPixelSizeRequested)
        nl.addWidget(self.set_px_button)
        self.calibration_notice.findChild(QtWidgets.QLabel).setWordWrap(True)
        self.calibration_notice.hide()
        lay.addWidget(self.calibration_notice)

        self.summary_label = QtWidgets.QLabel("No image open.")
        self.summary_label.setTextFormat(QtCore.Qt.RichText)  # an escaped table
        self.summary_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.summary_label.setWordWrap(True)
        lay.addWidget(self.summary_label)

        self.channel_row = QtWidgets.QWidget()
        cl = QtWidgets.QHBoxLayout(self.channel_row)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(QtWidgets.QLabel("Channel:"))
        self.channel_combo = QtWidgets.QComboBox()
        self.channel_combo.activated.connect(self._on_channel)
        cl.addWidget(self.channel_combo, 1)
        self.channel_row.hide()
        lay.addWidget(self.channel_row)

        self.name_hints_label = QtWidgets.QLabel()  # what the file name says (atomlens.io.filename_hints)
        self.name_hints_label.setTextFormat(QtCore.Qt.RichText)
        self.name_hints_label.setWordWrap(True)
        self.name_hints_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.name_hints_label.hide()
        lay.addWidget(self.name_hints_label)

        self.notes_label = notes_label()
        lay.addWidget(self.notes_label)

        self.tree = QtWidgets.QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Metadata", "Value"])
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(0, QtWidgets.QHeaderView.Interactive)
        self.tree.setColumnWidth(0, 170)
        lay.addWidget(self.tree, 1)
        self.setWidget(body)

    def set_micrograph(self, mg, warnings: list[str] | None = None) -> None:
        self.update_summary(mg)
        channels = list(mg.channels or [])
        self.channel_combo.clear()
        if len(channels) > 1:
            self.channel_combo.addItems(channels)
            if mg.channel in channels:
                self.channel_combo.setCurrentIndex(channels.index(mg.channel))
            self.channel_row.show()
        else:
            self.channel_row.hide()
        self.set_notes(list(mg.notes) + [w for w in (warnings or []) if w not in mg.notes])
        self.set_name_hints(mg)
        fill_metadata_tree(self.tree, mg.metadata or {})

    def update_summary(self, mg) -> None:
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
            for k, v in mg.summary().items())
        self.summary_label.setText(f"<table>{rows}</table>")
        self.calibration_notice.setVisible(not mg.calibrated)

    def set_name_hints(self, mg) -> None:
        """List what the file name of `mg` says (scan size, bias, setpoint, mode), used or not."""
        hints = []
        if mg.path is not None:
            from atomlens.workflows.analyse import hints_from_name

            hints = hints_from_name(mg.path.name, mode=mg.mode, shape=mg.shape).hints
        self.name_hints = [h.describe() for h in hints]
        said = html.escape("; ".join(self.name_hints), quote=False)
        self.name_hints_label.setText(f"<b>The file name says</b>: {said}")
        self.name_hints_label.setVisible(bool(hints))

    def set_notes(self, notes: list[str]) -> None:
        self.notes = list(notes)
        self.notes_label.setText(notes_html(notes))
        self.notes_label.setVisible(bool(notes))

    def _on_channel(self, index: int) -> None:
        self.channelRequested.emit(self.channel_combo.itemText(index))
