"""Speed benchmark: optimal extraction with all fits on vs jwst's box extraction.

Run by hand (a few minutes)::

    python benchmarks/speed.py              # 100 slits, 3 rounds
    python benchmarks/speed.py --slits 20 --rounds 1

It simulates a 100-slit NIRSpec MOS PRISM ``MultiSlitModel`` s2d (slits 31 x
400 pixels, a gwcs like resample_spec's, 3-shutter nod residuals and the
dither metadata that goes with them), saves it, and times, alternating the
order in every round, each in a fresh Python process (wall time of the
whole call, peak resident memory):

1. jwst ``Extract1dStep`` (box) on the file, offline (no extract1d or
   apcorr reference: the whole slit; STPIPE_DISABLE_CRDS_STEPPARS=True and
   the CRDS context lookup at the end of the step stubbed out, as both
   would fail without a server);
2. ``OptimalExtract1dStep`` with its defaults (mode defaults for NIRSpec MOS
   PRISM);
3. ``OptimalExtract1dStep`` with fit_fwhm, fit_trace, nod modelling and
   outlier rejection on;
4. the floor: opening the file with stdatamodels and evaluating every slit's
   WCS once on its pixel grid;
5. specreduce ``HorneExtract`` per slit on the same arrays (Gaussian trace
   profile at the slit's fitted position; time of the extraction calls).

It prints medians, peak memory, per-slit milliseconds above the floor, and
the ratios to jwst's box: of the medians, and the median of every round's
own ratio (each method above that round's floor over the box's), which a
host whose speed drifts between rounds disturbs less.

Before the rounds it byte-compiles this package (``compileall``, as pip does
for every package it installs from a wheel), so that every method imports
compiled code. Without it, a source checkout on a machine with
``PYTHONDONTWRITEBYTECODE`` set compiles the package's 63 modules in every
run (their import: 0.13-0.17 s from source, 0.05-0.07 s compiled; about
0.9 ms per slit on 100 slits), a cost the installed jwst never pays;
``--no-compile`` keeps that cost in. Beside the wall it prints each
method's CPU time (user + system, all threads).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

RUNNERS = {
    "jwst box": """
        from stpipe import crds_client
        crds_client.get_context_used = lambda observatory: "offline"
        from jwst.extract_1d import Extract1dStep
        Extract1dStep.call(PATH, override_extract1d="N/A", override_apcorr="N/A", override_psf="N/A",
                           apply_apcorr=False, configure_log=False)
    """,
    "optimal defaults": """
        from optimal_extract1d import OptimalExtract1dStep
        OptimalExtract1dStep.call(PATH, configure_log=False)
    """,
    "optimal all fits": """
        from optimal_extract1d import OptimalExtract1dStep
        OptimalExtract1dStep.call(PATH, fit_fwhm=True, fit_trace=True, model_nods=True,
                                  max_iter=5, reject_sigma=5.0, configure_log=False)
    """,
    "floor": """
        import numpy as np
        from stdatamodels.jwst import datamodels
        with datamodels.open(PATH) as model:
            for slit in model.slits:
                ny, nx = slit.data.shape
                y, x = np.mgrid[:ny, :nx]
                slit.meta.wcs(x, y)
    """,
    "specreduce Horne": """
        import time
        import numpy as np
        import astropy.units as u
        from astropy.nddata import VarianceUncertainty
        from specutils import Spectrum
        from specreduce.extract import HorneExtract
        from specreduce.tracing import FlatTrace
        from stdatamodels.jwst import datamodels
        elapsed = 0.0
        with datamodels.open(PATH) as model:
            for slit in model.slits:
                data = np.nan_to_num(np.asarray(slit.data, float))
                var = np.asarray(slit.var_rnoise + slit.var_poisson, float)
                mask = ~np.isfinite(slit.data) | ~(var > 0)
                var = np.where(mask, 1.0, var)
                image = Spectrum(flux=data * u.MJy, uncertainty=VarianceUncertainty(var * u.MJy**2),
                                 mask=mask, spectral_axis=np.arange(data.shape[1]) * u.pix)
                t0 = time.perf_counter()
                trace = FlatTrace(image, float(np.nanargmax(np.nanmedian(slit.data, axis=1))))
                HorneExtract(image, trace).spectrum
                elapsed += time.perf_counter() - t0
        print("EXTRACTION_SECONDS", elapsed)
    """,
}


def make_file(path: Path, n_slits: int) -> None:
    from optimal_extract1d.sim.models import make_s2d_file

    nods = dict(nod_offsets=(-5.3, 5.3, -10.6, 10.6), nod_scale=(1 / 3, 1 / 3, 1 / 6, 1 / 6))
    make_s2d_file(path, np.random.default_rng(0), n_slits=n_slits, snr_range=(5, 80),
                  nod_type="3-SHUTTER-SLITLET", **nods)


def compile_package() -> None:
    """Byte-compile optimal_extract1d in place, as pip does when it installs a wheel."""
    import optimal_extract1d

    compileall.compile_dir(Path(optimal_extract1d.__file__).parent, quiet=1)


def run_one(name: str, path: Path) -> dict:
    code = textwrap.dedent(RUNNERS[name]).replace("PATH", repr(str(path)))
    wrapper = textwrap.dedent(f"""
        import json, logging, resource, time, warnings
        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")
        _cpu = lambda u: u.ru_utime + u.ru_stime
        _usage = resource.getrusage(resource.RUSAGE_SELF)
        _start = time.perf_counter()
        exec({code!r})
        _wall = time.perf_counter() - _start
        _end = resource.getrusage(resource.RUSAGE_SELF)
        peak = _end.ru_maxrss / 1024.0
        print("RESULT", json.dumps({{"wall": _wall, "cpu": _cpu(_end) - _cpu(_usage),
                                    "peak_mb": peak}}))
    """)
    env = {**os.environ, "STPIPE_DISABLE_CRDS_STEPPARS": "True"}  # jwst's step, offline
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    out = proc.stdout
    result = json.loads(out.split("RESULT", 1)[1])
    if "EXTRACTION_SECONDS" in out:
        result["extraction"] = float(out.split("EXTRACTION_SECONDS", 1)[1].split()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slits", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--no-compile", action="store_true",
                        help="do not byte-compile the package before the rounds")
    args = parser.parse_args()
    if not args.no_compile:
        compile_package()
    names = [n for n in RUNNERS if n not in args.skip]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speed_s2d.fits"
        make_file(path, args.slits)
        runs = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                runs[name].append(run_one(name, path))
    report(runs, args.slits)


def medians(runs: dict, key: str) -> dict[str, float]:
    """The median over the rounds of one measured quantity, per method."""
    return {n: float(np.median([r[key] for r in v])) for n, v in runs.items()}


def per_round_ratios(runs: dict, name: str) -> list[float]:
    """``name``'s wall over the box's, both above the floor of the same round."""
    return [
        (r["wall"] - f["wall"]) / (b["wall"] - f["wall"])
        for r, b, f in zip(runs[name], runs["jwst box"], runs["floor"], strict=True)
    ]


def report(runs: dict, n_slits: int) -> None:
    wall, peak = medians(runs, "wall"), medians(runs, "peak_mb")
    floor = wall.get("floor", 0.0)
    box = wall.get("jwst box")
    print(f"| method ({n_slits} slits) | wall (s) | peak memory (MB) | ms/slit above floor "
          "| wall / jwst box | above floor / jwst box's |")
    print("|---|---|---|---|---|---|")
    for name in runs:
        above = (wall[name] - floor) / n_slits * 1e3
        ratio = f"{wall[name] / box:.2f}" if box else "—"
        above_ratio = f"{(wall[name] - floor) / (box - floor):.2f}" if box and name != "floor" \
            else "—"
        print(f"| {name} | {wall[name]:.2f} | {peak[name]:.0f} | {above:.1f} | {ratio} | "
              f"{above_ratio} |")
    cpu = medians(runs, "cpu")
    if "jwst box" in cpu:
        cfloor, cbox = cpu.get("floor", 0.0), cpu["jwst box"]
        print("\nCPU time (user + system, all threads; time spent waiting for a core is "
              "not counted):")
        for name in runs:
            above = f"{(cpu[name] - cfloor) / (cbox - cfloor):.2f}" if name != "floor" else "—"
            print(f"- {name}: {cpu[name]:.2f} s, {(cpu[name] - cfloor) / n_slits * 1e3:.1f} "
                  f"ms/slit above the floor's, {above} × the box's")
    if "jwst box" in runs and "floor" in runs:
        print("\nPer round (each method over the box, above that round's floor; a host whose "
              "speed drifts between rounds moves all methods of a round alike):")
        for name in runs:
            if name in ("floor", "jwst box"):
                continue
            ratios = per_round_ratios(runs, name)
            print(f"- {name}: median {np.median(ratios):.2f}, rounds "
                  + ", ".join(f"{r:.2f}" for r in ratios))
    if "specreduce Horne" in runs:
        ext = float(np.median([r["extraction"] for r in runs["specreduce Horne"]]))
        print(f"\nspecreduce HorneExtract: {ext / n_slits * 1e3:.1f} ms per slit in its calls")


if __name__ == "__main__":
    main()
