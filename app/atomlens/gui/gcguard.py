"""Python's cyclic garbage collector runs only in the GUI thread.

Left automatic, a collection can start in whichever thread happens to allocate, e.g. the
analysis, training or batch thread, and free Qt objects of the GUI thread (a closed window
or dialog held in a reference cycle) while the GUI thread is using them.  That crashes Qt,
now and then, with a segmentation fault.  pyqtgraph's :class:`GarbageCollector` (the
recommended cure) turns the automatic collector off and collects on a GUI-thread timer with
the same generation thresholds.  Worker processes forked from the app (simulation
DataLoader workers) turn the collector back on for themselves (``atomlens.nn.train``).
"""

from __future__ import annotations

__all__ = ["collect_in_gui_thread"]

_COLLECTOR = None


def collect_in_gui_thread(interval_s: float = 0.5):
    """Start (once per process; call it in the GUI thread with a QApplication) the timer that
    does the garbage collection; returns the collector."""
    global _COLLECTOR
    if _COLLECTOR is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _COLLECTOR = GarbageCollector(interval=interval_s)
    return _COLLECTOR
