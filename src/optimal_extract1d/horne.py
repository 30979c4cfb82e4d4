"""Horne (1986) optimal sums over the cross-dispersion axis, all columns at once.

Every array here is ``(n_cross, n_disp)``: cross-dispersion along axis 0,
dispersion along axis 1. Masks are boolean with True meaning "do not use".

With a normalized, non-negative profile ``P`` and no background term the
estimator is Horne's eq. (8) and its variance eq. (9)::

    F = sum(P D / V) / sum(P**2 / V),     Var(F) = 1 / sum(P**2 / V)

When a polynomial background is fitted in the same column the flux is the
profile coefficient of the weighted linear least-squares fit of
``[P, b_0, b_1, ...]``; with no background basis the two are identical.
Either way the flux is a linear combination ``F = sum(g D)`` of the pixels,
and `ColumnSums.pixel_weights` holds ``g`` so that any variance component
``V_k`` propagates as ``sum(g**2 V_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ColumnSums", "extract_columns", "polynomial_basis", "usable_pixels"]

# Columns whose normal matrix is worse conditioned than this are treated as
# singular; the background terms are then dropped for that column.
_MAX_CONDITION = 1e10
# Smallest usable variance: 1 / variance must be finite.
_MIN_VARIANCE = np.finfo(float).tiny


@dataclass(frozen=True)
class ColumnSums:
    """Result of the optimal sums over every column.

    Attributes
    ----------
    flux : ndarray, shape (n_disp,)
        Optimal flux per column (data units summed over pixels); NaN where
        the column has no usable pixel under the profile (or the result is
        beyond float64). Never infinite.
    variance : ndarray, shape (n_disp,)
        Variance of ``flux`` from the weights' variance, 1/sum(P^2/V) without
        background.
    pixel_weights : ndarray, shape (n_cross, n_disp)
        ``g`` with ``flux = sum(g * data)`` over usable pixels (0 elsewhere).
    background : ndarray, shape (n_cross, n_disp)
        Fitted background at every pixel (0 when no background is fitted).
    mean_background : ndarray, shape (n_disp,)
        Mean of ``background`` over the column (NaN in empty columns).
    background_weights : ndarray, shape (n_cross, n_disp)
        ``h`` with ``mean_background = sum(h * data)``.
    npixels : ndarray, shape (n_disp,)
        Number of usable pixels per column.
    empty : ndarray of bool, shape (n_disp,)
        Columns with no usable pixel under the profile, or whose flux or
        variance would overflow float64 (flux is NaN).
    background_dropped : ndarray of bool, shape (n_disp,)
        Columns where the background terms were degenerate and were dropped.
    """

    flux: np.ndarray
    variance: np.ndarray
    pixel_weights: np.ndarray
    background: np.ndarray
    mean_background: np.ndarray
    background_weights: np.ndarray
    npixels: np.ndarray
    empty: np.ndarray
    background_dropped: np.ndarray

    def propagate(self, component: np.ndarray) -> np.ndarray:
        """Propagate a per-pixel variance component to the flux, ``sum(g^2 V_k)``.

        Parameters
        ----------
        component : ndarray, shape (n_cross, n_disp)
            Variance component per pixel; non-finite values count as 0.

        Returns
        -------
        ndarray, shape (n_disp,)
            Variance of the flux due to that component (NaN in empty columns).
        """
        return _weighted_square_sum(self.pixel_weights, component, self.empty)

    def propagate_background(self, component: np.ndarray) -> np.ndarray:
        """Propagate a per-pixel variance component to the mean background."""
        return _weighted_square_sum(self.background_weights, component, self.empty)


def _weighted_square_sum(weights: np.ndarray, component: np.ndarray, empty: np.ndarray):
    comp = np.where(np.isfinite(component), component, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sum(weights**2 * comp, axis=0)
    return np.where(empty | ~np.isfinite(out), np.nan, out)


def usable_pixels(data: np.ndarray, variance: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels that can enter the sums: unmasked, finite data, finite positive variance.

    A variance below the smallest normal float64 (~2.2e-308) counts as zero: its
    inverse would overflow.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science values and their variance.
    mask : ndarray of bool, shape (n_cross, n_disp)
        True for pixels not to use.

    Returns
    -------
    ndarray of bool, shape (n_cross, n_disp)
        True where the pixel is usable.
    """
    with np.errstate(invalid="ignore"):
        return ~mask & np.isfinite(data) & np.isfinite(variance) & (variance >= _MIN_VARIANCE)


def polynomial_basis(n_cross: int, order: int) -> np.ndarray:
    """Legendre polynomials up to ``order`` over the cross-dispersion pixels.

    Parameters
    ----------
    n_cross : int
        Number of cross-dispersion pixels.
    order : int
        Polynomial degree; -1 gives an empty basis.

    Returns
    -------
    ndarray, shape (n_cross, order + 1)
        Basis evaluated on pixel centres mapped onto [-1, 1].
    """
    if order < 0:
        return np.zeros((n_cross, 0))
    u = np.linspace(-1.0, 1.0, n_cross) if n_cross > 1 else np.zeros(1)
    return np.polynomial.legendre.legvander(u, order)


def extract_columns(
    data: np.ndarray,
    variance: np.ndarray,
    profile: np.ndarray,
    mask: np.ndarray,
    *,
    bkg_basis: np.ndarray | None = None,
) -> ColumnSums:
    """Optimal flux of every column, optionally with a polynomial background.

    Parameters
    ----------
    data : ndarray, shape (n_cross, n_disp)
        Science image.
    variance : ndarray, shape (n_cross, n_disp)
        Variance used for the weights.
    profile : ndarray, shape (n_cross, n_disp)
        Spatial profile, non-negative with unit sum per column (Horne eq. 7
        normalization over all pixels of the column, masked ones included, so
        missing pixels are accounted for).
    mask : ndarray of bool, shape (n_cross, n_disp)
        True for pixels not to use.
    bkg_basis : ndarray, shape (n_cross, k), optional
        Background basis functions fitted together with the profile in every
        column (e.g. `polynomial_basis`); None or k = 0 for pure Horne sums.

    Returns
    -------
    ColumnSums
        Fluxes, variances and the linear weights behind them.
    """
    usable = usable_pixels(data, variance, mask)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_var = np.where(usable, 1.0 / variance, 0.0)
    d = np.where(usable, data, 0.0)
    # Scale every column's weights and data to a maximum of 1: the estimator is
    # invariant to the weights' scale and linear in the data, and no sum can
    # overflow whatever the input magnitudes.
    w_scale, d_scale = _column_scale(inv_var), _column_scale(np.abs(d))
    w, d = inv_var / w_scale, d / d_scale
    n_cross, n_disp = data.shape
    basis = np.zeros((n_cross, 0)) if bkg_basis is None else np.asarray(bkg_basis, float)
    # design[y, x, j]: column j = 0 is the profile, then the background basis.
    design = np.concatenate(
        [
            profile[:, :, None],
            np.broadcast_to(basis[:, None, :], (n_cross, n_disp, basis.shape[1])),
        ],
        axis=2,
    )
    normal = np.einsum("yxi,yx,yxj->xij", design, w, design)
    cov, dropped = _invert_normal(normal)
    # g = (cov @ A^T W)[0]: the flux as a linear combination of the pixels
    # (free of the scales: the data scale cancels the weights').
    with np.errstate(over="ignore", invalid="ignore"):
        gmat = np.einsum("xij,yxj,yx->yxi", cov, design, w)
        coeffs = np.einsum("xij,yxj,yx,yx->xi", cov, design, w, d) * d_scale[:, None]
        var = cov[:, 0, 0] / w_scale
        mean_basis = basis.mean(axis=0)
        bkg = _finite_or_nan(np.einsum("yk,xk->yx", basis, coeffs[:, 1:]))
        mean_bkg = _finite_or_nan(coeffs[:, 1:] @ mean_basis)
    # Empty: no usable pixel under the profile, or a result beyond float64.
    empty = ~(normal[:, 0, 0] > 0) | ~np.isfinite(coeffs[:, 0]) | ~np.isfinite(var)
    return ColumnSums(
        flux=np.where(empty, np.nan, coeffs[:, 0]),
        variance=np.where(empty, np.nan, var),
        pixel_weights=np.where(empty, 0.0, gmat[:, :, 0]),
        background=np.where(empty, np.nan, bkg),
        mean_background=np.where(empty, np.nan, mean_bkg),
        background_weights=np.where(empty, 0.0, np.einsum("k,yxk->yx", mean_basis, gmat[:, :, 1:])),
        npixels=usable.sum(axis=0).astype(float),
        empty=empty,
        background_dropped=dropped,
    )


def _column_scale(values: np.ndarray) -> np.ndarray:
    """Largest value of every column (1 where there is none), shape (n_disp,)."""
    top = np.max(values, axis=0, initial=0.0)
    return np.where(np.isfinite(top) & (top > 0), top, 1.0)


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def _invert_normal(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert stacked normal matrices; drop the background terms where singular.

    Returns the covariance matrices ``(n_disp, m, m)`` and a boolean array of
    the columns whose background terms were dropped. Columns with no signal
    under the profile get a zero covariance.
    """
    n_disp, m, _ = normal.shape
    cov = np.zeros_like(normal)
    p00 = normal[:, 0, 0]
    has_profile = p00 > 0
    with np.errstate(divide="ignore", over="ignore"):
        profile_only = np.where(has_profile, 1.0 / np.where(has_profile, p00, 1.0), 0.0)
    if m == 1:
        cov[:, 0, 0] = profile_only
        return cov, np.zeros(n_disp, bool)
    cond = np.full(n_disp, np.inf)
    finite = np.all(np.isfinite(normal), axis=(1, 2))
    # Scale rows/cols to unit diagonal before judging the conditioning.
    diag = np.sqrt(np.abs(np.einsum("xii->xi", normal)))
    ok_diag = np.all(diag > 0, axis=1) & finite
    scale = np.where(ok_diag[:, None], diag, 1.0)
    scaled = normal / scale[:, :, None] / scale[:, None, :]
    cond[ok_diag] = np.linalg.cond(scaled[ok_diag])
    good = ok_diag & (cond < _MAX_CONDITION)
    if np.any(good):
        inv_scaled = np.linalg.inv(scaled[good])
        with np.errstate(over="ignore", invalid="ignore"):
            cov[good] = inv_scaled / scale[good][:, :, None] / scale[good][:, None, :]
        good &= np.all(np.isfinite(cov), axis=(1, 2))  # beyond float64: drop the background
    fallback = ~good & has_profile
    cov[fallback, 0, 0] = profile_only[fallback]
    return cov, fallback
