"""The structure and defect parts of the retrain settings (:mod:`.retrain_settings`): the custom
unit cell table, the CIF / ASE file panel with its zone axis, and the defect rows; plus the small
spin-box helpers the settings forms share.

Lengths in the cell are in Å (as in the simulation); the panels never talk to the training
code, they only return plain values.
"""

from __future__ import annotations

import math

from PyQt5 import QtWidgets

from ..workflows.finetune import DEFAULT_AMOUNT_KEY, variant_for

__all__ = ["DEFECT_ROWS", "STRUCTURE_NAMES", "CifPanel", "CustomCellPanel", "DefectsGroup", "dspin", "ispin",
           "range_top"]

#: The named structures the simulation knows (offered in the structure list).
STRUCTURE_NAMES = ("graphene", "hbn", "MoS2", "WS2", "MoSe2", "WSe2", "SrTiO3", "fcc", "Si110", "single_atoms")
#: (simulation key, label, default amount, takes an element, default element)
DEFECT_ROWS = (("vacancy", "Vacancy", 0.03, False, ""), ("partial_vacancy", "Partial vacancy", 0.03, False, ""),
               ("dopant", "Dopant (substitution)", 0.05, True, "Si"), ("multi_vacancy", "Vacancy cluster", 1, False, ""),
               ("stone_wales", "Stone–Wales", 1, False, ""), ("adatom", "Adatom", 2, True, "C"),
               ("hole", "Hole", 0.1, False, ""), ("edge", "Edge", 0.1, False, ""),
               ("grain_boundary", "Grain boundary", 0.1, False, ""), ("contamination", "Contamination", 0.15, False, ""),
               ("strain", "Strain", 0.15, False, ""))
_AMOUNT = {"rate": ("max. fraction of sites", 1.0), "n": ("max. number per image", 50.0),
           "prob": ("chance per image", 1.0), "amplitude_A": ("max. amplitude (Å)", 2.0)}


# ----------------------------------------------------------------------------- helpers
def range_top(v, default=0.0) -> float:
    """The upper end of a recipe range (or the value itself)."""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return float(max(v))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float(default)


def dspin(lo, hi, value, decimals=2, step=None, suffix="") -> QtWidgets.QDoubleSpinBox:
    """A QDoubleSpinBox with its range, value, decimals, step and suffix."""
    s = QtWidgets.QDoubleSpinBox()
    s.setDecimals(decimals)
    s.setRange(lo, hi)
    if step:
        s.setSingleStep(step)
    s.setSuffix(suffix)
    s.setValue(value)
    return s


def ispin(lo, hi, value, suffix="") -> QtWidgets.QSpinBox:
    """A QSpinBox with its range, value and suffix."""
    s = QtWidgets.QSpinBox()
    s.setRange(lo, hi)
    s.setSuffix(suffix)
    s.setValue(value)
    return s


# ----------------------------------------------------------------------------- panels
class CustomCellPanel(QtWidgets.QWidget):
    """A 2D unit cell: a, b, γ and a table of atoms (u, v as fractions of a and b, element).

    Starts as graphene's cell; hidden until the "Custom unit cell" structure is chosen.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        self.cell_a = dspin(0.5, 50.0, 2.46, 3, 0.01, " Å")
        self.cell_b = dspin(0.5, 50.0, 2.46, 3, 0.01, " Å")
        self.cell_gamma = dspin(10.0, 170.0, 120.0, 1, 1.0, "°")
        for lab, s in (("a", self.cell_a), ("b", self.cell_b), ("γ", self.cell_gamma)):
            row.addWidget(QtWidgets.QLabel(lab))
            row.addWidget(s)
        v.addLayout(row)
        self.sites_table = QtWidgets.QTableWidget(0, 3)
        self.sites_table.setHorizontalHeaderLabels(["u (frac. of a)", "v (frac. of b)", "element"])
        self.sites_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.sites_table.setFixedHeight(110)
        for site in ((1 / 3, 2 / 3, "C"), (2 / 3, 1 / 3, "C")):
            self.add_site(*site)
        v.addWidget(self.sites_table)
        row = QtWidgets.QHBoxLayout()
        add, rem = QtWidgets.QPushButton("Add atom"), QtWidgets.QPushButton("Remove atom")
        add.clicked.connect(lambda: self.add_site(0.5, 0.5, "C"))
        rem.clicked.connect(lambda: self.sites_table.removeRow(max(0, self.sites_table.currentRow())))
        row.addWidget(add)
        row.addWidget(rem)
        row.addStretch(1)
        v.addLayout(row)
        self.setVisible(False)

    def add_site(self, u: float, v: float, element: str) -> None:
        r = self.sites_table.rowCount()
        self.sites_table.insertRow(r)
        for c, val in enumerate((f"{u:.4f}", f"{v:.4f}", element)):
            self.sites_table.setItem(r, c, QtWidgets.QTableWidgetItem(val))

    def cell(self) -> dict:
        """``{"a1", "a2", "sites"}`` (Å) for the recipe; ValueError for unusable entries."""
        a, b, gamma = self.cell_a.value(), self.cell_b.value(), math.radians(self.cell_gamma.value())
        sites = []
        for r in range(self.sites_table.rowCount()):
            cells = [self.sites_table.item(r, c) for c in range(3)]
            texts = [c.text().strip() if c is not None else "" for c in cells]
            if not any(texts):
                continue
            try:
                u, v = float(texts[0]), float(texts[1])
            except ValueError:
                raise ValueError(f"custom cell, atom {r + 1}: u and v must be numbers (fractions of a and b)") from None
            sites.append({"frac": [u % 1.0, v % 1.0], "element": texts[2] or "C"})
        if not sites:
            raise ValueError("the custom unit cell needs at least one atom")
        return {"a1": [a, 0.0], "a2": [round(b * math.cos(gamma), 6), round(b * math.sin(gamma), 6)], "sites": sites}


class CifPanel(QtWidgets.QWidget):
    """A crystal file (CIF or anything ASE reads) and the zone axis it is projected along.

    Hidden until the "From a CIF / ASE file" structure is chosen.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.cif_edit = QtWidgets.QLineEdit()
        self.cif_edit.setPlaceholderText("a .cif (or any crystal file ASE reads)")
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse_cif)
        self.zone_edit = QtWidgets.QLineEdit("0 0 1")
        self.zone_edit.setToolTip("Zone axis [u v w]: the direction the beam goes through the crystal")
        self.cif_info = QtWidgets.QLabel()
        self.cif_info.setWordWrap(True)
        grid.addWidget(self.cif_edit, 0, 0)
        grid.addWidget(browse, 0, 1)
        grid.addWidget(QtWidgets.QLabel("Zone axis:"), 1, 0)
        grid.addWidget(self.zone_edit, 1, 1)
        grid.addWidget(self.cif_info, 2, 0, 1, 2)
        self.setVisible(False)

    def _browse_cif(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose a crystal structure", self.cif_edit.text(),
                                                        "Crystal files (*.cif *.xyz *.vasp *.pdb POSCAR*);;"
                                                        "All files (*)")
        if path:
            self.set_cif(path)

    def zone(self) -> tuple:
        """The zone axis as three integers; ValueError otherwise."""
        try:
            z = tuple(int(v) for v in self.zone_edit.text().replace(",", " ").split())
        except ValueError:
            z = ()
        if len(z) != 3 or not any(z):
            raise ValueError(f"the zone axis must be three integers such as '0 0 1', not {self.zone_edit.text()!r}")
        return z

    def set_cif(self, path) -> bool:
        """Use the crystal in `path` (read with ASE, projected along the zone axis); False
        with the reason shown when it cannot be read."""
        self.cif_edit.setText(str(path))
        try:
            from ..workflows.simulation import from_cif

            cell = from_cif(path, self.zone())
        except Exception as exc:  # noqa: BLE001 - any reader error becomes a message
            self.cif_info.setText(f"<span style='color:#c00'>Cannot use it: {exc}</span>")
            return False
        self.cif_info.setText(f"{cell.name}: {len(cell.sites)} columns in a "
                              f"{math.hypot(*cell.a1):.3g} × {math.hypot(*cell.a2):.3g} Å cell")
        return True

    def structure(self) -> dict:
        """``{"cif", "zone_axis"}`` for the settings; ValueError for a bad zone axis."""
        return {"cif": self.cif_edit.text().strip(), "zone_axis": self.zone()}


class DefectsGroup(QtWidgets.QGroupBox):
    """The defects drawn in the simulations: one row (check, amount, unit, element) per entry
    of :data:`DEFECT_ROWS`, kept in :attr:`rows` by simulation key."""

    def __init__(self, parent=None):
        super().__init__("Defects in the simulations", parent)
        grid = QtWidgets.QGridLayout(self)
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555")
        grid.addWidget(self.note, 0, 0, 1, 4)
        self.rows: dict[str, dict] = {}
        for i, (key, label, default, has_el, el) in enumerate(DEFECT_ROWS, start=1):
            check = QtWidgets.QCheckBox(label)
            spin = dspin(0.0, 1.0, default, 3, 0.01)
            unit = QtWidgets.QLabel()
            unit.setStyleSheet("color: #555")
            element = QtWidgets.QLineEdit(el)
            element.setPlaceholderText("element(s)")
            element.setVisible(has_el)
            element.setMaximumWidth(90)
            grid.addWidget(check, i, 0)
            grid.addWidget(spin, i, 1)
            grid.addWidget(unit, i, 2)
            grid.addWidget(element, i, 3)
            self.rows[key] = {"check": check, "spin": spin, "unit": unit, "element": element,
                              "has_element": has_el, "amount": None}

    def show_for(self, kind, sim: dict) -> None:
        """Fill the rows for the structure `kind` ("mix", "custom", "cif" or a name) from the
        base recipe's simulation `sim` (the defects of its variant for a named structure)."""
        mix = kind == "mix"
        for row in self.rows.values():
            for w in ("check", "spin", "element"):
                row[w].setEnabled(not mix)
        self.note.setText("With the base model's mix, each structure keeps the defects of the base recipe; "
                          "choose one structure to set them here." if mix else
                          "Each checked defect is drawn per image from 0 up to the amount given.")
        variant = {}
        if kind not in ("mix", "custom", "cif"):
            variant = variant_for(sim, kind)
        defects = variant.get("defects") or ({} if variant else {"vacancy": {"rate": [0, 0.03]}})
        for key, _label, default, _has, el in DEFECT_ROWS:
            row = self.rows[key]
            entry = defects.get(key, {})
            amount = next((k for k in ("rate", "n", "prob", "amplitude_A") if k in entry), None)
            amount = amount or DEFAULT_AMOUNT_KEY.get(key, "rate")
            row["amount"] = amount
            text, top = _AMOUNT[amount]
            row["unit"].setText(text)
            row["spin"].setRange(0.0, top)
            row["spin"].setDecimals(0 if amount == "n" else 3)
            row["spin"].setValue(range_top(entry.get(amount), default) if entry else default)
            row["check"].setChecked(bool(entry))
            e = entry.get("element")
            row["element"].setText(", ".join(e) if isinstance(e, list) else str(e or el))

    def chosen(self) -> dict:
        """``{sim key: {"value", "element"?}}`` of the checked defects."""
        defects = {}
        for key, row in self.rows.items():
            if row["check"].isChecked():
                defects[key] = {"value": row["spin"].value()}
                if row["has_element"]:
                    defects[key]["element"] = row["element"].text().strip()
        return defects
