"""Wires the Results dock, the exports and batch processing into the main window.

Kept out of ``main_window.py`` so that each piece stays small: this controller owns the
:class:`~atomlens.gui.results_dock.ResultsDock`, the File > Export actions (atoms CSV and
JSON as ``atomlens detect`` writes them, a HyperSpy file with markers, PNG/SVG snapshots at
full resolution) and File > Process folder….  A click on an atom in the image selects it
in the table and lists its neighbours; a click on a table row centres and rings the atom.

What is shown and exported is what the user sees: once the atoms have been corrected in
Annotate mode (:meth:`ResultsController.follow_annotations`), the dock, the atoms and defects
layers, the exports and the snapshots follow the corrected atoms
(:func:`atomlens.analysis.corrections.corrected_result`), after every edit, undo and redo.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5 import QtCore, QtWidgets

from ..analysis.corrections import annotation_defects, corrections_of
from .layer_views import heatmap_lut
from .results_dock import ResultsDock

__all__ = ["REFRESH_MS", "ResultsController"]

#: The dock and layers follow an edit in Annotate mode this long after it (ms); a refresh takes
#: about 0.15 s for 20,000 atoms, so a burst of edits is shown once, when it pauses.
REFRESH_MS = 60


class ResultsController(QtCore.QObject):
    """Results dock, export actions and batch processing of one :class:`MainWindow`."""

    def __init__(self, window):
        super().__init__(window)
        self.w = window
        self.dock = ResultsDock(window)
        self.dock.setObjectName("ResultsDock")
        window.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.dock)
        window.tabifyDockWidget(window.layers_dock, self.dock)
        window.layers_dock.raise_()
        window.resultChanged.connect(self._on_result)
        self.dock.atomActivated.connect(window.highlight_atom)
        self.dock.defectActivated.connect(self._centre_defect)
        self.dock.minDefectScoreChanged.connect(lambda _v: self.refresh())
        window.image_view.graphics.scene().sigMouseClicked.connect(self._on_click)
        self.click_enabled = True  # the annotation mode turns this off while it edits
        self.actions = {}
        for key, text, slot in (
                ("csv", "Atoms as &CSV…", self.export_csv), ("json", "Results as &JSON…", self.export_json),
                ("hspy", "&HyperSpy file with markers…", self.export_hspy),
                ("png", "Snapshot as &PNG…", lambda: self.export_snapshot("png")),
                ("svg", "Snapshot as &SVG…", lambda: self.export_snapshot("svg"))):
            act = QtWidgets.QAction(text, window)
            act.triggered.connect(slot)
            act.setEnabled(False)
            self.actions[key] = act
        self.act_batch = QtWidgets.QAction("Process &folder…", window)
        self.act_batch.setStatusTip("Find atoms in every micrograph of a folder; one CSV per file")
        self.act_batch.triggered.connect(self.process_folder)
        self._batch_dialog = None
        self._annotate = None
        self._ann_seen = None  # the annotations last shown
        self._raw = None  # the analysis result of the displayed frame
        self._shown = None  # what the dock shows: _raw, or _raw with the annotations' corrections
        self._overlays_corrected = False  # the atoms/defects layers hold the corrected atoms
        # edits in quick succession (keys pressed on atom after atom) refresh the dock once
        self._refresh_timer = QtCore.QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh)

    def follow_annotations(self, annotate) -> None:
        """Show and export the corrections of `annotate` (the window's
        :class:`~atomlens.gui.annotate.AnnotateController`): refreshed :data:`REFRESH_MS` after
        its ``annotationsChanged`` signal (at once when the annotations are set or dropped;
        :attr:`result` is always up to date)."""
        self._annotate = annotate
        annotate.annotationsChanged.connect(self._on_annotations_changed)

    def _on_annotations_changed(self) -> None:
        ann = self._ann()
        if ann is not self._ann_seen:  # annotations set or dropped: at once
            self._ann_seen = ann
            self.refresh()
        else:
            self._refresh_timer.start()

    # ------------------------------------------------------------------ menus
    def fill_file_menu(self, menu: QtWidgets.QMenu) -> None:
        m = menu.addMenu("&Export")
        for act in self.actions.values():
            m.addAction(act)
        menu.addAction(self.act_batch)

    @property
    def result(self):
        """The result the user sees: the displayed frame's analysis with the corrections made in
        Annotate mode (the analysis result itself when there are none); what is exported."""
        if self._refresh_timer.isActive():
            self.refresh()
        return self._shown

    @property
    def raw_result(self):
        """The displayed frame's analysis result as the network found it."""
        return self._raw

    def _ann(self):
        return getattr(self._annotate, "ann", None)

    def _on_result(self, result) -> None:
        before, self._raw = self._raw, result
        self._overlays_corrected = False  # the analysis controller has just shown `result`
        self.refresh()
        if before is not None and corrections_of(self._shown) is not None:
            self.w.statusBar().showMessage("The results and exports show your corrected atoms (Annotate mode), "
                                           "not this new detection", 10000)
        for act in self.actions.values():
            act.setEnabled(result is not None)

    def refresh(self) -> None:
        """Show the displayed result with the current corrections in the dock and the layers."""
        from ..analysis.corrections import corrected_result

        self._refresh_timer.stop()
        from ..analysis.defect_check import result_above_score

        raw = self._raw
        # the defect-score filter first: what is shown, corrected and exported
        scored = result_above_score(raw, self.dock.min_defect_score())
        try:
            shown = corrected_result(scored, self._ann())
        except Exception as exc:  # noqa: BLE001 - never lose the dock over a bad annotation
            self.w.statusBar().showMessage(f"Could not apply the annotations to the results: {exc}", 8000)
            shown = scored
        self._shown = shown
        self.dock.set_result(shown, self.w.micrograph)
        if shown is not None and shown.info.get("colours"):
            self.dock.set_class_colours(shown.info["colours"])
        ov = self.w.overlays
        corrected = corrections_of(shown) is not None or shown is not raw  # corrected or score-filtered
        if corrected or self._overlays_corrected:
            src = shown if corrected else raw
            colours = src.info.get("colours") if src is not None else None
            if src is None:
                ov.atoms.set_atoms(None)
                ov.defects.set_defects(None)
            else:
                ov.atoms.set_atoms(src.atoms, colours, src.calibration, src.info.get("median_nn_px"))
                ov.defects.set_defects(src.defects)
            self._overlays_corrected = corrected

    def _centre_defect(self, i: int) -> None:
        r = self.result
        if r is not None and r.defects is not None and 0 <= i < len(r.defects):
            self.w.centre_on(float(r.defects.x[i]), float(r.defects.y[i]))

    def _on_click(self, event) -> None:
        if not self.click_enabled or event.button() != QtCore.Qt.LeftButton or self.result is None:
            return
        vb = self.w.image_view.viewbox
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        p = vb.mapSceneToView(event.scenePos())
        layer = self.w.overlays.atoms
        i = layer.nearest(p.x(), p.y())
        if i is not None:
            self.w.highlight_atom(i)
            self.dock.select_atom(i)

    # ------------------------------------------------------------------ exports
    def _stem(self) -> str:
        mg = self.w.micrograph
        stem = Path(mg.path).stem if mg is not None and getattr(mg, "path", None) else "atomlens"
        r = self.result
        return stem + (f"_f{r.frame:04d}" if r is not None and mg is not None and mg.is_stack else "")

    def _ask_path(self, title: str, suffix: str, filt: str) -> str | None:
        start = str(Path(self.w.micrograph.path).with_name(self._stem() + suffix)) \
            if self.w.micrograph is not None and getattr(self.w.micrograph, "path", None) else self._stem() + suffix
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.w, title, start, filt)
        return path or None

    def _run_export(self, what: str, fn, path) -> bool:
        try:
            fn(path)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a message, never a crash
            self.w._error("Export failed", f"Could not write the {what} to {path}.", str(exc))
            return False
        self.w.statusBar().showMessage(f"Wrote {path}", 5000)
        return True

    def export_csv(self, path=None) -> bool:
        from ..workflows.export import export_csv

        path = path or self._ask_path("Export atoms (CSV)", ".atoms.csv", "CSV (*.csv)")
        return bool(path) and self.result is not None and self._run_export(
            "atom table", lambda p: export_csv(self.result, p), path)

    def export_json(self, path=None) -> bool:
        from ..workflows.export import export_json

        path = path or self._ask_path("Export results (JSON)", ".json", "JSON (*.json)")
        return bool(path) and self.result is not None and self._run_export(
            "results", lambda p: export_json(self.result, p), path)

    def export_hspy(self, path=None) -> bool:
        from ..workflows.export import to_hspy

        path = path or self._ask_path("Export HyperSpy file", ".atoms.hspy", "HyperSpy (*.hspy)")
        colours = (self.result.info.get("colours") if self.result is not None else None) or None
        return bool(path) and self.result is not None and self._run_export(
            "HyperSpy file", lambda p: to_hspy(self.result, self.w.micrograph, p, class_colours=colours), path)

    def _annotating(self):
        """The annotations drawn on screen (Annotate mode), or None."""
        a = self._annotate
        return a.ann if a is not None and a.active else None

    def snapshot_spec(self, scale: int = 1):
        """What is on screen, as a :class:`~atomlens.gui.snapshot.SnapshotSpec` at the image's
        own resolution (times `scale`).  In Annotate mode: the annotated atoms as drawn there
        (the user's as filled diamonds, the network's as rings) and the defects in their
        type's colour, boxes as boxes."""
        from .layers import class_colours, marker_size
        from .snapshot import SnapshotSpec

        iv, ov, r = self.w.image_view, self.w.overlays, self.result
        lut = iv.histogram.item.gradient.getLookupTable(256, alpha=False)
        cam = ov.cam.current_map() if ov.cam.visible and not ov.cam.is_empty() else None
        ann = self._annotating()
        card = dict(r.info.get("colours") or {}) if r is not None else {}
        extra = {}
        if ann is not None:
            atoms = ann.to_atom_list()
            colours = class_colours(ann.class_names[1:], card or None)
            extra = {"atom_user": ann.user_mask(),
                     "defect_colours": {t["name"]: t["colour"] for t in ann.defect_types},
                     "defect_boxes": [None if d.get("w") is None or d.get("h") is None else (d["w"], d["h"])
                                      for d in ann.defects]}
            defects = annotation_defects(ann)
        else:
            atoms = r.atoms if (r is not None and ov.atoms.visible) else None
            colours = card or SnapshotSpec.__dataclass_fields__["class_colours"].default_factory()
            defects = r.defects if (r is not None and ov.defects.visible) else None
        return SnapshotSpec(
            image=iv.current_frame(), levels=iv.levels(), lut=lut, atoms=atoms, class_colours=colours,
            marker_radius_px=0.5 * marker_size(atoms.xy) if atoms is not None and len(atoms) else 3.0,
            heatmap=cam, heatmap_lut=heatmap_lut(ov.cam) if cam is not None else None, heatmap_opacity=ov.cam.opacity,
            # the result's calibration, as in its tables and exports (the file's without a result)
            defects=defects, px_size_nm=(r.calibration.px_x_nm if r is not None else
                                         self.w.micrograph.px_size_nm if self.w.micrograph is not None else None),
            scale=scale, **extra)

    def export_snapshot(self, kind: str = "png", path=None) -> bool:
        from .snapshot import render_png, render_svg

        suffix = f".{kind}"
        path = path or self._ask_path("Save snapshot", suffix, f"{kind.upper()} (*{suffix})")
        if not path or self.w.image_view.current_frame() is None:
            return False
        render = render_png if kind == "png" else render_svg
        return self._run_export("snapshot", lambda p: render(self.snapshot_spec(), p), path)

    # ------------------------------------------------------------------ batch
    def process_folder(self) -> None:
        from .batch_dialog import BatchDialog

        dock = self.w.analysis_dock
        defaults = {"threshold": dock.threshold(), "refine": dock.refine(), "device": dock.device(),
                    "material": dock.material(), "edge_margin_px": dock.edge_margin(),
                    "cam": dock.cam_model() is not None}
        mg = self.w.micrograph
        if mg is not None and getattr(mg, "path", None):
            defaults["folder"] = str(Path(mg.path).parent)
        if self._batch_dialog is None:
            self._batch_dialog = BatchDialog(self.w, defaults)
        self._batch_dialog.show()
        self._batch_dialog.raise_()
