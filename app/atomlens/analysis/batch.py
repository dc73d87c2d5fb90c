"""Batch processing: every micrograph of a folder through the ``atomlens detect`` pipeline.

:func:`process_paths` loads each file, runs :func:`~atomlens.analysis.pipeline.analyse_image`
and writes the same files as ``atomlens detect`` (:func:`write_results`), plus a
``batch_summary.csv`` with one row per file.  A file that cannot be read or analysed is
reported and skipped; it never stops the batch.  No Qt, and torch is imported only when the
first model is loaded.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from pathlib import Path

from ..fileio import atomic_write_text
from ..io.formats import ALL_EXTENSIONS
from .atoms import check_edge_margin
from .pipeline import analyse_image, write_results

__all__ = ["SUMMARY_NAME", "default_model", "iter_micrograph_files", "process_paths", "write_summary"]

SUMMARY_NAME = "batch_summary.csv"
#: Files we write ourselves that carry a readable extension: never taken as input.
OUTPUT_SUFFIXES = (".cam.npy",)


def default_model(mode) -> str:
    """The bundled model for an imaging mode (the choice ``atomlens detect`` makes)."""
    from ..cli import _default_model

    return _default_model(mode)


def iter_micrograph_files(folder, recursive: bool = False) -> list[Path]:
    """The files in `folder` that :func:`atomlens.io.load` can read, sorted by path.

    Parameters
    ----------
    folder : str or Path
    recursive : bool
        Also look in sub-folders.

    Returns
    -------
    list of Path
        Files with a supported extension (any case); hidden files, AtomLens outputs
        (``*.cam.npy``) and TIA ``.emi`` headers whose ``.ser`` data files are listed too
        are left out.

    Raises
    ------
    NotADirectoryError
        When `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    exts = {"." + e.lower() for e in ALL_EXTENSIONS}
    walk = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in walk if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and not p.name.lower().endswith(OUTPUT_SUFFIXES))
    sers = {(p.parent, p.stem.rsplit("_", 1)[0]) for p in files if p.suffix.lower() == ".ser"}
    return [p for p in files if not (p.suffix.lower() == ".emi" and (p.parent, p.stem) in sers)]


def _part(progress, start: float, span: float, label: str):
    """A progress callback for one frame: maps its 0..1 onto start..start+span of the batch."""
    def cb(frac, _msg):
        if progress:
            progress(start + span * float(frac), label)
    return cb


def _unique_stem(path: Path, used: set) -> str:
    stem = path.stem
    if stem in used:
        stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        n = 2
        while stem in used:
            stem, n = f"{path.stem}_{path.suffix.lstrip('.').lower()}{n}", n + 1
    used.add(stem)
    return stem


def process_paths(paths, out_dir, *, model: str = "auto", cam: bool = False, device: str = "auto",
                  threshold: float = 0.5, refine: str = "centroid", px_size_nm=None, frames: str = "first",
                  json_summary: bool = False, progress=None, cancel=None, log=print,
                  predictors: dict | None = None, tta: bool = False, single_view: bool = False,
                  material: str | None = None,
                  edge_margin_px: float = 0.0, defect_check: bool = True,
                  min_defect_score: float | None = None) -> list[dict]:
    """Analyse each file and write ``<stem>.atoms.csv`` (and friends) into `out_dir`.

    Parameters
    ----------
    paths : iterable of str or Path
        Micrographs (see :func:`iter_micrograph_files`).
    out_dir : str or Path
        Output folder (created if needed).
    model : str
        Model bundle name or folder; ``"auto"`` picks one from each file's imaging mode.
    cam : bool
        Also run the ``defect-cam`` model (``<stem>.defects.csv``, ``<stem>.cam.npy``).
    device : {"auto", "cpu", "cuda", "mps"}
    threshold : float
        Foreground probability threshold, 0 < threshold < 1.
    refine : {"centroid", "none", "gaussian"}
    px_size_nm : float or None
        Pixel size (nm) for every file, overriding the files' own; None keeps theirs.
    material : str or None
        Material hint for every file (see :func:`atomlens.analysis.material.apply_material_hint`).
    edge_margin_px : float
        Leave out the atoms within this many pixels of an image edge (0: keep every column).
    defect_check, min_defect_score :
        As :func:`~atomlens.analysis.pipeline.analyse_image` (None: its default score).
    frames : {"first", "all"}
        Which frames of a stack to analyse (outputs ``<stem>_fNNNN.*`` as with ``detect``).
    json_summary : bool
        Also write ``<stem>.json``.
    single_view : bool
        One pass of the atom-finding network instead of the mean over the image and its half turn.
    tta : bool
        Average the networks over the 8 rotations and mirror images (slower, steadier).
    progress : callable(fraction, message), optional
        Overall progress, 0..1, with the current file's name and index.
    cancel : object with ``is_set()``, optional
        Checked between files: the file being analysed is finished and written, the rest
        are listed as ``skipped``.
    log : callable(str)
        Receives one line per file (and notes).
    predictors : dict, optional
        Cache of loaded models (name -> Predictor), kept between calls by the caller.

    Returns
    -------
    list of dict
        One row per file: ``path``, ``status`` (``ok``, ``error`` or ``skipped``),
        ``failure`` (for errors: ``input`` when the file cannot be read or analysed, ``model``
        when the model cannot be loaded or run on the chosen device), ``message``, ``n_atoms``, ``counts`` (class -> number), ``n_defects``, ``model``,
        ``outputs`` (paths written) and ``seconds``.  The same rows are written to
        ``out_dir/batch_summary.csv``.
    """
    from ..io import LoadError, LoadWarning, load

    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    if refine not in ("centroid", "none", "gaussian"):
        raise ValueError(f"refine must be 'centroid', 'none' or 'gaussian', not {refine!r}")
    if frames not in ("first", "all"):
        raise ValueError(f"frames must be 'first' or 'all', not {frames!r}")
    if px_size_nm is not None and not float(px_size_nm) > 0:
        raise ValueError(f"px_size_nm must be positive, got {px_size_nm}")
    check_edge_margin(edge_margin_px)  # before any file is read
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = predictors if predictors is not None else {}
    rows, used = [], set()
    n = len(paths)

    def get_predictor(name):
        if name not in cache:
            try:
                from ..nn.infer import Predictor

                cache[name] = Predictor(name, device=device, tta=tta, single_view=single_view)
            except Exception as exc:  # noqa: BLE001 - a bad model fails its files, not the batch
                cache[name] = exc
        if isinstance(cache[name], Exception):
            raise cache[name]
        return cache[name]

    for i, path in enumerate(paths):
        row = {"path": str(path), "status": "ok", "failure": "", "message": "", "n_atoms": 0, "counts": {},
               "n_defects": None, "model": "", "outputs": [], "seconds": 0.0}
        rows.append(row)
        if cancel is not None and cancel.is_set():
            row.update(status="skipped", message="cancelled")
            continue
        t0 = time.perf_counter()
        if progress:
            progress(i / max(n, 1), f"{path.name} ({i + 1}/{n})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LoadWarning)
                mg = load(path)
            from ..io.filename_hints import apply_filename_hints, assumption_notes

            apply_filename_hints(mg)  # as atomlens detect: a mode / pixel size the file lacks, from its name
            assumed = assumption_notes(mg, px_size_given=px_size_nm is not None,
                                       model_given=model not in (None, "", "auto"))
            name = default_model(mg.mode) if model in (None, "", "auto") else model
            row["model"] = name
            try:
                pred = get_predictor(name)
                cam_pred = get_predictor("defect-cam") if cam else None
            except Exception as exc:  # noqa: BLE001 - the model fails this file, not the batch
                raise _ModelFailure(exc) from exc
            stem = _unique_stem(path, used)
            px = float(px_size_nm) if px_size_nm is not None else mg.px_size_nm
            idx = range(mg.n_frames) if (frames == "all" and mg.is_stack) else [0]
            notes = []
            for j, f in enumerate(idx):
                span = 1.0 / (len(idx) * max(n, 1))
                sub = _part(progress, (i + j / len(idx)) / max(n, 1), span, f"{path.name} ({i + 1}/{n})")
                try:
                    res = analyse_image(mg.frame(f if mg.is_stack else 0), pred, px_size_nm=px,
                                        offset_nm=mg.offset_nm, mode=mg.mode, threshold=threshold, refine=refine,
                                        cam_predictor=cam_pred, frame=f, material=material,
                                        edge_margin_px=edge_margin_px, progress=sub,
                                        defect_check=defect_check,
                                        **({} if min_defect_score is None else {"min_defect_score": min_defect_score}))
                except ValueError as exc:  # the image cannot be analysed (flat, tiny, no lattice...)
                    raise LoadError(f"{path.name}: {exc}") from exc
                res.info["notes"] = assumed + res.info["notes"]  # as atomlens detect (and its JSON)
                fstem = stem + (f"_f{f:04d}" if mg.is_stack else "")
                row["outputs"] += [str(p) for p in write_results(res, out, fstem, json_summary=json_summary)]
                row["n_atoms"] += len(res.atoms)
                for c, k in res.counts().items():
                    row["counts"][c] = row["counts"].get(c, 0) + k
                if res.defects is not None:
                    row["n_defects"] = (row["n_defects"] or 0) + len(res.defects)
                notes += [nt for nt in res.info.get("notes", []) if nt not in notes]
            row["message"] = "; ".join(notes)
            msg = f"{path.name}: {row['n_atoms']} atoms (" + ", ".join(
                f"{k} {c}" for c, k in row["counts"].items() if k) + ")"
            if row["n_defects"] is not None:
                msg += f", {row['n_defects']} defects"
            log(msg)
        except LoadError as exc:
            row.update(status="error", failure="input", message=str(exc))
            log(f"error: {exc}")
        except _ModelFailure as exc:
            row.update(status="error", failure="model",
                       message=f"model {row['model']} cannot be used: {exc.__cause__}")
            log(f"error: {path.name}: {row['message']}")
        except Exception as exc:  # noqa: BLE001 - one bad file never aborts the batch
            row.update(status="error", failure="input", message=f"{type(exc).__name__}: {exc}")
            log(f"error: {path.name}: {row['message']}")
        row["seconds"] = round(time.perf_counter() - t0, 3)
    if progress:
        done = sum(r["status"] != "skipped" for r in rows)
        progress(1.0, f"{done} of {n} files processed")
    write_summary(rows, out / SUMMARY_NAME)
    return rows


class _ModelFailure(Exception):
    """The model (or the device it was asked for) failed, not the file: see ``__cause__``."""


def write_summary(rows: list[dict], path) -> None:
    """Write the rows of :func:`process_paths` as CSV (one column per class count), atomically."""
    classes = []
    for r in rows:
        classes += [c for c in r["counts"] if c not in classes]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "status", "message", "n_atoms"] + [f"n_{c}" for c in classes]
               + ["n_defects", "model", "seconds"])
    for r in rows:
        w.writerow([r["path"], r["status"], r["message"], r["n_atoms"]]
                   + [r["counts"].get(c, 0) for c in classes]
                   + ["" if r["n_defects"] is None else r["n_defects"], r["model"], r["seconds"]])
    atomic_write_text(path, buf.getvalue())
