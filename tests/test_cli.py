"""The headless `atomlens info` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from atomlens.cli import EXIT_BAD_INPUT, EXIT_OK, main


def test_info_prints_calibration(real_data, capsys):
    assert main(["info", str(real_data / "Acquisition_18.emd")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "1024 x 1024 px" in out and "12.25 pm" in out and "n_m" in out


def test_info_json_and_channel(real_data, capsys):
    assert main(["info", "--json", "--channel", "Z backward", str(real_data / "example_TOPO.sxm")]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["channel"] == "Z backward" and info["mode"] == "STM"
    assert info["shape"] == [256, 256]
    assert abs(info["px_size_nm"] - 5 / 256) < 1e-9


def test_info_bad_file_exit_code_and_message(tmp_path, capsys):
    bad = tmp_path / "broken.dm3"
    bad.write_bytes(b"\x00" * 100)
    good = tmp_path / "good.npy"
    np.save(good, np.ones((16, 16)))
    assert main(["info", str(bad), str(good)]) == EXIT_BAD_INPUT
    cap = capsys.readouterr()
    assert "error: broken.dm3" in cap.err and "Traceback" not in cap.err
    assert "16 x 16 px" in cap.out  # the good file is still reported


def test_detect_help_loads_neither_scipy_nor_torch():
    # --material lists the materials; that list once imported scipy and the simulator (0.9 s)
    code = ("import sys; from atomlens.cli import main\n"
            "try:\n    main(['detect', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'scipy', 'atomlens.sim.simulate') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--material" in r.stdout and "MoSe2" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_console_script_runs_without_qt_or_torch(real_data):
    code = (
        "import sys; from atomlens.cli import main; rc = main(['info', sys.argv[1]]); "
        "assert 'torch' not in sys.modules and 'PyQt5' not in sys.modules; sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(real_data / "G-Si-2nm.hdf5")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HAADF" in r.stdout and "7.812 pm" in r.stdout
