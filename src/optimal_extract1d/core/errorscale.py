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

On a bright source the residuals also hold the profile's misfit (a Gaussian
kernel on a Moffat-like PSF leaves tens of sigma in the wings at column S/N
1000), which would pass for noise. The misfit is the flux times a pattern that
changes slowly along the dispersion, the noise is independent between columns
more than `MAX_LAG` apart: so the noise is measured on the *differenced*
residuals ``u_x = z_x - sum_j alpha_j z_{x +- DIFF_LAG}``, the neighbours' residuals
scaled by the flux ratio (and the noise ratio, per pixel) to cancel the misfit;
their lag sums are matched to the sum of the three columns' ``(I - H) C (I - H)``
terms. Columns where the source is faint (S/N below `MISFIT_SNR`) are measured
as they are, columns where it is bright only with a bright neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .horne import ColumnSums
from .linalg import lstsq_or_none
from .outliers import median

__all__ = [
    "ErrorScale",
    "dispersion_correlation",
    "residual_error_scale",
    "slice_noise_scale",
    "MAX_LAG",
    "DIFF_LAG",
    "MISFIT_SNR",
]

#: Pixel correlations are measured up to this lag along the slit (and assumed to
#: vanish beyond it along the dispersion).
MAX_LAG = 3
#: Columns this far apart are differenced to cancel the profile's misfit.
DIFF_LAG = MAX_LAG + 1
#: Column flux S/N from which the profile's misfit can pass for noise; such
#: columns are measured only differenced with a neighbour at least as bright.
MISFIT_SNR = 10.0
# A neighbour's flux must be within this factor of the column's to cancel its misfit.
_FLUX_RATIO = 3.0
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
        The measured factor: the flux noise over the propagated error.
        FLUX_ERROR is multiplied by `applied_factor` (the variances by its square).
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

    @property
    def applied_factor(self) -> float:
        """The factor applied to FLUX_ERROR, the measured one but never below 1.

        The residuals measure the noise of the pixels; below 1 they say the
        input variance is too large, not that the flux errors are. Horne's
        variance leaves out what the fitted profile adds (at column S/N 3 the
        flux scatters more than it says), and a pixel variance from clipped
        data (VAR_POISSON is 0 where the count rate was negative, so a model
        of it sits 7-9 % above the true variance at S/N 3) measures as too
        large: shrinking the errors by the pixels' factor made them too small
        (calib 1.05-1.06 at S/N 3, 1.02-1.04 at S/N 10-30; benchmarks/defaults.py).
        As with the scale factors of the Particle Data Group's averages, errors
        are raised to the scatter, never lowered.

        For the same reason a pixel level below 1 does not lower what the
        correlations between pixels raise: the factor applied is at least the
        correlations' part alone, ``factor / pixel_scale`` (drizzle-like noise
        at column S/N 3, pixel scale 0.96: calib 1.060 with the measured
        factor, 1.02 with the correlations' part).
        """
        level = min(self.pixel_scale, 1.0)
        return max(self.factor / level if level > 0 else self.factor, 1.0)

    @property
    def smooth_inflation(self) -> float:
        """How much more than white noise a term smooth along the slit gains from it, ``>= 1``.

        ``1 + 2 sum_k rho_k``: the noise's power at low frequencies over the
        white noise's, for the correlations of lags 1 to `MAX_LAG` (a
        constant or slope across a column of correlated pixels lowers the
        chi2, computed with the per-pixel variance, that much more on
        average). Never below 1: anticorrelated residuals are the fit's.
        """
        return max(1.0 + 2.0 * sum(self.correlation), 1.0)

    def for_weights(
        self, weights: np.ndarray, variance: np.ndarray, usable: np.ndarray
    ) -> ErrorScale:
        """The factor of the same noise model for other flux weights ``g``.

        For sums over the same pixels with the same variance whose model
        changed little (the background made smooth along the dispersion):
        the noise was measured once, only the weights it is seen through
        changed.
        """
        if not self.correlation:
            return self
        a0 = self.pixel_scale**2
        coeffs = np.array([a0, *(a0 * rho for rho in self.correlation)])
        sigma = np.sqrt(np.where(usable & (variance > 0), variance, np.nan))
        return replace(self, factor=_correlated_factor(coeffs, weights, sigma))

    def to_meta(self) -> dict:
        """Plain values for the spectrum metadata (``factor``: the applied one)."""
        return {
            "method": "residual",
            "factor": self.applied_factor,
            "measured_factor": self.factor,
            "pixel_scale": self.pixel_scale,
            "correlation": list(self.correlation),
            "n_pixels": self.n_pixels,
        }


def _lag_sum(a: np.ndarray, b: np.ndarray, lag: int) -> np.ndarray:
    """``sum_y a[y] b[y + lag]`` over axis 0 (lag 0: the plain product sum)."""
    if lag == 0:
        return np.sum(a * b, axis=0)
    return np.sum(a[:-lag] * b[lag:], axis=0)


def residual_error_scale(
    data: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    weights: np.ndarray,
    sums: ColumnSums,
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
        The column fits, for their fluxes and hat matrices (of up to
        ``MAX_COLUMNS`` columns spread over the slit: the noise statistics
        are global).

    Returns
    -------
    ErrorScale
        Factor 1 when fewer than ``MIN_PIXELS`` residuals are usable.
    """
    z, sigma, ok = _residuals(data, model, variance, usable=usable, source=None)
    pairs = _misfit_pairs(sums, z.shape[1])
    cols = _sample_columns(ok, pairs)
    if cols.size == 0:
        return ErrorScale(1.0, 1.0, (), 0)
    hats = {0: sums.hat_factors(cols)}
    for step in (-DIFF_LAG, DIFF_LAG):
        if np.any(pairs[cols, int(step > 0)] != 0):
            hats[step] = sums.hat_factors(np.clip(cols + step, 0, z.shape[1] - 1))
    terms, u, keep = _differenced(z, sigma, ok, hats=hats, cols=cols, pairs=pairs)
    if keep.sum() < MIN_PIXELS:
        return ErrorScale(1.0, 1.0, (), int(keep.sum()))
    spread = np.sqrt(np.clip(sum(t.row_norms() for t in terms), 1e-6, None)).T
    inliers = _inliers(u / spread, keep)
    inliers &= _quiet_columns(np.where(inliers, u / spread, 0.0), inliers)[None, :]
    if not np.array_equal(inliers, keep):  # outliers out of the projections too
        terms, u, keep = _differenced(
            z, sigma, ok, hats=hats, cols=cols, pairs=pairs, exclude=keep & ~inliers
        )
    coeffs = _noise_model(np.where(keep, u, 0.0), keep, terms)
    if coeffs is None:
        return ErrorScale(1.0, 1.0, (), int(keep.sum()))
    return ErrorScale(
        _correlated_factor(coeffs, weights, sigma),
        float(np.sqrt(coeffs[0])),
        tuple(float(a / coeffs[0]) for a in coeffs[1:]),
        int(keep.sum()),
    )


def _correlated_factor(coeffs: np.ndarray, weights: np.ndarray, sigma: np.ndarray) -> float:
    """Median over columns of ``sqrt((g s)^T C (g s) / (g s)^T (g s))``, C from ``coeffs``."""
    gs = np.nan_to_num(weights) * np.nan_to_num(sigma)
    independent = _lag_sum(gs, gs, 0)
    correlated = independent * coeffs[0] + sum(
        2.0 * a * _lag_sum(gs, gs, lag) for lag, a in enumerate(coeffs[1:], start=1)
    )
    good = independent > 0
    ratio = median(correlated[good] / independent[good]) if good.any() else 1.0
    return float(np.sqrt(max(ratio, 1e-6)))


def _misfit_pairs(sums: ColumnSums, n_disp: int) -> np.ndarray:
    """Flux-ratio weights ``(n_disp, 2)`` of the neighbours ``x - DIFF_LAG``, ``x + DIFF_LAG``.

    A faint column (S/N < `MISFIT_SNR`) needs none (0, 0); a bright one takes
    its bright neighbours whose flux is within ``_FLUX_RATIO``, each weighted by
    the flux ratio (halved when there are two). A bright column without one is
    NaN: it is not measured.
    """
    flux = np.asarray(sums.flux, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.abs(flux) / np.sqrt(np.asarray(sums.variance, float))
    bright = np.nan_to_num(snr) >= MISFIT_SNR
    pairs = np.zeros((n_disp, 2))
    x = np.arange(n_disp)
    for side, step in enumerate((-DIFF_LAG, DIFF_LAG)):
        nb = x + step
        inside = (nb >= 0) & (nb < n_disp)
        nbc = np.clip(nb, 0, n_disp - 1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = flux / flux[nbc]
        fits = inside & bright & bright[nbc] & (ratio > 1 / _FLUX_RATIO) & (ratio < _FLUX_RATIO)
        pairs[:, side] = np.where(fits, ratio, 0.0)
    n_nb = np.count_nonzero(pairs, axis=1)
    pairs = np.where(n_nb[:, None] == 2, 0.5 * pairs, pairs)
    pairs[bright & (n_nb == 0)] = np.nan
    return pairs


@dataclass(frozen=True)
class _Projection:
    """One projection term of every column, ``Q = diag(e) - X Y^T`` (X, Y of rank m).

    The fit's hat matrix is ``H = U V^T`` (`.horne.ColumnSums.hat_factors`), so
    ``diag(d1) (I - H) diag(d2)`` is ``diag(d1 d2) - (d1 U) (d2 V)^T``: the
    noise model needs sums over ``Q`` that these factors give without forming
    the ``n_cross x n_cross`` matrices of every column.

    Attributes
    ----------
    e : ndarray, shape (n_cols, n_cross)
    x, y : ndarray, shape (n_cols, n_cross, m)
    """

    e: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def of(cls, d1: np.ndarray, d2: np.ndarray, factors) -> _Projection:
        """``diag(d1) (I - U V^T) diag(d2)`` with ``factors = (U, V)``; d1, d2 ``(n_cols, n)``."""
        u, v = factors
        return cls(d1 * d2, d1[:, :, None] * u, d2[:, :, None] * v)

    def row_norms(self) -> np.ndarray:
        """``sum_b Q[y, b]**2`` of every column, ``(n_cols, n_cross)``."""
        gram = np.matmul(np.swapaxes(self.y, 1, 2), self.y)  # Y^T Y
        # (sums over m by einsum: a reduction over a short last axis is slow)
        return (
            self.e**2
            - 2.0 * self.e * np.einsum("cym,cym->cy", self.x, self.y)
            + np.einsum("cym,cym->cy", np.matmul(self.x, gram), self.x)
        )

    def lag_traces(self, lags: range) -> np.ndarray:
        """Diagonal sums of ``sum_cols Q T_j Q^T``: ``[k, j]`` is that of diagonal ``k``.

        ``T_j`` pairs pixels ``j`` apart; with ``Q = diag(e) - X Y^T`` the
        product is ``T_j * (e e^T) - E T_j Y X^T - (..)^T + X (Y^T T_j Y) X^T``,
        whose ``k``-th diagonal sums are lag-``k`` sums over the pixels of the
        rows of these factors (the last one's through ``X^T`` times X shifted by
        ``k``, m x m): the ``n_cross x n_cross`` products are never formed.
        """
        n_lags, e, x, y = len(lags), self.e, self.x, self.y
        ty = _shifted(y, lags, both=True)  # T_j Y: (n_lags, n_cols, n, m)
        # rows y +- k of X (E T_j Y X^T and its transpose, twice at k = 0)
        around = _shifted(x, lags, both=True)
        around[0] *= 2.0
        # sum_y (X G)[y] . X[y + k] = <X^T X[. + k], G>, with G = Y^T T_j Y
        gram = np.matmul(np.swapaxes(y, 1, 2)[None], ty)  # (n_lags, n_cols, m, m)
        ahead = np.matmul(np.swapaxes(x, 1, 2)[None], _shifted(x, lags, both=False))

        def paired(a, b):  # [k, j]: the sum of a[k] b[j] over every other index
            return a.reshape(n_lags, -1) @ b.reshape(n_lags, -1).T

        n = e.shape[1]
        plain = np.diag([np.sum(e[:, : n - k] * e[:, k:]) for k in lags])
        return plain - paired(around, e[None, :, :, None] * ty) + paired(ahead, gram)


def _shifted(a: np.ndarray, lags: range, *, both: bool) -> np.ndarray:
    """``a`` shifted along axis -2 by every lag, ``(n_lags, ...)``.

    ``[k][..., y, :]`` is ``a[..., y + k, :]`` (0 beyond the last row), plus
    ``a[..., y - k, :]`` when ``both`` (``T_k a``; ``a`` itself at lag 0).
    """
    out = np.zeros((len(lags), *a.shape))
    for i, lag in enumerate(lags):
        if lag == 0:
            out[i] = a
            continue
        out[i, ..., :-lag, :] = a[..., lag:, :]
        if both:
            out[i, ..., lag:, :] += a[..., :-lag, :]
    return out


def _differenced(z, sigma, ok, *, hats, cols, pairs, exclude=None):
    """Differenced residuals ``u`` of the columns ``cols`` and their projection terms.

    ``hats`` maps 0 and each neighbour offset used to the hat-matrix factors
    (`.horne.ColumnSums.hat_factors`) of the columns ``cols`` and of their
    neighbours there.

    Returns
    -------
    terms : list of _Projection
        ``(I - H_x)`` and ``A_j (I - H_{x+-DIFF_LAG})`` (``A_j``: the per-pixel
        neighbour weights), the rows of the pixels not measured set to 0.
    u : ndarray, shape (n_cross, n_cols)
        Differenced normalized residuals (0 where not measured).
    keep : ndarray of bool, shape (n_cross, n_cols)
        Pixels measured: usable in the column and in every neighbour it uses,
        and not in ``exclude``.
    """
    n_disp = z.shape[1]
    z0 = np.where(ok, z, 0.0)
    keep = ok[:, cols].copy()
    if exclude is not None:
        keep &= ~exclude
    neighbours = []
    for side, step in enumerate((-DIFF_LAG, DIFF_LAG)):
        weight = pairs[cols, side]
        nb = np.clip(cols + step, 0, n_disp - 1)
        used = weight != 0
        keep &= ~used[None, :] | ok[:, nb]
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = weight[None, :] * sigma[:, nb] / sigma[:, cols]
        neighbours.append((nb, np.where(used[None, :], np.nan_to_num(alpha), 0.0)))
    k = keep.T.astype(float)  # (n_cols, n_cross)
    terms = [_Projection.of(k, k, hats[0])]
    u = z0[:, cols].copy()
    for (nb, alpha), step in zip(neighbours, (-DIFF_LAG, DIFF_LAG), strict=True):
        a = np.where(keep, alpha, 0.0)
        if step not in hats or not np.any(a):
            continue
        u -= a * z0[:, nb]
        terms.append(_Projection.of(a.T, ok[:, nb].T.astype(float), hats[step]))
    return terms, np.where(keep, u, 0.0), keep


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
    cov = _dispersion_covariances(z, ok, MAX_LAG)
    if cov is None:
        return max(cross.factor, 1.0)
    along = 1.0
    for lag, c in enumerate(cov[1:], start=1):
        along += 2.0 * (1.0 - lag / max(width, 1)) * c / cov[0]
    return float(max(cross.factor * np.sqrt(max(along, 0.0)), 1.0))


def dispersion_correlation(
    data: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    source: np.ndarray,
) -> tuple[float, ...]:
    """Correlation of the residuals of columns 1 to `MAX_LAG` apart (empty if unmeasurable).

    Measured where the sources are below the noise (``source``, the sources'
    model), outliers clipped. Whatever the model leaves that is smooth along
    the dispersion (a sky it lacks, a profile's misfit in the wings) would
    pass for correlated noise: its covariance, the mean of lags
    ``MAX_LAG + 1`` to ``2 MAX_LAG + 2`` where drizzled noise no longer
    correlates, is taken off every lag's.
    """
    z, _, ok = _residuals(data, model, variance, usable=usable, source=source)
    cov = _dispersion_covariances(z, ok, 2 * MAX_LAG + 2)
    if cov is None or cov.size < 2 * MAX_LAG + 3:
        return ()
    far = float(np.mean(cov[MAX_LAG + 1 :]))
    noise = cov[0] - far
    if noise <= 0:
        return ()
    return tuple(float((c - far) / noise) for c in cov[1 : MAX_LAG + 1])


def _dispersion_covariances(z: np.ndarray, ok: np.ndarray, max_lag: int) -> np.ndarray | None:
    """Mean ``z_x z_{x + k}`` over the inlying pixels, k = 0 to ``max_lag`` columns.

    None when fewer than `MIN_PIXELS` pixels, or pairs at some lag, are measured.
    """
    if ok.sum() < MIN_PIXELS:
        return None
    ok = _inliers(z, ok)
    # lags along the dispersion: axis 0 of the transposes
    z0, measured = np.where(ok, z, 0.0).T, ok.T.astype(float)
    cov = []
    for lag in range(max_lag + 1):
        pairs = np.sum(_lag_sum(measured, measured, lag))
        if pairs < MIN_PIXELS:
            return None if lag <= 1 else np.array(cov)
        cov.append(np.sum(_lag_sum(z0, z0, lag)) / pairs)
    return np.array(cov)


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


def _quiet_columns(z: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Columns whose mean square ``z`` is not beyond ``CLIP_SIGMA`` of its spread over columns.

    A cosmic ray too faint to be rejected on a bright trace moves its column's
    flux: the fit spreads it over the other pixels (and the flux ratio of its
    neighbours), below any pixel clip but enough to pass for extra noise.
    """
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.sum(z * z, axis=0) / n
    measured = n > 0
    if measured.sum() < 5:
        return measured
    centre = median(chi2[measured])
    spread = 1.4826 * median(np.abs(chi2[measured] - centre))
    limit = centre + CLIP_SIGMA * max(spread, centre * np.sqrt(2.0 / max(median(n), 1)))
    return measured & (chi2 <= limit)


def _inliers(z: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``ok`` without the residuals beyond ``CLIP_SIGMA`` robust (MAD) sigma."""
    rms = 1.4826 * median(np.abs(z[ok] - median(z[ok])))
    return ok & (np.abs(z) <= CLIP_SIGMA * max(rms, 1e-12))


def _sample_columns(ok: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Up to ``MAX_COLUMNS`` measurable columns with measured pixels, spread over the slit."""
    measurable = (ok.sum(axis=0) > MAX_LAG + 1) & np.all(np.isfinite(pairs), axis=1)
    cols = np.nonzero(measurable)[0]
    if cols.size > MAX_COLUMNS:
        cols = cols[np.linspace(0, cols.size - 1, MAX_COLUMNS).round().astype(int)]
    return cols


def _noise_model(u: np.ndarray, keep: np.ndarray, terms: list[_Projection]) -> np.ndarray | None:
    """Fit ``a_0..a_L`` so that the lag sums of ``u`` match ``sum_t Q_t C Q_t^T``.

    ``terms`` holds the ``Q_t`` of every column (`_Projection`), with the rows
    and columns of the pixels not measured set to 0: the expected lag-``k``
    sum of ``a_j Q T_j Q^T`` is ``a_j`` times the ``k``-th diagonal sum of
    ``sum_t Q_t T_j Q_t^T``.
    """
    lags = range(MAX_LAG + 1)
    measured = np.array([np.sum(_lag_sum(u, u, k)) for k in lags])
    design = sum(t.lag_traces(lags) for t in terms)  # [lag k of the sums, lag j of C]
    coeffs = lstsq_or_none(design, measured)
    return coeffs if coeffs is not None and coeffs[0] > 0 else None
