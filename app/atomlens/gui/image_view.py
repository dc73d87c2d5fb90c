"""The image widget: pyqtgraph view (row 0 at the top), contrast histogram, colour maps,
scale bar, frame slider for stacks and the cursor readout.

Coordinates: the ImageItem is placed with its rect at (-0.5, -0.5, W, H), so the centre of
pixel (x = column, y = row) is at view coordinates (x, y), as in DESIGN.md.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from .scalebar import ScaleBar

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

__all__ = ["ImageView", "robust_levels", "COLORMAPS", "format_readout"]

#: Colour maps offered in the toolbar (name -> pyqtgraph colormap name, None = grey).
COLORMAPS = {"Grey": None, "Viridis": "viridis", "Inferno": "inferno", "Magma": "magma",
             "Cividis": "cividis"}


_SI_UNITS = {"m", "A", "V", "Hz", "s", "N", "W", "S"}


def robust_levels(frame: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display levels at the `low` and `high` percentiles of `frame` (subsampled if large)."""
    step = max(1, int(np.sqrt(frame.size / 250_000)))
    sample = frame[::step, ::step]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
        if not hi > lo:
            hi = lo + 1.0
    return lo, hi


def _format_value(value: float, units: str | None) -> str:
    if units in _SI_UNITS:  # 5.0523e-08 m -> "50.523 nm"
        return pg.siFormat(value, precision=5, suffix=units)
    text = f"{value:.5g}"
    return f"{text} {units}" if units else text


def format_readout(x: int, y: int, nm: tuple[float, float] | None, value: float,
                   units: str | None = None) -> str:
    """Status-bar text such as ``x 123, y 45 px | 1.507, 0.551 nm | I = 3021``."""
    parts = [f"x {x}, y {y} px"]
    if nm is not None:
        parts.append(f"{nm[0]:.3f}, {nm[1]:.3f} nm")
    parts.append(f"I = {_format_value(value, units)}")
    return " | ".join(parts)


def _make_histogram(image_item) -> pg.HistogramLUTWidget:
    """HistogramLUTWidget, built without importing matplotlib.pyplot.

    pyqtgraph 0.14's colour-map menu lists matplotlib's "other" maps at construction, which
    imports matplotlib.pyplot (about 0.7 s).  Skipping that one submenu keeps startup fast.
    """
    try:
        from pyqtgraph.widgets import ColorMapMenu as cmm
    except ImportError:  # other pyqtgraph layouts: build it the plain way
        return pg.HistogramLUTWidget(image=image_item)
    original = getattr(cmm, "find_mpl_leftovers", None)
    if original is None:
        return pg.HistogramLUTWidget(image=image_item)
    cmm.find_mpl_leftovers = lambda: []
    try:
        return pg.HistogramLUTWidget(image=image_item)
    finally:
        cmm.find_mpl_leftovers = original


class _ImageItem(pg.ImageItem):
    """ImageItem that announces its first paint of real data (for startup timing)."""

    painted = QtCore.pyqtSignal()

    def paint(self, p, *args):
        super().paint(p, *args)
        if self.image is not None:
            self.painted.emit()


class FrameBar(QtWidgets.QWidget):
    """Slider + spin box + label to pick a frame of a stack."""

    frameChanged = QtCore.pyqtSignal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        self.label = QtWidgets.QLabel("Frame")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.spin = QtWidgets.QSpinBox()
        self.spin.setKeyboardTracking(False)
        self.count_label = QtWidgets.QLabel("/ 1")
        for w in (self.label, self.slider, self.spin, self.count_label):
            lay.addWidget(w)
        lay.setStretch(1, 1)
        self.slider.valueChanged.connect(self._on_value)
        self.spin.valueChanged.connect(self._on_value)

    def set_count(self, n: int) -> None:
        for w in (self.slider, self.spin):
            w.blockSignals(True)
            w.setRange(0, max(0, n - 1))
            w.setValue(0)
            w.blockSignals(False)
        self.count_label.setText(f"/ {n - 1}  ({n} frames)")

    def value(self) -> int:
        return self.slider.value()

    def _on_value(self, value: int) -> None:
        for w in (self.slider, self.spin):
            if w.value() != value:
                w.blockSignals(True)
                w.setValue(value)
                w.blockSignals(False)
        self.frameChanged.emit(value)


class ImageView(QtWidgets.QWidget):
    """Shows one :class:`~atomlens.io.Micrograph` (one frame at a time).

    Signals
    -------
    cursorMoved(str) : readout text for the pixel under the cursor ('' when outside).
    frameChanged(int) : the displayed frame changed.
    firstPainted() : the image item painted real data for the first time.
    """

    cursorMoved = QtCore.pyqtSignal(str)
    frameChanged = QtCore.pyqtSignal(int)
    firstPainted = QtCore.pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.micrograph = None
        self.current_frame_index = 0
        self._frame: np.ndarray | None = None
        self._painted_once = False

        self.graphics = pg.GraphicsView()
        self.graphics.setBackground(QtGui.QColor(40, 40, 40))
        self.graphics.setAcceptDrops(False)  # drops go to the main window
        self.viewbox = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.viewbox.setDefaultPadding(0.01)
        self.graphics.setCentralItem(self.viewbox)
        self.image_item = _ImageItem(axisOrder="row-major")
        self.image_item.painted.connect(self._on_painted)
        self.viewbox.addItem(self.image_item)
        self.scale_bar = ScaleBar(self.viewbox)

        self.histogram = _make_histogram(self.image_item)
        self.histogram.setMinimumWidth(150)
        self.histogram.setBackground(QtGui.QColor(40, 40, 40))
        self.histogram.item.gradient.loadPreset("grey")

        self.frame_bar = FrameBar()
        self.frame_bar.frameChanged.connect(self.show_frame)
        self.frame_bar.hide()

        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(0)
        top.addWidget(self.graphics, 1)
        top.addWidget(self.histogram)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(top, 1)
        lay.addWidget(self.frame_bar)

        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ---------------------------------------------------------------- data
    def set_micrograph(self, mg, first_frame: np.ndarray | None = None,
                       levels: tuple[float, float] | None = None, keep_view: bool = False) -> None:
        """Display `mg` (frame 0). `first_frame`/`levels` may be precomputed by the loader."""
        self.micrograph = mg
        self.current_frame_index = 0
        frame = first_frame if first_frame is not None else mg.frame(0)
        self._frame = frame
        if levels is None:
            levels = robust_levels(frame)
        h, w = frame.shape
        self.image_item.setImage(frame, autoLevels=False, levels=levels)
        self.image_item.setRect(QtCore.QRectF(-0.5, -0.5, w, h))
        self.histogram.item.setHistogramRange(*levels, padding=0.05)
        self.histogram.item.setLevels(*levels)
        self._apply_aspect()
        # SI units (m, A, V) get prefixed tick labels (e.g. "pm") instead of "-5.05e-08"
        units = mg.value_units if mg.value_units in _SI_UNITS else None
        self.histogram.item.axis.setLabel(units=units)
        self.scale_bar.set_image_rect(QtCore.QRectF(-0.5, -0.5, w, h))
        self.scale_bar.set_px_size_nm(mg.px_size_nm)
        if mg.is_stack:
            self.frame_bar.set_count(mg.n_frames)
            self.frame_bar.show()
        else:
            self.frame_bar.hide()
        if not keep_view:
            self.zoom_to_fit()

    def current_frame(self) -> np.ndarray | None:
        """The frame being displayed, as a float32 (H, W) array."""
        return self._frame

    def show_frame(self, index: int) -> None:
        """Display frame `index` of the current stack, keeping the contrast levels."""
        mg = self.micrograph
        if mg is None or not mg.is_stack:
            return
        index = int(np.clip(index, 0, mg.n_frames - 1))
        self._frame = mg.frame(index)
        self.current_frame_index = index
        self.image_item.setImage(self._frame, autoLevels=False)
        if self.frame_bar.value() != index:
            self.frame_bar.slider.setValue(index)
        self.frameChanged.emit(index)

    def _apply_aspect(self) -> None:
        mg = self.micrograph
        ratio = 1.0
        if mg is not None and mg.px_size_nm and mg.px_size_y_nm:
            ratio = mg.px_size_y_nm / mg.px_size_nm
        self.viewbox.setAspectLocked(True, ratio=ratio)

    def update_calibration(self) -> None:
        """Call after the micrograph's pixel size changed."""
        if self.micrograph is not None:
            self._apply_aspect()
            self.scale_bar.set_px_size_nm(self.micrograph.px_size_nm)

    # ---------------------------------------------------------------- display
    def auto_levels(self) -> tuple[float, float] | None:
        """Reset the contrast to the 0.5-99.5 % percentiles of the displayed frame."""
        if self._frame is None:
            return None
        levels = robust_levels(self._frame)
        self.histogram.item.setHistogramRange(*levels, padding=0.05)
        self.image_item.setLevels(levels)
        self.histogram.item.setLevels(*levels)
        return levels

    def levels(self) -> tuple[float, float]:
        lo, hi = self.histogram.item.getLevels()
        return float(lo), float(hi)

    def set_colormap(self, name: str) -> None:
        """Apply one of :data:`COLORMAPS` (by its display name)."""
        key = COLORMAPS.get(name, None)
        if key is None:
            self.histogram.item.gradient.loadPreset("grey")
        else:
            self.histogram.item.gradient.setColorMap(pg.colormap.get(key))

    def zoom_to_fit(self) -> None:
        if self._frame is not None:
            h, w = self._frame.shape
            self.viewbox.setRange(QtCore.QRectF(-0.5, -0.5, w, h), padding=0.01)

    def centre_on(self, x: float, y: float) -> None:
        """Pan (keeping the zoom) so that image pixel (x, y) is at the centre of the view."""
        r = self.viewbox.viewRect()
        self.viewbox.setRange(QtCore.QRectF(x - r.width() / 2, y - r.height() / 2, r.width(), r.height()),
                              padding=0)

    # ---------------------------------------------------------------- cursor
    def pixel_at_scene(self, scene_pos) -> tuple[int, int] | None:
        """(x, y) of the image pixel under a scene position, or None outside the image."""
        if self._frame is None:
            return None
        pt = self.viewbox.mapSceneToView(scene_pos)
        x, y = int(np.floor(pt.x() + 0.5)), int(np.floor(pt.y() + 0.5))
        h, w = self._frame.shape
        if 0 <= x < w and 0 <= y < h:
            return x, y
        return None

    def readout_for_pixel(self, x: int, y: int) -> str:
        mg = self.micrograph
        value = float(self._frame[y, x])
        return format_readout(x, y, mg.to_nm(x, y), value, mg.value_units)

    def _on_mouse_moved(self, scene_pos) -> None:
        pix = self.pixel_at_scene(scene_pos)
        self.cursorMoved.emit("" if pix is None else self.readout_for_pixel(*pix))

    def _on_painted(self) -> None:
        if not self._painted_once:
            self._painted_once = True
            self.firstPainted.emit()
