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

from ..core import horne, iteration
from ..core.errorscale import residual_error_scale, slice_noise_scale
from ..core.outliers import fit_outliers
from ..errors import InputError, OptimalExtractError, ParameterError
from ..io import inputs, psfref, slits
from ..params import ExtractParams, check_region, check_slice
from ..psf.kernel import KernelTemplate, make_template
from ..results import SpectrumResult
from ..scene.slitshape import SlitShape, box_shape, spatial_model
from ..slitdata import SlitData
from . import assemble

__all__ = ["ExtractionRun", "SkippedSlit", "extract", "extract_slit"]

log = logging.getLogger(__name__)

# The kernel is refitted with the model variance when it changed the variance of
# the trace core (profile above CORE_PROFILE) by more than this (median).
REFIT_VARIANCE_CHANGE = 0.02
# Further sources are re-tested when the slice's real noise exceeds the
# propagated one by more than this factor.
NOISE_RETEST = 1.1
CORE_PROFILE = 0.05


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
    slit_index : list of int
        For every spectrum, the position of its slit in `slits.iter_slits`
        order (diagnostics use it to find the slit's data).
    """

    spectra: list[SpectrumResult] = field(default_factory=list)
    skipped: list[SkippedSlit] = field(default_factory=list)
    slit_index: list[int] = field(default_factory=list)


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
    ReferenceFileError
        If ``kernel = "psf"`` and the PSF file is missing or bad, or has no
        aperture for a slit (checked before any work).
    InputError
        If no slit of the input can be read.
    OptimalExtractError
        If no slit could be extracted for other reasons.
    """
    psf = _psf_reference(params)
    template = None if psf is not None else make_template(_slice_kernel(params.kernel))
    label = inputs.input_label(model)
    pairs = list(slits.iter_slits(model))
    unfit = _check_parameters(params, pairs, label)
    if psf is not None:  # a PSF file that does not fit a slit stops the run before any work
        for slit, parent in pairs:
            geometry = slits.stored_geometry(slit, parent)
            if geometry is not None:
                psf.table(slits.slit_name(slit, parent), geometry[1])
    run = ExtractionRun()
    for index, (slit, parent) in enumerate(pairs):
        name = slits.slit_name(slit, parent)
        if index in unfit:
            log.warning("Slit %s skipped: %s", name, unfit[index])
            run.skipped.append(SkippedSlit(name, str(unfit[index]), "ParameterError"))
            continue
        _extract_one(run, index, slit, parent, name, params, template, psf)
    if not run.spectra:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in run.skipped)
        msg = f"{label}: no slit could be extracted ({reasons})"
        bad_input = all(s.error in ("InputError", "ParameterError") for s in run.skipped)
        raise InputError(msg) if bad_input else OptimalExtractError(msg)
    return run


def _extract_one(run, index, slit, parent, name, params, template, psf) -> None:
    """Read and extract one slit into ``run``; any failure becomes a `SkippedSlit`."""
    try:
        data = slits.read_slit(
            slit,
            parent,
            variance_source=params.variance_source,
            drizzle_scale=params.drizzle_scale,
        )
        slit_template = template or psf.template(data.name, data.disp_axis, data.wavelength)
        spectra = extract_slit(data, params, slit_template)
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
        run.slit_index.extend([index] * len(spectra))


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
    """Extract one slit: kernel fit on the slice, profile, Horne's iterated sums.

    Parameters
    ----------
    slit : SlitData
        The slit, dispersion along axis 1.
    params : ExtractParams
        Run parameters.
    template : KernelTemplate, optional
        PSF template for the slice fit; built from ``params.kernel`` (and
        ``params.psf_file``) when None.

    Returns
    -------
    list of SpectrumResult
        One spectrum per source of the slit (one unless several were found
        or given in ``params.source_positions``).
    """
    template = template or _default_template(params, slit)
    sd = slit.cropped(params.extraction_region)
    usable = horne.usable_pixels(sd.data, sd.variance, sd.mask)
    basis = horne.polynomial_basis(sd.shape[0], params.bkg_order)
    fit_usable = usable & ~fit_outliers(sd.data, sd.variance, usable)
    shape = spatial_model(sd, params, template, fit_usable, sd.variance)
    result = _iterate(sd, params, shape, basis)
    noise = _slice_noise(sd, shape, result, usable, params)
    if shape.status == "fit" and (
        noise > 1.0 or _refit_needed(result, sd, fit_usable, shape, params)
    ):
        # Horne's loop: refit the kernel with the model variance, without the outliers
        # (and the further sources re-tested against the real noise of the slice).
        variance = _model_variance(sd, result)
        shape = spatial_model(
            sd,
            params,
            template,
            fit_usable & ~result.rejected,
            variance,
            previous=shape,
            noise_scale=noise,
        )
        result = _iterate(sd, params, shape, basis, start=result.var_poisson)
    if shape.status != "box" and np.all(result.sums.empty) and usable.any():
        reason = (shape.reason + "; " if shape.reason else "") + "no usable pixel under the kernel"
        shape = box_shape(sd, reason, shape.fit, shape.column)
        result = _iterate(sd, params, shape, basis)
    spectra = _spectra(sd, shape, result, usable, params, basis)
    assemble.log_slit(sd, shape.profile, shape.status, spectra, result)
    return spectra


def _slice_kernel(kernel):
    """Template fitted to the slice: the empirical profile starts from a Gaussian."""
    return "gaussian" if kernel == "empirical" else kernel


def _psf_reference(params: ExtractParams) -> psfref.PSFReference | None:
    """The PSF file read and checked once, for ``kernel = "psf"``; else None."""
    if not (isinstance(params.kernel, str) and params.kernel == "psf"):
        if params.psf_file:
            log.info(
                "psf_file %s is not used: kernel is %r, not 'psf'", params.psf_file, params.kernel
            )
        return None
    reference = psfref.read_psf_file(params.psf_file)
    log.info(
        "PSF kernel from %s (apertures %s)",
        reference.filename,
        ", ".join(ap.name for ap in reference.apertures),
    )
    return reference


def _default_template(params: ExtractParams, slit: SlitData) -> KernelTemplate:
    reference = _psf_reference(params)
    if reference is not None:
        return reference.template(slit.name, slit.disp_axis, slit.wavelength)
    return make_template(_slice_kernel(params.kernel))


def _refit_needed(
    result: iteration.IteratedSums,
    sd: SlitData,
    fit_usable: np.ndarray,
    shape: SlitShape,
    params: ExtractParams,
) -> bool:
    """Refit when the variance model changed the weights or outliers entered the fits."""
    if np.isfinite(result.poisson_scale):
        core = fit_usable & (shape.profile.weights > CORE_PROFILE)
        old = sd.var_poisson + sd.var_rnoise + sd.var_flat
        new = _model_variance(sd, result)
        with np.errstate(invalid="ignore", divide="ignore"):
            change = np.abs(new - old)[core] / old[core]
        if change.size and np.nanmedian(change) > REFIT_VARIANCE_CHANGE:
            return True
    pixels = result.rejected & fit_usable
    if not pixels.any():
        return False
    if params.fit_fwhm or params.fit_trace or params.kernel == "empirical":
        return True
    lo = max(shape.column - params.slice_width // 2, 0)
    return bool(pixels[:, lo : lo + params.slice_width].any())


def _model_variance(sd: SlitData, result: iteration.IteratedSums) -> np.ndarray:
    """The variance the iteration ended with: its Poisson part and the input's others."""
    return result.var_poisson + sd.var_rnoise + sd.var_flat


def _slice_noise(
    sd: SlitData,
    shape: SlitShape,
    result: iteration.IteratedSums,
    usable: np.ndarray,
    params: ExtractParams,
) -> float:
    """Real over propagated noise of the kernel slice, when further sources were found.

    Drizzled pixels are correlated along and across the slit, so a detection
    at ``detect_threshold`` in the variance's terms can be noise. With
    ``error_scale = "residual"`` the first round's residuals measure by how
    much (`errorscale.slice_noise_scale`); 1 when not needed or not above
    `NOISE_RETEST`.
    """
    if params.error_scale != "residual" or shape.kinds.count("source") < 2:
        return 1.0
    variance = _model_variance(sd, result)
    sums = result.sums
    model = np.nan_to_num(sums.model)
    source = model - np.nan_to_num(sums.background)
    ok = usable & ~result.rejected
    cross = residual_error_scale(
        sd.data, model, variance, usable=ok, weights=sums.pixel_weights, sums=sums, source=source
    )
    noise = slice_noise_scale(
        sd.data, model, variance, usable=ok, source=source, cross=cross, width=params.slice_width
    )
    if noise <= NOISE_RETEST:
        return 1.0
    log.info(
        "Slit %s: the residuals scatter %.2f x the variance over the kernel slice "
        "(correlated pixels); further sources re-tested against that noise",
        sd.name,
        noise,
    )
    return noise


def _iterate(
    sd: SlitData,
    params: ExtractParams,
    shape: SlitShape,
    basis: np.ndarray,
    start: np.ndarray | None = None,
) -> iteration.IteratedSums:
    return iteration.iterate_extraction(
        sd.data,
        sd.var_poisson,
        sd.var_rnoise + sd.var_flat,
        profile=shape.profile.weights,
        mask=sd.mask,
        bkg_basis=basis,
        extra=shape.others(0),
        reject_sigma=params.reject_sigma,
        max_iter=params.max_iter,
        start_var_poisson=start,
    )


def _spectra(
    sd: SlitData,
    shape: SlitShape,
    result: iteration.IteratedSums,
    usable: np.ndarray,
    params: ExtractParams,
    basis: np.ndarray,
) -> list[SpectrumResult]:
    """One spectrum per source component, ordered along the slit."""
    sources = [i for i, kind in enumerate(shape.kinds) if kind == "source"]
    variance = _model_variance(sd, result)
    position = {i: float(np.nanmedian(shape.profiles[i].centers)) for i in sources}
    spectra = []
    for number, i in enumerate(sorted(sources, key=position.get), start=1):
        sums = (
            result.sums
            if i == 0
            else horne.extract_columns(
                sd.data,
                variance,
                shape.profiles[i].weights,
                mask=sd.mask | result.rejected,
                bkg_basis=basis,
                extra=shape.others(i),
            )
        )
        meta = assemble.metadata(sd, shape, result, params)
        meta.update(
            source_index=number,
            n_sources=len(sources),
            source_position=position[i] + sd.offset[0],
            main_source=i == 0,
        )
        factor = 1.0
        if params.error_scale == "residual":
            scale = residual_error_scale(
                sd.data,
                np.nan_to_num(sums.model),
                variance,
                usable=usable & ~result.rejected,
                weights=sums.pixel_weights,
                sums=sums,
                source=np.nan_to_num(sums.model) - np.nan_to_num(sums.background),
            )
            factor, meta["error_scale"] = scale.factor, scale.to_meta()
        name = sd.name if len(sources) == 1 else f"{sd.name}_{number}"
        spectra.append(
            assemble.spectrum(
                sd,
                name,
                shape.profiles[i],
                sums,
                result,
                usable,
                shape.status,
                meta,
                error_factor=factor,
            )
        )
    return spectra
