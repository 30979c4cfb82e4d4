"""Choose the kernel slice, and coadd columns into cross-dispersion profiles.

`coadd_bins` is the one coadd: the inverse-variance weighted mean profile of
every bin of columns (`.scene.trace`); `coadd_columns` is the kernel slice's,
one bin of ``width`` columns around a center.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d, uniform_filter1d

__all__ = ["brightest_column", "coadd_bins", "coadd_columns", "MATCHED_FWHM"]

#: FWHM (pixels) of the matched filter ranking the slice windows.
MATCHED_FWHM = 2.0


def brightest_column(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, width: int
) -> int:
    """Column at the center of the ``width``-column window with the most signal.

    The signal of a window is the matched-filter S/N of its inverse-variance
    weighted mean profile (a Gaussian of FWHM `MATCHED_FWHM` pixels), at the
    best row. A matched filter favours noise shaped like the source itself,
    which changes the fitted amplitude but not the width, so choosing the
    window does not bias the kernel the slice is then fitted with (a peak
    pixel would favour peakier noise, a wide box flatter noise). Looking at
    the best row, not the column total, keeps negative nod copies of the
    trace, which cancel the positive trace in a plain column sum, from
    hiding the source.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and its variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    width : int
        Number of columns in the window.

    Returns
    -------
    int
        Dispersion index of the window center (the middle column when no
        pixel is usable).
    """
    n_disp = data.shape[1]
    width = int(min(max(width, 1), n_disp))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(usable, 1.0 / variance, 0.0)
    wd = np.where(usable, data, 0.0) * w
    sum_w = uniform_filter1d(w, width, axis=1, mode="constant")
    sum_wd = uniform_filter1d(wd, width, axis=1, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(sum_w > 0, sum_wd / sum_w, 0.0)
        var = np.where(sum_w > 0, 1.0 / (sum_w * width), 0.0)
    sigma = MATCHED_FWHM / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    k = np.arange(-3, 4, dtype=float)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    signal = correlate1d(mean, g, axis=0, mode="constant")
    noise2 = correlate1d(var, g**2, axis=0, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(noise2 > 0, signal / np.sqrt(noise2), -np.inf)
    peak = snr.max(axis=0)
    half = width // 2
    lo, hi = half, n_disp - (width - 1 - half)
    candidates = peak[lo:hi] if hi > lo else peak
    if not np.any(np.isfinite(candidates)):
        return n_disp // 2
    return int(np.argmax(candidates) + (lo if hi > lo else 0))


def coadd_columns(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, column: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean over ``width`` columns centered on ``column``.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and its variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    column : int
        Center column of the slice.
    width : int
        Number of columns (clipped at the array edges).

    Returns
    -------
    values : ndarray, shape (n_cross,)
        Mean profile, NaN for rows with no usable pixel.
    sigma : ndarray, shape (n_cross,)
        Standard error of ``values``.
    """
    n_disp = data.shape[1]
    width = int(min(max(width, 1), n_disp))
    start = int(np.clip(column - width // 2, 0, n_disp - width))
    cols = slice(start, start + width)
    values, sigma = coadd_bins(
        data[:, cols], variance[:, cols], usable[:, cols], edges=np.array([0, width])
    )
    return values[:, 0], sigma[:, 0]


def coadd_bins(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean profile of every bin of columns.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and its variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    edges : ndarray of int, shape (n_bins + 1,)
        Increasing column edges from 0 to n_disp: bin i is ``edges[i]:edges[i+1]``
        (`.scene.trace.choose_bins`).

    Returns
    -------
    values : ndarray, shape (n_cross, n_bins)
        Mean profile of every bin, NaN for rows with no usable pixel.
    sigma : ndarray, shape (n_cross, n_bins)
        Standard error of ``values``.
    """
    w, wd = _weights(data, variance, usable)
    sw = np.add.reduceat(w, edges[:-1], axis=1)
    swd = np.add.reduceat(wd, edges[:-1], axis=1)
    return _weighted_mean(sw, swd)


def _weights(data: np.ndarray, variance: np.ndarray, usable: np.ndarray):
    """Inverse variances ``w`` of the usable pixels (0 elsewhere) and ``w * data``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(usable, 1.0 / variance, 0.0)
    return w, w * np.where(usable, data, 0.0)


def _weighted_mean(sw: np.ndarray, swd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean ``swd / sw`` and its standard error ``sw**-0.5``, NaN where ``sw`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(sw > 0, swd / sw, np.nan)
        sigma = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    return values, sigma
