"""What micrograph file names commonly say: scan size, tip bias, setpoint current, imaging mode.

Exported images (JPEG, PNG, TIFF) lose the instrument's metadata, and what is left is what the
user typed into the file name: ``WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg`` is an STM topograph
(``Z``) of 5 x 5 nm taken at -1.4 V.  :func:`hints_from_name` reads such names (a pure function,
no I/O, no Qt); :func:`apply_filename_hints` fills in what a loaded
:class:`~atomlens.io.Micrograph` lacks (its imaging mode, its pixel size) and records each
assumption in ``mg.assumed`` and ``mg.notes``, so that the GUI and the CLI can say what was
assumed and the user can override it.

What is read (case-insensitive; the text it came from is kept with each hint):

* field of view: ``5x5``, ``5x5nm``, ``10 x 20 nm``, ``500pm``, ``2nm``, ``1.5um``, ``20Å`` (a
  single length is a square field).  A number pair without a unit is taken in nm, and only for an
  STM or STEM scan (the name's or the file's mode) and a plausible size (0.5-1000 nm; not an image
  size in pixels such as ``512x512``, not a binning ``bin2x2``, not a surface reconstruction such
  as ``Si111-7x7``);
* tip bias: ``-1.4V``, ``500mV``, ``+2V``, ``1p5V`` (``p`` for the decimal point); ``200kV`` is a
  STEM high tension, not a bias;
* setpoint current: ``100pA``, ``1nA``, ``2.5nA``;
* imaging mode: ``HAADF``, ``ADF``/``MAADF``/``LAADF``, ``ABF``, ``BF``, ``DF``, ``iDPC``/``DPC``,
  ``STEM`` (no detector named), ``STM``, ``topo``/``topography`` and a lone ``Z`` (an STM
  topograph), ``AFM``; with no mode word, a bias or a setpoint current means STM.  A name that
  names both a STEM and an SPM mode gives no mode.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePath

from .modes import NAME_MODE_WORDS

__all__ = [
    "SPM_MODES",
    "STEM_MODES",
    "NameHint",
    "NameHints",
    "apply_filename_hints",
    "assumption_notes",
    "hints_from_name",
]

#: Modes of scanning-probe images and of (S)TEM images, as :func:`hints_from_name` names them.
SPM_MODES = ("STM", "AFM")
STEM_MODES = ("HAADF", "ADF", "ABF", "BF", "DF", "iDPC", "DPC", "STEM")
#: A unitless field of view (nm) is believed between these sizes.
PLAUSIBLE_FOV_NM = (0.5, 1000.0)

_LENGTH_NM = {"pm": 1e-3, "a": 0.1, "å": 0.1, "ang": 0.1, "angstrom": 0.1, "nm": 1.0, "um": 1e3, "µm": 1e3,
              "μm": 1e3}
_NUM = r"\d+(?:[.,p]\d+)?"
_LEN_UNIT = r"nm|pm|um|µm|μm|å|angstrom|ang"
# a number starts after a separator (never inside a word such as 'SL445' or 'WSe2')
_START = r"(?<![a-z0-9.,])"
_FOV_PAIR = re.compile(rf"{_START}(?P<a>{_NUM})\s?(?P<ua>{_LEN_UNIT})?\s?[x×*]\s?(?P<b>{_NUM})\s?(?P<ub>{_LEN_UNIT})?"
                       r"(?![a-z0-9]|[.,]\d|\s?[x×*]\s?\d)", re.IGNORECASE)
_FOV_ONE = re.compile(rf"{_START}(?P<a>{_NUM})\s?(?P<u>{_LEN_UNIT})(?![a-z0-9]|\s?[x×*]\s?\d)", re.IGNORECASE)
_BIAS = re.compile(rf"(?P<sign>[-+−])?(?P<num>(?<![a-z0-9.,]){_NUM})\s?(?P<u>mV|V)(?![a-z0-9])", re.IGNORECASE)
_HIGH_TENSION = re.compile(rf"{_START}(?P<num>{_NUM})\s?kV(?![a-z0-9])", re.IGNORECASE)
_CURRENT = re.compile(rf"{_START}(?P<num>{_NUM})\s?(?P<u>fA|pA|nA|uA|µA|μA)(?![a-z0-9])", re.IGNORECASE)
_CURRENT_A = {"fa": 1e-15, "pa": 1e-12, "na": 1e-9, "ua": 1e-6, "µa": 1e-6, "μa": 1e-6}
# a surface reconstruction ('Si111-7x7', 'Si(111) 7x7', 'Au(111)_22x') is not a scan size
_RECONSTRUCTION = re.compile(r"(?:\(\d{3}\)|(?<![a-z])(?:si|ge|au|ag|cu|pt|ir|ni)\(?\d{3}\)?)[\s_-]?$", re.IGNORECASE)
_KNOWN_SUFFIX = re.compile(r"\.[a-z][a-z0-9_]{0,7}$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class NameHint:
    """One thing a file name says.

    Attributes
    ----------
    kind : str
        ``"fov"`` (value: (width, height) in nm), ``"bias"`` (V), ``"setpoint"`` (A),
        ``"high_tension"`` (V) or ``"mode"`` (an imaging mode: ``STM``, ``HAADF``...).
    value : object
    text : str
        The part of the name it was read from (``"5x5"``, ``"-1.4V"``, ``"Z"``).
    detail : str
        What was assumed in reading it (``"no unit: nm assumed"``), or "".
    """

    kind: str
    value: object
    text: str
    detail: str = ""

    def describe(self) -> str:
        """A short phrase for the user: ``5 x 5 nm field of view ('5x5', no unit: nm assumed)``."""
        v = self.value
        if self.kind == "fov":
            what = f"{_g(v[0])} x {_g(v[1])} nm field of view"
        elif self.kind == "bias":
            what = f"bias {_g(v * 1000)} mV" if abs(v) < 1 else f"bias {_g(v)} V"
        elif self.kind == "setpoint":
            what = f"setpoint {_g(v * 1e12)} pA" if v < 1e-9 else f"setpoint {_g(v * 1e9)} nA"
        elif self.kind == "high_tension":
            what = f"high tension {_g(v / 1000)} kV"
        else:
            what = f"imaging mode {v}"
        return f"{what} ('{self.text}'" + (f", {self.detail})" if self.detail else ")")


def _g(x: float) -> str:
    return f"{x:.4g}"


@dataclasses.dataclass(frozen=True)
class NameHints:
    """The hints read from one file name (see :func:`hints_from_name`)."""

    name: str
    hints: tuple = ()

    def get(self, kind: str) -> NameHint | None:
        """The hint of `kind`, or None.

        Parameters
        ----------
        kind : str
            ``"fov"``, ``"bias"``, ``"setpoint"``, ``"high_tension"`` or ``"mode"`` (see
            :class:`NameHint`).

        Returns
        -------
        NameHint or None
            The first hint of that kind; None when the name says nothing of it.
        """
        return next((h for h in self.hints if h.kind == kind), None)

    def _value(self, kind):
        h = self.get(kind)
        return None if h is None else h.value

    @property
    def fov_nm(self) -> tuple[float, float] | None:
        """(width, height) of the field of view in nm, or None."""
        return self._value("fov")

    @property
    def bias_V(self) -> float | None:
        """The tip bias in V (signed: ``-1.4V`` gives -1.4, ``500mV`` 0.5), or None."""
        return self._value("bias")

    @property
    def setpoint_A(self) -> float | None:
        """The setpoint (tunnelling) current in A (``100pA`` gives 1e-10), or None."""
        return self._value("setpoint")

    @property
    def mode(self) -> str | None:
        """The imaging mode the name says (``STM``, ``HAADF``, ``STEM``...), or None."""
        return self._value("mode")

    def px_size_nm(self, shape) -> tuple[float, float] | None:
        """(x, y) pixel size in nm of an image of `shape` (H, W) over the field of view, or None.

        Parameters
        ----------
        shape : tuple of int
            The image's shape, (H, W) px; only the last two entries are used, so (N, H, W) works.

        Returns
        -------
        (float, float) or None
            ``(fov width / W, fov height / H)`` in nm per pixel; None when the name gives no field
            of view.

        Examples
        --------
        >>> hints_from_name("scan_10x5nm.png").px_size_nm((100, 200))
        (0.05, 0.05)
        """
        fov = self.fov_nm
        if fov is None:
            return None
        h, w = (int(s) for s in shape[-2:])
        return fov[0] / w, fov[1] / h

    def __bool__(self) -> bool:
        return bool(self.hints)


def _num(text: str) -> float:
    return float(text.replace(",", ".").replace("p", ".").replace("P", "."))


def _stem(name) -> str:
    """The file name without its folder and its extension ('.jpg', '.Z_mtrx'); a dot inside a
    number ('-1.4V') is not an extension."""
    base = PurePath(str(name)).name
    return _KNOWN_SUFFIX.sub("", base)


def _modes(stem: str, name: str) -> tuple[str | None, str | None, list]:
    """(mode, text it came from, every (mode, text) found)."""
    found = []
    for mode, pat in NAME_MODE_WORDS:
        for m in re.finditer(pat, stem, re.IGNORECASE):
            found.append((m.start(), mode, m.group(0)))
    if re.search(r"\.z_mtrx$", name, re.IGNORECASE):  # Omicron MATRIX topography
        found.append((len(stem), "STM topography", name[name.lower().rfind(".z_mtrx") + 1:]))
    found.sort()
    hits = [(mode, text) for _, mode, text in found]
    spm = [(m, t) for m, t in hits if m in ("STM", "AFM", "STM topography")]
    if any(m == "AFM" for m, _ in spm):  # in an AFM name 'df' is the frequency shift, 'Z' the height
        hits = [(m, t) for m, t in hits if m != "DF"]
        spm = [(m, t) for m, t in spm if m == "AFM"] + [(m, t) for m, t in spm if m != "AFM"]
    stem_hits = [(m, t) for m, t in hits if m in STEM_MODES]
    if spm and stem_hits:
        return None, None, hits  # contradictory: say nothing
    if spm:
        mode, text = spm[0]
        return ("STM" if mode == "STM topography" else mode), text, hits
    if stem_hits:
        named = [(m, t) for m, t in stem_hits if m != "STEM"]  # a detector beats plain 'STEM'
        order = [m for m, _ in NAME_MODE_WORDS]  # and the more specific one ('iDPC' over 'DF4')
        mode, text = min(named or stem_hits, key=lambda mt: order.index(mt[0]))
        return mode, text, hits
    return None, None, hits


def hints_from_name(name, mode: str | None = None, shape=None) -> NameHints:
    """Read the scan size, bias, setpoint current and imaging mode a file name carries.

    Parameters
    ----------
    name : str or path
        The file name (a folder part is ignored).
    mode : str, optional
        The imaging mode the file itself gives, if any: a number pair without a unit is taken as
        a field of view in nm only for an STM or STEM image (the name's mode or this one).
    shape : (H, W), optional
        The image size in pixels: a unitless pair equal to it is the image size, not a field.

    Returns
    -------
    NameHints
        ``hints`` in the order fov, bias, setpoint, high_tension, mode (each at most once), each
        with the text it was read from.

    Examples
    --------
    >>> h = hints_from_name("WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg")
    >>> h.fov_nm, h.bias_V, h.mode
    ((5.0, 5.0), -1.4, 'STM')
    >>> [hint.describe() for hint in h.hints]  # doctest: +NORMALIZE_WHITESPACE
    ["5 x 5 nm field of view ('5x5', no unit: nm assumed)", "bias -1.4 V ('-1.4V')",
     "imaging mode STM ('Z', STM topography)"]
    >>> hints_from_name("graphene_512x512.tif").fov_nm is None  # an image size, not a field
    True
    """
    name = PurePath(str(name)).name
    stem = _stem(name)
    hints: list[NameHint] = []
    name_mode, mode_text, _ = _modes(stem, name)
    # bias, setpoint current, high tension
    bias = None
    for m in _BIAS.finditer(stem):
        sign = m.group("sign") or ""
        if sign and m.start() > 0 and re.match(r"[a-z0-9.]", stem[m.start() - 1], re.IGNORECASE):
            sign = ""  # 'Si-2V': the dash separates words
        v = _num(m.group("num")) * (1e-3 if m.group("u").lower() == "mv" else 1.0)
        if v > 20:  # no tip bias is that large
            continue
        bias = NameHint("bias", -v if sign in "-−" and sign else v,
                        m.group(0) if sign else m.group(0).lstrip("+-−"))
        break
    current = None
    m = _CURRENT.search(stem)
    if m:
        current = NameHint("setpoint", _num(m.group("num")) * _CURRENT_A[m.group("u").lower()], m.group(0))
    tension = None
    m = _HIGH_TENSION.search(stem)
    if m:
        tension = NameHint("high_tension", _num(m.group("num")) * 1e3, m.group(0))
    mode_hint = None
    if name_mode is not None:
        detail = ""
        if name_mode == "STM" and not re.fullmatch(r"stm|nanonis", mode_text, re.IGNORECASE):
            detail = "STM topography"  # 'Z', 'topo'
        elif name_mode == "STEM":
            detail = "no detector named"
        mode_hint = NameHint("mode", name_mode, mode_text, detail)
    elif bias is not None or current is not None:
        which = bias or current
        mode_hint = NameHint("mode", "STM", which.text, "a tip " + ("bias" if which is bias else "current"))
    scan_mode = (mode_hint.value if mode_hint else None) or mode
    fov = _fov(stem, scan_mode, shape)
    hints = [h for h in (fov, bias, current, tension, mode_hint) if h is not None]
    return NameHints(name, tuple(hints))


def _fov(stem: str, scan_mode, shape) -> NameHint | None:
    lo, hi = PLAUSIBLE_FOV_NM
    for m in _FOV_PAIR.finditer(stem):
        ua, ub = m.group("ua"), m.group("ub")
        if ua and ub is None:
            continue  # '5nmx5' is not a way of writing it
        a, b = _num(m.group("a")), _num(m.group("b"))
        before = stem[:m.start()]
        if re.search(r"bin(?:ning|ned)?[\s_-]?$", before, re.IGNORECASE) or _RECONSTRUCTION.search(before):
            continue
        unit = (ub or "").lower()
        if unit:
            f_a = _LENGTH_NM[(ua or ub).lower()]
            f_b = _LENGTH_NM[unit]
            return NameHint("fov", (a * f_a, b * f_b), m.group(0))
        # no unit: nm for an STM or STEM scan of a plausible size
        spm_or_stem = (scan_mode or "").upper() in {s.upper() for s in SPM_MODES + STEM_MODES} - {"AFM"}
        if not spm_or_stem or not (lo <= a <= hi and lo <= b <= hi) or max(a, b) > 20 * min(a, b):
            continue
        if a == int(a) and b == int(b) and (_pixel_count(a) and _pixel_count(b)):
            continue  # '512x512': the image size
        if shape is not None and {int(a), int(b)} == {int(s) for s in shape[-2:]}:
            continue
        return NameHint("fov", (a, b), m.group(0), "no unit: nm assumed")
    for m in _FOV_ONE.finditer(stem):
        a = _num(m.group("a")) * _LENGTH_NM[m.group("u").lower()]
        if a > 0:
            return NameHint("fov", (a, a), m.group(0), "a square field")
    return None


def _pixel_count(v: float) -> bool:
    return v >= 64 and v in (64, 100, 128, 200, 256, 400, 500, 512, 1000, 1024, 2048, 4096, 8192)


# ---------------------------------------------------------------------------- Micrograph
IO_MODE_NOTE = "guessed from the file name"  # atomlens.io.load's note: 'imaging mode ADF guessed from the file name'


def apply_filename_hints(mg) -> dict:
    """Fill in what the micrograph `mg` lacks from its file name, and say so.

    A missing imaging mode becomes the name's; a missing pixel size becomes the name's field of
    view over the image width (height).  Each is recorded in ``mg.assumed`` (``"mode"``,
    ``"px_size"`` -> a sentence naming the text it came from) and in ``mg.notes``; a mode that
    :func:`atomlens.io.load` already guessed from the name is recorded there too.  Nothing the
    file itself gives is changed.

    Parameters
    ----------
    mg : Micrograph
        A loaded micrograph (:func:`atomlens.io.load`); changed in place: ``mode``,
        ``px_size_nm`` / ``px_size_y_nm`` (nm per pixel), ``notes`` and ``assumed``.  One without
        a ``path`` is left as it is.

    Returns
    -------
    dict
        ``mg.assumed``.
    """
    assumed = getattr(mg, "assumed", None)
    if assumed is None:
        assumed = mg.assumed = {}
    if mg.path is None:
        return assumed
    if mg.mode and "mode" not in assumed and any(n == f"imaging mode {mg.mode} {IO_MODE_NOTE}" for n in mg.notes):
        assumed["mode"] = f"imaging mode {mg.mode} from the file name"
    hints = hints_from_name(mg.path.name, mode=mg.mode, shape=mg.shape)
    mode = hints.get("mode")
    if mg.mode is None and mode is not None:
        mg.mode = mode.value
        why = f"'{mode.text}'" + (f": {mode.detail}" if mode.detail else "")
        assumed["mode"] = f"imaging mode {mode.value} from the file name ({why})"
        mg.notes.append(assumed["mode"])
    fov = hints.get("fov")
    if mg.px_size_nm is None and fov is not None:
        px, py = hints.px_size_nm(mg.shape)
        mg.px_size_nm, mg.px_size_y_nm = px, py
        h, w = mg.shape
        size = f"{_g(px * 1000)} pm/px" + (f" x {_g(py * 1000)} pm/px" if abs(py / px - 1) > 1e-3 else "")
        detail = f", {fov.detail}" if fov.detail else ""
        assumed["px_size"] = (f"pixel size {size} from the file name ('{fov.text}': {_g(fov.value[0])} x "
                              f"{_g(fov.value[1])} nm over {w} x {h} px{detail})")
        mg.notes = [n for n in mg.notes if not n.startswith("no spatial calibration")]
        mg.notes.append(assumed["px_size"])
    return assumed


def assumption_notes(mg, *, px_size_given: bool = False, model_given: bool = False,
                     override: str = "give --model to override") -> list[str]:
    """Notes saying what an analysis of `mg` assumes about it (for ``atomlens detect``'s notes and
    JSON): the entries of ``mg.assumed`` (the pixel size's only when none was given), and, when
    the model is picked from the mode and `mg` has none, that HAADF is assumed (`override` says
    how to choose another: the CLI's flag by default, the Analysis dock in the app).

    Parameters
    ----------
    mg : Micrograph
        The micrograph analysed (only ``assumed`` and ``mode`` are read).
    px_size_given : bool
        The user gave the pixel size (``--px-size-nm``), so the one read from the name is not used
        and not reported.
    model_given : bool
        The user chose the model, so no imaging mode needs assuming.
    override : str
        The end of the HAADF note, in parentheses: how the user chooses another model.

    Returns
    -------
    list of str
        One sentence per assumption, in the order of ``mg.assumed``, then the HAADF note.
    """
    assumed = getattr(mg, "assumed", None) or {}
    notes = [v for k, v in assumed.items() if not (k == "px_size" and px_size_given)]
    if mg.mode is None and not model_given:
        notes.append(f"no imaging mode in the file or its name: HAADF assumed ({override})")
    return notes
