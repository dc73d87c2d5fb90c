"""``run_gui``: create the QApplication, show the main window, open files, run the loop."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["run_gui", "install_excepthook", "process_start_time", "seconds_since_start"]


def process_start_time() -> float:
    """Wall-clock time (``time.time()`` scale) at which this process started.

    On Linux this is read from ``/proc/self/stat`` (start time in clock ticks after boot)
    and ``/proc/uptime``; elsewhere it falls back to the time this module was imported.
    """
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        start_ticks = int(fields[19])  # field 22 of the man page
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 86400 * 365:
            return time.time() - age
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_TIME


_IMPORT_TIME = time.time()
_START_TIME = process_start_time()


def seconds_since_start() -> float:
    return time.time() - _START_TIME


def _window_icon():
    from PyQt5 import QtGui

    try:
        from atomlens.samples import resource_path

        return QtGui.QIcon(str(resource_path("icons", "atomlens.png")))
    except (FileNotFoundError, ModuleNotFoundError):
        return QtGui.QIcon()


def install_excepthook(window_getter, interactive: bool = True):
    """Make unexpected errors in Qt slots a message, not a crash.

    PyQt5 aborts the process when an exception escapes a slot; this hook prints the
    traceback and shows a readable error box instead, and the application carries on.
    Returns the hook (also installed as ``sys.excepthook``).
    """
    import traceback

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        print(details, file=sys.stderr)
        if interactive:
            from . import dialogs

            try:
                dialogs.show_error(window_getter(), "Unexpected error",
                                   f"Something went wrong: {exc_type.__name__}: {exc}\n"
                                   "Your data were not changed.", details)
            except Exception:  # noqa: BLE001 - the hook itself must never raise
                pass

    sys.excepthook = hook
    return hook


def run_gui(paths: list[str] | None = None, *, sample: str | None = None,
            channel: str | None = None, exit_after_show: bool = False,
            screenshot: str | None = None, analyse: bool = False,
            px_size_nm: float | None = None, cam: bool = False, material: str | None = None) -> int:
    """Run the AtomLens viewer; returns the exit code.

    Parameters
    ----------
    paths : list of str
        Files to open (the first one is shown).
    sample : str, optional
        Key of a bundled sample to open when no path is given.
    channel : str, optional
        Channel to read from a multi-channel file.
    exit_after_show : bool
        Quit as soon as the window is shown and the image painted, printing
        ``window shown after X.XXX s`` (time since process start).
    screenshot : str, optional
        Save a PNG of the window to this path once the image is shown, then quit.
    analyse : bool
        Run the analysis (as F5 does) once the image is shown; with `screenshot` (or
        `exit_after_show`) the window is captured (or closed) when it has finished, with its
        overlays.  A failed analysis makes the exit code 1.
    px_size_nm : float, optional
        Pixel size (nm) to set on the opened image before the analysis.
    cam : bool
        Tick "Defect heatmaps (CAM)" for the analysis (when a CAM model is installed).
    material : str, optional
        Material hint for the analysis (see :mod:`atomlens.analysis.material`).
    """
    from PyQt5 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        QtWidgets.QApplication.setAttribute(QtCore.Qt.AA_EnableHighDpiScaling, True)
        QtWidgets.QApplication.setAttribute(QtCore.Qt.AA_UseHighDpiPixmaps, True)
        app = QtWidgets.QApplication(sys.argv[:1])
    app.setOrganizationName("AtomLens")
    app.setApplicationName("AtomLens")
    app.setApplicationDisplayName("AtomLens")
    app.setWindowIcon(_window_icon())

    from .main_window import MainWindow

    scripted = exit_after_show or bool(screenshot)
    win = MainWindow(interactive=not scripted)
    win.setWindowIcon(app.windowIcon())
    install_excepthook(lambda: win, interactive=not scripted)
    paths = list(paths or [])
    will_load = bool(paths) or bool(sample)
    rc = {"code": 0}

    def finish() -> None:
        if exit_after_show:
            print(f"window shown after {seconds_since_start():.3f} s", flush=True)
        if screenshot:
            win.repaint()
            pix = win.grab()
            if not pix.save(str(screenshot), "PNG"):
                print(f"could not write screenshot {screenshot}", file=sys.stderr)
                rc["code"] = 1
        win.close()
        app.quit()

    def start_analysis() -> None:
        if px_size_nm is not None and win.micrograph is not None:
            win.set_pixel_size_nm(px_size_nm)
        if cam:
            win.analysis_dock.cam_check.setChecked(win.analysis_dock.cam_path is not None)
        if material:
            win.analysis_dock.set_material(material)
        if not win.analysis.run_current():
            rc["code"] = 1
            QtCore.QTimer.singleShot(0, finish)

    if analyse and will_load:
        win.image_view.firstPainted.connect(lambda: QtCore.QTimer.singleShot(0, start_analysis))

    if scripted:
        delay = 200 if screenshot else 0  # let the scale bar and histogram settle

        def failed(_msg) -> None:
            rc["code"] = 1
            QtCore.QTimer.singleShot(0, finish)

        if will_load and analyse:
            def analysed(result) -> None:
                if result is not None and not rc.get("analysed"):  # then let the markers be
                    rc["analysed"] = True  # built and painted
                    QtCore.QTimer.singleShot(delay + 300, finish)

            win.resultChanged.connect(analysed)
            win.analysis.analysisFailed.connect(failed)
            win.loadFailed.connect(failed)
        elif will_load:
            win.image_view.firstPainted.connect(lambda: QtCore.QTimer.singleShot(delay, finish))
            win.loadFailed.connect(failed)
        else:
            QtCore.QTimer.singleShot(delay, finish)

    # start loading first: the worker reads the file while the window is shown and polished
    # (a missing file's error box should have the window behind it, so show that first)
    if paths and not os.path.isfile(paths[0]):
        win.show()
    if paths:
        win.open_file(paths[0], channel=channel)
        if len(paths) > 1:
            win.statusBar().showMessage(f"{len(paths)} files given; showing the first", 10000)
    elif sample:
        win.open_sample(sample)
    win.show()
    code = app.exec_()
    return rc["code"] or code
