"""The core + halo family (`.psf.halo.CoreHalo1D`), weighed over the whole slit's bins.

A halo of ~10 % of the flux, a few core FWHM wide, is nearly degenerate in
one kernel slice with a Gaussian a little too wide plus the per-column
background: the slice of a S/N 30 continuum gains a chi2 of 5-10 from it,
about the criterion's cost of its shape parameters, while the flux a
Gaussian leaves to the background is 3-4 %. The whole slit holds ~15 times
the slice's evidence. So under ``kernel = "auto"``, once the slice chose a
Gaussian or a Moffat with a background and the kernel was fitted in bins
along the dispersion (`.variation.vary_kernel`), `halo_over_bins` fits the
core + halo to the same bins -- its center and core width per bin, as the
chosen family's, its halo ``fraction`` one value for the whole slit, its
``ratio`` held at `HALO_RATIO` -- and `HaloEvidence.wins` when its chi2 over
the bins is lower by more than the criterion's cost ``k ln(n)`` of its extra
shape parameters (one over a Gaussian, none over a Moffat, whose index it
replaces), ``n`` the bins' pixels. The ratio is then fitted as well, and
kept only when it pays for its own parameter: a broad halo and a sky are so
nearly degenerate that the data rarely demand it, while a wrong free ratio
moves the flux by a per cent. A fit whose ratio or fraction ends on a bound
(a fraction of 0 is the Gaussian) is not a candidate. Without a background
the halo is not weighed: its wings would be the only model of a faint
uniform sky, which the whole slit's background stage looks for.

The fit is skipped when it cannot win: when the chi2 the chosen family
leaves above the bins' degrees of freedom cannot pay for it, or when the
core + halo, evaluated at two fractions at the bins' fitted centers (the core
as narrow as puts the whole profile's FWHM at the chosen family's; fluxes
and background solved exactly, all at once), does not lower the chi2 below
the chosen family's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
from astropy.modeling import models

from ..core.horne import polynomial_basis
from ..psf.halo import FWHM_PER_SIGMA, CoreHalo1D, fwhm_over_core
from ..psf.kernel import KernelFit, KernelTemplate, fitted_params, make_template, with_params
from ..psf.linear import solve_linear
from ..psf.profilefit import at_bound, component_shapes
from . import trace
from .criterion import CRITERION
from .model import SceneSettings
from .variation import BinData

__all__ = ["HaloEvidence", "halo_over_bins", "halo_template"]

#: The halo's ``gamma`` over the core's FWHM unless the bins pay for fitting it: the
#: example PSF file's (``scripts/make_example_psf.py``).
HALO_RATIO = 1.5
#: The screening grid: halo ``gamma`` over the core FWHM and halo flux share; the core
#: is as narrow as puts the whole profile's FWHM at the chosen family's in each bin.
RATIO_GRID = (HALO_RATIO,)
FRACTION_GRID = (0.05, 0.12)


@dataclass(frozen=True)
class HaloEvidence:
    """The core + halo fitted to the bins, against the chosen family.

    Attributes
    ----------
    ratio, fraction : float
        Halo shape (the fit's, or the best grid point's when not fitted).
    gain : float
        Chi2 over the bins of the chosen family less the core + halo's.
    cost : float
        The criterion's cost of the extra shape parameters, ``k ln(n)``.
    n_pixels : int
        Pixels of the bins compared.
    fitted : bool
        Whether the core + halo was fitted (else the grid showed no halo).
    why : str
        Why the core + halo is not a candidate ("" when it is).
    """

    ratio: float
    fraction: float
    gain: float
    cost: float
    n_pixels: int
    fitted: bool
    why: str = ""
    ratio_fitted: bool = False

    @property
    def wins(self) -> bool:
        """The core + halo is a candidate and lowers the chi2 by more than its cost."""
        return self.fitted and not self.why and self.gain > self.cost

    def to_meta(self) -> dict[str, Any]:
        """Plain values for the spectrum metadata."""
        return {
            "criterion": "chi2 + k ln(n) over the bins",
            "chosen": self.wins,
            "ratio": float(self.ratio),
            "ratio_fitted": bool(self.ratio_fitted),
            "fraction": float(self.fraction),
            "chi2_gain": float(self.gain),
            "cost": float(self.cost),
            "n_pixels": int(self.n_pixels),
            "why": self.why or ("not fitted: no grid point paid" if not self.fitted else ""),
        }


def halo_template(ratio: float, fraction: float) -> KernelTemplate:
    """The core + halo with its halo ``ratio`` and ``fraction`` set and held (not refitted)."""
    template = with_params(make_template("halo"), {"ratio": ratio, "fraction": fraction})
    model = template.model.copy()
    model.ratio.fixed = model.fraction.fixed = True
    return replace(template, model=model)


def halo_over_bins(
    template: KernelTemplate, data: BinData, *, fit: KernelFit, settings: SceneSettings
) -> HaloEvidence | None:
    """The core + halo against ``template`` (a Gaussian or Moffat) on the bins of ``data``.

    The halo's ratio is first held at `HALO_RATIO` (one shape parameter, the
    fraction, beyond the center and width); when that pays, the ratio is
    also fitted, and kept only when it pays for its own parameter too.

    Parameters
    ----------
    template : KernelTemplate
        The chosen family, with the shape the bins fitted.
    data : BinData
        The bins' profiles and ``template``'s fits to them.
    fit : KernelFit
        The slice fit: its center starts the bins, its components move with the source.
    settings : SceneSettings
        ``bkg_order`` (an integer) and ``fit_trace``.

    Returns
    -------
    HaloEvidence or None
        None when there is nothing to compare (not a Gaussian or Moffat, no
        background, fewer than two good bins).
    """
    kind = type(template.model)
    if kind not in (models.Gaussian1D, models.Moffat1D) or data.fits.chi2.size == 0:
        return None
    if int(settings.bkg_order) < 0:
        # without a background the halo's wings would be the only model of a faint
        # uniform sky, which the whole slit's background stage looks for instead
        return None
    good = data.fits.good & np.isfinite(data.fits.chi2)
    if good.sum() < 2:
        return None
    # shape parameters beyond the center and width: the fraction (and the ratio when
    # fitted) against the Moffat's index or nothing
    own = len(fitted_params(template)) - 2
    basis = polynomial_basis(data.values.shape[0], int(settings.bkg_order))
    offsets = np.asarray(fit.offsets, float)
    values, sigma = data.values[:, good], data.sigma[:, good]
    n_pixels = int(np.sum(np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)))
    penalty = CRITERION.penalty(n_pixels)
    base = float(np.sum(data.fits.chi2[good]))
    dof = n_pixels - int(good.sum()) * (1 + len(offsets) + basis.shape[1] + 2)
    if _cannot_win(base, dof, 1 - own, penalty):
        return HaloEvidence(HALO_RATIO, np.nan, 0.0, (1 - own) * penalty, n_pixels, False)
    grid, grid_chi2 = _grid(values, sigma, data.fits, good, basis=basis, offsets=offsets)
    best = int(np.argmin(grid_chi2))
    ratio, fraction, core = grid[best]
    if base - grid_chi2[best] <= 0.0:
        gain = base - grid_chi2[best]
        return HaloEvidence(ratio, fraction, gain, (1 - own) * penalty, n_pixels, False)
    trials = []
    start = {"ratio": ratio, "fraction": fraction}
    width = float(np.median(data.fits.fwhm[good])) * core
    for free_ratio in (False, True):
        fitted = _fit_bins(
            start, data, fit=fit, settings=settings, width=width, free_ratio=free_ratio
        )
        trial = _evidence(fitted, data, good, extra_terms=1 + free_ratio - own)
        trials.append(replace(trial, ratio_fitted=free_ratio))
        if not trial.wins:
            break  # the ratio is fitted only where a halo pays
        start = {"ratio": trial.ratio, "fraction": trial.fraction}
    return min((t for t in trials if t.wins), key=lambda t: t.cost - t.gain, default=trials[0])


def _fit_bins(start, data: BinData, *, fit, settings, width, free_ratio) -> trace.BinFits:
    """The core + halo fitted to every bin, its fraction (and ratio) one value for all."""
    halo = with_params(make_template("halo"), start)
    if not free_ratio:
        model = halo.model.copy()
        model.ratio.fixed = True
        halo = replace(halo, model=model)
    return trace.fit_bins(
        halo,
        data.values,
        data.sigma,
        bkg_order=int(settings.bkg_order),
        center=fit.center,
        fwhm=width,
        fit_center=bool(settings.fit_trace),
        fit_fwhm=True,
        offsets=fit.offsets,
    )


def _evidence(fitted: trace.BinFits, data: BinData, good, *, extra_terms: int) -> HaloEvidence:
    """The chi2 the core + halo gains over the bins both fitted, and its cost."""
    both = good & fitted.good & np.isfinite(fitted.chi2)
    ratio = fitted.shape_params.get("ratio", HALO_RATIO)
    fraction = fitted.shape_params["fraction"]
    n_pixels = int(np.sum(np.isfinite(data.values[:, both]) & (data.sigma[:, both] > 0)))
    cost = extra_terms * CRITERION.penalty(n_pixels)
    gain = float(np.sum(data.fits.chi2[both]) - np.sum(fitted.chi2[both]))
    shape = {n: np.array([v]) for n, v in fitted.shape_params.items()}
    bounds = {n: getattr(CoreHalo1D, n).bounds for n in shape}
    why = ""
    if at_bound(shape, list(shape), bounds, n_prof=1)[0]:
        why = "shape parameter on its bound"
    elif both.sum() < max(2, good.sum() // 2):
        why = "too few bins fitted"
    return HaloEvidence(ratio, fraction, gain, cost, n_pixels, True, why)


def _cannot_win(chi2: float, dof: int, extra_terms: int, penalty: float) -> bool:
    """The chi2 left above the bins' degrees of freedom cannot pay for the halo.

    As `.scene.fit._cannot_win`: the halo can gain about that excess plus one
    per parameter, give or take two standard deviations of the chi2.
    """
    dof = max(dof, 1)
    possible = chi2 - dof + extra_terms + 2.0 * np.sqrt(2.0 * dof)
    return possible < extra_terms * penalty


def _grid(values, sigma, fits: trace.BinFits, good, *, basis, offsets):
    """Chi2 over the good bins of the core + halo at every grid point, and the grid.

    Every grid point's shape is evaluated at the chosen family's bin centers
    and FWHM (`.psf.halo.fwhm_over_core`), its fluxes and background solved
    exactly (all points and bins at once).
    """
    grid = [(r, f, 1.0 / fwhm_over_core(r, f)) for r, f in product(RATIO_GRID, FRACTION_GRID)]
    n_bins, n_grid = int(good.sum()), len(grid)
    ratio, fraction, core = (np.repeat(np.array(g, float), n_bins) for g in zip(*grid, strict=True))
    params = {
        "mean": np.tile(fits.center[good], n_grid),
        "stddev": np.tile(fits.fwhm[good], n_grid) * core / FWHM_PER_SIGMA,
        "ratio": ratio,
        "fraction": fraction,
    }
    y = np.arange(values.shape[0], dtype=float)
    shapes = component_shapes(make_template("halo"), y, params, offsets=offsets)
    data, noise = np.tile(values, (1, n_grid)), np.tile(sigma, (1, n_grid))
    resid, *_ = solve_linear(shapes, data, noise, basis=basis)
    chi2 = np.sum(resid**2, axis=0).reshape(n_grid, n_bins).sum(axis=1)
    return grid, chi2
