"""Kernel fits in bins along the dispersion axis, and smooth FWHM(λ), centre(λ) models.

All bins of a slit are fitted at once as one least-squares problem
(`scipy.optimize.least_squares` with a block-diagonal Jacobian sparsity):
the template's centre and/or width are the non-linear parameters of every
bin, while its amplitude and the polynomial background are solved exactly
for each trial (variable projection). Bins whose flux S/N is too low, or
whose fit runs to a bound, keep the global kernel. The good bins are then
modelled with a sigma-clipped polynomial in wavelength (astropy
``FittingWithOutlierRemoval``) that the extraction evaluates per column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from astropy.modeling import fitting, models
from astropy.stats import sigma_clip
from scipy.optimize import least_squares
from scipy.sparse import block_diag

from .horne import polynomial_basis
from .kernel import KernelTemplate, evaluate_template

__all__ = ["BinFits", "SmoothModel", "choose_bins", "coadd_bins", "fit_bins", "fit_smooth"]

log = logging.getLogger(__name__)

# Bins need this flux S/N for their width or centre to be trusted.
MIN_BIN_SNR = 10.0
# Automatic binning aims at this S/N per bin, with at most MAX_BINS bins.
TARGET_BIN_SNR = 25.0
MAX_BINS = 24
MIN_BIN_COLUMNS = 4
# A bin centre further than this (pixels) from the global centre is "wild".
MAX_CENTER_JUMP = 3.0


@dataclass(frozen=True)
class BinFits:
    """Kernel parameters fitted in bins.

    Attributes
    ----------
    edges : ndarray of int, shape (n_bins + 1,)
        Column edges of the bins (bin i is ``edges[i]:edges[i+1]``).
    center, fwhm : ndarray, shape (n_bins,)
        Fitted centre and FWHM (pixels); the global value where not fitted.
    snr : ndarray, shape (n_bins,)
        Flux S/N of each bin's coadded profile.
    good : ndarray of bool, shape (n_bins,)
        Bins whose fit is trusted (enough signal, inside the bounds).
    """

    edges: np.ndarray
    center: np.ndarray
    fwhm: np.ndarray
    snr: np.ndarray
    good: np.ndarray

    @property
    def mid_columns(self) -> np.ndarray:
        """Central column of every bin."""
        return 0.5 * (self.edges[:-1] + self.edges[1:] - 1)


def choose_bins(column_snr: np.ndarray, n_bins: int | None) -> np.ndarray:
    """Bin edges holding equal shares of the total S/N squared.

    Parameters
    ----------
    column_snr : ndarray, shape (n_disp,)
        First-pass S/N of every column (negative or NaN count as 0).
    n_bins : int or None
        Number of bins; None = as many as reach `TARGET_BIN_SNR` (1..`MAX_BINS`).

    Returns
    -------
    ndarray of int, shape (n_bins + 1,)
        Increasing column edges from 0 to n_disp.
    """
    n_disp = column_snr.size
    s2 = np.clip(np.nan_to_num(column_snr), 0.0, None) ** 2
    total = s2.sum()
    max_bins = max(n_disp // MIN_BIN_COLUMNS, 1)
    if n_bins is None:
        n_bins = int(np.clip(total // TARGET_BIN_SNR**2, 1, MAX_BINS))
    n_bins = int(np.clip(n_bins, 1, max_bins))
    if total <= 0:
        return np.linspace(0, n_disp, n_bins + 1).round().astype(int)
    cum = np.concatenate([[0.0], np.cumsum(s2)]) / total
    edges = np.searchsorted(cum, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = np.unique(np.concatenate([[0], np.clip(edges, 1, n_disp - 1), [n_disp]]))
    return edges.astype(int)


def coadd_bins(data, variance, usable, edges) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean profile of every bin, ``(n_cross, n_bins)`` each."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(usable, 1.0 / variance, 0.0)
    wd = w * np.where(usable, data, 0.0)
    sw = np.add.reduceat(w, edges[:-1], axis=1)
    swd = np.add.reduceat(wd, edges[:-1], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(sw > 0, swd / sw, np.nan)
        sigma = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    return values, sigma


def _projected(template, values, sigma, basis, center, fwhm):
    """Weighted residuals after solving amplitude + background exactly; also flux S/N."""
    y = np.arange(values.shape[0], dtype=float)
    shape = evaluate_template(template, y, center, fwhm)
    total = shape.sum(axis=0)
    shape = shape / np.where(total > 0, total, 1.0)
    ok = np.isfinite(values) & np.isfinite(sigma)
    w = np.where(ok, 1.0 / np.where(ok, sigma, 1.0), 0.0)
    d = np.where(ok, values, 0.0)
    k = basis.shape[1]
    design = np.concatenate(
        [shape[:, :, None], np.broadcast_to(basis[:, None, :], (*shape.shape, k))], axis=2
    )
    a = design * w[:, :, None]
    normal = np.einsum("ybi,ybj->bij", a, a) + 1e-12 * np.eye(k + 1)
    rhs = np.einsum("ybi,yb->bi", a, d * w)
    coeffs = np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]
    resid = (d * w - np.einsum("ybi,bi->yb", a, coeffs)).T.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        var0 = np.linalg.inv(normal)[:, 0, 0]
        snr = coeffs[:, 0] / np.sqrt(var0)
    return resid, snr


def fit_bins(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    center: float,
    fwhm: float,
    fit_center: bool,
    fit_fwhm: bool,
) -> BinFits:
    """Fit the kernel's centre and/or FWHM to every bin's profile in one problem.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape (its other shape parameters stay as fitted globally).
    values, sigma : ndarray, shape (n_cross, n_bins)
        Coadded bin profiles and their uncertainties (see `coadd_bins`).
    bkg_order : int
        Polynomial background degree (-1 = none), solved in every bin.
    center, fwhm : float
        Global kernel values: starting point and value for what is not fitted.
    fit_center, fit_fwhm : bool
        Which parameters are free.

    Returns
    -------
    BinFits
        With ``edges`` left empty (filled by the caller).
    """
    n_cross, n_bins = values.shape
    basis = polynomial_basis(n_cross, bkg_order)
    free = [name for name, on in (("center", fit_center), ("fwhm", fit_fwhm)) if on]
    start = {"center": np.full(n_bins, center), "fwhm": np.full(n_bins, fwhm)}
    lower = {"center": -0.5, "fwhm": 0.5}
    upper = {"center": n_cross - 0.5, "fwhm": max(0.5 * n_cross, 1.0)}

    def unpack(theta):
        par = dict(start)
        for i, name in enumerate(free):
            par[name] = theta[i :: len(free)]
        return par

    def residuals(theta):
        par = unpack(theta)
        return _projected(template, values, sigma, basis, par["center"], par["fwhm"])[0]

    theta0 = np.column_stack([start[n] for n in free]).ravel()
    lo = np.tile([lower[n] for n in free], n_bins)
    hi = np.tile([upper[n] for n in free], n_bins)
    theta0 = np.clip(theta0, lo + 1e-6, hi - 1e-6)
    sparsity = block_diag([np.ones((n_cross, len(free)))] * n_bins)
    sol = least_squares(
        residuals,
        theta0,
        bounds=(lo, hi),
        jac_sparsity=sparsity,
        method="trf",
        x_scale=1.0,
        max_nfev=60,
    )
    par = unpack(sol.x)
    snr = _projected(template, values, sigma, basis, par["center"], par["fwhm"])[1]
    at_bound = np.zeros(n_bins, bool)
    for i, name in enumerate(free):
        v = sol.x[i :: len(free)]
        at_bound |= (v <= lower[name] + 1e-3) | (v >= upper[name] - 1e-3)
    good = (snr >= MIN_BIN_SNR) & ~at_bound & (np.abs(par["center"] - center) <= MAX_CENTER_JUMP)
    return BinFits(np.zeros(0, int), par["center"], par["fwhm"], np.nan_to_num(snr), good)


@dataclass(frozen=True)
class SmoothModel:
    """A sigma-clipped polynomial in wavelength for a kernel parameter.

    Attributes
    ----------
    coeffs : tuple of float
        Polynomial1D coefficients over ``domain`` mapped to [-1, 1].
    domain : tuple of float
        Wavelength range (microns) of the fitted bins.
    order : int
        Degree used (may be lower than requested when few bins are good).
    n_used, n_clipped : int
        Bins used in and clipped from the fit.
    """

    coeffs: tuple[float, ...]
    domain: tuple[float, float]
    order: int
    n_used: int
    n_clipped: int

    def __call__(self, wavelength: np.ndarray) -> np.ndarray:
        """Evaluate, held constant beyond the fitted wavelength range."""
        poly = models.Polynomial1D(self.order, domain=self.domain, window=(-1, 1))
        poly.parameters = np.asarray(self.coeffs, float)
        return poly(np.clip(wavelength, *self.domain))

    def to_meta(self) -> dict:
        """Plain values for the spectrum metadata."""
        return {
            "coeffs": list(self.coeffs),
            "domain_um": list(self.domain),
            "order": self.order,
            "n_bins_used": self.n_used,
            "n_bins_clipped": self.n_clipped,
            "variable": "wavelength (um), Polynomial1D with domain -> window [-1, 1]",
        }


def fit_smooth(
    wavelength: np.ndarray, values: np.ndarray, weights: np.ndarray, order: int
) -> SmoothModel:
    """Fit a sigma-clipped polynomial (3 sigma, 3 iterations) to per-bin values.

    Parameters
    ----------
    wavelength, values, weights : ndarray, shape (n,)
        Bin wavelengths, fitted values and weights (e.g. the bin S/N); n >= 1.
    order : int
        Requested degree; lowered to n - 2 (at least 0) when n is small.

    Returns
    -------
    SmoothModel
    """
    n = wavelength.size
    order = int(max(min(order, n - 2), 0))
    lo, hi = float(np.min(wavelength)), float(np.max(wavelength))
    domain = (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
    poly = models.Polynomial1D(order, domain=domain, window=(-1, 1))
    if n <= order + 1:
        fitted, clipped = fitting.LinearLSQFitter()(poly, wavelength, values, weights=weights), 0
    else:
        fitter = fitting.FittingWithOutlierRemoval(
            fitting.LinearLSQFitter(), sigma_clip, niter=3, sigma=3.0
        )
        fitted, mask = fitter(poly, wavelength, values, weights=weights)
        clipped = int(np.sum(mask))
    return SmoothModel(
        tuple(float(c) for c in fitted.parameters), domain, order, n - clipped, clipped
    )
