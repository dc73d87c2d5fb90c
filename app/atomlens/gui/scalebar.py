"""A scale bar in nm drawn over the image, with a "nice" length (1, 2 or 5 x 10^n)."""

from __future__ import annotations


import pyqtgraph as pg
from PyQt5 import QtCore, QtGui

from ..workflows.snapshot import format_length_nm, nice_length

__all__ = ["ScaleBar", "nice_length", "format_length_nm"]


class ScaleBar(pg.GraphicsObject):
    """Scale bar anchored to the bottom-left corner of a :class:`pyqtgraph.ViewBox`.

    The item is a child of the ViewBox itself (not of its zoomed child group), so it stays
    put on screen while its length follows the zoom.  It targets at most 25 % of the
    visible width and is hidden while the image has no calibration.
    """

    MARGIN = 14
    BAR_HEIGHT = 6
    MAX_FRACTION = 0.25

    def __init__(self, viewbox: pg.ViewBox):
        super().__init__()
        self._vb = viewbox
        self._px_size_nm: float | None = None
        self._enabled = True
        self._image_rect: QtCore.QRectF | None = None  # in view (pixel) coordinates
        self.length_nm: float | None = None
        self.length_screen_px: float = 0.0
        self.text: str = ""
        self._font = QtGui.QFont()
        self._font.setPointSizeF(11)
        self._font.setBold(True)
        self.setParentItem(viewbox)
        self.setZValue(1000)
        viewbox.sigRangeChanged.connect(self._recompute)
        viewbox.sigResized.connect(self._recompute)
        self._recompute()

    # ---------------------------------------------------------------- public API
    def set_px_size_nm(self, px_size_nm: float | None) -> None:
        self._px_size_nm = px_size_nm
        self._recompute()

    def set_image_rect(self, rect: QtCore.QRectF | None) -> None:
        """The image's extent in view coordinates: the bar sits in its visible bottom-left."""
        self._image_rect = rect
        self._recompute()

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = bool(enabled)
        self._recompute()

    @property
    def visible_width_nm(self) -> float | None:
        if self._px_size_nm is None:
            return None
        (x0, x1), _ = self._vb.viewRange()
        return (x1 - x0) * self._px_size_nm

    # ---------------------------------------------------------------- internals
    def _recompute(self, *args) -> None:
        self.prepareGeometryChange()
        width_nm = self.visible_width_nm
        vb_width = self._vb.width()
        if not self._enabled or width_nm is None or width_nm <= 0 or vb_width <= 0:
            self.length_nm, self.length_screen_px, self.text = None, 0.0, ""
            self.setVisible(False)
            return
        self.length_nm = nice_length(self.MAX_FRACTION * width_nm)
        self.length_screen_px = self.length_nm / width_nm * vb_width
        self.text = format_length_nm(self.length_nm)
        self.setVisible(True)
        self.update()

    def _layout(self):
        fm = QtGui.QFontMetricsF(self._font)
        pad = 6.0
        text_w, text_h = fm.horizontalAdvance(self.text), fm.height()
        box_w = max(self.length_screen_px, text_w) + 2 * pad
        box_h = text_h + self.BAR_HEIGHT + 3 * pad
        area = QtCore.QRectF(0, 0, self._vb.width(), self._vb.height())
        if self._image_rect is not None:
            r = self._image_rect
            p0 = self._vb.mapFromView(r.topLeft())
            p1 = self._vb.mapFromView(r.bottomRight())
            shown = QtCore.QRectF(p0, p1).normalized().intersected(area)
            if shown.width() > box_w + 2 * self.MARGIN and shown.height() > box_h + 2 * self.MARGIN:
                area = shown
        x0 = area.left() + self.MARGIN
        y0 = area.bottom() - self.MARGIN - box_h
        return QtCore.QRectF(x0, y0, box_w, box_h), pad, text_h

    def boundingRect(self) -> QtCore.QRectF:
        if not self.text:
            return QtCore.QRectF()
        box, _, _ = self._layout()
        return box.adjusted(-1, -1, 1, 1)

    def paint(self, p: QtGui.QPainter, *args) -> None:
        if not self.text:
            return
        box, pad, text_h = self._layout()
        p.setRenderHint(QtGui.QPainter.Antialiasing, True)
        p.setPen(QtCore.Qt.NoPen)
        p.setBrush(QtGui.QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        cx = box.center().x()
        bar = QtCore.QRectF(cx - self.length_screen_px / 2, box.bottom() - pad - self.BAR_HEIGHT,
                            self.length_screen_px, self.BAR_HEIGHT)
        p.setBrush(QtGui.QColor(255, 255, 255))
        p.drawRect(bar)
        p.setPen(QtGui.QColor(255, 255, 255))
        p.setFont(self._font)
        text_rect = QtCore.QRectF(box.left(), box.top() + pad, box.width(), text_h)
        p.drawText(text_rect, QtCore.Qt.AlignCenter, self.text)
