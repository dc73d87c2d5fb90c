"""The ``atomlens`` command: the GUI by default, plus headless sub-commands.

    atomlens [FILE ...]                 open files in the GUI
    atomlens --sample sto-haadf         open a bundled sample
    atomlens info FILE [--channel C]    print what AtomLens reads from a file (no GUI)

    atomlens simulate --config CFG.json --n N --out DIR   write a simulated data set

``detect`` and ``train`` are added by the network layers.
"""

from __future__ import annotations

import time

_T0 = time.time()  # as early as possible, for the start-up measurement

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from ._version import __version__  # noqa: E402

#: Exit codes shared by all sub-commands.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3

SUBCOMMANDS = ("info", "simulate", "train", "detect", "batch", "gui")
#: One line per sub-command, for ``atomlens --help``.
SUBCOMMAND_HELP = {
    "info": "print what AtomLens reads from micrograph files (size, calibration, mode, notes)",
    "simulate": "write a labelled, simulated data set (HDF5 shards, manifest, gallery)",
    "train": "train or fine-tune a model bundle on simulated (and annotated) images",
    "detect": "find and class atom columns in micrographs; write <stem>.atoms.csv per file",
    "batch": "run detect on every micrograph of a folder; write batch_summary.csv",
    "gui": "start the desktop application (the default with no command)",
}


def _gui_parser() -> argparse.ArgumentParser:
    from .samples import SAMPLES

    commands = "\n".join(f"  {name:<10} {SUBCOMMAND_HELP[name]}" for name in SUBCOMMANDS)
    p = argparse.ArgumentParser(
        prog="atomlens",
        usage="atomlens [COMMAND] ... | atomlens [FILE ...] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find, class and correct atom columns in STEM and STM images. "
        "With no command, starts the desktop application.",
        epilog=f"commands:\n{commands}\n\nRun 'atomlens COMMAND --help' for a command's options.\n"
        "Exit codes: 0 success, 1 model or device error, 2 bad options or config, "
        "3 an input file cannot be read or analysed.",
    )
    p.add_argument("files", nargs="*", help="micrographs to open")
    p.add_argument("--sample", choices=[s.key for s in SAMPLES], help="open a bundled sample image")
    p.add_argument("--channel", help="channel or sub-image to open (e.g. 'Z backward')")
    p.add_argument("--version", action="version", version=f"AtomLens {__version__}")
    p.add_argument("--exit-after-show", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)
    return p


def _info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atomlens info", description="Print what AtomLens reads from micrograph files.")
    p.add_argument("files", nargs="+", help="micrographs")
    p.add_argument("--channel", help="channel or sub-image to read")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _fraction_bar(desc: str):
    """(a tqdm bar, the ``progress(fraction, message)`` callback that moves it): the bar of the
    long sub-commands, whose work reports fractions 0..1 (shown in tenths of a per cent)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, unit="‰", desc=desc)

    def progress(frac, msg):
        bar.update(int(frac * 1000) - bar.n)
        bar.set_postfix_str(msg)

    return bar, progress


def _load_or_report(path, channel=None, keep_on_disk=False):
    """The Micrograph at `path`, or None after printing the LoadError to stderr.  LoadWarnings
    are not printed: their text is in ``mg.notes``.  `keep_on_disk`: see :func:`atomlens.io.load`."""
    from .workflows.analyse import LoadError, LoadWarning, load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        try:
            return load(path, channel=channel, keep_on_disk=keep_on_disk)
        except LoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None


def cmd_info(argv: list[str]) -> int:
    """``atomlens info``: load each file headless and print its calibration and notes."""
    args = _info_parser().parse_args(argv)
    status = EXIT_OK
    for f in args.files:
        mg = _load_or_report(f, args.channel, keep_on_disk=True)  # checks values, never holds them all
        if mg is None:
            status = EXIT_BAD_INPUT
            continue
        info = mg.summary()
        info["Channels"] = ", ".join(mg.channels) or "-"
        info["Offset"] = f"{mg.offset_nm[0]:.4g}, {mg.offset_nm[1]:.4g} nm"
        if args.json:
            print(json.dumps({"file": str(f), "shape": list(mg.data.shape), "px_size_nm": mg.px_size_nm,
                              "px_size_y_nm": mg.px_size_y_nm, "offset_nm": list(mg.offset_nm),
                              "mode": mg.mode, "channel": mg.channel, "channels": mg.channels,
                              "notes": mg.notes}))
        else:
            for k, v in info.items():
                print(f"{k:>14}: {v}")
            for n in mg.notes:
                print(f"{'note':>14}: {n}")
            print()
    return status


def _simulate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atomlens simulate",
        description="Write a labelled, simulated data set: HDF5 shards, manifest.json and gallery.png.",
    )
    p.add_argument("--config", required=True, help="simulation config (JSON); see atomlens.sim.SimConfig")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="first seed (images use seed .. seed+n-1)")
    p.add_argument("--shard-size", type=int, default=256, help="images per HDF5 shard")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--no-gallery", action="store_true", help="do not write gallery.png")
    return p


def cmd_simulate(argv: list[str]) -> int:
    """``atomlens simulate``: write a simulated data set with a progress bar."""
    args = _simulate_parser().parse_args(argv)
    from tqdm import tqdm

    from .workflows.simulation import write_dataset
    from .workflows.simulation import SimConfig

    try:
        cfg = SimConfig.from_any(args.config)
        from .workflows.simulation import simulate

        simulate(cfg, args.seed)  # fail fast, with a clear message, on a bad config
    except FileNotFoundError:
        print(f"error: config file {args.config} not found", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: bad simulation config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    bar = tqdm(total=args.n, unit="img", desc="simulating")

    def progress(frac, _msg):
        bar.update(round(frac * args.n) - bar.n)

    try:
        man = write_dataset(cfg, args.n, args.out, seed=args.seed, shard_size=args.shard_size,
                            workers=args.workers, gallery=not args.no_gallery, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: the shards written so far are complete", file=sys.stderr)
        return EXIT_ERROR
    bar.close()
    print(f"wrote {man['n']} images in {len(man['shards'])} shard(s) to {args.out} "
          f"({man['n'] / max(man['seconds'], 1e-9):.0f} images/s)")
    return EXIT_OK


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atomlens train",
                                description="Train or fine-tune a model bundle on simulated images.")
    p.add_argument("--recipe", required=True, help="training recipe (JSON); see resources/recipes/")
    p.add_argument("--out", help="output bundle folder (default: the user model folder / recipe name)")
    p.add_argument("--init-from", help="fine-tune from this bundle (name or folder)")
    p.add_argument("--steps", type=int, help="override the recipe's number of steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override the recipe's device")
    p.add_argument("--time-limit-min", type=float, help="stop after this many minutes, keeping the best")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--annotated", nargs="+", metavar="IMAGE",
                   help="also train on these images with the atoms corrected in Annotate mode (their saved "
                        "annotations); the bottom rows held back (the recipe's real_holdout, default 20 %%) then "
                        "score the base and the new model on the corrected atoms")
    return p


def cmd_train(argv: list[str]) -> int:
    """``atomlens train``: train a bundle with a progress bar and a metrics log."""
    args = _train_parser().parse_args(argv)
    from pathlib import Path

    try:
        recipe = json.loads(Path(args.recipe).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read recipe {args.recipe}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    recipe["recipe_file"] = Path(args.recipe).name
    for key, val in (("init_from", args.init_from), ("device", args.device)):
        if val is not None:
            recipe[key] = val
    overrides = {"steps": args.steps, "time_limit_min": args.time_limit_min}

    from .workflows.models import BundleError, user_models_dir
    from .workflows.finetune import train

    out = Path(args.out) if args.out else user_models_dir() / recipe.get("name", "model")
    real = []
    if args.annotated:
        from .workflows.finetune import load_annotated_image

        try:
            real = [load_annotated_image(p) for p in args.annotated]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    bar, progress = _fraction_bar(f"training {recipe.get('name', '')}")

    try:
        best = train(recipe, out, progress=progress, resume=args.resume, log=lambda m: bar.write(m),
                     overrides=overrides, real_images=real or None)
    except (BundleError, ValueError, RuntimeError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: the best bundle so far is in {out}", file=sys.stderr)
        return EXIT_ERROR
    bar.close()
    print(f"best bundle in {out}: " + ", ".join(f"{k}={v:.4g}" for k, v in best.items() if isinstance(v, float)))
    if real and recipe.get("init_from") and (out / "card.json").is_file():
        from .workflows.finetune import TrainingJob, compare_models

        job = TrainingJob(recipe.get("name", out.name), recipe, out, {k: v for k, v in overrides.items() if v is not None},
                          real, str(recipe["init_from"]))
        res = compare_models(job, out)
        if res.get("error"):
            print(f"note: the comparison failed: {res['error']}", file=sys.stderr)
        elif res.get("n_confirmed"):
            where = "held-back rows" if res["region"] == "holdout" else "images"
            for key, label in (("before", res["base"]), ("after", res["new"])):
                m = res[key]
                print(f"{label}: F1 {m['f1']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}) on the "
                      f"{res['n_confirmed']} corrected atoms of the {where} of {res['n_images']} image(s)")
        else:
            print("note: no corrected atom lies in the held-back rows: the models were not compared", file=sys.stderr)
    return EXIT_OK


def _add_analysis_options(p: argparse.ArgumentParser, px_help: str) -> None:
    """The options `detect` and `batch` share."""
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--px-size-nm", type=float, help=px_help)
    p.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (0..1)")
    p.add_argument("--refine", default="centroid", choices=["none", "centroid", "gaussian"])
    p.add_argument("--cam", action="store_true", help="also write <stem>.defects.csv and <stem>.cam.npy")
    p.add_argument("--hspy", action="store_true",
                   help="also write <stem>.hspy: the image as a calibrated HyperSpy signal with the atoms as markers "
                        "(hs.load(...).plot() shows them) and the atom table in its metadata")
    from .analysis.material import material_names

    p.add_argument("--material", choices=material_names(), type=_material_arg,
                   help="what the sample is, if known: in a 2H TMD monolayer it tells the metal sublattice from the "
                        "chalcogen one and corrects the classes that cannot be right there (a Se2 -> Se column in "
                        "MoSe2 is a vacancy, a Mo column in WSe2 a dopant)")
    p.add_argument("--edge-margin-px", type=float, default=0.0, metavar="N",
                   help="leave out the columns whose centre lies within N pixels of the image edge (default 0: "
                        "every column, those cut by the edge included; AtomNet's position lists use 5)")
    p.add_argument("--single-view", action="store_true",
                   help="one pass of the atom-finding network instead of the mean over the image and its half "
                        "turn (about 1.4x faster, a little less steady)")
    p.add_argument("--tta", action="store_true",
                   help="average the networks over the 8 rotations and mirror images of the image (about 3-8x "
                        "slower; steadier on weak features: CAM type accuracy 0.933 -> 0.947)")
    from .analysis.defect_check import DEFAULT_MIN_DEFECT_SCORE

    p.add_argument("--min-defect-score", type=float, default=DEFAULT_MIN_DEFECT_SCORE, metavar="S",
                   help="leave out the defects scored below S (0..1): vacancies and --cam defects are not written, "
                        "dopants are written as atom (default %(default)g: the defect maps' weak peaks on clean "
                        "lattices, scored 0 to 0.02, never reach the output; 0 keeps every one)")
    p.add_argument("--no-defect-check", action="store_true",
                   help="keep the network's vacancies and dopants as they are; by default a vacancy must sit on a "
                        "site of the lattice found, darker than its neighbours, and a dopant in a HAADF/ADF image "
                        "must stand out from the columns of its sublattice (the notes say how many went)")


def _material_arg(text: str) -> str:
    """--material is case-insensitive (mos2, MoS2); an unknown name is left for argparse to refuse."""
    from .analysis.material import canonical_name

    return canonical_name(text) or text


def _bad_analysis_options(args) -> bool:
    """Report out-of-range --threshold / --px-size-nm on stderr; True when one was."""
    if not 0 < args.threshold < 1:
        print("error: --threshold must be between 0 and 1", file=sys.stderr)
        return True
    if not 0 <= args.min_defect_score <= 1:
        print("error: --min-defect-score must be between 0 and 1", file=sys.stderr)
        return True
    if args.px_size_nm is not None and not args.px_size_nm > 0:
        print("error: --px-size-nm must be positive", file=sys.stderr)
        return True
    from .analysis.atoms import check_edge_margin

    try:
        check_edge_margin(args.edge_margin_px)
    except ValueError:
        print("error: --edge-margin-px must be a number of pixels >= 0", file=sys.stderr)
        return True
    return False


def _detect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atomlens detect",
        description="Find and class atom columns; write <stem>.atoms.csv per input "
        "(x,y,class,score,x_nm,y_nm in the input's own pixels, pixel (0,0) centred at 0,0).")
    p.add_argument("paths", nargs="+", help="micrographs")
    p.add_argument("--model", help="model bundle name or folder (default: from the imaging mode)")
    _add_analysis_options(p, "pixel size in nm (overrides the file's)")
    p.add_argument("--channel", help="channel or sub-image of multi-image files")
    p.add_argument("--frame", default="0", help="frame of a stack: an index or 'all'")
    p.add_argument("--json", action="store_true", help="also write <stem>.json (settings, counts, atoms, defects)")
    return p


def _settings(args):
    """The AnalysisSettings of the options `detect` and `batch` share."""
    from .workflows.analyse import AnalysisSettings

    return AnalysisSettings(threshold=args.threshold, refine=args.refine, cam=args.cam, material=args.material,
                            edge_margin_px=args.edge_margin_px, defect_check=not args.no_defect_check,
                            min_defect_score=args.min_defect_score, px_size_nm=args.px_size_nm)


def _exit_code(rows) -> int:
    """The exit code of a detect run from its rows: a model or memory failure 1, a frame that is
    not in the file 2, a file that cannot be read or analysed 3."""
    failures = {r.get("failure") for r in rows if r["status"] == "error"}
    for failure, code in (("model", EXIT_ERROR), ("memory", EXIT_ERROR), ("frame", EXIT_USAGE),
                          ("input", EXIT_BAD_INPUT)):
        if failure in failures:
            return code
    return EXIT_OK


def cmd_detect(argv: list[str]) -> int:
    """``atomlens detect``: atoms (and with --cam, defects) for each input file."""
    args = _detect_parser().parse_args(argv)
    from .workflows.batch import process_paths

    if _bad_analysis_options(args):
        return EXIT_USAGE
    if args.frame != "all" and not args.frame.lstrip("-").isdigit():
        print(f"error: --frame must be a frame index or 'all', not {args.frame!r}", file=sys.stderr)
        return EXIT_USAGE
    rows = process_paths(args.paths, args.out, model=args.model or "auto", settings=_settings(args),
                         device=args.device, frames="all" if args.frame == "all" else int(args.frame),
                         channel=args.channel, json_summary=args.json, hspy=args.hspy, summary=False,
                         stop_on_model_failure=True,
                         tta=args.tta, single_view=args.single_view,
                         log=lambda m: print(m, file=sys.stderr if m.startswith("error") else sys.stdout),
                         note_log=lambda m: print(m, file=sys.stderr))
    return _exit_code(rows)


def _batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atomlens batch",
        description="Find and class atom columns in every micrograph of a folder; write "
        "<stem>.atoms.csv per file (as 'atomlens detect' does) and batch_summary.csv.")
    p.add_argument("folder", help="folder of micrographs")
    p.add_argument("--recursive", action="store_true", help="also process sub-folders")
    p.add_argument("--model", default="auto", help="model bundle name or folder (default: from the imaging mode)")
    _add_analysis_options(p, "pixel size in nm for every file (overrides the files')")
    p.add_argument("--frames", default="first", choices=["first", "all"], help="frames of stacks to analyse")
    p.add_argument("--json", action="store_true", help="also write <stem>.json per file")
    return p


def cmd_batch(argv: list[str]) -> int:
    """``atomlens batch``: every micrograph of a folder, with a progress bar and a summary CSV."""
    args = _batch_parser().parse_args(argv)

    from .workflows.batch import SUMMARY_NAME, iter_micrograph_files, process_paths

    if _bad_analysis_options(args):
        return EXIT_USAGE
    try:
        files = iter_micrograph_files(args.folder, recursive=args.recursive)
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print(f"error: no micrographs in {args.folder}", file=sys.stderr)
        return EXIT_BAD_INPUT
    bar, progress = _fraction_bar(f"{len(files)} files")

    try:
        rows = process_paths(files, args.out, model=args.model, settings=_settings(args), device=args.device,
                             frames=args.frames, json_summary=args.json, hspy=args.hspy, progress=progress,
                             tta=args.tta,
                             single_view=args.single_view,
                             log=lambda m: bar.write(m, file=sys.stderr if m.startswith("error") else sys.stdout))
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: the files finished so far are written", file=sys.stderr)
        return EXIT_ERROR
    bar.close()
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} files processed; summary in {args.out}/{SUMMARY_NAME}")
    if any(r.get("failure") == "model" for r in rows):
        return EXIT_ERROR  # the model or device failed: no file can be analysed with it
    return EXIT_OK if ok == len(rows) else EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atomlens`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "info":
        return cmd_info(argv[1:])
    if argv and argv[0] == "simulate":
        return cmd_simulate(argv[1:])
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    if argv and argv[0] == "detect":
        return cmd_detect(argv[1:])
    if argv and argv[0] == "batch":
        return cmd_batch(argv[1:])
    if argv and argv[0] == "gui":
        argv = argv[1:]
    args = _gui_parser().parse_args(argv)
    from .gui.app import run_gui

    return run_gui(
        args.files,
        sample=args.sample,
        channel=args.channel,
        exit_after_show=args.exit_after_show,
        screenshot=args.screenshot,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
