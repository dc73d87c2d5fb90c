"""Small dialogs: error boxes, the pixel-size dialog and About."""

from __future__ import annotations

from PyQt5 import QtCore, QtWidgets

from .._version import __version__
from ..workflows.analyse import units_nm

__all__ = ["show_error", "PixelSizeDialog", "ask_px_size_nm", "show_about", "UNITS_TO_NM"]

#: Units offered for the pixel size, with their value in nm.
UNITS_TO_NM = units_nm("pm", "Å", "nm")


def show_error(parent, title: str, text: str, details: str | None = None) -> QtWidgets.QMessageBox:
    """A modal critical message box; `details` (e.g. a traceback) go behind "Show Details..."."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Critical)
    box.setWindowTitle(title)
    box.setText(text)
    if details:
        box.setInformativeText("This looks like a bug in AtomLens; the details may help to fix it.")
        box.setDetailedText(details)
    box.setStandardButtons(QtWidgets.QMessageBox.Ok)
    box.exec_()
    return box


class PixelSizeDialog(QtWidgets.QDialog):
    """Ask for a pixel size, in pm, Å or nm. :meth:`px_size_nm` gives the answer in nm."""

    def __init__(self, parent=None, current_nm: float | None = None, name: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Set pixel size")
        lay = QtWidgets.QVBoxLayout(self)
        msg = "Size of one pixel"
        if name:
            msg += f" of {name}"
        lay.addWidget(QtWidgets.QLabel(msg + " (along x; square pixels are assumed):"))
        row = QtWidgets.QHBoxLayout()
        self.spin = QtWidgets.QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setRange(1e-4, 1e6)
        self.spin.setMinimumWidth(120)
        self.unit = QtWidgets.QComboBox()
        self.unit.addItems(list(UNITS_TO_NM))
        row.addWidget(self.spin, 1)
        row.addWidget(self.unit)
        lay.addLayout(row)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self._last_unit = "pm"
        self.unit.setCurrentText("pm")
        self.spin.setValue((current_nm if current_nm else 0.01) * 1000.0)
        self.unit.currentTextChanged.connect(self._convert_unit)

    def _convert_unit(self, unit: str) -> None:
        nm = self.spin.value() * UNITS_TO_NM[self._last_unit]
        self._last_unit = unit
        self.spin.setValue(nm / UNITS_TO_NM[unit])

    def px_size_nm(self) -> float:
        return self.spin.value() * UNITS_TO_NM[self.unit.currentText()]


def ask_px_size_nm(parent, current_nm: float | None = None, name: str = "") -> float | None:
    """Show :class:`PixelSizeDialog`; the pixel size in nm, or None if cancelled."""
    dlg = PixelSizeDialog(parent, current_nm, name)
    if dlg.exec_() == QtWidgets.QDialog.Accepted:
        return dlg.px_size_nm()
    return None


def show_about(parent) -> None:
    QtWidgets.QMessageBox.about(
        parent, "About AtomLens",
        f"<h3>AtomLens {__version__}</h3>"
        "<p>Find, classify and correct atom columns in atomically resolved STEM and STM "
        "images.</p>"
        f"<p>Qt {QtCore.QT_VERSION_STR}, PyQt {QtCore.PYQT_VERSION_STR}</p>")
