"""Horne's (1986) iteration: the variance from the scene model, outliers out, repeat.

`iterate_extraction` wraps the column sums of `horne` in the loop of
Horne's steps 6-8: the Poisson variance is re-estimated from the scene
model (`variance.remodel_poisson`), the worst pixel of each column is
rejected when it deviates from the model fitted without it, and the
columns are summed again until the weights settle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .horne import ColumnSums, extract_columns, usable_pixels
from .variance import remodel_poisson

__all__ = ["IteratedSums", "iterate_extraction", "PROFILE_ERROR", "VARIANCE_RTOL"]

# Fractional accuracy assumed for the profile when judging outliers.
PROFILE_ERROR = 0.1
# The iteration stops when the remodelled variance changes the information
# (sum P^2 / V) of every column's flux by less than this fraction.
VARIANCE_RTOL = 1e-2


@dataclass(frozen=True)
class IteratedSums:
    """Result of Horne's iteration (variance re-estimation and outlier rejection).

    Attributes
    ----------
    sums : ColumnSums
        Sums of the last iteration (with the final mask and variance).
    var_poisson : ndarray, shape (n_cross, n_disp)
        Poisson variance used at the end (modelled where the data allowed it).
    rejected : ndarray of bool, shape (n_cross, n_disp)
        Pixels rejected as outliers.
    n_iter : int
        Number of re-estimation passes made.
    poisson_scale : float
        Scale of the modelled Poisson variance (NaN if the input was kept).
    """

    sums: ColumnSums
    var_poisson: np.ndarray
    rejected: np.ndarray
    n_iter: int
    poisson_scale: float


def iterate_extraction(
    data: np.ndarray,
    var_poisson: np.ndarray,
    var_other: np.ndarray,
    *,
    profile: np.ndarray,
    mask: np.ndarray,
    bkg_basis: np.ndarray | None = None,
    extra: np.ndarray | None = None,
    reject_sigma: float = 5.0,
    max_iter: int = 5,
    start_var_poisson: np.ndarray | None = None,
) -> IteratedSums:
    """Horne's (1986) iteration: model variance, reject the worst outlier per column, repeat.

    Every pass extracts all columns, builds the scene model ``F P + B``,
    replaces VAR_POISSON by its model prediction (`variance.remodel_poisson`)
    and rejects, in each column, the single pixel deviating most if it lies
    more than ``reject_sigma`` standard deviations from the model (Horne's
    step 8). It stops when nothing changes or after ``max_iter`` passes.

    Parameters
    ----------
    data : ndarray, shape (n_cross, n_disp)
        Science image.
    var_poisson : ndarray, shape (n_cross, n_disp)
        Pipeline Poisson variance (re-estimated from the model).
    var_other : ndarray, shape (n_cross, n_disp)
        The other variance terms (read noise + flat), kept as they are.
    profile : ndarray, shape (n_cross, n_disp)
        Normalized spatial profile.
    mask : ndarray of bool, shape (n_cross, n_disp)
        True for pixels not to use.
    bkg_basis : ndarray, shape (n_cross, k), optional
        Background basis fitted with the profile.
    extra : ndarray, shape (n_cross, n_disp, m), optional
        Other components fitted with it (see `extract_columns`).
    reject_sigma : float
        Rejection threshold in standard deviations.
    max_iter : int
        Maximum number of re-estimation passes; 0 = a single plain extraction.
    start_var_poisson : ndarray, shape (n_cross, n_disp), optional
        Poisson variance for the first pass, e.g. the model of an earlier
        iteration with a slightly different profile: the iteration then
        settles in one or two passes. The remodelling still fits the
        pipeline's ``var_poisson``.

    Returns
    -------
    IteratedSums
    """
    rejected = np.zeros(data.shape, bool)
    vp = var_poisson if start_var_poisson is None else start_var_poisson
    scale = np.nan
    n_extra = 0 if extra is None else np.shape(extra)[2]
    sums = extract_columns(
        data, vp + var_other, profile, mask=mask, bkg_basis=bkg_basis, extra=extra
    )
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        model = np.nan_to_num(sums.model)
        usable = usable_pixels(data, vp + var_other, mask | rejected)
        # Judge outliers with the variance that produced this model, then remodel the
        # variance only in columns that lost no pixel now: their model is not yet
        # corrected for the outlier, which would inflate their modelled variance.
        new_rej = _worst_outliers(
            data,
            model,
            vp + var_other,
            leverage=sums.leverage,
            usable=usable,
            reject_sigma=reject_sigma,
        )
        touched = new_rej.any(axis=0)
        remodel = remodel_poisson(var_poisson, model, usable & ~touched[None, :])
        new_vp = np.where(touched[None, :], vp, remodel.var_poisson)
        changed = touched.any() or _weights_moved(
            sums.design[:, :, : 1 + n_extra], vp + var_other, new_vp + var_other, usable=usable
        )
        vp, rejected = new_vp, rejected | new_rej
        scale = remodel.scale if remodel.applied else scale
        if not changed:
            break
        sums = extract_columns(
            data, vp + var_other, profile, mask=mask | rejected, bkg_basis=bkg_basis, extra=extra
        )
    return IteratedSums(sums, vp, rejected, n_iter, scale)


def _weights_moved(components, old_var, new_var, *, usable) -> bool:
    """Whether a new variance changes the weight any column gives its components.

    Compares, per column and component, ``sum |P^2/V_new - P^2/V_old|`` with
    ``sum P^2/V_old`` (the information on the flux): faint pixels far from
    every trace may change a lot without changing any flux.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_old = np.where(usable, 1.0 / old_var, 0.0)
        inv_new = np.where(usable, 1.0 / new_var, 0.0)
    p2 = components**2
    change = np.einsum("yxj,yx->xj", p2, np.abs(np.nan_to_num(inv_new - inv_old)))
    info = np.einsum("yxj,yx->xj", p2, np.nan_to_num(inv_old))
    return bool(np.any(change > VARIANCE_RTOL * info))


def _worst_outliers(data, model, variance, *, leverage, usable, reject_sigma) -> np.ndarray:
    """The most deviant usable pixel of each column, if beyond ``reject_sigma``.

    Each pixel is judged against the model fitted *without* it (the deleted
    residual ``r / (1 - h)`` of the column's weighted fit, with variance
    ``V / (1 - h)``): a cosmic ray on the trace core drags the full model up
    and makes the good wings look deviant, but not the model that leaves it
    out. A `PROFILE_ERROR` fraction of that model is added to the variance,
    so that at high S/N a profile right to a few per cent does not reject the
    good pixels of the core. When the residuals scatter more than the
    variance says (robust rms > 1, e.g. a VAR array too small), deviations
    are judged against that scatter, so good pixels are not rejected en masse.
    """
    keep = np.clip(1.0 - leverage, 1e-3, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        deleted = (data - model) / keep
        others = data - deleted  # the model at this pixel from the other pixels
        scale = np.sqrt(variance / keep + (PROFILE_ERROR * others) ** 2)
        z = np.where(usable, np.abs(deleted) / scale, 0.0)
    z = np.where(np.isfinite(z), z, 0.0)
    finite_z = z[usable & (z > 0)]
    if finite_z.size >= 20:
        z = z / max(1.4826 * float(np.median(finite_z)), 1.0)
    worst = np.argmax(z, axis=0)
    cols = np.arange(data.shape[1])
    out = np.zeros(data.shape, bool)
    hit = z[worst, cols] > reject_sigma
    out[worst[hit], cols[hit]] = True
    return out
