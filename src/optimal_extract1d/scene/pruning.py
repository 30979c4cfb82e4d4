"""Drop the components of a slit's kernel that do not hold up.

After the search (`.sources.find_components`) and again in the refit with the
model variance or the slice's real noise: components below their threshold
or below `~.components.MIN_FLUX_FRACTION` of the main source are dropped, weakest first,
and a split pair that these weights no longer demand is merged back.
"""

from __future__ import annotations

import numpy as np

from ..core.profile import PROFILE_ERROR
from ..psf.kernel import KernelFit
from .components import (
    MIN_FLUX_FRACTION,
    PRIOR_NOD_SNR,
    ComponentSearch,
    SliceData,
    refit,
)

__all__ = ["prune_components", "prune", "UNSPLIT_MAX_SEPARATION_FWHM"]

#: A source this close to the main one (its FWHM) is re-tested as a blend in a refit.
UNSPLIT_MAX_SEPARATION_FWHM = 3.0


def prune_components(
    fit: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    search: ComponentSearch,
) -> KernelFit:
    """Drop the components that are not significant in this slice (weakest first).

    For a refit with new weights (the model variance): a component found
    with the pipeline variance, whose data-derived weights favour pixels that
    fluctuated low, may not hold up.
    """
    data = SliceData(values, sigma, bkg_order)
    return prune(_unsplit(fit, data, search), data, search)


def _unsplit(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
    """Merge a split pair back into one source when these weights no longer demand two.

    The source nearest the main one, if within `UNSPLIT_MAX_SEPARATION_FWHM`
    (a split narrows both parts, so a pair can end up farther apart than
    ``sources.SOURCE_MIN_SEPARATION_FWHM`` in its own FWHM), is tested as `.sources` tested
    it, against the single source refitted from the pair's combined
    center and width.
    """
    if search.positions:
        return fit
    close = [
        (abs(o), i)
        for i, (o, f) in enumerate(zip(fit.offsets, fit.component_flux, strict=True))
        if f > 0 and abs(o) < UNSPLIT_MAX_SEPARATION_FWHM * fit.fwhm
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
    needed = search.threshold**2 + (PROFILE_ERROR * single.snr) ** 2
    return single if single.chi2 - fit.chi2 < needed else fit


def prune(fit: KernelFit, data: SliceData, search: ComponentSearch) -> KernelFit:
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
        trial = refit(fit, data, center=fit.center, offsets=offsets)
        if trial is None:
            return fit
        fit = trial
    return fit
