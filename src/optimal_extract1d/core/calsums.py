"""Horne sums on native pixels of several exposures, per output wavelength bin.

The cal path (issue 13) never resamples: every pixel of every exposure keeps
its own wavelength and profile value, and the flux of an output wavelength
bin is the weighted least-squares amplitude of the profile over all the
pixels of all exposures whose wavelength falls in the bin. The noise of the
native pixels is uncorrelated, so the propagated variance needs no
correction for correlations.

Arrays are stacked as ``(n_exp, n_pix)``: element ``[i, p]`` is pixel ``p``
of exposure ``i``. Exposures on the same detector pixels (a nod sequence)
share ``p``; otherwise the caller concatenates them as one row.

Three background treatments (``mode``):

* ``"none"``: the data hold the source only (master background subtracted),
  ``model = F P``;
* ``"subtracted"``: each exposure had the mean of the others subtracted
  (calwebb_spec2's nod subtraction), ``model = F (P_i - mean_{j != i} P_j)``,
  the negative nod copies included;
* ``"nod"``: raw exposures whose sky is the same on a detector pixel in all
  of them, ``model = B_p + F P_ip``. The sky ``B_p`` of every pixel is
  profiled out analytically (the weighted mean over the exposures), which
  is nod subtraction done inside the fit, with uncorrelated errors. With
  ``exposure_levels`` a sky level per exposure and bin, ``c_ib``, is
  profiled out too (`ExposureSky`): real exposures' skies differ.

The pipeline's VAR_POISSON and VAR_FLAT follow the measured signal; the cal
path replaces them by their prediction from the fit (`remodel_variances`)
and measures the error factor from the spectrum itself
(`spectrum_noise_factor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from ..results import DQ_DO_NOT_USE, DQ_FLUX_ESTIMATED, DQ_OUTLIER

__all__ = [
    "MODES",
    "BinnedSums",
    "project",
    "ExposureSky",
    "exposure_sky",
    "bin_flux",
    "combine",
    "noise_factor",
    "noise_factor_by_bin",
    "PROFILE_TOLERANCE",
    "PROFILE_FLOOR",
    "remodel_variances",
    "spectrum_noise_factor",
]

#: Background treatments (see the module docstring).
MODES = ("none", "subtracted", "nod")
#: Fraction of the model allowed as profile error when judging outliers.
PROFILE_TOLERANCE = 0.1
#: Pixels whose profile value is below this count neither in NPIXELS nor in the DQ.
PROFILE_FLOOR = 1e-3
#: A bin whose unusable pixels carried more than this share of the profile is FLUX_ESTIMATED.
MISSING_LIMIT = 0.2


def project(
    profile: np.ndarray,
    data: np.ndarray,
    weight: np.ndarray,
    mode: str,
    *,
    bins: np.ndarray | None = None,
    n_bins: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The design column and data of the flux fit, background handled.

    Parameters
    ----------
    profile, data, weight : ndarray, shape (n_exp, n_pix)
        Profile value, data and inverse variance (0 = unused) of every pixel.
    mode : str
        ``"none"``, ``"subtracted"`` or ``"nod"``.
    bins : ndarray of int, shape (n_exp, n_pix), optional
        Output bin of every pixel (-1 = none). Given in ``"nod"`` mode, the
        sky level of every exposure in every bin is a free parameter too
        (`exposure_sky`), and is profiled out as well.
    n_bins : int
        Number of output bins (with ``bins``).

    Returns
    -------
    q, y : ndarray, shape (n_exp, n_pix)
        ``y ~ F q`` with weights ``weight`` is the fit of the flux.
    """
    if mode == "nod":
        total = weight.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            pbar = np.where(total > 0, (weight * profile).sum(axis=0) / total, 0.0)
            dbar = np.where(total > 0, (weight * np.nan_to_num(data)).sum(axis=0) / total, 0.0)
        q, y = profile - pbar, np.nan_to_num(data) - dbar
        if bins is not None and profile.shape[0] > 1:
            sky = exposure_sky(weight, bins, n_bins)
            q, y = sky.remove(q), sky.remove(y)
        return q, y
    if mode == "subtracted" and profile.shape[0] > 1:
        others = (profile.sum(axis=0) - profile) / (profile.shape[0] - 1)
        return profile - others, np.nan_to_num(data)
    return profile, np.nan_to_num(data)


@dataclass(frozen=True)
class ExposureSky:
    """The per-exposure sky levels of every bin, as nuisance parameters of the nod fit.

    Real nod exposures do not share their sky exactly: on the CEERS 933
    cut-outs the difference of two exposures, far from the source, has a
    mean of 0.3-1.5 sigma that is the same on every row of a column and
    changes slowly with wavelength (a sky that varies in time). A sky per
    pixel (the nod fit) cannot follow it; a level ``c_ib`` per exposure
    ``i`` and bin ``b`` (sum 0 over the exposures, the mean being the sky
    per pixel's) can. For a source whose nod copies fall in the slit the
    profile is nearly orthogonal to these levels, so the flux hardly
    changes; the residuals, and the error factor measured from them, lose
    the sky's variation and keep the noise.

    Attributes
    ----------
    design : ndarray, shape (n_exp - 1, n_exp, n_pix)
        The level columns after the sky per pixel is profiled out.
    weight, bins : ndarray, shape (n_exp, n_pix)
    inverse : ndarray, shape (n_bins, n_exp - 1, n_exp - 1)
        Inverse normal matrix of the levels of every bin.
    """

    design: np.ndarray
    weight: np.ndarray
    bins: np.ndarray
    inverse: np.ndarray

    def _sums(self, values: np.ndarray) -> np.ndarray:
        ok = self.bins >= 0
        n_bins = self.inverse.shape[0]
        rows = [
            np.bincount(self.bins[ok], (self.weight * g * values)[ok], minlength=n_bins)
            for g in self.design
        ]
        return np.stack(rows, axis=-1)  # (n_bins, k)

    def remove(self, values: np.ndarray) -> np.ndarray:
        """``values`` minus their weighted least-squares fit by the levels, bin by bin."""
        coef = np.einsum("bkl,bl->bk", self.inverse, self._sums(values))
        at = coef[np.clip(self.bins, 0, None)]  # (n_exp, n_pix, k)
        fit = np.einsum("kep,epk->ep", self.design, at)
        return np.where(self.bins >= 0, values - fit, values)

    def leverage(self) -> np.ndarray:
        """Leverage of the levels on every pixel, ``w g^T M^-1 g``."""
        inv = self.inverse[np.clip(self.bins, 0, None)]  # (n_exp, n_pix, k, k)
        g = np.moveaxis(self.design, 0, -1)  # (n_exp, n_pix, k)
        lev = self.weight * np.einsum("epk,epkl,epl->ep", g, inv, g)
        return np.where(self.bins >= 0, lev, 0.0)


def _small_inverse(normal: np.ndarray) -> np.ndarray:
    """Inverse of every symmetric ``(k, k)`` matrix (0 if singular); closed form for k <= 2."""
    k = normal.shape[-1]
    if k == 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(normal > 0, 1.0 / np.where(normal > 0, normal, 1.0), 0.0)
    if k == 2:
        a, b, d = normal[:, 0, 0], normal[:, 0, 1], normal[:, 1, 1]
        det = a * d - b * b
        good = det > 1e-12 * np.maximum(a * d, 1e-300)
        inv_det = np.where(good, 1.0 / np.where(good, det, 1.0), 0.0)
        out = np.empty_like(normal)
        out[:, 0, 0], out[:, 1, 1] = d * inv_det, a * inv_det
        out[:, 0, 1] = out[:, 1, 0] = -b * inv_det
        return out
    return np.linalg.pinv(normal, hermitian=True)


def exposure_sky(weight: np.ndarray, bins: np.ndarray, n_bins: int) -> ExposureSky:
    """The per-exposure sky levels of every bin (`ExposureSky`), for weights ``weight``."""
    n_exp = weight.shape[0]
    total = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, weight / total, 0.0)
    # level k (k < n_exp - 1; the last is minus their sum) on exposure i, sky per pixel profiled
    design = np.stack(
        [(np.arange(n_exp) == k)[:, None] - frac[k][None, :] for k in range(n_exp - 1)]
    )
    ok = (bins >= 0) & (weight > 0)
    k = n_exp - 1
    normal = np.zeros((n_bins, k, k))
    for a in range(k):
        for b in range(a, k):
            v = np.bincount(bins[ok], (weight * design[a] * design[b])[ok], minlength=n_bins)
            normal[:, a, b] = normal[:, b, a] = v
    inverse = _small_inverse(normal)
    return ExposureSky(design, np.where(ok, weight, 0.0), np.where(ok, bins, -1), inverse)


def bin_flux(
    q: np.ndarray, y: np.ndarray, weight: np.ndarray, bins: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares flux of every bin and its information ``sum w q^2``.

    ``bins`` (shape (n_exp, n_pix), -1 = outside every bin) gives the bin of each pixel.
    """
    ok = (bins >= 0) & (weight > 0)
    b = bins[ok]
    num = np.bincount(b, (weight * q * y)[ok], minlength=n_bins)
    den = np.bincount(b, (weight * q * q)[ok], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(den > 0, num / den, np.nan)
    return flux, den


@dataclass(frozen=True)
class BinnedSums:
    """The combined spectrum of one source on the output grid, in data units.

    Attributes
    ----------
    flux : ndarray, shape (n_bins,)
        Flux of every bin (NaN where no pixel carries information).
    var_poisson, var_rnoise, var_flat : ndarray, shape (n_bins,)
        Its propagated variance components (no error factor applied).
    background, bkg_var_poisson, bkg_var_rnoise, bkg_var_flat : ndarray, shape (n_bins,)
        Profile-weighted mean sky per pixel under the source (``"nod"`` mode;
        0 otherwise) and its variance components.
    npixels : ndarray, shape (n_bins,)
        Pixels of all exposures used, where the profile exceeds `PROFILE_FLOOR`.
    dq : ndarray of uint32, shape (n_bins,)
        DO_NOT_USE, OUTLIER, FLUX_ESTIMATED.
    rejected : ndarray of bool, shape (n_exp, n_pix)
        Pixels rejected as outliers.
    z : ndarray, shape (n_exp, n_pix)
        Normalized residuals of the final model (propagated variance only; NaN = unused).
    model : ndarray, shape (n_exp, n_pix)
        Source model ``F P`` of every pixel.
    n_iter : int
        Rejection passes made.
    """

    flux: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    background: np.ndarray
    bkg_var_poisson: np.ndarray
    bkg_var_rnoise: np.ndarray
    bkg_var_flat: np.ndarray
    npixels: np.ndarray
    dq: np.ndarray
    rejected: np.ndarray
    z: np.ndarray
    model: np.ndarray
    n_iter: int


def _residual_variance(variance: np.ndarray, weight: np.ndarray, mode: str) -> np.ndarray:
    """Variance of ``y - F q`` per pixel, ignoring the (small) uncertainty of F."""
    if mode == "nod":
        total = weight.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return variance - np.where(total > 0, 1.0 / total, np.inf)
    return variance


def combine(
    profile: np.ndarray,
    data: np.ndarray,
    variances: tuple[np.ndarray, np.ndarray, np.ndarray],
    usable: np.ndarray,
    bins: np.ndarray,
    n_bins: int,
    *,
    mode: str,
    reject_sigma: float,
    max_iter: int,
    exposure_levels: bool = False,
) -> BinnedSums:
    """Flux of every bin from all pixels of all exposures, with rejection across exposures.

    Each pass fits every bin, then rejects in every bin the one pixel (of
    one exposure) deviating most from the joint model, if beyond
    ``reject_sigma`` (allowing `PROFILE_TOLERANCE` of the model as profile
    error). In ``"nod"`` mode a cosmic ray in one exposure also shifts the
    pixel's sky estimate; the exposure it hit deviates most and goes first.

    Parameters
    ----------
    profile, data : ndarray, shape (n_exp, n_pix)
        Unit-flux profile and data of every pixel.
    variances : tuple of 3 ndarray, shape (n_exp, n_pix)
        VAR_POISSON, VAR_RNOISE, VAR_FLAT.
    usable : ndarray of bool, shape (n_exp, n_pix)
        Pixels that may be used.
    bins : ndarray of int, shape (n_exp, n_pix)
        Output bin of every pixel; -1 = none.
    n_bins : int
        Number of output bins.
    mode : str
        Background treatment (`MODES`).
    reject_sigma : float
        Rejection threshold; 0 = no rejection.
    max_iter : int
        Most rejection passes.
    exposure_levels : bool
        ``"nod"`` mode: also fit a sky level per exposure and bin (`ExposureSky`).

    Returns
    -------
    BinnedSums
    """
    vp, vr, vf = variances
    variance = vp + vr + vf
    usable = usable & (bins >= 0) & np.isfinite(data) & (variance > 0) & np.isfinite(profile)
    rejected = np.zeros_like(usable)
    n_iter = 0
    while True:
        use = usable & ~rejected
        weight = np.where(use, 1.0 / np.where(use, variance, 1.0), 0.0)
        q, y = project(profile, data, weight, mode)
        rvar = _residual_variance(variance, weight, mode)
        if exposure_levels and mode == "nod" and profile.shape[0] > 1:
            sky = exposure_sky(weight, bins, n_bins)
            q, y = sky.remove(q), sky.remove(y)
            with np.errstate(invalid="ignore", divide="ignore"):
                rvar = rvar - np.where(weight > 0, sky.leverage() / weight, 0.0)
        flux, den = bin_flux(q, y, weight, bins, n_bins)
        fb = np.where(bins >= 0, np.nan_to_num(flux)[np.clip(bins, 0, None)], 0.0)
        resid = y - fb * q
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(use & (rvar > 0), resid / np.sqrt(np.abs(rvar)), np.nan)
            tol = np.sqrt(np.abs(rvar) + (PROFILE_TOLERANCE * fb * profile) ** 2)
            zt = np.where(use & (rvar > 0), np.abs(resid) / tol, 0.0)
        if n_iter >= max_iter or reject_sigma <= 0:
            break
        new = _worst_per_bin(zt, bins, reject_sigma)
        if not new.any():
            break
        rejected |= new
        n_iter += 1
    a = np.where(bins >= 0, weight * q / np.where(den > 0, den, np.inf)[np.clip(bins, 0, None)], 0)
    ok = bins >= 0
    b = bins[ok]

    def propagate(v: np.ndarray) -> np.ndarray:
        out = np.bincount(b, (a * a * np.nan_to_num(v))[ok], minlength=n_bins)
        return np.where(den > 0, out, np.nan)

    bkg, bkg_vars = _background(profile, data, weight, fb, bins, n_bins, mode, variances)
    dq = _dq(profile, usable, rejected, bins, n_bins, flux)
    inside = ok & use & (profile > PROFILE_FLOOR)
    npix = np.bincount(bins[inside], minlength=n_bins).astype(float)
    return BinnedSums(
        flux=flux,
        var_poisson=propagate(vp),
        var_rnoise=propagate(vr),
        var_flat=propagate(vf),
        background=bkg,
        bkg_var_poisson=bkg_vars[0],
        bkg_var_rnoise=bkg_vars[1],
        bkg_var_flat=bkg_vars[2],
        npixels=npix,
        dq=dq,
        rejected=rejected,
        z=z,
        model=fb * profile,
        n_iter=n_iter,
    )


def _worst_per_bin(zt: np.ndarray, bins: np.ndarray, threshold: float) -> np.ndarray:
    """The one pixel per bin (any exposure) with the largest ``zt``, if above ``threshold``."""
    flat_z, flat_b = zt.ravel(), bins.ravel()
    cand = np.flatnonzero((flat_z > threshold) & (flat_b >= 0))
    out = np.zeros(zt.size, bool)
    if cand.size:
        order = cand[np.lexsort((-flat_z[cand], flat_b[cand]))]
        first = np.ones(order.size, bool)
        first[1:] = flat_b[order][1:] != flat_b[order][:-1]
        out[order[first]] = True
    return out.reshape(zt.shape)


def _background(profile, data, weight, fb, bins, n_bins, mode, variances):
    """Profile-weighted sky per pixel under the source (nod mode) and its variance."""
    zeros = np.zeros(n_bins)
    if mode != "nod":
        return zeros, (zeros, zeros.copy(), zeros.copy())
    total = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, weight / total, 0.0)
    sky = (frac * (np.nan_to_num(data) - fb * profile)).sum(axis=0)  # B_p, shape (n_pix,)
    c = np.clip(profile, 0, None) * (weight > 0)
    ok = bins >= 0
    norm = np.bincount(bins[ok], c[ok], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.where(ok, c / np.where(norm > 0, norm, np.inf)[np.clip(bins, 0, None)], 0.0)
        bkg = np.bincount(bins[ok], (coef * sky)[ok], minlength=n_bins)
        cp = coef.sum(axis=0)  # weight of pixel p in its bin's mean
        pix_bin = np.where(ok, bins, n_bins).min(axis=0)
        out = []
        for v in variances:
            var_sky = (frac * frac * np.nan_to_num(v)).sum(axis=0)
            keep = pix_bin < n_bins
            out.append(np.bincount(pix_bin[keep], (cp * cp * var_sky)[keep], minlength=n_bins))
    return np.where(norm > 0, bkg, np.nan), tuple(out)


def _dq(profile, usable, rejected, bins, n_bins, flux) -> np.ndarray:
    ok = bins >= 0
    p = np.clip(np.nan_to_num(profile), 0, None)
    total = np.bincount(bins[ok], p[ok], minlength=n_bins)
    good = ok & usable & ~rejected
    kept = np.bincount(bins[good], p[good], minlength=n_bins)
    dq = np.zeros(n_bins, np.uint32)
    dq[~np.isfinite(flux)] |= DQ_DO_NOT_USE
    with np.errstate(invalid="ignore", divide="ignore"):
        missing = np.where(total > 0, 1.0 - kept / total, 0.0)
    dq[missing > MISSING_LIMIT] |= DQ_FLUX_ESTIMATED
    hit = ok & rejected & (p > PROFILE_FLOOR)
    dq[np.unique(bins[hit])] |= DQ_OUTLIER
    return dq


def noise_factor(
    z: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    *,
    limit: float = 0.2,
    min_pixels: int = 100,
) -> tuple[float, int]:
    """Scatter of the normalized residuals where the source model is negligible.

    Only pixels where the model of every exposure stays below ``limit`` times
    the pixel's noise are used, so the factor measures the noise and not a
    misfit of the profile. Robust: 1.4826 x the median absolute residual.

    Parameters
    ----------
    z : ndarray, shape (n_exp, n_pix)
        Normalized residuals (NaN = unused).
    model : ndarray, shape (n_exp, n_pix)
        Source model of every pixel.
    variance : ndarray, shape (n_exp, n_pix)
        Propagated variance of every pixel.
    limit : float
        Largest model, in units of the pixel noise, of a pixel used.
    min_pixels : int
        Fewer usable pixels give a factor of 1.

    Returns
    -------
    factor : float
        Residual scatter over the propagated noise (1.0 when not measurable).
    n : int
        Pixels used.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        faint = np.abs(model) < limit * np.sqrt(np.abs(variance))
    empty = np.all(faint | ~np.isfinite(z), axis=0, keepdims=True) & np.isfinite(z)
    values = z[empty]
    if values.size < min_pixels:
        return 1.0, int(values.size)
    return float(1.4826 * np.median(np.abs(values))), int(values.size)


#: Normalized second differences beyond this many robust sigma are left out (lines, edges).
_CLIP = 3.0
#: Standard deviation of a unit normal truncated at +-_CLIP.
_CLIPPED_STD = 0.98664


def spectrum_noise_factor(
    flux: np.ndarray, error: np.ndarray, *, min_bins: int = 30
) -> tuple[float, int]:
    """Scatter of the extracted spectrum about a straight line through its neighbours.

    ``d_b = F_b - (F_{b-1} + F_{b+1}) / 2`` over its propagated error
    ``sqrt(s_b^2 + (s_{b-1}^2 + s_{b+1}^2) / 4)``: the bins of the cal path
    share no pixel, so their noise is independent, while a smooth spectrum
    and any smooth error of the profile (a flux scale varying with
    wavelength) cancel. This is the noise of the flux itself, the quantity
    FLUX_ERROR states. Robust: differences beyond 3 robust sigma (lines,
    edges) are left out and the standard deviation of the others is
    corrected for the truncation.

    Parameters
    ----------
    flux, error : ndarray, shape (n_bins,)
        Flux and propagated error of every bin (NaN = no flux).
    min_bins : int
        Fewer usable differences give a factor of 1.

    Returns
    -------
    factor : float
        Scatter of the differences over their propagated error (1.0 when not measurable).
    n : int
        Differences used.
    """
    ok = np.isfinite(flux) & np.isfinite(error) & (error > 0)
    f, e = np.asarray(flux)[ok], np.asarray(error)[ok]
    if f.size < min_bins + 2:
        return 1.0, max(f.size - 2, 0)
    d = f[1:-1] - 0.5 * (f[:-2] + f[2:])
    z = d / np.sqrt(e[1:-1] ** 2 + 0.25 * (e[:-2] ** 2 + e[2:] ** 2))
    robust = 1.4826 * np.median(np.abs(z - np.median(z)))
    kept = z[np.abs(z - np.median(z)) <= _CLIP * robust]
    if kept.size < min_bins or not robust > 0:
        return 1.0, int(kept.size)
    return float(np.std(kept) / _CLIPPED_STD), int(kept.size)


def noise_factor_by_bin(
    z: np.ndarray,
    model: np.ndarray,
    variance: np.ndarray,
    bins: np.ndarray,
    n_bins: int,
    *,
    limit: float = 0.2,
    min_pixels: int = 300,
    max_chunks: int = 8,
) -> tuple[np.ndarray, list[dict]]:
    """`noise_factor` in runs of consecutive output bins, interpolated to every bin.

    Real cal frames do not scatter by the same factor over the VAR arrays at
    every wavelength (CEERS 933: 1.7 at 1.2-2 um, 1.2 beyond 4 um). The
    bins are cut into at most ``max_chunks`` runs holding at least
    ``min_pixels`` empty pixels each (pixels where the source model of every
    exposure is below ``limit`` sigma); each run's factor is measured as in
    `noise_factor` and the factors are interpolated linearly between the
    runs' median bins (constant beyond the first and last).

    Parameters
    ----------
    z, model, variance : ndarray, shape (n_exp, n_pix)
        As for `noise_factor`.
    bins : ndarray of int, shape (n_exp, n_pix)
        Output bin of every pixel (-1 = none).
    n_bins : int
    limit : float
    min_pixels : int
    max_chunks : int

    Returns
    -------
    factor : ndarray, shape (n_bins,)
        Factor of every bin (1.0 everywhere when fewer than ``min_pixels`` pixels are empty).
    chunks : list of dict
        ``first_bin``, ``last_bin``, ``factor``, ``n_pixels`` of every run.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        faint = np.abs(model) < limit * np.sqrt(np.abs(variance))
    empty = np.all(faint | ~np.isfinite(z), axis=0, keepdims=True) & np.isfinite(z) & (bins >= 0)
    b, values = bins[empty], np.abs(z[empty])
    counts = np.bincount(b, minlength=n_bins)
    total = int(counts.sum())
    if total < min_pixels:
        return np.ones(n_bins), []
    n_chunks = int(min(max_chunks, max(1, total // min_pixels)))
    edges = np.searchsorted(np.cumsum(counts), np.linspace(0, total, n_chunks + 1)[1:-1])
    bounds = np.concatenate([[0], edges + 1, [n_bins]])
    centers, factors, chunks = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        sel = (b >= lo) & (b < hi)
        if sel.sum() < min_pixels // 2:
            continue
        factor = float(1.4826 * np.median(values[sel]))
        centers.append(float(np.median(b[sel])))
        factors.append(factor)
        chunks.append(
            {
                "first_bin": int(lo),
                "last_bin": int(hi - 1),
                "factor": factor,
                "n_pixels": int(sel.sum()),
            }
        )
    if not factors:
        return np.ones(n_bins), []
    return np.interp(np.arange(n_bins), centers, factors), chunks


#: Half-width (output bins) of the window over which the variance model is fitted.
VARIANCE_WINDOW = 7
#: Pixels whose variance exceeds this many times their bin's median do not enter its model.
OUTLIER_VARIANCE = 30.0


def remodel_variances(
    variances: tuple[np.ndarray, np.ndarray, np.ndarray],
    source: np.ndarray,
    usable: np.ndarray,
    bins: np.ndarray,
    n_bins: int,
    *,
    window: int = VARIANCE_WINDOW,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VAR_POISSON and VAR_FLAT predicted from the source model (Horne 1986, step 6).

    The pipeline computes both from the measured signal of every pixel:
    VAR_POISSON from the count rate (0 where it came out negative: 11 % of
    the CEERS 933 pixels), VAR_FLAT as ``(data x relative flat error)^2``.
    A pixel that fluctuated up then gets a smaller weight and the optimal
    sum is biased low, most where VAR_FLAT dominates: on the CEERS 933
    cut-outs the flat's relative error is 8.8 % near 2.6 um (0.2-0.5 %
    elsewhere), and [OIII]+Hbeta came out 15 % low. As `.core.variance`
    does for the s2d path, the model replaces the data:
    ``VAR_POISSON = s + k x`` and ``VAR_FLAT = t + u x + v x^2`` with
    ``x = max(F P, 0)`` the source model, the constant terms holding the
    sky's share; the coefficients are fitted by least squares to the
    pipeline's arrays over the usable pixels of ``2 window + 1``
    consecutive output bins (the conversion from counts and the flat's
    error change with wavelength). The sky per pixel is left out of ``x``
    so that raw and nod-subtracted exposures get the same weights.
    VAR_RNOISE does not depend on the signal and is kept.

    Parameters
    ----------
    variances : tuple of 3 ndarray, shape (n_exp, n_pix)
        VAR_POISSON, VAR_RNOISE, VAR_FLAT of the input.
    source : ndarray, shape (n_exp, n_pix)
        Source model ``F P`` of every pixel (the ``model`` of `BinnedSums`).
    usable : ndarray of bool, shape (n_exp, n_pix)
    bins : ndarray of int, shape (n_exp, n_pix)
        Output bin of every pixel (-1 = none).
    n_bins : int
    window : int
        Half-width of the fitting window, in output bins.

    Returns
    -------
    tuple of 3 ndarray
        The modelled VAR_POISSON, the input VAR_RNOISE, the modelled VAR_FLAT;
        the input's values where a pixel has no bin.
    """
    vp, vr, vf = variances
    x = np.clip(np.nan_to_num(source), 0.0, None)
    ok = usable & (bins >= 0) & np.isfinite(vp) & np.isfinite(vf)
    at = np.clip(bins, 0, None)
    out = []
    for v, degree in ((vp, 1), (vf, 2)):
        v0 = np.nan_to_num(v)
        # pixels far above their bin's typical variance (hot pixels) would steer the fit
        typical = _bin_median(v0, ok, bins, n_bins)
        fit = ok & (v0 <= OUTLIER_VARIANCE * typical[at])
        pred = _windowed_polynomial(v0, x, fit, bins, n_bins, window, degree)
        out.append(np.where((bins >= 0) & np.isfinite(v), pred, v))
    return out[0], vr, out[1]


def _bin_median(values, ok, bins, n_bins):
    """Median of ``values`` over the ``ok`` pixels of every bin (inf for an empty bin)."""
    b, v = bins[ok], values[ok]
    order = np.lexsort((v, b))
    b, v = b[order], v[order]
    start = np.searchsorted(b, np.arange(n_bins), side="left")
    stop = np.searchsorted(b, np.arange(n_bins), side="right")
    out = np.full(n_bins, np.inf)
    full = stop > start
    lo, hi = start[full], stop[full] - 1
    out[full] = 0.5 * (v[lo + (hi - lo) // 2] + v[lo + (hi - lo + 1) // 2])
    return out


def _windowed_polynomial(y, x, ok, bins, n_bins, window, degree):
    """Least-squares polynomial ``y(x)`` over every window of bins, evaluated at every pixel.

    A fit predicting a negative value anywhere in its window's range of
    ``x``, or ill-conditioned, is replaced by the fit of one degree less
    (degree 0: the window's mean).
    """
    b = bins[ok]
    kernel = np.ones(2 * window + 1)
    scale = max(float(np.max(x[ok], initial=0.0)), 1e-300)  # x scaled for conditioning
    xs = x[ok] / scale
    moments = [
        np.convolve(np.bincount(b, xs**k, minlength=n_bins), kernel, mode="same")
        for k in range(2 * degree + 1)
    ]
    rhs = [
        np.convolve(np.bincount(b, xs**k * y[ok], minlength=n_bins), kernel, mode="same")
        for k in range(degree + 1)
    ]
    top = _window_max(_bin_max(xs, b, n_bins), window)
    xb = np.where(bins >= 0, x / scale, 0.0)[..., None] ** np.arange(degree + 1)
    pred = None
    for deg in range(degree, -1, -1):
        n = deg + 1
        normal = np.stack([np.stack(moments[i : i + n], -1) for i in range(n)], -2)
        vec = np.stack(rhs[:n], -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            det_ok = np.linalg.cond(normal) < 1e10 if n > 1 else moments[0] > 0
        coef = np.zeros((n_bins, n))
        good = np.flatnonzero(det_ok & (moments[0] >= n + 1))
        if good.size:
            coef[good] = np.linalg.solve(normal[good], vec[good][..., None])[..., 0]
        # the polynomial must stay positive over [0, top] (checked on a few points)
        grid = np.linspace(0.0, 1.0, 9)[None, :] * top[:, None]
        values = np.einsum("bk,bgk->bg", coef, grid[..., None] ** np.arange(n))
        valid = np.zeros(n_bins, bool)
        valid[good] = True
        valid &= np.all(values >= 0, axis=1)
        at = np.clip(bins, 0, None)
        this = np.einsum("epk,epk->ep", coef[at], xb[..., :n])
        if pred is None:
            pred, done = np.where(valid[at], this, np.nan), valid
        else:
            pred = np.where(~done[at] & valid[at], this, pred)
            done = done | valid
    return np.where(np.isfinite(pred), pred, y)


def _bin_max(values, b, n_bins):
    out = np.zeros(n_bins)
    np.maximum.at(out, b, values)
    return out


def _window_max(values, window):
    return maximum_filter1d(values, 2 * window + 1, mode="nearest")
