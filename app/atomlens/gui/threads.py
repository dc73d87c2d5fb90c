"""Worker threads kept referenced for the life of the process and stopped at exit.

Every background QThread (file loading, analysis, training) is registered here with its
worker, so that Python's garbage collector can never destroy a QThread that is still running
(Qt aborts on that), even when a window is deleted without being closed.  At exit each one is
told to stop (its `stop` callable), asked to quit and waited for.  A thread that has finished
may be forgotten (:func:`release_thread`) so that Python can free it.
"""

from __future__ import annotations

import atexit

__all__ = ["keep_thread", "release_thread", "kept_threads", "stop_all_threads"]

_KEPT: list = []  # (thread, worker, stop, wait_ms)


def keep_thread(thread, worker, stop=None, wait_ms: int = 3000) -> None:
    """Keep `thread` and `worker` referenced until exit; at exit call `stop()` (if given: a
    cancel request), quit the thread and wait up to `wait_ms` for it."""
    _KEPT.append((thread, worker, stop, int(wait_ms)))


def release_thread(thread) -> None:
    """Forget `thread` (only once it has finished: Python may then free it)."""
    _KEPT[:] = [e for e in _KEPT if e[0] is not thread]


def kept_threads() -> list:
    """(thread, worker) pairs registered so far, oldest first."""
    return [(t, w) for t, w, _s, _ms in _KEPT]


def stop_all_threads() -> None:
    for thread, _worker, stop, wait_ms in list(_KEPT):
        try:
            if stop is not None:
                stop()
            if thread.isRunning():
                thread.quit()
                thread.wait(wait_ms)
        except RuntimeError:  # the C++ object is already gone
            pass


atexit.register(stop_all_threads)
