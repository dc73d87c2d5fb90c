"""The out-of-domain note (atomlens.analysis.domain): each check fires on a tiny synthetic case
made to trip it and stays quiet on a clean one; analyse_image carries the notes and figures;
the Analysis dock shows the note apart with a Retrain button that reaches Model > Retrain…."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from atomlens.analysis.atoms import AtomList
from atomlens.analysis.domain import DEFAULT_LIMITS, OOD_PREFIX, domain_check, is_ood_note, lattice_peaks
from atomlens.analysis.pipeline import analyse_image

PX_A = 0.2  # Å/px
PERIOD_A = 2.4  # a hexagonal lattice of this plane spacing


def hex_lattice(n=128, period_A=PERIOD_A, px_A=PX_A, noise=0.05, seed=0):
    """(image, atom positions px): Gaussian columns on a hexagonal lattice whose first ring of
    reflections is at `period_A`, with a little noise."""
    a_px = 2.0 * period_A / np.sqrt(3.0) / px_A  # lattice constant
    v1, v2 = np.array([a_px, 0.0]), np.array([a_px / 2, a_px * np.sqrt(3) / 2])
    k = np.arange(-2 * n // int(a_px) - 2, 2 * n // int(a_px) + 2)
    i, j = np.meshgrid(k, k)
    xy = i.reshape(-1, 1) * v1 + j.reshape(-1, 1) * v2 + 3.3
    xy = xy[(xy[:, 0] > -3) & (xy[:, 0] < n + 3) & (xy[:, 1] > -3) & (xy[:, 1] < n + 3)]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.zeros((n, n))
    s2 = 2 * (0.35 / px_A) ** 2
    for x, y in xy:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / s2)
    img += np.random.default_rng(seed).normal(0, noise, img.shape)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < n) & (xy[:, 1] >= 0) & (xy[:, 1] < n)
    return img.astype(np.float32), xy[inside]


def contrast(img):
    lo, hi = np.percentile(img, [1, 99])
    return float(hi - lo)


def confident_prob(shape, xy, r_px=2.0):
    """(4, H, W) maps: class 1 (probability 0.97) in discs at `xy`, background elsewhere."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    fg = np.zeros(shape, bool)
    for x, y in xy:
        fg |= (xx - x) ** 2 + (yy - y) ** 2 <= r_px ** 2
    p = np.full((4,) + shape, 0.01, np.float32)
    p[1][fg] = 0.97
    p[0][~fg] = 0.97
    return p


def test_clean_lattice_with_its_atoms_is_quiet():
    img, xy = hex_lattice()
    notes, fig = domain_check(img, PX_A, confident_prob(img.shape, xy), xy)
    assert notes == []
    assert fig["period_A"] == pytest.approx(PERIOD_A, rel=0.08)
    assert fig["peak_ratio"] > DEFAULT_LIMITS["peak_ratio"]
    assert fig["found_fraction"] > 0.5
    assert fig["background_ratio"] < 0.5 and fig["bright_fraction"] == 0.0 and fig["clipped_fraction"] < 0.001
    json.dumps(fig)  # JSON-friendly as it goes into the result's JSON


def test_lattice_but_few_atoms_fires():
    img, xy = hex_lattice()
    notes, fig = domain_check(img, PX_A, confident_prob(img.shape, xy[:5]), xy[:5])
    lattice = [n for n in notes if "Fourier transform" in n]
    assert len(lattice) == 1 and lattice[0].startswith(OOD_PREFIX)
    assert fig["atoms_found"] == 5 and fig["found_fraction"] < DEFAULT_LIMITS["found_fraction"]
    # the atoms expected are of the order of those really there (a conservative lower bound)
    assert 0.3 * len(xy) < fig["atoms_expected"] <= 1.1 * len(xy)


def test_noise_shows_no_lattice():
    img = np.random.default_rng(1).normal(0, 1, (128, 128)).astype(np.float32)
    notes, fig = domain_check(img, PX_A, None, np.zeros((0, 2)))
    assert fig["period_A"] is None and fig["peak_ratio"] < DEFAULT_LIMITS["peak_ratio"]
    assert fig["found_fraction"] is None and notes == []


def test_lattice_outside_the_period_range_is_not_a_lattice():
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    k = 2 * np.pi / 12.0  # three plane waves (no harmonics) of period 12 px, 120 degrees apart
    img = sum(np.cos(k * (np.cos(t) * xx + np.sin(t) * yy)) for t in (0.3, 0.3 + 2.094, 0.3 + 4.189))
    img = (img + np.random.default_rng(3).normal(0, 0.3, img.shape)).astype(np.float32)
    assert lattice_peaks(img, 0.2)["period_A"] == pytest.approx(2.4, rel=0.05)
    assert lattice_peaks(img, 1.0)["period_A"] is None  # read at 1 Å/px: 12 Å, outside 1-6 Å


@pytest.mark.parametrize("amplitude, fires", [(0.2, False), (10.0, True)])
def test_ramp(amplitude, fires):
    img, xy = hex_lattice()
    ramp = np.linspace(0, 1, img.shape[1])[None, :] * np.ones((img.shape[0], 1))
    pert = img + amplitude * contrast(img) * ramp.astype(np.float32)
    notes, fig = domain_check(pert, PX_A, confident_prob(img.shape, xy), xy)
    bg = [n for n in notes if "smooth background" in n]
    assert bool(bg) == fires, (notes, fig)
    if fires:
        assert fig["background_ratio"] > DEFAULT_LIMITS["background_ratio"]


def test_bright_patch_fires():
    img, xy = hex_lattice()
    yy, xx = np.mgrid[0:128, 0:128]
    r = np.sqrt(4 * 0.15 * 128 * 128 / np.pi)
    patch = 1.0 / (1.0 + np.exp((np.hypot(yy, xx) - r) / (0.1 * r)))  # 15 % of the field, in a corner
    notes, fig = domain_check(img + 3.0 * contrast(img) * patch.astype(np.float32), PX_A,
                              confident_prob(img.shape, xy), xy)
    assert any("bright region" in n for n in notes), (notes, fig)
    assert 0.08 < fig["bright_fraction"] < 0.3


def test_clipped_pixels_fire():
    img, xy = hex_lattice()
    clipped = np.minimum(img, np.percentile(img, 80))  # a fifth of the field saturated
    notes, fig = domain_check(clipped, PX_A, confident_prob(img.shape, xy), xy)
    assert any("clipped" in n for n in notes) and fig["clipped_fraction"] == pytest.approx(0.2, abs=0.03)


def test_unsure_maps_fire_and_atom_rims_do_not():
    img, xy = hex_lattice()
    p = confident_prob(img.shape, xy)
    mask = np.zeros(img.shape, bool)
    mask[:, :80] = True  # 60 % of the field hesitates, no atoms found there
    p[1][mask], p[0][mask] = 0.5, 0.48
    keep = xy[xy[:, 0] >= 80]
    notes, fig = domain_check(img, PX_A, p, keep)
    assert any("unsure" in n for n in notes) and fig["unsure_fraction"] > 0.5
    # soft rims around every atom found: unsure pixels, but next to atoms
    soft = confident_prob(img.shape, xy, r_px=3.0)
    rim = confident_prob(img.shape, xy, r_px=2.0)
    ring = (soft[1] > 0.5) & (rim[1] < 0.5)
    soft[1][ring], soft[0][ring] = 0.5, 0.48
    notes, fig = domain_check(img, PX_A, soft, xy)
    assert not any("unsure" in n for n in notes) and fig["unsure_fraction"] < 0.05
    # maps not kept (an image processed in strips): that check is skipped
    notes, fig = domain_check(img, PX_A, None, xy)
    assert fig["unsure_fraction"] is None


def test_limits_from_a_card_override_the_defaults():
    img, xy = hex_lattice()
    pert = img + 10.0 * contrast(img) * np.linspace(0, 1, 128, dtype=np.float32)[None, :]
    assert any("smooth background" in n for n in domain_check(pert, PX_A, None, xy)[0])
    quiet, _ = domain_check(pert, PX_A, None, xy, limits={"background_ratio": 1e9, "bright_fraction": 1.0,
                                                          "from_a_newer_card": 1})
    assert not any("smooth background" in n or "bright" in n for n in quiet)


def test_bad_input():
    with pytest.raises(ValueError, match="2D"):
        domain_check(np.zeros((2, 8, 8)), PX_A)
    with pytest.raises(ValueError, match="pixel size"):
        domain_check(np.ones((8, 8)), 0.0)
    assert domain_check(np.ones((32, 32), np.float32), PX_A) == ([], {})  # flat: reported elsewhere


def test_fast_on_a_large_image():
    rng = np.random.default_rng(2)
    img = rng.normal(0, 1, (1024, 1024)).astype(np.float32)
    prob = rng.random((4, 1024, 1024)).astype(np.float32)
    domain_check(img, 0.1, prob, np.zeros((0, 2)))  # warm-up (FFT plans)
    t0 = time.perf_counter()
    domain_check(img, 0.1, prob, np.zeros((0, 2)))
    assert time.perf_counter() - t0 < 0.5  # about 25 ms alone; the machine is shared


class _FakePredictor:
    """Duck-typed Predictor: finds the atoms given, with confident maps around them."""

    def __init__(self, xy):
        self.xy = xy
        self.card = {"name": "fake", "mode": "HAADF"}

    def detect(self, img, px_size_nm, **_kw):
        prob = confident_prob(img.shape, self.xy)
        atoms = AtomList(self.xy[:, 0], self.xy[:, 1], np.ones(len(self.xy), int), np.ones(len(self.xy)))
        return atoms, prob, {"px_size_A": PX_A, "notes": [], "model": "fake"}


def test_analyse_image_carries_the_notes_and_figures():
    img, xy = hex_lattice()
    res = analyse_image(img, _FakePredictor(xy[:4]), px_size_nm=PX_A / 10)
    ood = [n for n in res.info["notes"] if is_ood_note(n)]
    assert ood and "Fourier transform" in ood[0]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["domain"]["atoms_found"] == 4 and d["domain"]["period_A"] == pytest.approx(PERIOD_A, rel=0.08)
    assert any(is_ood_note(n) for n in d["notes"])
    res = analyse_image(img, _FakePredictor(xy), px_size_nm=PX_A / 10)
    assert not any(is_ood_note(n) for n in res.info["notes"]) and res.to_dict()["domain"]["found_fraction"] > 0.5
    # a re-derivation at another threshold checks "few atoms found" again with the atoms it keeps
    res.rederive(0.99, image=img)  # above the maps' 0.97: no atom is left
    assert len(res.atoms) == 0 and any("Fourier transform" in n for n in res.info["notes"] if is_ood_note(n))
    res.rederive(0.5, image=img)
    assert len(res.atoms) > 0 and not any(is_ood_note(n) for n in res.info["notes"])


# ================================================================= the Analysis dock
def test_dock_shows_the_note_apart_with_a_retrain_button(qtbot):
    pytest.importorskip("pytestqt")
    from PyQt5 import QtWidgets

    from atomlens.gui.analysis_dock import AnalysisDock

    win = QtWidgets.QMainWindow()
    qtbot.addWidget(win)
    dock = AnalysisDock(win)
    win.addDockWidget(1, dock)
    triggered = []
    win.act_retrain = QtWidgets.QAction("&Retrain…", win)  # as the main window's Model > Retrain…
    win.act_retrain.triggered.connect(lambda: triggered.append(1))
    win.show()
    qtbot.waitExposed(win)
    ood = f"{OOD_PREFIX} the smooth background varies by 5.1x the local contrast"
    dock.set_notes(["edge margin 5 px: 3 columns near the image edges left out", ood])
    qtbot.waitUntil(lambda: dock.retrain_button.isVisible(), timeout=2000)
    assert dock.out_of_domain() and dock.ood_notes.isVisible()
    assert "5.1x the local contrast" in dock.ood_notes.text() and "edge margin" not in dock.ood_notes.text()
    assert "edge margin" in dock.notes.text() and "local contrast" not in dock.notes.text()
    # nothing connected to retrainRequested: the window's Retrain action is triggered
    qtbot.mouseClick(dock.retrain_button, 1)
    assert triggered == [1]
    # connected: the signal instead
    with qtbot.waitSignal(dock.retrainRequested, timeout=1000):
        dock.retrainRequested.connect(lambda: None)
        qtbot.mouseClick(dock.retrain_button, 1)
    assert triggered == [1]
    # an image the model knows: neither the note nor the button
    dock.set_notes(["edge margin 5 px: 3 columns near the image edges left out"])
    assert not dock.out_of_domain() and not dock.retrain_button.isVisible() and dock.notes.isVisible()


def test_dock_retrain_button_opens_the_main_windows_retrain_dialog(qtbot, tmp_path, user_models):
    pytest.importorskip("pytestqt")
    from _gui_helpers import make_window

    win = make_window(qtbot, tmp_path)
    dock = win.analysis_dock
    assert win._retrain_dialog is None
    dock.set_notes([f"{OOD_PREFIX} the image shows a lattice of period 2.13 Å in its Fourier transform, which "
                    "implies at least ~500 columns here, but only 3 were found (1%)"])
    qtbot.waitUntil(lambda: dock.retrain_button.isVisible(), timeout=2000)
    qtbot.mouseClick(dock.retrain_button, 1)
    qtbot.waitUntil(lambda: win._retrain_dialog is not None and win._retrain_dialog.isVisible(), timeout=5000)
    win._retrain_dialog.close()
