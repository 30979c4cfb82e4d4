"""What the component search and the pruning share: the slice, the search settings, refits.

A slit's kernel may hold, besides the main source, further sources and
negative nod copies at fixed offsets (``offsets`` of `.psf.kernel.KernelFit`).
`.sources` finds them, `.pruning` drops the ones that do not hold up; both
refit the composite kernel to the coadded slice with `refit` (or, shapes
held, with `linear_refit`), and both judge a component by the chi2 it gains
against its cost (`component_cost`, `.scene.criterion.Criterion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelFit
from ..psf.linear import solve_linear
from ..psf.profilefit import FitFailure, attempt_kernel_fit, component_shapes
from .criterion import CRITERION, Criterion

__all__ = [
    "ComponentSearch",
    "SliceData",
    "centers",
    "component_cost",
    "linear_refit",
    "removal_chi2",
    "refit",
    "separated",
    "shape_params",
]


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
    criterion : Criterion
        The criterion components are judged by, and the model's limits.
    held : tuple of float
        Offsets of nod copies the whole slit's bins found (`.nodbins`): a
        copy near one is not dropped for what the slice alone says of it.
    """

    nods: bool = True
    sources: bool = True
    threshold: float = 5.0
    expected_nods: tuple[float, ...] = ()
    positions: tuple[float, ...] | None = None
    criterion: Criterion = CRITERION
    held: tuple[float, ...] = ()

    def is_held(self, offset: float, flux: float, fwhm: float) -> bool:
        """A negative copy within a FWHM (a pixel at least) of one the whole slit's bins found.

        Not a pixel, as `predicted`: the slice's refits move a copy the slice
        alone cannot place (one went from the bins' -10.7 px to -11.7).
        """
        reach = max(1.0, fwhm)
        return flux < 0 and any(abs(offset - h) < reach for h in self.held)

    def predicted(self, offset: float) -> bool:
        """The nod pattern puts a copy within a pixel of ``offset`` (from the source)."""
        return any(abs(offset - e) < 1.0 for e in self.expected_nods)


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


def component_cost(search: ComponentSearch, fit: KernelFit, offset: float, flux: float) -> float:
    """Decrease of chi2 the component at ``offset`` from ``fit``'s source must bring.

    `.scene.criterion.Criterion.component_cost` with the source's S/N and FWHM.
    """
    return search.criterion.component_cost(
        search.threshold,
        offset=offset,
        fwhm=fit.fwhm,
        source_snr=fit.snr,
        predicted_nod=flux < 0 and search.predicted(offset),
    )


def shape_params(fit: KernelFit) -> dict[str, np.ndarray]:
    """The fit's native shape parameters (all but the amplitude), as arrays of one profile."""
    template = fit.template
    return {
        k: np.array([float(getattr(template.model, k).value)])
        for k in template.model.param_names
        if k != template.amplitude_param
    }


def linear_refit(fit: KernelFit, data: SliceData, *, center: float, offsets) -> KernelFit:
    """The fit with new component offsets, shapes held: fluxes and background only."""
    n = data.values.size
    shapes = component_shapes(
        fit.template,
        np.arange(n, dtype=float),
        shape_params(fit),
        offsets=np.asarray(offsets, float),
    )
    resid, coeffs, snr, _ = solve_linear(
        shapes, data.values[:, None], data.sigma[:, None], basis=polynomial_basis(n, data.bkg_order)
    )
    chi2 = float(np.sum(resid**2))
    dof = max(fit.chi2 / fit.chi2_reduced if fit.chi2_reduced > 0 else 1.0, 1.0) - (
        len(offsets) - len(fit.offsets)
    )
    n_comp = shapes.shape[2]
    return replace(
        fit,
        center=center,
        flux=float(coeffs[0, 0]),
        snr=float(snr[0, 0]),
        bkg_coeffs=tuple(float(c) for c in coeffs[0, n_comp:]),
        chi2=chi2,
        chi2_reduced=chi2 / max(dof, 1.0),
        offsets=tuple(float(o) for o in offsets),
        component_flux=tuple(float(f) for f in coeffs[0, 1:n_comp]),
        component_snr=tuple(float(v) for v in snr[0, 1:n_comp]),
    )


def removal_chi2(fit: KernelFit, data: SliceData) -> np.ndarray:
    """chi2 of the fit without each of its components in turn, shapes held (one solve).

    Returns
    -------
    ndarray
        One value per component: entry ``i`` is the chi2 when component ``i``
        (of ``fit.offsets``) is removed and the other fluxes and the
        background are refitted.
    """
    n, n_off = data.values.size, len(fit.offsets)
    if n_off == 0:
        return np.zeros(0)
    shapes = component_shapes(
        fit.template,
        np.arange(n, dtype=float),
        shape_params(fit),
        offsets=np.asarray(fit.offsets, float),
    )[:, 0, :]
    keep = ~np.eye(n_off + 1, dtype=bool)[1:]  # trial i drops component i + 1
    trials = np.stack([shapes[:, k] for k in keep], axis=1)
    values = np.broadcast_to(data.values[:, None], (n, n_off))
    sigma = np.broadcast_to(data.sigma[:, None], (n, n_off))
    resid, _, _, _ = solve_linear(trials, values, sigma, basis=polynomial_basis(n, data.bkg_order))
    return np.sum(resid**2, axis=0)
