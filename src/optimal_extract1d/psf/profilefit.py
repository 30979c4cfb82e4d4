"""Fit a template's non-linear parameters to many 1-D profiles at once.

Every profile ``d_b(y)`` (a kernel slice, or one bin along the dispersion) is
modelled as ``a_b T(y; theta_b) + sum_k c_bk L_k(y)`` plus further components
of the same shape at offsets (other sources, nod copies): a pixel-integrated
template with non-linear parameters ``theta_b`` (center, width, and e.g. the
Moffat index), fluxes and a polynomial background. All profiles form one
vectorized Levenberg–Marquardt problem (`.psf.lm`); the fluxes and background
are then solved exactly at the best ``theta`` (variable projection,
`.psf.linear.solve_linear`) for their values and S/N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.horne import polynomial_basis
from ..errors import ProfileFitError
from .evaluate import evaluate_native
from .kernel import (
    KernelFit,
    KernelTemplate,
    fitted_params,
    shape_bounds,
    with_params,
)
from .linear import solve_linear, valid_pixels
from .lm import MAX_ITER, LMResult, levenberg_marquardt

__all__ = [
    "FitFailure",
    "at_bound",
    "ProfileFits",
    "attempt_kernel_fit",
    "component_shapes",
    "fit_kernel",
    "fit_profiles",
    "MIN_KERNEL_SNR",
]

#: A kernel whose flux in the slice is below this S/N is treated as "no signal".
MIN_KERNEL_SNR = 5.0
# A fit this much worse than the noise does not describe the slice at all.
MAX_CHI2_REDUCED = 1e5


@dataclass(frozen=True)
class FitFailure:
    """A kernel fit that did not give a usable kernel, and why (`attempt_kernel_fit`)."""

    reason: str


@dataclass(frozen=True)
class ProfileFits:
    """Fitted parameters of many profiles.

    Attributes
    ----------
    params : dict of str to ndarray, shape (n_prof,)
        Native template parameters of the main component (free ones fitted,
        the others as given).
    offsets : ndarray, shape (n_comp - 1,)
        Offsets (pixels) of the other components from the main one.
    flux : ndarray, shape (n_prof, n_comp)
        Coefficient of each unit-sum component: its flux (negative for a
        nod copy).
    flux_snr : ndarray, shape (n_prof, n_comp)
        ``flux`` over its standard error.
    background : ndarray, shape (n_prof, k)
        Background coefficients in the given basis.
    chi2 : ndarray, shape (n_prof,)
        Chi-square of each profile's fit.
    dof : ndarray of int, shape (n_prof,)
        Degrees of freedom of each profile's fit.
    at_bound : ndarray of bool, shape (n_prof,)
        Profiles where a free parameter ended on its bound.
    """

    params: dict[str, np.ndarray]
    offsets: np.ndarray
    flux: np.ndarray
    flux_snr: np.ndarray
    background: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    at_bound: np.ndarray


def component_shapes(
    template: KernelTemplate,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    *,
    offsets: np.ndarray,
) -> np.ndarray:
    """Unit-sum template at the main center and at every offset, ``(n_cross, n_prof, n_comp)``.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape.
    y : ndarray, shape (n_cross,)
        Pixel centers.
    params : mapping of str to ndarray, shape (n_prof,)
        Native parameters of the main component (the others share them, but
        for the center).
    offsets : ndarray, shape (n_comp - 1,)
        Center offsets of the other components, pixels.
    """
    cp = template.center_param
    n_prof = np.size(params[cp])
    shifts = np.r_[0.0, np.asarray(offsets, float)]
    flat = {
        k: np.repeat(np.broadcast_to(np.asarray(v, float), (n_prof,)), shifts.size)
        for k, v in params.items()
    }
    flat[cp] = (np.asarray(params[cp], float)[:, None] + shifts[None, :]).ravel()
    raw = evaluate_native(template, y, flat).reshape(y.size, n_prof, shifts.size)
    total = raw.sum(axis=0, keepdims=True)
    return raw / np.where(total > 0, total, 1.0)


def fit_profiles(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    basis: np.ndarray,
    start: Mapping[str, np.ndarray],
    free: Sequence[str],
    bounds: Mapping[str, tuple[float, float]],
    shared: Sequence[str] = (),
    offsets: Sequence[float] = (),
    fit_offsets: bool = False,
    max_iter: int = MAX_ITER,
) -> ProfileFits:
    """Fit the ``free`` template parameters of every profile (columns of ``values``).

    Parameters
    ----------
    template : KernelTemplate
        PSF shape (an astropy 1-D model; amplitude is linear and not listed).
    values, sigma : ndarray, shape (n_cross, n_prof)
        Profiles and their uncertainties (NaN or sigma <= 0: not used).
    basis : ndarray, shape (n_cross, k)
        Background basis solved with the template in every profile.
    start : mapping of str to ndarray, shape (n_prof,)
        Value of every native parameter except the amplitude.
    free : sequence of str
        Names of the parameters fitted separately in every profile.
    bounds : mapping of str to (float, float)
        Bounds of every free and shared parameter.
    shared : sequence of str
        Names of parameters fitted with one value common to all profiles
        (e.g. the Moffat index, constrained by the whole slit); they start
        from the mean of ``start``.
    offsets : sequence of float
        Center offsets (pixels) of further components of the same shape with
        their own fluxes: other sources in the slit (positive flux) or
        negative nod copies of the trace.
    fit_offsets : bool
        Fit the offsets (one value each for all profiles) or keep them.
    max_iter : int
        Iteration limit of the Levenberg–Marquardt fit (`.psf.lm`).

    Returns
    -------
    ProfileFits
    """
    found = levenberg_marquardt(
        template,
        values,
        sigma,
        basis=basis,
        start=_inside_start(start, bounds, values.shape[1]),
        free=free,
        bounds=bounds,
        shared=shared,
        offsets=offsets,
        fit_offsets=fit_offsets,
        max_iter=max_iter,
    )
    names, n_off = [*free, *shared], (len(offsets) if fit_offsets else 0)
    return _linear_parts(
        template,
        found,
        values,
        sigma=sigma,
        basis=basis,
        bounds=bounds,
        names=names,
        free=free,
        n_off=n_off,
    )


def _inside_start(start, bounds, n_prof: int) -> dict[str, np.ndarray]:
    """Starting values, one per profile, just inside their bounds."""
    return {
        k: np.clip(np.broadcast_to(np.asarray(v, float), (n_prof,)), *_inside(bounds, k))
        for k, v in start.items()
    }


def _inside(bounds, name) -> tuple[float, float]:
    """Bounds shrunk a little, for starting values (no bound for fixed parameters)."""
    if name not in bounds:
        return (-np.inf, np.inf)
    lo, hi = bounds[name]
    span = (hi - lo) if np.isfinite(hi - lo) else 1.0
    return (lo + 1e-6 * span, hi - 1e-6 * span)


def _linear_parts(
    template, found: LMResult, values, *, sigma, basis, bounds, names, free, n_off
) -> ProfileFits:
    """Fluxes, background and fit statistics at the fitted shapes.

    ``names`` are the fitted parameters (the profiles' own, then the shared
    ones) and ``n_off`` the number of fitted offsets; ``at_bound`` looks at
    the profiles' own parameters (``free``) only: a shared one on its bound
    (a Moffat index at its Gaussian limit) says nothing against any profile.
    """
    n_prof = values.shape[1]
    par, offs, shapes = found.params, found.offsets, found.shapes
    resid, coeffs, snr, n_ok = solve_linear(shapes, values, sigma, basis=basis)
    n_comp = shapes.shape[2]
    return ProfileFits(
        params={k: np.asarray(v, float).copy() for k, v in par.items()},
        offsets=np.asarray(offs, float).copy(),
        flux=coeffs[:, :n_comp],
        flux_snr=np.nan_to_num(snr),
        background=coeffs[:, n_comp:],
        chi2=np.sum(resid**2, axis=0),
        dof=np.maximum(n_ok - len(names) - n_off - coeffs.shape[1], 1),
        at_bound=at_bound(par, free, bounds, n_prof=n_prof),
    )


def at_bound(par, names, bounds, *, n_prof: int) -> np.ndarray:
    """Profiles where one of the parameters ``names`` ended on its bound (within 1e-3 of the span).

    ``par`` maps every name to an array of shape ``(n_prof,)``; ``bounds`` to
    ``(low, high)`` (`.kernel.shape_bounds`).
    """
    at_bound = np.zeros(n_prof, bool)
    for name in names:
        lo, hi = bounds[name]
        span = (hi - lo) if np.isfinite(hi - lo) else 1.0
        at_bound |= (par[name] <= lo + 1e-3 * span) | (par[name] >= hi - 1e-3 * span)
    return at_bound


def fit_kernel(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    center: float | None = None,
    fwhm: float | None = None,
    offsets: Sequence[float] = (),
) -> KernelFit:
    """Fit the template (center, width and other shape parameters) + background to a slice.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape to fit.
    values : ndarray, shape (n_cross,)
        Coadded slice (NaN where no data).
    sigma : ndarray, shape (n_cross,)
        Uncertainty of ``values``.
    bkg_order : int
        Background polynomial degree; -1 = no background term.
    center, fwhm : float, optional
        Starting center and FWHM in pixels; from the data (center), the
        template's own width for a PSF reference, else 2 pixels, when None.
    offsets : sequence of float
        Starting offsets of further components (other sources, nod copies),
        fitted together with the main one.

    Returns
    -------
    KernelFit
        With a template carrying the fitted shape parameters.

    Raises
    ------
    ProfileFitError
        When too few pixels are valid, the fit finds no positive source inside
        the slice, or the source is below `MIN_KERNEL_SNR`.
    """
    fit = attempt_kernel_fit(
        template, values, sigma, bkg_order=bkg_order, center=center, fwhm=fwhm, offsets=offsets
    )
    if isinstance(fit, FitFailure):
        raise ProfileFitError(fit.reason)
    return fit


def attempt_kernel_fit(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    center: float | None = None,
    fwhm: float | None = None,
    offsets: Sequence[float] = (),
) -> KernelFit | FitFailure:
    """`fit_kernel`, with an unusable fit returned as a `FitFailure` instead of raised.

    For the trial fits of a search (`.scene.sources`, `.scene.pruning`), where a
    candidate that cannot be fitted is an ordinary outcome, not an error.
    """
    free = fitted_params(template)
    problem = _pixels_problem(values, sigma, 1 + len(free) + max(bkg_order + 1, 0))
    if problem:
        return FitFailure(problem)
    basis = polynomial_basis(values.size, bkg_order)
    start = _kernel_start(
        template, values, sigma, basis=basis, free=free, center=center, fwhm=fwhm, offsets=offsets
    )
    fits = _fit_slice(template, values, sigma, basis=basis, start=start, free=free, offsets=offsets)
    if isinstance(fits, FitFailure):
        return fits
    return _kernel_fit(template, fits, values.size)


def _pixels_problem(values, sigma, n_free: int) -> str:
    """Why the slice cannot be fitted with ``n_free`` parameters ("" when it can)."""
    ok = valid_pixels(values, sigma)
    if ok.sum() <= n_free:
        return f"only {int(ok.sum())} valid pixels in the slice for {n_free} free parameters"
    return ""


def _kernel_start(template, values, sigma, *, basis, free, center, fwhm, offsets):
    """Starting values of the kernel fit: the template's, the FWHM and the center."""
    start = {n: np.array([float(getattr(template.model, n).value)]) for n in free}
    start_fwhm = fwhm or template.reference_fwhm() or 2.0
    start[template.width_param] = np.array([start_fwhm / template.fwhm_per_width()])
    guess = (
        center
        if center is not None
        else _grid_center(template, values, sigma, basis=basis, start=start, offsets=offsets)
    )
    start[template.center_param] = np.array([guess])
    return start


def _fit_slice(template, values, sigma, *, basis, start, free, offsets) -> ProfileFits | FitFailure:
    """`fit_profiles` of the one slice; a numerical failure as a `FitFailure`."""
    try:
        return fit_profiles(
            template,
            values[:, None],
            sigma[:, None],
            basis=basis,
            start=start,
            free=free,
            bounds=shape_bounds(template, values.size),
            offsets=offsets,
            fit_offsets=len(offsets) > 0,
        )
    except (ValueError, np.linalg.LinAlgError) as err:  # singular or non-finite
        return FitFailure(f"the kernel fit failed ({err})")


def _grid_center(template, values, sigma, *, basis, start, offsets) -> float:
    """Best starting center on a half-pixel grid (linear fits only, all at once).

    A grid rather than the peak pixel keeps the fit from starting between two
    sources or on one wing of a masked core, where Gauss–Newton steps stall.
    The grid spans only the rows that hold data (a slit whose edge rows are
    all NaN, as in NIRSpec fixed slits, is searched where it was observed).
    """
    rows = np.nonzero(valid_pixels(values, sigma))[0]
    if rows.size == 0:
        return float(values.size // 2)
    grid = np.arange(float(rows[0]), rows[-1] + 0.25, 0.5)
    params = {k: np.repeat(v, grid.size) for k, v in start.items()}
    params[template.center_param] = grid
    shapes = component_shapes(
        template, np.arange(values.size, dtype=float), params, offsets=np.asarray(offsets, float)
    )
    stacked = np.broadcast_to(values[:, None], (values.size, grid.size))
    sig = np.broadcast_to(sigma[:, None], stacked.shape)
    resid, coeffs, _, _ = solve_linear(shapes, stacked, sig, basis=basis)
    chi2 = np.where(coeffs[:, 0] > 0, np.sum(resid**2, axis=0), np.inf)
    return float(grid[np.argmin(chi2)]) if np.isfinite(chi2).any() else float(np.median(rows))


def _kernel_fit(
    template: KernelTemplate, fits: ProfileFits, n_cross: int
) -> KernelFit | FitFailure:
    """The kernel fit of one slice from its profile fit, or a `FitFailure` if unusable."""
    params = {k: float(v[0]) for k, v in fits.params.items()}
    if not all(np.isfinite(list(params.values()))) or not np.all(np.isfinite(fits.flux)):
        return FitFailure("the kernel fit returned non-finite parameters")
    fitted = with_params(template, params)
    center = params[template.center_param]
    flux, snr = float(fits.flux[0, 0]), float(fits.flux_snr[0, 0])
    fwhm = abs(params[template.width_param]) * fitted.fwhm_per_width()
    if not (np.isfinite(fwhm) and 0 < fwhm < n_cross):
        return FitFailure(
            f"the kernel fit returned an unusable shape (FWHM {fwhm:.3g} px, slice {n_cross} px)"
        )
    chi2_reduced = float(fits.chi2[0] / fits.dof[0])
    if not chi2_reduced < MAX_CHI2_REDUCED:
        return FitFailure(
            f"the kernel does not describe the slice (reduced chi2 {chi2_reduced:.3g})"
        )
    if not (flux > 0 and -0.5 <= center <= n_cross - 0.5):
        return FitFailure(
            f"no positive source inside the slice (flux {flux:.3g}, center {center:.2f})"
        )
    if not snr >= MIN_KERNEL_SNR:
        return FitFailure(f"no significant source in the slice (S/N {snr:.2f} < {MIN_KERNEL_SNR})")
    shape = evaluate_native(fitted, np.arange(n_cross, dtype=float), {})[:, 0]
    peak = flux * float(np.max(shape / shape.sum()))
    setattr(fitted.model, template.amplitude_param, peak / max(float(np.max(shape)), 1e-300))
    return KernelFit(
        template=fitted,
        center=center,
        fwhm=fwhm,
        amplitude=peak,
        bkg_coeffs=tuple(float(c) for c in fits.background[0]),
        snr=snr,
        chi2_reduced=chi2_reduced,
        flux=flux,
        chi2=float(fits.chi2[0]),
        offsets=tuple(float(o) for o in fits.offsets),
        component_flux=tuple(float(f) for f in fits.flux[0, 1:]),
        component_snr=tuple(float(f) for f in fits.flux_snr[0, 1:]),
    )
