"""Screening of gross outliers (cosmic rays) before the kernel fits.

The kernel slice and the bins coadd tens of columns; one cosmic ray of a few
ten sigma in them can pull the fitted width to a fraction of a pixel and
leave the real source as a "second component". Before any fit, every pixel
is compared with a local model of its column: the running median profile of
the `WINDOW` neighbouring columns (the continuum shape, free of single-pixel
and single-column features), scaled and offset to the column by least squares
weighted by the pixel noise plus the profile's own noise at the column's
scale. An emission line follows the profile and is absorbed by the
scale; a cosmic ray does not. The worst pixel of a column is dropped while it
deviates by more than `OUTLIER_SIGMA` (noise, plus the median profile's own
noise scaled to the column, plus ``MODEL_FLOOR`` of the local model, which
covers the change of the trace across the window) from the
fit of the column made without it, up to ``MAX_PASSES`` per column. Horne's
model-based rejection in the extraction (`.iteration`) handles everything milder.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["fit_outliers", "median", "nanmedian", "OUTLIER_SIGMA", "WINDOW"]

#: Columns in the running median profile (odd).
WINDOW = 9
#: Deviation (sigma) beyond which a pixel is kept out of the kernel fits.
OUTLIER_SIGMA = 10.0
# Fraction of the local model added to the noise: trace drift and width change
# across the window, and undersampling, make the median profile this uncertain.
MODEL_FLOOR = 0.1
# Pixels dropped per column at most (one per pass).
MAX_PASSES = 3


def median(values: np.ndarray) -> float:
    """``numpy.median`` of a 1-D array, bit for bit, by one partition.

    numpy partitions at the two middle values of an even count, which takes
    twice as long; the lower one is the largest below the upper one. NaN if
    a value is NaN, as numpy's.
    """
    a = np.asarray(values, float)
    if a.size == 0 or np.isnan(a).any():
        return float(np.median(a))
    half = a.size // 2
    part = np.partition(a, half)
    if a.size % 2:
        return float(part[half])
    return float((np.max(part[:half]) + part[half]) / 2.0)


def nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    """`numpy.nanmedian` along an axis (NaN where all are NaN).

    numpy's version loops in Python over the lines of a small array. Along
    an axis of at most 16 values the lines are ordered by a sorting network
    (Batcher's odd-even merge sort, elementwise over all lines), else by one
    sort.
    """
    a = np.asarray(values, float)
    if 0 < a.shape[axis] <= _NETWORK_SIZE:
        first = np.moveaxis(a, axis, 0)
        missing = np.isnan(first)
        work = np.empty((first.shape[0] + 1, *first.shape[1:]))
        np.copyto(work[:-1], first)
        np.copyto(work[:-1], np.inf, where=missing)
        # counted along the first axis: a reduction over a short last axis is slow
        return _network_median(work, np.sum(~missing, axis=0))
    a = np.moveaxis(a, axis, -1)
    return _sorted_median(np.sort(a, axis=-1), np.count_nonzero(~np.isnan(a), axis=-1))


# Longest axis ordered by a sorting network rather than a sort.
_NETWORK_SIZE = 16


def _network_median(work: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median over axis 0 of ``work[:-1]`` at every position, of its ``n`` least values.

    ``work`` (C-contiguous, overwritten) holds the values along axis 0, missing
    ones as +inf (not NaN), then one spare row. They are sorted elementwise by
    a sorting network, Batcher's odd-even merge sort: a fixed sequence of
    compare-exchanges, each a `numpy.minimum` and `numpy.maximum` over all
    positions at once, several times faster than `numpy.sort` on thousands of
    short lines; the rows trade places with the spare one instead of being
    copied. NaN where ``n`` is 0.
    """
    count = work.shape[0] - 1
    rows = work.reshape(count + 1, -1)
    where = list(range(count))  # the row of work holding each rank
    spare = count
    for i, j in _batcher_pairs(count):
        low, high = rows[where[i]], rows[where[j]]
        np.minimum(low, high, out=rows[spare])
        np.maximum(low, high, out=high)
        where[i], spare = spare, where[i]
    at = np.asarray(where)
    lines = np.arange(rows.shape[1])
    return _ranked_median(lambda rank: rows[at[rank], lines], n, count)


@functools.cache
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Compare-exchange pairs of Batcher's odd-even merge sort of ``n`` values."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _sorted_median(ordered: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median of every line of ``ordered``, whose first ``n`` values are not NaN.

    ``ordered`` is sorted along its last axis (NaNs last); NaN where ``n`` is 0.
    """
    lines = ordered.reshape(-1, ordered.shape[-1])
    rows = np.arange(lines.shape[0])
    return _ranked_median(lambda rank: lines[rows, rank], n, ordered.shape[-1])


def _ranked_median(value_at, n: np.ndarray, count: int) -> np.ndarray:
    """Median of every line of ``count`` ordered values, of which the first ``n`` count.

    ``value_at(ranks)`` gives each line's value at its rank (an array over the
    lines, flattened); NaN where ``n`` is 0.
    """
    lo = np.clip((n.ravel() - 1) // 2, 0, None)
    hi = np.clip(n.ravel() // 2, 0, count - 1)
    mid = 0.5 * (value_at(lo) + value_at(hi))
    return np.where(n > 0, mid.reshape(n.shape), np.nan)


def fit_outliers(data: np.ndarray, variance: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Pixels to keep out of the kernel fits, shape (n_cross, n_disp).

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        Science image and its variance.
    usable : ndarray of bool, shape (n_cross, n_disp)
        Pixels that may be used.

    Returns
    -------
    ndarray of bool
        Usable pixels deviating from their column's local model by more than
        `OUTLIER_SIGMA` (at most ``MAX_PASSES`` per column).
    """
    n_cross, n_disp = data.shape
    out = np.zeros(data.shape, bool)
    if n_cross < 3 or n_disp < 3:
        return out
    d = np.where(usable, data, np.nan)
    half = WINDOW // 2
    missing = np.isnan(d)
    padded = _padded(np.where(missing, np.inf, d), half, np.inf)  # missing last in the order
    windows = np.empty((WINDOW + 1, n_cross, n_disp))  # the shifted columns, and a spare
    for shift in range(WINDOW):
        windows[shift] = padded[:, shift : shift + n_disp]
    with np.errstate(invalid="ignore"):
        count = _running_sum((~missing).astype(float), half).astype(int)
        profile = _network_median(windows, count)  # the running nanmedian
        profile_var = _median_variance(np.where(usable, variance, np.nan), half)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(usable & np.isfinite(profile) & (variance > 0), 1.0 / variance, 0.0)
    m = np.nan_to_num(profile)
    v = np.nan_to_num(d)
    for _ in range(MAX_PASSES):
        with np.errstate(all="ignore"):  # huge values: overflow gives inf, not a rejection
            z = _deleted_residuals(m, v, w, variance=variance, profile_var=profile_var)
        z = np.where((w > 0) & np.isfinite(z), z, 0.0)
        worst = np.argmax(z, axis=0)
        cols = np.nonzero(z[worst, np.arange(n_disp)] > OUTLIER_SIGMA)[0]
        if cols.size == 0:
            break
        out[worst[cols], cols] = True
        w[worst[cols], cols] = 0.0
    return out


def _median_variance(variance: np.ndarray, half: int) -> np.ndarray:
    """Variance of the running median profile: ``pi / 2`` times that of the mean.

    Each row's median over the window's valid pixels (NaN: not valid); 0
    where none is.
    """
    finite = np.isfinite(variance)
    n = _running_sum(finite.astype(float), half)
    total = _running_sum(np.where(finite, variance, 0.0), half)
    return np.where(n > 0.5, 0.5 * np.pi * total / np.maximum(n, 1.0) ** 2, 0.0)


def _running_sum(values: np.ndarray, half: int) -> np.ndarray:
    """Sum over the ``2 half + 1`` columns around every column (fewer at the ends).

    As shifted copies added up: a fraction of the time of summing windows, and
    no cancellation (a cumulative sum would lose every column after a huge value).
    """
    n_disp = values.shape[1]
    padded = _padded(values, half, 0.0)
    total = padded[:, :n_disp].copy()
    for shift in range(1, 2 * half + 1):
        total += padded[:, shift : shift + n_disp]
    return total


def _padded(values: np.ndarray, half: int, fill: float) -> np.ndarray:
    """``values`` with ``half`` columns of ``fill`` each side (`numpy.pad` without its overhead)."""
    out = np.full((values.shape[0], values.shape[1] + 2 * half), fill, dtype=values.dtype)
    out[:, half : half + values.shape[1]] = values
    return out


def _column_fit(w: np.ndarray, m: np.ndarray, v: np.ndarray):
    """Weighted least squares ``v = a m + b`` in every column, and its sums."""
    s1, sm, smm = w.sum(0), (w * m).sum(0), (w * m * m).sum(0)
    sv, smv = (w * v).sum(0), (w * m * v).sum(0)
    det = s1 * smm - sm * sm
    solvable = det > 1e-9 * np.maximum(s1 * smm, 1e-300)
    a = np.where(solvable, (s1 * smv - sm * sv) / det, 0.0)
    b = np.where(solvable, (smm * sv - sm * smv) / det, np.where(s1 > 0, sv / s1, 0.0))
    return s1, sm, smm, sv, smv, det, solvable, a, b


def _deleted_residuals(
    m: np.ndarray, v: np.ndarray, w: np.ndarray, *, variance: np.ndarray, profile_var: np.ndarray
):
    """|z| of every pixel against its column's fit ``v = a m + b`` made without it.

    The fit is weighted least squares per column; the residual of pixel i
    from the fit without i is r_i / (1 - h_i), with h_i its leverage, and its
    variance V_i / (1 - h_i), plus the noise of the median profile scaled to
    the column, ``a**2`` times ``profile_var`` (``a`` from the fit without the
    pixel, its square less its own noise): an emission line over a faint
    continuum scales a noisy continuum profile up a hundredfold, and its core
    is not an outlier of that. Leaving the pixel out matters: a cosmic ray on
    the profile peak drags the scale of a fit that includes it so far that
    its own residual looks small.
    """
    s1, sm, smm, sv, smv, det, solvable, a, b = _column_fit(w, m, v)
    # The median profile's noise, scaled to the column, is noise of the fit's
    # regressor: weighed by the pixel noise alone, the wing pixels of a line
    # over a faint continuum (the profile pure noise there, the column ~0)
    # pull the scale towards 0 (regression dilution), and the line's core,
    # predicted a fraction of itself, was screened from every kernel fit (a
    # line at S/N 150 over a continuum at 2: its three core pixels). The
    # pixels are weighed by their noise plus the profile's at that scale
    # (the effective variance), the scale from a first fit less its own
    # noise, as below. That lessens the dilution, it does not remove it: where
    # the window's profile is mostly a residual sky, a line's core may still be
    # screened (1 of 5 draws in tests/test_outliers.py; 4 of 5 before).
    first = np.clip(a**2 - np.where(solvable, s1 / det, 0.0), 0.0, None)
    w = w / (1.0 + w * first * profile_var)
    s1, sm, smm, sv, smv, det, solvable, a, b = _column_fit(w, m, v)
    leverage = np.where(
        solvable, w * (m * m * s1 - 2.0 * m * sm + smm) / det, np.where(s1 > 0, w / s1, 1.0)
    )
    keep = 1.0 - leverage
    deleted = (v - (a * m + b)) / keep
    predicted = v - deleted
    # the column's scale without the pixel (a ray on the peak drags ``a`` up), and
    # its square less its own noise (positive part): at low S/N the noise of a
    # would otherwise inflate the profile term and hide the rays it is fitted to
    a_deleted = a - np.where(solvable, w * (s1 * m - sm) / det, 0.0) * deleted
    var_a = np.where(solvable, s1 / det, 0.0)
    scale2 = np.clip(a_deleted**2 - var_a, 0.0, None)
    return np.where(
        keep > 1e-6,
        np.abs(deleted)
        / np.sqrt(variance / keep + scale2 * profile_var + (MODEL_FLOOR * predicted) ** 2),
        0.0,
    )
