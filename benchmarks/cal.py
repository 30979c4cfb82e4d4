"""The cal path (issue 13) beside the s2d path: simulated nods and real CEERS 933.

Run by hand (a few minutes on 2 cores)::

    python benchmarks/cal.py            # everything
    python benchmarks/cal.py sim        # simulated part only
    python benchmarks/cal.py ceers      # real-data part only (needs ../shared)
    python benchmarks/cal.py inject     # only the source injected into the real cut-outs
    python benchmarks/cal.py lines      # only the line fluxes without a profile

**Simulated** (`optimal_extract1d.sim.calsim`): three raw nod exposures of one
point source (Gaussian PSF, FWHM 1.6 -> 2.6 px across the band, tilted and
curved trace, tilted lines of equal wavelength, sky 0.5x the source's peak
pixel with bar shadows), at three S/N levels, ``N_REAL`` realizations each.

* cal path: ``OptimalExtract1dStep`` on the three exposures, **no parameters**
  (then ``error_scale = none`` for the calibration without rescaling);
* oracle: the same estimator (`.core.calsums.combine`, sky per pixel profiled
  out) with the true profile, on the same pixels;
* s2d path: the nod-subtracted exposures resampled onto a rectified grid by
  linear interpolation and averaged (a stand-in for resample_spec, which
  needs the full NIRSpec WCS), then ``OptimalExtract1dStep`` with no parameters.

bias is mean(F)/mean(F_true) - 1 over the bins, var/oracle the mean squared
error over the oracle's, calib std((F - F_true) / FLUX_ERROR).

**CEERS 933** (``../shared/data/ceers-933``): the cal path on the three
cut-outs, and the s2d path on jwst's ResampleSpecStep product of the
nod-subtracted exposures: line fluxes of [OIII]+Hbeta (2.62 um) and H-alpha
(3.43 um), median S/N per resolution element (2 bins), the residual error
factor, a point source injected into the real cut-outs (calib), and timing.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.interpolate import griddata

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.core.calsums import combine
from optimal_extract1d.io import calinputs
from optimal_extract1d.pipeline import calpath
from optimal_extract1d.psf.pointwise import pixel_profile
from optimal_extract1d.sim.calmodels import make_cal_models
from optimal_extract1d.sim.calsim import simulate_cal

N_REAL = 5
SNRS = (10.0, 30.0, 100.0)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ceers-933"
LINES = {"[OIII]+Hb 2.62": 2.62, "Ha 3.43": 3.43}
# rest-frame lines (um) of a z = 4.23 star-forming galaxy, masked in the injection test
REST_LINES = (0.3727, 0.3869, 0.4102, 0.4340, 0.4861, 0.4959, 0.5007, 0.5876, 0.6300, 0.6563)
REST_LINES += (0.6584, 0.6717, 0.6731, 0.9069, 0.9531)
REDSHIFT = 4.23


def _container(models):
    from jwst.datamodels import ModelContainer

    return ModelContainer(models)


# --- simulated -----------------------------------------------------------------------


def _oracle(sim, models):
    """The estimator with the true profile and variance on the same pixels."""
    ex = calinputs.read_exposures(_container(models))
    grid = calpath.default_grid(ex[0])
    st = calpath.stack(ex, True)
    lam = st["wavelength"][0]
    bins = np.broadcast_to(calpath._bins(lam, grid), st["data"].shape)
    truth = np.stack([e.profile.ravel() for e in sim.exposures])
    scale = np.array([[e.flux_scale] for e in ex])
    variances = (st["var_poisson"], st["var_rnoise"], st["var_flat"])
    usable = ~st["mask"] & (bins >= 0) & np.isfinite(truth)
    sums = combine(
        np.nan_to_num(truth),
        st["data"],
        variances,
        usable,
        bins,
        grid.size,
        mode="nod",
        reject_sigma=0,
        max_iter=0,
    )
    assert np.allclose(scale, scale[0])
    return grid, sums.flux


def _rectified_s2d(sim, models, grid):
    """Nod-subtracted exposures interpolated onto (along-slit, wavelength) and averaged."""
    from stdatamodels.jwst import datamodels

    from optimal_extract1d.sim.models import slit_wcs

    ex = calinputs.read_exposures(_container(models))
    n = len(ex)
    rows = np.arange(-12, 13, dtype=float)
    gs, gl = np.meshgrid(rows, grid, indexing="ij")
    data, var = [], []
    raw = np.stack([e.data for e in ex])
    for i, e in enumerate(ex):
        x = raw[i] - (raw.sum(axis=0) - raw[i]) / (n - 1)
        v = e.variance + sum(ex[j].variance for j in range(n) if j != i) / (n - 1) ** 2
        ok = ~e.mask & np.isfinite(x)
        # wavelengths scaled so one column ~ one row in the triangulation
        step = np.median(np.diff(grid))
        pts = np.column_stack([e.along_slit[ok], e.wavelength[ok] / step])
        data.append(griddata(pts, x[ok], (gs, gl / step), method="linear"))
        var.append(griddata(pts, v[ok], (gs, gl / step), method="linear"))
    to_sb = 1.0 / ex[0].flux_scale
    s2d = datamodels.SlitModel()
    s2d.data = (np.nanmean(data, axis=0) * to_sb).astype(np.float32)
    vmean = np.nanmean(var, axis=0) / n * to_sb**2
    s2d.var_poisson = vmean.astype(np.float32)
    s2d.var_rnoise = np.zeros_like(vmean, np.float32)
    s2d.var_flat = np.zeros_like(vmean, np.float32)
    s2d.err = np.sqrt(vmean).astype(np.float32)
    s2d.meta.wcs = slit_wcs(grid, rows.size)
    s2d.meta.wcsinfo.dispersion_direction = 1
    s2d.meta.bunit_data = "MJy/sr"
    s2d.meta.photometry.pixelarea_steradians = sim.pixel_area
    s2d.meta.exposure.type = "NRS_MSASPEC"
    s2d.meta.instrument.name = "NIRSPEC"
    s2d.meta.instrument.grating = "PRISM"
    s2d.meta.dither.nod_type = "3-SHUTTER-SLITLET"
    s2d.meta.cal_step.resample = "COMPLETE"
    s2d.name = "1"
    return s2d


def _scores(flux, err, truth, oracle=None):
    ok = np.isfinite(flux) & np.isfinite(truth) & (err > 0)
    if oracle is not None:
        ok &= np.isfinite(oracle)
    out = {
        "bias": np.mean(flux[ok]) / np.mean(truth[ok]) - 1.0,
        "calib": np.std((flux[ok] - truth[ok]) / err[ok]),
        "mse": np.mean((flux[ok] - truth[ok]) ** 2),
    }
    if oracle is not None:
        out["mse_oracle"] = np.mean((oracle[ok] - truth[ok]) ** 2)
    return out


def simulated() -> None:
    logging.disable(logging.CRITICAL)
    print("## Simulated: three raw nod exposures (Gaussian PSF, FWHM 1.6-2.6 px)\n")
    print("| S/N (1 exp, 1 col) | method | bias | var/oracle | calib (error_scale none) |")
    print("|---|---|---|---|---|")
    for snr in SNRS:
        acc = {k: [] for k in ("cal", "cal_none", "s2d", "s2d_none", "oracle")}
        for seed in range(N_REAL):
            sim = simulate_cal(np.random.default_rng(100 + seed), snr=snr)
            models = make_cal_models(sim)
            grid, oracle = _oracle(sim, models)
            truth = sim.true_flux(grid)
            for key, kw in (("cal", {}), ("cal_none", {"error_scale": "none"})):
                t = OptimalExtract1dStep.call(_container(models), **kw).spec[0].spec_table
                acc[key].append(_scores(t["FLUX"], t["FLUX_ERROR"], truth, oracle))
            s2d = _rectified_s2d(sim, models, grid)
            for key, kw in (("s2d", {}), ("s2d_none", {"error_scale": "none"})):
                t = OptimalExtract1dStep.call(s2d, **kw).spec[0].spec_table
                tr = sim.true_flux(t["WAVELENGTH"])
                orc = np.interp(t["WAVELENGTH"], grid, oracle)
                acc[key].append(_scores(t["FLUX"], t["FLUX_ERROR"], tr, orc))
        for label, key, none in (
            ("cal path, no parameters", "cal", "cal_none"),
            ("s2d path (interpolated stand-in), no parameters", "s2d", "s2d_none"),
        ):
            bias = np.mean([s["bias"] for s in acc[key]])
            ratio = np.sum([s["mse"] for s in acc[key]]) / np.sum(
                [s["mse_oracle"] for s in acc[key]]
            )
            calib_none = np.mean([s["calib"] for s in acc[none]])
            calib = np.mean([s["calib"] for s in acc[key]])
            print(
                f"| {snr:.0f} | {label} | {100 * bias:+.2f} % | {ratio:.3f} | "
                f"{calib_none:.3f} (scaled: {calib:.3f}) |"
            )
    print()


# --- CEERS 933 ---------------------------------------------------------------------


def _line_flux(t, center, half=0.06):
    w, f, e = t["WAVELENGTH"], t["FLUX"], t["FLUX_ERROR"]
    near = (np.abs(w - center) < half) & np.isfinite(f)
    side = (np.abs(w - center) > 1.5 * half) & (np.abs(w - center) < 3 * half) & np.isfinite(f)
    return np.sum(f[near] - np.median(f[side])), np.sqrt(np.sum(e[near] ** 2))


def _snr_per_resolution_element(t):
    f, e = np.asarray(t["FLUX"]), np.asarray(t["FLUX_ERROR"])
    ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
    f, e = f[ok], e[ok]
    n = f.size // 2 * 2
    pair_f = f[:n].reshape(-1, 2).sum(axis=1)
    pair_e = np.sqrt((e[:n] ** 2).reshape(-1, 2).sum(axis=1))
    return float(np.median(pair_f / pair_e))


def _injected_calib(files) -> None:
    """A point source of known spectrum added to the real raw cut-outs, then extracted."""
    from stdatamodels.jwst import datamodels

    models = [datamodels.open(str(f)) for f in files]
    base = OptimalExtract1dStep.call(_container([m.copy() for m in models]), error_scale="none")
    t0 = base.spec[0].spec_table
    meta = base.spec[0].meta.optimal_extraction.psf.instance
    ex = calinputs.read_exposures(_container(models))
    # the real source, smoothed (its noise is ~5x lower after a 31-bin median), is part of the truth
    from scipy.ndimage import median_filter

    real = median_filter(np.nan_to_num(np.asarray(t0["FLUX"])), 31, mode="nearest")
    rng = np.random.default_rng(7)
    pulls = {"none": [], "single": [], "per_bin": []}
    waves = []
    for _ in range(5):
        level = 2e-7 * (1.0 + 0.2 * rng.normal())  # Jy: column S/N ~10-20 per exposure
        injected = []
        for i, (m, e) in enumerate(zip(models, ex, strict=True)):
            c = m.copy()
            prof = pixel_profile("gaussian", e.along_slit - meta["exposure_offsets_px"][i], 2.0)
            add = np.nan_to_num(level * prof) / e.flux_scale
            c.data = (c.data + add).astype(np.float32)
            injected.append(c)
        none = OptimalExtract1dStep.call(_container(injected), error_scale="none")
        scaled = OptimalExtract1dStep.call(_container(injected))
        single = scaled.spec[0].meta.optimal_extraction.error_scale.measured_factor
        w = np.asarray(none.spec[0].spec_table["WAVELENGTH"])
        lines = np.array(REST_LINES) * (1 + REDSHIFT)
        away = np.all([np.abs(w - c) > 0.06 for c in lines], axis=0)
        runs_meta = scaled.spec[0].meta.optimal_extraction.error_scale.instance["by_wavelength"]
        centers = [np.mean(r["wavelength_um"]) for r in runs_meta]
        per_bin = np.interp(w, centers, [r["factor"] for r in runs_meta])
        runs = (("none", none, 1.0), ("single", none, single), ("per_bin", none, per_bin))
        for key, x1d, k in runs:
            t = x1d.spec[0].spec_table
            ok = np.isfinite(t["FLUX"]) & away & (w > 0.8) & (w < 5.1)
            pull = (np.asarray(t["FLUX"]) - level - real) / (k * np.asarray(t["FLUX_ERROR"]))
            pull = np.asarray(pull)
            pulls[key].append(pull[ok])
        waves.append(w[ok])
    w = np.concatenate(waves)
    print(
        "Injected point source (Gaussian, FWHM 2 px, ~2e-7 Jy, 5 draws; bins within 0.06 um "
        "of the galaxy's lines at z = 4.23 left out): std((F - F_true)/FLUX_ERROR), robust "
        "(1.4826 MAD) in brackets\n"
    )
    print("| errors | all | < 2.8 um | > 2.8 um |")
    print("|---|---|---|---|")
    for key, label in (
        ("none", "error_scale = none"),
        ("single", "one factor for the spectrum (default)"),
        ("per_bin", "factor per run of wavelength (measured, not applied)"),
    ):
        p = np.concatenate(pulls[key])
        cells = []
        for sel in (np.ones(p.size, bool), w < 2.8, w >= 2.8):
            q = p[sel]
            robust = 1.4826 * np.median(np.abs(q - np.median(q)))
            cells.append(f"{np.std(q):.3f} ({robust:.3f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


def _model_free_lines(files) -> None:
    """Line fluxes with no profile: row sums of the raw exposures, continuum from side bands.

    In every row of every raw exposure a straight line in wavelength, fitted to
    the pixels 1.5-3 half-widths from the line, is subtracted from the pixels
    within the half-width (0.06 um) and the rest summed: sky and continuum
    go, no nod subtraction is needed, and the sum over rows holds all the
    line's light in the slit, whatever its spatial shape. Rows are counted
    within 3 px, 5 px of the source (the fitted offsets) or all of them; the
    three exposures are averaged with inverse-variance weights.
    """
    from stdatamodels.jwst import datamodels

    models = [datamodels.open(str(f)) for f in files]
    x1d = OptimalExtract1dStep.call(_container([m.copy() for m in models]))
    offsets = x1d.spec[0].meta.optimal_extraction.psf.exposure_offsets_px
    ex = calinputs.read_exposures(_container(models))
    print("Line fluxes without a profile (row sums of the raw exposures, Jy):\n")
    print("| line | rows within 3 px | within 5 px | whole slit |")
    print("|---|---|---|---|")
    for name, center in LINES.items():
        cells = []
        for reach in (3.0, 5.0, np.inf):
            sums, variances = [], []
            for e, offset in zip(ex, offsets, strict=True):
                var = e.var_poisson + e.var_rnoise + e.var_flat
                total, total_var = 0.0, 0.0
                for r in range(e.data.shape[0]):
                    lam, dat, v = e.wavelength[r], e.data[r], var[r]
                    ok = np.isfinite(lam) & np.isfinite(dat) & np.isfinite(v) & ~e.mask[r]
                    near = ok & (np.abs(lam - center) < 0.06)
                    side = ok & (np.abs(lam - center) > 0.09) & (np.abs(lam - center) < 0.18)
                    if not near.any() or side.sum() < 4:
                        continue
                    if np.nanmin(np.abs(e.along_slit[r][near] - offset)) > reach:
                        continue
                    fit = np.polyfit(lam[side] - center, dat[side], 1)
                    total += np.sum(dat[near] - np.polyval(fit, lam[near] - center))
                    total_var += np.sum(v[near]) + near.sum() ** 2 * np.mean(v[side]) / side.sum()
                sums.append(total)
                variances.append(total_var)
            w = 1.0 / np.asarray(variances)
            mean, err = np.sum(w * np.asarray(sums)) / np.sum(w), 1.0 / np.sqrt(np.sum(w))
            cells.append(f"{mean:.3e} +- {err:.1e}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def ceers() -> None:
    files = sorted(SHARED.glob("jw01345062001_03101_0000?_nrs2_phot.138.1345_933.fits"))
    if len(files) != 3:
        print("CEERS data absent: skipped")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
    from ceers import nod_subtracted_cals
    from jwst.resample import ResampleSpecStep
    from stdatamodels.jwst import datamodels

    logging.disable(logging.CRITICAL)
    out = Path(tempfile.mkdtemp())
    cal_times, s2d_times, resample_times = [], [], []
    for _ in range(3):
        models = [datamodels.open(str(f)) for f in files]
        t = time.process_time()
        cal = OptimalExtract1dStep.call(_container(models))
        cal_times.append(time.process_time() - t)
        subtracted = [datamodels.open(str(p)) for p in nod_subtracted_cals(out)]
        t = time.process_time()
        s2d_model = ResampleSpecStep.call(_container(subtracted))
        resample_times.append(time.process_time() - t)
        t = time.process_time()
        s2d = OptimalExtract1dStep.call(s2d_model)
        s2d_times.append(time.process_time() - t)
    tc, ts = cal.spec[0].spec_table, s2d.spec[0].spec_table
    mc = cal.spec[0].meta.optimal_extraction.instance
    ms = s2d.spec[0].meta.optimal_extraction.instance
    print("## CEERS 933 (three NRS2 nod cut-outs)\n")
    print("| quantity | cal path | s2d path |")
    print("|---|---|---|")
    for name, center in LINES.items():
        (fc, ec), (fs, es) = _line_flux(tc, center), _line_flux(ts, center)
        print(
            f"| {name} line flux (sum of FLUX over +-0.06 um minus continuum, Jy) | "
            f"{fc:.3e} +- {ec:.1e} | {fs:.3e} +- {es:.1e} |"
        )
    print(
        f"| median S/N per resolution element (2 bins) | {_snr_per_resolution_element(tc):.2f} | "
        f"{_snr_per_resolution_element(ts):.2f} |"
    )
    print(
        f"| residual error factor | {mc['error_scale']['measured_factor']:.3f} | "
        f"{ms['error_scale']['factor']:.3f} |"
    )
    law = np.round(mc["psf"]["fwhm_model"]["coefficients"], 2)
    print(f"| kernel | {mc['psf']['kernel']}, FWHM law {law} | {ms['kernel']['kernel']} |")
    print(
        f"| CPU time (median of 3, s) | {np.median(cal_times):.2f} | "
        f"resample_spec {np.median(resample_times):.2f} + extraction "
        f"{np.median(s2d_times):.2f} = {np.median(resample_times) + np.median(s2d_times):.2f} |\n"
    )
    _injected_calib(files)
    _model_free_lines(files)


def injection() -> None:
    files = sorted(SHARED.glob("jw01345062001_03101_0000?_nrs2_phot.138.1345_933.fits"))
    if len(files) == 3:
        logging.disable(logging.CRITICAL)
        _injected_calib(files)


if __name__ == "__main__":
    parts = sys.argv[1:] or ["sim", "ceers"]
    if "sim" in parts:
        simulated()
    if "ceers" in parts:
        ceers()
    elif "inject" in parts:
        injection()
    elif "lines" in parts:
        files = sorted(SHARED.glob("jw01345062001_03101_0000?_nrs2_phot.138.1345_933.fits"))
        logging.disable(logging.CRITICAL)
        _model_free_lines(files)
