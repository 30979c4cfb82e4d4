"""Find the components of a slit: further sources and negative nod copies of the trace.

After the main source is fitted to the kernel slice, a component is tried at
every row (linear fits, shapes held, ``_scan``); the one that lowers the
chi2 most beyond its cost (the detection threshold squared, less where the
exposure's nod pattern predicts a nod copy, plus the template-error term near
a bright source; `.scene.criterion.Criterion.component_cost`) is added, and
the search repeats. A positive
component is a further source, a negative one a nod copy. Components are
added one at a time, the strongest first, each time refitting all of them
together (`.psf.profilefit.fit_kernel` with offsets), so close pairs are
deblended rather than found twice; a main peak that is a blend of two sources
is split when that pays by the same criterion.
"""

from __future__ import annotations

import numpy as np

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelFit
from ..psf.linear import solve_linear
from ..psf.profilefit import component_shapes
from .components import (
    ComponentSearch,
    SliceData,
    centers,
    component_cost,
    linear_refit,
    refit,
    separated,
    shape_params,
)
from .pruning import prune

__all__ = ["describe_components", "describe_fates", "find_components"]


def _scan(fit: KernelFit, data: SliceData):
    """Add one component at every row in turn (linear fits, all rows at once).

    The components already found keep their shapes; all fluxes and the
    background are refitted with the new one, so a background polynomial
    that was bending to mimic an unmodelled component lets go of it.

    Returns
    -------
    gain : ndarray, shape (n_rows,)
        Decrease of chi2 when a component is added at that row.
    flux : ndarray, shape (n_rows,)
        Flux of the added component.
    """
    n = data.values.size
    y = np.arange(n, dtype=float)
    rows = np.asarray(y - fit.center)
    shapes = component_shapes(fit.template, y, shape_params(fit), offsets=np.r_[fit.offsets, rows])[
        :, 0, :
    ]
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
    resid, coeffs, _, _ = solve_linear(stacked, values, sigma, basis=basis)
    gain = np.sum(base**2) - np.sum(resid**2, axis=0)
    return gain, coeffs[:, fixed.shape[1]]


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


def describe_fates(first: KernelFit, final: KernelFit | None, *, noise_scale: float) -> str:
    """What the refit made of each component the first round found, for the log.

    A component is *kept* when the final fit has one of the same kind within a
    pixel (or half a FWHM) of it; a further source the main source moved
    toward was *merged* into it (the pair no longer paid for two sources); any
    other was *dropped*: with the model variance, and the slice's real noise
    when it is above the propagated one (``noise_scale``), it no longer paid
    its cost (`.scene.criterion.Criterion.component_cost`).
    """
    why = (
        f"against the slice's real noise ({noise_scale:.2f} x the propagated errors)"
        if noise_scale > 1.0
        else "with the model variance"
    )
    fates = []
    for kind, offset, snr in zip(first.kinds, first.offsets, first.component_snr, strict=True):
        label = f"{kind} at {offset:+.1f} px (S/N {snr:.0f})"
        if final is None:
            fates.append(f"{label} dropped: the refit fell back to a fixed kernel")
            continue
        reach = max(1.0, 0.5 * final.fwhm)
        position = first.center + offset
        kept = any(
            k == kind and abs(final.center + o - position) < reach
            for k, o in zip(final.kinds, final.offsets, strict=True)
        )
        shift = final.center - first.center
        if kept:
            fates.append(f"{label} kept")
        elif kind == "source" and shift * offset > 0 and abs(shift) > 0.1 * abs(offset):
            fates.append(f"{label} merged into the main source: one source fits {why}")
        else:
            fates.append(f"{label} dropped: it no longer pays its cost {why}")
    return "; ".join(fates)


def _expected_nods(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Fit the nod copies where the exposure's nod pattern puts them, all at once.

    Only copies that fall on the slice's valid rows, where the fit has no
    component yet (within a pixel, as `.ComponentSearch.predicted`), are tried; the ones that
    do not pay their cost are dropped (`.pruning.prune`). One fit instead of a
    search per copy.
    """
    valid = data.valid
    rows = np.arange(data.values.size)
    inside = [
        o
        for o in search.expected_nods
        if valid[np.clip(np.round(fit.center + o).astype(int), 0, rows.size - 1)]
        and 0 <= fit.center + o <= rows.size - 1
        and not np.any(np.abs(np.asarray(fit.offsets, float) - o) < 1.0)
    ]
    if not inside:
        return fit
    trial = refit(fit, data, center=fit.center, offsets=[*fit.offsets, *inside])
    if trial is None or not separated(trial, search.criterion.resolution):
        return fit
    return prune(trial, data, search)


def _try_split(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Replace the main source by two if that pays by the criterion (a blend).

    The second source costs what a component at the source's own position
    costs (`.components.component_cost`); no fit can gain more than the chi2
    in excess of its degrees of freedom, so the split is not tried when that
    is less.
    """
    criterion = search.criterion
    needed = component_cost(search, fit, 0.0, 1.0)
    dof = fit.chi2 / fit.chi2_reduced if fit.chi2_reduced > 0 else 1.0
    if fit.chi2 - dof < needed:
        return fit
    half = 0.5 * fit.fwhm
    pair = refit(
        fit, data, center=fit.center - half, offsets=[2 * half, *fit.offsets], fwhm=0.7 * fit.fwhm
    )
    if (
        pair is None
        or not separated(pair, criterion.resolution)
        or pair.fwhm < criterion.min_split_fwhm
        or min(pair.flux, pair.component_flux[0]) <= 0
        or fit.chi2 - pair.chi2 < needed
    ):
        return fit
    if pair.component_flux[0] > pair.flux:  # keep the brighter one as the main source
        swapped = [-pair.offsets[0], *(o - pair.offsets[0] for o in pair.offsets[1:])]
        pair = refit(pair, data, center=pair.center + pair.offsets[0], offsets=swapped) or pair
    return pair


def _add_components(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Add nod copies and further sources, the best first; then one joint refit.

    Candidates come from ``_scan`` (linear fits with the shapes held), so the
    search costs one non-linear fit after the first component (whose absence
    may have distorted the main source's width) and one at the end, rather
    than one per candidate. The nod-copy and source candidates compete on
    their chi2 gain: the residual alone is ambiguous (a fitted
    background bends around unmodelled nod copies into positive bumps, and
    around an unmodelled neighbour into negative dips). The main source split
    into two (a blend) is tried before the search and after it; of these
    scenes, the one with the lowest chi2 plus the cost of its components is
    kept.
    """
    start = len(fit.offsets)
    found = [_greedy(fit, data, search)]
    if search.sources and not search.positions:
        # A blend fitted as one broad source leaves residuals that look like other
        # components: split first, and also after the search.
        for before in (fit, found[0]):
            split = _try_split(before, data, search)
            if split is not before:
                found.append(_greedy(split, data, search))
    fit = min(found, key=lambda f: _criterion(f, data, search))
    if len(fit.offsets) > start:
        fit = refit(fit, data, center=fit.center, offsets=fit.offsets) or fit
    return fit


def _criterion(fit: KernelFit, data: SliceData, search: ComponentSearch) -> float:
    """chi2 of a scene plus the cost of its components."""
    return fit.chi2 + sum(
        component_cost(search, fit, o, f)
        for o, f in zip(fit.offsets, fit.component_flux, strict=True)
    )


def _greedy(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Add the best candidate while one pays its cost.

    The first step refits the best candidate of each sign non-linearly and
    keeps the better (an unmodelled component may have distorted the main
    source's width, so linear gains can mislead there); later steps compare
    linear gains and hold the shapes.
    """
    negative = search.nods
    positive = search.sources and not search.positions
    first = True
    while len(fit.offsets) < search.criterion.max_components:
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
        step = refit if first else linear_refit
        trials = []
        for row, _gain, is_negative in sorted(found, key=lambda c: -c[1])[: 2 if first else 1]:
            trial = step(fit, data, center=fit.center, offsets=[*fit.offsets, row - fit.center])
            if trial is not None and _pays(fit, trial, data, search, negative=is_negative):
                trials.append(trial)
        if not trials:
            return fit
        fit, first = min(trials, key=lambda f: f.chi2), False
    return fit


def _candidate(fit: KernelFit, data: SliceData, search: ComponentSearch, *, negative: bool):
    """``(row, chi2 gain, negative)`` of the best new component of one sign, or None.

    Rows are ranked by gain over cost (`.components.component_cost`), among
    the rows resolved from every component and, for a further source, off
    the slit's edge rows.
    """
    gain, flux = _scan(fit, data)
    criterion = search.criterion
    rows = np.arange(data.values.size, dtype=float)
    dist = np.min(np.abs(rows[:, None] - centers(fit)[None, :]), axis=1)
    allowed = dist >= criterion.blend_reach * fit.fwhm
    if negative:
        allowed &= flux < 0
    else:
        first, last = rows[data.valid][[0, -1]] if data.valid.any() else (0, -1)
        allowed &= (rows >= first + criterion.edge_rows) & (rows <= last - criterion.edge_rows)
        allowed &= flux > 0
    cost = np.array(
        [component_cost(search, fit, r - fit.center, f) for r, f in zip(rows, flux, strict=True)]
    )
    score = np.where(allowed & (gain > cost), gain / cost, 0.0)
    if score.max() <= 0:
        return None
    best = int(np.argmax(score))
    return float(rows[best]), float(gain[best]), negative


def _pays(
    before: KernelFit, fit: KernelFit, data: SliceData, search: ComponentSearch, *, negative: bool
) -> bool:
    """The newest component has the wanted sign, is resolved and lowers the chi2 by its cost."""
    offset, flux = fit.offsets[-1], fit.component_flux[-1]
    if (flux < 0) != negative or not separated(fit, search.criterion.resolution):
        return False
    return before.chi2 - fit.chi2 > component_cost(search, fit, offset, flux)
