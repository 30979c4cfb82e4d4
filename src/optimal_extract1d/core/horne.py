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
and the ``pixel_weights`` of `ColumnSums` hold ``g`` so that any variance component
``V_k`` propagates as ``sum(g**2 V_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import finite_matrices, invert_stacked, solve_stacked

__all__ = [
    "ColumnSums",
    "extract_columns",
    "fit_background",
    "polynomial_basis",
    "usable_pixels",
]

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
        the column has no usable pixel under the profile.
    variance : ndarray, shape (n_disp,)
        Variance of ``flux`` from the weights' variance, 1/sum(P^2/V) without
        background.
    pixel_weights : ndarray, shape (n_cross, n_disp)
        ``g`` with ``flux = sum(g * data)`` over usable pixels (0 elsewhere).
    background : ndarray, shape (n_cross, n_disp)
        Fitted background at every pixel (0 when no background is fitted).
    model : ndarray, shape (n_cross, n_disp)
        The fitted scene: flux x profile + other components + background
        (NaN in empty columns).
    mean_background : ndarray, shape (n_disp,)
        Mean of ``background`` over the column (NaN in empty columns).
    background_weights : ndarray, shape (n_cross, n_disp)
        ``h`` with ``mean_background = sum(h * data)``.
    leverage : ndarray, shape (n_cross, n_disp)
        Diagonal of the hat matrix of each column's weighted fit (how much a
        pixel pulls the model towards itself; 0 for unusable pixels).
    npixels : ndarray, shape (n_disp,)
        Number of usable pixels per column.
    empty : ndarray of bool, shape (n_disp,)
        Columns with no usable pixel under the profile, or whose flux or
        variance would overflow float64 (flux is NaN).
    design, inv_var, cov : ndarray
        The fit behind the sums (design matrix, column-scaled weights and the
        matching covariance), for `hat`.
    background_dropped : ndarray of bool, shape (n_disp,)
        Columns where the background terms were degenerate and were dropped.
    """

    flux: np.ndarray
    variance: np.ndarray
    pixel_weights: np.ndarray
    background: np.ndarray
    model: np.ndarray
    mean_background: np.ndarray
    background_weights: np.ndarray
    leverage: np.ndarray
    npixels: np.ndarray
    empty: np.ndarray
    background_dropped: np.ndarray
    design: np.ndarray | None = None
    inv_var: np.ndarray | None = None
    cov: np.ndarray | None = None

    def hat(self, columns: np.ndarray | None = None) -> np.ndarray:
        """Standardized hat matrices of the columns, ``(n_columns, n_cross, n_cross)``.

        ``H = W^1/2 A (A^T W A)^-1 A^T W^1/2``: fitted residuals ``z = r / sigma``
        of independent unit-variance noise have covariance ``I - H``.
        """
        cols = slice(None) if columns is None else columns
        a = np.moveaxis(self.design[:, cols] * np.sqrt(self.inv_var[:, cols])[:, :, None], 1, 0)
        return np.matmul(np.matmul(a, self.cov[cols]), np.swapaxes(a, 1, 2))

    def hat_factors(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``U, V`` with ``hat(columns) = U V^T``, each ``(n_columns, n_cross, m)``.

        ``V = W^1/2 A`` and ``U = V (A^T W A)^-1``: of rank m, for sums over
        the hat matrices that need not form them (``errorscale.residual_error_scale``).
        """
        weighted = self.design[:, columns] * np.sqrt(self.inv_var[:, columns])[:, :, None]
        v = np.moveaxis(weighted, 1, 0)
        return np.matmul(v, self.cov[columns]), v

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
    out = np.sum(weights**2 * comp, axis=0)
    return np.where(empty, np.nan, out)


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
        Basis evaluated on pixel centers mapped onto [-1, 1].
    """
    if order < 0:
        return np.zeros((n_cross, 0))
    u = np.linspace(-1.0, 1.0, n_cross) if n_cross > 1 else np.zeros(1)
    return np.polynomial.legendre.legvander(u, order)


def extract_columns(
    data: np.ndarray,
    variance: np.ndarray,
    profile: np.ndarray,
    *,
    mask: np.ndarray,
    bkg_basis: np.ndarray | None = None,
    extra: np.ndarray | None = None,
) -> ColumnSums:
    """Optimal flux of every column, optionally with a background and other components.

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
    extra : ndarray, shape (n_cross, n_disp, m), optional
        Profiles of other components fitted in the same columns with their
        own fluxes: other sources in the slit, negative nod copies of the
        trace. They keep those pixels from biasing the flux of ``profile``.

    Returns
    -------
    ColumnSums
        Fluxes, variances and the linear weights behind them.
    """
    usable = usable_pixels(data, variance, mask)
    n_cross, n_disp = data.shape
    basis = np.zeros((n_cross, 0)) if bkg_basis is None else np.asarray(bkg_basis, float)
    others = np.zeros((n_cross, n_disp, 0)) if extra is None else np.asarray(extra, float)
    design = _design_matrix(profile, others, basis)
    return _fit_columns(data, variance, usable, design=design, basis=basis)


def _fit_columns(
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    design: np.ndarray,
    basis: np.ndarray,
) -> ColumnSums:
    """Weighted linear least squares of every column on its design matrix.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and the variance used for the weights.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that enter the sums (`usable_pixels`).
    design : ndarray, shape (n_cross, n_disp, m)
        The profile, the other components, then the background basis
        (``_design_matrix``).
    basis : ndarray, shape (n_cross, k)
        The background basis, the last k terms of ``design``.

    Returns
    -------
    ColumnSums
        The flux is the profile's coefficient.
    """
    first_bkg = design.shape[2] - basis.shape[1]
    w, d, w_scale, d_scale = _scaled_columns(data, variance, usable)
    a, g, normal, cov, dropped = _solve_columns(design, w)
    with np.errstate(over="ignore", invalid="ignore"):
        coeffs = np.matmul(d.T[:, None, :], g)[:, 0, :] * d_scale[:, None]
        var = cov[:, 0, 0] / w_scale
        model = _finite_or_nan(np.matmul(a, coeffs[:, :, None])[:, :, 0].T)
    gmat = np.moveaxis(g, 0, 1)  # (n_cross, n_disp, m)
    bkg, mean_bkg, h = _background_terms(basis, coeffs, gmat, first_bkg=first_bkg)
    # Empty: no usable pixel under the profile, or a result beyond float64.
    empty = ~(normal[:, 0, 0] > 0) | ~np.isfinite(coeffs[:, 0]) | ~np.isfinite(var)
    return ColumnSums(
        flux=np.where(empty, np.nan, coeffs[:, 0]),
        variance=np.where(empty, np.nan, var),
        pixel_weights=np.where(empty, 0.0, gmat[:, :, 0]),
        background=np.where(empty, np.nan, bkg),
        model=np.where(empty[None, :], np.nan, model),
        mean_background=np.where(empty, np.nan, mean_bkg),
        background_weights=np.where(empty, 0.0, h),
        leverage=np.einsum("xyi,xyi->yx", a, g),
        design=design,
        inv_var=w,
        cov=cov,
        npixels=usable.sum(axis=0).astype(float),
        empty=empty,
        background_dropped=dropped,
    )


def _scaled_columns(data: np.ndarray, variance: np.ndarray, usable: np.ndarray):
    """Weights and data of the usable pixels, every column scaled to a maximum of 1.

    The estimator is invariant to the weights' scale and linear in the data,
    and no sum can overflow whatever the input magnitudes.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and the variance used for the weights.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that enter the sums (`usable_pixels`).

    Returns
    -------
    w, d : ndarray, shape (n_cross, n_disp)
        Scaled inverse variances and data (0 at unusable pixels).
    w_scale, d_scale : ndarray, shape (n_disp,)
        The column scales they were divided by.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_var = np.where(usable, 1.0 / variance, 0.0)
    d = np.where(usable, data, 0.0)
    w_scale, d_scale = _column_scale(inv_var), _column_scale(np.abs(d))
    return inv_var / w_scale, d / d_scale, w_scale, d_scale


def _design_matrix(profile: np.ndarray, others: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The fit's design matrix of every column, ``(n_cross, n_disp, m)``.

    ``design[y, x, j]``: j = 0 is the profile, then the other components
    (``others``, ``(n_cross, n_disp, m_other)``), then the background basis
    (``basis``, ``(n_cross, k)``, the same in every column).
    """
    n_cross, n_disp, n_other = others.shape
    # stored column by column, as `_solve_columns` reads it
    by_column = np.empty((n_disp, n_cross, 1 + n_other + basis.shape[1]))
    by_column[:, :, 0] = profile.T
    by_column[:, :, 1 : 1 + n_other] = np.moveaxis(others, 1, 0)
    by_column[:, :, 1 + n_other :] = basis[None, :, :]
    return np.moveaxis(by_column, 0, 1)


def _solve_columns(design: np.ndarray, w: np.ndarray):
    """Weighted least squares of every column at once, up to the data.

    Parameters
    ----------
    design : ndarray, shape (n_cross, n_disp, m)
        Design matrix of every column (``_design_matrix``).
    w : ndarray, shape (n_cross, n_disp)
        Scaled weights (``_scaled_columns``).

    Returns
    -------
    a : ndarray, shape (n_disp, n_cross, m)
        The design as column-major stacks for batched matrix products.
    g : ndarray, shape (n_disp, n_cross, m)
        ``W A cov``: every coefficient as a linear combination of the pixels,
        ``g[x, :, 0]`` the flux's (free of the scales: the data scale cancels
        the weights').
    normal, cov : ndarray, shape (n_disp, m, m)
        Normal matrices and their inverses (``_invert_normal``).
    dropped : ndarray of bool, shape (n_disp,)
        Columns whose terms other than the profile were dropped.
    """
    # Column-major stacks for batched matrix products: a[x] is (n_cross, m).
    a = np.ascontiguousarray(np.moveaxis(design, 1, 0))
    aw = a * w.T[:, :, None]
    normal = np.matmul(np.swapaxes(aw, 1, 2), a)
    cov, dropped = _invert_normal(normal)
    # g = (cov @ A^T W)[0]: the flux as a linear combination of the pixels
    # (free of the scales: the data scale cancels the weights').
    with np.errstate(over="ignore", invalid="ignore"):
        g = np.matmul(aw, cov)  # (n_disp, n_cross, m), symmetric cov
    return a, g, normal, cov, dropped


def _background_terms(basis: np.ndarray, coeffs: np.ndarray, gmat: np.ndarray, *, first_bkg: int):
    """Fitted background, its column mean and the mean's pixel weights.

    Parameters
    ----------
    basis : ndarray, shape (n_cross, k)
        Background basis.
    coeffs : ndarray, shape (n_disp, m)
        Fitted coefficients of every column, the background's from ``first_bkg`` on.
    gmat : ndarray, shape (n_cross, n_disp, m)
        Pixel weights of the coefficients (``g`` of ``_solve_columns``, pixels first).
    first_bkg : int
        Index of the first background term.

    Returns
    -------
    bkg : ndarray, shape (n_cross, n_disp)
        Background at every pixel (NaN where not finite).
    mean_bkg : ndarray, shape (n_disp,)
        Its mean over the column (NaN where not finite).
    h : ndarray, shape (n_cross, n_disp)
        Pixel weights of ``mean_bkg``.
    """
    if basis.shape[1] == 0:  # no background: zeros, as the products below give
        zeros = np.zeros((basis.shape[0], coeffs.shape[0]))
        return zeros, np.zeros(coeffs.shape[0]), zeros.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        mean_basis = basis.mean(axis=0)
        bkg = _finite_or_nan(basis @ coeffs[:, first_bkg:].T)
        mean_bkg = _finite_or_nan(coeffs[:, first_bkg:] @ mean_basis)
    return bkg, mean_bkg, gmat[:, :, first_bkg:] @ mean_basis


def _column_scale(values: np.ndarray) -> np.ndarray:
    """Largest value of every column (1 where there is none), shape (n_disp,)."""
    top = np.max(values, axis=0, initial=0.0)
    return np.where(np.isfinite(top) & (top > 0), top, 1.0)


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def fit_background(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, basis: np.ndarray
) -> np.ndarray:
    """Weighted least-squares background of every column from the ``usable`` pixels only.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels known to hold only background (e.g. away from the trace).
    basis : ndarray, shape (n_cross, k)
        Background basis (see `polynomial_basis`).

    Returns
    -------
    ndarray, shape (n_cross, n_disp)
        Background at every pixel; 0 in columns with fewer than k usable pixels.
    """
    k = basis.shape[1]
    if k == 0:
        return np.zeros(data.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(usable, 1.0 / variance, 0.0)
    d = np.where(usable, data, 0.0)
    normal = np.einsum("yi,yx,yj->xij", basis, w, basis)
    rhs = np.einsum("yi,yx,yx->xi", basis, w, d)
    enough = usable.sum(axis=0) >= k
    coeffs = np.zeros((data.shape[1], k))
    if np.any(enough):
        scale = np.trace(normal[enough], axis1=1, axis2=2)[:, None, None]
        ridge = 1e-10 * scale * np.eye(k)
        coeffs[enough] = solve_stacked(normal[enough] + ridge, rhs[enough])
    return basis @ coeffs.T


def _invert_normal(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert stacked normal matrices; keep the profile term alone where singular.

    Returns the covariance matrices ``(n_disp, m, m)`` and a boolean array of
    the columns where every term but the profile (background and other
    components) was dropped. Columns with no signal under the profile get a
    zero covariance.
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
    finite = finite_matrices(normal)
    # Scale rows/cols to unit diagonal before judging the conditioning.
    diag = np.sqrt(np.abs(np.einsum("xii->xi", normal)))
    ok_diag = np.all(diag > 0, axis=1) & finite
    scale = np.where(ok_diag[:, None], diag, 1.0)
    scaled = normal / scale[:, :, None] / scale[:, None, :]
    # With a unit diagonal the eigenvalues sum to m, so the smallest is at least
    # det / m^(m-1): a tiny determinant (one LU per column) flags a bad condition.
    every = bool(ok_diag.all())  # the usual case: no column selected (copied) below
    if every and _diagonally_dominant(scaled):
        good = ok_diag  # what the determinants would say (components apart, no background)
    else:
        sign, logdet = np.linalg.slogdet(scaled if every else scaled[ok_diag])
        with np.errstate(over="ignore", divide="ignore"):
            cond[ok_diag] = np.where(sign > 0, float(m) ** (m - 1) / np.exp(logdet), np.inf)
        good = ok_diag & (cond < _MAX_CONDITION)
    if good.all():
        with np.errstate(over="ignore", invalid="ignore"):
            cov = invert_stacked(scaled) / scale[:, :, None] / scale[:, None, :]
        good &= finite_matrices(cov)
    elif np.any(good):
        inv_scaled = invert_stacked(scaled[good])
        with np.errstate(over="ignore", invalid="ignore"):
            cov[good] = inv_scaled / scale[good][:, :, None] / scale[good][:, None, :]
        good &= finite_matrices(cov)  # beyond float64: drop the background
    fallback = ~good & has_profile
    cov[fallback, 0, 0] = profile_only[fallback]
    return cov, fallback


def _diagonally_dominant(scaled: np.ndarray) -> bool:
    """Whether Gershgorin's discs pass every matrix of a stack (unit diagonal) as well-conditioned.

    Every eigenvalue is at least ``min_i (a_ii - sum_j!=i |a_ij|)``, so the
    determinant at least its m-th power: when that is twice what
    `_invert_normal`'s test of the determinants needs (the margin covers the
    rounding), that test would pass every matrix. The usual case when the
    components lie apart and no background is fitted.
    """
    m = scaled.shape[-1]
    with np.errstate(invalid="ignore"):
        # the least over every row of the stack (row sums by a product: a
        # reduction over an axis of m is slow)
        lower = np.min(2.0 * np.einsum("xii->xi", scaled) - np.abs(scaled) @ np.ones(m))
    return bool(lower > 0 and lower**m > 2.0 * m ** (m - 1) / _MAX_CONDITION)
