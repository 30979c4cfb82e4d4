"""Find the components of a slit: further sources and negative nod copies of the trace.

After the main source is fitted to the kernel slice, the residual profile is
scanned with a matched filter (the fitted PSF): a positive peak above
``threshold`` S/N is another source, a negative one a nod copy. Nod copies
are also looked for, at a lower threshold, where the exposure's nod pattern
puts them. Components are added one at a time, the strongest first, each
time refitting all of them together (`profilefit.fit_kernel` with offsets),
so close pairs are deblended rather than found twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ProfileFitError
from .horne import polynomial_basis
from .kernel import KernelFit, evaluate_native
from .profilefit import component_shapes, fit_kernel

__all__ = [
    "ComponentSearch",
    "find_components",
    "expected_nod_offsets",
    "MAX_COMPONENTS",
    "PRIOR_NOD_SNR",
    "SHUTTER_PITCH_ARCSEC",
]

log = logging.getLogger(__name__)

# NIRSpec MSA shutter pitch along the slitlet (arcsec).
SHUTTER_PITCH_ARCSEC = 0.53
# At most this many components besides the main source.
MAX_COMPONENTS = 6
# S/N a nod copy needs where the nod pattern predicts one.
PRIOR_NOD_SNR = 2.0
# Peaks closer than this many FWHM to a component are that component.
MIN_SEPARATION_FWHM = 1.0
# Positive peaks this close (pixels) to the first or last valid row are slit-edge
# artefacts (partial coverage, bar shadows, nod residuals), not sources.
EDGE_GUARD = 2.0
# A component fainter than this fraction of the main source is not trusted: at
# high S/N a profile right to a few per cent leaves residual peaks that large.
MIN_FLUX_FRACTION = 0.05


@dataclass(frozen=True)
class ComponentSearch:
    """What to look for around the main source.

    Attributes
    ----------
    nods : bool
        Look for negative nod copies.
    sources : bool
        Look for further positive sources.
    threshold : float
        Detection threshold, matched-filter S/N of the coadded profile.
    expected_nods : tuple of float
        Offsets (pixels from the source) where the nod pattern puts copies.
    positions : tuple of float or None
        User source positions (slice pixels); when given, no positive
        sources are searched for and these start the fit.
    """

    nods: bool = True
    sources: bool = True
    threshold: float = 5.0
    expected_nods: tuple[float, ...] = ()
    positions: tuple[float, ...] | None = None


def _residual_snr(fit: KernelFit, values, sigma, bkg_order) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter S/N of the fit residual at every row, and the row grid."""
    n = values.size
    y = np.arange(n, dtype=float)
    params = {
        k: np.array([float(getattr(fit.template.model, k).value)])
        for k in fit.template.model.param_names
        if k != fit.template.amplitude_param
    }
    shapes = component_shapes(fit.template, y, params, np.asarray(fit.offsets))[:, 0, :]
    fluxes = np.r_[fit.flux, fit.component_flux]
    basis = polynomial_basis(n, bkg_order)
    model = shapes @ fluxes + (basis @ np.asarray(fit.bkg_coeffs) if fit.bkg_coeffs else 0.0)
    ok = np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)
    w = np.where(ok, 1.0 / np.where(ok, sigma, 1.0) ** 2, 0.0)
    resid = np.where(ok, values - model, 0.0)
    kern = evaluate_native(fit.template, y, {fit.template.center_param: y})  # (n_y, n_rows)
    kern = kern / np.where(kern.sum(axis=0) > 0, kern.sum(axis=0), 1.0)
    num = kern.T @ (w * resid)
    den = (kern**2).T @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.sqrt(den), 0.0), y


def _next_candidate(snr, rows, taken, fwhm, search: ComponentSearch, valid: np.ndarray):
    """Row of the most significant new component, or None."""
    far = np.all(
        np.abs(rows[:, None] - np.asarray(taken)[None, :]) >= MIN_SEPARATION_FWHM * fwhm, axis=1
    )
    best, best_score = None, 0.0
    if search.sources and search.positions is None and valid.any():
        first, last = rows[valid][[0, -1]]
        inside = (rows >= first + EDGE_GUARD) & (rows <= last - EDGE_GUARD)
        pos = np.where(far & inside & (snr > search.threshold), snr, 0.0)
        if pos.max() > best_score:
            best, best_score = rows[np.argmax(pos)], pos.max() / search.threshold
    if search.nods:
        neg = np.where(far & (snr < -search.threshold), -snr, 0.0)
        if neg.max() / search.threshold > best_score:
            best, best_score = rows[np.argmax(neg)], neg.max() / search.threshold
        for off in search.expected_nods:
            row = taken[0] + off
            i = int(np.clip(np.round(row), 0, rows.size - 1))
            ok = 0 <= row <= rows.size - 1 and far[i] and snr[i] < -PRIOR_NOD_SNR
            if ok and -snr[i] / PRIOR_NOD_SNR > best_score:
                best, best_score = float(row), -snr[i] / PRIOR_NOD_SNR
    return best


def find_components(
    fit: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    search: ComponentSearch,
    name: str,
) -> KernelFit:
    """Add the significant further sources and nod copies to a fitted kernel.

    Parameters
    ----------
    fit : KernelFit
        The main source fitted to the slice (its own components are kept).
    values, sigma : ndarray, shape (n_cross,)
        The coadded slice and its uncertainty.
    bkg_order : int
        Background degree of the fits.
    search : ComponentSearch
        What to look for.
    name : str
        Slit name for the log.

    Returns
    -------
    KernelFit
        The kernel with every component found, all fitted together.
    """
    if search.positions:
        offsets = [p - fit.center for p in search.positions[1:]]
        fit = _refit(fit, values, sigma, bkg_order, search.positions[0], offsets) or fit
    for _ in range(MAX_COMPONENTS - len(fit.offsets)):
        snr, rows = _residual_snr(fit, values, sigma, bkg_order)
        taken = [fit.center, *(fit.center + o for o in fit.offsets)]
        valid = np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)
        row = _next_candidate(snr, rows, taken, fit.fwhm, search, valid)
        if row is None:
            break
        refit = _refit(fit, values, sigma, bkg_order, fit.center, [*fit.offsets, row - fit.center])
        if refit is None or not _credible(refit, row, search):
            break
        fit = refit
    if fit.offsets:
        log.info(
            "Slit %s: %s",
            name,
            ", ".join(
                f"{k} at {o:+.1f} px (S/N {s:.0f})"
                for k, o, s in zip(fit.kinds, fit.offsets, fit.component_snr, strict=True)
            ),
        )
    return fit


def _credible(fit: KernelFit, row: float, search: ComponentSearch) -> bool:
    """The newest component is significant and not a tiny residual of the main source."""
    flux, snr = fit.component_flux[-1], fit.component_snr[-1]
    prior = any(abs(fit.center + o - row) < 1.0 for o in search.expected_nods)
    needed = PRIOR_NOD_SNR if (prior and flux < 0) else search.threshold
    return abs(snr) >= needed and abs(flux) >= MIN_FLUX_FRACTION * fit.flux


def _refit(
    fit: KernelFit, values, sigma, bkg_order, center: float, offsets: Sequence[float]
) -> KernelFit | None:
    """Refit with the given components; None if the fit fails."""
    try:
        return fit_kernel(
            fit.template,
            values,
            sigma,
            bkg_order=bkg_order,
            center=center,
            fwhm=fit.fwhm,
            offsets=offsets,
        )
    except ProfileFitError:
        return None


def expected_nod_offsets(
    *,
    nod_type: str | None,
    primary_type: str | None,
    y_offset: float | None,
    pixel_scale: float,
) -> tuple[float, ...]:
    """Where a nod pattern puts negative copies of the trace in the combined s2d.

    Parameters
    ----------
    nod_type, primary_type : str or None
        DITHER keywords NOD_TYPE (e.g. ``3-SHUTTER-SLITLET``) and PATTTYPE
        (e.g. ``2-POINT-NOD``, ``ALONG-SLIT-NOD``).
    y_offset : float or None
        Dither offset of the exposure along the slit (arcsec); the nod throw
        of a 2-point nod is twice its size.
    pixel_scale : float
        Arcsec per s2d pixel along the slit.

    Returns
    -------
    tuple of float
        Offsets in pixels from the source (both signs); empty when unknown.
        An n-shutter slitlet nod gives copies at +-1..n-1 shutter pitches.
    """
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        return ()
    nod = str(nod_type or "").upper()
    pattern = str(primary_type or "").upper()
    if "SHUTTER" in nod:
        head = nod.split("-", 1)[0]
        n = int(head) if head.isdigit() else 0
        pitch = SHUTTER_PITCH_ARCSEC / pixel_scale
        return tuple(s * k * pitch for k in range(1, n) for s in (-1.0, 1.0))
    if "NOD" in pattern or "NOD" in nod:
        if y_offset:
            throw = 2.0 * abs(float(y_offset)) / pixel_scale
            return (-throw, throw)
    return ()
