"""Wires the Results dock, the exports and batch processing into the main window.

Kept out of ``main_window.py`` so that each piece stays small: this controller owns the
:class:`~atomlens.gui.results_dock.ResultsDock`, the File > Export actions (atoms CSV and
JSON as ``atomlens detect`` writes them, a HyperSpy file with markers, PNG/SVG snapshots at
full resolution) and File > Process folder….  A click on an atom in the image selects it
in the table and lists its neighbours; a click on a table row centres and rings the atom.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5 import QtCore, QtWidgets

from .results_dock import ResultsDock

__all__ = ["ResultsController"]


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

    # ------------------------------------------------------------------ menus
    def fill_file_menu(self, menu: QtWidgets.QMenu) -> None:
        m = menu.addMenu("&Export")
        for act in self.actions.values():
            m.addAction(act)
        menu.addAction(self.act_batch)

    @property
    def result(self):
        return self.w.analysis.current_result() if hasattr(self.w, "analysis") else None

    def _on_result(self, result) -> None:
        self.dock.set_result(result, self.w.micrograph)
        if result is not None and result.info.get("colours"):
            self.dock.set_class_colours(result.info["colours"])
        for act in self.actions.values():
            act.setEnabled(result is not None)

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
        from ..io.export import export_csv

        path = path or self._ask_path("Export atoms (CSV)", ".atoms.csv", "CSV (*.csv)")
        return bool(path) and self.result is not None and self._run_export(
            "atom table", lambda p: export_csv(self.result, p), path)

    def export_json(self, path=None) -> bool:
        from ..io.export import export_json

        path = path or self._ask_path("Export results (JSON)", ".json", "JSON (*.json)")
        return bool(path) and self.result is not None and self._run_export(
            "results", lambda p: export_json(self.result, p), path)

    def export_hspy(self, path=None) -> bool:
        from ..io.export import to_hspy

        path = path or self._ask_path("Export HyperSpy file", ".atoms.hspy", "HyperSpy (*.hspy)")
        colours = (self.result.info.get("colours") if self.result is not None else None) or None
        return bool(path) and self.result is not None and self._run_export(
            "HyperSpy file", lambda p: to_hspy(self.result, self.w.micrograph, p, class_colours=colours), path)

    def snapshot_spec(self, scale: int = 1):
        """What is on screen, as a :class:`~atomlens.gui.snapshot.SnapshotSpec` at the image's
        own resolution (times `scale`)."""
        from .layers import marker_size
        from .snapshot import SnapshotSpec

        iv, ov, r = self.w.image_view, self.w.overlays, self.result
        lut = iv.histogram.item.gradient.getLookupTable(256, alpha=False)
        cam = ov.cam.current_map() if ov.cam.visible and not ov.cam.is_empty() else None
        atoms = r.atoms if (r is not None and ov.atoms.visible) else None
        return SnapshotSpec(
            image=iv.current_frame(), levels=iv.levels(), lut=lut, atoms=atoms,
            class_colours=dict(r.info.get("colours") or {}) if r is not None and r.info.get("colours") else
            SnapshotSpec.__dataclass_fields__["class_colours"].default_factory(),
            marker_radius_px=0.5 * marker_size(r.atoms.xy) if atoms is not None and len(atoms) else 3.0,
            heatmap=cam, heatmap_lut=ov.cam.lut() if cam is not None else None, heatmap_opacity=ov.cam.opacity,
            defects=r.defects if (r is not None and ov.defects.visible) else None,
            px_size_nm=self.w.micrograph.px_size_nm if self.w.micrograph is not None else None, scale=scale)

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
