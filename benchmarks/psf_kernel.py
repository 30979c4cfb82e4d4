"""PSF reference kernel vs analytic kernels on slits whose true profile is the example PSF.

Run by hand (about a minute)::

    python benchmarks/psf_kernel.py

It simulates a NIRSpec PRISM-like MOS s2d with 10 slits (S/N 50 per column at the
peak, 300 columns, flat spectrum, straight traces at random rows) whose source
profile is drawn from ``reference_files/example_psf_nirspec_prism.fits`` (cubic
interpolation, not the kernel's), extracts it through ``OptimalExtract1dStep`` with
several kernels and prints, per kernel: the mean over slits of median(F / F_true),
the worst slit's |median - 1| and std((F - F_true) / FLUX_ERROR). The table in
docs/psf.rst comes from this script.
"""

from __future__ import annotations

import logging

import numpy as np

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

KERNELS = (
    {"kernel": "psf", "psf_file": str(EXAMPLE_PSF)},
    {"kernel": "psf", "psf_file": str(EXAMPLE_PSF), "fit_fwhm": True, "fit_trace": True},
    {"kernel": "gaussian"},
    {"kernel": "gaussian", "fit_fwhm": True, "fit_trace": True},
    {"kernel": "moffat", "fit_fwhm": True, "fit_trace": True},
)


def main() -> None:
    logging.disable(logging.CRITICAL)
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    rng = np.random.default_rng(2025)
    sims = [
        simulate_slit(
            rng,
            n_disp=300,
            snr=50.0,
            psf=table,
            spectrum=np.ones(300),
            center=float(rng.uniform(12, 18)),
        )
        for _ in range(10)
    ]
    model = make_multislit(sims)
    print("| kernel | mean F/F_true | worst slit | pull std |")
    print("|---|---|---|---|")
    for kwargs in KERNELS:
        result = OptimalExtract1dStep.call(model, **kwargs)
        truth = [sim.flux * PIXEL_AREA_SR * 1e6 for sim in sims]
        ratio = np.array(
            [np.median(s.spec_table["FLUX"] / t) for s, t in zip(result.spec, truth, strict=True)]
        )
        pulls = np.concatenate(
            [
                (s.spec_table["FLUX"] - t) / s.spec_table["FLUX_ERROR"]
                for s, t in zip(result.spec, truth, strict=True)
            ]
        )
        label = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "psf_file")
        print(
            f"| {label} | {ratio.mean():.3f} | {100 * np.abs(ratio - 1).max():.1f} % "
            f"| {np.std(pulls):.2f} |"
        )


if __name__ == "__main__":
    main()
