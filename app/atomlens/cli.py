"""The ``atomlens`` command: the GUI by default, plus headless sub-commands.

    atomlens [FILE ...]                 open files in the GUI
    atomlens --sample sto-haadf         open a bundled sample
    atomlens info FILE [--channel C]    print what AtomLens reads from a file (no GUI)

``detect``, ``simulate`` and ``train`` are added by the analysis layers.
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

SUBCOMMANDS = ("info", "gui")


def _gui_parser() -> argparse.ArgumentParser:
    from .samples import SAMPLES

    p = argparse.ArgumentParser(
        prog="atomlens",
        description="Find, class and correct atom columns in STEM and STM images. "
        "With no command, starts the desktop application.",
        epilog="Commands: 'atomlens info FILE' prints what AtomLens reads from a file. "
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atomlens`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "info":
        return cmd_info(argv[1:])
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
