"""The "Process folder…" dialog: batch analysis in a worker thread with progress and a log.

The work is :func:`atomlens.workflows.batch.process_paths`, run by a :class:`BatchWorker` in a
QThread; the worker talks to the dialog only through signals, and Cancel sets a
``threading.Event`` that the batch checks between files.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PyQt5 import QtCore, QtWidgets

__all__ = ["BatchDialog", "BatchWorker"]

AUTO_MODEL = "auto (from the imaging mode)"


class BatchWorker(QtCore.QObject):
    """Runs one batch; lives in its own thread.  Signals only, no widgets."""

    progress = QtCore.pyqtSignal(float, str)
    logged = QtCore.pyqtSignal(str)
    finished = QtCore.pyqtSignal(list)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, paths, out_dir, options: dict, cancel: threading.Event, models):
        super().__init__()
        self.paths, self.out_dir, self.options = list(paths), out_dir, dict(options)
        self.cancel, self.models = cancel, models

    @QtCore.pyqtSlot()
    def run(self) -> None:
        from ..workflows.analyse import AnalysisSettings
        from ..workflows.batch import process_paths

        try:
            settings, rest = AnalysisSettings.split(self.options)
            rows = process_paths(self.paths, self.out_dir, progress=lambda f, m: self.progress.emit(float(f), m),
                                 cancel=self.cancel, log=self.logged.emit, models=self.models,
                                 settings=settings, **rest)
        except Exception as exc:  # noqa: BLE001 - reported in the dialog
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.finished.emit(rows)


class BatchDialog(QtWidgets.QDialog):
    """Pick a folder and options, run the batch, follow its progress.

    Parameters
    ----------
    parent : QWidget or None
    defaults : dict
        Initial values: ``folder``, ``out_dir``, ``recursive``, ``model`` (``"auto"`` or a
        bundle name), ``threshold``, ``refine``, ``material``, ``edge_margin_px``, ``cam``, ``json``, ``device``,
        ``px_size_nm`` (None: the files' own).

    Signals: ``batchFinished(list)`` with the rows of
    :func:`~atomlens.workflows.batch.process_paths` when a batch ends (also after Cancel).
    """

    batchFinished = QtCore.pyqtSignal(list)

    def __init__(self, parent=None, defaults: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("Process folder")
        self.setObjectName("BatchDialog")
        self.resize(620, 560)
        d = dict(defaults or {})
        self.rows: list = []
        self._thread = self._worker = None
        self._cancel = threading.Event()
        from ..workflows.models import ModelCache

        self._models = ModelCache(remember_failures=True)  # models stay loaded between batches of this dialog
        self._close_when_done = False

        form = QtWidgets.QFormLayout()
        self.folder_edit, folder_row = self._path_row(d.get("folder", ""), "Choose the folder of micrographs")
        form.addRow("Folder:", folder_row)
        self.recursive_check = QtWidgets.QCheckBox("Include sub-folders")
        self.recursive_check.setChecked(bool(d.get("recursive", False)))
        form.addRow("", self.recursive_check)
        self.out_edit, out_row = self._path_row(d.get("out_dir", ""), "Choose the output folder")
        form.addRow("Output:", out_row)
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.addItem(AUTO_MODEL, "auto")
        for name in self._segmentation_models():
            self.model_combo.addItem(name, name)
        i = self.model_combo.findData(d.get("model", "auto"))
        self.model_combo.setCurrentIndex(max(0, i))
        form.addRow("Model:", self.model_combo)
        self.threshold_spin = QtWidgets.QDoubleSpinBox()
        self.threshold_spin.setRange(0.05, 0.95)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(float(d.get("threshold", 0.5)))
        form.addRow("Threshold:", self.threshold_spin)
        self.refine_combo = QtWidgets.QComboBox()
        self.refine_combo.addItems(["centroid", "gaussian", "none"])
        self.refine_combo.setCurrentText(d.get("refine", "centroid"))
        form.addRow("Refinement:", self.refine_combo)
        from .analysis_dock import edge_margin_spin, material_combo

        self.material_combo = material_combo(d.get("material"))  # the same for every file
        form.addRow("Material:", self.material_combo)
        self.edge_spin = edge_margin_spin(float(d.get("edge_margin_px", 0.0)))
        form.addRow("Edge margin:", self.edge_spin)
        self.cam_check = QtWidgets.QCheckBox("Also find defects (defect-cam model)")
        self.cam_check.setChecked(bool(d.get("cam", False)))
        form.addRow("", self.cam_check)
        self.json_check = QtWidgets.QCheckBox("Also write a JSON summary per file")
        self.json_check.setChecked(bool(d.get("json", False)))
        form.addRow("", self.json_check)
        self.device = d.get("device", "auto")
        self.px_size_nm = d.get("px_size_nm")

        self.current_label = QtWidgets.QLabel("Ready.")
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.log_list = QtWidgets.QListWidget()
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)

        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.current_label)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.log_list, 1)
        lay.addLayout(buttons)

    # ================================================================= helpers
    def _path_row(self, value: str, title: str):
        edit = QtWidgets.QLineEdit(str(value or ""))
        browse = QtWidgets.QPushButton("Browse…")

        def pick():
            folder = QtWidgets.QFileDialog.getExistingDirectory(self, title, edit.text())
            if folder:
                edit.setText(folder)
                if edit is self.folder_edit and not self.out_edit.text():
                    self.out_edit.setText(str(Path(folder) / "atomlens"))

        browse.clicked.connect(pick)
        row = QtWidgets.QWidget()
        h = QtWidgets.QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        h.addWidget(browse)
        return edit, row

    @staticmethod
    def _segmentation_models() -> list[str]:
        from ..workflows.models import list_bundles, read_card

        names = []
        for name, path, _origin in list_bundles():
            try:
                task = read_card(path).get("task")
            except Exception:  # noqa: BLE001 - a broken bundle is just not offered
                task = None
            if task == "segmentation" and name not in names:
                names.append(name)
        return names

    def options(self) -> dict:
        """The options for :func:`process_paths` chosen in the dialog."""
        return {"model": self.model_combo.currentData() or "auto", "cam": self.cam_check.isChecked(),
                "device": self.device, "threshold": float(self.threshold_spin.value()),
                "refine": self.refine_combo.currentText(), "px_size_nm": self.px_size_nm,
                "material": self.material_combo.currentData(), "edge_margin_px": float(self.edge_spin.value()),
                "json_summary": self.json_check.isChecked()}

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ================================================================= actions
    def start(self) -> bool:
        """Start the batch on the chosen folder; False (with a message in the log) when the
        folder is missing or holds no micrographs."""
        from ..workflows.batch import iter_micrograph_files

        if self.running:
            return False
        folder, out = self.folder_edit.text().strip(), self.out_edit.text().strip()
        self.log_list.clear()
        self.rows = []
        try:
            if not folder:
                raise NotADirectoryError("choose a folder of micrographs")
            files = iter_micrograph_files(folder, recursive=self.recursive_check.isChecked())
            if not out:
                raise ValueError("choose an output folder")
        except (NotADirectoryError, ValueError) as exc:
            self._log(f"error: {exc}")
            return False
        if not files:
            self._log(f"error: no micrographs in {folder}")
            return False
        out_path = Path(out).resolve()
        files = [f for f in files if out_path not in f.resolve().parents]  # never our own outputs
        self._cancel.clear()
        self._set_running(True)
        self.current_label.setText(f"Starting: {len(files)} files…")
        self.progress_bar.setValue(0)
        self._thread = QtCore.QThread(self)
        self._worker = BatchWorker(files, out, self.options(), self._cancel, self._models)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.logged.connect(self._log)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()
        return True

    def cancel(self) -> None:
        """Stop after the file being analysed (its results are still written)."""
        if self.running:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.current_label.setText(self.current_label.text() + " — cancelling after this file…")

    # ================================================================= worker signals
    def _on_progress(self, frac: float, msg: str) -> None:
        self.progress_bar.setValue(round(1000 * frac))
        self.current_label.setText(msg)

    def _log(self, line: str) -> None:
        item = QtWidgets.QListWidgetItem(line)
        if line.startswith("error"):
            item.setForeground(QtCore.Qt.red)
        self.log_list.addItem(item)
        self.log_list.scrollToBottom()

    def _on_finished(self, rows: list) -> None:
        self.rows = rows
        ok = sum(r["status"] == "ok" for r in rows)
        err = sum(r["status"] == "error" for r in rows)
        skipped = sum(r["status"] == "skipped" for r in rows)
        msg = f"Done: {ok} ok, {err} failed" + (f", {skipped} skipped (cancelled)" if skipped else "")
        self._log(msg)
        self.current_label.setText(msg)
        self._stop_thread()
        self.batchFinished.emit(rows)
        if self._close_when_done:
            self.reject()

    def _on_failed(self, message: str) -> None:
        self._log(f"error: {message}")
        self.current_label.setText("Failed.")
        self._stop_thread()
        self.batchFinished.emit([])
        if self._close_when_done:
            self.reject()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._worker.deleteLater()
            self._thread.deleteLater()
        self._thread = self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.folder_edit, self.out_edit, self.model_combo, self.threshold_spin, self.refine_combo,
                  self.material_combo, self.edge_spin, self.cam_check, self.json_check, self.recursive_check):
            w.setEnabled(not running)

    def reject(self) -> None:
        """Close (Escape, the window's close button, Close): while a batch runs, cancel it and
        close once the file in progress is written; never blocks the GUI."""
        if self.running:
            self.cancel()
            self._close_when_done = True
            return
        super().reject()
