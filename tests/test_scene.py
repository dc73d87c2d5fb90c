"""Single atoms on a support (atomlens.analysis.scene): where the columns form no lattice, a
faint dense carpet of support maxima is left out and dopants and vacancies, which need a host
lattice, are not called."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from atomlens.analysis.atoms import AtomList
from atomlens.analysis.lattice import median_nn_distance
from atomlens.analysis.metrics import detection_scores
from atomlens.analysis.scene import SCENE_NOTE, is_lattice, isolated_atoms
from atomlens.sim import simulate
from atomlens.sim.structures import amorphous_support

PX_A = 0.2
SHAPE = (256, 256)
ROOT = Path(__file__).resolve().parents[1]


def _render(xy_px, amp, shape=SHAPE, sigma_A=0.45, seed=0):
    """Gaussian columns of amplitudes `amp` at `xy_px`, plus a little noise."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    img = np.zeros(shape, np.float32)
    s = sigma_A / PX_A
    for (x, y), a in zip(xy_px, amp):
        r0, r1 = max(0, int(y - 4 * s)), min(shape[0], int(y + 4 * s) + 2)
        c0, c1 = max(0, int(x - 4 * s)), min(shape[1], int(x + 4 * s) + 2)
        img[r0:r1, c0:c1] += a * np.exp(-((xx[r0:r1, c0:c1] - x) ** 2 + (yy[r0:r1, c0:c1] - y) ** 2) / (2 * s * s))
    return img + np.random.default_rng(seed).normal(0, 0.005, shape).astype(np.float32)


def _scene(n_heavy=5, seed=1):
    """Heavy atoms (amplitude ~1) on a carbon film (amplitude ~0.06, maxima 1.5 Å apart)."""
    rng = np.random.default_rng(seed)
    film = amorphous_support(SHAPE[1] * PX_A, SHAPE[0] * PX_A, rng, density_per_A2=0.35, min_dist_A=1.4).xy / PX_A
    film = film[((film > 3) & (film < SHAPE[0] - 4)).all(1)]
    heavy = rng.uniform(20, SHAPE[0] - 20, (n_heavy, 2))
    film = film[np.min(np.linalg.norm(film[:, None] - heavy[None], axis=2), axis=1) > 8]  # not under them
    img = _render(np.vstack([film, heavy]), np.r_[rng.uniform(0.04, 0.08, len(film)), rng.uniform(0.9, 1.1, n_heavy)])
    return img, film, heavy


def pt_on_carbon():
    """Test image 3,000,000,039 of stem-haadf's single_atoms family as `bench/accuracy.py` makes
    it (256x256, 0.2 Å/px, 1e5 e/Å²): 8 Pt atoms in ADF over a visible carbon film."""
    recipe = json.loads((ROOT / "resources" / "recipes" / "stem-haadf.json").read_text())
    sim = {k: v for k, v in recipe["sim"].items() if k != "variants"}
    variant = next(v for v in recipe["sim"]["variants"] if v["structure"] == "single_atoms")
    cfg = {**sim, **{k: v for k, v in variant.items() if k != "weight"}, "shape": list(SHAPE), "px_size_A": PX_A,
           "noise": {**sim["noise"], "dose_e_per_A2": 1e5}}
    return simulate(cfg, 3_000_000_039)


def _atoms(xy, cls):
    return AtomList(xy[:, 0], xy[:, 1], cls, np.full(len(xy), 0.8))


def test_a_faint_film_called_atoms_is_left_out_and_heavy_dopants_become_atoms():
    img, film, heavy = _scene()
    carpet = film[::3]  # the network calls a third of the film maxima "atoms"
    gaps = film[1:6:4]  # and two of them vacancies
    xy = np.vstack([carpet, gaps, heavy])
    cls = np.r_[np.ones(len(carpet), int), [3, 3], np.full(len(heavy), 2)]
    assert not is_lattice(xy)
    out, note = isolated_atoms(_atoms(xy, cls), img, PX_A)
    np.testing.assert_allclose(out.xy, heavy)  # only the heavy atoms, in their order
    assert (out.cls == 1).all() and (out.score == 0.8).all()
    assert note.startswith(SCENE_NOTE)
    assert f"{len(carpet) + 2} faint columns of the support left out" in note  # the two "vacancies" are faint too
    assert f"{len(heavy)} dopants called atoms" in note


def test_a_lattice_is_left_alone():
    """Graphene with a bright dopant and a vacancy: the same contrast as Pt on carbon, but the
    columns form a lattice, so the classes stand."""
    r = simulate({"structure": "graphene", "shape": list(SHAPE), "px_size_A": PX_A, "mode": "HAADF",
                  "defects": {"dopant": {"element": "Pt", "n": 2}, "vacancy": {"rate": 0.01}},
                  "noise": {"dose_e_per_A2": 1e5}}, 5)
    xy, cls = r.points_px()
    assert (cls == 2).sum() == 2 and (cls == 3).any() and is_lattice(xy)
    atoms = _atoms(xy, cls)
    out, note = isolated_atoms(atoms, r.image, PX_A)
    assert out is atoms and note is None


def test_sparse_faint_columns_are_kept():
    """Single atoms far apart beside a brighter group (a thick cluster, say) are not a film,
    however large the jump in intensity: they stay; only the dopant class goes."""
    rng = np.random.default_rng(3)
    singles = rng.uniform(15, SHAPE[0] - 15, (14, 2))
    singles = singles[np.min(np.linalg.norm(singles[:, None] - singles[None] + 1e3 * np.eye(len(singles))[..., None],
                                            axis=2), axis=1) > 25]
    bright = np.array([[128.0, 128.0], [128.0 + 12, 128.0], [128.0, 128.0 + 12]])
    bright = bright[np.min(np.linalg.norm(bright[:, None] - singles[None], axis=2), axis=1) > 15]
    img = _render(np.vstack([singles, bright]), np.r_[np.full(len(singles), 0.1), np.full(len(bright), 1.0)])
    xy = np.vstack([singles, bright])
    cls = np.r_[np.ones(len(singles), int), np.full(len(bright), 2)]
    assert len(singles) >= 10
    out, note = isolated_atoms(_atoms(xy, cls), img, PX_A)
    np.testing.assert_allclose(out.xy, xy)
    assert (out.cls == 1).all() and "left out" not in note and f"{len(bright)} dopants called atoms" in note


def test_few_columns_are_no_lattice():
    img, _film, heavy = _scene(n_heavy=4, seed=2)
    out, note = isolated_atoms(_atoms(heavy, [2, 2, 2, 1]), img, PX_A)
    assert (out.cls == 1).all() and len(out) == 4 and "3 dopants called atoms" in note
    # nothing to change, no note; no calibration, no change
    assert isolated_atoms(out, img, PX_A) == (out, None)
    assert isolated_atoms(_atoms(heavy, [2, 2, 2, 1]), img, None)[1] is None
    # a model without those classes: the film is still left out
    two = AtomList(heavy[:, 0], heavy[:, 1], 1, 0.9, ("background", "atom"))
    assert isolated_atoms(two, img, PX_A) == (two, None)


def test_isolated_atoms_in_a_detection_with_the_bundled_model():
    """An ADF test image with 8 Pt atoms and a visible carbon film (seed 3,000,000,039 of the
    bench's single_atoms family), where the network alone calls 138 film maxima atoms and the
    Pt dopants: the analysis finds the 8 atoms, as atoms; re-deriving keeps it so."""
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.nn.infer import Predictor

    r = pt_on_carbon()
    assert r.meta["mode"] == "ADF"
    txy, tcls = r.points_px()
    pred = Predictor("stem-haadf", "cpu")
    raw, _, _ = pred.detect(r.image, PX_A / 10)
    assert len(raw) > 100 and (raw.cls == 2).any()  # what the rule is for
    res = analyse_image(r.image, pred, px_size_nm=PX_A / 10)
    s = detection_scores(res.atoms.xy, res.atoms.cls, txy, tcls, 0.5 / PX_A)
    assert s["f1"] == 1.0 and (res.atoms.cls == 1).all()
    assert sum(n.startswith(SCENE_NOTE) for n in res.info["notes"]) == 1
    # markers are sized from the atoms kept, not from the film spots left out
    assert res.info["median_nn_px"] == pytest.approx(median_nn_distance(res.atoms.xy))
    with pytest.raises(ValueError, match="single atoms on a support"):
        res.rederive(0.5)
    again = res.rederive(0.5, image=r.image)
    np.testing.assert_allclose(again.xy, res.atoms.xy)
    assert res.info["median_nn_px"] == pytest.approx(median_nn_distance(again.xy))
    assert sum(n.startswith(SCENE_NOTE) for n in res.info["notes"]) == 1  # replaced, not added
