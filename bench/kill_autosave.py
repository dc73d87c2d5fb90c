"""Kill test of the annotation autosave: edit steadily, SIGKILL at random moments, count losses.

A child process runs the real (offscreen) main window on an image whose sidecar holds
`--atoms` atoms, enters Annotate mode and edits as a user does: an edit (add, move or delete an
atom, each to or at a position no other edit uses) every `--interval` seconds, each logged
durably (flush + fsync) after it is made, as are the starts and ends of the autosaves.  The
parent kills it with SIGKILL at a random moment, or (every `--in-save-every`-th kill) at a
random moment inside a save (within 0.9 x the median save time after it started), then checks the sidecar: it must be valid (never corrupt), the edits found in
it must be the logged edits up to some point (never a later edit without an earlier one), and
the edits lost are timed (from the first lost edit to the kill).  The next child starts from the
sidecar left, and the temporary files of killed saves must be gone once it has loaded it.

    python bench/kill_autosave.py                 # 20 kills, 20 s of edits, 100,000 atoms
    python bench/kill_autosave.py --kills 5 --duration 5 10 --atoms 20000

The test suite runs :func:`run` time-compressed (tests/test_annotations_safety.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------- child
def _child(folder: Path, log_path: Path, seed: int, interval_s, autosave_ms: int, write_delay_s: float = 0.0) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PyQt5 import QtCore, QtWidgets

    if write_delay_s > 0:  # fault injection: each save holds its written temporary file this long
        import importlib

        sidecar = importlib.import_module("atomlens.analysis.sidecar")  # before the rename,
        # so in-save kills land there

        real_write_with = sidecar.atomic_write_with

        def slow_write_with(path, write, suffix=".tmp"):
            def delayed(tmp):
                write(tmp)
                time.sleep(write_delay_s)
            return real_write_with(path, delayed, suffix=suffix)

        sidecar.atomic_write_with = slow_write_with

    app = QtWidgets.QApplication([])
    from atomlens.gui.main_window import MainWindow

    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open until the kill

    def note(*words) -> None:
        log.write(" ".join(str(w) for w in (f"{time.time():.6f}", *words)) + "\n")
        log.flush()
        os.fsync(log.fileno())

    settings = QtCore.QSettings(str(folder / "settings.ini"), QtCore.QSettings.IniFormat)
    win = MainWindow(settings=settings, interactive=False)
    win.show()
    loop = QtCore.QEventLoop()
    win.resultChanged.connect(lambda *_: loop.quit())
    win.open_file(str(folder / "image.npy"))
    loop.exec_()
    ctl = win.annotate
    ctl.timer.setInterval(autosave_ms)
    ctl.set_active(True)
    if ctl.ann is None or ctl.store is None:
        note("failed", "annotate mode did not start")
        sys.exit(2)
    store_save = ctl.store.save

    def save(ann):
        note("save-start", len(ann))
        path = store_save(ann)
        note("save-end", len(ann))
        return path

    ctl.store.save = save
    rng = random.Random(seed)
    ann = ctl.ann
    predicted = [(float(ann.x[i]), float(ann.y[i])) for i in range(len(ann)) if ann.source[i] == "predicted"]
    rng.shuffle(predicted)
    h, w = win.micrograph.shape[-2:]
    note("ready", len(ann))

    def edit() -> None:
        kind = rng.choice(("add", "add", "move", "delete"))
        x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        if kind == "add" or not predicted:
            ctl.add_atom(x, y, 1)
            note("edit", "add", repr(x), repr(y))
        else:
            ox, oy = predicted.pop()  # an untouched predicted atom, found by its position
            j = int(np.flatnonzero((ann.x == ox) & (ann.y == oy))[0])
            if kind == "move":
                ctl.move(j, x, y)
                note("edit", "move", repr(x), repr(y), repr(ox), repr(oy))
            else:
                ctl.delete(atoms=[j])
                note("edit", "delete", repr(ox), repr(oy))
        QtCore.QTimer.singleShot(int(1000 * rng.uniform(*interval_s)), edit)

    QtCore.QTimer.singleShot(int(1000 * rng.uniform(*interval_s)), edit)
    app.exec_()


# ---------------------------------------------------------------------- parent
def _events(log_path: Path) -> list[list[str]]:
    try:
        lines = log_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [ln.split() for ln in lines if ln.strip()]


def _applied(ann, ev) -> bool:
    """Whether the logged edit `ev` is in the annotations `ann` (positions are exact)."""
    import numpy as np

    kind, vals = ev[2], [float(v) for v in ev[3:]]
    at = lambda x, y: bool(np.any((ann.x == x) & (ann.y == y)))
    if kind == "add":
        return at(vals[0], vals[1])
    if kind == "move":
        return at(vals[0], vals[1]) and not at(vals[2], vals[3])
    return not at(vals[0], vals[1])


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".image.npy.atomlens.json.") and p.name.endswith(".tmp")]


def make_start(folder: Path, n_atoms: int, seed: int = 0):
    """The image (512 x 512) and its sidecar with `n_atoms` predicted atoms."""
    import numpy as np
    from atomlens.analysis.annotations import Annotations
    from atomlens.analysis.sidecar import file_sha256, save_sidecar

    rng = np.random.default_rng(seed)
    img = folder / "image.npy"
    np.save(img, rng.random((512, 512)).astype(np.float32))
    ann = Annotations(x=rng.uniform(0, 511, n_atoms), y=rng.uniform(0, 511, n_atoms), cls=1,
                      score=rng.uniform(0.5, 1, n_atoms), source="predicted", image_sha256=file_sha256(img),
                      image_name=img.name, shape=(512, 512), px_size_nm=0.02)
    save_sidecar(ann, img)
    return img


def run(folder, kills: int = 20, duration_s=(2.0, 20.0), interval_s=(0.5, 1.5), autosave_ms: int = 2000,
        n_atoms: int = 100_000, seed: int = 0, in_save_every: int = 3, verbose: bool = False,
        write_delay_s: float = 0.0) -> dict:
    """Run `kills` children, each killed `duration_s` (uniform) after it is ready to edit (or
    just after a save started, every `in_save_every`-th); returns the figures (see the module
    notes): kills, kills_in_save, corrupt, inconsistent, edits, lost, saves_while_editing,
    max_lost_s, median_lost_s, temp_files_made (by the kills), temp_files_left (after the next
    load), save_s (median duration of a save) and per-kill rows."""
    from atomlens.analysis.annotations import SidecarError
    from atomlens.analysis.sidecar import file_sha256, read_sidecar, sidecar_path
    from atomlens.analysis.annotations_store import SidecarStore

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img = make_start(folder, n_atoms, seed)
    side = sidecar_path(img)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ATOMLENS_USER_DATA=str(folder / "userdata"),
               ATOMLENS_SETTINGS_DIR=str(folder / "settings"), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1] / "app"), env.get("PYTHONPATH", "")])
    rng = random.Random(seed)
    rows, saves, temp_before = [], [], []
    for k in range(kills):
        log = folder / f"log{k:02d}.txt"
        in_save = in_save_every > 0 and k % in_save_every == in_save_every - 1
        cmd = [sys.executable, str(HERE), "--child", str(folder), "--log", str(log), "--seed", str(seed * 1000 + k),
               "--interval", str(interval_s[0]), str(interval_s[1]), "--autosave-ms", str(autosave_ms),
               "--write-delay-s", str(write_delay_s)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        leftover = _temp_files(folder)
        t_limit = time.time() + 120
        while not any(e[1] == "ready" for e in _events(log)):
            if proc.poll() is not None or time.time() > t_limit:
                raise RuntimeError(f"child {k} did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.01)
        t_ready = float(next(e[0] for e in _events(log) if e[1] == "ready"))
        temp_before.append(sum(p.exists() for p in leftover))  # the load must have removed them
        t_kill = t_ready + rng.uniform(*duration_s)
        while time.time() < t_kill:
            time.sleep(0.005)
        if in_save:  # then at a random moment of the next save (serialising, writing, renaming)
            while True:
                ev = _events(log)
                if ev and ev[-1][1] == "save-start":
                    break
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.9 * statistics.median(saves)) if saves else 0.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t_kill = time.time()
        proc.stderr.close()
        ev = _events(log)
        last_save = [e[1] for e in ev if e[1].startswith("save-")][-1:]
        killed_in_save = last_save == ["save-start"]
        s, e0 = None, None
        for e in ev:
            if e[1] == "save-start":
                s = float(e[0])
            elif e[1] == "save-end" and s is not None:
                saves.append(float(e[0]) - s)
        edits = [e for e in ev if e[1] == "edit"]
        saves_editing = sum(e[1] == "save-end" and edits and float(e[0]) > float(edits[0][0]) for e in ev)
        try:
            ann, _ = read_sidecar(side, file_sha256(img))
            corrupt = False
        except SidecarError:
            corrupt, ann = True, None
        applied = [_applied(ann, e) for e in edits] if ann is not None else [False] * len(edits)
        n_ok = next((i for i, a in enumerate(applied) if not a), len(applied))
        inconsistent = any(applied[n_ok:])  # a later edit saved without an earlier one
        lost = edits[n_ok:]
        lost_s = t_kill - float(lost[0][0]) if lost else 0.0
        e0 = float(edits[0][0]) if edits else None
        rows.append({"kill": k, "after_s": round(t_kill - t_ready, 2), "in_save": killed_in_save,
                     "edits": len(edits), "lost": len(lost), "lost_s": round(lost_s, 2), "corrupt": corrupt,
                     "inconsistent": inconsistent, "temp_files": len(_temp_files(folder)),
                     "saves_while_editing": saves_editing,
                     "first_edit_s": None if e0 is None else round(e0 - t_ready, 2)})
        if verbose:
            print(json.dumps(rows[-1]), flush=True)
        if corrupt:  # go on from a fresh start
            side.unlink()
            make_start(folder, n_atoms, seed)
    # a last load (as the next session's) removes the last kill's temporary files
    SidecarStore(img, file_sha256(img)).load()
    lost_s = [r["lost_s"] for r in rows]
    return {"kills": len(rows), "kills_in_save": sum(r["in_save"] for r in rows),
            "corrupt": sum(r["corrupt"] for r in rows), "inconsistent": sum(r["inconsistent"] for r in rows),
            "edits": sum(r["edits"] for r in rows), "lost": sum(r["lost"] for r in rows),
            "saves_while_editing": sum(r["saves_while_editing"] for r in rows),
            "max_lost_s": max(lost_s), "median_lost_s": statistics.median(lost_s),
            "temp_files_left": len(_temp_files(folder)) + sum(temp_before),
            "temp_files_made": sum(r["temp_files"] for r in rows),
            "save_s": round(statistics.median(saves), 3) if saves else None, "n_atoms": n_atoms, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--duration", type=float, nargs=2, default=(2.0, 20.0), metavar=("MIN_S", "MAX_S"),
                    help="kill this long after the child is ready to edit (uniform)")
    ap.add_argument("--interval", type=float, nargs=2, default=(0.5, 1.5), metavar=("MIN_S", "MAX_S"))
    ap.add_argument("--autosave-ms", type=int, default=None, help="default: the app's (AUTOSAVE_MS)")
    ap.add_argument("--atoms", type=int, default=100_000)
    ap.add_argument("--in-save-every", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-delay-s", type=float, default=0.0,
                    help="hold each save's written temporary file this long before the rename (fault "
                         "injection: in-save kills then leave temporary files, which the next load must remove)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.autosave_ms is None:
        from atomlens.gui.annotate import AUTOSAVE_MS

        a.autosave_ms = AUTOSAVE_MS
    if a.child:
        _child(a.child, a.log, a.seed, a.interval, a.autosave_ms, a.write_delay_s)
        return 0
    with tempfile.TemporaryDirectory(prefix="atomlens-kill-") as d:
        fig = run(d, a.kills, a.duration, a.interval, a.autosave_ms, a.atoms, a.seed, a.in_save_every, verbose=True,
                  write_delay_s=a.write_delay_s)
    rows = fig.pop("rows")
    print(json.dumps(fig, indent=1))
    print(f"{fig['kills']} kills ({fig['kills_in_save']} inside a save of {fig['n_atoms']:,} atoms, "
          f"{fig['temp_files_made']} leaving a temporary file), {fig['corrupt']} corrupt sidecars, "
          f"{fig['inconsistent']} inconsistent; {fig['edits']} edits, {fig['lost']} lost: "
          f"max {fig['max_lost_s']:.2f} s, median {fig['median_lost_s']:.2f} s of edits lost; "
          f"save {fig['save_s']} s; temporary files left after the next load: {fig['temp_files_left']}")
    return 0 if fig["corrupt"] == 0 and fig["inconsistent"] == 0 and fig["max_lost_s"] <= 5.0 and len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
