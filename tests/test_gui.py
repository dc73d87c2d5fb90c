"""Widget tests of the viewer (pytest-qt, offscreen platform, tiny images)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: E402

from atomlens.gui import dialogs  # noqa: E402
from atomlens.gui.image_view import format_readout, robust_levels  # noqa: E402
from atomlens.gui.info_dock import MAX_CHILDREN, MAX_TEXT, fill_metadata_tree  # noqa: E402
from atomlens.gui.main_window import MainWindow  # noqa: E402
from atomlens.gui.scalebar import format_length_nm, nice_length  # noqa: E402
from atomlens.gui.settings import RecentFiles  # noqa: E402

H, W = 20, 30
LOAD_TIMEOUT_MS = 30000


def gradient() -> np.ndarray:
    """value = 100 * row + column: every pixel is recognisable."""
    y, x = np.mgrid[0:H, 0:W]
    return (100 * y + x).astype(np.float32)


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    windows = []  # keep them alive until qtbot closes them at teardown

    def make(s=None):
        win = MainWindow(settings=s if s is not None else settings)
        qtbot.addWidget(win)
        windows.append(win)
        win.show()
        qtbot.waitExposed(win)
        return win
    yield make


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def boxes(monkeypatch):
    """Capture message boxes instead of blocking on them: list of (title, text, details)."""
    seen = []

    def fake_exec(box):
        seen.append((box.windowTitle(), box.text(), box.detailedText()))
        return QtWidgets.QMessageBox.Ok

    monkeypatch.setattr(QtWidgets.QMessageBox, "exec_", fake_exec)
    return seen


@pytest.fixture
def grad_file(tmp_path):
    path = tmp_path / "grad.npy"
    np.save(path, gradient())
    return path


def open_and_wait(qtbot, win, path, **kw):
    with qtbot.waitSignal(win.imageLoaded, timeout=LOAD_TIMEOUT_MS) as blocker:
        assert win.open_file(path, **kw)
    return blocker.args[0]


def screen_y(win, x, y):
    return win.image_view.viewbox.mapViewToScene(QtCore.QPointF(x, y)).y()


# ---------------------------------------------------------------- opening and display
def test_open_npy_shape_orientation_title_info(qtbot, window, grad_file):
    mg = open_and_wait(qtbot, window, grad_file)
    iv = window.image_view
    shown = iv.image_item.image
    assert shown.shape == (H, W)
    np.testing.assert_array_equal(shown, gradient())
    # pixel centres at integer coordinates, top-left pixel centre at (0, 0)
    rect = iv.image_item.mapRectToView(iv.image_item.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx((-0.5, -0.5, W, H))
    # row 0 is at the top of the screen, column 0 on the left
    assert screen_y(window, 0, 0) < screen_y(window, 0, H - 1)
    vb = iv.viewbox
    left = vb.mapViewToScene(QtCore.QPointF(0, 0)).x()
    assert left < vb.mapViewToScene(QtCore.QPointF(W - 1, 0)).x()
    assert window.windowTitle() == "grad.npy — AtomLens"
    assert mg.shape == (H, W)
    summary = window.info_dock.summary_label.text()
    assert f"{W} x {H} px" in summary and "uncalibrated" in summary
    assert not window.info_dock.calibration_notice.isHidden()
    assert iv.frame_bar.isHidden()
    assert not iv.scale_bar.isVisible()  # no calibration, no scale bar


def test_open_real_emd(qtbot, window, real_data):
    mg = open_and_wait(qtbot, window, real_data / "Acquisition_18.emd")
    assert window.image_view.image_item.image.shape == (1024, 1024)
    assert window.windowTitle() == "Acquisition_18.emd — AtomLens"
    assert "12.25 pm" in window.info_dock.summary_label.text()
    assert window.info_dock.calibration_notice.isHidden()
    assert window.info_dock.tree.topLevelItemCount() > 0
    sb = window.image_view.scale_bar
    assert sb.isVisible() and sb.text.endswith(("nm", "pm"))
    assert mg.px_size_nm == pytest.approx(0.01225, rel=1e-3)


def test_channel_picker_reloads_other_channel(qtbot, window, real_data):
    mg = open_and_wait(qtbot, window, real_data / "example_TOPO.sxm")
    dock = window.info_dock
    assert len(mg.channels) > 1 and not dock.channel_row.isHidden()
    assert dock.channel_combo.count() == len(mg.channels)
    other = next(c for c in mg.channels if c != mg.channel)
    with qtbot.waitSignal(window.imageLoaded, timeout=LOAD_TIMEOUT_MS) as blocker:
        dock.channel_combo.activated.emit(mg.channels.index(other))
    assert blocker.args[0].channel == other
    assert window.micrograph.channel == other
    assert dock.channel_combo.currentText() == other


def test_frame_slider_changes_displayed_frame(qtbot, window, tmp_path):
    stack = np.stack([gradient() + 1000 * i for i in range(4)])
    path = tmp_path / "stack.npy"
    np.save(path, stack)
    open_and_wait(qtbot, window, path)
    iv = window.image_view
    assert not iv.frame_bar.isHidden()
    assert iv.frame_bar.slider.maximum() == 3
    np.testing.assert_array_equal(iv.image_item.image, stack[0])
    with qtbot.waitSignal(iv.frameChanged, timeout=2000):
        iv.frame_bar.slider.setValue(2)
    np.testing.assert_array_equal(iv.image_item.image, stack[2])
    assert iv.frame_bar.spin.value() == 2
    iv.frame_bar.spin.setValue(3)  # the spin box drives the slider too
    np.testing.assert_array_equal(iv.image_item.image, stack[3])
    assert iv.frame_bar.slider.value() == 3


def test_cursor_readout_real_mouse_move(qtbot, window, grad_file):
    open_and_wait(qtbot, window, grad_file)
    window.set_pixel_size_nm(0.05)
    iv = window.image_view
    px, py = 7, 12
    scene = iv.viewbox.mapViewToScene(QtCore.QPointF(px, py))
    pos = iv.graphics.mapFromScene(scene)
    qtbot.mouseMove(iv.graphics.viewport(), pos)
    qtbot.waitUntil(lambda: window.readout_label.text() != "", timeout=2000)
    assert window.readout_label.text() == "x 7, y 12 px | 0.350, 0.600 nm | I = 1207"
    # outside the image the readout is cleared
    far = iv.graphics.mapFromScene(iv.viewbox.mapViewToScene(QtCore.QPointF(-5, -5)))
    if iv.graphics.viewport().rect().contains(far):
        qtbot.mouseMove(iv.graphics.viewport(), far)
        qtbot.waitUntil(lambda: window.readout_label.text() == "", timeout=2000)


def test_format_readout_units_and_uncalibrated():
    assert format_readout(3, 4, None, 2.5e-10, "m") == "x 3, y 4 px | I = 250 pm"
    assert format_readout(3, 4, (0.5, 1.25), 1234.5678, "counts") == \
        "x 3, y 4 px | 0.500, 1.250 nm | I = 1234.6 counts"


def test_drag_and_drop_opens_file(qtbot, window, grad_file):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(grad_file))])
    pos = QtCore.QPoint(50, 50)
    enter = QtGui.QDragEnterEvent(pos, QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton,
                                  QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(QtCore.QPointF(pos), QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton,
                            QtCore.Qt.NoModifier)
    with qtbot.waitSignal(window.imageLoaded, timeout=LOAD_TIMEOUT_MS):
        QtWidgets.QApplication.sendEvent(window, drop)
    assert window.windowTitle() == "grad.npy — AtomLens"
    # text without file URLs is refused
    text = QtCore.QMimeData()
    text.setText("hello")
    enter = QtGui.QDragEnterEvent(pos, QtCore.Qt.CopyAction, text, QtCore.Qt.LeftButton,
                                  QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(window, enter)
    assert not enter.isAccepted()


# ---------------------------------------------------------------- errors
def test_corrupt_and_missing_files_give_readable_errors(qtbot, window, boxes, tmp_path, grad_file):
    bad = tmp_path / "broken.dm3"
    bad.write_bytes(b"\x00garbage" * 50)
    with qtbot.waitSignal(window.loadFailed, timeout=LOAD_TIMEOUT_MS):
        window.open_file(bad)
    assert len(boxes) == 1
    title, text, details = boxes[0]
    assert title == "Could not open file" and "broken.dm3" in text
    assert "Traceback" not in text and not details

    assert window.open_file(tmp_path / "nowhere.emd") is False
    assert len(boxes) == 2 and "nowhere.emd" in boxes[1][1] and "does not exist" in boxes[1][1]

    assert window.isVisible()
    open_and_wait(qtbot, window, grad_file)  # the window still works
    assert window.windowTitle() == "grad.npy — AtomLens"


def test_unexpected_error_has_details(qtbot, window, boxes, grad_file, monkeypatch):
    import atomlens.workflows.analyse  # the layer the GUI's loader calls

    def boom(path, channel=None):
        raise RuntimeError("simulated reader bug")

    monkeypatch.setattr(atomlens.workflows.analyse, "load", boom)
    with qtbot.waitSignal(window.loadFailed, timeout=LOAD_TIMEOUT_MS):
        window.open_file(grad_file)
    title, text, details = boxes[0]
    assert title == "Unexpected error" and "simulated reader bug" in text
    assert "Traceback" in details and "RuntimeError" in details
    assert window.isVisible() and window.busy_bar.isHidden()


def test_load_warnings_are_shown(qtbot, window, tmp_path):
    data = gradient()
    data[3, 4] = np.nan
    path = tmp_path / "holes.npy"
    np.save(path, data)
    open_and_wait(qtbot, window, path)
    assert window.info_dock.notes, "the NaN repair should be reported"
    assert not window.info_dock.notes_label.isHidden()
    assert np.isfinite(window.image_view.image_item.image).all()


# ---------------------------------------------------------------- settings
def test_recent_files_persist_and_missing_entry_removed(qtbot, make_window, settings, boxes,
                                                        tmp_path, grad_file):
    win = make_window()
    open_and_wait(qtbot, win, grad_file)
    win.close()
    win2 = make_window(QtCore.QSettings(settings.fileName(), QtCore.QSettings.IniFormat))
    assert win2.recent.paths()[0] == str(grad_file.resolve())
    win2._fill_recent_menu()
    names = [a.text() for a in win2.recent_menu.actions()]
    assert any("grad.npy" in n for n in names)

    gone = tmp_path / "gone.npy"
    np.save(gone, gradient())
    open_and_wait(qtbot, win2, gone)
    gone.unlink()
    win2.open_recent(str(gone.resolve()))
    assert "no longer exists" in boxes[-1][1]
    assert str(gone.resolve()) not in win2.recent.paths()
    assert str(grad_file.resolve()) in win2.recent.paths()
    clear = [a for a in win2.recent_menu.actions() if a.text() == "&Clear"][0]
    clear.trigger()
    assert win2.recent.paths() == []


def test_recent_files_capped_at_ten(settings, tmp_path):
    recent = RecentFiles(settings)
    for i in range(15):
        recent.add(tmp_path / f"f{i}.npy")
    paths = recent.paths()
    assert len(paths) == 10 and paths[0].endswith("f14.npy")


def test_geometry_persists(qtbot, make_window, settings):
    win = make_window()
    # a size other than the default (1300 x 850) and above the docks' minimum
    want = QtCore.QSize(max(1210, win.minimumSizeHint().width() + 20), max(790, win.minimumSizeHint().height() + 20))
    win.resize(want)
    qtbot.waitUntil(lambda: win.size() == want, timeout=2000)
    win.close()
    win2 = make_window(QtCore.QSettings(settings.fileName(), QtCore.QSettings.IniFormat))
    assert win2.size() == want


# ---------------------------------------------------------------- calibration and scale bar
def test_set_pixel_size_updates_scale_bar_and_info(qtbot, window, grad_file, monkeypatch):
    open_and_wait(qtbot, window, grad_file)
    sb = window.image_view.scale_bar
    assert sb.text == ""
    monkeypatch.setattr(dialogs, "ask_px_size_nm", lambda *a, **k: 0.1)
    window.act_px.trigger()
    assert window.micrograph.px_size_nm == pytest.approx(0.1)
    assert sb.isVisible()
    # 30 px * 0.1 nm = 3 nm wide; the whole image is in view, so about 0.5 nm
    assert sb.text in ("500 pm", "0.5 nm")
    assert window.info_dock.calibration_notice.isHidden()
    assert "100 pm" in window.info_dock.summary_label.text()


def _grab(view, rect):
    img = view.grab(rect).toImage().convertToFormat(QtGui.QImage.Format_RGB888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].copy()


def test_scale_bar_is_painted_inside_the_image(qtbot, window, grad_file):
    open_and_wait(qtbot, window, grad_file)
    window.set_pixel_size_nm(0.1)
    iv = window.image_view
    sb = iv.scale_bar
    bar = iv.graphics.mapFromScene(sb.mapRectToScene(sb.boundingRect())).boundingRect()
    image = iv.graphics.mapFromScene(
        iv.image_item.mapRectToScene(iv.image_item.boundingRect())).boundingRect()
    assert bar.width() > 20 and bar.height() > 10
    assert image.contains(bar), (bar, image)  # bottom-left of the image, not of the view
    assert bar.bottom() > image.center().y() and bar.right() < image.center().x() + bar.width()
    with_bar = _grab(iv.graphics, bar)
    window.act_scalebar.trigger()  # hide it
    assert not sb.isVisible()
    without_bar = _grab(iv.graphics, bar)
    assert np.abs(with_bar.astype(int) - without_bar.astype(int)).mean() > 10


def _mantissa(v):
    return round(v / 10 ** math.floor(math.log10(v)), 6)


def test_scale_bar_is_nice_and_follows_zoom(qtbot, window, grad_file):
    open_and_wait(qtbot, window, grad_file)
    window.set_pixel_size_nm(0.37)
    sb = window.image_view.scale_bar
    before = sb.length_nm
    assert _mantissa(before) in (1.0, 2.0, 5.0)
    frac = before / sb.visible_width_nm
    assert 0.1 < frac <= 0.25
    window.image_view.viewbox.scaleBy((0.2, 0.2))  # zoom in 5x
    assert sb.length_nm < before
    assert _mantissa(sb.length_nm) in (1.0, 2.0, 5.0)
    assert 0.1 < sb.length_nm / sb.visible_width_nm <= 0.25
    assert sb.length_screen_px == pytest.approx(
        sb.length_nm / sb.visible_width_nm * window.image_view.viewbox.width())


def test_nice_length_and_format():
    assert nice_length(0.37) == pytest.approx(0.2)
    assert nice_length(7.0) == pytest.approx(5.0)
    assert nice_length(1.0) == pytest.approx(1.0)
    assert nice_length(19.9) == pytest.approx(10.0)
    assert format_length_nm(0.5) == "500 pm"
    assert format_length_nm(2.0) == "2 nm"
    assert format_length_nm(1000.0) == "1 µm"


def test_pixel_size_dialog_units(qtbot):
    dlg = dialogs.PixelSizeDialog(None, current_nm=0.0123)
    qtbot.addWidget(dlg)
    assert dlg.spin.value() == pytest.approx(12.3)
    dlg.unit.setCurrentText("nm")
    assert dlg.spin.value() == pytest.approx(0.0123)
    assert dlg.px_size_nm() == pytest.approx(0.0123)
    dlg.unit.setCurrentText("Å")
    assert dlg.spin.value() == pytest.approx(0.123)


# ---------------------------------------------------------------- contrast and metadata
def test_auto_contrast_restores_robust_levels(qtbot, window, grad_file):
    open_and_wait(qtbot, window, grad_file)
    iv = window.image_view
    expected = robust_levels(gradient())
    assert iv.levels() == pytest.approx(expected)
    iv.histogram.item.setLevels(0.0, 5.0)
    assert iv.levels() == pytest.approx((0.0, 5.0))
    window.act_auto.trigger()
    assert iv.levels() == pytest.approx(expected)
    window.cmap_combo.setCurrentText("Viridis")  # must not raise
    lut = iv.histogram.item.gradient.getLookupTable(3)
    assert not np.array_equal(lut[0], lut[-1])


def test_metadata_tree_caps_sizes(qtbot):
    tree = QtWidgets.QTreeWidget()
    qtbot.addWidget(tree)
    tree.setColumnCount(2)
    meta = {"many": {f"k{i}": i for i in range(1000)}, "long": "x" * 5000,
            "big_list": list(range(10000)), "arr": np.zeros((512, 512)),
            "nested": {"a": {"b": {"c": 1}}}}
    fill_metadata_tree(tree, meta)
    items = {tree.topLevelItem(i).text(0): tree.topLevelItem(i)
             for i in range(tree.topLevelItemCount())}
    assert items["many"].childCount() == MAX_CHILDREN + 1
    assert len(items["long"].text(1)) < MAX_TEXT + 40
    assert items["big_list"].text(1).startswith("[10000 items]")
    assert items["arr"].text(1).startswith("array (512, 512)")
    assert items["nested"].child(0).child(0).child(0).text(1) == "1"


# ---------------------------------------------------------------- run_gui, scripted
def _run_gui_subprocess(tmp_path, args_code):
    import os
    import subprocess
    import sys

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               ATOMLENS_SETTINGS_DIR=str(tmp_path / "settings"))
    code = f"import sys; from atomlens.gui.app import run_gui; sys.exit(run_gui({args_code}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_run_gui_exit_after_show_and_screenshot(tmp_path, grad_file):
    shot = tmp_path / "s.png"
    proc = _run_gui_subprocess(
        tmp_path, f"[{str(grad_file)!r}], exit_after_show=True, screenshot={str(shot)!r}")
    assert proc.returncode == 0, proc.stderr
    m = __import__("re").search(r"window shown after (\d+\.\d{3}) s", proc.stdout)
    assert m and 0 < float(m.group(1)) < 60
    img = QtGui.QImage(str(shot))
    assert (img.width(), img.height()) == (1300, 850)


def test_window_is_shown_without_importing_torch(tmp_path, grad_file):
    # the Analysis dock lists the models from their cards at start-up; reading a card once
    # pulled in torch (1.7 s before the window showed, measured with bench/startup.py)
    proc = _run_gui_subprocess(
        tmp_path, f"[{str(grad_file)!r}], exit_after_show=True) or print('torch' in sys.modules"
        ", 'atomlens.nn.data' in sys.modules")
    assert proc.returncode == 0, proc.stderr
    assert "window shown after" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_run_gui_bad_file_exits_with_error(tmp_path):
    missing = str(tmp_path / "missing.emd")
    proc = _run_gui_subprocess(tmp_path, f"[{missing!r}], exit_after_show=True")
    assert proc.returncode == 1
    assert "missing.emd does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_open_sample_menu_and_view_toggles(qtbot, window):
    from atomlens.samples import SAMPLES

    actions = window.sample_menu.actions()
    assert [a.data() for a in actions] == [s.key for s in SAMPLES]
    act = next(a for a in actions if a.data() == "ag111-stm")
    with qtbot.waitSignal(window.imageLoaded, timeout=LOAD_TIMEOUT_MS) as blocker:
        act.trigger()
    mg = blocker.args[0]
    assert window.windowTitle().startswith("Ag111_STM_topo.sxm") and mg.mode == "STM"
    assert window.recent.paths() == []  # bundled samples are not "recent files"
    toggle = window.info_dock.toggleViewAction()
    assert toggle in window.view_menu.actions()
    toggle.trigger()
    assert window.info_dock.isHidden()
    window.act_hist.trigger()
    assert window.image_view.histogram.isHidden()


def test_unexpected_error_in_a_slot_shows_a_message_not_a_crash(qtbot, monkeypatch):
    import sys

    from atomlens.gui import dialogs
    from atomlens.gui.app import install_excepthook
    from atomlens.gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    shown = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, title, text, details=None: shown.append((title, text, details)))
    old = sys.excepthook
    try:
        hook = install_excepthook(lambda: win)
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            hook(*sys.exc_info())
    finally:
        sys.excepthook = old
    assert shown and shown[0][0] == "Unexpected error"
    assert "ZeroDivisionError: boom" in shown[0][1] and "Traceback" in shown[0][2]
    win.show()
    assert win.isVisible()
