"""Horne's (1986) data-driven spatial profile, for sources no template fits.

Each row's fraction of the column flux, ``(D - B) / F``, is smoothed along
the dispersion axis by a weighted Legendre polynomial (Horne's step 5). All
rows share one design matrix; their weights ``F^2 / V`` differ, so the
normal equations are solved as one stacked system. Pixels deviating by more
than 5 sigma from the smooth fraction are dropped and the fit repeated.
The result is clipped at zero and normalized per column.
"""

from __future__ import annotations

import numpy as np

from .linalg import invert_stacked
from .profile import Profile, normalize_profile

__all__ = ["empirical_profile", "trace_support", "DEFAULT_ORDER"]

#: Legendre degree of the smoothing of every row's flux fraction along the dispersion.
DEFAULT_ORDER = 6
_CLIP_SIGMA = 5.0
_SUPPORT_SIGMA = 3.0


def empirical_profile(
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    flux: np.ndarray,
    background: np.ndarray,
    support: np.ndarray | None = None,
    order: int = DEFAULT_ORDER,
    n_iter: int = 2,
) -> Profile:
    """Profile from the data: smoothed fractional flux of every row.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    flux : ndarray, shape (n_disp,)
        First-pass flux per column (e.g. from a template profile).
    background : ndarray, shape (n_cross, n_disp)
        First-pass background per pixel, subtracted before taking fractions.
    support : ndarray of bool, shape (n_cross, n_disp), optional
        Pixels where the source is expected (e.g. within a few FWHM of the
        trace). The profile is kept there and wherever the smooth fraction
        is significant (> 3 sigma of its row fit), and is zero elsewhere:
        the noise of every far row, clipped at zero, would otherwise add up
        into a positive wing and bias the normalization (and the flux) by
        about 1/(S/N), while real wings are significant and stay.
    order : int
        Legendre degree along the dispersion axis (lowered for short slits).
    n_iter : int
        Clipping passes.

    Returns
    -------
    Profile
        Non-negative, unit column sums; ``fwhm`` is NaN, ``centers`` the
        profile centroid per column.
    """
    n_cross, n_disp = data.shape
    order = int(max(0, min(order, n_disp // 10)))
    u = np.linspace(-1.0, 1.0, n_disp) if n_disp > 1 else np.zeros(1)
    vander = np.polynomial.legendre.legvander(u, order)  # (n_disp, order + 1)
    frac, weight = _row_fractions(data, variance, usable, flux=flux, background=background)
    smooth, noise = _clipped_row_fits(vander, frac, weight, n_iter=n_iter)
    significant = smooth > _SUPPORT_SIGMA * noise
    keep = significant if support is None else (support | significant)
    smooth = np.where(keep, smooth, 0.0)
    weights = normalize_profile(smooth)
    y = np.arange(n_cross, dtype=float)
    centers = np.sum(weights * y[:, None], axis=0)
    return Profile(weights=weights, centers=centers, fwhm=np.full(n_disp, np.nan))


def _row_fractions(
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    flux: np.ndarray,
    background: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's fraction of its column flux, ``(D - B) / F``, and its weight ``F^2 / V``.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    flux : ndarray, shape (n_disp,)
        First-pass flux per column (NaN counts as 0).
    background : ndarray, shape (n_cross, n_disp)
        First-pass background per pixel (NaN counts as 0).

    Returns
    -------
    frac, weight : ndarray, shape (n_cross, n_disp)
        Fractions and their weights: the weight is 0 where the pixel is
        unusable, the column flux not positive, or either is not finite, and
        the fraction is 0 wherever its weight is.
    """
    f = np.nan_to_num(flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (data - np.nan_to_num(background)) / f[None, :]
        weight = np.where(usable & (f[None, :] > 0), f[None, :] ** 2 / variance, 0.0)
    weight = np.where(np.isfinite(weight) & np.isfinite(frac), weight, 0.0)
    frac = np.where(weight > 0, frac, 0.0)
    return frac, weight


def _clipped_row_fits(
    vander: np.ndarray, frac: np.ndarray, weight: np.ndarray, *, n_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row fits (``_row_fits``) repeated without the pixels beyond ``_CLIP_SIGMA``.

    Parameters
    ----------
    vander : ndarray, shape (n_disp, order + 1)
        Legendre basis along the dispersion axis.
    frac, weight : ndarray, shape (n_cross, n_disp)
        Fractions of the column flux and their weights (``_row_fractions``).
    n_iter : int
        Fitting passes (at least one); each drops the pixels deviating by more
        than ``_CLIP_SIGMA`` from the last fit.

    Returns
    -------
    smooth, noise : ndarray, shape (n_cross, n_disp)
        The last fit and its standard error.
    """
    smooth, noise = np.zeros_like(frac), np.zeros_like(frac)
    for _ in range(max(n_iter, 1)):
        smooth, noise = _row_fits(vander, frac, weight)
        resid = (frac - smooth) * np.sqrt(weight)
        weight = np.where(np.abs(resid) > _CLIP_SIGMA, 0.0, weight)
    return smooth, noise


def _row_fits(vander: np.ndarray, frac: np.ndarray, weight: np.ndarray):
    """Weighted polynomial fit of every row at once, and the fit's standard error.

    Rows without weight give 0 (with infinite error).
    """
    normal = np.einsum("xi,yx,xj->yij", vander, weight, vander)
    rhs = np.einsum("xi,yx,yx->yi", vander, weight, frac)
    m = vander.shape[1]
    scale = np.trace(normal, axis1=1, axis2=2)
    ok = scale > 0
    coeffs = np.zeros((frac.shape[0], m))
    noise = np.full(frac.shape, np.inf)
    if np.any(ok):
        ridge = 1e-10 * scale[ok][:, None, None] * np.eye(m)
        cov = invert_stacked(normal[ok] + ridge)
        coeffs[ok] = np.einsum("yij,yj->yi", cov, rhs[ok])
        noise[ok] = np.sqrt(np.abs(np.einsum("xi,yij,xj->yx", vander, cov, vander)))
    return coeffs @ vander.T, noise


def trace_support(centers: np.ndarray, fwhm: np.ndarray, n_cross: int) -> np.ndarray:
    """Pixels within ``2 FWHM + 1`` pixels of the trace center, ``(n_cross, n_disp)``."""
    y = np.arange(n_cross, dtype=float)[:, None]
    return np.abs(y - centers[None, :]) <= 2.0 * fwhm[None, :] + 1.0
