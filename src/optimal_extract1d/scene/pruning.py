"""Drop the components of a slit's kernel that do not hold up.

After the search (`.sources.find_components`) and again in the refit with the
model variance or the slice's real noise: a component whose removal raises
the chi2 by less than its cost
(`.components.component_cost`) is dropped, weakest first, and a split pair
that these weights no longer demand is merged back.
"""

from __future__ import annotations

import numpy as np

from ..psf.kernel import KernelFit
from .components import (
    ComponentSearch,
    SliceData,
    component_cost,
    refit,
    removal_chi2,
)

__all__ = ["prune_components", "prune"]


def prune_components(
    fit: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    search: ComponentSearch,
) -> KernelFit:
    """Drop the components that do not pay their cost in this slice (weakest first).

    For a refit with new weights (the model variance): a component found
    with the pipeline variance, whose data-derived weights favour pixels that
    fluctuated low, may not hold up.
    """
    data = SliceData(values, sigma, bkg_order)
    return prune(_unsplit(fit, data, search), data, search)


def _unsplit(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Merge the source nearest the main one back into it when that costs less than it saves.

    The pair is tested as `.sources` tested the split: against the single
    source refitted from the pair's combined center and width, by the
    criterion (the chi2 against the cost of the second source).
    """
    if search.positions:
        return fit
    close = [
        (abs(o), i)
        for i, (o, f) in enumerate(zip(fit.offsets, fit.component_flux, strict=True))
        if f > 0
    ]
    if not close:
        return fit
    i = min(close)[1]
    offset, share = fit.offsets[i], fit.component_flux[i] / (fit.flux + fit.component_flux[i])
    sigma = fit.fwhm / 2.3548
    width = 2.3548 * np.sqrt(sigma**2 + share * (1 - share) * offset**2)
    rest = [o - share * offset for j, o in enumerate(fit.offsets) if j != i]
    single = refit(fit, data, center=fit.center + share * offset, offsets=rest, fwhm=width)
    if single is None:
        return fit
    cost = component_cost(search, single, 0.0, fit.component_flux[i])
    return single if single.chi2 - fit.chi2 < cost else fit


def prune(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Drop, weakest first, components that no longer pay their cost once others were added.

    A component's worth is the rise of the chi2 when it is removed, the
    others' fluxes and the background refitted with the shapes held
    (`.components.removal_chi2`); the weakest relative to its cost goes,
    and the rest are refitted. A component the joint refit moved outside the
    model's limits goes first: within ``Criterion.resolution`` of a brighter
    one (a source and a nod copy on top of each other describe nothing), or,
    for a further source, onto the slit's edge rows.
    """
    fixed = max(len(search.positions or ()) - 1, 0)
    while len(fit.offsets) > fixed:
        worth = []
        outside = _outside_limits(fit, data, search)
        rise = removal_chi2(fit, data) - fit.chi2
        for i, (o, f) in enumerate(zip(fit.offsets, fit.component_flux, strict=True)):
            if i < fixed or search.is_held(o, f, fit.fwhm):
                worth.append(np.inf)
            elif outside[i]:
                worth.append(-np.inf)
            else:
                worth.append(rise[i] / component_cost(search, fit, o, f))
        worst = int(np.argmin(worth))
        if worth[worst] >= 1.0:
            return fit
        offsets = [o for i, o in enumerate(fit.offsets) if i != worst]
        trial = refit(fit, data, center=fit.center, offsets=offsets)
        if trial is None:
            return fit
        fit = trial
    return fit


def _outside_limits(fit: KernelFit, data: SliceData, search: ComponentSearch) -> np.ndarray:
    """Components (not the main source) outside the model's limits after a joint refit."""
    criterion = search.criterion
    at = fit.center + np.r_[0.0, np.asarray(fit.offsets, float)]
    flux = np.abs(np.r_[fit.flux, np.asarray(fit.component_flux, float)])
    outside = np.zeros(len(fit.offsets), bool)
    for i in range(1, at.size):
        close = np.abs(at - at[i]) < criterion.resolution * fit.fwhm
        close[i] = False
        outside[i - 1] = bool(np.any(close & (flux >= flux[i])))
    rows = np.flatnonzero(data.valid)
    if rows.size and search.sources and not search.positions:
        first, last = rows[0] + criterion.edge_rows, rows[-1] - criterion.edge_rows
        positive = np.asarray(fit.component_flux, float) > 0
        offside = (at[1:] < first) | (at[1:] > last)
        outside |= positive & offside
    return outside
