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
# Fractional accuracy assumed for the template when testing for a blend.
PROFILE_ERROR = 0.05
# Components closer than this many FWHM are one component.
MIN_SEPARATION_FWHM = 1.0
# A blend is split into two sources only if they end up this far apart (FWHM).
SPLIT_MIN_SEPARATION_FWHM = 0.75
# Nod copies lie a shutter or a nod throw away: at least this many FWHM from a source.
NOD_MIN_SEPARATION_FWHM = 2.0
# A further source is looked for this many FWHM from the others (closer: a blend).
SOURCE_MIN_SEPARATION_FWHM = 1.5
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

    In order: the user's source positions, negative nod copies, a test
    whether the main peak is a blend of two sources, further positive
    sources; each is added only if significant, not a small residual of the
    main source, and clearly separated from the others.

    Parameters
    ----------
    fit : KernelFit
        The main source fitted to the slice.
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
    data = _Slice(values, sigma, bkg_order)
    if search.positions:
        offsets = [p - search.positions[0] for p in search.positions[1:]]
        fit = _refit(fit, data, search.positions[0], offsets) or fit
    if search.nods:
        fit = _add_components(fit, data, search, negative=True)
    if search.sources and not search.positions:
        fit = _try_split(fit, data, search)
        fit = _add_components(fit, data, search, negative=False)
    fit = _prune(fit, data, search)
    if fit.offsets:
        described = ", ".join(
            f"{k} at {o:+.1f} px (S/N {s:.0f})"
            for k, o, s in zip(fit.kinds, fit.offsets, fit.component_snr, strict=True)
        )
        log.info("Slit %s: %s", name, described)
    return fit


@dataclass(frozen=True)
class _Slice:
    values: np.ndarray
    sigma: np.ndarray
    bkg_order: int

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.values) & np.isfinite(self.sigma) & (self.sigma > 0)


def _centres(fit: KernelFit) -> np.ndarray:
    return fit.center + np.r_[0.0, np.asarray(fit.offsets, float)]


def _separated(fit: KernelFit, min_fwhm: float) -> bool:
    c = _centres(fit)
    gaps = np.abs(c[:, None] - c[None, :])[np.triu_indices(c.size, 1)]
    return bool(np.all(gaps >= min_fwhm * fit.fwhm))


def _try_split(fit: KernelFit, data: _Slice, search: ComponentSearch) -> KernelFit:
    """Replace the main source by two if that is a significantly better fit (a blend)."""
    half = 0.5 * fit.fwhm
    pair = _refit(fit, data, fit.center - half, [2 * half, *fit.offsets], fwhm=0.7 * fit.fwhm)
    if pair is None or not _separated(pair, SPLIT_MIN_SEPARATION_FWHM):
        return fit
    # A template right to PROFILE_ERROR leaves chi2 of order (PROFILE_ERROR S/N)^2 that a
    # second component would also take up: demand that much more.
    gain = fit.chi2 - pair.chi2
    needed = search.threshold**2 + (PROFILE_ERROR * fit.snr) ** 2
    flux, snr = pair.component_flux[0], pair.component_snr[0]
    fainter, brighter = sorted((flux, pair.flux))
    if not (
        gain > needed
        and fainter > MIN_FLUX_FRACTION * brighter
        and min(snr, pair.snr) >= search.threshold
    ):
        return fit
    if flux > pair.flux:  # keep the brighter one as the main source
        swapped = [-pair.offsets[0], *(o - pair.offsets[0] for o in pair.offsets[1:])]
        pair = _refit(pair, data, pair.center + pair.offsets[0], swapped) or pair
    return pair


def _add_components(
    fit: KernelFit, data: _Slice, search: ComponentSearch, negative: bool
) -> KernelFit:
    """Add nod copies (``negative``) or further sources, strongest first."""
    while len(fit.offsets) < MAX_COMPONENTS:
        row = _candidate(fit, data, search, negative)
        if row is None:
            return fit
        refit = _refit(fit, data, fit.center, [*fit.offsets, row - fit.center])
        if refit is None or not _credible(refit, row, search, negative):
            return fit
        fit = refit
    return fit


def _candidate(fit: KernelFit, data: _Slice, search: ComponentSearch, negative: bool):
    """Row of the most significant new component of the wanted sign, or None."""
    snr, rows = _residual_snr(fit, data.values, data.sigma, data.bkg_order)
    centres = _centres(fit)
    positive = centres[np.r_[True, np.asarray(fit.component_flux) > 0]]
    dist_all = np.min(np.abs(rows[:, None] - centres[None, :]), axis=1)
    dist_pos = np.min(np.abs(rows[:, None] - positive[None, :]), axis=1)
    if negative:
        allowed = (dist_pos >= NOD_MIN_SEPARATION_FWHM * fit.fwhm) & (dist_all >= fit.fwhm)
        score = np.where(allowed & (snr < -search.threshold), -snr / search.threshold, 0.0)
        for off in search.expected_nods:
            i = int(np.clip(np.round(fit.center + off), 0, rows.size - 1))
            if allowed[i] and snr[i] < -PRIOR_NOD_SNR:
                score[i] = max(score[i], -snr[i] / PRIOR_NOD_SNR)
    else:
        first, last = rows[data.valid][[0, -1]] if data.valid.any() else (0, -1)
        inside = (rows >= first + EDGE_GUARD) & (rows <= last - EDGE_GUARD)
        allowed = inside & (dist_all >= SOURCE_MIN_SEPARATION_FWHM * fit.fwhm)
        score = np.where(allowed & (snr > search.threshold), snr / search.threshold, 0.0)
    return float(rows[np.argmax(score)]) if score.max() > 0 else None


def _credible(fit: KernelFit, row: float, search: ComponentSearch, negative: bool) -> bool:
    """The newest component has the wanted sign, is significant and apart from the rest."""
    flux, snr = fit.component_flux[-1], fit.component_snr[-1]
    prior = any(abs(fit.center + o - row) < 1.0 for o in search.expected_nods)
    needed = PRIOR_NOD_SNR if (prior and negative) else search.threshold
    return (
        (flux < 0) == negative
        and abs(snr) >= needed
        and abs(flux) >= MIN_FLUX_FRACTION * fit.flux
        and _separated(fit, MIN_SEPARATION_FWHM)
    )


def _prune(fit: KernelFit, data: _Slice, search: ComponentSearch) -> KernelFit:
    """Drop, weakest first, components that became insignificant once others were added."""
    fixed = len(search.positions or ()) - 1
    while len(fit.offsets) > max(fixed, 0):
        needed = np.array(
            [
                PRIOR_NOD_SNR
                if any(abs(o - e) < 1.0 for e in search.expected_nods) and f < 0
                else search.threshold
                for o, f in zip(fit.offsets, fit.component_flux, strict=True)
            ]
        )
        weak = (np.abs(fit.component_snr) < needed) | (
            np.abs(fit.component_flux) < MIN_FLUX_FRACTION * fit.flux
        )
        weak[: max(fixed, 0)] = False
        if not weak.any():
            return fit
        worst = int(np.argmin(np.where(weak, np.abs(fit.component_snr) / needed, np.inf)))
        offsets = [o for i, o in enumerate(fit.offsets) if i != worst]
        refit = _refit(fit, data, fit.center, offsets)
        if refit is None:
            return fit
        fit = refit
    return fit


def _refit(
    fit: KernelFit, data: _Slice, center: float, offsets: Sequence[float], fwhm: float | None = None
) -> KernelFit | None:
    """Refit with the given components; None if the fit fails."""
    try:
        return fit_kernel(
            fit.template,
            data.values,
            data.sigma,
            bkg_order=data.bkg_order,
            center=center,
            fwhm=fwhm or fit.fwhm,
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
