"""The analysis worker: runs :func:`atomlens.workflows.analyse.analyse_micrograph` (the entry that
``detect`` and ``batch`` run) on its own QThread.

:class:`AnalysisWorker` keeps the loaded models between runs in a
:class:`~atomlens.workflows.models.ModelCache` (which also falls back to the CPU when the GPU
fails), reports only through signals and never touches a widget.
:class:`AnalysisRunner` owns the thread, hands one request at a time to the worker and
coalesces re-derivations, so that dragging the threshold slider never piles up work.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
import traceback

import numpy as np
from PyQt5 import QtCore

from .threads import keep_thread

__all__ = ["AnalysisRequest", "AnalysisWorker", "AnalysisRunner", "PROGRESS_INTERVAL_S"]

#: The worker emits at most one progress signal per this many seconds (plus the last one).
PROGRESS_INTERVAL_S = 0.05



@dataclasses.dataclass
class AnalysisRequest:
    """One job for the worker.

    kind : "run" (the network) or "rederive" (atoms from `result`'s cached probabilities).
    model, cam_model : bundle names or folders (`cam_model` None: no defect CAMs).
    device : "auto", "cpu", "cuda" ...
    micrograph : the open Micrograph: its calibration (``px_size_nm`` None: the scale is
        estimated from the lattice), offset and imaging mode are the analysis's (the Analysis
        dock's pixel size is written to it when edited).
    image : (H, W) array, or None to read ``micrograph.frame(frame)`` in the worker.
    label : prefix of the progress text (e.g. "frame 3/10").
    tta : average the networks over the 8 rotations and mirror images (slower, steadier).
    material : material hint (a name from atomlens.analysis.material.MATERIALS) or None.
    edge_margin_px : atoms within this many pixels of an image edge are left out (0: none).
    model_given : the user picked the model (else it came from the mode: an image without a
        mode then gets the note that HAADF was assumed).
    cancel : this job's cancel token (set from the GUI thread).
    """

    kind: str = "run"
    model: str = "stem-haadf"
    cam_model: str | None = None
    device: str = "auto"
    image: np.ndarray | None = None
    micrograph: object = None
    frame: int = 0
    tta: bool = False
    model_given: bool = False
    threshold: float = 0.5
    refine: str = "centroid"
    material: str | None = None
    edge_margin_px: float = 0.0
    result: object = None
    label: str = ""
    request_id: int = 0
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)


class AnalysisWorker(QtCore.QObject):
    """Lives on the analysis thread.  Slots: :meth:`run`, :meth:`rederive`, :meth:`probe_devices`.

    Signals
    -------
    progress(float, str) : fraction 0..1 and a message, rate-limited.
    finished(object) : the :class:`~atomlens.analysis.pipeline.AnalysisResult`.
    failed(str, str) : title and message for the user.
    cancelled() : the job stopped because :attr:`cancel_event` was set.
    devicesFound(list) : device names that can be chosen ("cpu", "cuda"...).

    Each request carries its own cancel token (``request.cancel``, a threading.Event) that
    the GUI thread sets; :meth:`cancel_active` sets the one of the job in progress.
    ``network_runs`` counts calls of the network (tests check that re-deriving adds none).
    """

    progress = QtCore.pyqtSignal(float, str)
    finished = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str, str)
    cancelled = QtCore.pyqtSignal()
    devicesFound = QtCore.pyqtSignal(list)

    def __init__(self):
        super().__init__()
        from atomlens.workflows.models import ModelCache

        self.active: AnalysisRequest | None = None
        self.models = ModelCache(before_load=self._before_load, after_load=self._after_load)
        self.network_runs = 0
        self._probed = False
        self._last_emit = 0.0

    @property
    def predictors(self) -> dict:
        """The loaded predictors, {(model, device, CPU arithmetic): Predictor}."""
        return self.models.predictors

    # ---------------------------------------------------------------- helpers
    def cancel_active(self) -> None:
        """Set the cancel token of the job in progress (thread-safe)."""
        req = self.active
        if req is not None:
            req.cancel.set()

    #: bf16 autocast on the CPU: "auto", "on" or "off" (Model > CPU arithmetic; None: the
    #: ATOMLENS_CPU_BF16 environment variable decides).  Set from the GUI thread; a predictor
    #: is cached per choice, so a change takes effect at the next run.
    cpu_bf16: str | None = None

    def predictor(self, model: str, device: str):
        """The cached Predictor of `model` on `device` (loaded on first use)."""
        return self.models.get(model, device, cpu_bf16=self.cpu_bf16)

    @staticmethod
    def _before_load() -> None:
        _preload_torch_libraries()
        _tune_torch_threads()

    def _after_load(self) -> None:
        if not self._probed:  # torch is imported now: report the devices once
            self.probe_devices()
            _freeze_gc()

    def _report(self, label: str):
        def cb(frac: float, msg: str) -> None:
            now = time.monotonic()
            if frac >= 1.0 or now - self._last_emit >= PROGRESS_INTERVAL_S:
                self._last_emit = now
                self.progress.emit(float(frac), f"{label}: {msg}" if label else msg)
        return cb

    # ---------------------------------------------------------------- slots
    @QtCore.pyqtSlot()
    def probe_devices(self) -> None:
        """Emit :attr:`devicesFound` (imports torch: call it on the worker thread)."""
        self._probed = True
        found = ["cpu"]
        try:
            _preload_torch_libraries()
            import torch

            if torch.cuda.is_available():
                found.append("cuda")
        except Exception:  # noqa: BLE001 - a broken torch only hides the CUDA choice
            pass
        self.devicesFound.emit(found)

    @QtCore.pyqtSlot(object)
    def run(self, req: AnalysisRequest) -> None:
        """Run the network on one image; emits exactly one of finished, failed, cancelled."""
        self._guarded(self._run, req)

    @QtCore.pyqtSlot(object)
    def rederive(self, req: AnalysisRequest) -> None:
        """Atoms at a new threshold/refinement from ``req.result``'s cached probabilities.

        Emits finished with a new AnalysisResult (the old one is left as it was).  A result
        without probabilities (an image processed in strips) is analysed again instead.
        """
        self._guarded(self._run if req.result is None or req.result.prob is None else self._rederive, req)

    def _guarded(self, fn, req) -> None:
        from atomlens.workflows.models import BundleError

        self.active = req
        try:
            if req.cancel.is_set():
                raise InterruptedError("cancelled before it started")
            result = fn(req)
            if req.cancel.is_set():  # cancelled after the last check: the result is not wanted
                raise InterruptedError("cancelled")
            self.finished.emit(result)
        except InterruptedError:
            self.cancelled.emit()
        except BundleError as exc:
            self.failed.emit("Model could not be loaded", f"{exc}\n\nChoose another model or reinstall this one.")
        except MemoryError:
            self.failed.emit("Not enough memory",
                             "The analysis ran out of memory. Close other programs, crop the image, "
                             "or use the CPU if the GPU is small.")
        except ValueError as exc:
            self.failed.emit("Analysis failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - report, never crash the window
            traceback.print_exc()
            self.failed.emit("Analysis failed", f"Unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self.active = None

    def _image(self, req: AnalysisRequest) -> np.ndarray:
        image = req.image if req.image is not None else req.micrograph.frame(req.frame)
        image = np.asarray(image, np.float32)
        return image if image.flags.writeable else image.copy()  # torch warns on read-only arrays

    def _run(self, req: AnalysisRequest):
        from atomlens.workflows.analyse import AnalysisSettings, analyse_micrograph
        from atomlens.workflows.models import single_atom_model_for

        report = self._report(req.label)
        report(0.0, "loading the model")
        image = self._image(req)
        models = {}
        # every scored defect comes back: the Results dock's "Min. defect score" filters them,
        # down to 0 if asked
        settings = AnalysisSettings(threshold=req.threshold, refine=req.refine, material=req.material,
                                    edge_margin_px=req.edge_margin_px, min_defect_score=0.0)

        def predictor(name, device):
            p = self.predictor(name, device)
            p.tta = bool(req.tta)
            return p

        def attempt(device):
            pred = predictor(req.model, device)
            cam = predictor(req.cam_model, device) if req.cam_model else None
            if req.cancel.is_set():
                raise InterruptedError("cancelled")
            self.network_runs += 1
            models["pred"] = pred
            alt = None if req.model_given else single_atom_model_for(pred.card.get("name"), req.micrograph.mode)
            # the one entry of detect and batch, with the micrograph's calibration and mode
            return analyse_micrograph(req.micrograph, pred, frame=req.frame, settings=settings, cam_predictor=cam,
                                      image=image, model_given=req.model_given, override="pick the model to override",
                                      progress=report, cancel=req.cancel,
                                      single_atoms=(lambda: predictor(alt, device)) if alt else None)

        result, fallback = self.models.run_with_fallback(
            attempt, req.device, on_fallback=lambda _note: report(0.0, "GPU failed, retrying on the CPU"))
        pred = models["pred"]
        if fallback:
            result.info["notes"] = list(result.info.get("notes", [])) + [fallback]
            result.info["cuda_fallback"] = True
        result.info["requested_device"] = req.device
        result.info["colours"] = dict(pred.card.get("colours") or {})
        return result

    def _rederive(self, req: AnalysisRequest):
        res = dataclasses.replace(req.result, info=dict(req.result.info))
        image = None
        if res.needs_image(req.refine, req.material):
            image = res.network_image(self._image(req))
        self._report(req.label)(0.5, f"re-deriving atoms at threshold {req.threshold:.2f}")
        res.rederive(req.threshold, req.refine, image, material=req.material, edge_margin_px=req.edge_margin_px)
        return res


#: torch's shared libraries in load order (Linux).  Missing ones are skipped.
_TORCH_LIBS = ("libgomp.so.1", "libc10.so", "libc10_cuda.so", "libtorch_cpu.so", "libtorch_cuda.so",
               "libtorch.so", "libtorch_python.so")


def _preload_torch_libraries() -> None:
    """Load torch's big shared libraries with ctypes before ``import torch`` (Linux only).

    ``import torch`` loads ~0.5 GB of libraries while holding the GIL, which froze the event
    loop for ~350 ms on the first run; ctypes releases the GIL while it loads them, leaving
    ~70 ms (bench/gui_stall.py).  The same files with RTLD_GLOBAL, as torch does itself for
    its global dependencies; any failure just leaves the work to ``import torch``.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return
    import ctypes
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    lib = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    for name in _TORCH_LIBS:
        path = os.path.join(lib, name)
        if os.path.isfile(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return


def _freeze_gc() -> None:
    """Move every object alive now (Qt, pyqtgraph, torch: ~200 000 of them) out of the garbage
    collector's reach.  Otherwise a full collection, which the worker's allocations trigger
    now and then, scans them all with the GIL held: 50-100 ms during which the event loop
    cannot run (measured with bench/gui_stall.py).  Done once, after torch is imported; no
    collection first (it would itself hold the GIL for ~150 ms)."""
    import gc

    if not getattr(_freeze_gc, "done", False):
        _freeze_gc.done = True
        gc.freeze()


def _tune_torch_threads() -> None:
    """Leave one core to the GUI thread: torch's intra-op threads otherwise take them all,
    and the event loop waits for a core (measured with bench/gui_stall.py)."""
    try:
        import torch
    except ImportError:
        return
    if getattr(_tune_torch_threads, "done", False):
        return
    _tune_torch_threads.done = True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, cores - 1))


class AnalysisRunner(QtCore.QObject):
    """Owns the analysis thread and its worker; one job at a time.

    :meth:`submit` queues a request (a pending re-derivation is replaced by a newer one);
    :meth:`cancel` sets the worker's cancel token and drops queued jobs.  The worker's signals
    are re-emitted with the request they answer.

    Signals: ``progress(float, str)``, ``finished(object request, object result)``,
    ``failed(object request, str title, str message)``, ``cancelled(object request)``,
    ``busyChanged(bool)``, ``devicesFound(list)``.
    """

    progress = QtCore.pyqtSignal(float, str)
    finished = QtCore.pyqtSignal(object, object)
    failed = QtCore.pyqtSignal(object, str, str)
    cancelled = QtCore.pyqtSignal(object)
    busyChanged = QtCore.pyqtSignal(bool)
    devicesFound = QtCore.pyqtSignal(list)
    _run = QtCore.pyqtSignal(object)
    _rederive = QtCore.pyqtSignal(object)
    _probe = QtCore.pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thread = QtCore.QThread()
        self.thread.setObjectName("atomlens-analysis")
        self.worker = AnalysisWorker()
        self.worker.moveToThread(self.thread)
        self._run.connect(self.worker.run)
        self._rederive.connect(self.worker.rederive)
        self._probe.connect(self.worker.probe_devices)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.devicesFound.connect(self.devicesFound)
        keep_thread(self.thread, self.worker, stop=self.worker.cancel_active)  # see threads.py
        self.destroyed.connect(self.thread.quit)
        self.thread.start()
        self.current: AnalysisRequest | None = None
        self.queue: list[AnalysisRequest] = []
        self._next_id = 0
        if sys.getswitchinterval() > 0.002:
            # the GIL changes hands more often: Python code in the worker cannot hold the
            # event loop up for more than ~2 ms at a time (measured with bench/gui_stall.py)
            sys.setswitchinterval(0.002)

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.queue)

    def probe_devices(self) -> None:
        self._probe.emit()

    def set_cpu_bf16(self, choice: str | None) -> None:
        """Model > CPU arithmetic: "auto", "on" (bf16) or "off" (fp32); None follows the
        ATOMLENS_CPU_BF16 environment variable.  Used from the next run on."""
        self.worker.cpu_bf16 = choice

    def submit(self, req: AnalysisRequest) -> AnalysisRequest:
        self._next_id += 1
        req.request_id = self._next_id
        if req.kind == "rederive":
            self.queue = [q for q in self.queue if q.kind != "rederive"]
        was_busy = self.busy
        self.queue.append(req)
        if not was_busy:
            self.busyChanged.emit(True)
        self._dispatch()
        return req

    def cancel(self) -> bool:
        """Stop the running job and drop queued ones; False when idle."""
        if not self.busy:
            return False
        dropped, self.queue = self.queue, []
        if self.current is not None:
            self.current.cancel.set()
        else:  # pragma: no cover - a queue without a current job is dispatched at once
            for r in dropped:
                self.cancelled.emit(r)
            self.busyChanged.emit(False)
        return True

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.queue = []
        if self.current is not None:
            self.current.cancel.set()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(timeout_ms)

    def _dispatch(self) -> None:
        if self.current is not None or not self.queue:
            return
        self.current = self.queue.pop(0)
        (self._rederive if self.current.kind == "rederive" else self._run).emit(self.current)

    def _done(self):
        req, self.current = self.current, None
        self._dispatch()
        if not self.busy:
            self.busyChanged.emit(False)
        return req

    def _on_progress(self, frac: float, msg: str) -> None:
        if self.current is not None:
            self.progress.emit(frac, msg)

    def _on_finished(self, result) -> None:
        req = self.current
        self.finished.emit(req, result)
        self._done()

    def _on_failed(self, title: str, message: str) -> None:
        req = self.current
        self.failed.emit(req, title, message)
        self._done()

    def _on_cancelled(self) -> None:
        req = self.current
        self.cancelled.emit(req)
        self._done()
