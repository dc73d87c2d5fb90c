"""Make the multislice reference images that test our HAADF convolution model.

Runs abTEM (multislice, Lobato potentials, infinite projection, no thermal diffuse
scattering) for three small periodic structures and saves, per structure, an npz with the
HAADF image, the scan sampling, the optics and the atoms (so the test needs neither abTEM
nor this script).  abTEM needs zarr >= 3 while RosettaSciIO's zspy reader needs zarr < 3, so
run this in its own environment:

    python3 -m venv /tmp/abt && /tmp/abt/bin/pip install abtem ase
    /tmp/abt/bin/python tests/data/make_abtem_reference.py

Generated with abTEM 1.0.11 (see the "abtem_version" entry of each file).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CASES = {
    # name: (builder, repeat, kV, semi-angle mrad, detector inner, outer mrad)
    "graphene_60kV": ("graphene", (3, 2, 1), 60, 30, 80, 200),
    "MoS2_80kV": ("mos2", (2, 1, 1), 80, 25, 80, 200),
    "SrTiO3_001_3uc_200kV": ("sto", (2, 2, 3), 200, 25, 70, 200),
}


def build(kind: str):
    import abtem
    from ase import Atoms
    from ase.build import graphene, mx2

    if kind == "graphene":
        atoms = graphene(a=2.46, vacuum=2.0)
    elif kind == "mos2":
        atoms = mx2("MoS2", kind="2H", a=3.16, thickness=3.19, vacuum=2.0)
    elif kind == "sto":
        a = 3.905
        atoms = Atoms("SrTiO3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                      cell=[a, a, a], pbc=True)
    else:
        raise ValueError(kind)
    atoms = abtem.orthogonalize_cell(atoms)
    return atoms


def main() -> None:
    import abtem

    abtem.config.set({"device": "cpu", "fft": "numpy"})
    for name, (kind, rep, kv, alpha, inner, outer) in CASES.items():
        t0 = time.time()
        atoms = build(kind) * rep
        if kind == "sto":
            atoms.center(vacuum=2.0, axis=2)
        potential = abtem.Potential(atoms, sampling=0.04, slice_thickness=1.0, parametrization="lobato",
                                    projection="infinite")
        probe = abtem.Probe(energy=kv * 1e3, semiangle_cutoff=alpha, defocus=0.0)
        scan = abtem.GridScan(start=(0, 0), end=potential.extent, sampling=0.1)
        det = abtem.AnnularDetector(inner=inner, outer=outer)
        meas = probe.scan(potential, scan=scan, detectors=det).compute()
        image = np.asarray(meas.array, dtype=np.float64).T  # abTEM is (x, y); we store (row=y, col=x)
        np.savez_compressed(
            HERE / f"abtem_{name}.npz", image=image, px_size_A=0.1, kv=kv, alpha_mrad=alpha,
            detector_mrad=(inner, outer), positions=atoms.positions, numbers=atoms.numbers,
            cell=np.asarray(atoms.cell), abtem_version=abtem.__version__,
        )
        print(f"{name}: {image.shape} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
