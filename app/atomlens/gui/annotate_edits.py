"""The edits of annotate mode as undo steps: :class:`AnnotateEdits`, a mixin of
:class:`~atomlens.gui.annotate.AnnotateController`.

Each public method changes ``self.ann`` through one :class:`~atomlens.gui.annotate_view.FnCommand`
pushed on ``self.undo_stack`` (pushing runs it), so every edit is one undo step.
"""

from __future__ import annotations

import numpy as np

from .annotate_types import check_types, store_default_types
from .annotate_view import FnCommand

__all__ = ["AnnotateEdits"]


class AnnotateEdits:
    """Undoable edits of the annotations (needs ``ann``, ``undo_stack``, ``current_class``,
    ``class_combo``, ``defect_combo``, ``hovered``, ``active`` and ``w`` of the controller)."""

    def _push(self, text, do, undo, after=None) -> None:
        self.undo_stack.push(FnCommand(text, do, undo, after))

    def class_key(self, k: int) -> None:
        """Number key `k`: choose class k; relabel the atom under the cursor."""
        if self.ann is None or k >= len(self.ann.class_names):
            return
        self.current_class = k
        self.class_combo.setCurrentIndex(k - 1)
        if self.hovered is not None and self.active:
            self.relabel([self.hovered], k)

    # ------------------------------------------------------------------ atoms
    def add_atom(self, x: float, y: float, cls: int | None = None) -> None:
        ann, c = self.ann, self.current_class if cls is None else cls
        state = {}

        def do():
            state["i"] = ann.add_atom(x, y, c)

        self._push("Add atom", do, lambda: ann.remove_atoms([state["i"]]))

    def delete(self, atoms=(), defects=()) -> None:
        ann = self.ann
        atoms = [int(i) for i in atoms]
        defects = sorted(int(i) for i in defects)
        if not atoms and not defects:
            return
        state = {}

        def do():
            state["rows"] = ann.remove_atoms(atoms) if atoms else None
            state["defects"] = [(i, ann.remove_defect(i)) for i in reversed(defects)]

        def undo():
            for i, d in reversed(state["defects"]):
                ann.insert_defect(i, d)
            if state["rows"] is not None:
                ann.insert_atoms(state["rows"])

        n = len(atoms) + len(defects)
        self._push(f"Delete {n} item{'s' if n != 1 else ''}", do, undo)

    def _keep(self, idx):
        ann = self.ann
        return ann.source[idx].copy(), ann.reviewed[idx].copy()

    def _restore(self, idx, kept) -> None:
        self.ann.source[idx], self.ann.reviewed[idx] = kept

    def move(self, i: int, x: float, y: float, old=None) -> None:
        ann = self.ann
        old = old or (float(ann.x[i]), float(ann.y[i]))
        kept = self._keep([i])

        def undo():
            ann.move_atom(i, *old)
            self._restore([i], kept)

        self._push("Move atom", lambda: ann.move_atom(i, x, y), undo)

    def relabel(self, indices, cls: int) -> None:
        ann = self.ann
        idx = np.asarray(indices, np.int64)
        kept, state = self._keep(idx), {}

        def do():
            state["old"] = ann.set_class(idx, cls)

        def undo():
            ann.set_class(idx, state["old"])
            self._restore(idx, kept)

        self._push(f"Set class {ann.class_names[cls]}", do, undo)

    def import_points(self, points, replace: bool = True, cls: int | None = None) -> None:
        """Take the atoms of `points` (a :class:`~atomlens.analysis.point_lists.PointList`)
        as confirmed user atoms, replacing (`replace`) or adding to the atoms there are; one
        undo step.  Points without a class get `cls` (default: the current class).  Raises
        :class:`~atomlens.analysis.point_lists.PointListError` with nothing changed."""
        ann = self.ann
        old = ann.import_points(points, self.current_class if cls is None else cls, replace)
        new = ann.atom_state()
        state = {"first": True}

        def do():
            if state.pop("first", False):  # done above (where a bad list raises before any change)
                return
            ann.restore_atom_state(new)

        n = len(points)
        self._push(f"Import {n} atom{'s' if n != 1 else ''}", do, lambda: ann.restore_atom_state(old))

    # ------------------------------------------------------------------ defects
    def add_defect(self, x: float, y: float, type_name: str | None = None, w: float | None = None,
                   h: float | None = None) -> None:
        """Mark a defect of `type_name` (default: the current type) centred at (`x`, `y`) px: a
        point, or a box `w` x `h` px when both are given."""
        ann = self.ann
        box = w is not None and h is not None
        d = {"x": x, "y": y, "type": type_name or self.defect_combo.currentText() or "vacancy",
             "w": float(w) if box else None, "h": float(h) if box else None}
        state = {}

        def do():
            state["i"] = ann.add_defect(d)

        what = f"{d['type']} box" if box else d["type"]
        self._push(f"Mark {what}", do, lambda: ann.remove_defect(state["i"]))

    def set_defect_types(self, types: list, renames: dict | None = None) -> None:
        """Make `types` (list of ``{"name", "colour"}``) the defect types, renaming the defects
        of each old type in `renames` ({old: new}); one undo step.  The list also becomes the
        default for new annotations (the window's settings; undo puts the previous one back).

        Without annotations only the default is changed.  Raises ValueError for invalid names
        and when defects would be left with a type not in `types` (nothing is changed then)."""
        types = check_types(types)
        renames = {str(k): str(v) for k, v in (renames or {}).items() if k != v}
        settings = getattr(self.w, "settings", None)
        ann = self.ann
        if ann is None:
            store_default_types(settings, types)
            return
        names = {t["name"] for t in types}
        left = sorted({renames.get(d["type"], d["type"]) for d in ann.defects} - names)
        if left:
            raise ValueError(f"defects of type {', '.join(map(repr, left))} would have no type; "
                             f"rename the type or delete those defects first")
        old_types = [dict(t) for t in ann.defect_types]
        old_names = [d["type"] for d in ann.defects]
        state = {}

        def do():
            state["follow"] = renames  # the type chosen in the toolbar follows its renaming
            ann.defect_types = [dict(t) for t in types]
            for d in ann.defects:
                d["type"] = renames.get(d["type"], d["type"])
            ann.edits += 1
            store_default_types(settings, types)

        def undo():
            state["follow"] = {v: k for k, v in renames.items()}
            ann.defect_types = [dict(t) for t in old_types]
            for d, name in zip(ann.defects, old_names):
                d["type"] = name
            ann.edits += 1
            store_default_types(settings, old_types)

        def after():
            current = self.defect_combo.currentText()
            self._fill_combos(state["follow"].get(current, current))

        self._push("Edit defect types", do, undo, after)
