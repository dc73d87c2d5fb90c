"""Peak memory of ``atomlens detect`` on large images of several shapes, calibrated and not.

Each case runs ``atomlens detect`` in a fresh process on a .npy image written to a temporary
folder (deleted afterwards) and reads that process's own peak RSS (``os.wait4``).  The images
tile a simulated 512 x 512 graphene micrograph at 0.1 Å/px with a few Si dopants, so the
expected atom count is known: that of one tile times the number of tiles (printed as a ratio,
found / expected, which should be close to 1).  "Uncalibrated" leaves the pixel size out, so
the lattice period is estimated first (:func:`atomlens.analysis.lattice.estimate_period_px`).

Printed per case: pixels, peak RSS (MB), MB per megapixel, the peak above the cost of a small
image (the interpreter, torch and the model: measured first on a 512 x 512 image), seconds,
and found / expected atoms.  Targets (issue 23): at most 2 GB up to 8192² pixels whatever the
shape; beyond, memory that grows no faster than the pixel count.

    python bench/memory.py [--cases 64x16000,1024x65536,8192x8192,20000x20000]
                           [--modes calibrated,uncalibrated] [--device cpu] [--tmp /tmp]

Cases run in the order given (small ones first by default); 20000 x 20000 takes several
minutes on two CPU cores.

Measured (2 shared CPU cores, stem-haadf, two views; a 512 x 512 image peaks at 360-420 MB):

    case          mode          Mpx  peak MB  MB/Mpx  s     found/expected  (before: issue 23)
    64x16000      calibrated      1      468   457    6     0.967
    64x16000      uncalibrated    1      491   479   11     1.067           out of memory
    1024x65536    calibrated     67     1285    19.1 111     1.005           5.7 GB
    1024x65536    uncalibrated   67     1294    19.3 113     0.990
    8192x8192     calibrated     67     1293    19.3 119     1.008           1.46 GB
    8192x8192     uncalibrated   67     1361    20.3  95     0.996           8.9 GB, 1,024 atoms
    20000x20000   calibrated    400     5180    12.9 636     1.010

(64 rows: most columns are cut by the edge, hence found/expected off 1.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CASES = "64x16000,1024x65536,8192x8192,20000x20000"
TILE = 512
PX_NM = 0.01


def _tile_image():
    from atomlens.sim import simulate

    cfg = {"structure": "graphene", "shape": [TILE, TILE], "px_size_A": PX_NM * 10,
           "defects": {"dopant": {"element": "Si", "n": 2}}, "noise": {"dose_e_per_A2": 1e5}}
    return simulate(cfg, 0).image.astype(np.float32)


def _write_tiled(path: Path, tile: np.ndarray, shape) -> None:
    """A (H, W) float32 .npy that repeats `tile`, written a block of rows at a time."""
    h, w = shape
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(h, w))
    reps = -(-w // TILE)
    row = np.tile(tile, (1, reps))[:, :w]
    for y0 in range(0, h, TILE):
        n = min(TILE, h - y0)
        out[y0:y0 + n] = row[:n]
    out.flush()
    del out


def _run_detect(path: Path, out_dir: Path, px_nm, device: str) -> tuple[int, float, float, int]:
    """(exit code, peak RSS in MB, seconds, atoms written) of one ``atomlens detect`` process."""
    cmd = [sys.executable, "-m", "atomlens", "detect", str(path), "--out", str(out_dir), "--device", device]
    if px_nm is not None:
        cmd += ["--px-size-nm", str(px_nm)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all so far)
    _pid, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(f"  detect failed ({rc}): {err.strip()[-400:]}", file=sys.stderr)
    csv = out_dir / f"{path.stem}.atoms.csv"
    n = -1
    if csv.exists():
        with open(csv) as fh:
            n = sum(1 for _ in fh) - 1
    return rc, usage.ru_maxrss / 1024, dt, n  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated HxW shapes, run in this order")
    ap.add_argument("--modes", default="calibrated,uncalibrated")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the images are written (then deleted)")
    args = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in c.lower().split("x")) for c in args.cases.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in ("calibrated", "uncalibrated")]
    if bad or any(len(s) != 2 or min(s) < 16 for s in shapes):
        ap.error("cases are HxW with sides >= 16; modes are calibrated and/or uncalibrated")

    tile = _tile_image()
    work = Path(tempfile.mkdtemp(prefix="atomlens_mem_", dir=args.tmp))
    try:
        base_img = work / f"tile_{TILE}x{TILE}.npy"
        np.save(base_img, tile)
        base = {}
        for mode in modes:
            rc, mb, dt, n = _run_detect(base_img, work / "out", PX_NM if mode == "calibrated" else None, args.device)
            base[mode] = (mb, n)
            print(f"baseline {TILE}x{TILE} {mode}: peak {mb:.0f} MB, {n} atoms, {dt:.1f} s", flush=True)
        print(f"{'case':>12} {'mode':>12} {'Mpx':>7} {'peak MB':>8} {'MB/Mpx':>7} {'above base':>10} "
              f"{'(MB/Mpx)':>8} {'s':>6} {'found/expected':>14}")
        for h, w in shapes:
            path = work / f"lattice_{h}x{w}.npy"
            _write_tiled(path, tile, (h, w))
            mpx = h * w / 1e6
            for mode in modes:
                rc, mb, dt, n = _run_detect(path, work / "out", PX_NM if mode == "calibrated" else None, args.device)
                base_mb, base_n = base[mode]
                expected = base_n * h * w / TILE**2
                ratio = f"{n / expected:.3f}" if rc == 0 and expected > 0 else "failed"
                print(f"{h:>5}x{w:<6} {mode:>12} {mpx:7.1f} {mb:8.0f} {mb / mpx:7.1f} {mb - base_mb:10.0f} "
                      f"{(mb - base_mb) / mpx:8.1f} {dt:6.1f} {ratio:>14}", flush=True)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
