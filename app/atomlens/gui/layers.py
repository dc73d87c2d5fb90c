"""Overlay layers on the image: small data models, napari-like, without Qt.

A *layer* (:class:`AtomsLayer`, :class:`DefectsLayer`, :class:`HeatmapLayer`) holds data and
display settings and announces changes with psygnal signals (napari's choice: plain Python,
no QObject, so a layer can be built and tested without a QApplication); it knows nothing about
graphics items.
Its *view* in :mod:`.layer_views` draws it in a :class:`pyqtgraph.ViewBox` and follows the
signals; :class:`~atomlens.gui.layer_views.Overlays` puts the standard set together.

Positions are in pixels of the image (x = column, y = row, the centre of the top-left pixel
at (0, 0)); maps are (H, W) arrays over the image's own pixels.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal

from ..analysis.colours import class_colours, default_class_colours

__all__ = ["DEFAULT_COLOURS", "class_colours", "marker_size", "Layer", "AtomsLayer", "DefectsLayer",
           "HeatmapLayer"]

#: Fallback colours of the atom classes (the model card's ``colours`` take precedence).
DEFAULT_COLOURS = default_class_colours()


def marker_size(xy: np.ndarray, factor: float = 0.6, default: float = 6.0) -> float:
    """Marker diameter in px of the image: `factor` x the median nearest-neighbour distance of
    the (n, 2) positions `xy` (`default` for fewer than two points)."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) < 2:
        return default
    from ..analysis.lattice import median_nn_distance

    med = median_nn_distance(xy)
    return factor * med if med > 0 else default


# =========================================================================== models
class Layer:
    """Base of the layer models: a name, visibility and opacity (0..1).

    Signals: ``changed()`` when the data changed, ``visibilityChanged(bool)``,
    ``opacityChanged(float)``.
    """

    changed = Signal()
    visibilityChanged = Signal(bool)
    opacityChanged = Signal(float)

    def __init__(self, name: str, visible: bool = True, opacity: float = 1.0):
        self.name = name
        self.visible = bool(visible)
        self.opacity = float(opacity)

    def set_visible(self, visible: bool) -> None:
        if bool(visible) != self.visible:
            self.visible = bool(visible)
            self.visibilityChanged.emit(self.visible)

    def set_opacity(self, opacity: float) -> None:
        opacity = float(np.clip(opacity, 0.0, 1.0))
        if opacity != self.opacity:
            self.opacity = opacity
            self.opacityChanged.emit(opacity)

    def is_empty(self) -> bool:  # pragma: no cover - overridden
        return True


class AtomsLayer(Layer):
    """Atom columns: positions (px), class, score, class colours and calibration.

    Signals (besides :class:`Layer`'s): ``classVisibilityChanged(str, bool)``,
    ``highlightChanged(object)`` with the highlighted index or None.
    """

    classVisibilityChanged = Signal(str, bool)
    highlightChanged = Signal(object)

    def __init__(self):
        super().__init__("Atoms")
        self.atoms = None
        self.colours: dict = {}
        self.calibration = None  # Calibration of the shown atoms (None: uncalibrated)
        self.size = 6.0  # marker diameter in px of the image
        self.class_visible: dict = {}
        self.highlighted: int | None = None
        self._tree = None

    def is_empty(self) -> bool:
        return self.atoms is None or len(self.atoms) == 0

    def set_atoms(self, atoms, colours: dict | None = None, calibration=None,
                  median_nn_px: float | None = None) -> None:
        """Show `atoms` (an :class:`~atomlens.analysis.atoms.AtomList`, or None to clear).
        `calibration`: their :class:`~atomlens.analysis.calibration.Calibration` (for the nm
        positions of :meth:`describe`; None: px only).  `median_nn_px`: their median
        nearest-neighbour distance, if known (else computed)."""
        self.atoms = atoms
        self.calibration = calibration
        self._tree = None
        self.highlighted = None
        if atoms is not None:
            names = list(atoms.class_names[1:])
            self.colours = class_colours(names, colours)
            for n in names:
                self.class_visible.setdefault(n, True)
            self.size = (0.6 * median_nn_px if median_nn_px else marker_size(atoms.xy))
        self.changed.emit()
        self.highlightChanged.emit(None)

    def clear(self) -> None:
        self.set_atoms(None)

    def classes_present(self) -> list[str]:
        """Class names (background excluded) of the current atoms, in class order."""
        return [] if self.atoms is None else list(self.atoms.class_names[1:])

    def indices_of(self, name: str) -> np.ndarray:
        a = self.atoms
        if a is None or name not in a.class_names:
            return np.zeros(0, int)
        return np.flatnonzero(a.cls == a.class_names.index(name))

    def set_class_visible(self, name: str, visible: bool) -> None:
        if self.class_visible.get(name, True) != bool(visible):
            self.class_visible[name] = bool(visible)
            self.classVisibilityChanged.emit(name, bool(visible))

    def set_highlight(self, index: int | None) -> None:
        if index is not None and (self.atoms is None or not 0 <= index < len(self.atoms)):
            raise IndexError(f"no atom {index}")
        self.highlighted = index
        self.highlightChanged.emit(index)

    def nearest(self, x: float, y: float, max_dist: float | None = None) -> int | None:
        """Index of the visible atom nearest to (x, y) px, if within `max_dist` (default: the
        marker radius, at least 1 px)."""
        if self.is_empty() or not self.visible:
            return None
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.atoms.xy)
        r = max(1.0, 0.5 * self.size) if max_dist is None else max_dist
        found = self._tree.query_ball_point([x, y], r)
        names = self.atoms.class_names
        found = [i for i in found if self.class_visible.get(names[self.atoms.cls[i]], True)]
        if not found:
            return None
        d = np.hypot(self.atoms.x[found] - x, self.atoms.y[found] - y)
        return int(found[int(np.argmin(d))])

    def describe(self, i: int) -> str:
        """'atom 12: dopant, score 0.97 at (95.41, 136.62) px = (0.7453, 1.0672) nm'."""
        a = self.atoms
        x, y = float(a.x[i]), float(a.y[i])
        text = f"atom {i}: {a.class_names[a.cls[i]]}, score {a.score[i]:.2f} at ({x:.2f}, {y:.2f}) px"
        if self.calibration is not None and self.calibration.calibrated:
            xn, yn = self.calibration.to_nm(x, y)
            text += f" = ({float(xn):.4f}, {float(yn):.4f}) nm"
        return text


class DefectsLayer(Layer):
    """Defect positions (px) with their type names and colours."""

    def __init__(self):
        super().__init__("Defects")
        self.defects = None
        self.colours: dict = {}

    def is_empty(self) -> bool:
        return self.defects is None or len(self.defects) == 0

    def set_defects(self, defects, colours: dict | None = None) -> None:
        self.defects = defects
        if defects is not None:
            self.colours = class_colours(defects.type_names, colours)
        self.changed.emit()


class HeatmapLayer(Layer):
    """A stack of (K, H, W) maps of which one channel is shown, with a colour map.

    Parameters
    ----------
    kind : {"cam", "prob"}
        "cam": one colour ramp per channel (transparent at 0), levels 0 .. the largest value of
        all maps; "prob": the colour map `cmap` with an alpha ramp, levels 0 .. 1.
    """

    channelChanged = Signal(int)

    def __init__(self, name: str, kind: str, cmap: str = "inferno", opacity: float = 0.6,
                 visible: bool = True):
        super().__init__(name, visible=visible, opacity=opacity)
        self.kind = kind
        self.cmap = cmap
        self.maps: list | None = None
        self.names: list[str] = []
        self.colours: dict = {}
        self.channels: list[int] = []  # channels offered to the user
        self.channel = 0
        self.vmax = 1.0

    def is_empty(self) -> bool:
        return self.maps is None

    def set_maps(self, maps, names, channels=None, colours=None, channel=None) -> None:
        """Show `maps`: a (K, H, W) array or a list of K (H, W) arrays or of callables that
        return one (computed when first shown); None clears.  `channels` are the indices
        offered to the user (default all)."""
        self.maps = None if maps is None else list(maps)
        self.names = list(names or [])
        self.channels = list(range(len(self.names))) if channels is None else list(channels)
        self.colours = class_colours(self.names, colours)
        if self.maps is not None:
            if self.kind == "prob":
                self.vmax = 1.0
            else:
                peak = max((float(np.nanmax(m)) for m in self.maps if not callable(m) and m.size), default=0.0)
                self.vmax = peak if peak > 0 else 1.0
            if channel is None or channel not in self.channels:
                channel = self.channels[0] if self.channels else 0
            self.channel = int(channel)
        self.changed.emit()

    def set_channel(self, channel: int) -> None:
        if channel != self.channel:
            self.channel = int(channel)
            self.channelChanged.emit(self.channel)

    def current_map(self) -> np.ndarray | None:
        if self.maps is None or not 0 <= self.channel < len(self.maps):
            return None
        m = self.maps[self.channel]
        if callable(m):
            m = self.maps[self.channel] = np.asarray(m(), np.float32)
        return m
