"""Model > CPU arithmetic: bf16 autocast or fp32 on the CPU, chosen by the user."""

from __future__ import annotations

import pytest

from _gui_helpers import simulate_graphene


@pytest.fixture(scope="module")
def sim():
    return simulate_graphene((192, 192))


def test_cpu_arithmetic_setting_reaches_the_predictor_and_is_kept(qtbot, tmp_path, user_models, boxes, sim_file,
                                                                   monkeypatch):
    """Model > CPU arithmetic: the choice is stored, the next run's predictor uses it (fp32:
    no bf16), the dock says which arithmetic ran, and a new window starts with it checked."""
    from _gui_helpers import make_window, open_and_run

    monkeypatch.delenv("ATOMLENS_CPU_BF16", raising=False)
    win = make_window(qtbot, tmp_path)
    acts = {a.data(): a for a in win.cpu_arithmetic_group.actions()}
    assert set(acts) == {"auto", "on", "off"} and acts["auto"].isChecked()
    win.analysis_dock.device_combo.setCurrentIndex(win.analysis_dock.device_combo.findData("cpu"))
    for key, bf16 in (("on", True), ("off", False)):
        acts[key].trigger()
        assert win.settings.value("analysis/cpu_bf16") == key
        res = open_and_run(qtbot, win, sim_file)
        assert res.info["bf16"] is bf16 and res.to_dict()["bf16"] is bf16
        assert win.analysis_dock.device_used.text() == ("used: cpu (bf16)" if bf16 else "used: cpu")
    win.close()
    win2 = make_window(qtbot, tmp_path)
    assert [a.data() for a in win2.cpu_arithmetic_group.actions() if a.isChecked()] == ["off"]
    assert win2.analysis.runner.worker.cpu_bf16 == "off"
