"""Spatial profiles: the kernel evaluated along the trace, normalized per column."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .evaluate import evaluate_template
from .kernel import KernelTemplate

__all__ = ["Profile", "normalize_profile", "kernel_profile"]


@dataclass(frozen=True)
class Profile:
    """A spatial profile for every column.

    Attributes
    ----------
    weights : ndarray, shape (n_cross, n_disp)
        Non-negative, unit sum over each column (all-zero columns stay 0).
    centers : ndarray, shape (n_disp,)
        Trace centre per column (cross-dispersion pixels).
    fwhm : ndarray, shape (n_disp,)
        Profile FWHM per column (pixels); NaN for non-parametric profiles.
    """

    weights: np.ndarray
    centers: np.ndarray
    fwhm: np.ndarray


def normalize_profile(raw: np.ndarray) -> np.ndarray:
    """Clip at zero and scale every column to unit sum (Horne 1986, eq. 7).

    Parameters
    ----------
    raw : ndarray, shape (n_cross, n_disp)
        Unnormalized profile; non-finite values count as 0.

    Returns
    -------
    ndarray, shape (n_cross, n_disp)
        Normalized profile; columns whose clipped sum is 0 are all 0.
    """
    clipped = np.clip(np.where(np.isfinite(raw), raw, 0.0), 0.0, None)
    peak = np.max(clipped, axis=0, initial=0.0)
    clipped = clipped / np.where(peak > 0, peak, 1.0)  # the sum cannot overflow
    total = clipped.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), 0.0)


def kernel_profile(
    template: KernelTemplate,
    n_cross: int,
    centers: np.ndarray,
    fwhm: np.ndarray,
    extra: Mapping[str, np.ndarray] | None = None,
) -> Profile:
    """Profile from a PSF template at a centre and FWHM per column.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape (fitted).
    n_cross : int
        Number of cross-dispersion pixels.
    centers, fwhm : ndarray, shape (n_disp,)
        Centre and FWHM per column, pixels.
    extra : mapping of str to ndarray, shape (n_disp,), optional
        Further template parameters per column (e.g. the wavelength of a
        tabulated PSF, `kernel.wavelength_params`).

    Returns
    -------
    Profile
    """
    centers = np.asarray(centers, float)
    fwhm = np.asarray(fwhm, float)
    extra = {k: np.asarray(v, float) for k, v in (extra or {}).items()}
    y = np.arange(n_cross, dtype=float)
    if all(_constant(v) for v in (centers, fwhm, *extra.values())):
        # the same kernel in every column (no fitted variation): evaluate it once
        one = {k: v[:1] for k, v in extra.items()}
        column = normalize_profile(evaluate_template(template, y, centers[:1], fwhm[:1], one))
        weights = np.repeat(column, centers.size, axis=1)
    else:
        weights = normalize_profile(evaluate_template(template, y, centers, fwhm, extra))
    return Profile(weights=weights, centers=centers, fwhm=fwhm)


def _constant(values: np.ndarray) -> bool:
    return values.size > 0 and bool(np.all(values == values[0]))
