"""Bright sources: does FLUX_ERROR measure the noise, and does rejection keep the trace?

Run by hand (a few minutes on 2 cores)::

    python benchmarks/bright.py            # S/N 30, 100, 300, 1000, 3000
    python benchmarks/bright.py --quick    # 4 realisations per cell

For each PSF (a Moffat of index 2.5 and the tabulated example PSF, both
non-Gaussian) and column S/N (30-3000, flat-field error 0.01 % so the S/N is
reached), it simulates ``--n-real`` noise realisations of one slit (same
truth: flat spectrum, constant FWHM 2 px, straight trace) as the slits of one
NIRSpec MOS-like s2d, and extracts them through ``OptimalExtract1dStep``
with no parameters (the defaults, first) and with ``kernel = gaussian`` (a
template that does not match the PSF). Per cell it prints:

* err/scatter: median FLUX_ERROR over the rms, over columns, of the scatter of
  FLUX across the realisations (the true scatter; the target is 1 +- 0.1);
* factor: the mean error scale factor (``meta.optimal_extraction.error_scale``);
* outlier cols: fraction of columns with DQ OUTLIER (no cosmic ray is
  simulated, so every one is a good pixel rejected);
* bias: median(FLUX / truth) - 1 (the template's misfit, not the subject here).
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file
from optimal_extract1d.results import DQ_OUTLIER
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

TO_JY = PIXEL_AREA_SR * 1e6
SNRS = (30.0, 100.0, 300.0, 1000.0, 3000.0)
METHODS = (("defaults (no parameters)", {}), ("kernel=gaussian", {"kernel": "gaussian"}))
N_DISP = 150


def simulate(psf: str, snr: float, n_real: int, seed: int) -> list:
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1) if psf == "tabulated" else None
    shape = {"psf": table} if table is not None else {"shape": psf}
    return [
        simulate_slit(
            np.random.default_rng(seed + r),
            n_disp=N_DISP,
            snr=snr,
            spectrum=np.ones(N_DISP),
            fwhm=(2.0, 2.0),
            flat_error=1e-4,
            **shape,
        )
        for r in range(n_real)
    ]


def measure(sims: list, params: dict) -> dict:
    x1d = OptimalExtract1dStep.call(make_multislit(sims), **params)
    main = [s for s in x1d.spec if getattr(s.meta.optimal_extraction, "main_source", True)]
    flux = np.array([s.spec_table["FLUX"] for s in main])
    error = np.array([s.spec_table["FLUX_ERROR"] for s in main])
    dq = np.array([s.spec_table["DQ"] for s in main])
    factors = [s.meta.optimal_extraction.error_scale.factor for s in main]
    scatter = np.sqrt(np.mean(np.var(flux, axis=0, ddof=1)))
    return {
        "err/scatter": float(np.median(error) / scatter),
        "factor": float(np.mean(factors)),
        "outlier cols": float(np.mean(dq & DQ_OUTLIER > 0)),
        "bias": float(np.median(flux / (sims[0].flux * TO_JY)) - 1),
        "spectra": len(x1d.spec),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-real", type=int, default=12, help="noise realisations per cell")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="4 realisations per cell")
    args = parser.parse_args()
    n_real = 4 if args.quick else args.n_real
    logging.disable(logging.WARNING)
    print(f"{n_real} realisations x {N_DISP} columns per cell; target err/scatter 1 +- 0.1\n")
    print("| PSF | S/N | method | err/scatter | factor | outlier cols | bias | spectra |")
    print("|---|---|---|---|---|---|---|---|")
    start = time.time()
    for psf in ("moffat", "tabulated"):
        for snr in SNRS:
            sims = simulate(psf, snr, n_real, args.seed)
            for label, params in METHODS:
                m = measure(sims, params)
                mark = "" if abs(m["err/scatter"] - 1) <= 0.1 else " ✗"
                print(
                    f"| {psf} | {snr:.0f} | {label} | {m['err/scatter']:.3f}{mark} "
                    f"| {m['factor']:.3f} | {100 * m['outlier cols']:.1f} % "
                    f"| {100 * m['bias']:+.2f} % | {m['spectra']} |",
                    flush=True,
                )
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
