"""The PNG snapshot: a :class:`~atomlens.workflows.snapshot.SnapshotSpec` painted with QPainter at
``scale`` x the image's own resolution (text needs Qt's fonts).  The spec, the blending and the
SVG snapshot are headless, in :mod:`atomlens.workflows.snapshot`; they are re-exported here.
"""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui

from ..fileio import atomic_write_bytes
from ..workflows.snapshot import (DEFECT_COLOUR, USER_FILL_ALPHA, SnapshotSpec, _defect_marks, _diamond,
                                  _font_px, _markers, compose_rgba, render_svg, scale_bar_geometry)

__all__ = ["DEFECT_COLOUR", "SnapshotSpec", "compose_rgba", "render_png", "render_qimage", "render_svg",
           "scale_bar_geometry"]


def _to_qimage(rgba: np.ndarray) -> QtGui.QImage:
    rgba = np.ascontiguousarray(rgba)
    h, w = rgba.shape[:2]
    return QtGui.QImage(rgba.data, w, h, 4 * w, QtGui.QImage.Format_RGBA8888).copy()


def render_qimage(spec: SnapshotSpec) -> QtGui.QImage:
    """Paint the snapshot into a QImage of :attr:`SnapshotSpec.size` (needs a QGuiApplication
    for the text: one is created offscreen-capable if there is none)."""
    _ensure_gui_app()
    base = _to_qimage(compose_rgba(spec))
    W, H = spec.size
    img = QtGui.QImage(W, H, QtGui.QImage.Format_ARGB32)
    p = QtGui.QPainter(img)
    try:
        p.drawImage(QtCore.QRectF(0, 0, W, H), base)  # nearest neighbour: crisp pixels
        p.setRenderHint(QtGui.QPainter.Antialiasing, True)
        s = spec.scale
        r = spec.marker_radius_px * s
        pen_w = max(1.0, 0.25 * r)
        p.setBrush(QtCore.Qt.NoBrush)
        for x, y, colour, _, user in _markers(spec):
            if user:
                fill = QtGui.QColor(colour)
                fill.setAlpha(USER_FILL_ALPHA)
                p.setPen(QtGui.QPen(QtGui.QColor(colour), 2 * pen_w))
                p.setBrush(fill)
                p.drawPolygon(QtGui.QPolygonF([QtCore.QPointF(*q) for q in _diamond(x, y, r)]))
                p.setBrush(QtCore.Qt.NoBrush)
            else:
                p.setPen(QtGui.QPen(QtGui.QColor(colour), pen_w))
                p.drawEllipse(QtCore.QPointF(x, y), r, r)
        font = QtGui.QFont()
        font.setPixelSize(round(_font_px(spec)))
        p.setFont(font)
        for _kind, x, y, w, h, colour, name in _defect_marks(spec, 1.5 * r):
            p.setPen(QtGui.QPen(QtGui.QColor(colour), pen_w))
            p.drawRect(QtCore.QRectF(x, y, w, h))
            p.drawText(QtCore.QPointF(x + w + 2, y), name)
        bar = scale_bar_geometry(spec)
        if bar is not None:
            _, label, (bx, by, bw, bh) = bar
            fm = QtGui.QFontMetricsF(font)
            pad = 0.5 * fm.height()
            tw = fm.horizontalAdvance(label)
            box = QtCore.QRectF(min(bx, bx + bw / 2 - tw / 2) - pad, by - fm.height() - 1.5 * pad,
                                max(bw, tw) + 2 * pad, bh + fm.height() + 2.5 * pad)
            p.setPen(QtCore.Qt.NoPen)
            p.setBrush(QtGui.QColor(0, 0, 0, 150))
            p.drawRect(box)
            p.setBrush(QtGui.QColor(255, 255, 255))
            p.drawRect(QtCore.QRectF(bx, by, bw, bh))
            p.setPen(QtGui.QColor(255, 255, 255))
            p.drawText(QtCore.QRectF(box.left(), box.top() + 0.5 * pad, box.width(), fm.height()),
                       QtCore.Qt.AlignCenter, label)
    finally:
        p.end()
    return img


def render_png(spec: SnapshotSpec, path) -> None:
    """Write the snapshot as a PNG of ``scale`` x the image size, atomically."""
    data = QtCore.QByteArray()
    buf = QtCore.QBuffer(data)
    buf.open(QtCore.QIODevice.WriteOnly)
    if not render_qimage(spec).save(buf, "PNG"):
        raise OSError(f"could not encode the snapshot for {path}")
    buf.close()
    atomic_write_bytes(path, bytes(data))


_APP = None


def _ensure_gui_app() -> None:
    """Text rendering needs a QGuiApplication; make one for headless use if none exists."""
    global _APP
    if QtGui.QGuiApplication.instance() is None:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _APP = QtGui.QGuiApplication([])

