"""Load time of every real file through atomlens.io.load, against plain hs.load (baseline).

Prints, per file, the median of several warm runs for both, and their ratio: the cost of
our checks (calibration, cleaning, float32 conversion) on top of HyperSpy's own reading.

    python bench/load_speed.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up (imports, file cache)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    if not REAL.is_dir():
        print(f"no real data at {REAL}", file=sys.stderr)
        return 1
    import hyperspy.api as hs

    from atomlens.io import load

    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("hyperspy").setLevel(logging.CRITICAL)  # baseline failures are expected
    print(f"{'file':42s} {'atomlens ms':>12s} {'hs.load ms':>11s} {'ratio':>6s}")
    for f in sorted(REAL.iterdir()):
        if f.suffix in (".csv", ".md"):
            continue
        t_ours = median_time(lambda: load(f), args.repeat)
        reader = {"hdf5": "HSPY"}.get(f.suffix[1:])
        try:
            kw = {"reader": reader} if reader else {}
            hs.load(str(f), **kw)
            t_hs = median_time(lambda: hs.load(str(f), **kw), args.repeat)
            base, ratio = f"{t_hs * 1e3:11.1f}", f"{t_ours / t_hs:6.2f}"
        except Exception:  # noqa: BLE001 - files HyperSpy cannot read have no baseline
            base, ratio = f"{'n/a':>11s}", f"{'-':>6s}"
        print(f"{f.name:42s} {t_ours * 1e3:12.1f} {base} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
