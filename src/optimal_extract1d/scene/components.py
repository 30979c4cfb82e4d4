"""What the component search and the pruning share: the slice, the search settings, refits.

A slit's kernel may hold, besides the main source, further sources and
negative nod copies at fixed offsets (``offsets`` of `.psf.kernel.KernelFit`).
`.sources` finds them, `.pruning` drops the ones that do not hold up; both
refit the composite kernel to the coadded slice with `refit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..psf.kernel import KernelFit
from ..psf.profilefit import FitFailure, attempt_kernel_fit

__all__ = [
    "ComponentSearch",
    "SliceData",
    "centers",
    "refit",
    "separated",
    "MIN_FLUX_FRACTION",
    "PRIOR_NOD_SNR",
]

#: S/N a nod copy needs where the nod pattern predicts one.
PRIOR_NOD_SNR = 2.0
#: A component fainter than this fraction of the main source is not trusted; at
#: high S/N a profile right to a few per cent leaves residual peaks that large.
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


@dataclass(frozen=True)
class SliceData:
    """The coadded kernel slice, its uncertainty and the background degree of the fits."""

    values: np.ndarray
    sigma: np.ndarray
    bkg_order: int

    @property
    def valid(self) -> np.ndarray:
        """Rows with a finite value and a positive uncertainty."""
        return np.isfinite(self.values) & np.isfinite(self.sigma) & (self.sigma > 0)


def centers(fit: KernelFit) -> np.ndarray:
    """Centers of the main source and of every component (pixels)."""
    return fit.center + np.r_[0.0, np.asarray(fit.offsets, float)]


def separated(fit: KernelFit, min_fwhm: float) -> bool:
    """Every pair of components is at least ``min_fwhm`` FWHM apart."""
    c = centers(fit)
    gaps = np.abs(c[:, None] - c[None, :])[np.triu_indices(c.size, 1)]
    return bool(np.all(gaps >= min_fwhm * fit.fwhm))


def refit(
    fit: KernelFit,
    data: SliceData,
    *,
    center: float,
    offsets: Sequence[float],
    fwhm: float | None = None,
) -> KernelFit | None:
    """Refit with the given components; None if they cannot be fitted."""
    trial = attempt_kernel_fit(
        fit.template,
        data.values,
        data.sigma,
        bkg_order=data.bkg_order,
        center=center,
        fwhm=fwhm or fit.fwhm,
        offsets=offsets,
    )
    return None if isinstance(trial, FitFailure) else trial
