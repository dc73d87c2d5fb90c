"""Recognise the imaging mode (HAADF, ABF, STM...) from metadata text."""

from __future__ import annotations

import re

__all__ = ["MODES", "mode_from_text", "mode_from_metadata"]

#: Imaging modes AtomLens knows, with the words that name them in files.
MODES = ("HAADF", "ADF", "ABF", "BF", "DF", "iDPC", "DPC", "STM", "AFM", "TEM")

# word boundaries that also split on "_" and digits ("test_ADF_cropped", "DF4")
_B, _E = r"(?<![a-z])", r"(?![a-z])"
_PATTERNS = [
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


def mode_from_text(text: str) -> str | None:
    """The imaging mode a short text names (a detector name, a title), or None."""
    t = str(text).lower()
    for mode, pat in _PATTERNS:
        if re.search(pat, t):
            return mode
    return None


def mode_from_metadata(*texts) -> str | None:
    """The first mode found in `texts` (titles, detector names, signal types), in order."""
    for t in texts:
        if t:
            m = mode_from_text(t)
            if m:
                return m
    return None
