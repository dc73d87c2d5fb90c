"""The simulation engine as the command line and the GUI use it: one image
(:func:`~atomlens.sim.simulate.simulate`, which the Retrain dialog previews), a labelled data set
(:func:`~atomlens.sim.dataset.write_dataset`, ``atomlens simulate``), its config
(:class:`~atomlens.sim.simulate.SimConfig`), the dose or noise of a real image
(:func:`~atomlens.sim.estimate.estimate_dose_or_noise`) and a structure from a CIF file
(:func:`~atomlens.sim.structures.from_cif`), offered here so that the faces call this layer only.
"""

from __future__ import annotations

from ..sim.dataset import write_dataset
from ..sim.estimate import estimate_dose_or_noise
from ..sim.simulate import SimConfig, simulate
from ..sim.structures import from_cif

__all__ = ["SimConfig", "estimate_dose_or_noise", "from_cif", "simulate", "write_dataset"]
