"""Horne's (1986) iteration: the variance from the scene model, outliers out, repeat.

`iterate_extraction` wraps the column sums of `.horne` in the loop of
Horne's steps 6-8: the Poisson variance is re-estimated from the scene
model (`.variance.remodel_poisson`), the worst pixel of each column is
rejected when it deviates from the model fitted without it, and the
columns are summed again until the weights settle. The profile's misfit,
measured from the neighbouring columns (`misfit_estimate`), is taken off the
residuals first: an imperfect template on a bright trace is not an outlier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from .horne import ColumnSums, extract_columns, usable_pixels
from .outliers import median, nanmedian
from .profile import PROFILE_ERROR
from .variance import remodel_poisson

__all__ = [
    "IteratedSums",
    "iterate_extraction",
    "misfit_estimate",
    "REJECT_PROFILE_ERRORS",
    "VARIANCE_RTOL",
    "MISFIT_WINDOW",
    "MISFIT_SNR",
    "MISFIT_TARGET_SNR",
]

#: Outliers are judged allowing for this many template errors (`.profile.PROFILE_ERROR`)
#: of the model: a profile right to a few per cent must not reject the core at high S/N.
REJECT_PROFILE_ERRORS = 2.0
# The fraction of the model that adds to the noise when judging outliers (0.1) ...
_REJECT_FRACTION = REJECT_PROFILE_ERRORS * PROFILE_ERROR
#: Columns on each side whose residuals, scaled by the flux ratio, predict a
#: column's profile misfit when outliers are judged (`misfit_estimate`).
MISFIT_WINDOW = 4
#: Least flux S/N of a neighbouring column for its residuals to enter that estimate.
MISFIT_SNR = 5.0
#: Least flux S/N of a column for its misfit to be estimated; below it a profile
#: wrong by a few per cent leaves less than the noise, which the 10 % tolerance covers.
MISFIT_TARGET_SNR = 20.0
# ... and where the misfit was measured from the neighbours (`misfit_estimate`): one
# template error, for what changes of the misfit within the window.
_MEASURED_FRACTION = PROFILE_ERROR
# A neighbour's flux must be within this factor of the column's: a line's residuals
# are not predicted from the faint continuum beside it (too noisy once scaled).
_MISFIT_FLUX_RATIO = 3.0
#: The iteration stops when the remodelled variance changes the information
#: (sum P^2 / V) of every column's flux by less than this fraction.
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


# Below this robust z scale (median |z| times 1.4826 <= 0.99) the scatter is not rescaled.
_SCATTER_BOUND = 0.99 / 1.4826


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

    Every pass extracts all columns, replaces VAR_POISSON by its prediction
    from the scene model ``F P + B`` (`.variance.remodel_poisson`) and rejects,
    in each column, the pixel deviating most if beyond ``reject_sigma`` standard
    deviations (Horne's step 8), until nothing changes or for ``max_iter`` passes.

    Parameters
    ----------
    data : ndarray, shape (n_cross, n_disp)
        Science image.
    var_poisson, var_other : ndarray, shape (n_cross, n_disp)
        Pipeline Poisson variance (re-estimated from the model) and the other
        variance terms (read noise + flat, kept as they are).
    profile, mask : ndarray, shape (n_cross, n_disp)
        Normalized spatial profile; True for pixels not to use.
    bkg_basis, extra : ndarray, optional
        Background basis ``(n_cross, k)`` and other components ``(n_cross,
        n_disp, m)`` fitted with the profile (see `.horne.extract_columns`).
    reject_sigma : float
        Rejection threshold in standard deviations.
    max_iter : int
        Maximum number of re-estimation passes; 0 = a single plain extraction.
    start_var_poisson : ndarray, shape (n_cross, n_disp), optional
        Poisson variance of the first pass, e.g. an earlier iteration's model with
        a slightly different profile, to settle in one or two passes (the
        remodelling still fits the pipeline's ``var_poisson``).

    Returns
    -------
    IteratedSums
    """
    vp = var_poisson if start_var_poisson is None else start_var_poisson
    extract = partial(extract_columns, data, profile=profile, bkg_basis=bkg_basis, extra=extra)
    reject = partial(_rejection_pass, var_other=var_other, mask=mask, reject_sigma=reject_sigma)
    n_extra = 0 if extra is None else np.shape(extra)[2]
    state = IteratedSums(
        extract(vp + var_other, mask=mask), vp, np.zeros(data.shape, bool), 0, np.nan
    )
    while state.n_iter < max_iter:
        state, changed = reject(state, data, var_poisson, n_extra=n_extra)
        if not changed:
            break
        sums = extract(state.var_poisson + var_other, mask=mask | state.rejected)
        state = replace(state, sums=sums)
    return state


def _rejection_pass(
    state: IteratedSums,
    data: np.ndarray,
    var_poisson: np.ndarray,
    *,
    var_other: np.ndarray,
    mask: np.ndarray,
    n_extra: int,
    reject_sigma: float,
) -> tuple[IteratedSums, bool]:
    """One pass on the last sums: worst outliers out (``_worst_outliers``), VAR_POISSON remodelled.

    Parameters
    ----------
    state : IteratedSums
        The iteration so far: its sums, the variance they used, the pixels
        rejected and the passes made.
    data, var_poisson : ndarray, shape (n_cross, n_disp)
        Science image and the pipeline Poisson variance the model fits.
    var_other, mask : ndarray, shape (n_cross, n_disp)
        The other variance terms; True for pixels not to use.
    n_extra : int
        Number of other components fitted with the profile.
    reject_sigma : float
        Rejection threshold in standard deviations.

    Returns
    -------
    state : IteratedSums
        With the new variance, rejections, pass count and Poisson scale (the
        sums are still the last ones).
    changed : bool
        Whether a pixel was rejected or the weights of any column moved.
    """
    vp, sums = state.var_poisson, state.sums
    variance = vp + var_other  # the one these sums were made with
    model = np.nan_to_num(sums.model)
    usable = usable_pixels(data, variance, mask | state.rejected)
    # Judge outliers with the variance that produced this model, then remodel the
    # variance only in columns that lost no pixel now: their model is not yet
    # corrected for the outlier, which would inflate their modelled variance.
    misfit, misfit_var = misfit_estimate(data, model, variance, usable=usable, sums=sums)
    new_rej = _worst_outliers(
        data - misfit,
        model,
        variance + misfit_var,
        leverage=sums.leverage,
        usable=usable,
        reject_sigma=reject_sigma,
        fraction=np.where(misfit_var > 0, _MEASURED_FRACTION, _REJECT_FRACTION),
    )
    touched = new_rej.any(axis=0)
    remodel = remodel_poisson(var_poisson, model, usable & ~touched[None, :])
    new_vp = np.where(touched[None, :], vp, remodel.var_poisson)
    changed = touched.any() or _weights_moved(
        sums.design[:, :, : 1 + n_extra], variance, new_vp + var_other, usable=usable
    )
    scale = remodel.scale if remodel.applied else state.poisson_scale
    return IteratedSums(sums, new_vp, state.rejected | new_rej, state.n_iter + 1, scale), changed


def _weights_moved(components, old_var, new_var, *, usable) -> bool:
    """Whether a new variance changes the weight any column gives its components.

    Compares, per column and component, ``sum |P^2/V_new - P^2/V_old|`` with
    ``sum P^2/V_old`` (the information on the flux): faint pixels far from
    every trace may change a lot without changing any flux.
    """
    # [change, information] of every pixel; 1 / old_var is finite where usable (a
    # variance of at least the least normal float, `.horne.usable_pixels`), the new
    # one need not be
    both = np.empty((*old_var.shape, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_old = both[:, :, 1] = np.where(usable, 1.0 / old_var, 0.0)
        inv_new = np.where(usable, 1.0 / new_var, 0.0)
    both[:, :, 0] = np.abs(np.nan_to_num(inv_new - inv_old))
    p2 = components**2
    # per column: (components, rows) @ (rows, [change, information])
    sums = np.matmul(p2.transpose(1, 2, 0), both.transpose(1, 0, 2))
    return bool(np.any(sums[:, :, 0] > VARIANCE_RTOL * sums[:, :, 1]))


def misfit_estimate(
    data: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    sums: ColumnSums,
) -> tuple[np.ndarray, np.ndarray]:
    """The profile's misfit at every pixel, predicted from the neighbouring columns.

    A template profile that is not the true one (a Gaussian on a Moffat-like
    PSF, a width a little off) leaves residuals ``F_x (P_true - P)``: the
    flux times a pattern that changes slowly along the dispersion. At high
    S/N they reach tens of sigma, in the wings as in the core, and would be
    rejected as outliers column after column. Each pixel's misfit is
    predicted as its column's flux times the median, over the `MISFIT_WINDOW`
    columns on each side whose flux S/N is at least `MISFIT_SNR` and within a
    factor 3 of the column's (a line's residuals are not predicted from the
    faint continuum beside it), of the residual over the flux at the same row
    (a median: a cosmic ray in one
    neighbour does not move it, and the pixel's own column is not used, so
    its own cosmic ray stays an outlier).

    Returns
    -------
    misfit : ndarray, shape (n_cross, n_disp)
        Predicted misfit (0 in columns below `MISFIT_TARGET_SNR` and where
        fewer than three neighbours qualify).
    variance : ndarray, shape (n_cross, n_disp)
        Its noise variance: ``pi / (2 n)`` for a median of n, times the
        (median) variance of one neighbour's term scaled to this column's flux.
    """
    flux = np.asarray(sums.flux, float)
    misfit, noise = np.zeros(data.shape), np.zeros(data.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.nan_to_num(np.abs(flux) / np.sqrt(np.asarray(sums.variance, float)))
    targets = np.nonzero(snr >= MISFIT_TARGET_SNR)[0]
    if targets.size == 0:
        return misfit, noise
    bright = usable & (snr >= MISFIT_SNR)[None, :]
    # over: a flux near the float limit (the fuzz tests' extreme inputs) squares to inf
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        relative = np.where(bright, (data - model) / flux, np.nan)
        rel_var = np.where(bright, variance / flux**2, np.nan)
    steps = np.r_[-MISFIT_WINDOW:0, 1 : MISFIT_WINDOW + 1]
    nb = targets[:, None] + steps[None, :]  # (n_targets, 2 * MISFIT_WINDOW)
    inside = (nb >= 0) & (nb < data.shape[1])
    nb = np.clip(nb, 0, data.shape[1] - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux[nb] / flux[targets][:, None]
    alike = inside & (ratio > 1 / _MISFIT_FLUX_RATIO) & (ratio < _MISFIT_FLUX_RATIO)
    # neighbours first (medians over a short axis are fastest along the first)
    alike = alike.T[:, :, None]
    stack = np.where(alike, relative.T[nb.T], np.nan)  # (n_nb, n_targets, n_cross)
    n = np.sum(np.isfinite(stack), axis=0)
    enough = n >= 3
    f = flux[targets][:, None]
    with np.errstate(invalid="ignore"):
        misfit[:, targets] = np.where(enough, f * nanmedian(stack, axis=0), 0.0).T
        # a median of n: pi / (2 n) times the variance of one term (their median here)
        spread = nanmedian(np.where(alike, rel_var.T[nb.T], np.nan), axis=0)
        noise[:, targets] = np.where(enough, 0.5 * np.pi / np.maximum(n, 1) * f**2 * spread, 0.0).T
    return np.nan_to_num(misfit), np.nan_to_num(noise)


def _worst_outliers(
    data, model, variance, *, leverage, usable, reject_sigma, fraction=_REJECT_FRACTION
) -> np.ndarray:
    """The most deviant usable pixel of each column, if beyond ``reject_sigma``.

    Each pixel is judged against the model fitted *without* it (the deleted
    residual ``r / (1 - h)`` of the column's weighted fit, with variance
    ``V / (1 - h)``): a cosmic ray on the trace core drags the full model up
    and makes the good wings look deviant, but not the model that leaves it
    out. ``fraction`` of that model is added to the noise
    (`REJECT_PROFILE_ERRORS` template errors, `.profile.PROFILE_ERROR`; one
    where the caller has subtracted the misfit measured by `misfit_estimate`),
    so that at high S/N a profile right to a few per cent does not reject the
    good pixels of the core. When the
    residuals scatter more than the variance says (robust rms > 1, e.g. a VAR
    array too small), deviations are judged against that scatter, so good
    pixels are not rejected en masse.
    """
    keep = np.clip(1.0 - leverage, 1e-3, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        deleted = (data - model) / keep
        others = data - deleted  # the model at this pixel from the other pixels
        scale = np.sqrt(variance / keep + (fraction * others) ** 2)
        z = np.abs(deleted) / scale
    z = np.where(usable & np.isfinite(z), z, 0.0)
    finite_z = z[z > 0]  # usable ones only
    # the median is needed only when it can exceed 1 / 1.4826: when at least half
    # the values lie above a bound just below that (the usual case skips the sort)
    if finite_z.size >= 20 and 2 * np.count_nonzero(finite_z > _SCATTER_BOUND) >= finite_z.size:
        z = z / max(1.4826 * median(finite_z), 1.0)
    out = np.zeros(data.shape, bool)
    # the worst pixel of the columns whose largest z is beyond the threshold
    # (a maximum over the rows is faster than their argmax)
    cols = np.nonzero(np.max(z, axis=0) > reject_sigma)[0]
    out[np.argmax(z[:, cols], axis=0), cols] = True
    return out
