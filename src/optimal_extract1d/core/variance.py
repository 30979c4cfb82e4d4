"""Re-estimate the Poisson variance from the scene model (Horne 1986, step 6).

The pipeline's VAR_POISSON is computed from the measured count rate, so a
pixel that fluctuated up gets a larger variance and a smaller weight: the
optimal sum is then biased low at low S/N. Horne replaces the data by the
model in the variance. JWST files carry no gain, so the Poisson variance is
modelled as ``VAR_POISSON ~ s(x) + k max(M, 0)``: a per-column sky term and
one slit-wide scale ``k``, fitted to the pipeline's own VAR_POISSON. Where
that relation is not supported by the data (no significant positive ``k``)
the input variance is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

__all__ = ["PoissonModel", "remodel_poisson"]

# The scale k must be measured at this significance before it is trusted.
MIN_SCALE_SIGNIFICANCE = 5.0
# The per-column sky term is smoothed over this many columns (the sky is smooth).
SKY_SMOOTH_COLUMNS = 15


@dataclass(frozen=True)
class PoissonModel:
    """Poisson variance predicted from the scene model.

    Attributes
    ----------
    var_poisson : ndarray, shape (n_cross, n_disp)
        Modelled VAR_POISSON wherever the model and the input are finite (the
        fit uses the usable pixels only); the input value elsewhere.
    scale : float
        Fitted ``k`` (variance per unit of model signal); NaN when not applied.
    applied : bool
        False when the data did not support the model and the input was kept.
    """

    var_poisson: np.ndarray
    scale: float
    applied: bool


def remodel_poisson(var_poisson: np.ndarray, model: np.ndarray, usable: np.ndarray) -> PoissonModel:
    """Fit ``VAR_POISSON = s(x) + k max(model, 0)`` and return the model variance.

    Parameters
    ----------
    var_poisson : ndarray, shape (n_cross, n_disp)
        Pipeline Poisson variance.
    model : ndarray, shape (n_cross, n_disp)
        Scene model (flux x profile + background) in the same units as the data.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels entering the fit.

    Returns
    -------
    PoissonModel
    """
    finite = np.isfinite(var_poisson)
    ok = usable & finite & np.isfinite(model)
    keep = PoissonModel(var_poisson, np.nan, False)
    n_col = ok.sum(axis=0)
    if not np.any(n_col >= 2):
        return keep
    signal = np.clip(model, 0.0, None)
    m = np.where(ok, signal, 0.0)
    v = np.where(ok, var_poisson, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m_mean = np.where(n_col > 0, m.sum(axis=0) / n_col, 0.0)
        v_mean = np.where(n_col > 0, v.sum(axis=0) / n_col, 0.0)
    dm = np.where(ok, m - m_mean, 0.0)
    dv = np.where(ok, v - v_mean, 0.0)
    sxx = np.sum(dm**2)
    if not sxx > 0:
        return keep
    k = np.sum(dm * dv) / sxx
    resid = dv - k * dm  # 0 where not ok (or NaN if k is not finite: kept below)
    dof = max(int(n_col.sum()) - int(np.count_nonzero(n_col)) - 1, 1)
    sigma_k = np.sqrt(np.sum(resid**2) / dof / sxx)
    if not (k > 0 and k > MIN_SCALE_SIGNIFICANCE * sigma_k):
        return keep
    sky = np.clip(_smooth(v_mean - k * m_mean, n_col > 0), 0.0, None)
    modelled = sky[None, :] + k * signal
    predicted = np.isfinite(modelled) & finite
    return PoissonModel(np.where(predicted, modelled, var_poisson), float(k), True)


def _smooth(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Running mean over ``SKY_SMOOTH_COLUMNS`` columns of the valid entries."""
    w = valid.astype(float)
    num = uniform_filter1d(np.where(valid, values, 0.0), SKY_SMOOTH_COLUMNS, mode="nearest")
    den = uniform_filter1d(w, SKY_SMOOTH_COLUMNS, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)
