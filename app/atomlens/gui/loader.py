"""Background loading: a worker object living on its own QThread.

The worker calls :func:`atomlens.io.load` (or :func:`atomlens.samples.load_sample`), reads
the first frame and its display levels, and reports back only through signals.  It never
touches a widget.
"""

from __future__ import annotations

import dataclasses
import traceback
import warnings
from pathlib import Path

from PyQt5 import QtCore

from .threads import keep_thread


__all__ = ["LoadRequest", "LoadResult", "LoadFailure", "LoadWorker", "BackgroundLoader"]


@dataclasses.dataclass
class LoadRequest:
    """What to load: a file `path` (with an optional `channel`) or a bundled `sample` key."""

    request_id: int
    path: str | None = None
    channel: str | None = None
    sample: str | None = None

    @property
    def display_name(self) -> str:
        return f"sample {self.sample}" if self.sample else Path(self.path or "").name


@dataclasses.dataclass
class LoadResult:
    request: LoadRequest
    micrograph: object
    first_frame: object
    levels: tuple[float, float]
    warnings: list[str]


@dataclasses.dataclass
class LoadFailure:
    request: LoadRequest
    message: str
    details: str | None  # a traceback for unexpected errors, None for LoadError
    expected: bool  # True for LoadError / missing file


class LoadWorker(QtCore.QObject):
    finished = QtCore.pyqtSignal(object)  # LoadResult
    failed = QtCore.pyqtSignal(object)  # LoadFailure

    @QtCore.pyqtSlot(object)
    def load(self, request: LoadRequest) -> None:
        try:
            from atomlens.workflows.analyse import LoadError, LoadWarning  # hyperspy is imported lazily there
        except Exception:  # noqa: BLE001 - a broken installation must not kill the app
            self.failed.emit(LoadFailure(request, "The file loader could not be imported.",
                                         traceback.format_exc(), False))
            return
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", LoadWarning)
                if request.sample:
                    from atomlens.samples import load_sample

                    mg = load_sample(request.sample)
                else:
                    from atomlens.workflows.analyse import load

                    mg = load(request.path, channel=request.channel)
                frame = mg.frame(0)
            from .image_view import robust_levels

            levels = robust_levels(frame)
            messages = []
            for w in caught:
                if issubclass(w.category, LoadWarning):
                    text = str(w.message)
                    if text not in messages:
                        messages.append(text)
            self.finished.emit(LoadResult(request, mg, frame, levels, messages))
        except LoadError as exc:
            self.failed.emit(LoadFailure(request, str(exc), None, True))
        except FileNotFoundError as exc:
            self.failed.emit(LoadFailure(request, f"File not found: {exc.filename or exc}",
                                         None, True))
        except MemoryError:
            self.failed.emit(LoadFailure(request, f"Not enough memory to open "
                                                  f"{request.display_name}.",
                                         traceback.format_exc(), False))
        except Exception as exc:  # noqa: BLE001 - report, never crash
            self.failed.emit(LoadFailure(
                request, f"Unexpected error while opening {request.display_name}:\n"
                         f"{type(exc).__name__}: {exc}", traceback.format_exc(), False))


class BackgroundLoader(QtCore.QObject):
    """Owns the worker thread; :meth:`submit` queues a request, results come as signals.

    Only the result of the latest request is delivered; older ones are dropped.
    """

    started = QtCore.pyqtSignal(object)  # LoadRequest
    finished = QtCore.pyqtSignal(object)  # LoadResult
    failed = QtCore.pyqtSignal(object)  # LoadFailure
    _request = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = QtCore.QThread()
        self._thread.setObjectName("atomlens-loader")
        self._worker = LoadWorker()
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.load)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        keep_thread(self._thread, self._worker, wait_ms=2000)  # see threads.py
        self.destroyed.connect(self._thread.quit)  # window deleted without close()
        self._thread.start()
        self._next_id = 0
        self._pending: set[int] = set()
        self.latest_id = -1

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, path=None, channel=None, sample=None) -> LoadRequest:
        self._next_id += 1
        req = LoadRequest(self._next_id, None if path is None else str(path), channel, sample)
        self.latest_id = req.request_id
        self._pending.add(req.request_id)
        self.started.emit(req)
        self._request.emit(req)
        return req

    def _on_finished(self, result: LoadResult) -> None:
        self._pending.discard(result.request.request_id)
        if result.request.request_id == self.latest_id:
            self.finished.emit(result)

    def _on_failed(self, failure: LoadFailure) -> None:
        self._pending.discard(failure.request.request_id)
        if failure.request.request_id == self.latest_id:
            self.failed.emit(failure)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the thread (waits for a running load to end, up to `timeout_ms`)."""
        if self._thread.isRunning():
            self._thread.quit()
            self._thread.wait(timeout_ms)  # a huge file may still be read; see threads.py
