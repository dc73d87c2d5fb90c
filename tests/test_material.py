"""Material hint (atomlens.analysis.material): classes the material rules out are corrected."""

from __future__ import annotations

import numpy as np
import pytest
from atomlens.analysis.atoms import AtomList
from atomlens.analysis.material import (MATERIALS, SUGGEST_NOTE, apply_material_hint, column_levels,
                                        suggest_material)
from atomlens.sim import simulate

PX_A = 0.2


def _tmd(structure, dopant, seed, shape=(192, 192)):
    cfg = {"structure": structure, "shape": list(shape), "px_size_A": PX_A, "mode": "HAADF",
           "defects": {"dopant": {"element": dopant, "rate": 0.08, "sites": "metal"},
                       "partial_vacancy": {"rate": 0.06, "sites": "chalcogen"},
                       "vacancy": {"rate": 0.02, "sites": "chalcogen"}},
           "noise": {"dose_e_per_A2": 1e5}}
    r = simulate(cfg, seed)
    xy, cls = r.points_px()
    inside = (xy >= 0).all(1) & (xy[:, 0] <= shape[1] - 1) & (xy[:, 1] <= shape[0] - 1)
    return r, xy[inside], cls[inside], r.atoms.count[inside], r.atoms.site[inside]


def _atoms(xy, cls):
    return AtomList(xy[:, 0], xy[:, 1], cls, np.full(len(cls), 0.9))


def test_mose2_dim_chalcogen_columns_called_dopants_become_vacancies():
    r, xy, cls, count, _site = _tmd("MoSe2", "W", 11)
    partial = (cls == 3) & (count > 0)
    bright_dopant = cls == 2  # W on Mo sites
    assert partial.sum() >= 5 and bright_dopant.sum() >= 5
    called = cls.copy()
    called[partial] = 2  # what the network gets wrong without the material: "a dopant"
    out, note = apply_material_hint(_atoms(xy, called), r.image, "MoSe2", px_size_A=PX_A)
    assert np.array_equal(out.cls[partial], np.full(partial.sum(), 3))
    assert (out.cls[bright_dopant] == 2).all()  # the W dopants are left alone
    host = cls == 1
    assert (out.cls[host] == 1).mean() > 0.995
    assert f"{partial.sum()}" in note or "corrected" in note
    np.testing.assert_array_equal(out.xy, xy)  # positions and scores unchanged
    assert "MoSe2" in note and "chalcogen sublattice brighter" in note


def test_wse2_visible_metal_columns_called_vacancies_become_dopants_or_atoms():
    r, xy, cls, count, site = _tmd("WSe2", "Mo", 12)
    mo = cls == 2
    interior = ((xy > 15) & (xy < 192 - 16)).all(1)  # with all their neighbours in the image
    w = (cls == 1) & (site == 0) & interior
    assert mo.sum() >= 5
    called = cls.copy()
    called[mo] = 3  # a dimmer Mo column taken for a vacancy
    pick = np.nonzero(w)[0][:5]
    called[pick] = 3  # and a few W columns
    out, note = apply_material_hint(_atoms(xy, called), r.image, "wse2", px_size_A=PX_A)
    assert (out.cls[mo] == 2).mean() > 0.9
    assert (out.cls[pick] == 1).all()
    full = (cls == 3) & (count == 0)
    assert (out.cls[full] == 3).all()  # real (empty) vacancies stay vacancies
    assert "metal sublattice brighter" in note


def test_hint_leaves_another_lattice_alone():
    r = simulate({"structure": "graphene", "shape": [128, 128], "px_size_A": PX_A, "noise": {}}, 3)
    xy, cls = r.points_px()
    cls[:5] = 3
    atoms = _atoms(xy, cls)
    out, note = apply_material_hint(atoms, r.image, "MoS2", px_size_A=PX_A)
    assert out is atoms and "not applied" in note and "Å apart" in note


def test_hint_needs_the_three_classes_and_a_known_material():
    r, xy, cls, *_ = _tmd("MoS2", "W", 13, shape=(96, 96))
    other = AtomList(xy[:, 0], xy[:, 1], np.ones(len(xy), int), 0.9, ("background", "atom"))
    out, note = apply_material_hint(other, r.image, "MoS2")
    assert out is other and "not applied" in note
    with pytest.raises(ValueError, match="unknown material 'graphite'"):
        apply_material_hint(_atoms(xy, cls), r.image, "graphite")
    _few, note = apply_material_hint(_atoms(xy[:4], cls[:4]), r.image, "MoS2")
    assert "too few" in note


def test_materials_know_which_sublattice_is_brighter():
    assert MATERIALS["MoSe2"].chalcogen_brighter and MATERIALS["MoTe2"].chalcogen_brighter
    assert not any(MATERIALS[m].chalcogen_brighter for m in ("MoS2", "WS2", "WSe2"))
    assert MATERIALS["MoS2"].nn_distance_A == pytest.approx(3.16 / np.sqrt(3), rel=1e-3)


def test_column_levels_in_strips_match_the_whole_image():
    r, xy, *_ = _tmd("MoS2", "W", 14, shape=(160, 120))
    nn = 3.16 / np.sqrt(3) / PX_A
    whole = column_levels(r.image, xy, nn)
    strips = column_levels(r.image, xy, nn, strip_rows=40)
    assert np.isfinite(whole).all()
    np.testing.assert_allclose(strips, whole, rtol=1e-4, atol=1e-4 * np.abs(whole).max())


def test_hint_that_does_not_fit_the_contrast_is_refused():
    """A WS2 image said to be MoSe2: the spacing is close (1.82 vs 1.90 Å), but W columns outshine
    the S2 ones far more than any MoSe2 sublattice could."""
    r, xy, cls, *_ = _tmd("WS2", "Mo", 15)
    atoms = _atoms(xy, cls)
    out, note = apply_material_hint(atoms, r.image, "MoSe2", px_size_A=PX_A)
    assert out is atoms and "not applied" in note and "sublattices differ" in note
    _, note = apply_material_hint(atoms, r.image, "WS2", px_size_A=PX_A)
    assert "corrected" in note


def test_pipeline_leaves_an_stm_model_alone():
    """The hint reads Z-contrast column levels: with an STM model or an ABF image it is refused."""
    from atomlens.analysis.pipeline import _material_hint

    r, xy, cls, *_ = _tmd("MoSe2", "W", 16, shape=(96, 96))
    atoms = _atoms(xy, cls)
    out, note = _material_hint(atoms, r.image, "MoSe2", {"model_mode": "STM", "px_size_A": PX_A})
    assert out is atoms and "not applied" in note and "STM" in note
    _, note = _material_hint(atoms, -r.image, "MoSe2", {"model_mode": "HAADF", "inverted": True, "mode": "ABF"})
    assert "not applied" in note and "ABF" in note
    _, note = _material_hint(atoms, r.image, "MoSe2", {"model_mode": "HAADF", "px_size_A": PX_A})
    assert note.startswith("material hint MoSe2:")


@pytest.mark.parametrize("structure, dopant, seed, expected", [("WS2", "Mo", 21, "WS2"), ("MoSe2", "W", 22, "MoSe2")])
def test_suggestion_names_a_tmd_that_fits(structure, dopant, seed, expected):
    r, xy, cls, *_ = _tmd(structure, dopant, seed)
    note = suggest_material(_atoms(xy, cls), r.image, PX_A)
    assert note is not None and note.startswith(SUGGEST_NOTE) and "2H TMD" in note
    fits = note.split("as in ")[1].split(")")[0].split(", ")
    assert expected in fits and set(fits) <= set(MATERIALS)
    assert "--material" in note
    # an estimated scale says nothing about the spacing: no suggestion; nor for a model
    # without the three classes
    assert suggest_material(_atoms(xy, cls), r.image, None) is None
    two = AtomList(xy[:, 0], xy[:, 1], np.ones(len(xy), int), np.full(len(xy), 0.9),
                   class_names=("background", "atom"))
    assert suggest_material(two, r.image, PX_A) is None


@pytest.mark.parametrize("structure", ["graphene", "hbn", "SrTiO3", "Si110"])
def test_no_suggestion_for_other_lattices(structure):
    """h-BN has two sublattices too, but 1.45 Å apart; graphene and Si[110] have one kind of
    column; a perovskite's columns are not a honeycomb."""
    cfg = {"structure": structure, "shape": [192, 192], "px_size_A": PX_A, "mode": "HAADF",
           "noise": {"dose_e_per_A2": 1e5}}
    r = simulate(cfg, 23)
    xy, cls = r.points_px()
    inside = (xy >= 0).all(1) & (xy <= 191).all(1)
    assert suggest_material(_atoms(xy[inside], cls[inside]), r.image, PX_A) is None


def test_suggestion_reads_only_the_centre_of_a_large_image(monkeypatch):
    import atomlens.analysis.material as material

    r, xy, cls, *_ = _tmd("WS2", "Mo", 24, shape=(640, 576))
    seen = []
    real = material.column_levels

    def spy(image, xy_, nn_px, **kw):
        seen.append((np.shape(image), xy_.min(0), xy_.max(0)))
        return real(image, xy_, nn_px, **kw)

    monkeypatch.setattr(material, "column_levels", spy)
    assert suggest_material(_atoms(xy, cls), r.image, PX_A).startswith(SUGGEST_NOTE)
    (shape, lo, hi), = seen
    assert shape == (512, 512) and (lo >= 0).all() and (hi <= 511).all()
