"""Build a `.SpectrumResult` (flux, variances, DQ, coordinates, metadata) from the sums.

Pure: takes the slit arrays, the profile of one source and the column sums
of `.core.horne`; `.slit.extract_slit` decides what to assemble.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ..core.horne import ColumnSums
from ..core.iteration import IteratedSums
from ..core.profile import Profile
from ..params import ExtractParams
from ..results import (
    DQ_DO_NOT_USE,
    DQ_FALLBACK,
    DQ_FLUX_ESTIMATED,
    DQ_OUTLIER,
    SpectrumResult,
)
from ..scene.model import SceneModel
from ..scene.trace import MIN_BIN_SNR
from ..slitdata import SlitData

__all__ = ["spectrum", "metadata", "along_trace", "log_slit", "MISSING_PROFILE_LIMIT"]

log = logging.getLogger(__name__)

#: A column whose masked pixels carry more than this fraction of the profile
#: gets DQ_FLUX_ESTIMATED: most of its flux comes from the profile, not data.
MISSING_PROFILE_LIMIT = 0.2


def along_trace(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Profile-weighted mean of a per-pixel quantity in every column."""
    ok = np.isfinite(values)
    w = np.where(ok, weights, 0.0)
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(w * np.where(ok, values, 0.0), axis=0) / sw
    # columns without weight: the plain mean (the rest need none)
    plain = ok.any(axis=0) & ~(sw > 0)
    if np.any(plain):
        mean[plain] = np.nanmean(values[:, plain], axis=0)
    return mean


def metadata(
    sd: SlitData, scene: SceneModel, result: IteratedSums, *, params: ExtractParams
) -> dict[str, Any]:
    """What the spectrum's ``meta.optimal_extraction`` records about the fit."""
    kernel = (
        scene.fit.to_meta()
        if scene.fit is not None and scene.status != "box"
        else {"kernel": "box"}
    )
    if params.kernel == "empirical" and scene.status == "fit":
        kernel["kernel"] = "empirical"
    if (
        params.psf_file
        and scene.fit is not None
        and scene.status != "box"
        and getattr(scene.fit.template.model, "reference_psf", False)
    ):  # kernel = "psf", or "auto" that chose the PSF file's profiles
        kernel["psf"] = _psf_metadata(scene.fit, params.psf_file)
    return {
        "status": scene.status,
        "fallback_reason": scene.reason,
        "slice_column": int(scene.column + sd.offset[1]),
        "slice_width": int(min(params.slice_width, sd.shape[1])),
        "bkg_order": int(scene.bkg_order),
        "variance_source": sd.variance_source,
        "kernel": kernel,
        **scene.metadata,
        "iteration": {
            "n_iter": int(result.n_iter),
            "n_rejected": int(result.rejected.sum()),
            "reject_sigma": float(params.reject_sigma),
            "poisson_variance_modelled": bool(np.isfinite(result.poisson_scale)),
        },
    }


def _psf_metadata(fit, psf_file: str) -> dict[str, Any]:
    """The PSF reference used and its fitted stretch, for ``kernel = "psf"``."""
    model, template = fit.template.model, fit.template
    return {
        "file": os.path.basename(psf_file),
        "aperture": str(getattr(getattr(model, "table", None), "name", "")),
        "scale": float(getattr(model, template.width_param).value),
        "wavelength_um": float(model.wavelength.value),
        "reference_fwhm": float(template.fwhm_per_width()),
        "fwhm_note": "FWHM values are scale x reference_fwhm, the PSF FWHM at wavelength_um",
    }


def spectrum(
    sd: SlitData,
    name: str,
    profile: Profile,
    *,
    sums: ColumnSums,
    result: IteratedSums,
    usable: np.ndarray,
    status: str,
    meta: dict[str, Any],
    error_factor: float | np.ndarray = 1.0,
) -> SpectrumResult:
    """The spectrum of one source from its column sums.

    ``error_factor`` (one value, or one per column) multiplies every
    propagated error (see `.core.errorscale` and `.core.shapeerror`).
    """
    weights = profile.weights
    missing = np.sum(np.where(usable & ~result.rejected, 0.0, weights), axis=0)
    dq = np.zeros(sd.shape[1], np.uint32)
    dq[~np.isfinite(sums.flux)] |= DQ_DO_NOT_USE
    dq[missing > MISSING_PROFILE_LIMIT] |= DQ_FLUX_ESTIMATED
    dq[result.rejected.any(axis=0)] |= DQ_OUTLIER
    if status != "fit":
        dq |= DQ_FALLBACK
    f2 = error_factor**2
    return SpectrumResult(
        name=name,
        flux=sums.flux,
        var_poisson=f2 * sums.propagate(result.var_poisson),
        var_rnoise=f2 * sums.propagate(sd.var_rnoise),
        var_flat=f2 * sums.propagate(sd.var_flat),
        background=sums.mean_background,
        bkg_var_poisson=f2 * sums.propagate_background(result.var_poisson),
        bkg_var_rnoise=f2 * sums.propagate_background(sd.var_rnoise),
        bkg_var_flat=f2 * sums.propagate_background(sd.var_flat),
        npixels=sums.npixels,
        dq=dq,
        wavelength=along_trace(sd.wavelength, weights),
        ra=along_trace(sd.ra, weights),
        dec=along_trace(sd.dec, weights),
        region=sd.region(),
        units=sd.units,
        disp_axis=sd.disp_axis,
        attributes=dict(sd.attributes),
        metadata=meta,
        profile=weights,
        scene=np.nan_to_num(sums.model),
    )


def log_slit(
    sd: SlitData,
    profile: Profile,
    status: str,
    *,
    spectra: list,
    result: IteratedSums,
    bins: dict | None = None,
) -> None:
    """One INFO line per slit, and a WARNING per spectrum whose flux rests on its profile.

    The WARNING counts the columns flagged DQ_FLUX_ESTIMATED (masked pixels
    carry more than `MISSING_PROFILE_LIMIT` of the profile there), e.g. a
    trace cut by all-NaN rows at the slit's edge. ``bins``: the scene's record
    of the bins along the dispersion (``metadata["bins"]``), whose bins too
    faint or unstable for the smooth models the line counts.
    """
    for spec in spectra:
        estimated = int(np.count_nonzero(spec.dq & DQ_FLUX_ESTIMATED))
        if estimated:
            log.warning(
                "Slit %s: masked pixels carry more than %d %% of the profile of %s in %d of "
                "%d columns (DQ FLUX_ESTIMATED): the flux there rests on the profile",
                sd.name,
                round(100 * MISSING_PROFILE_LIMIT),
                spec.name,
                estimated,
                spec.dq.size,
            )
    fwhm = profile.fwhm
    good = np.asarray((bins or {}).get("good", []), bool)
    weak = int(np.count_nonzero(~good))
    if weak and good.any():
        note = (
            f"; {weak} of {good.size} bins too faint or unstable for the smooth center and "
            f"FWHM models (S/N < {MIN_BIN_SNR:g}, a bound or a jump), which the others set"
        )
    elif weak:
        note = "; no bin with enough signal: center and FWHM held at the slice's"
    else:
        note = ""
    log.info(
        "Slit %s: %s, center %.2f px, FWHM %.2f px, %d source(s), %d/%d columns extracted, "
        "%d outliers%s",
        sd.name,
        status,
        float(np.nanmedian(profile.centers)) + sd.offset[0],
        float(np.nanmedian(fwhm)) if np.any(np.isfinite(fwhm)) else np.nan,
        len(spectra),
        int(np.isfinite(spectra[0].flux).sum()),
        sd.shape[1],
        int(result.rejected.sum()),
        note,
    )
