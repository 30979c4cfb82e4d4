"""The spatial model of a slit: kernel slice fit, FWHM(λ)/centre(λ), empirical profile.

Pure functions over ``(n_cross, n_disp)`` arrays. `fit_slice` raises
`ProfileFitError` when the kernel cannot be fitted; `extraction` decides the
fallback. `vary_kernel` fits the kernel in bins and models its width and
centre along the dispersion; bins without enough signal keep the global
kernel, and every such fallback is logged with the slit name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import coadd
from ..core.horne import extract_columns, polynomial_basis
from ..core.outliers import nanmedian
from ..core.profile import Profile, normalize_profile
from ..params import ExtractParams
from ..psf.evaluate import kernel_profile
from ..psf.kernel import KernelFit, KernelTemplate, wavelength_params, with_params
from ..psf.profilefit import fit_kernel
from . import trace
from .components import ComponentSearch
from .pruning import prune_components
from .sources import find_components

__all__ = [
    "KernelVariation",
    "fit_slice",
    "fixed_kernel",
    "box_profile",
    "vary_kernel",
    "column_wavelength",
    "FALLBACK_FWHM",
]

log = logging.getLogger(__name__)

# FWHM (pixels) of the fixed fallback kernel when the fit fails.
FALLBACK_FWHM = 2.0


def column_wavelength(wavelength: np.ndarray) -> np.ndarray:
    """Median wavelength of every column, NaN columns filled by interpolation."""
    n_disp = wavelength.shape[1]
    lam = nanmedian(wavelength, axis=0)
    x = np.arange(n_disp, dtype=float)
    good = np.isfinite(lam)
    if good.sum() >= 2:
        return np.interp(x, x[good], lam[good])
    return x


def fit_slice(
    template: KernelTemplate,
    data,
    variance,
    usable,
    column: int,
    params: ExtractParams,
    search: ComponentSearch | None = None,
    name: str = "",
    extra: Mapping[str, float] | None = None,
    previous: KernelFit | None = None,
    noise_scale: float = 1.0,
) -> KernelFit:
    """Fit the kernel to the slice of ``params.slice_width`` columns around ``column``.

    With a ``search``, further sources and negative nod copies found in the
    slice are fitted together with the main source (`sources.find_components`).
    With a ``previous`` fit (a refit with new weights), its components are
    refitted from its values and not searched again; the ones no longer
    significant, with the slice's standard errors times ``noise_scale`` (the
    real noise of correlated pixels), are dropped.
    ``extra`` sets template parameters the data fix for the slice (e.g. the
    wavelength of its centre column, `kernel.wavelength_params`); the fitted
    template keeps them.

    Raises
    ------
    ProfileFitError
        When the fit fails or finds no significant source.
    """
    if extra:
        template = with_params(template, extra)
    values, sigma = coadd.coadd_columns(
        data, variance, usable, column=column, width=params.slice_width
    )
    if previous is not None:
        sigma = sigma * noise_scale
        fit = fit_kernel(
            with_params(previous.template, extra or {}),
            values,
            sigma,
            bkg_order=params.bkg_order,
            center=previous.center,
            fwhm=previous.fwhm,
            offsets=previous.offsets,
        )
        if search is None or not fit.offsets:
            return fit
        return prune_components(fit, values, sigma, bkg_order=params.bkg_order, search=search)
    start = search.positions[0] if search is not None and search.positions else None
    fit = fit_kernel(template, values, sigma, bkg_order=params.bkg_order, center=start)
    if search is None:
        return fit
    return find_components(fit, values, sigma, bkg_order=params.bkg_order, search=search, name=name)


def fixed_kernel(template: KernelTemplate, n_cross: int) -> KernelFit:
    """The fallback kernel: the template at the slit centre with `FALLBACK_FWHM`.

    A PSF reference template keeps its own width instead.
    """
    return KernelFit(
        template=template,
        center=(n_cross - 1) / 2.0,
        fwhm=template.reference_fwhm() or FALLBACK_FWHM,
        amplitude=np.nan,
        bkg_coeffs=(),
        snr=np.nan,
        chi2_reduced=np.nan,
    )


def box_profile(shape: tuple[int, int]) -> Profile:
    """A uniform profile over the whole column (box extraction)."""
    n_cross, n_disp = shape
    return Profile(
        normalize_profile(np.ones(shape)),
        np.full(n_disp, (n_cross - 1) / 2.0),
        np.full(n_disp, np.nan),
    )


@dataclass(frozen=True)
class KernelVariation:
    """Kernel centre and FWHM per column, and what was fitted.

    Attributes
    ----------
    template : KernelTemplate
        PSF shape (with any shape parameter refitted over the whole slit).
    centers, fwhm : ndarray, shape (n_disp,)
        Centre of the main source and FWHM per column (pixels).
    offsets : tuple of float
        Offsets of the other components (sources, nod copies) from the centre.
    metadata : dict
        Bin fits and smooth models (coefficients), for the spectrum metadata.
    column_params : dict of str to ndarray, shape (n_disp,)
        Template parameters the data set per column (the wavelength of a
        tabulated PSF); empty for analytic templates.
    """

    template: KernelTemplate
    centers: np.ndarray
    fwhm: np.ndarray
    offsets: tuple[float, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    column_params: dict[str, np.ndarray] = field(default_factory=dict)

    def profiles(self, n_cross: int) -> list[Profile]:
        """Normalized profile of the main source, then of every other component."""
        return [
            kernel_profile(
                self.template, n_cross, self.centers + off, self.fwhm, self.column_params
            )
            for off in (0.0, *self.offsets)
        ]


def vary_kernel(
    fit: KernelFit, data, variance, usable, wavelength: np.ndarray, params: ExtractParams, name: str
) -> KernelVariation:
    """Fit the kernel in bins and model FWHM(λ) and/or centre(λ) smoothly.

    Parameters
    ----------
    fit : KernelFit
        Global kernel (start values, and the fallback for weak bins); its
        other components move with the source.
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels the fits may use.
    wavelength : ndarray, shape (n_disp,)
        Wavelength of every column (see `column_wavelength`).
    params : ExtractParams
        ``fit_fwhm``, ``fwhm_order``, ``fit_trace``, ``trace_order``, ``n_bins``,
        ``bkg_order``.
    name : str
        Slit name for the log.

    Returns
    -------
    KernelVariation
    """
    n_cross, n_disp = data.shape
    flat = KernelVariation(
        fit.template,
        np.full(n_disp, fit.center),
        np.full(n_disp, fit.fwhm),
        fit.offsets,
        column_params=wavelength_params(fit.template, wavelength),
    )
    if not (params.fit_fwhm or params.fit_trace):
        return flat
    edges, bins = _bin_fits(fit, flat, data, variance, usable, params)
    columns = np.arange(n_disp, dtype=float)
    mid_col = trace.bin_centres(edges)
    mid_lam = np.interp(mid_col, columns, wavelength)
    meta: dict[str, Any] = {
        "bins": {
            "edges": edges.tolist(),
            "center": bins.center.tolist(),
            "fwhm": bins.fwhm.tolist(),
            "snr": bins.snr.tolist(),
            "good": bins.good.tolist(),
            "wavelength_um": mid_lam.tolist(),
        }
    }
    template = fit.template
    if bins.shape_params and bins.good.any():
        template = with_params(template, bins.shape_params)
        meta["shape_params"] = dict(bins.shape_params)
    n_weak = int((~bins.good).sum())
    if n_weak and bins.good.any():
        log.info(
            "Slit %s: %d of %d bins too faint or unstable (S/N < %.0f, bound or jump); "
            "the smooth models are fitted to the others",
            name,
            n_weak,
            bins.good.size,
            trace.MIN_BIN_SNR,
        )
    centers, fwhm = flat.centers.copy(), flat.fwhm.copy()
    # The centre follows the detector geometry (smooth in pixels), the width
    # the diffraction (smooth in wavelength): for the PRISM, whose dispersion
    # changes tenfold, a low-order polynomial in wavelength bends a pixel-smooth
    # trace by ~0.1 px.
    for key, on, order, values_b, out, x, mid_x, variable in (
        (
            "trace_model",
            params.fit_trace,
            params.trace_order,
            bins.center,
            centers,
            columns,
            mid_col,
            "column",
        ),
        (
            "fwhm_model",
            params.fit_fwhm,
            params.fwhm_order,
            bins.fwhm,
            fwhm,
            wavelength,
            mid_lam,
            "wavelength",
        ),
    ):
        if on:
            meta[key] = _smooth_model(
                bins, edges, mid_x, x, values_b, order, out, key, name, variable
            )
    return KernelVariation(
        template, centers, np.clip(fwhm, 0.5, None), fit.offsets, meta, flat.column_params
    )


def _bin_fits(fit: KernelFit, flat: KernelVariation, data, variance, usable, params: ExtractParams):
    """Bin edges from a first-pass S/N, and the kernel fitted in every bin."""
    n_cross = data.shape[0]
    # The S/N that places the bins needs no other component (nod copies barely
    # overlap the source): the main profile and the background only.
    main = kernel_profile(flat.template, n_cross, flat.centers, flat.fwhm, flat.column_params)
    basis = polynomial_basis(n_cross, params.bkg_order)
    first = extract_columns(data, variance, main.weights, mask=~usable, bkg_basis=basis)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = first.flux / np.sqrt(first.variance)
    edges = trace.choose_bins(snr, params.n_bins)
    values, sigma = coadd.coadd_bins(data, variance, usable, edges=edges)
    mids, cols = trace.bin_centres(edges), np.arange(data.shape[1])
    per_bin = {k: np.interp(mids, cols, v) for k, v in flat.column_params.items()}
    bins = trace.fit_bins(
        fit.template,
        values,
        sigma,
        bkg_order=params.bkg_order,
        center=fit.center,
        fwhm=fit.fwhm,
        fit_center=params.fit_trace,
        fit_fwhm=params.fit_fwhm,
        offsets=fit.offsets,
        extra=per_bin,
    )
    return edges, bins


def _smooth_model(bins, edges, mid_x, x, values_b, order, out, key, name, variable):
    """Fit the smooth model of one parameter in ``x`` into ``out``; its metadata (or fallback)."""
    if not bins.good.any():
        log.warning(
            "Slit %s: no bin has enough signal for %s; using the global kernel",
            name,
            key.replace("_model", "(λ)"),
        )
        return {"fallback": "global kernel", "reason": "no bin with enough signal"}
    first, last = np.nonzero(bins.good)[0][[0, -1]]
    covered = (x[edges[first]], x[edges[last + 1] - 1])
    smooth = trace.fit_smooth(
        mid_x[bins.good],
        values_b[bins.good],
        bins.snr[bins.good],
        order,
        valid=covered,
        variable=variable,
    )
    out[:] = smooth(x)
    return smooth.to_meta()
