"""Full-resolution snapshots of an image with its overlays, without Qt.

:class:`SnapshotSpec` describes what to draw (the image with its contrast and colour map, an
optional heatmap, atoms, defects, calibration); :func:`compose_rgba` blends the image and the
heatmap; :func:`render_svg` writes an SVG with the image (and heatmap) embedded as a PNG and the
atoms, defect labels and scale bar as vector elements (one ``<circle>`` per atom, grouped per
class; atoms the user placed or changed in Annotate mode as filled diamonds, ``<polygon>``, as
that mode draws them), atomically.  The GUI's PNG snapshot (:mod:`atomlens.gui.snapshot`) paints
the same spec with QPainter.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..fileio import atomic_write_text
from ..analysis.colours import DEFECT_MARKER_COLOUR, default_class_colours

__all__ = ["DEFECT_COLOUR", "SCALE_BAR_FRACTION", "USER_FILL_ALPHA", "SnapshotSpec", "compose_rgba",
           "format_length_nm", "nice_length", "png_bytes", "render_svg", "scale_bar_geometry"]

DEFECT_COLOUR = DEFECT_MARKER_COLOUR


def nice_length(max_value: float) -> float:
    """Largest number of the form 1, 2 or 5 x 10^n that is <= `max_value`.

    Parameters
    ----------
    max_value : float
        The longest the bar may be (any unit), > 0.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For a value that is not positive and finite.

    Examples
    --------
    >>> nice_length(3.7), nice_length(0.09), nice_length(50.0)
    (2.0, 0.05, 50.0)
    """
    if not (max_value > 0 and math.isfinite(max_value)):
        raise ValueError(f"need a positive finite length, got {max_value!r}")
    exp = math.floor(math.log10(max_value))
    for mant in (5.0, 2.0, 1.0):
        value = mant * 10.0**exp
        if value <= max_value * (1 + 1e-9):
            return value
    return 10.0 ** (exp - 1) * 5.0  # unreachable; keeps type checkers quiet


def format_length_nm(length_nm: float) -> str:
    """A length for a scale bar's label, in the unit that makes the number >= 1.

    Parameters
    ----------
    length_nm : float
        The length in nm.

    Returns
    -------
    str

    Examples
    --------
    >>> format_length_nm(0.5), format_length_nm(2.0), format_length_nm(1000.0)
    ('500 pm', '2 nm', '1 µm')
    """
    if length_nm < 1.0:
        value, unit = length_nm * 1000.0, "pm"
    elif length_nm >= 1000.0:
        value, unit = length_nm / 1000.0, "µm"
    else:
        value, unit = length_nm, "nm"
    return f"{value:.3g} {unit}"


#: The scale bar targets at most this fraction of the image width.
SCALE_BAR_FRACTION = 0.2


@dataclasses.dataclass
class SnapshotSpec:
    """What a snapshot shows.

    Attributes
    ----------
    image : (H, W) float array
    levels : (lo, hi)
        Display range: lo maps to the first LUT entry, hi to the last.
    lut : (256, 3) or (256, 4) uint8, or None for grey
    atoms : AtomList or None
    class_colours : dict
        Class name -> ``'#rrggbb'``.
    marker_radius_px : float
        Radius of the atom circles, in image pixels.
    heatmap : (H, W) float array or None
        Drawn over the image (NaN: transparent).
    heatmap_lut : (256, 3) or (256, 4) uint8 or None (a built-in "hot" map)
    heatmap_opacity : float, 0..1
    heatmap_levels : (lo, hi) or None (the heatmap's finite min and max)
    defects : DefectList or None
        Drawn as a square and a text label with the defect type.
    atom_user : (n,) bool array or None
        Annotate mode's look: True atoms (placed or changed by the user) are drawn as filled
        diamonds with a thicker outline, the others as rings.  None: all rings.
    defect_colours : dict or None
        Defect type -> ``'#rrggbb'`` (None: all in :data:`DEFECT_COLOUR`).
    defect_boxes : list or None
        Per defect, ``(w, h)`` px of a box defect (drawn as that box) or None for a point.
    px_size_nm : float or None
        Calibration: with it a scale bar is drawn bottom-right.
    scale : int
        Output pixels per image pixel (>= 1).
    """

    image: np.ndarray
    levels: tuple = None
    lut: np.ndarray | None = None
    atoms: object = None
    class_colours: dict = dataclasses.field(default_factory=default_class_colours)
    marker_radius_px: float = 3.0
    heatmap: np.ndarray | None = None
    heatmap_lut: np.ndarray | None = None
    heatmap_opacity: float = 0.5
    heatmap_levels: tuple | None = None
    defects: object = None
    px_size_nm: float | None = None
    scale: int = 1
    atom_user: np.ndarray | None = None
    defect_colours: dict | None = None
    defect_boxes: list | None = None

    def __post_init__(self):
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim != 2 or min(self.image.shape) < 1:
            raise ValueError(f"snapshot image must be 2D, got shape {self.image.shape}")
        if self.levels is None:
            fin = self.image[np.isfinite(self.image)]
            self.levels = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
        if int(self.scale) != self.scale or self.scale < 1:
            raise ValueError(f"scale must be a whole number >= 1, got {self.scale!r}")
        self.scale = int(self.scale)
        if self.heatmap is not None and np.shape(self.heatmap) != self.image.shape:
            raise ValueError(f"heatmap shape {np.shape(self.heatmap)} differs from the image's {self.image.shape}")
        n_atoms = 0 if self.atoms is None else len(self.atoms)
        if self.atom_user is not None:
            self.atom_user = np.asarray(self.atom_user, bool).reshape(-1)
            if len(self.atom_user) != n_atoms:
                raise ValueError(f"atom_user has {len(self.atom_user)} flags for {n_atoms} atoms")
        n_def = 0 if self.defects is None else len(self.defects)
        if self.defect_boxes is not None and len(self.defect_boxes) != n_def:
            raise ValueError(f"defect_boxes has {len(self.defect_boxes)} entries for {n_def} defects")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output in pixels."""
        h, w = self.image.shape
        return w * self.scale, h * self.scale


def _lut_rgba(lut) -> np.ndarray:
    if lut is None:
        g = np.arange(256, dtype=np.uint8)
        return np.stack([g, g, g, np.full(256, 255, np.uint8)], 1)
    lut = np.asarray(lut)
    if lut.ndim != 2 or lut.shape[1] not in (3, 4) or len(lut) < 2:
        raise ValueError(f"a LUT must be (N, 3) or (N, 4), got {lut.shape}")
    if lut.dtype != np.uint8:
        lut = np.clip(lut * (255 if lut.max() <= 1 else 1), 0, 255).astype(np.uint8)
    if lut.shape[1] == 3:
        lut = np.concatenate([lut, np.full((len(lut), 1), 255, np.uint8)], 1)
    return lut


def _hot_lut() -> np.ndarray:
    t = np.linspace(0, 1, 256)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], 1)
    return (rgb * 255).astype(np.uint8)


def _apply_lut(values, levels, lut) -> np.ndarray:
    lo, hi = (float(v) for v in levels)
    span = hi - lo if hi > lo else 1.0
    idx = np.clip((np.nan_to_num(values, nan=lo) - lo) / span, 0, 1) * (len(lut) - 1)
    return lut[np.rint(idx).astype(np.intp)]


def compose_rgba(spec: SnapshotSpec) -> np.ndarray:
    """The image through its LUT, with the heatmap blended on top.

    Parameters
    ----------
    spec : SnapshotSpec

    Returns
    -------
    (H, W, 4) uint8 array
        RGBA at the image's own resolution (not scaled), opaque.
    """
    out = _apply_lut(spec.image, spec.levels, _lut_rgba(spec.lut)).astype(np.float32)
    out[..., 3] = 255
    if spec.heatmap is not None and spec.heatmap_opacity > 0:
        hm = np.asarray(spec.heatmap, dtype=np.float32)
        fin = np.isfinite(hm)
        levels = spec.heatmap_levels
        if levels is None:
            levels = (float(hm[fin].min()), float(hm[fin].max())) if fin.any() else (0.0, 1.0)
        over = _apply_lut(hm, levels, _lut_rgba(spec.heatmap_lut if spec.heatmap_lut is not None else _hot_lut()))
        a = over[..., 3:4].astype(np.float32) / 255 * float(np.clip(spec.heatmap_opacity, 0, 1)) * fin[..., None]
        out[..., :3] = out[..., :3] * (1 - a) + over[..., :3] * a
    return np.rint(out).astype(np.uint8)


def scale_bar_geometry(spec: SnapshotSpec):
    """Where the scale bar goes.

    Parameters
    ----------
    spec : SnapshotSpec

    Returns
    -------
    (float, str, (x, y, w, h)) or None
        The bar's length in nm (a nice length of at most :data:`SCALE_BAR_FRACTION` of the
        width), its label and its rectangle in output pixels (bottom-right, with a margin of
        4 % of the smaller side; width ``length_nm / px_size_nm * scale``); None when the
        image is uncalibrated.
    """
    if spec.px_size_nm is None or not spec.px_size_nm > 0:
        return None
    W, H = spec.size
    w = spec.image.shape[1]
    length_nm = nice_length(SCALE_BAR_FRACTION * w * spec.px_size_nm)
    bar_w = length_nm / spec.px_size_nm * spec.scale
    margin = 0.04 * min(W, H)
    bar_h = max(2.0, 0.012 * min(W, H))
    return length_nm, format_length_nm(length_nm), (W - margin - bar_w, H - margin - bar_h, bar_w, bar_h)


def _font_px(spec) -> float:
    return max(8.0, 0.035 * min(spec.size))


def _markers(spec):
    """[(x_out, y_out, colour, class name, user)] of the atoms, in output pixels (pixel centres
    at +0.5); `user` True for an atom drawn as a filled diamond (:attr:`SnapshotSpec.atom_user`)."""
    a = spec.atoms
    if a is None or len(a) == 0:
        return []
    names = a.names()
    s = spec.scale
    user = spec.atom_user if spec.atom_user is not None else np.zeros(len(a), bool)
    return [((a.x[i] + 0.5) * s, (a.y[i] + 0.5) * s, spec.class_colours.get(names[i], "#ffffff"), names[i],
             bool(user[i])) for i in range(len(a))]


def _defect_marks(spec, half: float):
    """[(kind, x, y, w, h, colour, name)] of the defects in output pixels: kind "box" (the
    defect's box) or "point" (a square of side 2 `half` about it)."""
    d = spec.defects
    if d is None or len(d) == 0:
        return []
    s = spec.scale
    out = []
    for k, (x, y, name) in enumerate(zip(d.x, d.y, d.names())):
        colour = (spec.defect_colours or {}).get(name, DEFECT_COLOUR)
        box = spec.defect_boxes[k] if spec.defect_boxes is not None else None
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        if box is not None:
            w, h = float(box[0]) * s, float(box[1]) * s
            out.append(("box", cx - w / 2, cy - h / 2, w, h, colour, name))
        else:
            out.append(("point", cx - half, cy - half, 2 * half, 2 * half, colour, name))
    return out


#: Opacity of the fill of the user's atoms (as Annotate mode draws them).
USER_FILL_ALPHA = 150


def _diamond(x: float, y: float, r: float) -> list:
    return [(x, y - r), (x + r, y), (x, y + r), (x - r, y)]


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG encoding of an RGBA image (Pillow, lossless).

    Parameters
    ----------
    rgba : (H, W, 4) uint8 array

    Returns
    -------
    bytes
        The PNG file's bytes.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, np.uint8), "RGBA").save(buf, "PNG")
    return buf.getvalue()


def render_svg(spec: SnapshotSpec, path) -> None:
    """Write the snapshot as SVG, atomically.

    Parameters
    ----------
    spec : SnapshotSpec
    path : str or Path
        The SVG file.

    Notes
    -----
    The image (and heatmap) is embedded as a PNG at the image's own resolution, scaled by
    ``spec.scale`` without smoothing; atoms are ``<circle>`` elements in one ``<g>`` per class
    (the user's atoms as filled ``<polygon>`` diamonds); defects are squares with a text label;
    the scale bar is a white bar with its label on a dark box.
    """
    W, H = spec.size
    s = spec.scale
    png = base64.b64encode(png_bytes(compose_rgba(spec))).decode("ascii")
    r = spec.marker_radius_px * s
    sw = max(1.0, 0.25 * r)
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{W}" height="{H}" viewBox="0 0 {W} {H}">'),
           (f'<image x="0" y="0" width="{W}" height="{H}" preserveAspectRatio="none" '
            f'style="image-rendering:pixelated" xlink:href="data:image/png;base64,{png}"/>')]
    groups: dict = {}
    for x, y, colour, name, user in _markers(spec):
        if user:
            pts = " ".join(f"{qx:.2f},{qy:.2f}" for qx, qy in _diamond(x, y, r))
            groups.setdefault((name, colour, True), []).append(f'<polygon points="{pts}"/>')
        else:
            groups.setdefault((name, colour, False), []).append(f'<circle cx="{x:.2f}" cy="{y:.2f}" r="{r:.2f}"/>')
    for (name, colour, user), shapes in groups.items():
        if user:
            out.append(f'<g class={quoteattr("atoms user " + name)} fill="{colour}" '
                       f'fill-opacity="{USER_FILL_ALPHA / 255:.3f}" stroke="{colour}" stroke-width="{2 * sw:.2f}">')
        else:
            out.append(f'<g class={quoteattr("atoms " + name)} fill="none" stroke="{colour}" '
                       f'stroke-width="{sw:.2f}">')
        out += shapes
        out.append("</g>")
    marks = _defect_marks(spec, 1.5 * r)
    fpx = _font_px(spec)
    if marks:
        out.append(f'<g class="defects" fill="none" stroke-width="{sw:.2f}" '
                   f'font-size="{fpx:.1f}" font-family="sans-serif">')
        for _kind, x, y, w, h, colour, name in marks:
            out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" stroke="{colour}"/>')
            out.append(f'<text x="{x + w + 2:.2f}" y="{y:.2f}" fill="{colour}" '
                       f'stroke="none">{escape(name)}</text>')
        out.append("</g>")
    bar = scale_bar_geometry(spec)
    if bar is not None:
        _, label, (bx, by, bw, bh) = bar
        pad = 0.5 * fpx
        tw = 0.6 * fpx * len(label)
        left = min(bx, bx + bw / 2 - tw / 2) - pad
        out.append(f'<g class="scalebar"><rect x="{left:.2f}" y="{by - fpx - 1.5 * pad:.2f}" '
                   f'width="{max(bw, tw) + 2 * pad:.2f}" height="{bh + fpx + 2.5 * pad:.2f}" fill="black" '
                   f'fill-opacity="0.6"/><rect x="{bx:.2f}" y="{by:.2f}" width="{bw:.2f}" height="{bh:.2f}" '
                   f'fill="white"/><text x="{bx + bw / 2:.2f}" y="{by - pad:.2f}" fill="white" '
                   f'font-size="{fpx:.1f}" font-family="sans-serif" text-anchor="middle">{escape(label)}</text></g>')
    out.append("</svg>")
    atomic_write_text(path, "\n".join(out) + "\n")
