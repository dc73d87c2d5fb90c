"""Analysis layer: probability maps -> atoms, sub-pixel refinement, CAM -> defects, metrics,
lattice statistics.  Pure numpy/scipy/scikit-image; no Qt, no torch.

Coordinates follow the AtomLens convention: ``x`` is the column and ``y`` the row, in pixels
of the original image, with the centre of the top-left pixel at (0, 0).
"""

from .atoms import CLASSES, AtomList, find_atoms
from .cam import DefectList, defects_from_cam
from .lattice import estimate_period_px, nearest_neighbour_distances, neighbours
from .metrics import detection_scores, match_points
from .refine import refine_gaussian

__all__ = ["CLASSES", "AtomList", "find_atoms", "DefectList", "defects_from_cam",
           "estimate_period_px", "nearest_neighbour_distances", "neighbours",
           "detection_scores", "match_points", "refine_gaussian"]
