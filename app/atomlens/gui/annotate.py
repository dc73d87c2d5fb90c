"""Annotate mode: correct the atoms and mark defects by pointing and clicking.

:class:`AnnotateController` owns the :class:`~atomlens.analysis.annotations.Annotations` of
the open image, the Annotate toolbar (tools Add, Delete, Move, Defect; class and defect type
selectors), the undo stack (every edit is a :class:`QUndoCommand`) and the autosave to the
image's sidecar ``<image>.atomlens.json`` (2 s after the last edit, on image change and on
closing the window).

Mouse (in annotate mode, left button): Add places an atom of the current class; Delete removes
the atom or defect clicked, or everything inside a dragged rectangle; Move drags an atom;
Defect places a point defect of the current type.  Right-click on an atom: relabel/delete.
Keys 1-9 choose the current class and relabel the atom under the cursor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from ..analysis.annotations import (
    Annotations,
    export_training_pair,
    file_sha256,
    load_sidecar,
    save_sidecar,
)
from .annotate_view import AnnotationsView, FnCommand

__all__ = ["AUTOSAVE_MS", "AnnotateController"]

AUTOSAVE_MS = 2000
TOOLS = (("add", "Add", "Add an atom of the current class (click)"),
         ("delete", "Delete", "Delete an atom or defect (click), or all inside a rectangle (drag)"),
         ("move", "Move", "Drag an atom to a new position"),
         ("defect", "Defect", "Mark a point defect of the current type (click)"))


class AnnotateController(QtCore.QObject):
    """Annotate mode of one :class:`MainWindow`.

    Attributes: ``ann`` (the Annotations or None), ``undo_stack``, ``view``
    (:class:`AnnotationsView`), ``tool`` ("add", "delete", "move", "defect"), ``current_class``
    (index into ``ann.class_names``), ``act_toggle``, ``act_export``, ``act_undo``, ``act_redo``.

    Signals: ``saved(str)`` with the sidecar path after each save, ``activeChanged(bool)``.
    """

    saved = QtCore.pyqtSignal(str)
    activeChanged = QtCore.pyqtSignal(bool)

    def __init__(self, window):
        super().__init__(window)
        self.w = window
        self.ann: Annotations | None = None
        self.image_path: Path | None = None
        self.tool = "add"
        self.current_class = 1
        self.hovered = None
        self._drag = None  # ("move", i, x0, y0) or ("band", x0, y0)
        self._press_used = False
        self.view = AnnotationsView(window.image_view.viewbox, self)
        self.undo_stack = QtWidgets.QUndoStack(self)
        self.undo_stack.indexChanged.connect(self._on_edited)
        self.timer = QtCore.QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.save)
        self._build_actions()
        self._build_toolbar()
        self._viewport = window.image_view.graphics.viewport()
        self._viewport.installEventFilter(self)
        window.image_view.graphics.installEventFilter(self)
        window.imageLoaded.connect(self._on_image_loaded)
        window.image_view.frameChanged.connect(self._on_frame_changed)

    # ================================================================= UI
    def _build_actions(self) -> None:
        w = self.w
        self.act_toggle = QtWidgets.QAction("&Annotate mode", w, checkable=True)
        self.act_toggle.setShortcut(QtGui.QKeySequence("E"))
        self.act_toggle.setStatusTip("Correct atoms and mark defects by clicking (E)")
        self.act_toggle.toggled.connect(self.set_active)
        self.act_undo = self.undo_stack.createUndoAction(w, "&Undo")
        self.act_undo.setShortcut(QtGui.QKeySequence("Ctrl+Z"))
        self.act_redo = self.undo_stack.createRedoAction(w, "&Redo")
        self.act_redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"), QtGui.QKeySequence("Ctrl+Y")])
        self.act_export = QtWidgets.QAction("Export as &training data…", w)
        self.act_export.triggered.connect(lambda: self.export_training())
        self.act_save = QtWidgets.QAction("&Save annotations now", w)
        self.act_save.triggered.connect(lambda: self.save())
        self.tool_group = QtWidgets.QActionGroup(self)
        self.tool_actions = {}
        for key, text, tip in TOOLS:
            act = QtWidgets.QAction(text, w, checkable=True)
            act.setStatusTip(tip)
            act.setToolTip(tip)
            act.triggered.connect(lambda _=False, k=key: self.set_tool(k))
            self.tool_group.addAction(act)
            self.tool_actions[key] = act
        self.tool_actions["add"].setChecked(True)
        self.class_actions = []
        for k in range(1, 10):
            act = QtWidgets.QAction(f"Class {k}", w)
            act.setShortcut(QtGui.QKeySequence(str(k)))
            act.triggered.connect(lambda _=False, k=k: self.class_key(k))
            act.setEnabled(False)
            w.addAction(act)
            self.class_actions.append(act)
        self._update_enabled()

    def _build_toolbar(self) -> None:
        tb = self.toolbar = QtWidgets.QToolBar("Annotate", self.w)
        tb.setObjectName("AnnotateToolBar")
        for act in self.tool_actions.values():
            tb.addAction(act)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" Class: "))
        self.class_combo = QtWidgets.QComboBox()
        self.class_combo.currentIndexChanged.connect(self._on_class_combo)
        tb.addWidget(self.class_combo)
        tb.addWidget(QtWidgets.QLabel(" Defect: "))
        self.defect_combo = QtWidgets.QComboBox()
        tb.addWidget(self.defect_combo)
        tb.addSeparator()
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        self.w.addToolBar(tb)
        tb.hide()

    def fill_menu(self, menu: QtWidgets.QMenu) -> None:
        menu.addAction(self.act_toggle)
        menu.addSeparator()
        menu.addAction(self.act_undo)
        menu.addAction(self.act_redo)
        menu.addSeparator()
        menu.addAction(self.act_save)
        menu.addAction(self.act_export)

    def _update_enabled(self) -> None:
        on = self.ann is not None
        for act in (self.act_export, self.act_save):
            act.setEnabled(on)
        for act in self.class_actions:  # digits are free for other widgets outside the mode
            act.setEnabled(self.active)

    def _fill_combos(self) -> None:
        ann = self.ann
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for k, name in enumerate(ann.class_names[1:], 1):
            self.class_combo.addItem(f"{k}: {name}")
        self.class_combo.setCurrentIndex(min(self.current_class, len(ann.class_names) - 1) - 1)
        self.class_combo.blockSignals(False)
        self.current_class = self.class_combo.currentIndex() + 1
        current = self.defect_combo.currentText()
        self.defect_combo.clear()
        for t in ann.defect_types:
            pix = QtGui.QPixmap(12, 12)
            pix.fill(QtGui.QColor(t["colour"]))
            self.defect_combo.addItem(QtGui.QIcon(pix), t["name"])
        if current:
            self.defect_combo.setCurrentText(current)

    # ================================================================= mode
    @property
    def active(self) -> bool:
        return self.ann is not None and self.act_toggle.isChecked()

    def set_active(self, on: bool) -> None:
        """Enter (True) or leave annotate mode."""
        if on and self.ann is None and not self._start():
            self.act_toggle.blockSignals(True)
            self.act_toggle.setChecked(False)
            self.act_toggle.blockSignals(False)
            return
        if not on:
            self.save()
        self.act_toggle.blockSignals(True)
        self.act_toggle.setChecked(on)
        self.act_toggle.blockSignals(False)
        ov = self.w.overlays
        ov.atoms_view.legend.setVisible(not on and not ov.atoms.is_empty())
        for layer in (ov.atoms, ov.defects):
            layer.set_visible(not on)
        self.view.set_visible(on)
        self.toolbar.setVisible(on)
        self.w.results.click_enabled = not on
        self.w.image_view.viewbox.setCursor(QtCore.Qt.CrossCursor if on else QtCore.Qt.ArrowCursor)
        self._update_enabled()
        self.activeChanged.emit(on)
        if on:
            self.w.statusBar().showMessage("Annotate: 1-9 choose the class; right-click an atom to relabel "
                                           "or delete it; Ctrl+Z undoes", 8000)

    def _start(self) -> bool:
        """Make the annotations: from the sidecar if there is one, else from the result."""
        mg = self.w.micrograph
        if mg is None:
            self.w.statusBar().showMessage("Open an image first.", 5000)
            return False
        path = Path(mg.path) if getattr(mg, "path", None) else None
        sha = None
        ann = None
        frame = self.w.analysis.current_frame()
        if path is not None:
            try:
                sha = file_sha256(path)
                ann = load_sidecar(path, sha)
            except (OSError, ValueError) as exc:
                self.w._error("Annotations not loaded", str(exc))
                ann = None
            if ann is not None and ann.frame != frame:  # one annotated frame per image: never overwrite
                self.w.statusBar().showMessage(
                    f"This image's saved annotations are of frame {ann.frame}; go to that frame to go on "
                    f"with them (one annotated frame per image)", 10000)
                return False
        result = self.w.analysis.current_result()
        card = None
        if ann is None and result is not None:
            card = result.info.get("model") if isinstance(result.info.get("model"), dict) else None
            ann = Annotations.from_result(result, card, sha, mg.name)
        elif ann is None:
            ann = Annotations(image_sha256=sha, image_name=mg.name, frame=frame, shape=tuple(mg.shape),
                              px_size_nm=mg.px_size_nm)
        self.ann, self.image_path = ann, path
        self.undo_stack.clear()
        colours = result.info.get("colours") if result is not None else None
        self.view.set_annotations(ann, colours or None)
        self._fill_combos()
        self._update_enabled()
        return True

    def _on_image_loaded(self, *_) -> None:
        self.finish()

    def _on_frame_changed(self, index: int) -> None:
        if self.ann is not None and self.ann.frame != index:
            self.finish()
            self.w.statusBar().showMessage("Annotations saved; press E to annotate this frame", 8000)

    def finish(self) -> None:
        """Save and drop the annotations (image change)."""
        if self.ann is None:
            return
        self.save()
        if self.act_toggle.isChecked():
            self.set_active(False)
        self.ann = None
        self.view.set_annotations(None)
        self.undo_stack.clear()
        self._update_enabled()

    def shutdown(self) -> None:
        """Window closing: save now."""
        self.timer.stop()
        self.save()

    # ================================================================= saving
    def _on_edited(self, *_) -> None:
        self.view.refresh()
        if self.ann is not None and self.hovered is not None and self.hovered >= len(self.ann):
            self.hovered = None
        self.view.set_hover(self.hovered)
        if self.ann is not None and self.image_path is not None:
            self.timer.start()  # (re)start: saves 2 s after the last edit

    def save(self) -> bool:
        """Write the sidecar now (False when there is nothing to save or it failed)."""
        self.timer.stop()
        if self.ann is None or self.image_path is None:
            return False
        try:
            path = save_sidecar(self.ann, self.image_path)
        except Exception as exc:  # noqa: BLE001 - a failed save is reported, never a crash
            self.w.statusBar().showMessage(f"Could not save the annotations: {exc}", 10000)
            return False
        self.saved.emit(str(path))
        return True

    def export_training(self, out_dir=None) -> list:
        """Write the image and its annotations as a training pair into `out_dir` (asked)."""
        if self.ann is None:
            return []
        if out_dir is None:
            out_dir = QtWidgets.QFileDialog.getExistingDirectory(self.w, "Export training data to folder")
            if not out_dir:
                return []
        stem = self.image_path.stem if self.image_path is not None else "annotated"
        if self.w.micrograph is not None and self.w.micrograph.is_stack:
            stem += f"_f{self.ann.frame:04d}"
        try:
            paths = export_training_pair(self.w.image_view.current_frame(), self.ann, out_dir, stem)
        except Exception as exc:  # noqa: BLE001
            self.w._error("Export failed", f"Could not write the training data to {out_dir}.", str(exc))
            return []
        self.w.statusBar().showMessage(f"Wrote {paths[0].parent}/{stem}.*", 5000)
        return paths

    def training_context(self) -> list[dict]:
        """The annotated images for the retrain dialog."""
        if self.ann is None or self.w.micrograph is None:
            return []
        return [{"name": self.w.micrograph.name, "image": self.w.image_view.current_frame(),
                 "annotations": self.ann, "px_size_nm": self.ann.px_size_nm or self.w.micrograph.px_size_nm}]

    # ================================================================= edits (undo commands)
    def _push(self, text, do, undo) -> None:
        self.undo_stack.push(FnCommand(text, do, undo))

    def set_tool(self, key: str) -> None:
        self.tool = key
        self.tool_actions[key].setChecked(True)

    def _on_class_combo(self, index: int) -> None:
        if index >= 0:
            self.current_class = index + 1

    def class_key(self, k: int) -> None:
        """Number key `k`: choose class k; relabel the atom under the cursor."""
        if self.ann is None or k >= len(self.ann.class_names):
            return
        self.current_class = k
        self.class_combo.setCurrentIndex(k - 1)
        if self.hovered is not None and self.active:
            self.relabel([self.hovered], k)

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

    def add_defect(self, x: float, y: float, type_name: str | None = None) -> None:
        ann = self.ann
        d = {"x": x, "y": y, "type": type_name or self.defect_combo.currentText() or "vacancy", "w": None, "h": None}
        state = {}

        def do():
            state["i"] = ann.add_defect(d)

        self._push(f"Mark {d['type']}", do, lambda: ann.remove_defect(state["i"]))

    # ================================================================= mouse and keys
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
            import traceback

            traceback.print_exc()
            self.w.statusBar().showMessage(f"Annotation edit failed: {exc}", 10000)
            self._drag = None
            self.view.set_band(None, None)
        return False

    def _mouse(self, event) -> bool:
        t = event.type()
        if t not in (QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseMove, QtCore.QEvent.MouseButtonRelease,
                     QtCore.QEvent.MouseButtonDblClick):
            return False
        pos = self._view_pos(event.pos())
        if t == QtCore.QEvent.MouseMove:
            if self._drag is None:
                if pos is not None and not event.buttons():
                    self.hovered = self.view.nearest_atom(*pos)
                    self.view.set_hover(self.hovered)
                return False
            if pos is not None:
                if self._drag[0] == "move":
                    i = self._drag[1]
                    self.ann.x[i], self.ann.y[i] = pos  # preview; the command is pushed on release
                    self.view.refresh()
                    self.view.set_hover(i)
                else:
                    self.view.set_band(self._drag[1:3], pos)
            return True
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

    def _press(self, pos) -> bool:
        """Left press at `pos`; False when it is left to the view (a Move press off the atoms pans)."""
        x, y = pos
        if self.tool == "add":
            self.add_atom(x, y)
        elif self.tool == "defect":
            self.add_defect(x, y)
        elif self.tool == "move":
            i = self.view.nearest_atom(x, y)
            if i is None:
                return False
            self._drag = ("move", i, float(self.ann.x[i]), float(self.ann.y[i]))
        elif self.tool == "delete":
            self._drag = ("band", x, y)
        return True

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
        if pos is None or np.hypot(pos[0] - x0, pos[1] - y0) < 0.5 * self.view.pick_radius():
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
