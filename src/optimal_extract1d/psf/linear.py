"""The linear parts of a profile fit: fluxes and background for fixed shapes.

With the non-linear shape parameters held, every profile ``d_b(y)`` is
``sum_j f_bj Phi_bj(y) + sum_k a_bk L_k(y)``: unit-sum component shapes with
fluxes ``f`` plus a background basis with coefficients ``a``, a weighted
linear least-squares problem per profile, solved for all profiles at once
through their normal equations.

`solve_linear` is the complete solve (coefficients, residuals, flux S/N from
the inverse normal matrix), used by `.psf.profilefit` and `.scene.sources`.
The Levenberg–Marquardt fitter (`.psf.lm`) starts from the same weights,
design and normal matrix (`data_weights`, `design_matrix`, `normal_matrix`)
but needs no covariance and solves the normal equations directly, which
rounds differently from the inverse: the two final steps stay apart.
"""

from __future__ import annotations

import numpy as np

from ..core.linalg import cross_products, invert_stacked, solve_stacked

__all__ = [
    "data_weights",
    "design_matrix",
    "normal_matrix",
    "solve_linear",
    "solve_normal",
    "valid_pixels",
]


def valid_pixels(values: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Pixels a profile fit can use: a finite value and a finite, positive uncertainty."""
    return np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)


def data_weights(values: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
    """Usable pixels, their weights ``1 / sigma`` and the data (0 where unusable).

    Parameters
    ----------
    values, sigma : ndarray, shape (n_cross, n_prof)
        Profiles and their uncertainties (NaN or sigma <= 0: not used).

    Returns
    -------
    ok : ndarray of bool, shape (n_cross, n_prof)
    w, d : ndarray, shape (n_cross, n_prof)
        Weights (0 where not usable) and values (0 where not usable).
    """
    ok = valid_pixels(values, sigma)
    w = np.where(ok, 1.0 / np.where(ok, sigma, 1.0), 0.0)
    d = np.where(ok, values, 0.0)
    return ok, w, d


def design_matrix(shapes: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Component shapes and background basis side by side, ``(n_cross, n_prof, n_comp + k)``.

    Parameters
    ----------
    shapes : ndarray, shape (n_cross, n_prof, n_comp)
        Unit-sum component shapes of every profile.
    basis : ndarray, shape (n_cross, k)
        Background basis, the same for every profile.
    """
    k = basis.shape[1]
    bkg = np.broadcast_to(basis[:, None, :], (*shapes.shape[:2], k))
    return np.concatenate([shapes, bkg], axis=2)


def normal_matrix(a: np.ndarray) -> np.ndarray:
    """``A^T A`` of every profile's weighted design, lightly regularized.

    Parameters
    ----------
    a : ndarray, shape (n_cross, n_prof, n)
        Design matrix times the weights.

    Returns
    -------
    ndarray, shape (n_prof, n, n)
        With ``1e-12`` of its trace added to the diagonal (keeps a component
        with no usable pixel from making it singular), and 1 where a whole
        row is zero (a profile whose every term misses the usable pixels:
        its coefficients come out 0 instead of a singular matrix).
    """
    normal = cross_products(a, a)
    normal += 1e-12 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(a.shape[2])
    prof, term = np.nonzero(np.einsum("bii->bi", normal) == 0)
    normal[prof, term, term] = 1.0
    return normal


def solve_normal(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The one linear solve of the package's fits: ``normal @ x = rhs`` for every profile.

    Parameters
    ----------
    normal : ndarray, shape (n_prof, n, n)
        Normal matrices (`normal_matrix`).
    rhs : ndarray, shape (n_prof, n)
        ``A^T (w d)`` of every profile.

    Returns
    -------
    ndarray, shape (n_prof, n)
        NaN for a non-finite system, never a ``numpy.linalg.LinAlgError``
        (`.core.linalg.solve_stacked`).
    """
    return solve_stacked(normal, rhs)


def solve_linear(
    shapes: np.ndarray, values: np.ndarray, sigma: np.ndarray, *, basis: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact fluxes + background for fixed shapes, every profile at once.

    Parameters
    ----------
    shapes : ndarray, shape (n_cross, n_prof, n_comp)
        Unit-sum component shapes of every profile.
    values, sigma : ndarray, shape (n_cross, n_prof)
        Profiles and their uncertainties (NaN or sigma <= 0: not used).
    basis : ndarray, shape (n_cross, k)
        Background basis.

    Returns
    -------
    resid : ndarray, shape (n_cross, n_prof)
        Weighted residuals (0 at unusable pixels).
    coeffs : ndarray, shape (n_prof, n_comp + k)
        Fluxes of the components, then the background coefficients.
    snr : ndarray, shape (n_prof, n_comp)
        Flux over its standard error (NaN or inf where undefined).
    n_ok : ndarray of int, shape (n_prof,)
        Number of usable pixels.
    """
    ok, w, d = data_weights(values, sigma)
    n_comp = shapes.shape[2]
    a = design_matrix(shapes, basis) * w[:, :, None]
    normal = normal_matrix(a)
    coeffs = solve_normal(normal, np.einsum("ybi,yb->bi", a, d * w))
    cov = invert_stacked(normal)
    resid = d * w - np.einsum("ybi,bi->yb", a, coeffs)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = coeffs[:, :n_comp] / np.sqrt(np.einsum("bii->bi", cov)[:, :n_comp])
    return resid, coeffs, snr, ok.sum(axis=0)
