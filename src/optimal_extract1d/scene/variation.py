"""The kernel along the dispersion: FWHM(λ) and center(column) from fits in bins.

`vary_kernel` fits the slice kernel in bins along the dispersion (all at once,
`.trace.fit_bins`) and models the good bins' center and width with smooth
polynomials (`.trace.fit_smooth`); bins without enough signal keep the global
kernel, and every such fallback is logged with the slit name. What coadding a
bin's columns over a moving trace does to its fit (the smear) is
forward-modelled (``_with_smear``), and the bins are placed again along the
trace the data chose when it leaves the row they were placed along.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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

    def refit(
        self,
        template: KernelTemplate,
        fit: KernelFit,
        good: np.ndarray,
        *,
        bkg_order: int,
        fit_center: bool,
        fit_fwhm: bool = True,
        fit_offsets: bool = True,
        offsets: tuple[float, ...] | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> trace.BinFits:
        """``template`` fitted to these bins, started from their fits.

        Every ``good`` bin starts at the center and FWHM fitted in it, the
        others at the slice ``fit``'s; ``fit``'s components (or ``offsets``)
        move with the source, their offsets refitted (one value each for the
        slit) with ``fit_offsets``. How another family or another scene is weighed on
        the same bins (`.scene.halo`, `.scene.family`, `.scene.nodbins`).
        """
        return trace.fit_bins(
            template,
            self.values,
            self.sigma,
            bkg_order=bkg_order,
            center=np.where(good, self.fits.center, fit.center),
            fwhm=np.where(good, self.fits.fwhm, fit.fwhm),
            fit_center=fit_center,
            fit_fwhm=fit_fwhm,
            offsets=fit.offsets if offsets is None else offsets,
            extra=extra,
            fit_offsets=fit_offsets,
        )


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
    columns = np.arange(n_disp, dtype=float)
    at = {"wavelength": wavelength, "name": name, "noise_scale": noise_scale}
    guide = flat
    binned = _bin_and_choose(fit, guide, data, variance, usable, settings, **at)
    for _ in range(MAX_REBIN):
        # The bins were placed by the S/N of a kernel held at the slice's row (or
        # along the last guide); where the trace the data chose leaves it, that S/N
        # was underrated and the bins made too wide. They are placed again along
        # that trace, which the new bins may extend further:
        moved = binned.chosen_trace()
        if moved is None or np.max(np.abs(moved - guide.centers)) <= REBIN_SHIFT * fit.fwhm:
            break
        guide = replace(flat, centers=moved)
        binned = _bin_and_choose(fit, guide, data, variance, usable, settings, **at)
    edges, bins, profiles = binned.edges, binned.bins, binned.profiles
    mid_col, mid_lam = trace.bin_centers(edges), binned.wavelength
    trace_order, fwhm_order = binned.trace_order, binned.fwhm_order
    meta, template = binned.meta, binned.template
    in_column = binned.fwhm_abscissa == "column"
    _log_weak_bins(bins, name)
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
            values=bins.intrinsic_center,
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
            at=(mid_col, columns) if in_column else (mid_lam, wavelength),
            values=bins.intrinsic_fwhm,
            order=fwhm_order,
            out=fwhm,
            variable=binned.fwhm_abscissa,
        )
    return KernelVariation(
        template,
        centers,
        np.clip(fwhm, 0.5, None),
        meta,
        flat.column_params,
        BinData(*profiles, bins, binned.per_bin, mid_lam),
    )


@dataclass(frozen=True)
class _Binned:
    """The bins placed along a guide, fitted, and the orders the data chose from them."""

    edges: np.ndarray
    bins: trace.BinFits
    profiles: tuple[np.ndarray, np.ndarray]
    per_bin: dict[str, np.ndarray]
    wavelength: np.ndarray
    template: KernelTemplate
    trace_order: int | None
    fwhm_order: int | None
    meta: dict[str, Any]
    fwhm_abscissa: str = "wavelength"

    def chosen_trace(self) -> np.ndarray | None:
        """The center model of the chosen degree per column; None where held or constant."""
        if not self.trace_order or not self.bins.good.any():
            return None
        return _trace_path(self.bins, self.edges, self.trace_order, intrinsic=True)


def _bin_and_choose(
    fit: KernelFit,
    guide: KernelVariation,
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    settings: SceneSettings,
    *,
    wavelength: np.ndarray,
    name: str,
    noise_scale: float,
) -> _Binned:
    """Bins placed by the S/N of the ``guide`` kernel, fitted, and the orders chosen.

    Where the trace moves, the smear it causes in every bin (`_with_smear`)
    is modelled first, along the bins' centers at the top degree; where that
    cannot matter (`_smear_matters`, which weighs the smear against the
    slit's FWHM precision, so a noisy polynomial's spurious slope at low S/N
    is let be), it is not.
    """
    n_disp = data.shape[1]
    binned = {"variance": variance, "usable": usable, "settings": settings}
    edges, bins, profiles, per_bin = _bin_fits(fit, guide, data, **binned)
    if settings.fit_trace and bins.good.sum() >= 2:
        bins = _with_smear(
            bins,
            fit,
            guide,
            path=_trace_path(bins, edges, settings.trace_order, intrinsic=False),
            edges=edges,
            sigma=profiles[1],
            variance=variance,
            usable=usable,
            settings=settings,
            extra=per_bin,
        )
    mid_col = trace.bin_centers(edges)
    mid_lam = np.interp(mid_col, np.arange(n_disp, dtype=float), wavelength)
    meta: dict[str, Any] = {"bins": _bins_meta(edges, bins, mid_lam)}
    template = fit.template
    if bins.shape_params and bins.good.any():
        template = with_params(template, bins.shape_params)
        meta["shape_params"] = dict(bins.shape_params)
    trace_order, fwhm_order, fwhm_abscissa = _orders(
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
    return _Binned(
        edges,
        bins,
        profiles,
        per_bin,
        mid_lam,
        template,
        trace_order,
        fwhm_order,
        meta,
        fwhm_abscissa,
    )


def _smear_matters(bins: trace.BinFits, path: np.ndarray, edges: np.ndarray) -> bool:
    """Whether the smear can widen a good bin by ``SMEAR_TOLERANCE`` of the FWHM's precision.

    A trace moving by ``L`` across a bin smears its profile by a box of
    variance ``L**2 / 12``, which widens a Gaussian's FWHM ``F`` by
    ``8 ln 2 L**2 / 12 / (2 F)``; a Moffat's peakier core widens up to
    twice that. The slit's FWHM is known to about ``1 / S`` of itself, ``S``
    the S/N of its good bins together: a smear well under that changes
    nothing the data can tell, and is not modelled (the forward model costs
    a profile image and a fit of every bin).
    """
    good = bins.good
    travel = np.abs(path[edges[1:] - 1] - path[edges[:-1]])[good]
    fwhm = np.clip(bins.fwhm[good], 0.5, None)
    widening = 2.0 * 8.0 * np.log(2.0) * travel**2 / 12.0 / (2.0 * fwhm**2)
    precision = 1.0 / np.sqrt(np.sum(np.clip(bins.snr[good], 0.0, None) ** 2))
    return bool(np.max(widening, initial=0.0) > SMEAR_TOLERANCE * precision)


def _trace_path(bins: trace.BinFits, edges: np.ndarray, order: int, *, intrinsic: bool):
    """The good bins' centers (as fitted, or less their smear) modelled per column.

    As `_smooth_model` does it: held constant beyond the outer edges of the
    outer good bins.
    """
    good = bins.good
    first, last = np.nonzero(good)[0][[0, -1]]
    centers = bins.intrinsic_center if intrinsic else bins.center
    return trace.fit_smooth(
        trace.bin_centers(edges)[good],
        centers[good],
        bins.snr[good],
        order=order,
        valid=(float(edges[first]), float(edges[last + 1] - 1)),
    )(np.arange(int(edges[-1]), dtype=float))


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
) -> tuple[int | None, int | None, str]:
    """Degrees of the center and FWHM models, and the FWHM's abscissa.

    ``True`` takes the user's degree (the FWHM's in wavelength), ``False``
    holds the slice value (None); ``"auto"`` lets `.choice.choose_orders`
    pick a degree from 0 (a constant over the whole slit) to the user's, the
    FWHM's in wavelength or in dispersion pixel, recording the evidence in
    ``meta["model_choice"]``.
    """
    n_good = int(bins.good.sum())
    auto = {"trace": settings.fit_trace == "auto", "fwhm": settings.fit_fwhm == "auto"}
    fixed = {
        "trace": settings.trace_order if settings.fit_trace is True else None,
        "fwhm": settings.fwhm_order if settings.fit_fwhm is True else None,
    }
    if not any(auto.values()):
        return fixed["trace"], fixed["fwhm"], "wavelength"
    if n_good == 0:
        log.debug("Slit %s: no bin with enough signal; center and FWHM held at the slice's", name)
        return fixed["trace"], fixed["fwhm"], "wavelength"
    top = {"trace": settings.trace_order, "fwhm": settings.fwhm_order}
    options = {key: (_auto_orders(top[key], n_good) if auto[key] else [fixed[key]]) for key in auto}
    choice = choose_orders(
        template,
        bins,
        (profiles[0], profiles[1] * noise_scale),
        at=at,
        trace_orders=options["trace"],
        fwhm_orders=options["fwhm"],
        offsets=bins.offsets,
        basis=polynomial_basis(profiles[0].shape[0], settings.bkg_order),
        extra=extra,
        fwhm_abscissae=("wavelength", "column") if auto["fwhm"] else ("wavelength",),
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
    return choice.trace_order, choice.fwhm_order, choice.fwhm_abscissa


def _auto_orders(top: int, n_good: int) -> list[int | None]:
    """Candidate degrees: 0 (a constant fitted to the bins) up to ``top``, as the bins allow."""
    return list(range(min(top, max(n_good - 2, 0)) + 1))


def _described(order: int | None) -> str:
    return "held at the slice value" if order is None else f"polynomial of degree {order}"


def _bins_meta(edges: np.ndarray, bins: trace.BinFits, mid_lam: np.ndarray) -> dict[str, list]:
    """The bin fits as plain lists, for the spectrum metadata."""
    return {
        "edges": edges.tolist(),
        "center": bins.intrinsic_center.tolist(),
        "fwhm": bins.intrinsic_fwhm.tolist(),
        **(
            {}
            if bins.smear is None
            else {"center_smear": bins.smear[0].tolist(), "fwhm_smear": bins.smear[1].tolist()}
        ),
        "snr": bins.snr.tolist(),
        "good": bins.good.tolist(),
        "wavelength_um": mid_lam.tolist(),
    }


def _log_weak_bins(bins: trace.BinFits, name: str) -> None:
    """DEBUG: the bins left out of the smooth models (the slit's INFO line counts them once)."""
    n_weak = int((~bins.good).sum())
    if n_weak and bins.good.any():
        log.debug(
            "Slit %s: %d of %d bins too faint or unstable (S/N < %.0f, bound or jump); "
            "the smooth models are fitted to the others",
            name,
            n_weak,
            bins.good.size,
            trace.MIN_BIN_SNR,
        )


def _bin_fits(
    fit: KernelFit,
    guide: KernelVariation,
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
        guide.template, n_cross, guide.centers, fwhm=guide.fwhm, extra=guide.column_params
    )
    basis = polynomial_basis(n_cross, settings.bkg_order)
    first = extract_columns(data, variance, main.weights, mask=~usable, bkg_basis=basis)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = first.flux / np.sqrt(first.variance)

    def placed(plan: trace.BinPlan):
        return plan, *_fit_placed(fit, guide, data, variance, usable, settings, plan.edges)

    plan, values, sigma, per_bin, bins = placed(trace.plan_bins(snr, settings.n_bins))
    if settings.n_bins is None:
        # The bins were placed by the S/N of a fixed profile; their fits free the
        # center, the width and every component's flux, and lose S/N to them. The
        # target's margin over MIN_BIN_SNR holds a loss of a third (a single
        # source loses 0-15 %, simulated nods 0-20 %); where the fits lose more
        # (CEERS 933's four nod copies, their fluxes free in every bin: 43 %; 2 %
        # without them), most bins fall under it and the smooth models are held
        # over whole stretches the bins together cover. The bins are placed again
        # at the S/N the fits see:
        loss = _snr_loss(snr, plan.edges, bins)
        if loss < trace.MIN_BIN_SNR / trace.TARGET_BIN_SNR:
            plan, values, sigma, per_bin, bins = placed(trace.plan_bins(snr * loss, None))
        # and a bin whose fit still fell under MIN_BIN_SNR is merged into a neighbour
        merged = plan.merged_where_faint(bins.snr)
        if merged is not plan:
            plan, values, sigma, per_bin, bins = placed(merged)
    return plan.edges, bins, (values, sigma), per_bin


def _fit_placed(
    fit: KernelFit,
    guide: KernelVariation,
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    settings: SceneSettings,
    edges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], trace.BinFits]:
    """The bins ``edges`` places: their profiles, per-bin template values and fits."""
    values, sigma = coadd_bins(data, variance, usable, edges=edges)
    mids, cols = trace.bin_centers(edges), np.arange(data.shape[1])
    per_bin = {k: np.interp(mids, cols, v) for k, v in guide.column_params.items()}
    bins = trace.fit_bins(
        fit.template,
        values,
        sigma,
        bkg_order=settings.bkg_order,
        center=np.interp(mids, cols, guide.centers),
        fwhm=fit.fwhm,
        fit_center=settings.fit_trace,
        fit_fwhm=settings.fit_fwhm,
        offsets=fit.offsets,
        extra=per_bin,
        # the components' offsets too, one value each for the slit: held at the
        # 30-column slice's (0.01-0.03 px off at S/N 100), a Moffat's shared index
        # bent to fill the misfit at the nod copies' cores
        fit_offsets=bool(fit.offsets),
    )
    return values, sigma, per_bin, bins


def _snr_loss(column_snr: np.ndarray, edges: np.ndarray, bins: trace.BinFits) -> float:
    """Median over the bins of their fitted flux S/N over the S/N that placed them."""
    placed = np.sqrt(
        np.add.reduceat(np.clip(np.nan_to_num(column_snr), 0.0, None) ** 2, edges[:-1])
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.clip(bins.snr, 0.0, None) / placed
    ratio = ratio[np.isfinite(ratio) & (placed > 0)]
    return float(np.median(ratio)) if ratio.size else 1.0


# The smear is modelled where it may widen a bin's FWHM by more than this fraction
# of the slit's FWHM precision (`_smear_matters`).
SMEAR_TOLERANCE = 0.25
# The bins are placed again along the trace the data chose when it leaves the slice's
# row by more than this many FWHM (a Gaussian kernel that far off loses half its
# S/N squared).
REBIN_SHIFT = 0.5
MAX_REBIN = 3


def _with_smear(
    bins: trace.BinFits,
    fit: KernelFit,
    guide: KernelVariation,
    *,
    path: np.ndarray,
    edges: np.ndarray,
    sigma: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    settings: SceneSettings,
    extra: dict[str, np.ndarray],
) -> trace.BinFits:
    """The bins with what coadding their columns over a moving trace did to their fits.

    A bin's profile is the mean of its columns', and where the trace moves
    across the bin (a bowed trace, by up to 0.7 px over a 40-column bin) that
    mean is the kernel smeared by the motion: wider (for a Gaussian of 1.6
    px FWHM, by 4 % over 0.66 px; more for a Moffat's peakier core) and,
    where the trace curves, shifted. Fitted as they are, the bins' widths
    follow the trace's slope: a FWHM model then bends where the trace does
    (at S/N 100 that cost 6 % of variance on a constant-width Gaussian) and
    the criterion pays for the bend. The smear is forward-modelled instead:
    the kernel at the bins' fitted widths is laid along the provisional
    ``path`` (the bins' centers at the top degree, `_trace_path`) with a flux constant
    along every bin, coadded as the data were (their variance and masked
    pixels) and fitted as they were;
    what the fit finds beyond the model's own center and width at every
    bin's central column is the smear (`.trace.BinFits.smear`). Any
    template's response is measured this way, through the same fitter and
    weights, with no rule for its shape.
    """
    if not _smear_matters(bins, path, edges):
        return bins
    good = bins.good
    n_cross, n_disp = variance.shape
    columns = np.arange(n_disp, dtype=float)
    mid_col = trace.bin_centers(edges)
    width = np.repeat(np.where(good, bins.fwhm, fit.fwhm), np.diff(edges))
    template = with_params(fit.template, bins.shape_params) if bins.shape_params else fit.template
    profile = kernel_profile(template, n_cross, path, fwhm=width, extra=guide.column_params)
    # a flux constant along every bin: the first-pass fluxes' noise, coadded with
    # the masked pixels' gaps, would shape the bins as the smear does not
    values, _ = coadd_bins(profile.weights, variance, usable, edges=edges)
    seen = trace.fit_bins(
        template,
        values,
        sigma,
        bkg_order=settings.bkg_order,
        center=np.interp(mid_col, columns, path),
        fwhm=width[edges[:-1]],
        fit_center=True,
        fit_fwhm=bool(settings.fit_fwhm),
        offsets=bins.offsets,
        extra=extra,
    )
    ok = good & np.isfinite(seen.center) & np.isfinite(seen.fwhm)
    shift = np.where(ok, seen.center - np.interp(mid_col, columns, path), 0.0)
    widen = np.where(ok & bool(settings.fit_fwhm), seen.fwhm - width[edges[:-1]], 0.0)
    return replace(bins, smear=(shift, widen))


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
