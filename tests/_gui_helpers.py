"""Helpers of the main-window GUI tests (test_annotate, test_gui_analysis): making a window,
opening and analysing an image, simulating the test image and sending mouse events at image
pixels.  Their fixtures (``user_models``, ``boxes``, ``window``, ``sim_file``) are in conftest.py.
"""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

LOAD_MS = 30000
RUN_MS = 60000
PX_A = 0.1  # simulated pixel size (Å)


def simulate_graphene(shape):
    """A simulated graphene image of `shape` px (0.1 Å/px) with two Si dopants."""
    from atomlens.sim import simulate

    cfg = {"structure": "graphene", "shape": list(shape), "px_size_A": PX_A,
           "defects": {"dopant": {"element": "Si", "n": 2}}, "noise": {"dose_e_per_A2": 1e5}}
    return simulate(cfg, 3_000_000_007)


def make_window(qtbot, tmp_path, settings_name: str = "settings.ini"):
    """A shown MainWindow with its settings in `tmp_path`/`settings_name`."""
    from atomlens.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / settings_name), QtCore.QSettings.IniFormat)
    win = MainWindow(settings=settings, interactive=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def open_and_wait(qtbot, win, path, px_size_nm=PX_A / 10):
    """Open `path` (no result yet) and set its pixel size; returns the micrograph."""
    with qtbot.waitSignal(win.resultChanged, timeout=LOAD_MS) as blocker:  # None: no result yet
        assert win.open_file(path)
    assert blocker.args == [None]
    if px_size_nm is not None:
        win.set_pixel_size_nm(px_size_nm)
    return win.micrograph


def run_and_wait(qtbot, win, start=None):
    """Run the analysis (`start`, default the current frame's) and wait for its result."""
    with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r is not None) as b:
        (start or win.analysis.run_current)()
    qtbot.waitUntil(lambda: not win.overlays.atoms_view.building, timeout=5000)
    return b.args[0]


def open_and_run(qtbot, win, path):
    """Open `path`, calibrate it and analyse it; returns the result."""
    open_and_wait(qtbot, win, path)
    return run_and_wait(qtbot, win)


def widget_pos(win, x, y) -> QtCore.QPoint:
    """The image view's widget position of image pixel (x, y)."""
    iv = win.image_view
    return iv.graphics.mapFromScene(iv.viewbox.mapViewToScene(QtCore.QPointF(x, y)))


def send_mouse(win, kind, x, y, button=QtCore.Qt.LeftButton):
    """A mouse event ("press", "move" or "release") on the image view's viewport at image pixel
    (x, y); `button` None for a move without a button held."""
    vp = win.image_view.graphics.viewport()
    pos = widget_pos(win, x, y)
    types = {"press": QtCore.QEvent.MouseButtonPress, "move": QtCore.QEvent.MouseMove,
             "release": QtCore.QEvent.MouseButtonRelease}
    buttons = QtCore.Qt.NoButton if kind == "release" or button is None else button
    ev = QtGui.QMouseEvent(types[kind], QtCore.QPointF(pos), vp.mapToGlobal(pos),
                           QtCore.Qt.NoButton if kind == "move" else button, buttons, QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(vp, ev)


def click(qtbot, win, x, y):
    """A left click at image pixel (x, y)."""
    qtbot.mouseClick(win.image_view.graphics.viewport(), QtCore.Qt.LeftButton, pos=widget_pos(win, x, y))


def drag(win, x0, y0, x1, y1, steps: int = 3):
    """Press at (x0, y0), move in `steps` to (x1, y1) with the left button held, release."""
    send_mouse(win, "press", x0, y0)
    for k in range(1, steps + 1):
        send_mouse(win, "move", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)
    send_mouse(win, "release", x1, y1)


def viewport_rgb(win) -> np.ndarray:
    """The image view's viewport as painted: (H, W, 3) int RGB."""
    img = win.image_view.graphics.viewport().grab().toImage().convertToFormat(4)  # Format_RGB32
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return arr[:, : img.width(), 2::-1][..., :3].astype(int)  # BGRA -> RGB
