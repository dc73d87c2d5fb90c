"""Bundled sample micrographs (in ``resources/samples``) and access to resource files."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

__all__ = ["Sample", "SAMPLES", "resource_path", "sample_path", "load_sample"]


def resource_path(*parts: str) -> Path:
    """Path of a file shipped in ``atomlens.resources`` (works for wheel and editable installs).

    Raises FileNotFoundError with the missing name when the file is not there.
    """
    p = resources.files("atomlens.resources").joinpath(*parts)
    path = Path(str(p))
    if not path.exists():
        raise FileNotFoundError(f"resource {'/'.join(parts)!r} is missing from the installation")
    return path


@dataclasses.dataclass(frozen=True)
class Sample:
    """A sample image, with calibration that the file itself may lack."""

    key: str
    filename: str
    title: str
    description: str
    source: str
    px_size_nm: float | None = None  # only for files without calibration
    mode: str | None = None  # only where the file does not say


SAMPLES: list[Sample] = [
    Sample(
        "sto-haadf",
        "SrTiO3_HAADF.emd",
        "SrTiO3 [001], HAADF-STEM",
        "SrTiO3 along [001] at 200 kV, 1024 x 1024 px, 12.2 pm/px (Berkeley EMD).",
        "ercius/openNCEM, ncempy/data/Acquisition_18.emd, GPL-3.0",
        mode="HAADF",
    ),
    Sample(
        "wse2-stm",
        "WSe2_STM_5x5nm.jpg",
        "WSe2, STM topograph (-1.4 V)",
        "WSe2 single layer, 5 x 5 nm STM topograph exported as JPEG (512 x 512 px).",
        "darianSmalley/ML-STM, datastores/WSe2/STM/STM_images, GPL-3.0",
        px_size_nm=5.0 / 512,
        mode="STM",
    ),
    Sample(
        "ag111-stm",
        "Ag111_STM_topo.sxm",
        "Ag(111) with adsorbates, STM (Nanonis)",
        "Ag(111) with adsorbates, Nanonis .sxm, 256 x 256 px over 5 x 5 nm, Z forward.",
        "New-Horizons-SPM/G80SXM, ExampleData/example_TOPO.sxm, MIT",
    ),
]

_BY_KEY = {s.key: s for s in SAMPLES}


def sample_path(key: str) -> Path:
    """Path of the bundled sample `key` (one of ``[s.key for s in SAMPLES]``)."""
    try:
        sample = _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown sample {key!r}; choose one of {sorted(_BY_KEY)}") from None
    return resource_path("samples", sample.filename)


def load_sample(key: str = "sto-haadf"):
    """Load a bundled sample as a :class:`~atomlens.io.Micrograph`, with its known calibration."""
    from .io import load

    sample = _BY_KEY.get(key)
    mg = load(sample_path(key))
    if sample.px_size_nm is not None and mg.px_size_nm is None:
        mg.px_size_nm = mg.px_size_y_nm = sample.px_size_nm
        mg.notes.append(f"pixel size {sample.px_size_nm:.5g} nm from the sample's description")
    if sample.mode and not mg.mode:
        mg.mode = sample.mode
    return mg
