"""Model > Manage models…: the installed model bundles with their cards; rename, export,
import and delete (user models only), through :mod:`atomlens.nn.bundle`.

Rename and delete are instant and run at once (:meth:`ModelManagerDialog.rename_model`,
:meth:`~ModelManagerDialog.delete_model`).  Export and import zip, copy and checksum the
weights, which takes a while for large bundles, so they run on a background thread:
:meth:`~ModelManagerDialog.start_export` and :meth:`~ModelManagerDialog.start_import` return
at once, a busy bar shows in the dialog and its action buttons are disabled until the job ends,
and the result comes back by the ``jobFinished`` signal.  :meth:`~ModelManagerDialog.export_model`
and :meth:`~ModelManagerDialog.import_model` do the same and wait (keeping the GUI responsive)
for scripts and tests.  The buttons ask for the paths with file dialogs and call these methods.
Errors become message boxes, never exceptions.

Closing the dialog while a job runs lets the job finish in the background (its result still
arrives); the thread (:mod:`.model_manager_jobs`) is kept referenced until it has ended and is
waited for at exit.
:mod:`atomlens.nn.bundle` writes exports and imports through temporary names that are renamed
into place at the end, so an interrupted job never leaves a half-written zip, folder or model.
"""

from __future__ import annotations

import html
from pathlib import Path

from PyQt5 import QtCore, QtWidgets

from .model_manager_jobs import prune_jobs, start_job

__all__ = ["ModelManagerDialog", "card_summary"]

_COLUMNS = ("Name", "Origin", "Task", "Mode", "Pixel size", "F1 (sim.)", "Parent", "Trained")


def card_summary(card: dict) -> dict:
    """Display strings for a card: the table's columns and a few more for the details."""
    val = card.get("validation") or {}
    tr = card.get("training") or {}
    parent = card.get("parent") or {}
    f1 = val.get("val_f1")
    lo, hi = (card.get("valid_px_size_A") or [None, None])[:2]
    return {
        "Task": str(card.get("task", "?")), "Mode": str(card.get("mode", "?")),
        "Pixel size": f"{float(card['px_size_A']) * 100:.3g} pm" if card.get("px_size_A") else "?",
        "Valid range": f"{lo * 100:.3g}–{hi * 100:.3g} pm" if lo and hi else "?",
        "F1 (sim.)": f"{f1:.3f}" if isinstance(f1, (int, float)) else "",
        "F1 (your atoms)": f"{val['user_f1']:.3f}" if isinstance(val.get("user_f1"), (int, float)) else "",
        "Parent": str(parent.get("name", "")) if isinstance(parent, dict) else str(parent),
        "Trained": str(tr.get("date") or ""),
        "Device": str(tr.get("device") or ""), "Training time": f"{tr['seconds'] / 60:.1f} min"
        if isinstance(tr.get("seconds"), (int, float)) else "",
        "Steps": str(tr.get("steps", "")), "Version": str(card.get("version", "")),
        "Classes": ", ".join(map(str, card.get("classes", []))),
        "Annotated images": ", ".join(str(a.get("name", "?")) for a in card.get("annotated_images") or []),
    }


class ModelManagerDialog(QtWidgets.QDialog):
    """List, inspect, rename, export, import and delete model bundles.

    Parameters
    ----------
    parent : QWidget
    manager : TrainingManager, optional
        While it trains, its output folder cannot be renamed or deleted.

    Signals
    -------
    modelsChanged()
        After every change to the installed models (rename, delete, a finished import).
    busyChanged(bool)
        True when an export or import starts, False when it has ended.
    jobFinished(str action, str path)
        An export or import ended: `action` is "export" or "import", `path` what was written
        or installed, "" when it failed (the error was shown with a message box).  Emitted
        after the list was refreshed and ``modelsChanged`` emitted.

    Attributes: ``last_result`` (Path or None, the last export/import's result),
    ``last_error`` (the text of the last message box).
    """

    modelsChanged = QtCore.pyqtSignal()
    busyChanged = QtCore.pyqtSignal(bool)
    jobFinished = QtCore.pyqtSignal(str, str)

    _TITLES = {"export": "Export model", "import": "Import model"}

    def __init__(self, parent=None, manager=None):
        super().__init__(parent)
        self.setWindowTitle("Manage models")
        self.setObjectName("ModelManagerDialog")
        self.resize(980, 580)
        self.manager = manager
        self.entries: list[tuple[str, Path, str, dict | None, str]] = []  # name, path, origin, card, error
        self._job: dict | None = None  # the running export/import: thread, worker, announce, text
        self.last_result: Path | None = None
        self.last_error = ""

        self.table = QtWidgets.QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.details = QtWidgets.QTextBrowser()
        self.details.setMinimumHeight(130)

        self.rename_button = QtWidgets.QPushButton("Rename…")
        self.rename_button.clicked.connect(self._ask_rename)
        self.export_button = QtWidgets.QPushButton("Export…")
        menu = QtWidgets.QMenu(self.export_button)
        menu.addAction("As a zip file…", lambda: self._ask_export(True))
        menu.addAction("As a folder…", lambda: self._ask_export(False))
        self.export_button.setMenu(menu)
        self.import_button = QtWidgets.QPushButton("Import…")
        menu = QtWidgets.QMenu(self.import_button)
        menu.addAction("From a zip file…", lambda: self._ask_import(True))
        menu.addAction("From a folder…", lambda: self._ask_import(False))
        self.import_button.setMenu(menu)
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.delete_button.clicked.connect(lambda: self.delete_model(self.selected_path()) if self.selected_path()
                                           else None)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.rename_button, self.export_button, self.import_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        self.folder_label = QtWidgets.QLabel()
        self.folder_label.setStyleSheet("color: #555")
        self.folder_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.busy_bar = QtWidgets.QProgressBar()  # busy mode (no known end) while a job runs
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumWidth(160)
        self.busy_bar.setVisible(False)
        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        status = QtWidgets.QHBoxLayout()
        status.addWidget(self.busy_bar)
        status.addWidget(self.status_label, 1)

        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.details, 1)
        lay.addWidget(self.folder_label)
        lay.addLayout(status)
        lay.addLayout(buttons)
        if manager is not None:  # a model that finishes training appears at once
            manager.finished.connect(self._on_training_done)
            manager.cancelled.connect(self._on_training_done)
            manager.busyChanged.connect(self._on_busy)
        self.refresh()

    def _on_training_done(self, *_args) -> None:
        self.refresh()

    def _on_busy(self, *_args) -> None:
        self._on_selection()

    # ================================================================= listing
    def refresh(self, select: Path | None = None) -> None:
        """Read the installed bundles again (keeping or setting the selection)."""
        from ..workflows.models import list_bundles, read_card, user_models_dir

        keep = select or self.selected_path()
        self.entries = []
        try:
            bundles = list_bundles()
        except OSError as exc:
            bundles = []
            self._error("Cannot list the models", str(exc))
        for name, path, origin in bundles:
            try:
                self.entries.append((name, path, origin, read_card(path), ""))
            except Exception as exc:  # noqa: BLE001 - shown as a broken entry
                self.entries.append((name, path, origin, None, str(exc)))
        self.table.setRowCount(len(self.entries))
        row_to_select = None
        for r, (name, path, origin, card, err) in enumerate(self.entries):
            info = card_summary(card) if card else {}
            values = [name, origin] + [info.get(c, "") for c in _COLUMNS[2:]]
            if err:
                values[2] = "damaged"
            for c, text in enumerate(values):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(err or str(path))
                self.table.setItem(r, c, item)
            if keep is not None and Path(path) == Path(keep):
                row_to_select = r
        self.table.resizeColumnsToContents()
        self.folder_label.setText(f"Your models are kept in {user_models_dir()}")
        if self.entries:
            self.table.selectRow(row_to_select if row_to_select is not None else 0)
        self._on_selection()

    def names(self) -> list[str]:
        return [e[0] for e in self.entries]

    def selected_path(self) -> Path | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.entries):
            return None
        return Path(self.entries[rows[0].row()][1])

    def select(self, name: str) -> bool:
        for r, e in enumerate(self.entries):
            if e[0] == name:
                self.table.selectRow(r)
                return True
        return False

    def _entry(self, path):
        return next((e for e in self.entries if Path(e[1]) == Path(path)), None)

    def _on_selection(self) -> None:
        path = self.selected_path()
        e = self._entry(path) if path else None
        user = bool(e and e[2] == "user")
        busy = bool(e and self._in_training(e[1]))
        idle = not self.is_busy()  # no export/import running
        self.rename_button.setEnabled(user and not busy and idle)
        self.delete_button.setEnabled(user and not busy and idle)
        self.export_button.setEnabled(bool(e and e[3]) and idle)
        self.import_button.setEnabled(idle)
        if e is None:
            self.details.setHtml("<i>No model selected.</i>")
            return
        name, path, origin, card, err = e
        if err:
            self.details.setHtml(f"<b>{html.escape(name)}</b> ({origin})<br><span style='color:#c00'>"
                                 f"{html.escape(err)}</span>")
            return
        rows = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
                       for k, v in card_summary(card).items() if v)
        note = "<br><i>This model is being trained now.</i>" if busy else ""
        self.details.setHtml(f"<b>{html.escape(name)}</b> ({origin}) — {html.escape(str(path))}"
                             f"<table>{rows}</table>{note}")

    def _in_training(self, path) -> bool:
        m = self.manager
        return bool(m is not None and m.is_running() and m.job is not None
                    and Path(m.job.out_dir).resolve() == Path(path).resolve())

    # ================================================================= actions (paths in)
    def rename_model(self, path, new_name: str) -> Path | None:
        """Rename a user model; its new folder, or None (with a message) on failure."""
        from ..workflows.models import rename_bundle

        if self._in_training(path):
            self._error("Rename model", "This model is being trained; wait until training ends.")
            return None
        if self._refuse_while_busy("Rename model"):
            return None
        try:
            new = rename_bundle(path, new_name)
        except Exception as exc:  # noqa: BLE001 - BundleError and OSError alike become messages
            self._error("Rename model", str(exc))
            return None
        self.refresh(select=new)
        self.modelsChanged.emit()
        return new

    def delete_model(self, path, confirm: bool = True) -> bool:
        """Delete a user model (asking first when `confirm`); True when it was deleted."""
        from ..workflows.models import delete_bundle

        if self._in_training(path):
            self._error("Delete model", "This model is being trained; stop the training first.")
            return False
        if self._refuse_while_busy("Delete model"):
            return False
        if confirm:
            ans = QtWidgets.QMessageBox.question(self, "Delete model", f"Delete the model {Path(path).name} "
                                                 "for good? Its weights and card are removed from disk.")
            if ans != QtWidgets.QMessageBox.Yes:
                return False
        try:
            delete_bundle(path)
        except Exception as exc:  # noqa: BLE001
            self._error("Delete model", str(exc))
            return False
        self.refresh()
        self.modelsChanged.emit()
        return True

    # ================================================================= export / import (background)
    def is_busy(self) -> bool:
        """True while an export or import runs."""
        return self._job is not None

    def start_export(self, path, dest, as_zip: bool = True, announce: bool = False) -> bool:
        """Start exporting the model at `path` to `dest` (a .zip path or a folder, see
        :func:`~atomlens.nn.bundle.export_bundle`) in the background; False (with a message)
        when another job runs.  `announce`: say where it went in a message box when done."""
        return self._start("export", (path, dest, as_zip), f"Exporting {Path(path).name} to {dest}…", announce)

    def start_import(self, src) -> bool:
        """Start installing the model in the folder or zip `src` into the user models in the
        background; False (with a message) when another job runs.  On success the list is
        refreshed with the new model selected and ``modelsChanged`` is emitted."""
        return self._start("import", (src,), f"Importing {src}…", False)

    def wait_for_job(self, timeout_ms: int = -1) -> bool:
        """Wait for the running export/import, processing events (the GUI stays responsive);
        True when no job runs any more (False: `timeout_ms` ran out first)."""
        if not self.is_busy():
            return True
        loop = QtCore.QEventLoop()
        self.jobFinished.connect(loop.quit)
        timer = QtCore.QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        if timeout_ms >= 0:
            timer.start(timeout_ms)
        try:
            if self.is_busy():
                loop.exec_()
        finally:
            timer.stop()
            self.jobFinished.disconnect(loop.quit)
        return not self.is_busy()

    def export_model(self, path, dest, as_zip: bool = True) -> Path | None:
        """:meth:`start_export` and wait for it: what was written, or None (with a message)."""
        if not self.start_export(path, dest, as_zip):
            return None
        self.wait_for_job()
        return self.last_result

    def import_model(self, src) -> Path | None:
        """:meth:`start_import` and wait for it: the new model's folder, or None (with a message)."""
        if not self.start_import(src):
            return None
        self.wait_for_job()
        return self.last_result

    def _refuse_while_busy(self, title: str) -> bool:
        if self.is_busy():
            self._error(title, "An export or import is running; wait until it ends.")
            return True
        return False

    def _start(self, action: str, args: tuple, text: str, announce: bool) -> bool:
        if self._refuse_while_busy(self._TITLES[action]):
            return False
        thread, worker = start_job(action, args, self._on_job_finished)
        self._job = {"thread": thread, "worker": worker, "announce": announce, "args": args}
        self.last_result = None
        self.status_label.setText(text)
        self.busy_bar.setVisible(True)
        self.setCursor(QtCore.Qt.BusyCursor)
        self._on_selection()
        self.busyChanged.emit(True)
        return True

    def _on_job_finished(self, action: str, path: str, error: str) -> None:
        job, self._job = self._job, None
        if job is not None:
            job["thread"].quit()
            if job["thread"].wait(5000):
                prune_jobs()
        self.busy_bar.setVisible(False)
        self.unsetCursor()
        self.last_result = Path(path) if path and not error else None
        self._on_selection()
        self.busyChanged.emit(False)
        title = self._TITLES.get(action, action)
        if error:
            self.status_label.setText(f"{title} failed.")
            self._error(title, error)
        elif action == "import":
            self.status_label.setText(f"Imported as {self.last_result.name}.")
            self.refresh(select=self.last_result)
            self.modelsChanged.emit()
        else:
            self.status_label.setText(f"Exported to {path}.")
            if job is not None and job["announce"]:
                QtWidgets.QMessageBox.information(self, title, f"Exported {Path(job['args'][0]).name} to\n{path}")
        self.jobFinished.emit(action, "" if error else path)

    # ================================================================= buttons (ask, then act)
    def _ask_rename(self) -> None:
        path = self.selected_path()
        if path is None:
            return
        name, ok = QtWidgets.QInputDialog.getText(self, "Rename model", "New name:", text=path.name)
        if ok and name.strip() and name.strip() != path.name:
            self.rename_model(path, name.strip())

    def _ask_export(self, as_zip: bool) -> None:
        path = self.selected_path()
        if path is None:
            return
        if as_zip:
            dest, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export model", str(Path.home() / f"{path.name}.zip"),
                                                            "Zip files (*.zip)")
            if dest and not dest.lower().endswith(".zip"):
                dest += ".zip"
        else:
            dest = QtWidgets.QFileDialog.getExistingDirectory(self, "Export model into folder", str(Path.home()))
        if dest:
            self.start_export(path, dest, as_zip, announce=True)

    def _ask_import(self, from_zip: bool) -> None:
        if from_zip:
            src, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import model", str(Path.home()), "Zip files (*.zip)")
        else:
            src = QtWidgets.QFileDialog.getExistingDirectory(self, "Import model folder", str(Path.home()))
        if src:
            self.start_import(src)

    def _error(self, title: str, text: str) -> None:
        self.last_error = text
        QtWidgets.QMessageBox.warning(self, title, text)

