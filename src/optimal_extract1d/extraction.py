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

from . import coadd, horne, slits, spatial
from .empirical import DEFAULT_ORDER as EMPIRICAL_ORDER
from .empirical import empirical_profile, trace_support
from .errors import InputError, OptimalExtractError, ProfileFitError
from .kernel import KernelFit, KernelTemplate, make_template
from .params import ExtractParams, check_region
from .profile import Profile, kernel_profile
from .results import (
    DQ_DO_NOT_USE,
    DQ_FALLBACK,
    DQ_FLUX_ESTIMATED,
    DQ_OUTLIER,
    SpectrumResult,
)
from .slits import SlitData

__all__ = ["ExtractionRun", "SkippedSlit", "extract", "extract_slit"]

log = logging.getLogger(__name__)

# A column whose masked pixels carry more than this fraction of the profile
# gets DQ_FLUX_ESTIMATED: most of its flux comes from the profile, not data.
MISSING_PROFILE_LIMIT = 0.2


@dataclass(frozen=True)
class SkippedSlit:
    """A slit that produced no spectrum, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class ExtractionRun:
    """Everything one run produced.

    Attributes
    ----------
    spectra : list of SpectrumResult
        One per extracted source, in input order.
    skipped : list of SkippedSlit
        Slits that produced no spectrum.
    slit_index : list of int
        For every spectrum, the position of its slit in `slits.iter_slits`
        order (diagnostics use it to find the slit's data).
    """

    spectra: list[SpectrumResult] = field(default_factory=list)
    skipped: list[SkippedSlit] = field(default_factory=list)
    slit_index: list[int] = field(default_factory=list)


def extract(model: Any, params: ExtractParams) -> ExtractionRun:
    """Extract every slit of an opened input model.

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
        If a parameter does not fit the input slits (checked before any work).
    InputError
        If no slit of the input can be read.
    """
    template = make_template(_slice_kernel(params.kernel))
    pairs = list(slits.iter_slits(model))
    for slit, parent in pairs:
        if slit.hasattr("data") and np.ndim(slit.data) == 2 and np.size(slit.data):
            check_region(params, np.shape(slit.data), slits.slit_name(slit, parent))
    run = ExtractionRun()
    for index, (slit, parent) in enumerate(pairs):
        name = slits.slit_name(slit, parent)
        try:
            data = slits.read_slit(
                slit,
                parent,
                variance_source=params.variance_source,
                drizzle_scale=params.drizzle_scale,
            )
        except InputError as err:
            log.warning("Slit %s skipped: %s", name, err)
            run.skipped.append(SkippedSlit(name, str(err)))
            continue
        try:
            spectra = extract_slit(data, params, template)
        except OptimalExtractError as err:
            log.warning("Slit %s skipped: %s", name, err)
            run.skipped.append(SkippedSlit(name, str(err)))
            continue
        run.spectra.extend(spectra)
        run.slit_index.extend([index] * len(spectra))
    if not run.spectra and run.skipped:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in run.skipped)
        msg = f"no slit could be extracted ({reasons})"
        raise InputError(msg)
    return run


def extract_slit(
    slit: SlitData, params: ExtractParams, template: KernelTemplate | None = None
) -> list[SpectrumResult]:
    """Extract one slit: kernel fit on the slice, profile, Horne's iterated sums.

    Parameters
    ----------
    slit : SlitData
        The slit, dispersion along axis 1.
    params : ExtractParams
        Run parameters.
    template : KernelTemplate, optional
        PSF template for the slice fit; built from ``params.kernel`` when None.

    Returns
    -------
    list of SpectrumResult
        One spectrum (several when the slit holds several sources).
    """
    template = template or make_template(_slice_kernel(params.kernel))
    sd = slit.cropped(params.extraction_region)
    usable = horne.usable_pixels(sd.data, sd.variance, sd.mask)
    basis = horne.polynomial_basis(sd.shape[0], params.bkg_order)
    fit_usable = usable & ~spatial.extreme_outliers(sd.data, sd.variance, usable)
    shape = _spatial_model(sd, params, template, fit_usable, sd.variance)
    result = _iterate(sd, params, shape.profile.weights, basis)
    if shape.status == "fit" and _refit_needed(result, fit_usable, shape, params):
        # Horne's loop: refit the kernel with the model variance, without the outliers.
        variance = result.var_poisson + sd.var_rnoise + sd.var_flat
        shape = _spatial_model(sd, params, template, fit_usable & ~result.rejected, variance)
        result = _iterate(sd, params, shape.profile.weights, basis)
    if shape.status != "box" and np.all(result.sums.empty) and usable.any():
        reason = shape.reason + "; " if shape.reason else ""
        shape = _Shape(
            spatial.box_profile(sd.shape),
            "box",
            reason + "no usable pixel under the kernel",
            shape.fit,
            shape.column,
            {},
        )
        result = _iterate(sd, params, shape.profile.weights, basis)
    spectrum = _spectrum(sd, shape, result, usable, params)
    _log_slit(sd, shape, spectrum, result)
    return [spectrum]


@dataclass(frozen=True)
class _Shape:
    """The spatial model chosen for a slit and how it was obtained."""

    profile: Profile
    status: str  # "fit", "fixed_kernel" or "box"
    reason: str
    fit: KernelFit | None
    column: int
    metadata: dict[str, Any]


def _slice_kernel(kernel):
    """Template fitted to the slice: the empirical profile starts from a Gaussian."""
    return "gaussian" if kernel == "empirical" else kernel


def _spatial_model(
    sd: SlitData,
    params: ExtractParams,
    template: KernelTemplate,
    usable: np.ndarray,
    variance: np.ndarray,
) -> _Shape:
    """Kernel fit (with its fallbacks), varying kernel and empirical profile."""
    if not usable.any():
        reason = "no usable pixel in the slit"
        log.warning("Slit %s: %s; all fluxes are NaN", sd.name, reason)
        return _Shape(spatial.box_profile(sd.shape), "box", reason, None, sd.shape[1] // 2, {})
    column = _slice_column(sd, params, usable, variance)
    try:
        fit = spatial.fit_slice(template, sd.data, variance, usable, column, params)
    except ProfileFitError as err:
        fit = spatial.fixed_kernel(template, sd.shape[0])
        log.warning(
            "Slit %s: kernel fit failed (%s); falling back to a fixed %s kernel at the "
            "slit centre (%.1f px, FWHM %.1f px)",
            sd.name,
            err,
            template.name,
            fit.center + sd.offset[0],
            fit.fwhm,
        )
        prof = kernel_profile(
            fit.template,
            sd.shape[0],
            np.full(sd.shape[1], fit.center),
            np.full(sd.shape[1], fit.fwhm),
        )
        return _Shape(prof, "fixed_kernel", str(err), fit, column, {})
    wavelength = spatial.column_wavelength(sd.wavelength)
    varied = spatial.vary_kernel(fit, sd.data, variance, usable, wavelength, params, sd.name)
    profile, meta = varied.profile, dict(varied.metadata)
    if params.kernel == "empirical":
        profile = _empirical(sd, params, usable, variance, profile)
        meta["empirical"] = {"order": EMPIRICAL_ORDER, "support": "2 FWHM + 1 px of the trace"}
    return _Shape(profile, "fit", "", fit, column, meta)


def _empirical(
    sd: SlitData, params: ExtractParams, usable: np.ndarray, variance: np.ndarray, kernel: Profile
) -> Profile:
    """Horne's profile from the data, starting from the kernel profile's flux and trace.

    The background comes from the pixels outside the trace support only, so
    that a polynomial background cannot eat the wings the profile should have.
    """
    basis = horne.polynomial_basis(sd.shape[0], params.bkg_order)
    support = trace_support(kernel.centers, kernel.fwhm, sd.shape[0])
    background = horne.fit_background(sd.data, variance, usable & ~support, basis)
    first = horne.extract_columns(sd.data - background, variance, kernel.weights, ~usable)
    return empirical_profile(
        sd.data, variance, usable, first.flux, background, support=support, order=EMPIRICAL_ORDER
    )


def _refit_needed(
    result: horne.IteratedSums, fit_usable: np.ndarray, shape: _Shape, params: ExtractParams
) -> bool:
    """Refit when the variance was remodelled or outliers entered the kernel fits."""
    if np.isfinite(result.poisson_scale):
        return True
    pixels = result.rejected & fit_usable
    if not pixels.any():
        return False
    if params.fit_fwhm or params.fit_trace or params.kernel == "empirical":
        return True
    lo = max(shape.column - params.slice_width // 2, 0)
    return bool(pixels[:, lo : lo + params.slice_width].any())


def _iterate(
    sd: SlitData, params: ExtractParams, profile: np.ndarray, basis: np.ndarray
) -> horne.IteratedSums:
    return horne.iterate_extraction(
        sd.data,
        sd.var_poisson,
        sd.var_rnoise + sd.var_flat,
        profile,
        sd.mask,
        bkg_basis=basis,
        reject_sigma=params.reject_sigma,
        max_iter=params.max_iter,
    )


def _slice_column(
    sd: SlitData, params: ExtractParams, usable: np.ndarray, variance: np.ndarray
) -> int:
    if params.slice_column is not None:
        return int(np.clip(params.slice_column - sd.offset[1], 0, sd.shape[1] - 1))
    return coadd.brightest_column(sd.data, variance, usable, params.slice_width)


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


def _metadata(
    sd: SlitData, shape: _Shape, result: horne.IteratedSums, params: ExtractParams
) -> dict[str, Any]:
    kernel = (
        shape.fit.to_meta()
        if shape.fit is not None and shape.status != "box"
        else {"kernel": "box"}
    )
    if params.kernel == "empirical" and shape.status == "fit":
        kernel["kernel"] = "empirical"
    return {
        "status": shape.status,
        "fallback_reason": shape.reason,
        "slice_column": int(shape.column + sd.offset[1]),
        "slice_width": int(params.slice_width),
        "bkg_order": int(params.bkg_order),
        "variance_source": sd.variance_source,
        "kernel": kernel,
        **shape.metadata,
        "iteration": {
            "n_iter": int(result.n_iter),
            "n_rejected": int(result.rejected.sum()),
            "reject_sigma": float(params.reject_sigma),
            "poisson_variance_modelled": bool(np.isfinite(result.poisson_scale)),
        },
    }


def _spectrum(
    sd: SlitData,
    shape: _Shape,
    result: horne.IteratedSums,
    usable: np.ndarray,
    params: ExtractParams,
) -> SpectrumResult:
    sums, weights = result.sums, shape.profile.weights
    missing = np.sum(np.where(usable & ~result.rejected, 0.0, weights), axis=0)
    dq = np.zeros(sd.shape[1], np.uint32)
    dq[~np.isfinite(sums.flux)] |= DQ_DO_NOT_USE
    dq[missing > MISSING_PROFILE_LIMIT] |= DQ_FLUX_ESTIMATED
    dq[result.rejected.any(axis=0)] |= DQ_OUTLIER
    if shape.status != "fit":
        dq |= DQ_FALLBACK
    return SpectrumResult(
        name=sd.name,
        flux=sums.flux,
        var_poisson=sums.propagate(result.var_poisson),
        var_rnoise=sums.propagate(sd.var_rnoise),
        var_flat=sums.propagate(sd.var_flat),
        background=sums.mean_background,
        bkg_var_poisson=sums.propagate_background(result.var_poisson),
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
        metadata=_metadata(sd, shape, result, params),
        profile=weights,
        scene=np.where(sums.empty, 0.0, sums.flux) * weights + np.nan_to_num(sums.background),
    )


def _log_slit(
    sd: SlitData, shape: _Shape, spectrum: SpectrumResult, result: horne.IteratedSums
) -> None:
    fwhm = shape.profile.fwhm
    log.info(
        "Slit %s: %s, centre %.2f px, FWHM %.2f px, %d/%d columns extracted, %d outliers",
        sd.name,
        shape.status,
        float(np.nanmedian(shape.profile.centers)) + sd.offset[0],
        float(np.nanmedian(fwhm)) if np.any(np.isfinite(fwhm)) else np.nan,
        int(np.isfinite(spectrum.flux).sum()),
        sd.shape[1],
        int(result.rejected.sum()),
    )
