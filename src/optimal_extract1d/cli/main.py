"""The ``optimal-extract1d`` console script: ``demo``, ``simulate``, ``batch`` and ``params``.

This module only parses; the work is in `.cli.demo`, `.sim.models`, `.cli.batch`
and `.cli.effective`. The output directory is ``--output-dir`` everywhere, with
``--output_dir`` (strun's spelling) and ``--outdir`` accepted as aliases.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["main", "split_step_options"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optimal-extract1d",
        description="Horne optimal extraction of JWST slit spectra "
        "(the step itself runs as `strun optimal_extract_1d`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate a MOS s2d, extract it, compare with the truth")
    demo.add_argument(
        *_OUTPUT_DIR,
        dest="output_dir",
        type=Path,
        default=Path("optimal_extract1d_demo"),
        help="directory for the s2d, x1d and PNG (default: %(default)s)",
    )
    demo.add_argument("--n-slits", type=int, default=20, help="number of slits (default: 20)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    sim = sub.add_parser("simulate", help="write a synthetic NIRSpec MOS s2d file")
    sim.add_argument("output", type=Path, help="output file, e.g. sim_s2d.fits")
    sim.add_argument("--n-slits", type=int, default=20, help="number of slits (default: 20)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sim.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=(5.0, 80.0),
        metavar=("MIN", "MAX"),
        help="peak S/N range per slit (default: 5 80)",
    )
    sim.add_argument(
        "--nods", action="store_true", help="add negative nod copies of the trace (3-shutter nod)"
    )
    batch = sub.add_parser(
        "batch",
        help="extract many s2d files in parallel; write one x1d each and a summary CSV",
        epilog="Any other --name value (or --name=value) is passed to the step as a "
        "parameter, e.g. --bkg_order 1 --kernel moffat.",
    )
    batch.add_argument("inputs", nargs="+", type=Path, help="s2d files")
    batch.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    batch.add_argument(
        *_OUTPUT_DIR,
        dest="output_dir",
        type=Path,
        default=Path("."),
        help="x1d directory (default: .)",
    )
    batch.add_argument(
        "--summary", type=Path, default=None, help="CSV (default: OUTPUT_DIR/batch_summary.csv)"
    )
    batch.add_argument(
        "--scheduler", default=None, help="Dask scheduler address: run the files on that cluster"
    )
    rerun = batch.add_mutually_exclusive_group()
    rerun.add_argument(
        "--resume",
        action="store_true",
        help="keep every x1d of an earlier batch that is complete, newer than its input and "
        "made with the same parameters; run the other files",
    )
    rerun.add_argument(
        "--overwrite",
        action="store_true",
        help="extract every file again, replacing existing x1d files (the default, without "
        "the note that lists them)",
    )
    params = sub.add_parser(
        "params",
        help="print the parameters a run on FILE would use, and where each comes from",
        epilog="Any --name value (or --name=value) is a parameter you would set, e.g. "
        "--bkg_order 1; each value is marked user, mode (the input's mode defaults) or "
        "spec default.",
    )
    params.add_argument("file", type=Path, help="s2d file")
    return parser


# The output directory: one spelling, and its aliases (strun's, the demo's former one).
_OUTPUT_DIR = ("--output-dir", "--output_dir", "--outdir")
_BATCH_OPTIONS = ("--workers", *_OUTPUT_DIR, "--summary", "--scheduler")
_BATCH_FLAGS = ("--resume", "--overwrite")
_WITH_STEP_OPTIONS = ("batch", "params")


def split_step_options(tokens: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Separate step parameters (``--name value`` / ``--name=value``) from batch arguments.

    Parameters
    ----------
    tokens : sequence of str
        The arguments after ``batch``.

    Returns
    -------
    batch_tokens : list of str
        Inputs and the batch's own options, for argparse.
    step_options : dict
        Parameter name (dashes read as underscores) -> value string.

    Raises
    ------
    SystemExit
        Via argparse-style usage error when an option has no value.
    """
    batch_tokens, options = [], {}
    it = iter(tokens)
    for token in it:
        name, eq, value = token.partition("=")
        if (
            not token.startswith("--")
            or name in _BATCH_OPTIONS
            or token in ("--help", "-h", *_BATCH_FLAGS)
        ):
            batch_tokens.append(token)
            if name in _BATCH_OPTIONS and not eq:
                batch_tokens.append(next(it, ""))
            continue
        if not eq:
            value = next(it, None)
            if value is None:
                _parser().error(f"step parameter {token} needs a value")
        options[name[2:].replace("-", "_")] = value
    return batch_tokens, options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options: dict[str, str] = {}
    if argv[:1] and argv[0] in _WITH_STEP_OPTIONS:
        rest, options = split_step_options(argv[1:])
        argv = [argv[0], *rest]
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "batch":
        return _batch(args, options)
    if args.command == "params":
        return _params(args, options)
    return _demo(args)


def _params(args: argparse.Namespace, options: dict[str, str]) -> int:
    from ..errors import OptimalExtractError
    from .effective import effective_parameters, format_parameters

    try:
        effective = effective_parameters(args.file, options)
    except OptimalExtractError as err:
        print(f"optimal-extract1d params: error: {err}", file=sys.stderr)
        return 2
    print(format_parameters(effective))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from ..sim.models import make_s2d_file

    extra = {}
    if args.nods:  # a 3-shutter slitlet nod combined over its three exposures
        extra = {
            "nod_offsets": (-5.3, 5.3, -10.6, 10.6),
            "nod_scale": (1 / 3, 1 / 3, 1 / 6, 1 / 6),
            "nod_type": "3-SHUTTER-SLITLET",
        }
    result = make_s2d_file(
        args.output,
        np.random.default_rng(args.seed),
        n_slits=args.n_slits,
        snr_range=tuple(args.snr),
        **extra,
    )
    print(f"wrote {result.path} ({len(result.slits)} slits)")
    return 0


def _batch(args: argparse.Namespace, options: dict[str, str]) -> int:
    from ..errors import OptimalExtractError
    from .batch import (
        BatchInterrupted,
        Progress,
        check_parameters,
        format_summary,
        run_batch,
        write_summary,
        x1d_path,
    )

    summary = args.summary or args.output_dir / "batch_summary.csv"
    try:
        parameters = check_parameters(options)
        if not (args.resume or args.overwrite):
            _note_replaced([x1d_path(p, args.output_dir) for p in args.inputs])
        results = run_batch(
            args.inputs,
            output_dir=args.output_dir,
            parameters=parameters,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=Progress(len(args.inputs)).update,
            resume=args.resume,
        )
    except BatchInterrupted as stop:
        write_summary(stop.results, summary)
        print(file=sys.stderr)
        print(format_summary(stop.results))
        print(f"summary written to {summary}")
        print(
            f"optimal-extract1d batch: interrupted by {stop}; "
            "run the same command with --resume to finish",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except OptimalExtractError as err:
        print(f"optimal-extract1d batch: error: {err}", file=sys.stderr)
        return 2
    write_summary(results, summary)
    print(format_summary(results))
    print(f"summary written to {summary}")
    return 1 if any(r.error for r in results) else 0


def _note_replaced(outputs: list[str]) -> None:
    """Say which x1d files of an earlier run this batch will replace."""
    existing = [p for p in outputs if Path(p).exists()]
    if existing:
        print(
            f"optimal-extract1d batch: {len(existing)} x1d files exist and will be replaced "
            f"(e.g. {existing[0]}); --resume keeps the up-to-date ones",
            file=sys.stderr,
        )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.output_dir, n_slits=args.n_slits, seed=args.seed)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
