"""Atoms in vacuum (a Z-contrast image's regions without contrast) are left out, with a note."""

import numpy as np

from atomlens.analysis.atoms import AtomList
from atomlens.analysis.pipeline import VACUUM_NOTE, _vacuum_atoms


def _half_vacuum(n=160, period=10.0):
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.zeros((n, n))
    cols = []
    for cy in np.arange(period / 2, n, period):
        for cx in np.arange(period / 2, n, period):
            if cx > n / 2:  # the right half holds a lattice, the left is vacuum
                img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
                cols.append((cx, cy))
    img += np.random.default_rng(0).normal(0, 0.01, img.shape)
    return img.astype(np.float32), np.array(cols)


def test_atoms_in_vacuum_go_and_lattice_atoms_stay():
    img, cols = _half_vacuum()
    fake = np.array([[20.0, 30.0], [40.0, 100.0], [10.0, 150.0]])  # noise peaks in the vacuum
    xy = np.vstack([cols, fake])
    atoms = AtomList(xy[:, 0], xy[:, 1], np.ones(len(xy), int), np.ones(len(xy)))
    kept, note = _vacuum_atoms(atoms, img, 0.2)
    assert len(kept) == len(cols) and kept.x.min() > 80
    assert note.startswith(VACUUM_NOTE) and "3 atoms" in note
    # a lattice everywhere: nothing goes, no note
    full = np.tile(img[:, 80:], (1, 2))
    xy2 = np.vstack([cols - [80, 0], cols])
    kept2, note2 = _vacuum_atoms(AtomList(xy2[:, 0], xy2[:, 1], np.ones(len(xy2), int), np.ones(len(xy2))), full, 0.2)
    assert len(kept2) == len(xy2) and note2 is None


def test_the_contrast_map_is_computed_once_per_result(monkeypatch):
    """A re-derivation (threshold slider) reuses the map kept in the result's info."""
    import atomlens.analysis.background as bg

    img, cols = _half_vacuum()
    fake = np.array([[20.0, 30.0]])
    xy = np.vstack([cols, fake])
    atoms = AtomList(xy[:, 0], xy[:, 1], np.ones(len(xy), int), np.ones(len(xy)))
    info = {}
    first, _ = _vacuum_atoms(atoms, img, 0.2, info)
    assert info["_contrast_ratio"].shape == img.shape

    def boom(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(bg, "local_contrast", boom)
    again, note = _vacuum_atoms(atoms, img, 0.2, info)
    assert len(again) == len(first) == len(cols) and "1 atoms" in note
