"""The AtomLens simulation engine: labelled STEM and STM images of lattices with defects.

No Qt here.  Entry point: :func:`simulate` (one image) and :func:`atomlens.sim.dataset.write_dataset`.
Units are Å throughout (``px_size_A``), as in the field's habit.
"""

from .atoms import ATOM, BACKGROUND, CLASSES, DEFECT_TYPES, DOPANT, VACANCY, AtomTable
from .simulate import SimConfig, SimResult, draw, simulate

__all__ = ["simulate", "SimConfig", "SimResult", "AtomTable", "CLASSES", "DEFECT_TYPES",
           "BACKGROUND", "ATOM", "DOPANT", "VACANCY", "draw"]
