"""Choose the kernel slice, and coadd columns into cross-dispersion profiles.

`coadd_bins` is the one coadd: the inverse-variance weighted mean profile of
every bin of columns (`.scene.trace`); `coadd_columns` is the kernel slice's,
one bin of ``width`` columns around a center.

Given the source's flux in every column (`column_flux`), the coadd is the
least-squares profile of the bin instead: each column weighted by its flux
over its variance and divided by its flux. The plain weighted mean weighs a
column by its variance alone, which holds the source's own Poisson noise: in
the rows of the core, a bright column (an emission line) weighs less than
in the wings, so where the flux changes within a bin the mean mixes the
columns differently in every row and flattens the core (an unresolved line
over a faint continuum came out as two sources). With the flux in the
weights, every row holds the same mixture of the columns' profiles, and the
columns count by the signal they carry.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d, uniform_filter1d

__all__ = [
    "brightest_column",
    "coadd_bins",
    "coadd_columns",
    "column_flux",
    "slice_flux",
    "MATCHED_FWHM",
]

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
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    column: int,
    width: int,
    flux: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile of the ``width`` columns centered on ``column`` (`coadd_bins` of one bin).

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
    flux : ndarray, shape (n_disp,), optional
        The source's flux in every column (`column_flux`); None: the
        inverse-variance weighted mean.

    Returns
    -------
    values : ndarray, shape (n_cross,)
        Mean profile, NaN for rows with no usable pixel.
    sigma : ndarray, shape (n_cross,)
        Standard error of ``values``.
    """
    start, stop = slice_columns(data.shape[1], column=column, width=width)
    cols = slice(start, stop)
    values, sigma = coadd_bins(
        data[:, cols],
        variance[:, cols],
        usable[:, cols],
        edges=np.array([0, stop - start]),
        flux=None if flux is None else flux[cols],
    )
    return values[:, 0], sigma[:, 0]


def slice_columns(n_disp: int, *, column: int, width: int) -> tuple[int, int]:
    """First and past-the-last column of the ``width`` columns centered on ``column``."""
    width = int(min(max(width, 1), n_disp))
    start = int(np.clip(column - width // 2, 0, n_disp - width))
    return start, start + width


def slice_flux(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, column: int, width: int
) -> np.ndarray:
    """`column_flux` of the ``width`` columns centered on ``column``, NaN elsewhere.

    Returns
    -------
    ndarray, shape (n_disp,)
    """
    start, stop = slice_columns(data.shape[1], column=column, width=width)
    cols = slice(start, stop)
    flux = np.full(data.shape[1], np.nan)
    flux[cols] = column_flux(
        data[:, cols], variance[:, cols], usable[:, cols], edges=np.array([0, stop - start])
    )
    return flux


def column_flux(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, edges: np.ndarray
) -> np.ndarray:
    """The source's flux in every column, relative: matched to its bin's mean profile.

    Every column is fitted (weighted least squares, one scale factor) with
    the inverse-variance weighted mean profile of its bin, the negative nod
    copies and any background included: the scale ``a`` is the column's
    flux in units of the bin's, 1 where the flux does not change. No profile
    model is needed. The scale is then shrunk towards 1 by its own noise
    (positive-part Wiener/James-Stein), ``1 + d * max(0, 1 - var(a) / d**2)``
    with ``d = a - 1``: where a column's flux is not measured to differ from
    the bin's (a faint continuum, a slice of noise), its weight is that of
    the inverse-variance mean; noisy weights drawn from the data themselves
    would favour the columns whose noise looks like the mean profile, and
    make a source of a slice of noise. An emission line, tens of sigma above
    its continuum, keeps its measured flux.

    Returns
    -------
    ndarray, shape (n_disp,)
        NaN where the column has no usable pixel under the profile.
    """
    mean, _ = coadd_bins(data, variance, usable, edges=edges)
    profile = np.nan_to_num(np.repeat(mean, np.diff(edges), axis=1))
    w, wd = _weights(data, variance, usable)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.sum(profile * wd, axis=0)
        den = np.sum(profile**2 * w, axis=0)
        excess = np.where(den > 0, num / den, np.nan) - 1.0
        keep = np.clip(1.0 - 1.0 / (den * excess**2), 0.0, None)
        return 1.0 + excess * np.nan_to_num(keep)


def coadd_bins(
    data: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    *,
    edges: np.ndarray,
    flux: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile of every bin of columns: weighted mean, or least squares given the flux.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and its variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.
    edges : ndarray of int, shape (n_bins + 1,)
        Increasing column edges from 0 to n_disp: bin i is ``edges[i]:edges[i+1]``
        (`.scene.trace.choose_bins`).
    flux : ndarray, shape (n_disp,), optional
        The source's flux in every column, any scale (`column_flux`). Given,
        row ``i`` of a bin is ``sum_j f_j d_ij / v_ij / sum_j f_j**2 / v_ij``,
        with ``f`` the flux over its root mean square in the bin (so a
        constant flux gives the weighted mean; a NaN flux counts as 0); a bin
        whose flux does not sum above zero takes the weighted mean. None: the inverse-variance
        weighted mean ``sum_j d_ij / v_ij / sum_j 1 / v_ij``.

    Returns
    -------
    values : ndarray, shape (n_cross, n_bins)
        Profile of every bin, NaN for rows with no usable pixel.
    sigma : ndarray, shape (n_cross, n_bins)
        Standard error of ``values``.
    """
    w, wd = _weights(data, variance, usable)
    if flux is not None:
        f = _relative_flux(np.asarray(flux, float), edges)
        w, wd = w * f**2, wd * f
    sw = np.add.reduceat(w, edges[:-1], axis=1)
    swd = np.add.reduceat(wd, edges[:-1], axis=1)
    return _weighted_mean(sw, swd)


def _relative_flux(flux: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Every column's flux over its bin's root mean square; 1 in bins without a usable flux."""
    f = np.where(np.isfinite(flux), flux, 0.0)
    counts = np.diff(edges)
    rms = np.sqrt(np.add.reduceat(f**2, edges[:-1]) / counts)
    positive = np.add.reduceat(f, edges[:-1]) > 0
    scale = np.repeat(np.where(positive & (rms > 0), rms, np.nan), counts)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(scale), f / scale, 1.0)


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
