"""Model > Retrain…: fine-tune a segmentation model on simulations that match the open image,
mixed with the user's corrected atoms, and watch it train.

The dialog only collects settings and shows what the :class:`~.training_manager.TrainingManager`
reports; the manager owns the training thread, so closing the dialog does not stop training and
re-opening it shows the curves so far.  The simulation settings are in
:class:`SimSettingsWidget` (:mod:`.retrain_settings`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from .retrain_settings import SimSettingsWidget
from ..workflows.finetune import TrainingJob, build_finetune_recipe

__all__ = ["RetrainDialog", "segmentation_models"]

#: (metrics key, plot, legend, colour, symbol)
_CURVES = (("train_loss", "loss", "training", "#1f77b4", None),
           ("val_loss", "loss", "validation (simulated)", "#ff7f0e", "o"),
           ("val_f1", "f1", "simulated validation set", "#2ca02c", "o"),
           ("user_f1", "f1", "your held-back atoms", "#d62728", "t"))


def segmentation_models() -> list[tuple[str, Path, dict]]:
    """[(name, folder, card)] of the installed atom-finding models (user ones shadow bundled
    ones of the same name); broken bundles are left out."""
    from ..workflows.models import list_bundles, read_card

    found: dict[str, tuple[Path, dict]] = {}
    for name, path, _origin in list_bundles():
        try:
            card = read_card(path)
        except Exception:  # noqa: BLE001 - a broken bundle is just not offered
            continue
        if card.get("task") == "segmentation":
            found[name] = (path, card)
    return [(n, p, c) for n, (p, c) in found.items()]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v) -> str:
    """A score with three decimals, or a dash where there is none (e.g. the precision of a
    model that found nothing where it is scored)."""
    return f"{v:.3f}" if _finite(v) else "–"


class RetrainDialog(QtWidgets.QDialog):
    """Settings, live curves and the before/after comparison of a fine-tuning run.

    Parameters
    ----------
    parent : QWidget
    manager : TrainingManager
        Runs the training (and keeps its history across dialogs).
    context : dict
        ``micrograph`` (Micrograph or None), ``frame`` (int), ``annotated`` (list of
        ``{"name", "image", "annotations", "px_size_nm"}``), ``current_model`` (bundle name
        or folder).

    Signals: ``modelChosen(str)`` with the new bundle's folder when the user clicks
    "Use the new model" (and, when the new model is worse than the one in use on the atoms the
    user corrected or confirmed, or no such comparison was possible, confirms it).
    """

    modelChosen = QtCore.pyqtSignal(str)

    def __init__(self, parent, manager, context: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("Retrain model")
        self.setObjectName("RetrainDialog")
        self.manager = manager
        self.context = dict(context or {})
        self.resize(1240, 800)
        self._curve_data = {k: ([], []) for k, *_ in _CURVES}
        self._models = segmentation_models()

        self.settings_widget = SimSettingsWidget(self, self.context, self._models)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.settings_widget)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        scroll.setFixedWidth(self.settings_widget.minimumSizeHint().width()
                             + scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth())

        right = QtWidgets.QVBoxLayout()
        self.loss_plot, self.f1_plot = self._make_plot("Loss", "loss"), self._make_plot("F1 of the atoms found", "f1")
        self.f1_plot.setYRange(0, 1.0, padding=0.02)
        self._items = {}
        for key, which, _label, colour, symbol in _CURVES:
            plot = self.loss_plot if which == "loss" else self.f1_plot
            self._items[key] = plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol=symbol,
                                         symbolSize=6, symbolBrush=colour, symbolPen=None, connect="finite")
        right.addWidget(self.loss_plot, 3)
        right.addWidget(self.f1_plot, 3)
        self.status_label = QtWidgets.QLabel("Ready: choose the settings and start training.")
        self.status_label.setWordWrap(True)
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        right.addWidget(self.status_label)
        right.addWidget(self.progress_bar)
        self.compare_caption = QtWidgets.QLabel("Before / after on your corrected atoms: shown when training ends.")
        self.compare_caption.setWordWrap(True)
        self.compare_table = QtWidgets.QTableWidget(4, 2)
        self.compare_table.setVerticalHeaderLabels(["Precision", "Recall", "F1", "Atoms found / yours"])
        self.compare_table.setHorizontalHeaderLabels(["Base model", "New model"])
        self.compare_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.compare_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.compare_table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.compare_table.resizeRowsToContents()
        t = self.compare_table
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + sum(t.rowHeight(r) for r in range(4))
                         + 2 * t.frameWidth() + 2)
        right.addWidget(self.compare_caption)
        right.addWidget(self.compare_table)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(300)
        self.log_view.setFixedHeight(90)
        right.addWidget(self.log_view)

        self.start_button = QtWidgets.QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start_training)
        self.cancel_button = QtWidgets.QPushButton("Stop (keep best)")
        self.cancel_button.setToolTip("Stop after the current step; the best model so far is kept")
        self.cancel_button.clicked.connect(self.manager.cancel)
        self.use_button = QtWidgets.QPushButton("Use the new model")
        self.use_button.clicked.connect(self._use_model)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.setToolTip("Close this window; training goes on in the background")
        self.close_button.clicked.connect(self.reject)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.use_button, self.close_button):
            buttons.addWidget(b)

        body = QtWidgets.QHBoxLayout()
        body.addWidget(scroll, 0)
        body.addLayout(right, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(body, 1)
        lay.addLayout(buttons)

        m = self.manager
        m.metrics.connect(self._on_metrics)
        m.progress.connect(self._on_progress)
        m.logged.connect(self._on_log)
        m.started.connect(self._on_started)
        m.finished.connect(self._on_finished)
        m.cancelled.connect(self._on_cancelled)
        m.failed.connect(self._on_failed)
        m.comparisonReady.connect(self._show_comparison)
        m.busyChanged.connect(self._update_buttons)
        self._restore_from_manager()

    # ================================================================= layout helpers
    @staticmethod
    def _make_plot(title: str, which: str) -> pg.PlotWidget:
        w = pg.PlotWidget(background="w")
        # the title doubles as the legend: a legend box would hide the curves
        keys = " &nbsp; ".join(f"<span style='color:{c}'>&#9632; {lab}</span>"
                               for _k, wh, lab, c, _s in _CURVES if wh == which)
        w.setTitle(f"<span style='color:#222'><b>{title}</b></span> &nbsp; {keys}", size="9pt")
        w.setLabel("bottom", "step")
        w.showGrid(x=True, y=True, alpha=0.25)
        w.setMouseEnabled(x=False, y=False)
        for ax in ("left", "bottom"):
            w.getAxis(ax).setTextPen("#333")
            w.getAxis(ax).setPen("#888")
        w.setMinimumHeight(170)
        return w

    # ================================================================= state
    def _restore_from_manager(self) -> None:
        """Show what the manager already has: curves, log, progress, result."""
        m = self.manager
        for metrics in m.history:
            self._add_metrics(metrics)
        self._redraw()
        for line in m.log_lines[-300:]:
            self.log_view.appendPlainText(line)
        if m.is_running() or m.state != "idle":
            frac, _msg = m.last_progress
            self.progress_bar.setValue(round(1000 * frac))
            self.status_label.setText(m.status_text())
        if m.comparison:
            self._show_comparison(m.comparison)
        self._update_buttons()

    def _update_buttons(self, *_args) -> None:
        running = self.manager.is_running()
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.settings_widget.setEnabled(not running)
        self.use_button.setEnabled(not running and bool(self.manager.result_path))

    def curve_data(self) -> dict:
        """{metrics key: (steps, values)} as plotted (for tests and screenshots)."""
        return {k: (list(x), list(y)) for k, (x, y) in self._curve_data.items()}

    # ================================================================= start
    def start_training(self) -> bool:
        """Build the job from the settings and start it; False (with a message) on errors."""
        if self.manager.is_running():
            self._error("A model is already being trained; wait for it or stop it first.")
            return False
        try:
            s = self.settings_widget.settings()
            _name, base_path, card = self.settings_widget.base_model()
            out = self.settings_widget.check_new_name(s["name"])
            self.settings_widget.validate_simulation(s, card, base_path)
            reals = self.settings_widget.annotated_images()
            recipe, overrides = build_finetune_recipe(card, base_path, s)
        except (ValueError, OSError) as exc:
            self._error(str(exc))
            return False
        job = TrainingJob(s["name"], recipe, out, overrides, reals, str(base_path),
                          current_model=self.context.get("current_model"))
        for k in self._curve_data:
            self._curve_data[k] = ([], [])
        self._redraw()
        self.log_view.clear()
        self.compare_table.clearContents()
        self.compare_caption.setText("Before / after on your corrected atoms: shown when training ends."
                                     if reals else "No annotated images are used: there is no before/after on "
                                                   "your atoms.")
        try:
            self.manager.start(job)
        except (RuntimeError, OSError) as exc:
            self._error(str(exc))
            return False
        return True

    def _error(self, text: str) -> None:
        self.status_label.setText(f"<span style='color:#c00'>{text}</span>")
        QtWidgets.QMessageBox.warning(self, "Retrain model", text)

    # ================================================================= manager signals
    def _on_started(self, name: str) -> None:
        self.status_label.setText(f"Training {name}…")
        self.progress_bar.setValue(0)
        self._update_buttons()

    def _on_progress(self, frac: float, _msg: str) -> None:
        self.progress_bar.setValue(round(1000 * frac))
        self.status_label.setText(self.manager.status_text())

    def _on_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def _add_metrics(self, m: dict) -> None:
        step = m.get("step")
        if step is None:
            return
        for key in self._curve_data:
            if _finite(m.get(key)):
                xs, ys = self._curve_data[key]
                xs.append(float(step))
                ys.append(float(m[key]))

    def _on_metrics(self, m: dict) -> None:
        self._add_metrics(m)
        self._redraw()

    def _redraw(self) -> None:
        for key, item in self._items.items():
            xs, ys = self._curve_data[key]
            item.setData(np.asarray(xs, float), np.asarray(ys, float))
        f1s = self._curve_data["val_f1"][1] + self._curve_data["user_f1"][1]
        if f1s:  # zoom in on the values, never above 1
            lo = max(0.0, min(f1s) - 0.05)
            self.f1_plot.setYRange(lo, 1.0, padding=0.02)

    def _on_finished(self, path: str, best: dict) -> None:
        f1 = best.get("val_f1")
        sel = best.get("selection") or {}
        kept = f"; kept step {sel['step']}: {sel['why']}" if sel.get("why") else ""
        self.status_label.setText(f"Saved the new model {Path(path).name}" + (f" (F1 {f1:.3f} on simulations)"
                                                                             if _finite(f1) else "") + kept
                                  + (". Scoring both models on your atoms…" if self.manager.state == "evaluating"
                                     else "."))
        self.progress_bar.setValue(1000)
        self._update_buttons()

    def _on_cancelled(self, path: str) -> None:
        self.status_label.setText(f"Stopped early; the best model so far is kept: {Path(path).name}" if path
                                  else "Stopped before the first evaluation: no model was saved.")
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(f"<span style='color:#c00'>Training failed: {message}</span>")
        self._update_buttons()
        if self.isVisible():
            QtWidgets.QMessageBox.warning(self, "Training failed", message)

    def _show_comparison(self, res: dict) -> None:
        """Fill the before/after table from the manager's comparison."""
        if res.get("error"):
            self.compare_caption.setText(f"Could not score the models on your atoms: {res['error']}")
            return
        where = (f"the held-back bottom {res['holdout']:.0%} of your annotated images (never trained on)"
                 if res.get("region") == "holdout" else "your annotated images (also used for training)")
        if not self.manager.is_running() or self.manager.state != "evaluating":
            self.status_label.setText(self.manager.status_text())
        if not res.get("n_confirmed"):
            self.compare_table.clearContents()
            self.compare_caption.setText(
                f"<b>No comparison is possible</b>: none of the atoms in {where} was corrected or confirmed by "
                "you. Only atoms you added, moved or re-classed (or marked reviewed) are scored, since the others "
                "are a model's own predictions; the places where you deleted an atom count beside them.")
            self._update_buttons()
            return
        n, m = res["n_confirmed"], res.get("n_images", 1)
        cur = ""
        if isinstance(res.get("current"), dict):
            cur = (f" The model in use, <b>{res.get('current_name', '')}</b>, scores F1 "
                   f"{res['current']['f1']:.3f} there.")
        n_del = (res.get("after") or res.get("before") or {}).get("n_deleted", 0)
        deleted = (f" and {n_del} place{'s' if n_del != 1 else ''} where you deleted an atom (one found there "
                   "is a false one)") if n_del else ""
        self.compare_caption.setText(f"<b>Before / after</b>: F1 on {n} atoms you corrected or confirmed "
                                     f"({m} image{'s' if m != 1 else ''}){deleted}, in {where}: base "
                                     f"<b>{res.get('base', '')}</b>, new <b>{res.get('new', '')}</b>.{cur}")
        ref = res["current"] if isinstance(res.get("current"), dict) else res.get("before", {})
        for col, key in enumerate(("before", "after")):
            r = res.get(key) or {}
            vals = [_fmt(r.get("precision")), _fmt(r.get("recall")), _fmt(r.get("f1")),
                    f"{r.get('n_pred', 0)} / {r.get('n_true', 0)}"]
            for row, text in enumerate(vals):
                item = QtWidgets.QTableWidgetItem(text)
                item.setTextAlignment(QtCore.Qt.AlignCenter)
                if row == 2 and col == 1 and _finite(ref.get("f1")):
                    better = r.get("f1", 0) >= ref["f1"]
                    item.setForeground(QtGui.QColor("#080" if better else "#c00"))
                self.compare_table.setItem(row, col, item)
        self._update_buttons()

    def _use_model(self) -> None:
        """Emit modelChosen; when the new model is worse on the user's atoms than the one in
        use, or no comparison was possible, only after the user confirms it."""
        path = self.manager.result_path
        if not path:
            return
        warning = self.manager.replace_warning()
        if warning:
            answer = QtWidgets.QMessageBox.question(
                self, "Use the new model?", warning + "\n\nUse the new model anyway?",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.No)
            if answer != QtWidgets.QMessageBox.Yes:
                self.status_label.setText("Kept the model in use.")
                return
        self.modelChosen.emit(path)

    def reject(self) -> None:
        """Close; a running training goes on (the main window's status bar follows it)."""
        super().reject()
