"""Fine-tuning in the background: :class:`TrainingManager` runs :func:`atomlens.nn.train.train`
on a QThread and keeps what the retrain dialog shows (curves, log, result), so the dialog can
be closed and re-opened while a model trains.

The manager is parented to the main window and outlives any dialog.  Its worker calls the
same core ``train(...)`` as ``atomlens train``; it reports only through signals and never
touches a widget.  When training ends (finished, cancelled or stopped by the time limit) and
annotated images were used, the worker also scores the base and the new model on the user's
corrected atoms (:func:`atomlens.workflows.finetune.compare_models`) before it returns.

The recipe, the job and the comparison are headless, in :mod:`atomlens.workflows.finetune`
(re-exported here).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
import traceback
import weakref
from pathlib import Path

from PyQt5 import QtCore, sip

from ..workflows.finetune import (DEFAULT_AMOUNT_KEY, TrainingJob, base_recipe, build_finetune_recipe,
                                  variant_for)
from .threads import keep_thread, release_thread

__all__ = ["DEFAULT_AMOUNT_KEY", "TrainingJob", "TrainingManager", "base_recipe", "build_finetune_recipe", "variant_for"]



class _Control:
    """A job's stop controls (plain Python, shared by the worker and its manager)."""

    def __init__(self):
        self.cancel_event = threading.Event()
        self.abort = False  # set on shutdown or deletion: skip the comparison

    def stop(self) -> None:
        self.abort = True
        self.cancel_event.set()




class _Worker(QtCore.QObject):
    progress = QtCore.pyqtSignal(float, str)
    metrics = QtCore.pyqtSignal(dict)
    logged = QtCore.pyqtSignal(str)
    trained = QtCore.pyqtSignal(str, dict, bool)  # bundle folder or "", best metrics, cancelled
    compared = QtCore.pyqtSignal(dict)
    failed = QtCore.pyqtSignal(str, str)  # message, details
    done = QtCore.pyqtSignal()

    def __init__(self, job: TrainingJob):
        super().__init__()
        self.job = job
        self.control = _Control()
        self.cancel_event = self.control.cancel_event
        self.owner = None  # weakref to the TrainingManager (set by it)
        self._last_progress = 0.0

    def owner_gone(self) -> bool:
        """True (and the job told to stop) once the manager that started it is deleted.

        Checked by the worker at every step rather than through the manager's ``destroyed``
        signal: a Python slot on ``destroyed`` of an object that Python itself is deleting can
        run after the slot's own objects are freed (a segfault on CI)."""
        if self.owner is None:
            return False
        m = self.owner()
        gone = m is None or sip.isdeleted(m)
        if gone and not self.control.abort:
            self.control.stop()
        return gone

    @property
    def abort(self) -> bool:
        """Set on shutdown or when the manager is deleted: skip the comparison."""
        return self.control.abort

    @abort.setter
    def abort(self, value: bool) -> None:
        self.control.abort = bool(value)

    def _progress(self, frac: float, msg: str) -> None:
        if self.owner_gone():
            return
        now = time.monotonic()
        if now - self._last_progress >= 0.1 or frac >= 1.0:  # at most ~10 updates a second
            self._last_progress = now
            self.progress.emit(float(frac), str(msg))

    @QtCore.pyqtSlot()
    def run(self) -> None:
        job, out = self.job, Path(self.job.out_dir)
        try:
            from ..workflows.finetune import train

            best = train(job.recipe, out, progress=self._progress, cancel=self.cancel_event, log=self.logged.emit,
                         overrides=job.overrides, real_images=job.real_images,
                         on_metrics=lambda m: self.metrics.emit(dict(m)))
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a crash
            kept = (out / "card.json").is_file()
            if not kept:
                shutil.rmtree(out, ignore_errors=True)
            msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, RuntimeError)) else str(exc)
            if kept:
                msg += f"\nThe best model so far was kept in {out}."
            self.failed.emit(msg, traceback.format_exc())
            self.done.emit()
            return
        kept = (out / "card.json").is_file()
        if not kept:
            shutil.rmtree(out, ignore_errors=True)
        self.trained.emit(str(out) if kept else "", dict(best or {}), self.cancel_event.is_set())
        if kept and job.real_images and job.base_model and not self.abort:
            self.compared.emit(self._compare(out))
        self.done.emit()

    def _compare(self, out: Path) -> dict:
        """:func:`atomlens.workflows.finetune.compare_models` of this job and its new model."""
        from ..workflows.finetune import compare_models

        return compare_models(self.job, out)


class TrainingManager(QtCore.QObject):
    """Runs one fine-tuning job at a time in the background and remembers its history.

    Signals
    -------
    started(str name), progress(float fraction, str message), metrics(dict) (what
    ``train``'s ``on_metrics`` reports: ``{"step", "train_loss"}`` every ~25 steps, the full
    validation metrics at evaluations), logged(str), finished(str bundle_path, dict
    best_metrics), failed(str message), cancelled(str bundle_path_or_empty),
    comparisonReady(dict) (``{"region", "holdout", "base", "new", "n_confirmed", "n_images",
    "before": {...}, "after": {...}}``, with ``"current"`` and ``"current_name"`` when the model
    in use is neither; without the scores when ``n_confirmed`` is 0; or with ``"error"``),
    busyChanged(bool), statusChanged(str).

    Attributes: ``job`` (the last :class:`TrainingJob`), ``history`` (its metrics dicts),
    ``log_lines``, ``state`` ("idle", "training", "evaluating", "finished", "cancelled",
    "failed"), ``result_path``, ``best_metrics``, ``comparison``, ``error``,
    ``last_progress`` ((fraction, message)).
    """

    started = QtCore.pyqtSignal(str)
    progress = QtCore.pyqtSignal(float, str)
    metrics = QtCore.pyqtSignal(dict)
    logged = QtCore.pyqtSignal(str)
    finished = QtCore.pyqtSignal(str, dict)
    failed = QtCore.pyqtSignal(str)
    cancelled = QtCore.pyqtSignal(str)
    comparisonReady = QtCore.pyqtSignal(dict)
    busyChanged = QtCore.pyqtSignal(bool)
    statusChanged = QtCore.pyqtSignal(str)

    MAX_LOG = 500

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = self._worker = None
        self.job: TrainingJob | None = None
        self._reset()

    def _reset(self) -> None:
        self.history: list[dict] = []
        self.log_lines: list[str] = []
        self.state = "idle"
        self._state_after = "finished"  # the state once the comparison is done
        self.result_path = ""
        self.best_metrics: dict = {}
        self.comparison: dict | None = None
        self.error = ""
        self.last_progress = (0.0, "")

    # ------------------------------------------------------------------ public API
    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, job: TrainingJob) -> None:
        """Start `job` in the background.  Raises RuntimeError while another job runs and
        FileExistsError when `job.out_dir` already holds something."""
        if self.is_running():
            raise RuntimeError(f"a model is already being trained ({self.job.name}); wait for it or cancel it")
        out = Path(job.out_dir)
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} already exists; choose another model name")
        self._reset()
        self.job = job
        self.state = "training"
        self._thread = QtCore.QThread()
        self._thread.setObjectName("atomlens-training")
        self._worker = _Worker(job)
        self._worker.moveToThread(self._thread)
        keep_thread(self._thread, self._worker, stop=self._worker.cancel_event.set, wait_ms=5000)  # see threads.py
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.metrics.connect(self._on_metrics)
        self._worker.logged.connect(self._on_log)
        self._worker.trained.connect(self._on_trained)
        self._worker.compared.connect(self._on_compared)
        self._worker.failed.connect(self._on_failed)
        self._worker.done.connect(self._on_done)
        # the thread ends with its job even when no manager is left to tell it (QThread.quit
        # is thread-safe)
        self._worker.done.connect(self._thread.quit, QtCore.Qt.DirectConnection)
        # a deleted manager's job stops at its next step (and only that job)
        self._worker.owner = weakref.ref(self)
        self._thread.start()
        self.started.emit(job.name)
        self.busyChanged.emit(True)
        self.statusChanged.emit(self.status_text())

    def cancel(self) -> bool:
        """Stop after the current step; the best checkpoint so far is kept.  False when idle."""
        if not self.is_running():
            return False
        self._worker.cancel_event.set()
        self._on_log("cancelling: stopping after the current step, keeping the best model so far")
        return True

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait (up to `timeout_ms`) for the worker: for closing the application."""
        if self._thread is None:
            return
        self._worker.abort = True
        self._worker.cancel_event.set()
        self._thread.quit()
        self._thread.wait(timeout_ms)

    def status_text(self) -> str:
        """One line for the main window's status bar ("" when nothing has run)."""
        name = self.job.name if self.job else ""
        if self.state == "training":
            _frac, msg = self.last_progress
            text = f"Training {name}: {msg or 'starting…'}"
            last = next((m for m in reversed(self.history) if "val_loss" in m), None)
            if last is not None:
                for key, label in (("val_f1", "sim F1"), ("user_f1", "your atoms F1")):
                    if isinstance(last.get(key), (int, float)) and math.isfinite(last[key]):
                        text += f", {label} {last[key]:.3f}"
            if self._worker is not None and self._worker.cancel_event.is_set():
                text += " (cancelling…)"
            return text
        if self.state == "evaluating":
            return f"Training {name} done; scoring the old and new model on your atoms…"
        if self.state in ("finished", "cancelled"):
            if not self.result_path:
                return f"Training {name} cancelled before a model was saved"
            f1 = self.best_metrics.get("val_f1")
            extra = f" (sim F1 {f1:.3f})" if isinstance(f1, (int, float)) else ""
            c = self.comparison or {}
            if isinstance(c.get("before"), dict) and isinstance(c.get("after"), dict):
                extra = (f" (F1 on {c['after']['n_true']} atoms you corrected or confirmed: "
                         f"{c['before']['f1']:.3f} → {c['after']['f1']:.3f})")
            elif c and c.get("n_confirmed") == 0:
                extra += " (no comparison on your atoms: none in the held-back strip was corrected or confirmed)"
            sel = self.best_metrics.get("selection") or {}
            if sel.get("step") is not None:
                extra += f", kept step {sel['step']}" + (" (best on your atoms)" if sel.get("metric") == "user_f1"
                                                         else " (best on simulations)")
            return f"New model {name} saved{extra}" + (" (cancelled early)" if self.state == "cancelled" else "")
        if self.state == "failed":
            return f"Training {name} failed: {self.error.splitlines()[0] if self.error else ''}"
        return ""

    def replace_warning(self) -> str | None:
        """Why the new model should not silently replace the one in use, or None.

        None when the new model's F1 on the atoms the user corrected or confirmed is at least
        that of the model in use (the base model, unless the job named another current one);
        otherwise a sentence with both figures: the new model is worse there, or no comparison
        on the user's atoms was possible (then the simulated F1 of both, where known)."""
        if not self.result_path:
            return None
        new = Path(self.result_path).name
        c = self.comparison or {}
        ref = c.get("current") if isinstance(c.get("current"), dict) else c.get("before")
        after = c.get("after")
        if isinstance(ref, dict) and isinstance(after, dict) and ref.get("n_true") and not c.get("error"):
            ref_name = c.get("current_name") or c.get("base", "the current model")
            a, b = float(after["f1"]), float(ref["f1"])
            if a >= b:
                return None
            return (f"The new model {new} finds your atoms worse than {ref_name}: F1 {a:.3f} against {b:.3f} on "
                    f"the {after['n_true']} atoms you corrected or confirmed ({c.get('n_images', 1)} image"
                    f"{'s' if c.get('n_images', 1) != 1 else ''}).")
        if c.get("error"):
            why = f"scoring the models on your atoms failed ({c['error']})"
        elif c.get("n_confirmed") == 0:
            where = "the held-back strip" if c.get("region") == "holdout" else "your annotated images"
            why = f"none of the atoms in {where} was corrected or confirmed by you"
        elif self.state == "evaluating":
            why = "the models are still being scored on your atoms"
        elif not (self.job and self.job.real_images):
            why = "no corrected images were used"
        else:
            why = "the models were not scored on your atoms"
        text = f"No comparison on your atoms was possible: {why}."
        base_sim = next((m.get("val_f1") for m in self.history if m.get("baseline")), None)
        new_sim = self.best_metrics.get("val_f1")
        if isinstance(new_sim, (int, float)) and math.isfinite(new_sim):
            text += f" On simulated images: F1 {new_sim:.3f} (new)"
            if isinstance(base_sim, (int, float)) and math.isfinite(base_sim):
                text += f" against {base_sim:.3f} ({Path(self.job.base_model or 'the base model').name})"
            text += "."
        return text

    # ------------------------------------------------------------------ worker signals
    def _on_progress(self, frac: float, msg: str) -> None:
        self.last_progress = (frac, msg)
        self.progress.emit(frac, msg)
        self.statusChanged.emit(self.status_text())

    def _on_metrics(self, m: dict) -> None:
        self.history.append(m)
        self.metrics.emit(m)

    def _on_log(self, line: str) -> None:
        self.log_lines.append(line)
        del self.log_lines[:-self.MAX_LOG]
        self.logged.emit(line)

    def _on_trained(self, path: str, best: dict, was_cancelled: bool) -> None:
        self.result_path, self.best_metrics = path, best
        self.state = "cancelled" if was_cancelled else "finished"
        if path and self.job.real_images and self.job.base_model and not self._worker.abort:
            self._state_after, self.state = self.state, "evaluating"
        if was_cancelled:
            self.cancelled.emit(path)
        else:
            self.finished.emit(path, best)
        self.statusChanged.emit(self.status_text())

    def _on_compared(self, res: dict) -> None:
        self.comparison = res
        self.state = self._state_after
        self.comparisonReady.emit(res)
        self.statusChanged.emit(self.status_text())

    def _on_failed(self, message: str, details: str) -> None:
        self.state, self.error = "failed", message
        self._on_log("error: " + message)
        self.failed.emit(message)

    def _on_done(self) -> None:
        thread = self._thread
        self._thread = self._worker = None
        if self.state == "evaluating":  # the comparison was skipped
            self.state = self._state_after
        thread.quit()
        if thread.wait(5000):  # finished: Python may now free both (never while running)
            release_thread(thread)
        self.busyChanged.emit(False)
        self.statusChanged.emit(self.status_text())
