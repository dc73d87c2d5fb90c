"""Annotate mode: correct the atoms and mark defects by pointing and clicking.

:class:`AnnotateController` owns the :class:`~atomlens.analysis.annotations.Annotations` of
the open image, the Annotate toolbar (tools Add, Delete, Move, Defect; class and defect type
selectors), the undo stack (every edit is a :class:`QUndoCommand`) and the autosave to the
image's sidecar ``<image>.atomlens.json``: at most :data:`AUTOSAVE_MS` (2 s) after the first
unsaved edit, however steadily the user goes on editing (later edits do not put it off), and on
image change and on closing the window.

Saving goes through a :class:`~atomlens.analysis.annotations_store.SidecarStore`: a damaged
sidecar is moved aside (the user is told where) instead of being written over, and when another
window or program changed the sidecar since it was read, the user is asked whether to reload
theirs (keeping ours beside it), keep ours (keeping theirs beside it) or merge the two.

The edits (undo steps) are in :mod:`.annotate_edits`, the mouse and keys in
:mod:`.annotate_input` (Add places an atom; Delete removes what is clicked or inside a dragged
rectangle; Move drags an atom; Defect marks a point defect with a click or a box defect with a
drag), the defect types dialog in :mod:`.annotate_types`: "Edit defect types…" changes the
types of the open annotations (one undo step) and keeps them in the window's settings as the
default for the next image annotated.

"Import atoms from a point list…" reads a CSV of positions in pixels (``x,y`` with or without a
header or a row-number column, ImageJ's ``Results.csv``, AtomLens's own ``atoms.csv``; see
:func:`~atomlens.analysis.point_lists.parse_point_list`) and makes its atoms the user's
confirmed atoms, replacing the atoms there are or added to them (asked), as one undo step.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from ..analysis.annotations import DEFAULT_DEFECT_TYPES, Annotations, SidecarError
from ..analysis.point_lists import PointListError, read_point_list
from ..analysis.training_labels import export_training_pair
from ..analysis.sidecar import file_sha256
from ..analysis.annotations_store import SidecarConflict, SidecarStore
from .annotate_edits import AnnotateEdits
from .annotate_input import AnnotateInput
from .annotate_types import DefectTypesDialog, default_types
from .annotate_view import AnnotationsView

__all__ = ["AUTOSAVE_MS", "AnnotateController"]

#: The longest an edit waits to be saved (ms): the autosave timer starts at the first unsaved
#: edit and is not restarted by later ones.
AUTOSAVE_MS = 2000
#: The buttons of the conflict question: (choice, text).
CONFLICT_BUTTONS = (("reload", "Reload theirs"), ("keep", "Keep mine"), ("merge", "Merge both"))
#: Pixels of the images annotated earlier in the session kept for the retrain dialog (bytes).
SESSION_MAX_BYTES = 1 << 30
TOOLS = (("add", "Add", "Add an atom of the current class (click)"),
         ("delete", "Delete", "Delete an atom or defect (click), or all inside a rectangle (drag)"),
         ("move", "Move", "Drag an atom to a new position"),
         ("defect", "Defect", "Mark a defect of the current type: a point (click) or a box (drag)"))


class AnnotateController(AnnotateInput, AnnotateEdits, QtCore.QObject):
    """Annotate mode of one :class:`MainWindow`.

    Attributes: ``ann`` (the Annotations or None), ``undo_stack``, ``view``
    (:class:`AnnotationsView`), ``tool`` ("add", "delete", "move", "defect"), ``current_class``
    (index into ``ann.class_names``), ``act_toggle``, ``act_export``, ``act_undo``, ``act_redo``,
    ``act_types`` ("Edit defect types…"), ``act_import`` ("Import atoms from a point list…").

    Signals: ``saved(str)`` with the sidecar path after each save, ``activeChanged(bool)``,
    ``annotationsChanged()`` after each edit, undo or redo and when ``ann`` is set or dropped.
    """

    saved = QtCore.pyqtSignal(str)
    activeChanged = QtCore.pyqtSignal(bool)
    annotationsChanged = QtCore.pyqtSignal()

    def __init__(self, window):
        super().__init__(window)
        self.w = window
        self.ann: Annotations | None = None
        self.image_path: Path | None = None
        self.store: SidecarStore | None = None
        self._resolving = False  # a conflict question is open (no save meanwhile)
        self._colours = None  # the model card's class colours
        self.tool = "add"
        self.current_class = 1
        self.hovered = None
        self._drag = None  # the drag under way (see AnnotateInput)
        self._press_used = False
        self._save_failed_shown = False
        self._saved_where = None
        self._source = None  # {"name", "image", "px_size_nm"} of the image annotated (for training)
        self.session: list[dict] = []  # images annotated earlier in this session (training_context)
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
        self.act_import = QtWidgets.QAction("&Import atoms from a point list…", w)
        self.act_import.setStatusTip("Read atom positions in pixels (a CSV: x,y; ImageJ Results; atoms.csv) as "
                                     "atoms you confirmed, e.g. hand-made labels to fine-tune on")
        self.act_import.triggered.connect(lambda: self.import_point_list())
        self.act_save = QtWidgets.QAction("&Save annotations now", w)
        self.act_save.triggered.connect(lambda: self.save())
        self.act_types = QtWidgets.QAction("Edit defect &types…", w)
        self.act_types.setStatusTip("Add, rename, recolour or remove the defect types (kept as the default "
                                    "for new annotations)")
        self.act_types.triggered.connect(lambda: self.edit_defect_types())
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
        tb.addAction(self.act_types)
        tb.addSeparator()
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        self.w.addToolBar(tb)
        tb.toggleViewAction().setVisible(False)  # shown by Annotate mode only (never empty)
        tb.hide()

    def sync_toolbar(self) -> None:
        """Show the toolbar only in Annotate mode (after the window state, which may have it
        shown, was restored from the settings)."""
        self.toolbar.setVisible(self.active)

    def fill_menu(self, menu: QtWidgets.QMenu) -> None:
        menu.addAction(self.act_toggle)
        menu.addSeparator()
        menu.addAction(self.act_undo)
        menu.addAction(self.act_redo)
        menu.addSeparator()
        menu.addAction(self.act_types)
        menu.addAction(self.act_import)
        menu.addSeparator()
        menu.addAction(self.act_save)
        menu.addAction(self.act_export)

    def _update_enabled(self) -> None:
        on = self.ann is not None
        for act in (self.act_export, self.act_save):
            act.setEnabled(on)
        for act in self.class_actions:  # digits are free for other widgets outside the mode
            act.setEnabled(self.active)

    def _fill_combos(self, defect_type: str | None = None) -> None:
        """Fill the class and defect type selectors from ``ann`` (keeping the chosen type, or
        choosing `defect_type`)."""
        ann = self.ann
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for k, name in enumerate(ann.class_names[1:], 1):
            self.class_combo.addItem(f"{k}: {name}")
        self.class_combo.setCurrentIndex(min(self.current_class, len(ann.class_names) - 1) - 1)
        self.class_combo.blockSignals(False)
        self.current_class = self.class_combo.currentIndex() + 1
        current = defect_type or self.defect_combo.currentText()
        self.defect_combo.clear()
        for t in ann.defect_types:
            pix = QtGui.QPixmap(12, 12)
            pix.fill(QtGui.QColor(t["colour"]))
            self.defect_combo.addItem(QtGui.QIcon(pix), t["name"])
        if current:
            self.defect_combo.setCurrentText(current)

    def defect_colour(self) -> str:
        """Colour of the current defect type."""
        name = self.defect_combo.currentText()
        types = self.ann.defect_types if self.ann is not None else []
        return next((t["colour"] for t in types if t["name"] == name), "#ffffff")

    def edit_defect_types(self) -> bool:
        """Open the defect types dialog; apply its result (True) when accepted."""
        ann = self.ann
        types = ann.defect_types if ann is not None else self.new_defect_types()
        used = Counter(d["type"] for d in ann.defects) if ann is not None else {}
        dlg = DefectTypesDialog(types, used, self.w)
        if not dlg.exec_():
            return False
        try:
            self.set_defect_types(dlg.types(), dlg.renames())
        except ValueError as exc:
            self.w._error("Defect types not changed", str(exc))
            return False
        if ann is None:
            self.w.statusBar().showMessage("Defect types kept for the next annotations", 5000)
        return True

    def new_defect_types(self, used=()) -> list[dict]:
        """The defect types new annotations start with: the user's (settings), else the defaults;
        plus any type in `used` not among them."""
        types = default_types(getattr(self.w, "settings", None)) or [dict(t) for t in DEFAULT_DEFECT_TYPES]
        names = {t["name"] for t in types}
        known = {t["name"]: t["colour"] for t in DEFAULT_DEFECT_TYPES}
        for name in used:
            if name not in names:
                names.add(name)
                types.append({"name": name, "colour": known.get(name, "#ffffff")})
        return types

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
        store = None
        frame = self.w.analysis.current_frame()
        if path is not None:
            try:
                sha = file_sha256(path)
            except OSError as exc:
                self.w._error("Annotations not loaded", f"The image {path} cannot be read ({exc}).")
            store = SidecarStore(path, sha)
            try:
                ann = store.load()
            except SidecarError as exc:  # kept aside (or never written over): the message says where
                self.w._error("Annotations not loaded", str(exc))
                ann = None
            if ann is not None and ann.frame != frame:  # one annotated frame per image: never overwrite
                self.w.statusBar().showMessage(
                    f"This image's saved annotations are of frame {ann.frame}; go to that frame to go on "
                    f"with them (one annotated frame per image)", 10000)
                return False
        result = self.w.analysis.current_result()
        card = None
        if ann is None:
            if result is not None:
                card = result.info.get("model") if isinstance(result.info.get("model"), dict) else None
                ann = Annotations.from_result(result, card, sha, mg.name)
            else:
                ann = Annotations(image_sha256=sha, image_name=mg.name, frame=frame, shape=tuple(mg.shape),
                                  px_size_nm=mg.px_size_nm, mode=getattr(mg, "mode", None))
            ann.defect_types = self.new_defect_types(d["type"] for d in ann.defects)
        if ann.mode is None:  # older sidecars: the image's mode (ABF images are inverted for training)
            ann.mode = getattr(mg, "mode", None)
        self.ann, self.image_path, self.store = ann, path, store
        self._source = {"name": mg.name, "image": self.w.image_view.current_frame(), "px_size_nm": mg.px_size_nm}
        self.undo_stack.clear()
        colours = result.info.get("colours") if result is not None else None
        self._colours = colours or None
        self.view.set_annotations(ann, self._colours)
        self._fill_combos()
        self._update_enabled()
        self.annotationsChanged.emit()
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
        self._remember()
        self.ann = None
        self.view.set_annotations(None)
        self.undo_stack.clear()
        self._update_enabled()
        self.annotationsChanged.emit()

    def shutdown(self) -> None:
        """Window closing: save now."""
        self.timer.stop()
        self.save()

    # ================================================================= saving
    def _on_edited(self, *_) -> None:
        self.view.refresh()
        self.annotationsChanged.emit()
        if self.ann is not None and self.hovered is not None and self.hovered >= len(self.ann):
            self.hovered = None
        self.view.set_hover(self.hovered)
        if (self.ann is not None and self.image_path is not None and not self.undo_stack.isClean()
                and not self.timer.isActive()):
            self.timer.start()  # not restarted by later edits: saved AUTOSAVE_MS after the first

    def save(self) -> bool:
        """Write the sidecar now (False when there is nothing to save or it failed)."""
        self.timer.stop()
        if self.ann is None or self.image_path is None or self.store is None or self._resolving:
            return False
        if self.undo_stack.isClean() and self.store.path is not None:
            return True  # nothing unsaved: the file holds these annotations (never rewritten for nothing)
        try:
            path = self.store.save(self.ann)
        except SidecarConflict as exc:
            return self._on_conflict(exc)
        except Exception as exc:  # noqa: BLE001 - a failed save is reported, never a crash
            self.w.statusBar().showMessage(f"Could not save the annotations: {exc}", 10000)
            if not self._save_failed_shown:  # once per image: a box every 2 s would be a torment
                self._save_failed_shown = True
                self.w._error("Annotations not saved",
                              "Your annotations could not be saved; they stay in memory and saving is "
                              "retried after each edit. Use Export as training data to keep a copy.", str(exc))
            return False
        self._saved(path)
        return True

    def _saved(self, path) -> None:
        self.undo_stack.setClean()
        self._save_failed_shown = False
        if Path(path).parent != Path(self.image_path).parent and self._saved_where != str(path):
            self.w.statusBar().showMessage(f"The image's folder cannot be written: annotations are kept in {path}",
                                           10000)
        self._saved_where = str(path)
        self.saved.emit(str(path))

    # ================================================================= conflicts
    def ask_conflict(self, exc: SidecarConflict) -> str:
        """Ask what to do about the sidecar changed elsewhere: "reload", "keep" or "merge"
        ("keep" without asking when the window is not interactive, and on Escape)."""
        if not getattr(self.w, "interactive", True):
            return "keep"
        box = QtWidgets.QMessageBox(self.w)
        box.setIcon(QtWidgets.QMessageBox.Warning)
        box.setWindowTitle("Annotations changed elsewhere")
        box.setText(f"{exc}\n\nNothing is lost whatever you choose: the version not used is kept beside it "
                    "under a name that says so.")
        box.setInformativeText("Reload theirs: their annotations replace yours in this window (yours are kept as "
                               "…atomlens.mine-<time>.json).\nKeep mine: yours are saved (theirs are kept as "
                               "…atomlens.theirs-<time>.json).\nMerge both: every atom and defect of either "
                               "is kept, less those you deleted since your last save.")
        buttons = {box.addButton(text, QtWidgets.QMessageBox.AcceptRole): key for key, text in CONFLICT_BUTTONS}
        keep = next(b for b, k in buttons.items() if k == "keep")
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.exec_()
        return buttons.get(box.clickedButton(), "keep")

    def _on_conflict(self, exc: SidecarConflict) -> bool:
        """The sidecar was changed by someone else: ask, then reload, keep or merge."""
        self._resolving = True
        try:
            choice = self.ask_conflict(exc)
            note = ""
            try:
                ann, kept = self.store.resolve(self.ann, choice, exc.path)
            except SidecarError as err:  # theirs unreadable (or of another frame): keep both, ours in use
                note = f" (theirs could not be {'reloaded' if choice == 'reload' else 'merged'}: {err})"
                choice = "keep"
                ann, kept = self.store.resolve(self.ann, choice, exc.path)
        except SidecarConflict as again:  # changed once more meanwhile: the next save asks again
            self.w.statusBar().showMessage(str(again), 10000)
            self.timer.start()
            return False
        except Exception as err:  # noqa: BLE001 - reported, never a crash
            self.w._error("Annotations not saved", f"{exc}\nThe conflict could not be settled; your annotations "
                          "stay in memory.", str(err))
            return False
        finally:
            self._resolving = False
        if ann is not self.ann:
            self._replace(ann)
        told = {"reload": f"Reloaded the annotations saved elsewhere; yours are kept in {kept}",
                "keep": f"Your annotations are saved; the other version is kept in {kept}",
                "merge": "Merged the annotations saved elsewhere with yours, and saved"}[choice]
        if choice == "keep" and kept is None:
            told = "Your annotations are saved (the file had been deleted elsewhere)"
        self.w.statusBar().showMessage(told + note, 15000)
        if not getattr(self.w, "interactive", True):
            print(f"Annotations changed elsewhere: {told}{note}", file=sys.stderr)
        self._saved(self.store.path)
        return True

    def _replace(self, ann: Annotations) -> None:
        """Go on with other annotations of the same image (reloaded or merged)."""
        self.ann = ann
        self.hovered = None
        self.undo_stack.clear()  # its steps edit the annotations replaced
        self.view.set_annotations(ann, self._colours)
        self._fill_combos()
        self._update_enabled()
        self.annotationsChanged.emit()

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

    def ask_import_mode(self, n_new: int) -> str | None:
        """Ask whether the `n_new` imported atoms replace the atoms there are ("replace"), are
        added to them ("add"), or nothing is imported (None).  "replace" without asking when
        the window is not interactive."""
        if not getattr(self.w, "interactive", True):
            return "replace"
        box = QtWidgets.QMessageBox(self.w)
        box.setIcon(QtWidgets.QMessageBox.Question)
        box.setWindowTitle("Import atoms")
        box.setText(f"Import {n_new} atoms from the point list. The image has {len(self.ann)} atoms already.")
        box.setInformativeText("Replace: the list's atoms take the place of all atoms there are (hand-made "
                               "labels of the whole image). Add: they are added to them. Undo (Ctrl+Z) takes "
                               "the import back either way.")
        rep = box.addButton("Replace", QtWidgets.QMessageBox.AcceptRole)
        add = box.addButton("Add", QtWidgets.QMessageBox.AcceptRole)
        cancel = box.addButton(QtWidgets.QMessageBox.Cancel)
        box.setDefaultButton(rep)
        box.setEscapeButton(cancel)
        box.exec_()
        return {rep: "replace", add: "add"}.get(box.clickedButton())

    def import_point_list(self, path=None, replace: bool | None = None) -> bool:
        """Import the atoms of a point list file (asked for when `path` is None) as confirmed
        user atoms; one undo step.  Starts Annotate mode when needed.  `replace` None asks
        (when there are atoms already).  False, with the reason shown, when nothing was
        imported (no image, cancelled, a malformed file, points outside the image)."""
        if self.w.micrograph is None:
            self.w.statusBar().showMessage("Open an image first.", 5000)
            return False
        if path is None:
            start = str(self.image_path.parent) if self.image_path is not None else ""
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self.w, "Import atoms from a point list", start,
                "Point lists (*.csv *.txt *.tsv *.dat);;All files (*)")
            if not path:
                return False
        try:
            points = read_point_list(path)
        except PointListError as exc:
            self.w._error("Atoms not imported", str(exc))
            return False
        if self.ann is None and not self._start():
            return False
        if not self.active:
            self.set_active(True)
        if replace is None:
            choice = self.ask_import_mode(len(points)) if len(self.ann) else "replace"
            if choice is None:
                return False
            replace = choice == "replace"
        try:
            self.import_points(points, replace=replace)
        except PointListError as exc:
            self.w._error("Atoms not imported", str(exc))
            return False
        self.w.statusBar().showMessage(
            f"Imported {len(points)} atoms from {Path(path).name} ({points.layout}) as atoms you confirmed"
            + ("" if replace else ", added to the others") + "; Ctrl+Z undoes", 10000)
        return True

    def _entry(self) -> dict:
        """The open annotations for the retrain dialog; the image's calibration when the
        annotations carry none (as before the session list)."""
        ann = self.ann
        return {**self._source, "annotations": ann, "px_size_nm": ann.px_size_nm or self._source["px_size_nm"],
                "key": (ann.image_sha256 or str(self.image_path), ann.frame)}

    def _remember(self) -> None:
        """Keep the annotations being closed (with their pixels) for the retrain dialog: the
        images annotated in this session, newest first, within :data:`SESSION_MAX_BYTES`."""
        if self.ann is None or self._source is None or not len(self.ann):
            return
        e = self._entry()
        self.session = [x for x in self.session if x["key"] != e["key"]]
        self.session.insert(0, e)
        total, keep = 0, []
        for x in self.session:
            total += x["image"].nbytes
            if total <= SESSION_MAX_BYTES or not keep:
                keep.append(x)
        self.session = keep

    def training_context(self) -> list[dict]:
        """The annotated images for the retrain dialog: the open one first, then the others
        annotated in this session (dicts ``name, image, annotations, px_size_nm``)."""
        out = []
        if self.ann is not None and self._source is not None:
            out.append(self._entry())
        keys = {e["key"] for e in out}
        out += [e for e in self.session if e["key"] not in keys]
        return out

    # ================================================================= tools
    def set_tool(self, key: str) -> None:
        self.tool = key
        self.tool_actions[key].setChecked(True)

    def _on_class_combo(self, index: int) -> None:
        if index >= 0:
            self.current_class = index + 1
