"""Analysis layer: probability maps -> atoms, sub-pixel refinement, CAM -> defects, metrics,
lattice statistics.  Pure numpy/scipy/scikit-image; no Qt, no torch.

Coordinates follow the AtomLens convention: ``x`` is the column and ``y`` the row, in pixels
of the original image, with the centre of the top-left pixel at (0, 0).

The names below are imported on first use (PEP 562), so that a light submodule (the list of
materials read at start-up) does not pull in scipy.
"""

from __future__ import annotations

import importlib

_WHERE = {"CLASSES": "atoms", "AtomList": "atoms", "find_atoms": "atoms",
          "DefectList": "cam", "defects_from_cam": "cam",
          "estimate_period_px": "lattice", "nearest_neighbour_distances": "lattice", "neighbours": "lattice",
          "detection_scores": "metrics", "match_points": "metrics", "refine_gaussian": "refine"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
