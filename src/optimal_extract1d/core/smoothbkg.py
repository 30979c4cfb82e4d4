"""A background smooth along the dispersion, fitted with every column's fluxes.

The per-column background of `.horne.extract_columns` fits a polynomial
across the slit independently in every column: ``k`` free terms per column,
which cost the flux about 10 % of its variance for a constant alone (the
constant and the profile are partly degenerate in a short column). A
residual sky after nod subtraction, or a smooth zodiacal/thermal residual,
varies slowly along the dispersion: modelled as

``B(y, x) = sum_j b_j(y) sum_l c_jl T_l(x)``,

``b_j`` the same polynomial basis across the slit and ``T_l`` Legendre
polynomials along the dispersion, it has ``k (L + 1)`` terms for the whole
slit instead of ``k n_disp``. `fit_smooth_background` fits the ``c_jl``
jointly with the fluxes of every component in every column: the fluxes,
local to their column, are eliminated from the normal equations (a Schur
complement per column, vectorized over columns), the small global system is
solved, and the fluxes follow. The flux sums are then made on the data less
``B`` with no background term (the background is known to
``k (L + 1) / n_disp`` of a per-column fit's variance, which is neglected).

Pure numpy, orientation ``(n_cross, n_disp)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .linalg import invert_stacked

__all__ = ["CANDIDATE_ORDERS", "SmoothBackground", "column_chi2", "fit_smooth_background"]

#: Legendre degrees along the dispersion the criterion chooses among (with
#: independent columns) under ``bkg_smooth_order = "auto"``.
CANDIDATE_ORDERS = (0, 1, 3, 7, 15)


@dataclass(frozen=True)
class SmoothBackground:
    """A background smooth along the dispersion and the fit it came from.

    The background image and its mean's variance are computed when first
    read: the caller keeps one degree of the several fitted.

    Attributes
    ----------
    order : int
        Legendre degree along the dispersion.
    chi2 : float
        Chi2 of the joint fit (components per column, this background) over
        the pixels used.
    n_params : int
        Background terms, ``k (order + 1)``.
    cov : ndarray
        Covariance of the coefficients, ``(n_params, n_params)``, data units squared.
    design : ndarray
        The Legendre polynomials of every column, ``(n_disp, order + 1)``.
    basis : ndarray
        The polynomial basis across the slit, ``(n_cross, k)``.
    coeffs : ndarray
        The coefficients ``c_jl``, ``(order + 1, k)``, in units of ``scale``.
    scale : float
        The data scale of ``coeffs``.
    """

    order: int
    chi2: float
    n_params: int
    cov: np.ndarray
    design: np.ndarray
    basis: np.ndarray
    coeffs: np.ndarray
    scale: float

    @functools.cached_property
    def image(self) -> np.ndarray:
        """The background at every pixel, ``(n_cross, n_disp)``."""
        return self.basis @ (self.design @ self.coeffs).T * self.scale

    @functools.cached_property
    def mean_variance(self) -> np.ndarray:
        """Variance of the background's mean over every column, ``(n_disp,)``.

        From the coefficients' covariance (the fluxes marginalized).
        """
        # the column mean of B: mean_j T_l(x)
        mean_design = (self.design[:, :, None] * self.basis.mean(axis=0)[None, None, :]).reshape(
            self.design.shape[0], -1
        )
        return np.sum((mean_design @ self.cov) * mean_design, axis=1)

    def flux_variance(self, weights: np.ndarray) -> np.ndarray:
        """Variance the background's uncertainty adds to fluxes ``sum_y g B``, ``(n_disp,)``.

        ``weights`` ``(n_cross, n_disp)`` are the fluxes' pixel weights ``g``
        (fluxes made on the data less the background). In the joint
        least-squares fit of the fluxes and the background this is the
        exact second term of a flux's variance (the block inverse: the
        background's covariance seen through the flux's sensitivity to it);
        it is large where the fluxes and a constant or a slope are nearly
        degenerate, as with nod copies.
        """
        sens = np.einsum("yj,yx->xj", self.basis, np.nan_to_num(weights))  # (n_disp, k)
        a = (self.design[:, :, None] * sens[:, None, :]).reshape(sens.shape[0], -1)
        return np.sum((a @ self.cov) * a, axis=1)


def fit_smooth_background(
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    profiles: np.ndarray,
    basis: np.ndarray,
    orders: tuple[int, ...],
) -> dict[int, SmoothBackground]:
    """Fit ``B = sum_jl c_jl b_j(y) T_l(x)`` jointly with the components' fluxes per column.

    The Legendre polynomials are nested, so one elimination of the fluxes
    (for the highest degree) serves every degree: a lower degree's normal
    equations are a block of the highest's.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and the variance of its pixels.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels to fit.
    profiles : ndarray, shape (n_cross, n_disp, m)
        Normalized profiles of the components (main source first), each with
        a free flux in every column.
    basis : ndarray, shape (n_cross, k)
        Polynomial basis across the slit (`.horne.polynomial_basis`), k >= 1.
    orders : tuple of int
        Legendre degrees along the dispersion (over the columns holding data).

    Returns
    -------
    dict
        `SmoothBackground` by degree; a degree with as many terms as columns holding data or
        more, or whose solution is not finite, is left out.
    """
    n_cross, n_disp = data.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(usable & np.isfinite(data), 1.0 / variance, 0.0)
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0)
    columns = np.nonzero(weight.any(axis=0))[0]
    k = basis.shape[1]
    orders = tuple(o for o in orders if k * (o + 1) < columns.size)
    if not orders or k == 0:
        return {}
    top = max(orders)
    lo, hi = columns[0], columns[-1]
    x = np.clip(2.0 * (np.arange(n_disp) - lo) / max(hi - lo, 1) - 1.0, -1.0, 1.0)
    tvander = np.polynomial.legendre.legvander(x, top)  # (n_disp, top + 1)
    d = np.where(weight > 0, data, 0.0)
    scale = max(float(np.max(np.abs(d) * np.sqrt(weight))), 1e-300)
    d = d / scale
    local = np.nan_to_num(profiles)  # (n_cross, n_disp, m)
    # every column's fluxes eliminated: the background's Schur complement per column,
    # in the small space of the basis across the slit
    # (three-operand einsums are evaluated naively: products of two, or matmul, are
    # several times faster here)
    lw = local * weight[:, :, None]
    bwb = np.einsum("yj,yx,yk->xjk", basis, weight, basis)
    bwl = np.einsum("yj,yxm->xjm", basis, lw)
    lwl = np.matmul(lw.transpose(1, 2, 0), local.transpose(1, 0, 2))  # (n_disp, m, m)
    bwd = np.einsum("yj,yx,yx->xj", basis, weight, d)
    lwd = np.einsum("yxm,yx->xm", lw, d)
    dwd = np.einsum("yx,yx->x", d * weight, d)
    diag = np.einsum("xmm->xm", lwl)
    ridge = 1e-12 * np.maximum(np.max(diag, axis=1), 1e-300)[:, None, None]
    empty = np.where(diag > 0, 0.0, 1.0)[:, :, None] * np.eye(lwl.shape[1])
    inv = invert_stacked(lwl + ridge * np.eye(lwl.shape[1]) + empty)
    fit = np.matmul(bwl, inv)  # (n_disp, k, m)
    schur = bwb - np.matmul(fit, np.swapaxes(bwl, 1, 2))  # (n_disp, k, k)
    r = bwd - np.einsum("xjm,xm->xj", fit, lwd)  # (n_disp, k)
    left = dwd - np.einsum("xm,xmn,xn->x", lwd, inv, lwd)  # chi2 after the fluxes alone
    # terms ordered by degree l, then basis function j: a lower degree is a leading block
    normal = (
        np.tensordot(tvander[:, :, None, None] * schur[:, None, :, :], tvander, axes=([0], [0]))
        .transpose(0, 1, 3, 2)  # (l, j, k, m) -> (l, j, m, k)
        .reshape((top + 1) * k, (top + 1) * k)
    )
    rhs = np.einsum("xl,xj->lj", tvander, r).ravel()
    total = float(np.sum(left))
    out = {}
    for order in orders:
        n = k * (order + 1)
        block = normal[:n, :n]
        ridge = 1e-12 * max(float(np.trace(block)), 1e-300) * np.eye(n)
        cov = invert_stacked((block + ridge)[None])[0]
        coeffs = cov @ rhs[:n]
        if not np.all(np.isfinite(coeffs)):
            continue
        out[order] = SmoothBackground(
            cov=cov,
            design=tvander[:, : order + 1],
            basis=basis,
            coeffs=coeffs.reshape(order + 1, k),
            scale=scale,
            order=order,
            chi2=float(total - rhs[:n] @ coeffs) * scale**2,
            n_params=n,
        )
    return out


def column_chi2(data: np.ndarray, model: np.ndarray, variance: np.ndarray, usable: np.ndarray):
    """Chi2 of a model over the usable pixels (non-finite terms left out)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(usable, (data - model) ** 2 / variance, 0.0)
    return float(np.sum(np.where(np.isfinite(terms), terms, 0.0)))
