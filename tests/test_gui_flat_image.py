"""An image the network cannot be run on (flat, or too small to estimate its lattice period when
uncalibrated) gives a clear message in the app, which stays usable."""

from __future__ import annotations

import numpy as np
import pytest

from _gui_helpers import RUN_MS, open_and_wait


@pytest.mark.parametrize("shape", [(64, 64), (8, 8)])
def test_a_flat_or_tiny_uncalibrated_image_is_told_not_a_crash(qtbot, window, boxes, tmp_path, shape):
    f = tmp_path / "flat.npy"
    img = np.full(shape, 3.0, np.float32)
    if shape[0] < 20:
        img += np.random.default_rng(0).random(shape, np.float32)  # tiny, not flat
    np.save(f, img)
    win = window
    open_and_wait(qtbot, win, f, px_size_nm=None)
    with qtbot.waitSignal(win.analysis.analysisFailed, timeout=RUN_MS) as b:
        win.analysis.run_current()
    title, text = boxes[-1]
    assert title == "Analysis failed" and "Unexpected error" not in text and "Traceback" not in text
    assert ("flat" if shape[0] >= 20 else "too small") in text, text
    assert "pixel size" in text, text
    assert win.isVisible() and win.analysis_dock.run_button.isEnabled() and b.args
    win.set_pixel_size_nm(0.01)  # with a pixel size the flat image runs: no atoms, no error
    if shape[0] >= 20:
        with qtbot.waitSignal(win.resultChanged, timeout=RUN_MS, check_params_cb=lambda r: r is not None) as r:
            win.analysis.run_current()
        assert len(r.args[0].atoms) == 0
