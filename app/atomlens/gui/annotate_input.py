"""Mouse and keys of annotate mode: :class:`AnnotateInput`, a mixin of
:class:`~atomlens.gui.annotate.AnnotateController` (its event filter on the image view).

Left button: Add places an atom of the current class; Delete removes the atom or defect
clicked, or everything inside a dragged rectangle (atoms and defects whose centre lies in
it); Move drags an atom; Defect marks a point defect of the current type with a click, or a
box defect with a drag (the rectangle is shown, in the type's colour, while dragging).  A
press and release closer than half the pick radius count as a click.  Right-click on an atom:
relabel/delete.  Keys 1-9 choose the current class and relabel the atom under the cursor;
Delete/Backspace deletes it.  Esc during a drag cancels it.
"""

from __future__ import annotations

import traceback

import numpy as np
from PyQt5 import QtCore, QtWidgets

__all__ = ["AnnotateInput"]

_MOUSE_EVENTS = (QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseMove, QtCore.QEvent.MouseButtonRelease,
                 QtCore.QEvent.MouseButtonDblClick)


class AnnotateInput:
    """Event handling of annotate mode (needs the controller's ``w``, ``ann``, ``view``, ``tool``,
    ``hovered``, ``_viewport`` and its edit methods).

    ``_drag`` is None or the drag under way: ``("move", i, x0, y0)``, ``("band", x0, y0)``
    (Delete) or ``("box", x0, y0, x, y)`` (Defect; x, y the last position seen)."""

    def _view_pos(self, widget_pos):
        scene = self.w.image_view.graphics.mapToScene(widget_pos)
        vb = self.w.image_view.viewbox
        if not vb.sceneBoundingRect().contains(scene):
            return None
        p = vb.mapSceneToView(scene)
        return p.x(), p.y()

    def eventFilter(self, obj, event) -> bool:
        if not self.active:
            return False
        try:
            if obj is self._viewport:
                return self._mouse(event)
            if self._drag is not None and event.type() in (QtCore.QEvent.ShortcutOverride, QtCore.QEvent.KeyPress) \
                    and event.key() == QtCore.Qt.Key_Escape:
                event.accept()  # Esc ends the drag here, not the analysis (its shortcut)
                if event.type() == QtCore.QEvent.KeyPress:
                    self.cancel_drag()
                return True
            if event.type() == QtCore.QEvent.KeyPress and QtCore.Qt.Key_1 <= event.key() <= QtCore.Qt.Key_9 \
                    and not event.modifiers() & ~QtCore.Qt.KeypadModifier:
                self.class_key(event.key() - QtCore.Qt.Key_0)
                return True
            if event.type() == QtCore.QEvent.KeyPress and event.key() in (QtCore.Qt.Key_Delete,
                                                                        QtCore.Qt.Key_Backspace) \
                    and self.hovered is not None:
                self.delete(atoms=[self.hovered])
                return True
        except Exception as exc:  # noqa: BLE001 - never let an edit crash the GUI
            traceback.print_exc()
            self.w.statusBar().showMessage(f"Annotation edit failed: {exc}", 10000)
            self._drag = None
            self.view.set_band(None, None)
        return False

    def _mouse(self, event) -> bool:
        t = event.type()
        if t not in _MOUSE_EVENTS:
            return False
        pos = self._view_pos(event.pos())
        if t == QtCore.QEvent.MouseMove:
            return self._mouse_move(event, pos)
        if event.button() == QtCore.Qt.RightButton and t == QtCore.QEvent.MouseButtonPress and pos is not None:
            i = self.view.nearest_atom(*pos)
            if i is not None:
                self._context_menu(i, event.globalPos())
                return True
            return False
        if event.button() != QtCore.Qt.LeftButton:
            return False
        if t == QtCore.QEvent.MouseButtonPress:
            self._press_used = pos is not None and self._press(pos)
            return self._press_used
        if t == QtCore.QEvent.MouseButtonRelease:
            used, self._press_used = self._press_used, False
            self._release(pos)
            return used
        return self._press_used or self._drag is not None  # double clicks

    def _mouse_move(self, event, pos) -> bool:
        drag = self._drag
        if drag is None:
            if pos is not None and not event.buttons():
                self.hovered = self.view.nearest_atom(*pos)
                self.view.set_hover(self.hovered)
            return False
        if pos is None:
            return True
        if drag[0] == "move":
            i = drag[1]
            self.ann.x[i], self.ann.y[i] = pos  # preview; the command is pushed on release
            self.view.refresh()
            self.view.set_hover(i)
        elif drag[0] == "box":
            self._drag = (*drag[:3], *pos)
            self.view.set_band(drag[1:3], pos, self.defect_colour())
        else:
            self.view.set_band(drag[1:3], pos)
        return True

    def _press(self, pos) -> bool:
        """Left press at `pos`; False when it is left to the view (a Move press off the atoms pans)."""
        x, y = pos
        if self.tool == "add":
            self.add_atom(x, y)
        elif self.tool == "defect":
            self._drag = ("box", x, y, x, y)
        elif self.tool == "move":
            i = self.view.nearest_atom(x, y)
            if i is None:
                return False
            self._drag = ("move", i, float(self.ann.x[i]), float(self.ann.y[i]))
        elif self.tool == "delete":
            self._drag = ("band", x, y)
        return True

    def _is_click(self, x0, y0, pos) -> bool:
        return np.hypot(pos[0] - x0, pos[1] - y0) < 0.5 * self.view.pick_radius()

    def cancel_drag(self) -> None:
        """Esc during a drag: the moved atom goes back, the rectangle goes away, nothing is
        changed (the button's release is then ignored)."""
        drag, self._drag = self._drag, None
        if drag is None:
            return
        if drag[0] == "move":
            i, x0, y0 = drag[1:]
            self.ann.x[i], self.ann.y[i] = x0, y0
            self.view.refresh()
        self.view.set_band(None, None)
        self.w.statusBar().showMessage("Cancelled", 2000)

    def _release(self, pos) -> None:
        drag, self._drag = self._drag, None
        if drag is None:
            return
        if drag[0] == "move":
            i, x0, y0 = drag[1:]
            x, y = pos if pos is not None else (x0, y0)
            self.ann.x[i], self.ann.y[i] = x0, y0
            if (x, y) != (x0, y0):
                self.move(i, x, y)
            else:
                self.view.refresh()
            return
        self.view.set_band(None, None)
        x0, y0 = drag[1:3]
        if drag[0] == "box":
            x1, y1 = pos if pos is not None else drag[3:5]  # released outside: the last position seen
            if self._is_click(x0, y0, (x1, y1)):
                self.add_defect(x0, y0)
            else:
                self.add_defect(0.5 * (x0 + x1), 0.5 * (y0 + y1), w=abs(x1 - x0), h=abs(y1 - y0))
            return
        if pos is None or self._is_click(x0, y0, pos):
            i = self.view.nearest_atom(x0, y0)
            if i is not None:
                self.delete(atoms=[i])
            else:
                j = self.view.nearest_defect(x0, y0)
                if j is not None:
                    self.delete(defects=[j])
            return
        xa, xb = sorted((x0, pos[0]))
        ya, yb = sorted((y0, pos[1]))
        ann = self.ann
        atoms = np.flatnonzero((ann.x >= xa) & (ann.x <= xb) & (ann.y >= ya) & (ann.y <= yb))
        defects = [k for k, d in enumerate(ann.defects) if xa <= d["x"] <= xb and ya <= d["y"] <= yb]
        self.delete(atoms=atoms, defects=defects)

    def _context_menu(self, i: int, global_pos) -> None:
        ann = self.ann
        menu = QtWidgets.QMenu(self.w)
        menu.addSection(f"Atom {i}: {ann.class_names[ann.cls[i]]} ({ann.source[i]})")
        for k, name in enumerate(ann.class_names[1:], 1):
            act = menu.addAction(f"Set class &{k}: {name}", lambda k=k: self.relabel([i], k))
            act.setEnabled(bool(k != ann.cls[i]))
        menu.addSeparator()
        menu.addAction("&Delete atom", lambda: self.delete(atoms=[i]))
        menu.exec_(global_pos)
