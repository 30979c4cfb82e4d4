"""Accuracy benchmark: optimal extraction vs the injected truth, and jwst's box beside it.

Run by hand (takes a few minutes on 2 cores)::

    python benchmarks/accuracy.py            # full run, prints a Markdown table
    python benchmarks/accuracy.py --quick    # fewer slits, for a smoke test

For each configuration and per-column S/N level it simulates NIRSpec MOS-like
s2d files (``MultiSlitModel``, gwcs, MJy/sr) with a curved trace, a PSF whose
FWHM doubles across the band, cosmic rays and pipeline-like data-derived
VAR_POISSON, then extracts the same file with

* ``OptimalExtract1dStep`` (fit_fwhm, fit_trace, Horne iteration; defaults otherwise),
* ``OptimalExtract1dStep`` with a single global kernel (no FWHM/trace fits),
* ``OptimalExtract1dStep`` with no parameters at all (what a user gets: the
  NIRSpec MOS PRISM mode defaults, every choice ``"auto"``; its background,
  where one is chosen, may be smooth along the dispersion, fewer terms than
  the oracle's, so it can score below 1),
* jwst's box extraction (``jwst.extract_1d.extract.run_extract1d``, the code
  behind ``Extract1dStep``) over the whole slit (its offline default) and over a
  tuned aperture of +-1.5 x the largest FWHM around the true trace.

Figures, against the truth:

* bias: median(F / F_true) - 1 over columns with true S/N >= 10;
* var/CRB: mean of (F - F_true)^2 / CRB over the columns no cosmic ray hit,
  where CRB is the variance of the Horne estimator given the *true* profile
  and variance (with the same polynomial background terms as the extraction);
* var/oracle: the same mean square error divided by that of the Horne
  estimator run with the true profile and variance on the *same* pixels (a
  paired ratio: the noise draw cancels, where var/CRB carries a sampling
  error of about +-0.02 at 20 slits);
* calib: std((F - F_true) / FLUX_ERROR) over the same clean columns;
* CR 3sig: fraction of the columns with a cosmic ray on the source (profile
  > 1e-3) recovered within 3 sigma;
* spurious sources: spectra besides the one source per slit (the step's
  multi-source detection is on; every simulated slit holds one source).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.core.horne import extract_columns, polynomial_basis
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

TO_JY = PIXEL_AREA_SR * 1e6
# Background degree of every optimal run and of the CRB (the generic default; the
# MOS PRISM mode default of -1 is overridden), free in every column as the CRB's
# (``bkg_smooth_order = -1``; under "auto" the criterion would choose it smooth along
# the dispersion, a sparser model than the oracle's, as the no-parameters run does).
BKG_ORDER = 2


@dataclass(frozen=True)
class Config:
    name: str
    shape: str
    fwhm: tuple[float, float]
    curvature: float
    cosmic_rays: int


CONFIGS = (
    Config("gaussian, FWHM x2, curved, CRs", "gaussian", (1.6, 3.2), 0.8, 30),
    Config("moffat, FWHM x2, curved, CRs", "moffat", (1.6, 3.2), 0.8, 30),
)
SNR_LEVELS = (3.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def simulate_set(config: Config, snr: float, n_slits: int, rng):
    sims = [
        simulate_slit(rng, n_disp=400, snr=snr, shape=config.shape, fwhm=config.fwhm,
                      curvature=config.curvature, slope=0.3,
                      center=float(rng.uniform(13.0, 17.0)), spectrum=np.ones(400),
                      cosmic_rays=config.cosmic_rays, poisson_from_data=True)
        for _ in range(n_slits)
    ]
    return sims


def oracle(sim):
    """The Horne estimate with the true profile and true variance, on the noisy data.

    Its ``variance`` (which does not depend on the data) is the CRB; its
    ``flux`` the oracle's estimate for var/oracle.
    """
    mask = ~np.isfinite(sim.data)
    return extract_columns(np.where(mask, np.nan, sim.data), sim.true_variance, sim.true_profile,
                           mask=mask, bkg_basis=polynomial_basis(sim.data.shape[0], BKG_ORDER))


def box_reference(sims, path: Path, half_width: float) -> Path:
    apertures = []
    for i, sim in enumerate(sims):
        lo = int(np.floor(np.min(sim.center) - half_width))
        hi = int(np.ceil(np.max(sim.center) + half_width))
        apertures.append({"id": str(i + 1), "region_type": "target", "xstart": 0,
                          "xstop": sim.data.shape[1] - 1, "ystart": max(lo, 1),
                          "ystop": min(hi, sim.data.shape[0] - 2)})
    path.write_text(json.dumps({"reftype": "EXTRACT1D", "apertures": apertures}))
    return path


def jwst_box(model, ref: str):
    from jwst.extract_1d.extract import run_extract1d

    return run_extract1d(model, extract_ref_name=ref, apcorr_ref_name=None)[0]


def main_spectra(x1d) -> tuple[list, int]:
    """The main source's spectrum of every slit, and how many other spectra came out."""
    main = [s for s in x1d.spec if getattr(s.meta, "optimal_extraction", None) is None
            or s.meta.optimal_extraction.main_source]
    return main, len(x1d.spec) - len(main)


def figures(x1d, sims, oracles) -> dict[str, float]:
    biased, mse, oracle, pulls, cr_ok = [], [], [], [], []
    spectra, extra = main_spectra(x1d)
    for spec, sim, best in zip(spectra, sims, oracles, strict=True):
        t = spec.spec_table
        flux, err = t["FLUX"] / TO_JY, t["FLUX_ERROR"] / TO_JY
        truth, crb = sim.flux, best.variance
        clean = ~sim.cosmic_rays.any(axis=0)
        good = np.isfinite(flux) & np.isfinite(crb) & clean
        biased.append((flux / truth)[good & (truth / np.sqrt(crb) >= 10)])
        mse.append(((flux - truth) ** 2 / crb)[good])
        oracle.append(((best.flux - truth) ** 2 / crb)[good])
        pulls.append(((flux - truth) / err)[good & (err > 0)])
        hit = np.unique(np.nonzero(sim.cosmic_rays & (sim.true_profile > 1e-3))[1])
        cr_ok.append(np.abs((flux[hit] - truth[hit]) / err[hit]) < 3)
    biased = np.concatenate(biased)
    return {
        "bias": float(np.median(biased) - 1) if biased.size else np.nan,
        "var_crb": float(np.mean(np.concatenate(mse))),
        "var_oracle": float(np.sum(np.concatenate(mse)) / np.sum(np.concatenate(oracle))),
        "calib": float(np.std(np.concatenate(pulls))),
        "cr": float(np.mean(np.concatenate(cr_ok))) if cr_ok else np.nan,
        "extra": extra,
    }


METHODS = ("optimal (fit_fwhm, fit_trace)", "optimal (global kernel)", "optimal (empirical)",
           "jwst box, whole slit", "jwst box, tuned aperture", "optimal defaults (no parameters)")


def run(n_slits: int, seed: int) -> list[tuple[str, float, str, dict]]:
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            for snr in SNR_LEVELS:
                sims = simulate_set(config, snr, n_slits, rng)
                path = Path(tmp) / "bench_s2d.fits"
                model = make_multislit(sims, filename=path.name)
                model.save(path)
                ref = box_reference(sims, Path(tmp) / "box.json", 1.5 * max(config.fwhm))
                ours = {"kernel": config.shape, "bkg_order": BKG_ORDER, "bkg_smooth_order": -1}
                outputs = {
                    METHODS[0]: OptimalExtract1dStep.call(str(path), fit_fwhm=True,
                                                          fit_trace=True, **ours),
                    METHODS[1]: OptimalExtract1dStep.call(str(path), fit_fwhm=False,
                                                          fit_trace=False, **ours),
                    METHODS[2]: OptimalExtract1dStep.call(str(path), kernel="empirical",
                                                          fit_fwhm=True, fit_trace=True,
                                                          bkg_order=BKG_ORDER,
                                                          bkg_smooth_order=-1),
                    METHODS[3]: jwst_box(model, "N/A"),
                    METHODS[4]: jwst_box(model, str(ref)),
                    METHODS[5]: OptimalExtract1dStep.call(str(path)),
                }
                oracles = [oracle(sim) for sim in sims]
                for method, x1d in outputs.items():
                    rows.append((config.name, snr, method, figures(x1d, sims, oracles)))
    return rows


def table(rows) -> str:
    lines = ["| configuration | S/N | method | bias (S/N>=10) | var/CRB | var/oracle | calib "
             "| CR within 3σ | spurious sources |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, snr, method, f in rows:
        bias = "—" if np.isnan(f["bias"]) else f"{100 * f['bias']:+.2f} %"
        lines.append(f"| {name} | {snr:g} | {method} | {bias} | {f['var_crb']:.3f} | "
                     f"{f['var_oracle']:.3f} | {f['calib']:.3f} | {100 * f['cr']:.0f} % | "
                     f"{f['extra']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-slits", type=int, default=20, help="slits per S/N level")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="4 slits per level")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # keep the table readable
    start = time.perf_counter()
    rows = run(4 if args.quick else args.n_slits, args.seed)
    print(table(rows))
    print(f"\n{args.n_slits if not args.quick else 4} slits x 400 columns per row; "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
