"""The per-slit loop: read a slit, fit the kernel, Horne-sum the columns.

This module coordinates the pure modules and decides what a failure means:

* a slit that cannot be read (no data, no wavelengths) is skipped, with a
  WARNING naming it, and listed in `ExtractionRun.skipped`; if no slit at
  all can be read the run stops with `InputError`;
* a kernel that cannot be fitted falls back, in this order, to a fixed
  kernel at the slit centre, then to a box (uniform profile) extraction;
  the spectrum says so in its DQ (`DQ_FALLBACK`) and metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import coadd, horne, slits
from .errors import InputError, OptimalExtractError, ParameterError, ProfileFitError
from .kernel import KernelFit, KernelTemplate, fit_kernel, make_template
from .params import ExtractParams, check_region, check_slice
from .profile import Profile, kernel_profile, normalize_profile
from .results import DQ_DO_NOT_USE, DQ_FALLBACK, DQ_FLUX_ESTIMATED, SpectrumResult
from .slits import SlitData

__all__ = ["ExtractionRun", "SkippedSlit", "extract", "extract_slit"]

log = logging.getLogger(__name__)

# FWHM (pixels) of the fixed fallback kernel when the fit fails.
FALLBACK_FWHM = 2.0
# A column whose masked pixels carry more than this fraction of the profile
# gets DQ_FLUX_ESTIMATED: most of its flux comes from the profile, not data.
MISSING_PROFILE_LIMIT = 0.2


@dataclass(frozen=True)
class SkippedSlit:
    """A slit that produced no spectrum, and why.

    Attributes
    ----------
    name : str
        Slit name.
    reason : str
        What went wrong, as logged.
    error : str
        Type name of the error (``InputError``, ``ParameterError``, ... or the
        unexpected exception's type).
    """

    name: str
    reason: str
    error: str = ""


@dataclass(frozen=True)
class ExtractionRun:
    """Everything one run produced.

    Attributes
    ----------
    spectra : list of SpectrumResult
        One per extracted source, in input order.
    skipped : list of SkippedSlit
        Slits that produced no spectrum.
    """

    spectra: list[SpectrumResult] = field(default_factory=list)
    skipped: list[SkippedSlit] = field(default_factory=list)


def extract(model: Any, params: ExtractParams) -> ExtractionRun:
    """Extract every slit of an opened input model.

    Every slit gives a spectrum or a `SkippedSlit` (logged at WARNING, or at
    ERROR for an unexpected exception); one slit's failure never stops the
    others.

    Parameters
    ----------
    model : datamodel
        ImageModel, SlitModel, MultiSlitModel or ModelContainer (see
        `slits.open_input`).
    params : ExtractParams
        Run parameters.

    Returns
    -------
    ExtractionRun

    Raises
    ------
    ParameterError
        If the extraction region or the kernel slice fits none of the input
        slits (checked before any work).
    InputError
        If no slit of the input can be read.
    OptimalExtractError
        If no slit could be extracted for other reasons.
    """
    template = make_template(params.kernel)
    label = slits.input_label(model)
    pairs = list(slits.iter_slits(model))
    unfit = _check_parameters(params, pairs, label)
    run = ExtractionRun()
    for index, (slit, parent) in enumerate(pairs):
        name = slits.slit_name(slit, parent)
        if index in unfit:
            log.warning("Slit %s skipped: %s", name, unfit[index])
            run.skipped.append(SkippedSlit(name, str(unfit[index]), "ParameterError"))
            continue
        _extract_one(run, slit, parent, name, params, template)
    if not run.spectra:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in run.skipped)
        msg = f"{label}: no slit could be extracted ({reasons})"
        bad_input = all(s.error in ("InputError", "ParameterError") for s in run.skipped)
        raise InputError(msg) if bad_input else OptimalExtractError(msg)
    return run


def _extract_one(run, slit, parent, name, params, template) -> None:
    """Read and extract one slit into ``run``; any failure becomes a `SkippedSlit`."""
    try:
        data = slits.read_slit(
            slit,
            parent,
            variance_source=params.variance_source,
            drizzle_scale=params.drizzle_scale,
        )
        spectra = extract_slit(data, params, template)
    except OptimalExtractError as err:
        log.warning("Slit %s skipped: %s", name, err)
        run.skipped.append(SkippedSlit(name, str(err), type(err).__name__))
    except Exception as err:  # one slit's unexpected failure must not stop the others
        log.error(
            "Slit %s skipped: unexpected %s: %s", name, type(err).__name__, err, exc_info=True
        )
        run.skipped.append(
            SkippedSlit(name, f"unexpected {type(err).__name__}: {err}", type(err).__name__)
        )
    else:
        run.spectra.extend(spectra)


def _check_parameters(params: ExtractParams, pairs: list, label: str) -> dict[int, ParameterError]:
    """Check the region and slice against every readable slit, before any work.

    A parameter that fits none of the slits raises `ParameterError`. Otherwise
    slits outside the extraction region are returned (by index) to be
    skipped, and slits narrower than the slice are logged: their slice is
    clipped to the slit.
    """
    region_bad: dict[int, ParameterError] = {}
    slice_bad: dict[int, ParameterError] = {}
    n_checked = 0
    for index, (slit, parent) in enumerate(pairs):
        geometry = slits.stored_geometry(slit, parent)
        if geometry is None:
            continue  # no 2-D data: read_slit reports it
        (shape, disp_axis), name = geometry, slits.slit_name(slit, parent)
        n_checked += 1
        try:
            check_region(params, shape, name)
        except ParameterError as err:
            region_bad[index] = err
            continue
        try:
            check_slice(params, shape, name, disp_axis=disp_axis)
        except ParameterError as err:
            slice_bad[index] = err
    _raise_if_fits_none(region_bad, n_checked, label)
    _raise_if_fits_none(slice_bad, n_checked - len(region_bad), label)
    for index, err in slice_bad.items():
        name = slits.slit_name(*pairs[index])
        log.warning("Slit %s: %s; the slice is clipped to the slit", name, err)
    return region_bad


def _raise_if_fits_none(bad: dict[int, ParameterError], n_checked: int, label: str) -> None:
    if bad and len(bad) == n_checked:
        first = next(iter(bad.values()))
        msg = f"{first} (it fits none of the {n_checked} slit(s) of {label})"
        raise ParameterError(msg)


def extract_slit(
    slit: SlitData, params: ExtractParams, template: KernelTemplate | None = None
) -> list[SpectrumResult]:
    """Extract one slit: kernel fit on the slice, profile, optimal column sums.

    Parameters
    ----------
    slit : SlitData
        The slit, dispersion along axis 1.
    params : ExtractParams
        Run parameters.
    template : KernelTemplate, optional
        PSF template; built from ``params.kernel`` when None.

    Returns
    -------
    list of SpectrumResult
        One spectrum (several when the slit holds several sources).
    """
    template = template or make_template(params.kernel)
    sd = slit.cropped(params.extraction_region)
    usable = horne.usable_pixels(sd.data, sd.variance, sd.mask)
    column = _slice_column(sd, params, usable)
    fit, status, reason = _fit_or_fallback(sd, params, template, usable, column)
    prof = _profile_for(status, fit, sd.shape)
    basis = horne.polynomial_basis(sd.shape[0], params.bkg_order)
    sums = horne.extract_columns(sd.data, sd.variance, prof.weights, sd.mask, bkg_basis=basis)
    if status != "box" and np.all(sums.empty) and usable.any():
        reason = f"{reason}; no usable pixel under the fixed kernel" if reason else "empty profile"
        status, prof = "box", _profile_for("box", fit, sd.shape)
        sums = horne.extract_columns(sd.data, sd.variance, prof.weights, sd.mask, bkg_basis=basis)
    meta = {
        "status": status,
        "fallback_reason": reason,
        "slice_column": int(column + sd.offset[1]),
        "slice_width": int(min(params.slice_width, sd.shape[1])),
        "bkg_order": int(params.bkg_order),
        "variance_source": sd.variance_source,
        "kernel": fit.to_meta() if fit is not None and status != "box" else {"kernel": "box"},
    }
    result = _spectrum(sd, prof, sums, usable, status, meta)
    n_good = int(np.isfinite(result.flux).sum())
    log.info(
        "Slit %s: %s, centre %.2f px, FWHM %.2f px, %d/%d columns extracted",
        sd.name,
        status,
        float(np.nanmedian(prof.centers)) + sd.offset[0],
        float(np.nanmedian(prof.fwhm)) if np.any(np.isfinite(prof.fwhm)) else np.nan,
        n_good,
        sd.shape[1],
    )
    return [result]


def _slice_column(sd: SlitData, params: ExtractParams, usable: np.ndarray) -> int:
    if params.slice_column is not None:
        return int(np.clip(params.slice_column - sd.offset[1], 0, sd.shape[1] - 1))
    return coadd.brightest_column(sd.data, sd.variance, usable, params.slice_width)


def _fit_or_fallback(sd, params, template, usable, column):
    """Fit the kernel; on failure return the fixed fallback kernel and the reason."""
    if not usable.any():
        reason = "no usable pixel in the slit"
        log.warning("Slit %s: %s; all fluxes are NaN", sd.name, reason)
        return None, "box", reason
    values, sigma = coadd.coadd_columns(sd.data, sd.variance, usable, column, params.slice_width)
    try:
        return fit_kernel(template, values, sigma, bkg_order=params.bkg_order), "fit", ""
    except ProfileFitError as err:
        center = (sd.shape[0] - 1) / 2.0
        log.warning(
            "Slit %s: kernel fit failed (%s); falling back to a fixed %s kernel at the "
            "slit centre (%.1f px, FWHM %.1f px)",
            sd.name,
            err,
            template.name,
            center + sd.offset[0],
            FALLBACK_FWHM,
        )
        fixed = KernelFit(
            template=template,
            center=center,
            fwhm=FALLBACK_FWHM,
            amplitude=np.nan,
            bkg_coeffs=(),
            snr=np.nan,
            chi2_reduced=np.nan,
        )
        return fixed, "fixed_kernel", str(err)


def _profile_for(status: str, fit: KernelFit | None, shape: tuple[int, int]) -> Profile:
    n_cross, n_disp = shape
    if status == "box" or fit is None:
        weights = normalize_profile(np.ones(shape))
        return Profile(weights, np.full(n_disp, (n_cross - 1) / 2.0), np.full(n_disp, np.nan))
    return kernel_profile(
        fit.template, n_cross, np.full(n_disp, fit.center), np.full(n_disp, fit.fwhm)
    )


def _along_trace(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Profile-weighted mean of a per-pixel quantity in every column."""
    ok = np.isfinite(values)
    w = np.where(ok, weights, 0.0)
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(w * np.where(ok, values, 0.0), axis=0) / sw
    any_ok = ok.any(axis=0)
    plain = np.full(values.shape[1], np.nan)
    if np.any(any_ok):
        plain[any_ok] = np.nanmean(values[:, any_ok], axis=0)
    return np.where(sw > 0, mean, plain)


def _spectrum(
    sd: SlitData,
    prof: Profile,
    sums: horne.ColumnSums,
    usable: np.ndarray,
    status: str,
    meta: dict[str, Any],
) -> SpectrumResult:
    missing = np.sum(np.where(usable, 0.0, prof.weights), axis=0)
    dq = np.zeros(sd.shape[1], np.uint32)
    dq[~np.isfinite(sums.flux)] |= DQ_DO_NOT_USE
    dq[missing > MISSING_PROFILE_LIMIT] |= DQ_FLUX_ESTIMATED
    if status != "fit":
        dq |= DQ_FALLBACK
    weights = prof.weights
    return SpectrumResult(
        name=sd.name,
        flux=sums.flux,
        var_poisson=sums.propagate(sd.var_poisson),
        var_rnoise=sums.propagate(sd.var_rnoise),
        var_flat=sums.propagate(sd.var_flat),
        background=sums.mean_background,
        bkg_var_poisson=sums.propagate_background(sd.var_poisson),
        bkg_var_rnoise=sums.propagate_background(sd.var_rnoise),
        bkg_var_flat=sums.propagate_background(sd.var_flat),
        npixels=sums.npixels,
        dq=dq,
        wavelength=_along_trace(sd.wavelength, weights),
        ra=_along_trace(sd.ra, weights),
        dec=_along_trace(sd.dec, weights),
        region=sd.region(),
        units=sd.units,
        disp_axis=sd.disp_axis,
        attributes=dict(sd.attributes),
        metadata=meta,
        profile=prof.weights,
        scene=np.where(sums.empty, 0.0, sums.flux) * prof.weights + np.nan_to_num(sums.background),
    )
