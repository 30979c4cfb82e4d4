"""Nod copies the kernel slice could not afford, weighed again over the whole slit.

A three-shutter nod leaves copies of 1/3 of the source at one shutter pitch
and of 1/6 at two. On a faint source the far copies lower the slice's chi2
by 3-17, while the slice's search charges a copy the nod prior's cost (4)
only within a pixel of where the pattern puts it, and a copy the joint fit
moved 1.1 px away the detection threshold's (25). Left out, they are taken
up by whatever the slice has: a constant background goes negative and raises
the flux of every column by 4-8 %, or a Moffat's wings over a negative
constant stand in for them (+28 % on one slit of ``benchmarks/speed.py``'s
file). Over the whole slit the same copies lower the chi2 by hundreds.

So where the exposure's nod pattern predicts copies (`.io.nods`) that fall
on the slit's valid rows and the slice kept none there, `nods_over_bins`
fits the bins along the dispersion (`.variation.vary_kernel`) with them and
without them, every component's offset refitted (one value each for the
slit) in both, and the copies are added when their ``chi2_eff`` gain is
above their cost: the criterion's focused cost (2) for every parameter they
bring, a flux in every bin and an offset each. A copy left out moves the
flux of every column alike, as a background's terms along the dispersion do,
and is judged as they are (``focus_penalty`` of `.criterion.Criterion`): at
``ln n`` a parameter the far copies of a faint source, which gain 90-200 over
12-24 bins, did not pay (cost 150-330). A copy that does not exist gains
about one per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelFit, KernelTemplate
from ..psf.linear import valid_pixels
from . import trace
from .choice import score_fits
from .components import ComponentSearch
from .criterion import CRITERION
from .model import SceneSettings
from .variation import BinData

__all__ = ["NodEvidence", "nods_over_bins"]


@dataclass(frozen=True)
class NodEvidence:
    """The predicted nod copies the slice left out, weighed over the bins.

    Attributes
    ----------
    added : tuple of float
        Their offsets from the source, as the bins refitted them.
    predicted : tuple of float
        Where the nod pattern puts them.
    gain : float
        ``chi2_eff`` over the bins without them less with them.
    cost : float
        The focused cost (2) for each parameter they bring.
    n_pixels : int
        The bins' pixels.
    offsets : tuple of float
        Every component's offset as the bins refitted it (one value each for
        the slit), the added copies' included when they won: ~15 times the
        slice's evidence places a faint copy the slice put 0.5-0.8 px off.
    """

    added: tuple[float, ...]
    predicted: tuple[float, ...]
    gain: float
    cost: float
    n_pixels: int
    offsets: tuple[float, ...]

    @property
    def wins(self) -> bool:
        """Whether the copies pay for their parameters over the bins."""
        return bool(self.added) and self.gain > self.cost

    def to_meta(self) -> dict[str, Any]:
        """Plain values for ``model_choice.nods_over_bins``."""
        return {
            "criterion": "chi2_eff + 2 k over the bins, k = a flux per bin and an offset a copy",
            "predicted": list(self.predicted),
            "offsets": list(self.added),
            "refined_offsets": list(self.offsets),
            "chi2_gain": self.gain,
            "cost": self.cost,
            "n_pixels": self.n_pixels,
            "added": self.wins,
        }


def missing_copies(fit: KernelFit, search: ComponentSearch, valid: np.ndarray) -> list[float]:
    """Predicted copies on the valid rows where the slice's fit holds no component."""
    if not search.nods or not search.expected_nods:
        return []
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return []
    held = np.asarray(fit.offsets, float)
    return [
        float(o)
        for o in search.expected_nods
        if rows[0] <= fit.center + o <= rows[-1] and not np.any(np.abs(held - o) < 1.0)
    ]


def nods_over_bins(
    template: KernelTemplate,
    data: BinData,
    *,
    fit: KernelFit,
    search: ComponentSearch,
    settings: SceneSettings,
) -> NodEvidence | None:
    """The slice's scene against it with the predicted copies it lacks, over the bins.

    Parameters
    ----------
    template : KernelTemplate
        The chosen family, with the shape the bins fitted.
    data : BinData
        The bins' profiles and ``template``'s fits to them.
    fit : KernelFit
        The slice fit: its center starts the bins, its components move with the source.
    search : ComponentSearch
        Where the nod pattern puts copies (``expected_nods``), and whether nods are modelled.
    settings : SceneSettings
        ``bkg_order`` (an integer, the slice's) and ``fit_trace``.

    Returns
    -------
    NodEvidence or None
        None when no predicted copy is missing, or the bins cannot be fitted.
    """
    valid = np.any(np.isfinite(data.values) & (data.sigma > 0), axis=1)
    missing = missing_copies(fit, search, valid)
    # components below the detection threshold (nod copies the nod prior admitted) are
    # the ones the slice places to 0.5-1 px; brighter ones it places well
    faint = any(abs(snr) < search.threshold for snr in fit.component_snr)
    if not (missing or faint) or data.fits.chi2.size == 0:
        return None
    good = data.fits.good & np.isfinite(data.fits.chi2)
    if good.sum() < 2:
        return None
    # the bins' centers and widths held as the chosen family fitted them: only the
    # offsets (and every bin's fluxes and background) are fitted
    held = {"bkg_order": int(settings.bkg_order), "fit_center": False, "fit_fwhm": False}
    without = (
        data.refit(template, fit, good, extra=data.extra, **held) if fit.offsets else data.fits
    )
    if not missing:
        return NodEvidence((), (), 0.0, 0.0, 0, _refined(without, fit))
    offsets = (*fit.offsets, *missing)
    with_copies = data.refit(template, fit, good, offsets=offsets, extra=data.extra, **held)
    both = trace.common_bins(good, without, with_copies)
    if not trace.enough_common(both, good):
        return NodEvidence((), tuple(missing), 0.0, 0.0, 0, _refined(without, fit))
    basis = polynomial_basis(data.values.shape[0], int(settings.bkg_order))
    n_pixels = int(np.sum(valid_pixels(data.values[:, both], data.sigma[:, both])))

    def chi2_eff(bins: trace.BinFits, at: tuple[float, ...]) -> float:
        where = np.asarray(bins.offsets or at, float)
        return score_fits(
            template,
            data.values,
            data.sigma,
            bins,
            both,
            offsets=where,
            basis=basis,
            extra=data.extra,
        )

    gain = chi2_eff(without, fit.offsets) - chi2_eff(with_copies, offsets)
    cost = len(missing) * (int(both.sum()) + 1) * CRITERION.focus_penalty
    added = tuple(float(o) for o in with_copies.offsets[len(fit.offsets) :])
    evidence = NodEvidence(added, tuple(missing), float(gain), float(cost), n_pixels, ())
    kept = with_copies if evidence.wins else without
    return replace(evidence, offsets=_refined(kept, fit))


def _refined(bins: trace.BinFits, fit: KernelFit) -> tuple[float, ...]:
    """The components' offsets as the bins refitted them (the slice's where they could not)."""
    found = tuple(float(o) for o in bins.offsets)
    if len(found) < len(fit.offsets) or not np.all(np.isfinite(found)):
        return tuple(fit.offsets)
    return found
