"""Glue between the Analysis dock, the analysis thread, the overlays and the main window.

:class:`AnalysisController` turns the dock's requests into :class:`AnalysisRequest` jobs,
keeps one :class:`~atomlens.analysis.pipeline.AnalysisResult` per frame of the open image,
shows the displayed frame's result in the overlays, and re-derives atoms from the cached
probabilities (debounced) when the threshold or refinement changes.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from ..analysis.material import SUGGEST_NOTE
from .analysis_worker import AnalysisRequest, AnalysisRunner

__all__ = ["AnalysisController", "REDERIVE_DELAY_MS", "MAP_BUDGET_BYTES"]

#: The threshold slider re-derives atoms this long after it stops moving.
REDERIVE_DELAY_MS = 100
#: Probability maps kept for the frames of a stack (bytes); beyond it the oldest frames' maps
#: are dropped (their atoms stay; re-deriving them then runs the network again).
MAP_BUDGET_BYTES = 1 << 30


class AnalysisController(QtCore.QObject):
    """Runs analyses for a :class:`~atomlens.gui.main_window.MainWindow`.

    Signals
    -------
    resultChanged(object) : the result shown for the displayed frame changed (a new run, a
        re-derivation, another frame); None when there is none (new image, unanalysed frame).
    resultStored(object) : any new result, also of frames not displayed ("Run on all frames").
    analysisFailed(str) : a run failed; the message.
    analysisCancelled() : a run was cancelled and the GUI is idle again.
    busyChanged(bool) : a network run started or ended.

    Attributes: ``results`` (frame -> AnalysisResult), ``actions`` (Run F5, Run on all
    frames, Cancel Esc: QActions for the window's menu), ``runner`` (the thread's owner).
    """

    resultChanged = QtCore.pyqtSignal(object)
    resultStored = QtCore.pyqtSignal(object)
    analysisFailed = QtCore.pyqtSignal(str)
    analysisCancelled = QtCore.pyqtSignal()
    busyChanged = QtCore.pyqtSignal(bool)

    def __init__(self, window, dock, overlays):
        super().__init__(window)
        self.win, self.dock, self.overlays = window, dock, overlays
        self.runner = AnalysisRunner(self)
        self.micrograph = None
        self.results: dict = {}  # frame index -> AnalysisResult
        self._frames_left: list[int] = []  # "Run on all frames": frames still to run
        self._frames_total = 0
        self._t0 = 0.0
        self._running = False
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDERIVE_DELAY_MS)
        self._timer.timeout.connect(self._rederive_now)
        dock.runRequested.connect(self.run_current)
        dock.runAllRequested.connect(self.run_all_frames)
        dock.cancelRequested.connect(self.cancel)
        dock.thresholdChanged.connect(self.schedule_rederive)
        dock.refineChanged.connect(self.schedule_rederive)
        dock.materialChanged.connect(self.schedule_rederive)
        dock.edgeMarginChanged.connect(self.schedule_rederive)
        r = self.runner
        r.progress.connect(self._on_progress)
        r.finished.connect(self._on_finished)
        r.failed.connect(self._on_failed)
        r.cancelled.connect(self._on_cancelled)
        r.devicesFound.connect(dock.set_devices)
        dock.devicesWanted.connect(r.probe_devices)
        dock.pxSizeEdited.connect(self._on_px_edited)
        window.image_view.frameChanged.connect(self.on_frame_changed)
        window.image_view.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._hovering = False
        self.actions = self._make_actions(window)
        self._update_actions()

    def _make_actions(self, window):
        def action(text, slot, shortcut, tip):
            act = QtWidgets.QAction(text, window)
            if shortcut:
                act.setShortcut(QtGui.QKeySequence(shortcut))
            act.setStatusTip(tip)
            act.triggered.connect(lambda _=False: slot())
            return act

        return (action("&Run", self.run_current, "F5", "Find and class the atoms of the displayed frame"),
                action("Run on &all frames", self.run_all_frames, None, "Analyse every frame of the stack"),
                action("&Cancel", self.cancel, "Esc", "Stop the running analysis"))

    def _update_actions(self) -> None:
        run, run_all, cancel = self.actions
        run.setEnabled(not self._running)
        run_all.setEnabled(not self._running and self.micrograph is not None and self.micrograph.is_stack)
        cancel.setEnabled(self._running)

    # ---------------------------------------------------------------- state
    @property
    def busy(self) -> bool:
        """True while a network run (or a series of frames) is in progress."""
        return self._running

    def current_frame(self) -> int:
        return self.win.image_view.current_frame_index

    def current_result(self):
        """Result of the displayed frame, or None."""
        return self.results.get(self.current_frame())

    def set_micrograph(self, mg) -> None:
        """A new image was opened: drop the old results and jobs."""
        self.runner.cancel()  # its answer is ignored: it belongs to the old image
        self._frames_left = []
        self._set_running(False)
        self.micrograph = mg
        self.results = {}
        self.overlays.set_result(None)
        self.dock.set_image(mg)
        self._update_actions()
        self.resultChanged.emit(None)

    def calibration_changed(self) -> None:
        """The open image's pixel size changed (menu or dock)."""
        mg = self.micrograph
        if mg is None:
            return
        self.dock.set_px_size_nm(mg.px_size_nm, (getattr(mg, "assumed", None) or {}).get("px_size"))
        if self.results:
            self.dock.set_status("Pixel size changed: run again (F5) to analyse at the new scale.")

    def _on_px_edited(self, px_size_nm) -> None:
        if self.micrograph is not None:
            self.win.set_pixel_size_nm(px_size_nm)  # calls calibration_changed()

    def on_frame_changed(self, index: int) -> None:
        res = self.results.get(index)
        self.overlays.set_result(res, res.info.get("colours") if res else None)
        self.resultChanged.emit(res)
        if res is not None:
            self.schedule_rederive()

    def _on_mouse_moved(self, scene_pos) -> None:
        """Describe the atom under the cursor in the status bar."""
        vb = self.win.image_view.viewbox
        text = None
        if not self.overlays.atoms.is_empty() and vb.sceneBoundingRect().contains(scene_pos):
            p = vb.mapSceneToView(scene_pos)
            text = self.overlays.hover_text(p.x(), p.y())
        if text:
            self.win.statusBar().showMessage(text, 5000)
            self._hovering = True
        elif self._hovering:
            self.win.statusBar().clearMessage()
            self._hovering = False

    # ---------------------------------------------------------------- running
    def _request(self, frame: int, image=None, label: str = "", kind: str = "run", result=None):
        mg = self.micrograph
        return AnalysisRequest(kind=kind, model=self.dock.model_path(), cam_model=self.dock.cam_model(),
                               device=self.dock.device(), image=image, micrograph=mg, frame=frame,
                               tta=self.dock.tta(), model_given=self.dock.model_picked_by_hand,
                               threshold=self.dock.threshold(), refine=self.dock.refine(),
                               material=self.dock.material(), edge_margin_px=self.dock.edge_margin(),
                               result=result,
                               label=label)

    def _can_start(self) -> bool:
        if self.micrograph is None:
            self.win.statusBar().showMessage("Open an image first.", 5000)
            return False
        if self._running:
            return False
        if self.dock.model_path() is None:
            self._fail(None, "No model", "No atom-finding model is installed.")
            return False
        return True

    def run_current(self) -> bool:
        """Analyse the displayed frame (F5).  False when nothing was started."""
        if not self._can_start():
            return False
        frame = self.current_frame()
        label = f"frame {frame}" if self.micrograph.is_stack else ""
        self._start([self._request(frame, self.win.image_view.current_frame(), label)])
        return True

    def run_all_frames(self) -> bool:
        """Analyse every frame of the stack, one after another (the model stays loaded)."""
        if not self._can_start():
            return False
        mg = self.micrograph
        self._frames_total = mg.n_frames
        self._frames_left = list(range(1, mg.n_frames))
        self._start([self._request(0, None, self._frame_label(0))])
        return True

    def _frame_label(self, frame: int) -> str:
        return f"frame {frame + 1}/{self._frames_total}"

    def _start(self, requests) -> None:
        self._timer.stop()
        self._t0 = time.perf_counter()
        self._set_running(True)
        self.dock.set_notes([])
        self.dock.set_progress(0.0, "Starting…")
        for req in requests:
            self.runner.submit(req)

    def cancel(self) -> bool:
        """Stop the running analysis (Esc); False when none runs."""
        self._frames_left = []
        return self.runner.cancel() if self._running else False

    def _set_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self.dock.set_busy(running)
            self._update_actions()
            self.busyChanged.emit(running)

    def shutdown(self) -> None:
        self._timer.stop()
        self.runner.shutdown()

    # ---------------------------------------------------------------- re-deriving
    def schedule_rederive(self, *_) -> None:
        """Re-derive the displayed result's atoms at the dock's threshold/refinement/material/edge margin after
        :data:`REDERIVE_DELAY_MS` (restarted by every change: the slider stays live)."""
        if self.current_result() is not None:
            self._timer.start()

    def _rederive_now(self) -> None:
        res = self.current_result()
        if res is None or self._running:
            return  # a run in progress: it is checked again when it ends
        if (abs(res.threshold - self.dock.threshold()) < 1e-9 and res.refine == self.dock.refine()
                and res.material == self.dock.material()
                and abs(res.edge_margin_px - self.dock.edge_margin()) < 1e-9):
            return
        need_image = res.needs_image(self.dock.refine(), self.dock.material())
        image = self.win.image_view.current_frame() if need_image else None
        req = self._request(res.frame, image, kind="rederive", result=res)
        if res.prob is None:  # an image processed in strips keeps no probabilities: run again
            self._start([req])
            return
        self.dock.set_status(f"Re-deriving atoms at threshold {req.threshold:.2f}…")
        self.runner.submit(req)

    # ---------------------------------------------------------------- answers
    def _on_progress(self, frac: float, msg: str) -> None:
        if self._running:
            self.dock.set_progress(frac, msg)

    def _stale(self, req) -> bool:
        return req is None or req.micrograph is not self.micrograph or req.cancel.is_set()

    def _on_finished(self, req, result) -> None:
        if self._stale(req):  # cancelled too late to stop it, or an older image's job
            if req is not None and req.micrograph is self.micrograph:
                self._on_cancelled(req)
            return
        self.results.pop(result.frame, None)  # newest last
        self.results[result.frame] = result
        self._trim_maps()
        self.resultStored.emit(result)
        shown = result.frame == self.current_frame()
        if shown:
            self.overlays.set_result(result, result.info.get("colours"))
            self.resultChanged.emit(result)
        dev = result.info.get("device")
        self.dock.set_device_used(f"{dev} (bf16)" if dev == "cpu" and result.info.get("bf16") else dev)
        self.dock.set_notes(list(result.info.get("notes", [])))
        guessed = [n for n in result.info.get("notes", []) if n.startswith("no calibration")]
        if guessed:
            self.dock.set_px_notice("Uncalibrated image: " + guessed[0])
        n_cls = np.bincount(result.atoms.cls, minlength=len(result.class_names))  # counts() per atom is slow
        counts = ", ".join(f"{n} {c}" for c, n in zip(result.class_names[1:], n_cls[1:]) if n)
        summary = f"{len(result.atoms)} atoms" + (f" ({counts})" if counts else "")
        if result.defects is not None:
            summary += f", {len(result.defects)} defects"
        if req.kind == "rederive" and result.prob is not None:
            self.dock.set_status(f"{summary} at threshold {result.threshold:.2f}")
        elif self._frames_left:
            frame = self._frames_left.pop(0)
            self.runner.submit(self._request(frame, None, self._frame_label(frame)))
            return
        else:
            dt = time.perf_counter() - self._t0
            where = f" in {self._frames_total} frames" if self._frames_total > 1 else ""
            self._frames_total = 0
            self._set_running(False)
            self.dock.set_progress(1.0, "")
            self.dock.set_status(f"Done: {summary}{where} in {dt:.1f} s")
            notes = result.info.get("notes", [])
            warn = ("  ⚠ the image shows stripes, not a lattice: see the Analysis panel"
                    if any(n.startswith("stripes") for n in notes) else "")
            if not warn and any(n.startswith(SUGGEST_NOTE) for n in notes):
                warn = "  ⚠ a 2H TMD? Choose its Material in the Analysis panel"
            self.win.statusBar().showMessage(f"Analysis done: {summary}{warn}", 15000 if warn else 8000)
        if shown and not self._running:
            self.schedule_rederive()  # the slider moved during the run

    def _trim_maps(self) -> None:
        """Keep probability maps within :data:`MAP_BUDGET_BYTES`: the displayed frame's and
        the newest; older frames lose theirs (``info["prob_dropped"]``)."""
        shown, total = self.current_frame(), 0
        for frame in [shown] + [f for f in reversed(self.results) if f != shown]:
            res = self.results.get(frame)
            if res is None or res.prob is None:
                continue
            total += res.prob.nbytes
            if total > MAP_BUDGET_BYTES and frame != shown:
                res.prob = None
                res.info["prob_dropped"] = True

    def _on_failed(self, req, title: str, message: str) -> None:
        if self._stale(req):
            return
        self._frames_left = []
        self._fail(req, title, message)

    def _fail(self, req, title: str, message: str) -> None:
        self._set_running(False)
        self.dock.set_progress(0.0, "")
        self.dock.set_status(f"{title}: {message.splitlines()[0]}", error=True)
        self.win.statusBar().showMessage(f"{title}: {message.splitlines()[0]}", 10000)
        if getattr(self.win, "interactive", False):
            from . import dialogs

            dialogs.show_error(self.win, title, message)
        else:
            print(f"{title}: {message}", file=sys.stderr)
        self.analysisFailed.emit(message)

    def _on_cancelled(self, req) -> None:
        if req is not None and req.micrograph is not self.micrograph:
            return
        self._frames_left = []
        self._frames_total = 0
        if req is not None and req.kind == "rederive" and not self._running:
            return
        self._set_running(False)
        self.dock.set_progress(0.0, "")
        self.dock.set_status("Cancelled")
        self.win.statusBar().showMessage("Analysis cancelled", 5000)
        self.analysisCancelled.emit()
