"""Startup time of the AtomLens window, against a bare PyQt5 window.

Measures, in fresh subprocesses, the time from process start (read from /proc) to the
window being shown with the first image painted (``run_gui(sample="sto-haadf",
exit_after_show=True)``), median of N runs.  The baseline is a bare ``python -c`` that
creates a QApplication and shows an empty QMainWindow, timed the same way.

Runs on the offscreen platform, or on xcb when DISPLAY is set.

    python bench/startup.py [--runs 5] [--sample sto-haadf]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The same clock as atomlens.gui.app.seconds_since_start, inlined so the baseline pays no
# AtomLens import.
CLOCK = '''
import os, time
def _since_start():
    with open("/proc/self/stat") as f:
        s = f.read()
    ticks = int(s[s.rindex(")") + 2:].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - ticks / os.sysconf("SC_CLK_TCK")
'''

BASELINE = CLOCK + '''
import sys
from PyQt5 import QtCore, QtWidgets
app = QtWidgets.QApplication(sys.argv[:1])
win = QtWidgets.QMainWindow()
win.resize(1300, 850)
def done():
    print(f"window shown after {_since_start():.3f} s", flush=True)
    app.quit()
win.show()
QtCore.QTimer.singleShot(0, done)
app.exec_()
'''

ATOMLENS = '''
import sys
from atomlens.gui.app import run_gui
sys.exit(run_gui([], sample={sample!r}, exit_after_show=True))
'''

PATTERN = re.compile(r"window shown after ([0-9.]+) s")


def measure(code: str, env: dict) -> float:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    m = PATTERN.search(proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"run failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return float(m.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sample", default="sto-haadf")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "xcb" if env.get("DISPLAY") else "offscreen")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "app"), env.get("PYTHONPATH")]))
    if "ATOMLENS_SETTINGS_DIR" not in env:  # do not touch the user's settings
        import tempfile

        env["ATOMLENS_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="atomlens-bench-")

    print(f"platform {env['QT_QPA_PLATFORM']}, {args.runs} runs each, sample {args.sample}")
    measure(BASELINE, env)  # warm the file cache once
    measure(ATOMLENS.format(sample=args.sample), env)
    base, app = [], []
    for i in range(args.runs):  # interleave so that drift hits both alike
        base.append(measure(BASELINE, env))
        app.append(measure(ATOMLENS.format(sample=args.sample), env))
        print(f"  run {i + 1}: baseline {base[-1]:.3f} s, AtomLens {app[-1]:.3f} s", flush=True)
    mb, ma = statistics.median(base), statistics.median(app)
    print(f"baseline (bare QMainWindow): median {mb:.3f} s")
    print(f"AtomLens ({args.sample} shown): median {ma:.3f} s")
    print(f"ratio: {ma / mb:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
