"""Background export and import of model bundles for the model manager (:mod:`.model_manager`).

:func:`start_job` runs one :func:`~atomlens.nn.bundle.export_bundle` or
:func:`~atomlens.nn.bundle.import_bundle` call on its own QThread.  The worker touches no
widget and reports only by its ``finished(action, path, error)`` signal.  Threads are kept
referenced in :data:`JOBS` until they have ended (whether or not the dialog that started them
still exists), their thread quits by itself when the job is done, and running jobs are waited
for at exit, so a job is never cut off mid-write (nn.bundle writes through temporary names
and renames at the end in any case).
"""

from __future__ import annotations

import atexit

from PyQt5 import QtCore

__all__ = ["ACTIONS", "BundleJob", "JOBS", "prune_jobs", "start_job", "wait_for_jobs"]

#: The jobs and the :mod:`atomlens.nn.bundle` function each calls.
ACTIONS = {"export": "export_bundle", "import": "import_bundle"}

JOBS: list = []  # (thread, worker), referenced until the thread has ended


class BundleJob(QtCore.QObject):
    """One export or import on a worker thread.

    Signals: ``finished(str action, str path, str error)``: `path` what was written or
    installed ("" on failure), `error` the readable message ("" on success).
    """

    finished = QtCore.pyqtSignal(str, str, str)

    def __init__(self, action: str, args: tuple):
        super().__init__()
        if action not in ACTIONS:
            raise ValueError(f"unknown bundle job {action!r}")
        self.action, self.args = action, tuple(args)

    @QtCore.pyqtSlot()
    def run(self) -> None:
        from ..workflows import models as bundle

        path, error = "", ""
        try:
            path = str(getattr(bundle, ACTIONS[self.action])(*self.args))
        except Exception as exc:  # noqa: BLE001 - BundleError and OSError alike become messages
            error = str(exc) or type(exc).__name__
        finally:
            self.finished.emit(self.action, path, error)


def prune_jobs() -> None:
    """Forget the jobs whose thread has ended."""
    JOBS[:] = [(t, w) for t, w in JOBS if not t.isFinished()]


def start_job(action: str, args: tuple, on_finished) -> tuple[QtCore.QThread, BundleJob]:
    """Start `action` ("export" or "import") with `args` on a new thread; `on_finished`
    (a slot, best a bound method of a QObject so that the connection ends with it) gets
    ``(action, path, error)`` in the GUI thread.  Returns (thread, worker)."""
    prune_jobs()
    thread = QtCore.QThread()
    thread.setObjectName(f"atomlens-model-{action}")
    worker = BundleJob(action, args)
    worker.moveToThread(thread)
    JOBS.append((thread, worker))
    thread.started.connect(worker.run)
    worker.finished.connect(on_finished)
    # the thread ends with its job even when nobody is left to tell it (quit is thread-safe)
    worker.finished.connect(thread.quit, QtCore.Qt.DirectConnection)
    thread.start()
    return thread, worker


def wait_for_jobs(timeout_ms: int = 120000) -> None:
    """Wait (up to `timeout_ms` each) for the running jobs: at exit, never kill one mid-write."""
    for thread, _worker in list(JOBS):
        try:
            if thread.isRunning():
                thread.wait(timeout_ms)
        except RuntimeError:  # the C++ object is already gone
            pass


atexit.register(wait_for_jobs)
