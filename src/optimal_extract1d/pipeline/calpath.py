"""The cal path: one combined spectrum per source from its unresampled exposures.

For every source (exposures grouped by source ID, else slit name):

1. the background treatment is chosen (`choose_background`);
2. the exposures are stacked pixel by pixel (`stack`): exposures on the same
   detector pixels share a pixel index, which nod subtraction needs;
3. the output grid is set (`default_grid`: the wavelengths of the detector
   columns along the source trace, i.e. the sampling resample_spec gives;
   or the user's) and every pixel goes to the bin holding its wavelength;
4. one PSF model is fitted to all exposures (`.scene.calfit.fit_cal_psf`)
   and the bins are summed with rejection across exposures
   (`.core.calsums.combine`); in ``"nod"`` mode the sky of every pixel and
   a sky level of every exposure and bin are fitted with the flux;
5. VAR_POISSON and VAR_FLAT are replaced by their prediction from the
   fitted model (`.core.calsums.remodel_variances`: the pipeline's come
   from the measured signal and bias the optimal sum low), the fit is
   repeated with those weights and without the rejected pixels, and the
   bins are summed again;
6. the residual error factor is measured from the spectrum's own scatter
   (`.core.calsums.spectrum_noise_factor`) and applied with
   ``error_scale = residual``; the scatter of the pixels where the source
   model is negligible (`.core.calsums.noise_factor`) is recorded.

A source that cannot be fitted is skipped with a WARNING and listed in the
run's ``skipped``; one source's failure never stops the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any

import numpy as np

from ..core.calsums import (
    MODES,
    combine,
    noise_factor,
    noise_factor_by_bin,
    remodel_variances,
    spectrum_noise_factor,
)
from ..errors import InputError, OptimalExtractError, ParameterError
from ..io import calinputs, inputs
from ..params import CalParams, ExtractParams
from ..psf.pointwise import POINTWISE_KERNELS
from ..results import DQ_OUTLIER, FluxUnits, SpectrumResult
from ..scene.calfit import CalFitData, CalPSF, fit_cal_psf
from ..slitdata import CalExposure
from .extraction import ExtractionRun, SkippedSlit

__all__ = ["extract_cal", "extract_source", "choose_background", "stack", "default_grid"]

log = logging.getLogger(__name__)

#: Raw nod exposures: fit a sky level per exposure and output bin besides the sky per pixel
#: (`.core.calsums.ExposureSky`).
EXPOSURE_LEVELS = True


def extract_cal(model: Any, params: ExtractParams, cal: CalParams) -> ExtractionRun:
    """Extract every source of a cal input.

    Parameters
    ----------
    model : datamodel or ModelContainer
        Cal slits (`.io.calinputs.is_cal_input`).
    params : ExtractParams
        Run parameters (``kernel``, ``fit_fwhm``, ``fwhm_order``,
        ``reject_sigma``, ``max_iter``, ``error_scale``, ``variance_source`` apply).
    cal : CalParams
        Cal-path parameters.

    Returns
    -------
    ExtractionRun

    Raises
    ------
    ParameterError
        If the kernel is not one the cal path supports, or the requested
        background treatment does not fit a source's exposures.
    InputError
        If no source could be extracted because of the input.
    """
    kernel = params.kernel if isinstance(params.kernel, str) else ""
    if kernel not in ("auto", *POINTWISE_KERNELS):
        msg = f"the cal path supports kernel = auto, gaussian or moffat, not {params.kernel!r}"
        raise ParameterError(msg)
    exposures = calinputs.read_exposures(
        model, variance_source=params.variance_source, input_unit=params.input_unit
    )
    groups: dict[str, list[CalExposure]] = defaultdict(list)
    for exp in exposures:
        groups[exp.source_key].append(exp)
    # a background the exposures cannot have is a parameter error, before any fit
    modes = {key: choose_background(group, cal.cal_background) for key, group in groups.items()}
    run = ExtractionRun()
    for index, (key, group) in enumerate(groups.items()):
        try:
            spectra = extract_source(group, params, cal, mode=modes[key])
        except OptimalExtractError as err:
            log.warning("Source %s skipped: %s", key, err)
            run.skipped.append(SkippedSlit(key, str(err), type(err).__name__))
        except Exception as err:  # one source's unexpected failure must not stop the others
            log.error("Source %s skipped: unexpected %s: %s", key, type(err).__name__, err)
            run.skipped.append(SkippedSlit(key, f"unexpected {type(err).__name__}: {err}"))
        else:
            run.spectra.extend(spectra)
            run.slit_index.extend([index] * len(spectra))
    if not run.spectra:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in run.skipped)
        msg = f"{inputs.input_label(model)}: no source could be extracted ({reasons})"
        raise InputError(msg)
    return run


def choose_background(group: list[CalExposure], requested: str) -> str:
    """The background treatment of one source's exposures.

    ``auto``: master-background-subtracted exposures need none; exposures
    nod-subtracted by calwebb_spec2 (``bkg_subtract``) are ``subtracted``
    (the negative copies of the other exposures are modelled); raw
    exposures sharing their detector pixels are nod-fitted (``nod``);
    a single raw exposure gets ``none``, with a WARNING.

    Raises
    ------
    ParameterError
        If ``nod`` or ``subtracted`` is requested for exposures that do not
        share their detector pixels.
    """
    shared = len(group) > 1 and _same_pixels(group)
    if requested in ("nod", "subtracted"):
        if not shared:
            msg = (
                f"cal_background={requested!r} needs two or more exposures on the same detector "
                f"pixels (same footprint and shape); source {group[0].source_key} has "
                f"{len(group)} exposure(s) that do not"
            )
            raise ParameterError(msg)
        return requested
    if requested == "none":
        return "none"
    states = {e.background for e in group}
    if states == {"master"}:
        return "none"
    if states == {"nod"}:
        return "subtracted" if shared else "none"
    if shared and _sums_vanish(group):
        log.info(
            "Source %s: the exposures sum to zero on every pixel: taken as nod-subtracted "
            "(each minus the mean of the others), although bkg_subtract is not COMPLETE",
            group[0].source_key,
        )
        return "subtracted"
    if shared:
        return "nod"
    log.warning(
        "Source %s: %d raw exposure(s) not on common pixels: no nod subtraction possible, "
        "the background is not removed",
        group[0].source_key,
        len(group),
    )
    return "none"


def _sums_vanish(group: list[CalExposure]) -> bool:
    """Whether the exposures cancel pixel by pixel, as after subtracting the others' mean."""
    data = np.stack([e.data for e in group])
    ok = np.all(np.isfinite(data), axis=0)
    if ok.sum() < 10:
        return False
    total = np.abs(data[:, ok].sum(axis=0))
    scale = np.abs(data[:, ok]).sum(axis=0)
    return bool(np.mean(total <= 1e-3 * scale + 1e-30) > 0.99)


def _same_pixels(group: list[CalExposure]) -> bool:
    first = group[0]
    return all(e.shape == first.shape and e.footprint == first.footprint for e in group)


def stack(group: list[CalExposure], shared: bool) -> dict[str, np.ndarray]:
    """Stack the exposures' pixels: ``(n_exp, n_pix)`` when they share pixels, else one row."""
    names = ("data", "var_poisson", "var_rnoise", "var_flat", "mask", "wavelength", "along_slit")
    out = {}
    for name in names:
        arrays = [getattr(e, name).ravel() for e in group]
        out[name] = np.stack(arrays) if shared else np.concatenate(arrays)[None, :]
    sizes = [e.data.size for e in group]
    index = np.repeat(np.arange(len(group)), sizes)
    out["exposure"] = index.reshape(len(group), -1) if shared else index[None, :]
    for name in ("ra", "dec"):
        arrays = [getattr(e, name).ravel() for e in group]
        out[name] = np.stack(arrays) if shared else np.concatenate(arrays)[None, :]
    return out


def unsubtract(st: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Nod-subtracted exposures as raw ones, up to a sky per pixel.

    calwebb_spec2 subtracts from each of ``n`` nod exposures the mean of the
    others, ``x_i = r_i - mean_{j != i} r_j``, and leaves the VAR arrays
    those of the raw exposure (jwst's ``background_sub`` changes the data
    only). ``x_i (n - 1) / n = r_i - mean_j r_j`` are the raw exposures
    minus a per-pixel constant, which the ``"nod"`` fit (a sky per pixel)
    ignores; with the raw variances the errors stay uncorrelated.
    """
    n = st["data"].shape[0]
    return {**st, "data": st["data"] * (n - 1) / n}


def default_grid(exposure: CalExposure) -> np.ndarray:
    """Wavelengths of the detector columns at the source position (increasing).

    In every column the wavelength is interpolated linearly along the slit
    to the nominal source position (along-slit offset 0); this is the
    native sampling of the trace, which resample_spec's grid follows.
    """
    lam, s = exposure.wavelength, exposure.along_slit
    ok = np.isfinite(lam) & np.isfinite(s)
    w = ok.astype(float)
    lam0, s0 = np.where(ok, lam, 0.0), np.where(ok, s, 0.0)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms, ml = s0.sum(axis=0) / n, lam0.sum(axis=0) / n
        cov = (w * (s0 - ms) * (lam0 - ml)).sum(axis=0)
        var = (w * (s0 - ms) ** 2).sum(axis=0)
        grid = ml + np.where(var > 0, cov / var, 0.0) * (0.0 - ms)
    grid = grid[(n >= 2) & np.isfinite(grid)]
    grid = np.sort(grid)
    return grid[np.concatenate([[True], np.diff(grid) > 0])]


def _bins(wavelength: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of the bin of every wavelength (edges halfway between grid points); -1 outside."""
    mid = 0.5 * (grid[1:] + grid[:-1])
    edges = np.concatenate([[grid[0] - (mid[0] - grid[0])], mid, [grid[-1] + (grid[-1] - mid[-1])]])
    idx = np.searchsorted(edges, np.nan_to_num(wavelength, nan=-np.inf), side="right") - 1
    return np.where((idx >= 0) & (idx < grid.size) & np.isfinite(wavelength), idx, -1)


def extract_source(
    group: list[CalExposure], params: ExtractParams, cal: CalParams, *, mode: str | None = None
) -> list[SpectrumResult]:
    """The combined spectrum (and optionally the per-exposure spectra) of one source.

    ``mode`` is the background treatment (`choose_background` when None).

    Raises
    ------
    ProfileFitError
        If no bin holds a source at S/N >= 3.
    ParameterError
        If the requested background treatment does not fit the exposures.
    """
    key = group[0].source_key
    units = {e.flux_unit for e in group}
    if len(units) > 1:
        msg = f"source {key}: exposures in different units {sorted(units)}"
        raise InputError(msg)
    mode = mode or choose_background(group, cal.cal_background)
    if mode not in MODES:
        msg = f"unknown background treatment {mode!r}; expected one of {MODES}"
        raise ParameterError(msg)
    shared = mode in ("nod", "subtracted") or (len(group) > 1 and _same_pixels(group))
    st = stack(group, shared)
    fit_mode = mode
    if mode == "subtracted":  # spec2's nod subtraction undone up to a sky per pixel
        st = unsubtract(st)
        fit_mode = "nod"
    lam = st["wavelength"]
    if shared:  # pixels shared by the exposures have one wavelength (the first usable)
        finite = np.isfinite(lam)
        first = np.argmax(finite, axis=0)
        common = np.where(finite.any(axis=0), lam[first, np.arange(lam.shape[1])], np.nan)
        lam = np.broadcast_to(common, lam.shape).copy()
    grid = (
        np.asarray(cal.cal_wavelengths, float)
        if cal.cal_wavelengths is not None
        else default_grid(group[0])
    )
    if grid.size < 2:
        msg = f"source {key}: fewer than 2 output wavelengths"
        raise InputError(msg)
    bins = _bins(lam, grid)
    variances = (st["var_poisson"], st["var_rnoise"], st["var_flat"])
    variance = sum(np.nan_to_num(v, nan=np.inf) for v in variances)
    usable = ~st["mask"] & (bins >= 0) & np.isfinite(st["along_slit"]) & (variance > 0)
    usable &= np.isfinite(variance)
    fit_data = CalFitData(
        along=np.nan_to_num(st["along_slit"], nan=1e3),
        wavelength=np.nan_to_num(lam, nan=float(np.nanmedian(grid))),
        exposure=st["exposure"],
        data=np.nan_to_num(st["data"]),
        variance=np.where(usable, variance, 1.0),
        usable=usable,
        bins=bins,
        n_bins=grid.size,
        n_exp=len(group),
        mode=fit_mode,
    )
    psf = fit_cal_psf(
        fit_data,
        kernel=params.kernel,
        fwhm_order=params.fwhm_order,
        fit_fwhm=params.fit_fwhm,
        trace_order=params.trace_order,
        fit_trace=params.fit_trace,
    )
    sums = _combine(psf, fit_data, variances, usable, params)
    # the variances from the model, not the data (Horne's step 6); then the shape is refitted
    # from the first fit with those weights, without the outliers and (nod mode) with the
    # exposures' sky levels, and the bins summed again
    variances = remodel_variances(variances, sums.model, usable & ~sums.rejected, bins, grid.size)
    total = sum(np.nan_to_num(v, nan=np.inf) for v in variances)
    fit_data = dataclasses.replace(
        fit_data,
        variance=np.where(usable & (total > 0) & np.isfinite(total), total, 1.0),
        usable=usable & (total > 0) & np.isfinite(total),
        exposure_levels=EXPOSURE_LEVELS,
    )
    usable = fit_data.usable
    clean = dataclasses.replace(fit_data, usable=usable & ~sums.rejected)
    choice = psf.choice
    psf = fit_cal_psf(
        clean,
        kernel=psf.kernel,
        fwhm_order=len(psf.fwhm_coeffs) - 1,
        fit_fwhm=True,
        trace_order=len(psf.trace_coeffs),
        fit_trace=True,
        start=psf,
    )
    psf = dataclasses.replace(psf, choice=choice)
    sums = _combine(psf, fit_data, variances, usable, params)
    # the factor from the noise of the spectrum itself; the pixels' scatter is recorded
    error = np.sqrt(sums.var_poisson + sums.var_rnoise + sums.var_flat)
    factor, n_noise = spectrum_noise_factor(sums.flux, error)
    pixel_factor, n_pixels = noise_factor(sums.z, sums.model, fit_data.variance)
    _, chunks = noise_factor_by_bin(sums.z, sums.model, fit_data.variance, bins, grid.size)
    applied = factor if params.error_scale == "residual" else 1.0
    meta = {
        "input_level": "cal",
        "status": "fit",
        "background": mode,
        "exposures": [e.name for e in group],
        "n_exposures": len(group),
        "psf": psf.to_meta(),
        "wavelength_grid": "user" if cal.cal_wavelengths is not None else "trace_columns",
        "iteration": {
            "n_iter": int(sums.n_iter),
            "n_rejected": int(sums.rejected.sum()),
            "n_rejected_per_exposure": [int(v) for v in _per_exposure(sums.rejected, st)],
            "reject_sigma": float(params.reject_sigma),
        },
        "error_scale": {
            "method": params.error_scale,
            "measured_factor": float(factor),
            "factor": float(applied),
            "n_bins": int(n_noise),
            "where": "second differences of the spectrum over their propagated errors "
            "(the bins share no pixel; a smooth spectrum and smooth profile errors cancel)",
            "pixel_factor": float(pixel_factor),
            "n_pixels": int(n_pixels),
            "pixel_where": "pixels where the source model is below 0.2 sigma in every exposure",
            "by_wavelength": [
                {
                    "wavelength_um": [float(grid[c["first_bin"]]), float(grid[c["last_bin"]])],
                    "factor": c["factor"],
                    "n_pixels": c["n_pixels"],
                }
                for c in chunks
            ],
            "by_wavelength_applied": False,
        },
    }
    flux_scale = float(np.mean([e.flux_scale for e in group]))
    result_units = FluxUnits(1.0, group[0].flux_unit, 1.0 / flux_scale, 1.0 / flux_scale, "MJy/sr")
    prof = np.nan_to_num(psf.profile(fit_data.along, fit_data.wavelength, st["exposure"]))
    out = [
        _result(
            group[0].slit if len({e.slit for e in group}) == 1 else key,
            sums,
            grid,
            st,
            prof,
            usable,
            bins,
            applied,
            result_units,
            group,
            meta,
        )
    ]
    log.info(
        "Source %s: %d exposure(s), background %s, %s kernel, FWHM %.2f px, offsets %s px, "
        "%d/%d bins extracted, %d outliers, residual error factor %.3f (%s)",
        key,
        len(group),
        mode,
        psf.kernel,
        float(np.median(psf.fwhm(grid))),
        ", ".join(f"{v:+.2f}" for v in psf.offsets),
        int(np.isfinite(sums.flux).sum()),
        grid.size,
        int(sums.rejected.sum()),
        factor,
        "applied" if params.error_scale == "residual" else "not applied",
    )
    if cal.save_exposure_spectra:
        out.extend(
            _exposure_spectra(psf, fit_data, variances, usable & ~sums.rejected, group, st, grid)
        )
        for r in out[1:]:
            r.metadata.update({"error_scale": meta["error_scale"], "psf": meta["psf"]})
    return out


def _combine(psf: CalPSF, d: CalFitData, variances, usable, params: ExtractParams):
    prof = np.nan_to_num(psf.profile(d.along, d.wavelength, d.exposure))
    return combine(
        prof,
        d.data,
        variances,
        usable,
        d.bins,
        d.n_bins,
        mode=d.mode,
        reject_sigma=params.reject_sigma,
        max_iter=params.max_iter,
        exposure_levels=d.exposure_levels,
    )


def _per_exposure(mask: np.ndarray, st: dict) -> list[int]:
    n = int(st["exposure"].max()) + 1
    return list(np.bincount(st["exposure"][mask], minlength=n))


def _result(name, sums, grid, st, prof, usable, bins, factor, units, group, meta):
    f2 = factor**2
    weight = np.clip(prof, 0, None) * usable
    ok = bins >= 0

    def along(values: np.ndarray) -> np.ndarray:
        good = ok & np.isfinite(values) & (weight > 0)
        num = np.bincount(bins[good], (weight * values)[good], minlength=grid.size)
        den = np.bincount(bins[good], weight[good], minlength=grid.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    first = group[0]
    attributes = dict(first.attributes)
    return SpectrumResult(
        name=str(name),
        flux=sums.flux,
        var_poisson=f2 * sums.var_poisson,
        var_rnoise=f2 * sums.var_rnoise,
        var_flat=f2 * sums.var_flat,
        background=sums.background,
        bkg_var_poisson=f2 * sums.bkg_var_poisson,
        bkg_var_rnoise=f2 * sums.bkg_var_rnoise,
        bkg_var_flat=f2 * sums.bkg_var_flat,
        npixels=sums.npixels,
        dq=sums.dq,
        wavelength=np.asarray(grid, float),
        ra=along(st["ra"]),
        dec=along(st["dec"]),
        region=(0, 0, first.shape[1] - 1, first.shape[0] - 1),
        units=units,
        disp_axis=1,
        attributes=attributes,
        metadata=meta,
    )


def _exposure_spectra(psf, d, variances, usable, group, st, grid) -> list[SpectrumResult]:
    """Each exposure alone (sky from the joint fit in nod mode), for inspection."""
    out = []
    prof = np.nan_to_num(psf.profile(d.along, d.wavelength, d.exposure))
    data = d.data
    if d.mode == "nod":  # the sky of every pixel from all exposures, the flux from each one
        joint = combine(
            prof,
            d.data,
            variances,
            usable,
            d.bins,
            d.n_bins,
            mode="nod",
            reject_sigma=0,
            max_iter=0,
        )
        total = np.where(usable, 1.0 / d.variance, 0.0)
        sky = (total * (d.data - joint.model)).sum(axis=0) / np.maximum(total.sum(axis=0), 1e-300)
        data = d.data - sky
    for i, exp in enumerate(group):
        rows = st["exposure"] == i
        one = combine(
            prof,
            data,
            variances,
            usable & rows,
            d.bins,
            d.n_bins,
            mode="none" if d.mode == "nod" else d.mode,
            reject_sigma=0,
            max_iter=0,
        )
        units = FluxUnits(1.0, exp.flux_unit, 1.0 / exp.flux_scale, 1.0 / exp.flux_scale, "MJy/sr")
        meta = {"input_level": "cal", "status": "fit", "exposure": exp.name, "exposure_index": i}
        r = _result(
            f"{exp.slit}_exp{i + 1}",
            one,
            grid,
            st,
            prof,
            usable & rows,
            d.bins,
            1.0,
            units,
            [exp],
            meta,
        )
        out.append(dataclasses.replace(r, dq=r.dq & ~np.uint32(DQ_OUTLIER)))
    return out
