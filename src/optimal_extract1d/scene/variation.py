"""The kernel along the dispersion: FWHM(λ) and center(column) from fits in bins.

`vary_kernel` fits the slice kernel in bins along the dispersion (all at once,
`.trace.fit_bins`) and models the good bins' center and width with smooth
polynomials (`.trace.fit_smooth`); bins without enough signal keep the global
kernel, and every such fallback is logged with the slit name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.coadd import coadd_bins
from ..core.horne import extract_columns, polynomial_basis
from ..psf.evaluate import kernel_profile
from ..psf.kernel import KernelFit, KernelTemplate, wavelength_params, with_params
from . import trace
from .choice import choose_orders
from .model import SceneSettings

__all__ = ["BinData", "KernelVariation", "vary_kernel"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinData:
    """The bins' coadded profiles and the kernel fitted in them.

    Attributes
    ----------
    values, sigma : ndarray, shape (n_cross, n_bins)
        Coadded bin profiles and their uncertainties.
    fits : trace.BinFits
        The kernel fitted in every bin.
    extra : dict of str to ndarray, shape (n_bins,)
        Template parameters the data set per bin.
    wavelength : ndarray, shape (n_bins,)
        Wavelength at every bin's center column.
    """

    values: np.ndarray
    sigma: np.ndarray
    fits: trace.BinFits
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    wavelength: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class KernelVariation:
    """Kernel center and FWHM per column, and what was fitted.

    Attributes
    ----------
    template : KernelTemplate
        PSF shape (with any shape parameter refitted over the whole slit).
    centers, fwhm : ndarray, shape (n_disp,)
        Center of the main source and FWHM per column (pixels).
    metadata : dict
        Bin fits and smooth models (coefficients), for the spectrum metadata.
    column_params : dict of str to ndarray, shape (n_disp,)
        Template parameters the data set per column (the wavelength of a
        tabulated PSF); empty for analytic templates.
    bins : BinData or None
        The bin fits, when the kernel was fitted in bins.
    """

    template: KernelTemplate
    centers: np.ndarray
    fwhm: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    column_params: dict[str, np.ndarray] = field(default_factory=dict)
    bins: BinData | None = None


def vary_kernel(
    fit: KernelFit,
    data: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    wavelength: np.ndarray,
    settings: SceneSettings,
    name: str,
    noise_scale: float = 1.0,
) -> KernelVariation:
    """Fit the kernel in bins and model FWHM(λ) and/or center(column) smoothly.

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
        Wavelength of every column (see `.scene.fit.column_wavelength`).
    settings : SceneSettings
        ``fit_fwhm``, ``fwhm_order``, ``fit_trace``, ``trace_order``,
        ``n_bins``, ``bkg_order``.
    name : str
        Slit name for the log.
    noise_scale : float
        The slice's residual scatter over its propagated errors (correlated
        pixels of a drizzled product; 1 in the first round): the ``auto``
        order choice weighs the bins' residuals against errors this much
        larger, so correlated noise is not taken for structure.

    Returns
    -------
    KernelVariation
    """
    n_disp = data.shape[1]
    flat = KernelVariation(
        fit.template,
        np.full(n_disp, fit.center),
        np.full(n_disp, fit.fwhm),
        column_params=wavelength_params(fit.template, wavelength),
    )
    if not (settings.fit_fwhm or settings.fit_trace):
        return flat
    edges, bins, profiles, per_bin = _bin_fits(
        fit, flat, data, variance=variance, usable=usable, settings=settings
    )
    columns = np.arange(n_disp, dtype=float)
    mid_col = trace.bin_centers(edges)
    mid_lam = np.interp(mid_col, columns, wavelength)
    meta: dict[str, Any] = {"bins": _bins_meta(edges, bins, mid_lam)}
    template = fit.template
    if bins.shape_params and bins.good.any():
        template = with_params(template, bins.shape_params)
        meta["shape_params"] = dict(bins.shape_params)
    _log_weak_bins(bins, name)
    trace_order, fwhm_order = _orders(
        template,
        bins,
        profiles,
        fit=fit,
        settings=settings,
        at=(mid_col, mid_lam),
        extra=per_bin,
        meta=meta,
        name=name,
        noise_scale=noise_scale,
    )
    centers, fwhm = flat.centers.copy(), flat.fwhm.copy()
    # The center follows the detector geometry (smooth in pixels), the width
    # the diffraction (smooth in wavelength): for the PRISM, whose dispersion
    # changes tenfold, a low-order polynomial in wavelength bends a pixel-smooth
    # trace by ~0.1 px.
    if trace_order is not None:
        meta["trace_model"] = _smooth_model(
            bins,
            edges,
            key="trace_model",
            name=name,
            at=(mid_col, columns),
            values=bins.center,
            order=trace_order,
            out=centers,
            variable="column",
        )
    if fwhm_order is not None:
        meta["fwhm_model"] = _smooth_model(
            bins,
            edges,
            key="fwhm_model",
            name=name,
            at=(mid_lam, wavelength),
            values=bins.fwhm,
            order=fwhm_order,
            out=fwhm,
            variable="wavelength",
        )
    return KernelVariation(
        template,
        centers,
        np.clip(fwhm, 0.5, None),
        meta,
        flat.column_params,
        BinData(*profiles, bins, per_bin, mid_lam),
    )


def _orders(
    template: KernelTemplate,
    bins: trace.BinFits,
    profiles: tuple[np.ndarray, np.ndarray],
    *,
    fit: KernelFit,
    settings: SceneSettings,
    at: tuple[np.ndarray, np.ndarray],
    extra: dict[str, np.ndarray],
    meta: dict[str, Any],
    name: str,
    noise_scale: float = 1.0,
) -> tuple[int | None, int | None]:
    """Degrees of the center and FWHM models: the user's, or chosen by the criterion.

    ``True`` takes the user's degree, ``False`` holds the slice value (None);
    ``"auto"`` lets `.choice.choose_orders` pick a degree from 0 (a constant
    over the whole slit) to the user's, recording the evidence in
    ``meta["model_choice"]``.
    """
    n_good = int(bins.good.sum())
    auto = {"trace": settings.fit_trace == "auto", "fwhm": settings.fit_fwhm == "auto"}
    fixed = {
        "trace": settings.trace_order if settings.fit_trace is True else None,
        "fwhm": settings.fwhm_order if settings.fit_fwhm is True else None,
    }
    if not any(auto.values()):
        return fixed["trace"], fixed["fwhm"]
    if n_good == 0:
        log.info("Slit %s: no bin with enough signal; center and FWHM held at the slice's", name)
        return fixed["trace"], fixed["fwhm"]
    top = {"trace": settings.trace_order, "fwhm": settings.fwhm_order}
    options = {key: (_auto_orders(top[key], n_good) if auto[key] else [fixed[key]]) for key in auto}
    choice = choose_orders(
        template,
        bins,
        (profiles[0], profiles[1] * noise_scale),
        at=at,
        trace_orders=options["trace"],
        fwhm_orders=options["fwhm"],
        offsets=fit.offsets,
        basis=polynomial_basis(profiles[0].shape[0], settings.bkg_order),
        extra=extra,
    )
    meta["model_choice"] = {**choice.to_meta(), "noise_scale": float(noise_scale)}
    log.debug(
        "Slit %s: center %s, FWHM %s (criterion over %d candidates, %d bins)",
        name,
        _described(choice.trace_order),
        _described(choice.fwhm_order),
        len(choice.candidates),
        n_good,
    )
    return choice.trace_order, choice.fwhm_order


def _auto_orders(top: int, n_good: int) -> list[int | None]:
    """Candidate degrees: 0 (a constant fitted to the bins) up to ``top``, as the bins allow."""
    return list(range(min(top, max(n_good - 2, 0)) + 1))


def _described(order: int | None) -> str:
    return "held at the slice value" if order is None else f"polynomial of degree {order}"


def _bins_meta(edges: np.ndarray, bins: trace.BinFits, mid_lam: np.ndarray) -> dict[str, list]:
    """The bin fits as plain lists, for the spectrum metadata."""
    return {
        "edges": edges.tolist(),
        "center": bins.center.tolist(),
        "fwhm": bins.fwhm.tolist(),
        "snr": bins.snr.tolist(),
        "good": bins.good.tolist(),
        "wavelength_um": mid_lam.tolist(),
    }


def _log_weak_bins(bins: trace.BinFits, name: str) -> None:
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


def _bin_fits(
    fit: KernelFit,
    flat: KernelVariation,
    data: np.ndarray,
    *,
    variance: np.ndarray,
    usable: np.ndarray,
    settings: SceneSettings,
) -> tuple[np.ndarray, trace.BinFits, tuple[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """Bin edges, the kernel fitted in every bin, the bin profiles and per-bin template values."""
    n_cross = data.shape[0]
    # The S/N that places the bins needs no other component (nod copies barely
    # overlap the source): the main profile and the background only.
    main = kernel_profile(
        flat.template, n_cross, flat.centers, fwhm=flat.fwhm, extra=flat.column_params
    )
    basis = polynomial_basis(n_cross, settings.bkg_order)
    first = extract_columns(data, variance, main.weights, mask=~usable, bkg_basis=basis)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = first.flux / np.sqrt(first.variance)
    edges = trace.choose_bins(snr, settings.n_bins)
    values, sigma = coadd_bins(data, variance, usable, edges=edges)
    mids, cols = trace.bin_centers(edges), np.arange(data.shape[1])
    per_bin = {k: np.interp(mids, cols, v) for k, v in flat.column_params.items()}
    bins = trace.fit_bins(
        fit.template,
        values,
        sigma,
        bkg_order=settings.bkg_order,
        center=fit.center,
        fwhm=fit.fwhm,
        fit_center=settings.fit_trace,
        fit_fwhm=settings.fit_fwhm,
        offsets=fit.offsets,
        extra=per_bin,
    )
    return edges, bins, (values, sigma), per_bin


def _smooth_model(
    bins: trace.BinFits,
    edges: np.ndarray,
    *,
    key: str,
    name: str,
    at: tuple[np.ndarray, np.ndarray],
    values: np.ndarray,
    order: int,
    out: np.ndarray,
    variable: str,
) -> dict[str, Any]:
    """Fit one parameter's smooth model and evaluate it into ``out``; its metadata.

    ``at`` holds the abscissa of the bin centers and of every column (both
    in ``variable``); ``values`` the parameter fitted in every bin.
    """
    if not bins.good.any():
        log.warning(
            "Slit %s: no bin has enough signal for %s; using the global kernel",
            name,
            key.replace("_model", "(λ)"),
        )
        return {"fallback": "global kernel", "reason": "no bin with enough signal"}
    mid_x, x = at
    first, last = np.nonzero(bins.good)[0][[0, -1]]
    covered = (x[edges[first]], x[edges[last + 1] - 1])
    smooth = trace.fit_smooth(
        mid_x[bins.good],
        values[bins.good],
        bins.snr[bins.good],
        order=order,
        valid=covered,
        variable=variable,
    )
    out[:] = smooth(x)
    return smooth.to_meta()
