"""Length units: the one table of their sizes in nm (:data:`LENGTH_UNITS_NM`, which the GUI's
unit choices are cut from), and the normalisation of units as microscope files spell them."""

from __future__ import annotations

import re

__all__ = ["LENGTH_UNITS_NM", "length_unit_to_nm", "normalise_length_unit", "units_nm"]

#: Size in nm of each canonical length unit.
LENGTH_UNITS_NM = {"pm": 1e-3, "Å": 0.1, "nm": 1.0, "µm": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9}
_TO_NM = LENGTH_UNITS_NM

_ALIASES = {
    "pm": "pm", "picometer": "pm", "picometre": "pm", "picometers": "pm", "picometres": "pm",
    "å": "Å", "a": "Å", "ang": "Å", "angstrom": "Å", "angstroms": "Å", "ångström": "Å",
    "aa": "Å", "\\aa": "Å", "\\aa{}": "Å", "\\r{a}": "Å", "a°": "Å",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "µm": "µm", "μm": "µm", "um": "µm", "micron": "µm", "microns": "µm",
    "micrometer": "µm", "micrometre": "µm", "micrometers": "µm", "micrometres": "µm",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm",
    "cm": "cm",
    "m": "m", "meter": "m", "metre": "m", "meters": "m", "metres": "m",
}


def normalise_length_unit(units) -> str | None:
    """Return the canonical spelling (``pm``, ``Å``, ``nm``, ``µm``, ``mm``, ``cm``, ``m``)
    of a length unit, or None when `units` is not a real-space length.

    Odd spellings that files use are accepted: ``n_m`` and ``n m`` (Berkeley EMD),
    ``nanometers``, ``A``/``Angstrom``, ``u_m``/``um``/``μm``, and so on.  Reciprocal
    units such as ``1/nm`` are not lengths and return None.

    Parameters
    ----------
    units : str or None
        A unit as a file spells it (converted with ``str``; blanks, ``_`` and case are
        ignored; Å may be precomposed or A with a combining ring).

    Returns
    -------
    str or None
        A key of :data:`LENGTH_UNITS_NM`; None for None, an empty or undefined unit,
        pixels, a reciprocal unit or anything unknown.

    Examples
    --------
    >>> normalise_length_unit("n_m"), normalise_length_unit("Angstrom"), normalise_length_unit("um")
    ('nm', 'Å', 'µm')
    >>> normalise_length_unit("1/nm"), normalise_length_unit("px"), normalise_length_unit("furlong")
    (None, None, None)
    """
    if units is None:
        return None
    u = str(units).strip()
    if not u or u.lower() in {"<undefined>", "undefined", "none", "px", "pixel", "pixels"}:
        return None
    if u.startswith("1/") or u.endswith("^-1") or u.endswith("-1"):
        return None
    if u in ("Å", "Å"):  # precomposed and combining forms
        return "Å"
    key = re.sub(r"[\s_]", "", u).lower()
    return _ALIASES.get(key)


def length_unit_to_nm(units) -> float | None:
    """Factor that converts a length in `units` to nm, or None if `units` is not a length.

    Parameters
    ----------
    units : str or None
        A unit as a file spells it ("nm", "n_m", "Angstrom", "µm"...).

    Returns
    -------
    float or None
        nm per `units`.

    Examples
    --------
    >>> length_unit_to_nm("Angstrom"), length_unit_to_nm("1/nm")
    (0.1, None)
    """
    canon = normalise_length_unit(units)
    return None if canon is None else _TO_NM[canon]


def units_nm(*units: str, suffix: str = "") -> dict:
    """``{unit + suffix: size in nm}`` for the canonical `units` named, in that order (a dialog's
    choices: ``units_nm("pm", "nm", suffix="/px")`` is ``{"pm/px": 0.001, "nm/px": 1.0}``).

    Parameters
    ----------
    *units : str
        Canonical unit names (keys of :data:`LENGTH_UNITS_NM`, spelled exactly: "Å", "µm").
    suffix : str, optional
        Appended to each key (e.g. "/px" for pixel sizes).

    Returns
    -------
    dict of str to float
        The keys in the order given, each unit's size in nm.

    Raises
    ------
    KeyError
        For a unit that is not in :data:`LENGTH_UNITS_NM`.

    Examples
    --------
    >>> units_nm("pm", "nm", suffix="/px")
    {'pm/px': 0.001, 'nm/px': 1.0}
    """
    return {u + suffix: LENGTH_UNITS_NM[u] for u in units}
