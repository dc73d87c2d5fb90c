"""Run under xvfb-run by test_gui_xvfb_annotate.py: the real app on xcb opens a micrograph,
analyses it, enters Annotate mode, makes the edits a microscopist makes (deletes, a moved atom,
a relabelled dopant, an added atom, a point defect and a box around the dopant), hovers an atom
and saves a screenshot.  Prints one JSON line with what it did.

Usage: python _xvfb_annotate_scene.py IMAGE SCREENSHOT SETTINGS_INI
"""

from __future__ import annotations

import json
import sys

import numpy as np
from PyQt5 import QtCore, QtWidgets


def wait_for(signal, timeout_ms: int, check=lambda *a: True) -> list:
    loop, got = QtCore.QEventLoop(), []

    def on(*args):
        if check(*args):
            got.append(args)
            loop.quit()

    signal.connect(on)
    QtCore.QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec_()
    signal.disconnect(on)
    if not got:
        raise TimeoutError(f"no signal within {timeout_ms} ms")
    return list(got[0])


def pump(ms: int = 200) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec_()


def main(image: str, shot: str, settings_ini: str) -> int:
    app = QtWidgets.QApplication(sys.argv[:1])
    from atomlens.gui.main_window import MainWindow

    settings = QtCore.QSettings(settings_ini, QtCore.QSettings.IniFormat)
    win = MainWindow(settings=settings, interactive=False)
    win.show()
    win.open_file(image)
    wait_for(win.resultChanged, 60000)
    win.analysis.run_current()
    result = wait_for(win.resultChanged, 120000, lambda r: r is not None)[0]
    pump(300)
    ctl = win.annotate
    ctl.act_toggle.trigger()
    ann = ctl.ann
    xy = np.column_stack([ann.x, ann.y])
    h, w = result.shape
    centre = np.array([w / 2, h / 2])
    dop = np.flatnonzero(ann.cls == ann.class_names.index("dopant"))
    si = int(dop[0]) if len(dop) else int(np.argmin(np.hypot(*(xy - centre).T)))
    sx, sy = float(ann.x[si]), float(ann.y[si])
    # the microscopist's edits, left of the dopant
    d = np.hypot(ann.x - sx, ann.y - sy)
    order = np.argsort(d)
    nn = float(d[order[1]])
    far = [int(i) for i in order if 2.5 * nn < d[i] < 5 * nn and ann.x[i] < sx]
    hover_xy = (float(ann.x[far[0]]), float(ann.y[far[0]]))
    ctl.relabel([far[0]], ann.class_names.index("dopant"))  # a dim dopant the model missed
    ctl.move(far[1], float(ann.x[far[1]]) + 0.25 * nn, float(ann.y[far[1]]))
    victims = (float(ann.x[far[2]]), float(ann.y[far[2]]))
    ctl.delete(atoms=[far[2]])
    ctl.add_atom(victims[0], victims[1], ann.class_names.index("vacancy"))  # re-marked as a vacancy site
    ctl.add_defect(sx, sy, "dopant", w=3.2 * nn, h=3.2 * nn)
    vx, vy = victims
    ctl.add_defect(vx, vy, "vacancy")
    ctl.set_tool("defect")
    ctl.defect_combo.setCurrentText("dopant")
    # hover the relabelled atom, as the cursor would
    ctl.hovered = ctl.view.nearest_atom(*hover_xy)  # (indices shift with deletes)
    ctl.view.set_hover(ctl.hovered)
    win.statusBar().showMessage("Annotate: 1-9 choose the class; right-click an atom to relabel or delete it; "
                                "Ctrl+Z undoes")
    pump(500)
    win.repaint()
    ok = win.grab().save(shot, "PNG")
    saved = ctl.save()
    print(json.dumps({"ok": bool(ok), "saved": bool(saved), "atoms": len(ann), "user": int((ann.source == "user").sum()),
                      "defects": len(ann.defects), "toolbar": ctl.toolbar.isVisible(), "undo": ctl.undo_stack.count(),
                      "nn_px": nn, "dopant_xy": [sx, sy]}), flush=True)
    win.close()
    app.quit()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
