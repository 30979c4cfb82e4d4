"""Find the components of a slit: further sources and negative nod copies of the trace.

After the main source is fitted to the kernel slice, the residual profile is
scanned with a matched filter (the fitted PSF): a positive peak above
``threshold`` S/N is another source, a negative one a nod copy. Nod copies
are also looked for, at a lower threshold, where the exposure's nod pattern
puts them. Components are added one at a time, the strongest first, each
time refitting all of them together (`.psf.profilefit.fit_kernel` with offsets),
so close pairs are deblended rather than found twice.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.horne import polynomial_basis
from ..core.profile import PROFILE_ERROR
from ..psf.kernel import KernelFit
from ..psf.linear import solve_linear
from ..psf.profilefit import component_shapes
from .components import (
    MIN_FLUX_FRACTION,
    PRIOR_NOD_SNR,
    ComponentSearch,
    SliceData,
    centers,
    refit,
    separated,
)
from .pruning import prune

__all__ = ["describe_components", "find_components", "MAX_COMPONENTS"]


#: At most this many components besides the main source.
MAX_COMPONENTS = 6
# A blend is tested for only when the fit is worse than this reduced chi2.
MISFIT_CHI2 = 1.5
# Components closer than this many FWHM are one component.
MIN_SEPARATION_FWHM = 1.0
# A blend is split into two sources only if they end up this far apart (FWHM).
SPLIT_MIN_SEPARATION_FWHM = 0.75
# ... and only into sources at least this wide (pixels): narrower ones are
# undersampled, fitting noise, cosmic-ray remnants or a curved trace's slice.
SPLIT_MIN_FWHM = 1.0
# Nod copies lie a shutter or a nod throw away: at least this many FWHM from a source.
NOD_MIN_SEPARATION_FWHM = 2.0
# A further source is looked for this many FWHM from the others (closer: a blend).
SOURCE_MIN_SEPARATION_FWHM = 1.5
# Positive peaks this close (pixels) to the first or last valid row are slit-edge
# artefacts (partial coverage, bar shadows, nod residuals), not sources.
EDGE_GUARD = 2.0
# Within this many FWHM of the main source, where a template right only to
# PROFILE_ERROR leaves residuals, a further source must also gain the chi2 they
# hold, (PROFILE_ERROR x S/N)^2 (a Gaussian fitted to a Moffat at slice S/N 550 "found"
# a 5 % source 1 FWHM away).
MISMATCH_REACH_FWHM = 3.0


def _scan(fit: KernelFit, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add one component at every row in turn (linear fits, all rows at once).

    The components already found keep their shapes; all fluxes and the
    background are refitted with the new one, so a background polynomial
    that was bending to mimic an unmodelled component lets go of it.

    Returns
    -------
    gain : ndarray, shape (n_rows,)
        Decrease of chi2 when a component is added at that row.
    flux, snr : ndarray, shape (n_rows,)
        Flux of the added component and its S/N.
    """
    n = data.values.size
    y = np.arange(n, dtype=float)
    params = {
        k: np.array([float(getattr(fit.template.model, k).value)])
        for k in fit.template.model.param_names
        if k != fit.template.amplitude_param
    }
    rows = np.asarray(y - fit.center)
    shapes = component_shapes(fit.template, y, params, offsets=np.r_[fit.offsets, rows])[:, 0, :]
    fixed, candidates = shapes[:, : len(fit.offsets) + 1], shapes[:, len(fit.offsets) + 1 :]
    n_rows = candidates.shape[1]
    stacked = np.concatenate(
        [np.broadcast_to(fixed[:, None, :], (n, n_rows, fixed.shape[1])), candidates[:, :, None]],
        axis=2,
    )
    values = np.broadcast_to(data.values[:, None], (n, n_rows))
    sigma = np.broadcast_to(data.sigma[:, None], (n, n_rows))
    basis = polynomial_basis(n, data.bkg_order)
    base, _, _, _ = solve_linear(
        fixed[:, None, :], data.values[:, None], data.sigma[:, None], basis=basis
    )
    resid, coeffs, snr, _ = solve_linear(stacked, values, sigma, basis=basis)
    gain = np.sum(base**2) - np.sum(resid**2, axis=0)
    return gain, coeffs[:, fixed.shape[1]], snr[:, fixed.shape[1]]


def find_components(
    fit: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    search: ComponentSearch,
) -> KernelFit:
    """Add the significant further sources and nod copies to a fitted kernel.

    In order: the user's source positions; nod copies and further sources,
    the most significant first; if the fit is still poor, a test whether the
    main peak is a blend of two sources (then more components). Each is added
    only if significant, not a small residual of the main source, and
    clearly separated from the others; a final pass drops the ones that
    became insignificant.

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

    Returns
    -------
    KernelFit
        The kernel with every component found, all fitted together.
    """
    data = SliceData(values, sigma, bkg_order)
    if search.positions:
        offsets = [p - search.positions[0] for p in search.positions[1:]]
        fit = refit(fit, data, center=search.positions[0], offsets=offsets) or fit
    if search.nods and search.expected_nods:
        fit = _expected_nods(fit, data, search)
    fit = _add_components(fit, data, search)
    return prune(fit, data, search)


def describe_components(fit: KernelFit) -> str:
    """The further sources and nod copies of a fit, for the log ("" when none)."""
    return ", ".join(
        f"{k} at {o:+.1f} px (S/N {s:.0f})"
        for k, o, s in zip(fit.kinds, fit.offsets, fit.component_snr, strict=True)
    )


def _expected_nods(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Fit the nod copies where the exposure's nod pattern puts them, all at once.

    Only copies that fall on the slice's valid rows are tried; the ones that
    come out insignificant are dropped later (`.pruning.prune`). One fit instead of
    a search per copy.
    """
    valid = data.valid
    rows = np.arange(data.values.size)
    inside = [
        o
        for o in search.expected_nods
        if valid[np.clip(np.round(fit.center + o).astype(int), 0, rows.size - 1)]
        and 0 <= fit.center + o <= rows.size - 1
    ]
    if not inside:
        return fit
    trial = refit(fit, data, center=fit.center, offsets=[*fit.offsets, *inside])
    if trial is None or not separated(trial, MIN_SEPARATION_FWHM):
        return fit
    return prune(trial, data, search)


def _try_split(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Replace the main source by two if that is a significantly better fit (a blend)."""
    # A template right to PROFILE_ERROR leaves chi2 of order (PROFILE_ERROR S/N)^2 that a
    # second component would also take up: demand that much more. No fit can gain more
    # than the chi2 in excess of its degrees of freedom: skip the fit when that is less.
    needed = search.threshold**2 + (PROFILE_ERROR * fit.snr) ** 2
    dof = fit.chi2 / fit.chi2_reduced if fit.chi2_reduced > 0 else 1.0
    if fit.chi2 - dof < needed:
        return fit
    half = 0.5 * fit.fwhm
    pair = refit(
        fit, data, center=fit.center - half, offsets=[2 * half, *fit.offsets], fwhm=0.7 * fit.fwhm
    )
    if pair is None or not separated(pair, SPLIT_MIN_SEPARATION_FWHM) or pair.fwhm < SPLIT_MIN_FWHM:
        return fit
    gain = fit.chi2 - pair.chi2
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
        pair = refit(pair, data, center=pair.center + pair.offsets[0], offsets=swapped) or pair
    return pair


def _add_components(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Add nod copies and further sources, the best first; then one joint refit.

    Candidates come from ``_scan`` (linear fits with the shapes held), so the
    search costs one non-linear fit after the first component (whose absence
    may have distorted the main source's width) and one at the end, rather
    than one per candidate. The nod-copy and source candidates compete on
    their chi2 gain: the residual alone is ambiguous (a fitted background
    bends around unmodelled nod copies into positive bumps, and around an
    unmodelled neighbour into negative dips). The main source split into two
    (a blend) is tried before the search, and after it when the fit stays
    poor; the best of these, with chi2 charged threshold**2 per component,
    is kept.
    """
    start = len(fit.offsets)
    found = [_greedy(fit, data, search)]
    if search.sources and not search.positions:
        # A blend fitted as one broad source leaves residuals that look like other
        # components: split first, and also after the search if the fit stays poor.
        for before in (fit, found[0]):
            if before is found[0] and before.chi2_reduced <= MISFIT_CHI2:
                continue
            split = _try_split(before, data, search)
            if split is not before:
                found.append(_greedy(split, data, search))
    fit = min(found, key=lambda f: f.chi2 + sum(_charge(f, search, o) for o in f.offsets))
    if len(fit.offsets) > start:
        fit = refit(fit, data, center=fit.center, offsets=fit.offsets) or fit
    return fit


def _charge(fit: KernelFit, search: ComponentSearch, offset: float | np.ndarray):
    """chi2 gain a source at ``offset`` from the main one must bring to be believed.

    The detection threshold squared, plus, near the main source, the chi2 a
    template right to `.PROFILE_ERROR` leaves there.
    """
    near = np.abs(offset) < MISMATCH_REACH_FWHM * fit.fwhm
    return search.threshold**2 + np.where(near, (PROFILE_ERROR * fit.snr) ** 2, 0.0)


def _greedy(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Add the best credible candidate while there is one.

    The first step refits the best candidate of each sign non-linearly and
    keeps the better (an unmodelled component may have distorted the main
    source's width, so linear gains can mislead there); later steps compare
    linear gains and hold the shapes.
    """
    negative = search.nods
    positive = search.sources and not search.positions
    first = True
    while len(fit.offsets) < MAX_COMPONENTS:
        found = [
            c
            for c in (
                negative and _candidate(fit, data, search, negative=True),
                positive and _candidate(fit, data, search, negative=False),
            )
            if c
        ]
        if not found:
            return fit
        step = refit if first else _linear
        trials = []
        for row, _gain, is_negative in sorted(found, key=lambda c: -c[1])[: 2 if first else 1]:
            trial = step(fit, data, center=fit.center, offsets=[*fit.offsets, row - fit.center])
            if trial is not None and _credible(trial, row, search, negative=is_negative):
                trials.append(trial)
        if not trials:
            return fit
        fit, first = min(trials, key=lambda f: f.chi2), False
    return fit


def _linear(fit: KernelFit, data: SliceData, *, center: float, offsets) -> KernelFit:
    """The fit with new component offsets, shapes held: fluxes and background only."""
    n = data.values.size
    params = {
        k: np.array([float(getattr(fit.template.model, k).value)])
        for k in fit.template.model.param_names
        if k != fit.template.amplitude_param
    }
    shapes = component_shapes(
        fit.template, np.arange(n, dtype=float), params, offsets=np.asarray(offsets, float)
    )
    resid, coeffs, snr, _ = solve_linear(
        shapes, data.values[:, None], data.sigma[:, None], basis=polynomial_basis(n, data.bkg_order)
    )
    chi2 = float(np.sum(resid**2))
    dof = max(fit.chi2 / fit.chi2_reduced if fit.chi2_reduced > 0 else 1.0, 1.0) - (
        len(offsets) - len(fit.offsets)
    )
    return replace(
        fit,
        flux=float(coeffs[0, 0]),
        snr=float(snr[0, 0]),
        chi2=chi2,
        chi2_reduced=chi2 / max(dof, 1.0),
        offsets=tuple(float(o) for o in offsets),
        component_flux=tuple(float(f) for f in coeffs[0, 1 : shapes.shape[2]]),
        component_snr=tuple(float(v) for v in snr[0, 1:]),
    )


def _candidate(fit: KernelFit, data: SliceData, search: ComponentSearch, *, negative: bool):
    """``(row, chi2 gain, negative)`` of the best new component of one sign, or None.

    Rows are ranked by chi2 gain over the gain needed (threshold squared, plus
    the template-error allowance of ``_charge`` near the main source; the
    nod-pattern prior lowers it where copies are expected).
    """
    gain, flux, snr = _scan(fit, data)
    rows = np.arange(data.values.size, dtype=float)
    at = centers(fit)
    positive = at[np.r_[True, np.asarray(fit.component_flux) > 0]]
    dist_all = np.min(np.abs(rows[:, None] - at[None, :]), axis=1)
    dist_pos = np.min(np.abs(rows[:, None] - positive[None, :]), axis=1)
    needed = np.full(rows.size, search.threshold)
    needed_gain = needed**2
    if negative:
        allowed = (dist_pos >= NOD_MIN_SEPARATION_FWHM * fit.fwhm) & (dist_all >= fit.fwhm)
        allowed &= flux < 0
        for off in search.expected_nods:
            needed[np.abs(rows - (fit.center + off)) < 1.0] = PRIOR_NOD_SNR
        needed_gain = needed**2
    else:
        first, last = rows[data.valid][[0, -1]] if data.valid.any() else (0, -1)
        inside = (rows >= first + EDGE_GUARD) & (rows <= last - EDGE_GUARD)
        allowed = inside & (dist_all >= SOURCE_MIN_SEPARATION_FWHM * fit.fwhm) & (flux > 0)
        needed_gain = _charge(fit, search, rows - fit.center)
    significant = (np.abs(snr) >= needed) & (gain > needed_gain)
    score = np.where(allowed & significant, gain / needed_gain, 0.0)
    if score.max() <= 0:
        return None
    best = int(np.argmax(score))
    return float(rows[best]), float(gain[best]), negative


def _credible(fit: KernelFit, row: float, search: ComponentSearch, *, negative: bool) -> bool:
    """The newest component has the wanted sign, is significant and apart from the rest."""
    flux, snr = fit.component_flux[-1], fit.component_snr[-1]
    prior = any(abs(fit.center + o - row) < 1.0 for o in search.expected_nods)
    needed = PRIOR_NOD_SNR if (prior and negative) else search.threshold
    return (
        (flux < 0) == negative
        and abs(snr) >= needed
        and abs(flux) >= MIN_FLUX_FRACTION * fit.flux
        and separated(fit, MIN_SEPARATION_FWHM)
    )
