"""Error bars that match the real scatter: scale the propagated variance from the residuals.

Two things make the pipeline's VAR_* arrays wrong for an optimal sum:

* their level (a per-pixel variance that is too small or too large);
* correlations between pixels along the slit, which drizzling creates: a
  weighted sum over a column then scatters more than ``sum(g^2 V)`` says,
  although every pixel on its own is right.

`residual_error_scale` models the noise of the normalized pixels
``n / sigma`` along the slit as ``C = a_0 I + sum_k a_k T_k`` (``T_k`` pairs
pixels ``k`` apart, k = 1, ..., `MAX_LAG`) and measures the ``a_k`` from the
residuals of the column fits. Those residuals are the noise projected by the
fit, ``z = (I - H) n``, so their lag sums are matched to
``sum_x (I - H_x) C (I - H_x)`` exactly (a linear system in the ``a_k``):
the fitted model does not make the noise look smaller or anticorrelated.
The variance of each column's flux is then ``(g s)^T C (g s)`` instead of
``(g s)^T (g s)``; the median ratio over the columns is the squared factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .horne import ColumnSums
from .linalg import lstsq_or_none

__all__ = ["ErrorScale", "residual_error_scale", "slice_noise_scale", "MAX_LAG"]

#: Pixel correlations are measured up to this lag along the slit.
MAX_LAG = 3
# Standardized residuals beyond this many robust sigma are outliers, not noise.
CLIP_SIGMA = 5.0
# Fewer usable residuals than this: the factor is not measured (1).
MIN_PIXELS = 50
# The noise model is fitted on at most this many columns spread over the slit.
MAX_COLUMNS = 64


@dataclass(frozen=True)
class ErrorScale:
    """How much the propagated flux errors are scaled.

    Attributes
    ----------
    factor : float
        Multiplies FLUX_ERROR (the variances are multiplied by its square).
    pixel_scale : float
        Square root of the fitted per-pixel variance scale ``a_0``.
    correlation : tuple of float
        Correlation of neighbouring pixels at lags 1 to `MAX_LAG`, ``a_k / a_0``.
    n_pixels : int
        Residuals used.
    """

    factor: float
    pixel_scale: float
    correlation: tuple[float, ...]
    n_pixels: int

    def to_meta(self) -> dict:
        """Plain values for the spectrum metadata."""
        return {
            "method": "residual",
            "factor": self.factor,
            "pixel_scale": self.pixel_scale,
            "correlation": list(self.correlation),
            "n_pixels": self.n_pixels,
        }


def _lag_sum(a: np.ndarray, b: np.ndarray, lag: int) -> np.ndarray:
    """``sum_y a[y] b[y + lag]`` over axis 0 (lag 0: the plain product sum)."""
    if lag == 0:
        return np.sum(a * b, axis=0)
    return np.sum(a[:-lag] * b[lag:], axis=0)


def _times_shift(q: np.ndarray, lag: int) -> np.ndarray:
    """``q @ T_lag`` for stacked matrices, ``T`` pairing pixels ``lag`` apart."""
    if lag == 0:
        return q.copy()
    out = np.zeros_like(q)
    out[:, :, lag:] += q[:, :, :-lag]
    out[:, :, :-lag] += q[:, :, lag:]
    return out


def residual_error_scale(
    data: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    weights: np.ndarray,
    sums: ColumnSums,
    source: np.ndarray | None = None,
) -> ErrorScale:
    """Measure the error scale factor of column-wise optimal sums.

    Parameters
    ----------
    data, model, variance : ndarray, shape (n_cross, n_disp)
        Science image, fitted scene and the variance the sums used.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that entered the sums (outliers already rejected).
    weights : ndarray, shape (n_cross, n_disp)
        Flux weights ``g`` of the sums (``pixel_weights`` of `.horne.ColumnSums`).
    sums : ColumnSums
        The column fits, for their hat matrices (of up to ``MAX_COLUMNS``
        columns spread over the slit: the noise statistics are global).
    source : ndarray, shape (n_cross, n_disp), optional
        The sources' part of the model. Only pixels where it is below the
        noise are measured: there an imperfect profile leaves no systematic
        residual that would pass for noise.

    Returns
    -------
    ErrorScale
        Factor 1 when fewer than ``MIN_PIXELS`` residuals are usable.
    """
    z, sigma, ok = _residuals(data, model, variance, usable=usable, source=source)
    if ok.sum() < MIN_PIXELS:
        return ErrorScale(1.0, 1.0, (), int(ok.sum()))
    ok = _inliers(z / np.sqrt(np.clip(1.0 - np.nan_to_num(sums.leverage), 1e-3, 1.0)), ok)
    cols = _sample_columns(ok)
    coeffs = _noise_model(np.where(ok, z, 0.0)[:, cols], ok[:, cols], sums.hat(cols))
    if coeffs is None:
        return ErrorScale(1.0, 1.0, (), int(ok.sum()))
    gs = np.nan_to_num(weights) * np.nan_to_num(sigma)
    independent = _lag_sum(gs, gs, 0)
    correlated = independent * coeffs[0] + sum(
        2.0 * a * _lag_sum(gs, gs, lag) for lag, a in enumerate(coeffs[1:], start=1)
    )
    good = independent > 0
    ratio = np.median(correlated[good] / independent[good]) if good.any() else 1.0
    return ErrorScale(
        float(np.sqrt(max(ratio, 1e-6))),
        float(np.sqrt(coeffs[0])),
        tuple(float(a / coeffs[0]) for a in coeffs[1:]),
        int(ok.sum()),
    )


def slice_noise_scale(
    data: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    source: np.ndarray,
    cross: ErrorScale,
    width: int,
) -> float:
    """How much the real noise of a kernel-slice fit exceeds what the variance says.

    A slice coadds ``width`` columns, so pixel correlations *along* the
    dispersion add to the ones along the slit that `residual_error_scale`
    measured: for separable correlations the variance of a flux fitted to the
    slice grows by ``cross.factor**2 * (1 + 2 sum_k (1 - k/width) rho_k)``,
    with ``rho_k`` the correlation of residuals ``k`` columns apart (lags
    1 to `MAX_LAG`, measured where the sources are below the noise, outliers
    clipped). The per-column fits remove nothing along the dispersion, so the
    residuals show those correlations as they are.

    Returns
    -------
    float
        The factor on the slice's standard errors (>= 1; 1 if unmeasurable).
    """
    z, _, ok = _residuals(data, model, variance, usable=usable, source=source)
    if ok.sum() < MIN_PIXELS:
        return max(cross.factor, 1.0)
    ok = _inliers(z, ok)
    # lags along the dispersion: axis 0 of the transposes
    z0, measured = np.where(ok, z, 0.0).T, ok.T.astype(float)
    variance_z = np.sum(z0 * z0) / np.sum(measured)
    along = 1.0
    for lag in range(1, min(MAX_LAG, z0.shape[0] - 1) + 1):
        pairs = np.sum(_lag_sum(measured, measured, lag))
        if pairs < MIN_PIXELS:
            break
        rho = np.sum(_lag_sum(z0, z0, lag)) / pairs / variance_z
        along += 2.0 * (1.0 - lag / max(width, 1)) * rho
    return float(max(cross.factor * np.sqrt(max(along, 0.0)), 1.0))


def _residuals(data, model, variance, *, usable, source):
    """Normalized residuals ``z``, ``sigma`` and where ``z`` measures noise.

    Only pixels where the sources' model (``source``, if given) is below the
    noise: there an imperfect profile leaves no systematic residual.
    """
    sigma = np.sqrt(np.where(usable & (variance > 0), variance, np.nan))
    with np.errstate(invalid="ignore"):
        z = (data - model) / sigma
        faint = np.abs(np.nan_to_num(source)) < sigma if source is not None else True
    return z, sigma, np.isfinite(z) & faint


def _inliers(z: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``ok`` without the residuals beyond ``CLIP_SIGMA`` robust (MAD) sigma."""
    rms = 1.4826 * np.median(np.abs(z[ok] - np.median(z[ok])))
    return ok & (np.abs(z) <= CLIP_SIGMA * max(rms, 1e-12))


def _sample_columns(ok: np.ndarray) -> np.ndarray:
    """Up to ``MAX_COLUMNS`` columns with measured pixels, spread over the slit."""
    cols = np.nonzero(ok.sum(axis=0) > MAX_LAG + 1)[0]
    if cols.size > MAX_COLUMNS:
        cols = cols[np.linspace(0, cols.size - 1, MAX_COLUMNS).round().astype(int)]
    return cols


def _noise_model(z0: np.ndarray, ok: np.ndarray, hat: np.ndarray) -> np.ndarray | None:
    """Fit ``a_0..a_L`` so that the residual lag sums match ``(I - H) C (I - H)``."""
    n_cross = z0.shape[0]
    keep = ok.T.astype(float)  # (n_cols, n_cross)
    q = (np.eye(n_cross)[None] - hat) * keep[:, :, None] * keep[:, None, :]
    lags = range(MAX_LAG + 1)
    measured = np.array([np.sum(_lag_sum(z0, z0, k)) for k in lags])
    design = np.empty((len(lags), len(lags)))
    for j in lags:
        e = np.matmul(_times_shift(q, j), q)
        for k in lags:
            design[k, j] = np.sum(np.trace(e, offset=k, axis1=1, axis2=2))
    coeffs = lstsq_or_none(design, measured)
    return coeffs if coeffs is not None and coeffs[0] > 0 else None
