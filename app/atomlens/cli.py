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

from . import __version__  # noqa: E402

#: Exit codes shared by all sub-commands.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3

SUBCOMMANDS = ("info", "simulate", "gui")


def _gui_parser() -> argparse.ArgumentParser:
    from .samples import SAMPLES

    p = argparse.ArgumentParser(
        prog="atomlens",
        description="Find, class and correct atom columns in STEM and STM images. "
        "With no command, starts the desktop application.",
        epilog="Commands: 'atomlens info FILE' prints what AtomLens reads from a file; "
        "'atomlens simulate' writes a simulated data set. "
        "Run 'atomlens COMMAND --help' for its options.",
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


def cmd_info(argv: list[str]) -> int:
    """``atomlens info``: load each file headless and print its calibration and notes."""
    args = _info_parser().parse_args(argv)
    from .io import LoadError, LoadWarning, load

    status = EXIT_OK
    for f in args.files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LoadWarning)
            try:
                mg = load(f, channel=args.channel)
            except LoadError as exc:
                print(f"error: {exc}", file=sys.stderr)
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
        del caught
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

    from .sim.dataset import write_dataset
    from .sim.simulate import SimConfig

    try:
        cfg = SimConfig.from_any(args.config)
        from .sim import simulate

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atomlens`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "info":
        return cmd_info(argv[1:])
    if argv and argv[0] == "simulate":
        return cmd_simulate(argv[1:])
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
