"""Imaging modes: recognised from metadata text (HAADF, ABF, STM...), and the families every
other part of AtomLens asks about (:func:`mode_family`, :func:`is_dark_atom`,
:func:`is_z_contrast`, :func:`needs_inversion`).  This module is their one home."""

from __future__ import annotations

import re

__all__ = ["MODES", "SPM_MODES", "DARK_ATOM_MODES", "Z_CONTRAST_MODES", "mode_from_text", "mode_from_metadata",
           "mode_family", "is_dark_atom", "is_z_contrast", "needs_inversion"]

#: Imaging modes AtomLens knows, with the words that name them in files.
MODES = ("HAADF", "ADF", "ABF", "BF", "DF", "iDPC", "DPC", "STM", "AFM", "TEM")
#: Scanning-probe modes: images of a surface, read by the STM model.
SPM_MODES = ("STM", "SPM", "AFM")
#: Imaging modes in which atom columns are dark on a bright background.
DARK_ATOM_MODES = ("ABF", "BF")
#: Modes whose column intensity grows with the atomic number (where Z-contrast tests apply).
Z_CONTRAST_MODES = ("HAADF", "ADF", "STEM", "MAADF")

# word boundaries that also split on "_" and digits ("test_ADF_cropped", "DF4")
_B, _E = r"(?<![a-z])", r"(?![a-z])"
#: The words of each mode in metadata text (detector names, titles, signal types), tried in order
#: by :func:`mode_from_text`.
METADATA_MODE_WORDS = [
    ("HAADF", rf"{_B}haadf{_E}|high[\s_-]*angle"),
    ("iDPC", rf"{_B}idpc{_E}"),
    ("DPC", rf"{_B}dpc{_E}"),
    ("ABF", rf"{_B}abf{_E}|annular[\s_-]*bright"),
    ("ADF", rf"{_B}[lm]?adf{_E}|{_B}df[\s_-]?[24s]{_E}|annular[\s_-]*dark"),
    ("BF", rf"{_B}bf{_E}|bright[\s_-]*field"),
    ("DF", rf"{_B}df{_E}|dark[\s_-]*field"),
    ("STM", rf"{_B}stm{_E}|scanning tunnel|nanonis|topograph"),
    ("AFM", rf"{_B}afm{_E}|atomic force|freq\.? shift"),
]

#: The words of each mode in a file name ('..._HAADF_021.tif', 'scan_Z_fwd.sxm'), tried in order by
#: :func:`atomlens.io.filename_hints.hints_from_name`.  They differ from
#: :data:`METADATA_MODE_WORDS` where names and metadata differ: 'Z' (the topography channel),
#: 'STEM' and 'nc-AFM' are read from names; detector numbers ('DF4') and 'annular ...' from
#: metadata only.  Both tables live here, the one home of the imaging modes.
NAME_MODE_WORDS = [
    ("HAADF", rf"{_B}haadf{_E}|high[\s_-]?angle"),
    ("iDPC", rf"{_B}idpc{_E}"),
    ("DPC", rf"{_B}dpc{_E}"),
    ("ABF", rf"{_B}abf{_E}"),
    ("ADF", rf"{_B}[lm]?adf{_E}"),
    ("BF", rf"{_B}bf{_E}|bright[\s_-]?field"),
    ("DF", rf"{_B}df{_E}|dark[\s_-]?field"),
    ("STEM", rf"{_B}stem{_E}"),
    ("STM", rf"{_B}stm{_E}|nanonis"),
    ("STM topography", rf"{_B}topo(?:graph(?:y|ic)?)?{_E}|(?<![a-z0-9])z(?![a-z0-9])(?![\s_-]?contrast)"),
    ("AFM", rf"{_B}(?:nc-?)?afm{_E}|atomic[\s_-]?force"),
]


def mode_from_text(text: str) -> str | None:
    """The imaging mode a short text names (a detector name, a title), or None.

    Case-insensitive; a mode name counts only as a whole word, where digits and ``_`` also
    separate words ("test_ADF_cropped", "DF4").  The first of HAADF, iDPC, DPC, ABF, ADF,
    BF, DF, STM, AFM that matches wins, so "HAADF" is not read as ADF.

    Parameters
    ----------
    text : str
        Any text (converted with ``str``): a detector name, a title, a signal type.

    Returns
    -------
    str or None
        A mode of :data:`MODES` (spelled as there), or None when the text names none.

    Examples
    --------
    >>> mode_from_text("HAADF Detector"), mode_from_text("test_ADF_cropped"), mode_from_text("DF4")
    ('HAADF', 'ADF', 'ADF')
    >>> mode_from_text("Nanonis topography"), mode_from_text("Z scan")
    ('STM', None)
    """
    t = str(text).lower()
    for mode, pat in METADATA_MODE_WORDS:
        if re.search(pat, t):
            return mode
    return None


def mode_from_metadata(*texts) -> str | None:
    """The first mode found in `texts` (titles, detector names, signal types), in order.

    Parameters
    ----------
    *texts : str or None
        Looked at one by one with :func:`mode_from_text`; empty ones and None are skipped.

    Returns
    -------
    str or None
        The mode of the first text that names one, or None.

    Examples
    --------
    >>> mode_from_metadata(None, "", "Image 1", "Bright field", "HAADF")
    'BF'
    """
    for t in texts:
        if t:
            m = mode_from_text(t)
            if m:
                return m
    return None


def mode_family(mode) -> str:
    """``"spm"`` for a scanning-probe mode (STM, SPM, AFM), ``"stem"`` for anything else
    (HAADF, ABF..., and an unknown or missing mode: the microscope images most users have).

    Parameters
    ----------
    mode : str or None
        An imaging mode, any case.

    Returns
    -------
    str
        ``"spm"`` or ``"stem"``.

    Examples
    --------
    >>> mode_family("stm"), mode_family("HAADF"), mode_family(None)
    ('spm', 'stem', 'stem')
    """
    return "spm" if str(mode or "").upper() in SPM_MODES else "stem"


def is_dark_atom(mode) -> bool:
    """True for a mode in which the columns are dark on a bright background (ABF, BF).

    Parameters
    ----------
    mode : str or None
        An imaging mode, any case.

    Returns
    -------
    bool
        Whether it is one of :data:`DARK_ATOM_MODES`; False for None or an unknown mode.

    Examples
    --------
    >>> is_dark_atom("abf"), is_dark_atom("HAADF"), is_dark_atom(None)
    (True, False, False)
    """
    return str(mode or "").upper() in DARK_ATOM_MODES


def is_z_contrast(mode) -> bool:
    """True for a Z-contrast mode (HAADF, ADF and the like); an unknown mode is not one.

    Parameters
    ----------
    mode : str or None
        An imaging mode, any case.

    Returns
    -------
    bool
        Whether it is one of :data:`Z_CONTRAST_MODES`; False for None.

    Examples
    --------
    >>> is_z_contrast("maadf"), is_z_contrast("ABF"), is_z_contrast(None)
    (True, False, False)
    """
    return str(mode or "").upper() in Z_CONTRAST_MODES


def needs_inversion(mode, model_mode) -> bool:
    """Whether an image of `mode` must be inverted before a model trained on `model_mode` sees it.

    Parameters
    ----------
    mode : str or None
        The image's imaging mode.
    model_mode : str or None
        The model's imaging mode (its card's ``mode``); None means HAADF.

    Returns
    -------
    bool
        True when the image's columns are dark (ABF, BF) and the model's are not.

    Examples
    --------
    >>> needs_inversion("ABF", "HAADF"), needs_inversion("ABF", "ABF"), needs_inversion("HAADF", None)
    (True, False, False)
    """
    m = str(mode or "").upper()
    return is_dark_atom(m) and str(model_mode or "HAADF").upper() != m
