"""The ``optimal-extract1d`` console script: ``demo`` and ``simulate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optimal-extract1d",
        description="Horne optimal extraction of JWST slit spectra "
        "(the step itself runs as `strun optimal_extract_1d`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate a MOS s2d, extract it, compare with the truth")
    demo.add_argument(
        "--outdir",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    return _demo(args)


def _simulate(args: argparse.Namespace) -> int:
    from .simulate_models import make_s2d_file

    extra = {"nod_offsets": (-5.0, 5.0)} if args.nods else {}
    result = make_s2d_file(
        args.output,
        np.random.default_rng(args.seed),
        n_slits=args.n_slits,
        snr_range=tuple(args.snr),
        **extra,
    )
    print(f"wrote {result.path} ({len(result.slits)} slits)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.outdir, n_slits=args.n_slits, seed=args.seed)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
