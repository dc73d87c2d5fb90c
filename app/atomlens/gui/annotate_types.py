"""The defect types of annotate mode: :class:`DefectTypesDialog` to add, rename, recolour and
remove them, and the list kept in the window's settings as the default for new annotations.

The dialog only edits its own copy of the list; the caller applies the result
(:meth:`DefectTypesDialog.types` and :meth:`DefectTypesDialog.renames`), e.g. with
:meth:`~atomlens.gui.annotate_edits.AnnotateEdits.set_defect_types`.  Every change is
checked at once: names must be non-empty and unique (ignoring case), and a type still used by
defects cannot be removed (it can be renamed: its defects follow).
"""

from __future__ import annotations

import json

from PyQt5 import QtCore, QtGui, QtWidgets

from ..analysis.colours import COLOUR_CYCLE as _CYCLE

__all__ = ["SETTINGS_KEY", "DefectTypesDialog", "check_types", "default_types", "store_default_types"]

#: QSettings key of the default defect types (a JSON list of {"name", "colour"}).
SETTINGS_KEY = "annotate/defect_types"


def _colour(colour) -> str:
    c = QtGui.QColor(colour)
    if not c.isValid():
        raise ValueError(f"{colour!r} is not a colour")
    return c.name()


def _name_error(name: str, others) -> str:
    """Why `name` cannot be a defect type besides `others` ("" when it can)."""
    if not name:
        return "A defect type needs a name."
    if name.casefold() in {o.casefold() for o in others}:
        return f"There is already a defect type called {name!r}."
    return ""


def check_types(types) -> list[dict]:
    """`types` as a clean list of ``{"name", "colour": "#rrggbb"}``; raises ValueError for an
    empty or repeated name or an invalid colour."""
    out = []
    for t in types:
        name = str(t["name"]).strip()
        err = _name_error(name, [o["name"] for o in out])
        if err:
            raise ValueError(err)
        out.append({"name": name, "colour": _colour(t.get("colour", "#ffffff"))})
    return out


def default_types(settings) -> list[dict] | None:
    """The defect types stored in `settings`, or None (none stored, or unreadable)."""
    raw = settings.value(SETTINGS_KEY) if settings is not None else None
    if not raw:
        return None
    try:
        return check_types(json.loads(raw)) or None
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def store_default_types(settings, types) -> None:
    """Keep `types` in `settings` as the default for new annotations."""
    if settings is not None:
        settings.setValue(SETTINGS_KEY, json.dumps([{"name": t["name"], "colour": t["colour"]} for t in types]))
        settings.sync()


def _swatch(colour: str) -> QtGui.QIcon:
    pix = QtGui.QPixmap(14, 14)
    pix.fill(QtGui.QColor(colour))
    return QtGui.QIcon(pix)


class DefectTypesDialog(QtWidgets.QDialog):
    """Edit a list of defect types (name and colour).

    Parameters: `types` (list of ``{"name", "colour"}``), `used` ({type name: number of
    defects}).  Methods :meth:`add_type`, :meth:`rename_type`, :meth:`set_colour` and
    :meth:`remove_type` change the list (the buttons call them) and return False, with the
    reason in ``message``, when refused; :meth:`types` and :meth:`renames` give the result.
    """

    def __init__(self, types, used: dict | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Defect types")
        self.used = {k: int(v) for k, v in (used or {}).items() if v}
        # each row remembers the name it had when the dialog opened ("orig"; None for new types)
        self._rows = [{"name": t["name"], "colour": _colour(t.get("colour", "#ffffff")), "orig": t["name"]}
                      for t in check_types(types)]
        self.list = QtWidgets.QListWidget()
        self.list.itemDoubleClicked.connect(lambda _: self._ask_rename())
        self.add_button = QtWidgets.QPushButton("&Add…")
        self.rename_button = QtWidgets.QPushButton("Re&name…")
        self.colour_button = QtWidgets.QPushButton("&Colour…")
        self.remove_button = QtWidgets.QPushButton("&Remove")
        self.add_button.clicked.connect(self._ask_add)
        self.rename_button.clicked.connect(self._ask_rename)
        self.colour_button.clicked.connect(self._ask_colour)
        self.remove_button.clicked.connect(lambda: self.remove_type(self.current_name()))
        buttons = QtWidgets.QVBoxLayout()
        for b in (self.add_button, self.rename_button, self.colour_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d04040")
        self.button_box = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok
                                                     | QtWidgets.QDialogButtonBox.Cancel)
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(buttons)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(self.button_box)
        self._refill()

    # ------------------------------------------------------------------ result
    def types(self) -> list[dict]:
        """The edited list of ``{"name", "colour"}``."""
        return [{"name": r["name"], "colour": r["colour"]} for r in self._rows]

    def renames(self) -> dict:
        """{old name: new name} of the types renamed."""
        return {r["orig"]: r["name"] for r in self._rows if r["orig"] is not None and r["orig"] != r["name"]}

    def names(self) -> list[str]:
        return [r["name"] for r in self._rows]

    def current_name(self) -> str | None:
        row = self.list.currentRow()
        return self._rows[row]["name"] if 0 <= row < len(self._rows) else None

    # ------------------------------------------------------------------ changes
    def add_type(self, name: str, colour: str | None = None) -> bool:
        """Append a type (colour: the next unused one of the palette by default)."""
        name = str(name).strip()
        if not self._ok(_name_error(name, self.names())):
            return False
        if colour is None:
            taken = {r["colour"] for r in self._rows}
            colour = next((c for c in _CYCLE if QtGui.QColor(c).name() not in taken), "#ffffff")
        try:
            colour = _colour(colour)
        except ValueError as exc:
            return self._ok(str(exc))
        self._rows.append({"name": name, "colour": colour, "orig": None})
        self._refill(len(self._rows) - 1)
        return self._ok("")

    def rename_type(self, old: str, new: str) -> bool:
        """Rename type `old` to `new` (its defects are renamed when the result is applied)."""
        row = self._row(old)
        if row is None:
            return False
        new = str(new).strip()
        others = [n for n in self.names() if n != old]
        if not self._ok(_name_error(new, others)):
            return False
        self._rows[row]["name"] = new
        self._refill(row)
        return self._ok("")

    def set_colour(self, name: str, colour) -> bool:
        row = self._row(name)
        if row is None:
            return False
        try:
            self._rows[row]["colour"] = _colour(colour)
        except ValueError as exc:
            return self._ok(str(exc))
        self._refill(row)
        return self._ok("")

    def remove_type(self, name: str | None) -> bool:
        """Remove a type; refused while defects use it, and for the last type."""
        row = self._row(name)
        if row is None:
            return False
        n = self.used.get(self._rows[row]["orig"], 0) if self._rows[row]["orig"] is not None else 0
        if n:
            return self._ok(f"{name!r} is used by {n} defect{'s' if n != 1 else ''}: delete "
                            f"{'them' if n != 1 else 'it'} first, or rename the type instead.")
        if len(self._rows) == 1:
            return self._ok("At least one defect type is needed.")
        del self._rows[row]
        self._refill(min(row, len(self._rows) - 1))
        return self._ok("")

    # ------------------------------------------------------------------ helpers
    def _ok(self, error: str) -> bool:
        self.message.setText(error)
        return not error

    def _row(self, name) -> int | None:
        names = self.names()
        if name not in names:
            self._ok(f"There is no defect type {name!r}." if name else "Choose a defect type first.")
            return None
        return names.index(name)

    def _refill(self, current: int = 0) -> None:
        self.list.clear()
        for r in self._rows:
            n = self.used.get(r["orig"], 0) if r["orig"] is not None else 0
            text = r["name"] + (f"  ({n} defect{'s' if n != 1 else ''})" if n else "")
            if r["orig"] is not None and r["orig"] != r["name"]:
                text += f"  (was {r['orig']})"
            self.list.addItem(QtWidgets.QListWidgetItem(_swatch(r["colour"]), text))
        if self._rows:
            self.list.setCurrentRow(max(0, min(current, len(self._rows) - 1)))

    def _ask_add(self) -> None:
        name, ok = QtWidgets.QInputDialog.getText(self, "Add defect type", "Name:")
        if ok and self.add_type(name):
            row = len(self._rows) - 1
            colour = QtWidgets.QColorDialog.getColor(QtGui.QColor(self._rows[row]["colour"]), self,
                                                     f"Colour of {self._rows[row]['name']}")
            if colour.isValid():
                self.set_colour(self._rows[row]["name"], colour.name())

    def _ask_rename(self) -> None:
        old = self.current_name()
        if old is None:
            return
        new, ok = QtWidgets.QInputDialog.getText(self, "Rename defect type", f"New name for {old!r}:",
                                                 QtWidgets.QLineEdit.Normal, old)
        if ok:
            self.rename_type(old, new)

    def _ask_colour(self) -> None:
        name = self.current_name()
        if name is None:
            return
        colour = QtWidgets.QColorDialog.getColor(QtGui.QColor(self._rows[self._row(name)]["colour"]), self,
                                                 f"Colour of {name}")
        if colour.isValid():
            self.set_colour(name, colour.name())

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(360, 300)
