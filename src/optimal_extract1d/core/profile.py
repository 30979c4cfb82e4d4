"""Spatial profiles: a weight per pixel, normalized per column (Horne 1986, eq. 7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Profile", "normalize_profile", "PROFILE_ERROR"]

#: Fractional error assumed for a template profile (a kernel or PSF model is right
#: to a few per cent): the source search allows for the residuals it leaves, and
#: the outlier rejection tolerates a multiple of it (`.iteration.REJECT_PROFILE_ERRORS`).
PROFILE_ERROR = 0.05


@dataclass(frozen=True)
class Profile:
    """A spatial profile for every column.

    Attributes
    ----------
    weights : ndarray, shape (n_cross, n_disp)
        Non-negative, unit sum over each column (all-zero columns stay 0).
    centers : ndarray, shape (n_disp,)
        Trace center per column (cross-dispersion pixels).
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
