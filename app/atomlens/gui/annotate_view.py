"""Drawing of :class:`~atomlens.analysis.annotations.Annotations` in the image's view box, and
the undo commands of the annotation mode.

Predicted atoms are thin rings; atoms placed or edited by the user are filled diamonds with
a thicker outline; both coloured by class.  Point defects are squares in their type's colour
with a text label; box defects (``w``, ``h`` set) are rectangles over their box, with the label
at the box's top-left corner.  All outlines are cosmetic pens: one screen pixel wide at every
zoom, while the rectangles stay in image coordinates.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from .layers import class_colours, marker_size

__all__ = ["AnnotationsView", "FnCommand", "is_box", "box_rect"]

Z_ANN = 12
MAX_LABELS = 300
BAND_COLOUR = "#ff4040"  # the Delete tool's rubber band


def _pen(colour, width):
    pen = pg.mkPen(colour, width=width)
    pen.setCosmetic(True)
    return pen


def is_box(d: dict) -> bool:
    """True for a box defect (its ``w`` and ``h`` are set), False for a point defect."""
    return d.get("w") is not None and d.get("h") is not None


def box_rect(d: dict) -> QtCore.QRectF:
    """The box of a box defect in image px."""
    return QtCore.QRectF(d["x"] - 0.5 * d["w"], d["y"] - 0.5 * d["h"], d["w"], d["h"])


class FnCommand(QtWidgets.QUndoCommand):
    """An undo step made of two callables: `do()` (also run on push) and `undo()`."""

    def __init__(self, text: str, do, undo, after=None):
        super().__init__(text)
        self._do, self._undo, self._after = do, undo, after

    def redo(self) -> None:
        self._do()
        if self._after:
            self._after()

    def undo(self) -> None:
        self._undo()
        if self._after:
            self._after()


class AnnotationsView(QtCore.QObject):
    """Scatter items for predicted and user atoms and point defects, rectangles for box
    defects (``boxes``), the defects' labels, a hover ring and a rubber-band rectangle (for
    deleting a region or drawing a box defect)."""

    MIN_PX, MAX_PX = 4.0, 200.0

    def __init__(self, viewbox: pg.ViewBox, parent=None):
        super().__init__(parent)
        self.vb = viewbox
        self.ann = None
        self.colours: dict = {}
        self.size_px = 6.0  # marker diameter in image px
        self.predicted = pg.ScatterPlotItem(pxMode=True, symbol="o")
        self.user = pg.ScatterPlotItem(pxMode=True, symbol="d")
        self.defects = pg.ScatterPlotItem(pxMode=True, symbol="s")
        for item, dz in ((self.predicted, 0), (self.user, 1), (self.defects, 2)):
            item.setZValue(Z_ANN + dz)
            viewbox.addItem(item, ignoreBounds=True)
        self.labels: list[pg.TextItem] = []
        self.boxes: list[QtWidgets.QGraphicsRectItem] = []  # one per box defect, in the order of ann.defects
        self.hover = QtWidgets.QGraphicsEllipseItem()
        self.hover.setPen(_pen("#ffffff", 2))
        self.hover.setZValue(Z_ANN + 5)
        self.hover.hide()
        viewbox.addItem(self.hover, ignoreBounds=True)
        self.band = QtWidgets.QGraphicsRectItem()
        self.band.setZValue(Z_ANN + 6)
        self._band_colour(BAND_COLOUR)
        self.band.hide()
        viewbox.addItem(self.band, ignoreBounds=True)
        viewbox.sigTransformChanged.connect(self._on_zoom)
        self.set_visible(False)

    # ------------------------------------------------------------------ state
    def set_annotations(self, ann, card_colours: dict | None = None) -> None:
        self.ann = ann
        if ann is not None:
            self.colours = class_colours(ann.class_names[1:], card_colours)
            xy = np.column_stack([ann.x, ann.y]) if len(ann) else np.zeros((0, 2))
            self.size_px = marker_size(xy) if len(ann) >= 2 else 6.0
        self.refresh()

    def set_visible(self, visible: bool) -> None:
        for item in (self.predicted, self.user, self.defects, *self.labels, *self.boxes):
            item.setVisible(visible)
        if not visible:
            self.hover.hide()
            self.band.hide()

    def screen_size(self) -> float:
        try:
            sx = self.vb.viewPixelSize()[0]
        except (TypeError, AttributeError):
            sx = 0.0
        size = self.size_px / sx if sx > 0 else self.MIN_PX
        return float(min(self.MAX_PX, max(self.MIN_PX, size)))

    def pick_radius(self) -> float:
        """How far (image px) from an atom a click still hits it."""
        try:
            sx = self.vb.viewPixelSize()[0]
        except (TypeError, AttributeError):
            sx = 1.0
        return max(0.6 * self.size_px, 5.0 * sx)

    def _on_zoom(self, *_) -> None:
        if self.ann is not None:
            s = self.screen_size()
            for item in (self.predicted, self.user):
                item.setSize(s)
            self.defects.setSize(s * 1.3)

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Redraw everything from the annotations (a few ms for 10^4 atoms)."""
        ann = self.ann
        visible = self.predicted.isVisible()
        for item in (*self.labels, *self.boxes):
            self.vb.removeItem(item)
        self.labels, self.boxes = [], []
        if ann is None:
            for item in (self.predicted, self.user, self.defects):
                item.clear()
            return
        s = self.screen_size()
        user = ann.user_mask()
        names = ann.class_names
        pens = {c: _pen(self.colours.get(names[c], "#ffffff"), 1.2) for c in set(ann.cls.tolist())}
        upens = {c: _pen(self.colours.get(names[c], "#ffffff"), 2.5) for c in set(ann.cls.tolist())}
        ubrush = {}
        for c in set(ann.cls.tolist()):
            col = QtGui.QColor(self.colours.get(names[c], "#ffffff"))
            col.setAlpha(150)
            ubrush[c] = pg.mkBrush(col)
        p_idx, u_idx = np.flatnonzero(~user), np.flatnonzero(user)
        self.predicted.setData(x=ann.x[p_idx], y=ann.y[p_idx], size=s, symbol="o",
                               pen=[pens[c] for c in ann.cls[p_idx].tolist()], brush=pg.mkBrush(None),
                               data=p_idx)
        self.user.setData(x=ann.x[u_idx], y=ann.y[u_idx], size=s, symbol="d",
                          pen=[upens[c] for c in ann.cls[u_idx].tolist()],
                          brush=[ubrush[c] for c in ann.cls[u_idx].tolist()], data=u_idx)
        self._draw_defects(ann, s, visible)

    def _draw_defects(self, ann, s: float, visible: bool) -> None:
        tcol = {t["name"]: t["colour"] for t in ann.defect_types}
        points = [e for e in ann.defects if not is_box(e)]
        if points:
            self.defects.setData(x=[e["x"] for e in points], y=[e["y"] for e in points], size=s * 1.3,
                                 symbol="s", pen=[_pen(tcol.get(e["type"], "#ffffff"), 2) for e in points],
                                 brush=pg.mkBrush(None))
        else:
            self.defects.clear()
        for k, e in enumerate(ann.defects):
            c = tcol.get(e["type"], "#ffffff")
            if is_box(e):
                r = box_rect(e)
                box = QtWidgets.QGraphicsRectItem(r)
                box.setPen(_pen(c, 2))
                box.setZValue(Z_ANN + 2)
                box.setVisible(visible)
                self.vb.addItem(box, ignoreBounds=True)
                self.boxes.append(box)
                corner = (r.left(), r.top())  # y points down: the top-left corner on screen
            else:
                corner = (e["x"] + 0.5 * self.size_px, e["y"] - 0.5 * self.size_px)
            if k < MAX_LABELS:
                lab = pg.TextItem(e["type"], color=c, anchor=(0, 1))
                lab.setPos(*corner)
                lab.setZValue(Z_ANN + 3)
                lab.setVisible(visible)
                self.vb.addItem(lab, ignoreBounds=True)
                self.labels.append(lab)

    def set_hover(self, index) -> None:
        ann = self.ann
        if ann is None or index is None or not 0 <= index < len(ann):
            self.hover.hide()
            return
        r = 0.6 * self.size_px
        self.hover.setRect(QtCore.QRectF(ann.x[index] - r, ann.y[index] - r, 2 * r, 2 * r))
        self.hover.show()

    def _band_colour(self, colour) -> None:
        pen = _pen(colour, 1.5)
        pen.setStyle(QtCore.Qt.DashLine)
        self.band.setPen(pen)
        fill = QtGui.QColor(colour)
        fill.setAlpha(40)
        self.band.setBrush(QtGui.QBrush(fill))

    def set_band(self, p0, p1, colour: str | None = None) -> None:
        """Show the rubber band from `p0` to `p1` (image px) in `colour` (default red); hide it
        when `p0` is None."""
        if p0 is None:
            self.band.hide()
            return
        self._band_colour(colour or BAND_COLOUR)
        self.band.setRect(QtCore.QRectF(QtCore.QPointF(*p0), QtCore.QPointF(*p1)).normalized())
        self.band.show()

    # ------------------------------------------------------------------ picking
    def nearest_atom(self, x: float, y: float):
        ann = self.ann
        if ann is None or not len(ann):
            return None
        d2 = (ann.x - x) ** 2 + (ann.y - y) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= self.pick_radius() ** 2 else None

    def nearest_defect(self, x: float, y: float):
        """Index of the defect hit by a click at (`x`, `y`), or None.

        A point defect (or a box's centre) within 1.3 x the pick radius wins, the nearest
        first; otherwise the smallest box that contains the click."""
        ann = self.ann
        if ann is None or not ann.defects:
            return None
        d2 = np.array([(e["x"] - x) ** 2 + (e["y"] - y) ** 2 for e in ann.defects])
        i = int(np.argmin(d2))
        if d2[i] <= (1.3 * self.pick_radius()) ** 2:
            return i
        inside = [(e["w"] * e["h"], k) for k, e in enumerate(ann.defects)
                  if is_box(e) and abs(e["x"] - x) <= 0.5 * e["w"] and abs(e["y"] - y) <= 0.5 * e["h"]]
        return min(inside)[1] if inside else None
