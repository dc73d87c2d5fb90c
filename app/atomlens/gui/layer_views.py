"""pyqtgraph views of the overlay layers of :mod:`.layers`, and :class:`Overlays`, the standard
set of layers and views of one image view.

A view (:class:`AtomsView`, :class:`DefectsView`, :class:`HeatmapView`) draws one layer in a
:class:`pyqtgraph.ViewBox` and follows its signals.  :class:`Overlays` fills the layers from an
:class:`~atomlens.analysis.pipeline.AnalysisResult`.

Coordinates are those of :mod:`.image_view`: the image item's rect is (-0.5, -0.5, W, H), so
the centre of pixel (x = column, y = row) is at view coordinates (x, y).  Heatmaps use the
same rect, and points are placed at their pixel coordinates, so every overlay is aligned.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets, sip

from .layers import AtomsLayer, DefectsLayer, HeatmapLayer, Layer

__all__ = ["AtomsView", "DefectsView", "HeatmapView", "Overlays", "Z_ORDER"]

#: z values of the overlays (the image item is at 0).
Z_ORDER = {"prob": 5, "cam": 6, "atoms": 10, "defects": 15, "highlight": 20}
#: Text labels are drawn for at most this many defects (each label is a graphics item).
MAX_DEFECT_LABELS = 300


def heatmap_lut(layer) -> np.ndarray:
    """(256, 4) uint8 RGBA look-up table of a :class:`~atomlens.gui.layers.HeatmapLayer`'s shown
    channel: transparent for low values; a CAM channel in its class colour, a probability map in
    the layer's colour map."""
    ramp = np.linspace(0.0, 1.0, 256)
    alpha = np.clip((ramp - 0.1) / 0.8, 0.0, 1.0)  # weak activations stay see-through
    if layer.kind == "cam":
        name = layer.names[layer.channel] if 0 <= layer.channel < len(layer.names) else ""
        rgb = np.array(QtGui.QColor(layer.colours.get(name, "#ff5050")).getRgb()[:3], float)
        colours = np.tile(rgb, (256, 1))
    else:
        colours = pg.colormap.get(layer.cmap).getLookupTable(0.0, 1.0, 256, alpha=False).astype(float)
    return np.concatenate([colours, 255 * alpha[:, None]], axis=1).round().astype(np.uint8)


def _pen(colour, width=1.5):
    pen = pg.mkPen(colour, width=width)
    pen.setCosmetic(True)
    return pen


class AtomsView(QtCore.QObject):
    """Draws an :class:`AtomsLayer`: one scatter item per class, a legend and a highlight ring.

    Markers have the layer's size in image pixels (data coordinates): the scatter items use
    pyqtgraph's fast pixel mode and their size is rescaled whenever the zoom changes, which
    keeps panning and zooming smooth with tens of thousands of atoms (``pxMode=False`` draws
    each point separately, 7x slower).
    """

    MIN_SIZE_PX = 3.0  # markers never shrink below this on screen
    CHUNK = 800  # points added to a scatter item per step
    MAX_SIZE_PX = 300.0  # nor grow beyond this (the symbol is rendered at this size)

    def __init__(self, layer: AtomsLayer, viewbox: pg.ViewBox):
        super().__init__(viewbox)
        self.layer, self.vb = layer, viewbox
        self.scatters: dict[str, pg.ScatterPlotItem] = {}
        self._samples: dict[str, pg.ScatterPlotItem] = {}
        self._screen_size = None
        self._pending: list = []  # (item, x, y) chunks still to add
        self._generation = 0
        self.legend = pg.LegendItem(offset=(-10, 10), brush=pg.mkBrush(20, 20, 20, 190),
                                    pen=pg.mkPen(120, 120, 120), labelTextColor="#f0f0f0",
                                    labelTextSize="10pt")
        self.legend.setParentItem(viewbox)
        self.legend.setZValue(1000)
        self.legend.hide()
        self.ring = QtWidgets.QGraphicsEllipseItem()
        self.ring.setPen(_pen("#ffffff", 3))
        self.ring.setZValue(Z_ORDER["highlight"])
        self.ring.hide()
        viewbox.addItem(self.ring, ignoreBounds=True)
        layer.changed.connect(self.rebuild)
        layer.visibilityChanged.connect(self._apply_visibility)
        layer.classVisibilityChanged.connect(lambda *_: self._apply_visibility())
        layer.highlightChanged.connect(self._on_highlight)
        viewbox.sigTransformChanged.connect(self._on_transform)

    def screen_size(self) -> float:
        """Marker diameter on screen (px) for the current zoom."""
        try:
            sx = self.vb.viewPixelSize()[0]
        except (TypeError, AttributeError):  # not in a view yet (no device transform)
            sx = 0.0
        size = self.layer.size / sx if sx > 0 else self.MIN_SIZE_PX
        return float(min(self.MAX_SIZE_PX, max(self.MIN_SIZE_PX, size)))

    def rebuild(self) -> None:
        """Recreate the markers from the layer.  Points are handed to the scatter items in
        chunks of :attr:`CHUNK` from the event loop, so that tens of thousands of atoms never
        block it for long (pyqtgraph spends ~6 µs per point on adding it)."""
        self._generation += 1
        self._pending = []
        self.legend.clear()
        self._samples.clear()
        a = self.layer.atoms
        names = self.layer.classes_present() if a is not None else []
        for name in [n for n in self.scatters if n not in names]:
            self.vb.removeItem(self.scatters.pop(name))
        size = self._screen_size = self.screen_size()
        for name in names:
            idx = self.layer.indices_of(name)
            colour = QtGui.QColor(self.layer.colours[name])
            fill = QtGui.QColor(colour)
            fill.setAlpha(45)
            item = self.scatters.get(name)
            if item is None:
                item = pg.ScatterPlotItem(pxMode=True, hoverable=False)
                item.setZValue(Z_ORDER["atoms"])
                item.class_name = name
                self.vb.addItem(item, ignoreBounds=True)
                self.scatters[name] = item
            item.clear()
            item.fragmentAtlas.clear()  # styles of earlier rebuilds
            item.opts.update(symbol="o", size=size, pen=_pen(colour), brush=pg.mkBrush(fill))
            for k in range(0, len(idx), self.CHUNK):
                self._pending.append((item, a.x[idx[k:k + self.CHUNK]], a.y[idx[k:k + self.CHUNK]]))
            sample = pg.ScatterPlotItem(size=11, symbol="o", pen=_pen(colour, 2), brush=pg.mkBrush(fill))
            sample.visibleChanged.connect(lambda n=name, s=sample: self.layer.set_class_visible(n, s.isVisible()))
            self._samples[name] = sample
            if len(idx):  # the Layers dock lists empty classes too
                self.legend.addItem(sample, f"{name} ({len(idx)})")
        self._apply_visibility()
        gen = self._generation
        QtCore.QTimer.singleShot(1, lambda: self._feed(gen))  # after the caller's work

    def _feed(self, generation: int) -> None:
        if generation != self._generation:
            return  # a newer rebuild took over
        t0 = time.perf_counter()
        while self._pending and time.perf_counter() - t0 < 0.008:
            item, x, y = self._pending.pop(0)
            if sip.isdeleted(item):  # the window was closed while the markers were fed
                self._pending = []
                return
            item.addPoints(x=x, y=y)
        if self._pending:
            # a 1 ms timer, not 0: a zero timer is a posted event, and chained posted events
            # starve the timers and input events (measured with bench/gui_stall.py)
            QtCore.QTimer.singleShot(1, lambda: self._feed(generation))

    @property
    def building(self) -> bool:
        """True while markers are still being handed to the scatter items."""
        return bool(self._pending)

    def _apply_visibility(self, *_):
        for name, item in self.scatters.items():
            on = self.layer.class_visible.get(name, True)
            item.setVisible(self.layer.visible and on)
            sample = self._samples.get(name)
            if sample is not None and sample.isVisible() != on:
                sample.setVisible(on)
                self.legend.update()
        self.legend.setVisible(self.layer.visible and bool(self.scatters))
        self.ring.setVisible(self.layer.visible and self.layer.highlighted is not None)

    def _on_transform(self, *_):
        if not self.scatters:
            return
        size = self.screen_size()
        if self._screen_size and abs(size / self._screen_size - 1) < 0.05:
            return
        self._screen_size = size
        for item in self.scatters.values():
            item.setSize(size)

    def _on_highlight(self, index) -> None:
        if index is None or self.layer.atoms is None:
            self.ring.hide()
            return
        x, y = float(self.layer.atoms.x[index]), float(self.layer.atoms.y[index])
        r = 0.5 * self.layer.size * 1.6
        self.ring.setRect(QtCore.QRectF(x - r, y - r, 2 * r, 2 * r))
        self.ring.setVisible(self.layer.visible)


class DefectsView(QtCore.QObject):
    """Draws a :class:`DefectsLayer`: star markers and a text label per defect."""

    def __init__(self, layer: DefectsLayer, viewbox: pg.ViewBox):
        super().__init__(viewbox)
        self.layer, self.vb = layer, viewbox
        self.scatter = pg.ScatterPlotItem(size=16, symbol="star", pxMode=True, hoverable=False)
        self.scatter.setZValue(Z_ORDER["defects"])
        viewbox.addItem(self.scatter, ignoreBounds=True)
        self.labels: list[pg.TextItem] = []
        layer.changed.connect(self.rebuild)
        layer.visibilityChanged.connect(self._apply_visibility)

    def rebuild(self) -> None:
        for t in self.labels:
            self.vb.removeItem(t)
        self.labels = []
        d = self.layer.defects
        if d is None or len(d) == 0:
            self.scatter.clear()
            return
        names = d.names()
        brushes = [pg.mkBrush(self.layer.colours[n]) for n in names]
        self.scatter.setData(x=d.x, y=d.y, brush=brushes, pen=_pen("#000000", 1))
        for i in np.argsort(-d.score)[:MAX_DEFECT_LABELS]:
            t = pg.TextItem(f"{names[i]} {d.score[i]:.2f}", color=self.layer.colours[names[i]],
                            fill=pg.mkBrush(0, 0, 0, 150), anchor=(0.5, 1.35))
            t.setPos(float(d.x[i]), float(d.y[i]))
            t.setZValue(Z_ORDER["defects"] + 1)
            self.vb.addItem(t, ignoreBounds=True)
            self.labels.append(t)
        self._apply_visibility()

    def _apply_visibility(self, *_):
        on = self.layer.visible
        self.scatter.setVisible(on)
        for t in self.labels:
            t.setVisible(on)


class HeatmapView(QtCore.QObject):
    """Draws a :class:`HeatmapLayer` as a semi-transparent ImageItem over the image, with the
    image's rect (-0.5, -0.5, W, H).  Data are handed to the item only while it is visible."""

    def __init__(self, layer: HeatmapLayer, viewbox: pg.ViewBox, z: float):
        super().__init__(viewbox)
        self.layer, self.vb = layer, viewbox
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(z)
        self.item.hide()
        viewbox.addItem(self.item, ignoreBounds=True)
        self._dirty = True
        layer.changed.connect(self._on_changed)
        layer.channelChanged.connect(self._on_changed)
        layer.visibilityChanged.connect(self._refresh)
        layer.opacityChanged.connect(self.item.setOpacity, check_nargs=False)
        self.item.setOpacity(layer.opacity)

    def _on_changed(self, *_):
        self._dirty = True
        self._refresh()

    def _refresh(self, *_):
        if self.layer.is_empty():
            self.item.clear()
        m = self.layer.current_map() if self.layer.visible else None  # computed only when shown
        if m is not None and self._dirty:
            h, w = m.shape
            self.item.setImage(m, autoLevels=False, levels=(0.0, self.layer.vmax), lut=heatmap_lut(self.layer))
            self.item.setRect(QtCore.QRectF(-0.5, -0.5, w, h))
            self._dirty = False
        self.item.setVisible(m is not None)


class Overlays(QtCore.QObject):
    """The overlay layers of one image view and their views.

    Attributes: ``atoms`` (AtomsLayer), ``defects`` (DefectsLayer), ``cam`` (HeatmapLayer of
    the defect CAMs), ``prob`` (HeatmapLayer of the class probabilities; hidden at first).
    Signal ``layersChanged()`` after :meth:`set_result`.
    """

    layersChanged = QtCore.pyqtSignal()

    def __init__(self, viewbox: pg.ViewBox, parent=None):
        super().__init__(parent)
        self.atoms = AtomsLayer()
        self.defects = DefectsLayer()
        self.cam = HeatmapLayer("Defect heatmap (CAM)", "cam", opacity=0.55)
        self.prob = HeatmapLayer("Probability map", "prob", cmap="inferno", opacity=0.5, visible=False)
        self.atoms_view = AtomsView(self.atoms, viewbox)
        self.defects_view = DefectsView(self.defects, viewbox)
        self.cam_view = HeatmapView(self.cam, viewbox, Z_ORDER["cam"])
        self.prob_view = HeatmapView(self.prob, viewbox, Z_ORDER["prob"])

    def layers(self) -> list[Layer]:
        return [self.atoms, self.defects, self.cam, self.prob]

    def set_result(self, result, colours: dict | None = None) -> None:
        """Show an AnalysisResult (None clears every layer).  `colours`: class -> colour."""
        if result is None:
            self.atoms.set_atoms(None)
            self.defects.set_defects(None)
            self.cam.set_maps(None, [])
            self.prob.set_maps(None, [])
            self.layersChanged.emit()
            return
        self.atoms.set_atoms(result.atoms, colours, result.calibration,
                             result.info.get("median_nn_px"))
        self.defects.set_defects(result.defects)
        if result.cam is not None and result.defects is not None:
            names = list(result.defects.type_names)[: len(result.cam)]
            offered = [i for i, n in enumerate(names) if n != "pristine"] or list(range(len(names)))
            strongest = max(offered, key=lambda i: float(result.cam[i].max()))
            keep = self.cam.channel if self.cam.maps is not None and self.cam.channel in offered else strongest
            self.cam.set_maps(result.cam, names, offered, channel=keep)
        else:
            self.cam.set_maps(None, [])
        if result.prob is not None:
            names = list(result.class_names)
            prob = result.prob
            # channel "foreground" (1 - background, computed when first shown), then each class
            keep = self.prob.channel if self.prob.maps is not None else 0
            self.prob.set_maps([lambda p=prob: 1.0 - p[0]] + list(prob[1:]), ["foreground"] + names[1:],
                               channel=keep)
        else:
            self.prob.set_maps(None, [])
        self.layersChanged.emit()

    def hover_text(self, x: float, y: float) -> str | None:
        """Description of the atom under view position (x, y), or None."""
        i = self.atoms.nearest(x, y)
        return None if i is None else self.atoms.describe(i)

