"""Fingerprints of AtomLens's outputs, to prove that a change of structure left them as they were
(issue 25: "the CSV/JSON/hspy outputs must be the same before and after, byte for byte where
they are deterministic").

It runs what a user runs, on the real files in ../shared/data/real:

* ``atomlens detect --json --cam`` on five files of four formats and both model families (the
  default model from the imaging mode), and once with ``--px-size-nm`` and ``--refine gaussian``;
* ``atomlens batch --json`` on a folder of three files;
* the File > Export writers in-process: CSV and JSON of a result with annotation corrections,
  and the ``.hspy`` export (read back with HyperSpy, its data and metadata hashed);

and writes ``{relative output path: sha256}`` to a JSON file.  CSV, JSON and ``.npy`` files
are hashed byte for byte (batch_summary.csv without its ``seconds`` column and with file names
for the temporary input folder; the .hspy's data and metadata less HyperSpy's own timestamps).  The
models can be pinned (``--models DIR``: a folder of bundles used as the user's models, which
shadow the bundled ones by name), so that a change of the bundled weights between two runs does
not show up as a change of the code.

    python bench/outputs_digest.py --out before.json [--models DIR] [--keep DIR]
    python bench/outputs_digest.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
DETECT = ("G-Si-2nm.hdf5", "test_ABF_cropped.hdf5", "16_STOimage_1.ser", "Acquisition_18.emd",
          "STM_nanonis_generic_4_5.sxm")
BATCH = ("G-GrainBoundary-4nm.hdf5", "test_ADF_cropped.hdf5", "example_TOPO.sxm")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(args, env) -> None:
    exe = Path(sys.executable).with_name("atomlens")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "atomlens"]
    r = subprocess.run(cmd + [str(a) for a in args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"atomlens {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-2000:]}")


def exports(out: Path) -> None:
    """The GUI's export writers on one result with a moved, a deleted and an added atom."""
    import numpy as np

    from atomlens.analysis.annotations import Annotations
    from atomlens.io import load

    try:  # the writers' home after issue 25
        from atomlens.analysis.corrections import corrected_result
        from atomlens.workflows import export as ex
    except ImportError:
        from atomlens.io import export as ex
        corrected_result = ex.corrected_result
    from atomlens.analysis.pipeline import analyse_image
    from atomlens.nn.infer import Predictor

    mg = load(REAL / "G-Si-2nm.hdf5")
    res = analyse_image(mg.frame(0), Predictor("stem-haadf", device="cpu"), px_size_nm=mg.px_size_nm, mode=mg.mode)
    # Annotate mode's corrections: one atom moved, one deleted, one added, one re-classed
    ann = Annotations.from_result(res)
    ann.move_atom(0, float(ann.x[0]) + 0.7, float(ann.y[0]) - 0.4)
    ann.remove_atoms([1])
    ann.add_atom(10.0, 12.5, 1)
    ann.set_class([2], 2)
    res = corrected_result(res, ann)
    (out / "export").mkdir(parents=True, exist_ok=True)
    ex.export_csv(res, out / "export" / "G-Si-2nm.atoms.csv")
    ex.export_json(res, out / "export" / "G-Si-2nm.json")
    h = out / "export" / "G-Si-2nm.hspy"
    ex.to_hspy(res, mg, h)
    import hyperspy.api as hs

    s = hs.load(h)
    md = s.metadata.as_dictionary()
    md.get("General", {}).pop("FileIO", None)  # HyperSpy's own log of when the file was written and read
    meta = json.dumps(md, sort_keys=True, default=str)
    arr = np.ascontiguousarray(s.data)
    (out / "export" / "G-Si-2nm.hspy.digest").write_text(
        hashlib.sha256(arr.tobytes()).hexdigest() + "\n" + str(arr.dtype) + str(arr.shape) + "\n" + meta)
    h.unlink()


def steady_summary(path: Path) -> None:
    """batch_summary.csv without what varies from run to run: the input folder (a temporary
    one) becomes the file name, the ``seconds`` column is dropped."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    keep = [i for i, h in enumerate(rows[0]) if h != "seconds"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for k, r in enumerate(rows):
        if k and r:
            r[0] = Path(r[0]).name
        w.writerow([r[i] for i in keep if i < len(r)])
    path.with_name(path.name + ".steady").write_text(buf.getvalue(), encoding="utf-8")
    path.unlink()


def run(out: Path, models: Path | None) -> dict:
    env = dict(os.environ)
    user = Path(tempfile.mkdtemp(prefix="atomlens-digest-user-"))
    if models is not None:
        (user / "models").mkdir()
        for d in sorted(Path(models).iterdir()):
            if (d / "card.json").is_file():
                shutil.copytree(d, user / "models" / d.name)
    env["ATOMLENS_USER_DATA"] = str(user)
    os.environ["ATOMLENS_USER_DATA"] = str(user)
    try:
        cli(["detect", *[REAL / f for f in DETECT], "--out", out / "detect", "--json", "--cam"], env)
        cli(["detect", REAL / "G-Si-2nm.hdf5", "--out", out / "detect-px", "--json", "--px-size-nm", "0.0081",
             "--refine", "gaussian", "--min-defect-score", "0"], env)
        folder = Path(tempfile.mkdtemp(prefix="atomlens-digest-batch-"))
        for f in BATCH:
            shutil.copy(REAL / f, folder / f)
        cli(["batch", folder, "--out", out / "batch", "--json"], env)
        shutil.rmtree(folder, ignore_errors=True)
        steady_summary(out / "batch" / "batch_summary.csv")
        exports(out)
    finally:
        shutil.rmtree(user, ignore_errors=True)
    return {str(p.relative_to(out)): sha(p) for p in sorted(out.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the fingerprints to this JSON file")
    ap.add_argument("--models", default=None, help="folder of model bundles to pin (used as the user's models)")
    ap.add_argument("--keep", default=None, help="keep the outputs in this folder (default: a temporary one)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two fingerprint files")
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        for k in diff:
            print(f"{'differs' if k in a and k in b else 'only in ' + ('A' if k in a else 'B')}: {k}")
        print(f"{len(set(a) & set(b)) - len([k for k in diff if k in a and k in b])} of {len(set(a) | set(b))} "
              f"outputs identical")
        return 1 if diff else 0
    if not args.out:
        ap.error("--out or --compare is needed")
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="atomlens-digest-"))
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    digest = run(out, Path(args.models) if args.models else None)
    Path(args.out).write_text(json.dumps(digest, indent=1, sort_keys=True) + "\n")
    print(f"{len(digest)} outputs fingerprinted -> {args.out}" + (f" (kept in {out})" if args.keep else ""))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
