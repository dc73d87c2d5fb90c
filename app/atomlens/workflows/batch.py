"""The loop over micrograph files that ``atomlens detect``, ``atomlens batch`` and the GUI's
Process-folder dialog all run.

:func:`process_paths` loads each file (:func:`~atomlens.workflows.analyse.load_micrograph`),
analyses the frames asked for (:func:`~atomlens.workflows.analyse.analyse_micrograph`) with the
model of :func:`~atomlens.workflows.models.default_model_name` or the one named, and writes the
files of :func:`~atomlens.workflows.export.write_results`, plus (for a batch) a
``batch_summary.csv`` with one row per file.  A file that cannot be read or analysed is reported
and skipped; it never stops the loop.  No Qt, and torch is imported only when the first model is
loaded.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from ..fileio import atomic_write_text
from ..io.formats import ALL_EXTENSIONS
from ..progress import sub_progress
from .analyse import AnalysisSettings, analyse_micrograph, load_micrograph
from .export import to_hspy, write_results
from .models import CAM_MODEL, ModelCache, default_model_name, is_cuda_failure, list_bundles, single_atom_model_for

__all__ = ["FAILURES", "SUMMARY_NAME", "iter_micrograph_files", "process_paths", "write_summary"]

SUMMARY_NAME = "batch_summary.csv"
#: Files we write ourselves that carry a readable extension: never taken as input.
OUTPUT_SUFFIXES = (".cam.npy",)
#: Why a file failed: it cannot be read or analysed; the model cannot be loaded or run on the
#: device asked for; the frame asked for is not in the file; the analysis ran out of memory.
FAILURES = ("input", "model", "frame", "memory")


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


def _unique_stem(path: Path, used: set) -> str:
    stem = path.stem
    if stem in used:
        stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        n = 2
        while stem in used:
            stem, n = f"{path.stem}_{path.suffix.lstrip('.').lower()}{n}", n + 1
    used.add(stem)
    return stem


def _frames_of(mg, frames) -> list[int]:
    """The frame indices of `mg` that `frames` ("first", "all" or an index) names."""
    if frames == "all":
        return list(range(mg.n_frames)) if mg.is_stack else [0]
    if frames == "first":
        return [0]
    return [int(frames)]


def process_paths(paths, out_dir, *, model: str | None = "auto", settings: AnalysisSettings | None = None,
                  device: str = "auto", frames="first", channel: str | None = None, json_summary: bool = False,
                  summary: bool = True, stop_on_model_failure: bool = False, progress=None, cancel=None, log=print,
                  note_log=None, models: ModelCache | None = None, tta: bool = False,
                  single_view: bool = False, hspy: bool = False) -> list[dict]:
    """Analyse each file and write ``<stem>.atoms.csv`` (and friends) into `out_dir`.

    Parameters
    ----------
    paths : iterable of str or Path
        Micrographs (see :func:`iter_micrograph_files`).
    out_dir : str or Path
        Output folder (created if needed).
    model : str or None
        Model bundle name or folder; ``"auto"`` (or None, "") picks one from each file's imaging
        mode (:func:`~atomlens.workflows.models.default_model_name`).
    settings : AnalysisSettings, optional
        Threshold, refinement, defect maps (``cam``), material, edge margin, defect check and
        score, and a pixel size for every file; checked before any file is read.
    device : {"auto", "cpu", "cuda", "mps"}
        With "auto" a GPU that fails is replaced by the CPU (with a note); a device named
        explicitly that cannot be used fails the files as a model failure.
    frames : "first", "all" or int
        Which frames of a stack to analyse (outputs ``<stem>_fNNNN.*`` for a stack).
    channel : str, optional
        Channel or sub-image of multi-image files.
    json_summary : bool
        Also write ``<stem>.json``.
    hspy : bool
        Also write ``<stem>.hspy``: the frame as a calibrated HyperSpy signal with the atoms as
        markers (:func:`~atomlens.workflows.export.to_hspy`).
    summary : bool
        Write ``out_dir/batch_summary.csv`` (:func:`write_summary`).
    stop_on_model_failure : bool
        Stop at the first file whose model cannot be loaded or run (``atomlens detect``); else
        that file fails and the loop goes on (a bad model fails its files, not the batch).
    progress : callable(fraction, message), optional
        Overall progress, 0..1, with the current file's name and index.
    cancel : object with ``is_set()``, optional
        Checked between files: the file being analysed is finished and written, the rest
        are listed as ``skipped``.
    log : callable(str)
        Receives one line per frame analysed and per failure (failures start with "error:").
    note_log : callable(str), optional
        Receives each note of each frame as ``"note: <file name>: <note>"``.
    models : ModelCache, optional
        Loaded models, kept between calls by the caller.
    tta, single_view : bool
        For the models loaded here (see :class:`~atomlens.nn.infer.Predictor`).

    Returns
    -------
    list of dict
        One row per file: ``path``, ``status`` (``ok``, ``error`` or ``skipped``),
        ``failure`` (for errors, one of :data:`FAILURES`), ``message``, ``n_atoms``, ``counts``
        (class -> number), ``n_defects``, ``model``, ``outputs`` (paths written) and
        ``seconds``.  With `summary`, the same rows are written to ``out_dir/batch_summary.csv``.

    Raises
    ------
    ValueError
        When a setting is out of range (before any file is read).
    """
    from ..io import LoadError

    s = (settings or AnalysisSettings()).check()
    if frames not in ("first", "all") and not isinstance(frames, int):
        raise ValueError(f"frames must be 'first', 'all' or a frame index, not {frames!r}")
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = models if models is not None else ModelCache(tta=tta, single_view=single_view, remember_failures=True)
    auto = model in (None, "", "auto")
    installed = [m for m, _p, _o in list_bundles()] if auto else []  # read once, not per frame
    rows, used = [], set()
    n = len(paths)

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
            mg = load_micrograph(path, channel=channel)
            name = default_model_name(mg.mode) if auto else model
            row["model"] = str(name)
            alt = single_atom_model_for(name, mg.mode, installed) if auto else None
            stem = _unique_stem(path, used)
            idx = _frames_of(mg, frames)
            notes = []
            for j, f in enumerate(idx):
                span = 1.0 / (len(idx) * max(n, 1))
                sub = sub_progress(progress, (i + j / len(idx)) / max(n, 1), span, f"{path.name} ({i + 1}/{n})")
                if not (-mg.n_frames <= f < mg.n_frames if mg.is_stack else f == 0):
                    raise _FrameFailure(f"{path.name}: frame {f} requested from " + (
                        f"a stack of {mg.n_frames} frames" if mg.is_stack else "a single image"))

                def attempt(dev, f=f, sub=sub):
                    pred, cam_pred = _load_models(cache, name, s.cam, dev, device == "auto")
                    single = (lambda: _load_models(cache, alt, False, dev, device == "auto")[0]) if alt else None
                    return analyse_micrograph(mg, pred, frame=f, settings=s, cam_predictor=cam_pred,
                                              model_given=not auto, progress=sub, single_atoms=single)

                try:
                    # "auto" falls back to the CPU when the GPU fails; a device named by the user
                    # is what the run gets (a missing one is a model/device failure)
                    res, fallback = (cache.run_with_fallback(attempt, device) if device == "auto"
                                     else (attempt(device), None))
                except ValueError as exc:  # the image cannot be analysed (flat, tiny, no lattice...)
                    raise LoadError(f"{path.name}: {exc}") from exc
                if fallback:
                    res.info["notes"].append(fallback)
                    res.info["cuda_fallback"] = True
                if note_log is not None:
                    for note in res.info["notes"]:
                        note_log(f"note: {path.name}: {note}")
                fstem = stem + (f"_f{f:04d}" if mg.is_stack else "")
                row["outputs"] += [str(p) for p in write_results(res, out, fstem, json_summary=json_summary)]
                if hspy:
                    row["outputs"].append(str(to_hspy(res, mg, out / f"{fstem}.hspy")))
                row["n_atoms"] += len(res.atoms)
                for c, k in res.counts().items():
                    row["counts"][c] = row["counts"].get(c, 0) + k
                if res.defects is not None:
                    row["n_defects"] = (row["n_defects"] or 0) + len(res.defects)
                notes += [nt for nt in res.info.get("notes", []) if nt not in notes]
                msg = f"{path.name}{f' frame {f}' if mg.is_stack else ''}: {len(res.atoms)} atoms (" + ", ".join(
                    f"{k} {c}" for c, k in res.counts().items() if k) + ")"
                if res.defects is not None:
                    msg += f", {len(res.defects)} defects"
                log(msg)
            row["message"] = "; ".join(notes)
        except LoadError as exc:
            row.update(status="error", failure="input", message=str(exc))
            log(f"error: {exc}")
        except _FrameFailure as exc:
            row.update(status="error", failure="frame", message=str(exc))
            log(f"error: {exc}")
        except _ModelFailure as exc:
            row.update(status="error", failure="model",
                       message=f"model {row['model']} cannot be used: {exc.__cause__}")
            log(f"error: {path.name}: {row['message']}")
        except MemoryError:
            row.update(status="error", failure="memory", message="not enough memory to analyse this image")
            log(f"error: {path.name}: {row['message']}")
        except Exception as exc:  # noqa: BLE001 - one bad file never aborts the batch
            row.update(status="error", failure="input", message=f"{type(exc).__name__}: {exc}")
            log(f"error: {path.name}: {row['message']}")
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if stop_on_model_failure and row["failure"] == "model":
            break
    if progress:
        done = sum(r["status"] != "skipped" for r in rows)
        progress(1.0, f"{done} of {n} files processed")
    if summary:
        write_summary(rows, out / SUMMARY_NAME)
    return rows


def _load_models(cache, name, cam: bool, device, may_fall_back: bool):
    """(the atom-finding Predictor, the CAM Predictor or None) from `cache`; a model that cannot
    be loaded raises _ModelFailure, except for a GPU failure when `may_fall_back` (the caller
    then runs on the CPU)."""
    try:
        return cache.get(name, device), (cache.get(CAM_MODEL, device) if cam else None)
    except Exception as exc:  # noqa: BLE001 - the model fails this file, not the batch
        if may_fall_back and is_cuda_failure(exc) and device != "cpu":
            raise
        raise _ModelFailure(exc) from exc


class _FrameFailure(Exception):
    """The frame asked for is not in the file."""


class _ModelFailure(Exception):
    """The model (or the device it was asked for) failed, not the file: see ``__cause__``."""


def write_summary(rows: list[dict], path) -> None:
    """Write the rows of :func:`process_paths` as CSV (one column per class count), atomically.

    Columns: ``path, status, message, n_atoms``, then ``n_<class>`` for every class counted in
    any row (in order of first appearance; 0 where a row lacks it), then ``n_defects`` (empty
    when no CAM model ran), ``model`` and ``seconds``.  The ``failure`` key is not written.

    Parameters
    ----------
    rows : list of dict
        One per file: ``path``, ``status`` ("ok", "error" or "skipped"), ``message``,
        ``n_atoms``, ``counts`` (class name -> number), ``n_defects`` (int or None),
        ``model`` and ``seconds`` (wall time, s).
    path : str or os.PathLike
        The CSV file (usually ``<out>/``:data:`SUMMARY_NAME`), replaced whole.

    Raises
    ------
    KeyError
        For a row lacking one of the keys.
    OSError
        If the file cannot be written.
    """
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
