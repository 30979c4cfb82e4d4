"""What the plots mark on a slit: component tracks, data gaps, stretch and robust limits.

Plain numpy on a `.slitdata.SlitDiagnostics` (or its arrays); no matplotlib,
so every value a plot shows can be tested without drawing it.
`.io.plotting` and `.io.summaryplot` draw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.coadd import coadd_columns, slice_flux
from ..core.horne import usable_pixels
from ..scene.trace import SmoothModel
from ..slitdata import SlitDiagnostics

__all__ = [
    "ComponentTrack",
    "NOD_COLOR",
    "SPECTRUM_COLORS",
    "colorbar_ticks",
    "column_wavelength",
    "component_tracks",
    "data_gaps",
    "extended_interp",
    "flux_display_unit",
    "region_window",
    "robust_limits",
    "slice_and_model",
    "spread_positions",
    "stretch_limits",
]

#: Colours of the spectra of a slit, in order; a source's track in the 2-D
#: panel has the colour of its spectrum.
SPECTRUM_COLORS = ("C1", "C2", "C4", "C6", "C8", "C9")
#: Colour of the negative nod copies.
NOD_COLOR = "deepskyblue"


@dataclass(frozen=True)
class ComponentTrack:
    """Where one component of a slit's scene lies, column by column.

    Attributes
    ----------
    kind : str
        ``"source"`` or ``"nod"`` (a negative nod copy).
    label : str
        What the plots call it: the spectrum name for a source, ``nod -5.2 px``
        for a copy.
    columns : ndarray of int, shape (n,)
        Dispersion columns of the slit (the extraction region's).
    center : ndarray, shape (n,)
        Cross-dispersion center (slit pixels) in every column.
    fwhm : ndarray, shape (n,)
        FWHM (pixels) in every column; the window drawn is center +- FWHM/2.
    color : str
        Matplotlib colour.
    """

    kind: str
    label: str
    columns: np.ndarray
    center: np.ndarray
    fwhm: np.ndarray
    color: str


def region_window(diag: SlitDiagnostics) -> tuple[int, int, int, int]:
    """``(cross0, cross1, disp0, disp1)``, inclusive, of the first spectrum's region."""
    x1, y1, x2, y2 = diag.spectra[0].region
    return (y1, y2, x1, x2) if diag.slit.disp_axis == 1 else (x1, x2, y1, y2)


def _smooth(meta: dict[str, Any], key: str, constant: float, *, wavelength, n: int) -> np.ndarray:
    """A smooth kernel model of the metadata evaluated on the region's columns."""
    smooth = meta.get(key) or {}
    if "coeffs" not in smooth:
        return np.full(n, constant)
    model = SmoothModel.from_meta(smooth)
    x = np.arange(n, dtype=float) if model.variable == "column" else wavelength
    return model(x)


def component_tracks(diag: SlitDiagnostics) -> tuple[ComponentTrack, ...]:
    """Every component of the slit's scene: main source, further sources, nod copies.

    The center and FWHM per column are the ones the extraction used: the
    smooth models ``trace_model`` and ``fwhm_model`` of the metadata when they
    were fitted, else the kernel's constant center and FWHM; every further
    component sits at its fitted offset from the main source. A box fallback
    has no component (empty tuple).

    Parameters
    ----------
    diag : ~optimal_extract1d.slitdata.SlitDiagnostics
        The slit and its spectra.

    Returns
    -------
    tuple of ComponentTrack
        The main source first, then the components in metadata order.
    """
    spectrum = diag.spectra[0]
    meta = spectrum.metadata
    kernel = meta.get("kernel") or {}
    if not all(isinstance(kernel.get(k), (int, float)) for k in ("center", "fwhm")):
        return ()
    c0, _, d0, d1 = region_window(diag)
    n = d1 - d0 + 1
    lam = np.asarray(spectrum.wavelength, float)[:n]
    center = c0 + _smooth(meta, "trace_model", kernel["center"], wavelength=lam, n=n)
    fwhm = _smooth(meta, "fwhm_model", kernel["fwhm"], wavelength=lam, n=n)
    columns = np.arange(d0, d1 + 1)
    comps = [{"offset": 0.0, "kind": "source"}, *kernel.get("components", ())]
    positions = [float(s.metadata.get("source_position", np.nan)) for s in diag.spectra]
    tracks = []
    for comp in comps:
        offset, kind = float(comp["offset"]), str(comp["kind"])
        if kind == "source":
            at = float(np.nanmedian(center)) + offset if np.isfinite(center).any() else np.nan
            near = int(np.argmin([abs(p - at) if np.isfinite(p) else np.inf for p in positions]))
            label = diag.spectra[near].name
            color = SPECTRUM_COLORS[near % len(SPECTRUM_COLORS)]
        else:
            label, color = f"nod {offset:+.1f} px", NOD_COLOR
        tracks.append(ComponentTrack(kind, label, columns, center + offset, fwhm, color))
    return tuple(tracks)


def data_gaps(data: np.ndarray, *, offset: int = 0) -> list[tuple[int, int]]:
    """Runs of columns without a single finite value (detector gaps, edges).

    Parameters
    ----------
    data : ndarray, shape (n_cross, n_disp)
        The slit.
    offset : int
        Added to the column numbers.

    Returns
    -------
    list of (int, int)
        First and last column (inclusive) of every run, in order.
    """
    empty = ~np.isfinite(data).any(axis=0)
    edges = np.diff(np.r_[0, empty.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(a) + offset, int(b) + offset) for a, b in zip(starts, stops, strict=True)]


def column_wavelength(diag: SlitDiagnostics) -> tuple[np.ndarray, np.ndarray] | None:
    """Dispersion column -> wavelength (microns) of the slit, when it is monotonic.

    Returns
    -------
    columns, wavelength : ndarray, shape (n,)
        The columns (increasing) with a finite wavelength, and that
        wavelength (the median over the slit rows, increasing or decreasing);
        None when fewer than two columns have one or the wavelength does not
        change monotonically.
    """
    lam2d = np.asarray(diag.slit.wavelength, float)
    ok = np.isfinite(lam2d).any(axis=0)
    if ok.sum() < 2:
        return None
    columns = (np.flatnonzero(ok) + diag.slit.offset[1]).astype(float)
    lam = np.nanmedian(lam2d[:, ok], axis=0)
    step = np.diff(lam)
    if np.all(step > 0) or np.all(step < 0):
        return columns, lam
    return None


def extended_interp(x, *, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``numpy.interp`` on increasing ``xp``, continued linearly beyond its ends.

    A secondary axis needs a mapping valid beyond the data: a plain
    ``numpy.interp`` holds the end values there, which puts ticks of far-off
    values on the edge columns.

    Parameters
    ----------
    x : float or ndarray
        Where to evaluate.
    xp, fp : ndarray, shape (n,)
        Sample points (increasing, n >= 2) and values.

    Returns
    -------
    ndarray
        Same shape as ``x``.
    """
    x = np.asarray(x, float)
    y = np.interp(x, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(x < xp[0], fp[0] + (x - xp[0]) * lo_slope, y)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi_slope, y)


def flux_display_unit(unit: str, flux: np.ndarray) -> tuple[float, str]:
    """A factor and unit that put Jy spectra in readable numbers (mJy, uJy or nJy).

    Parameters
    ----------
    unit : str
        Unit of ``flux`` (FLUX column unit).
    flux : ndarray
        The values to show.

    Returns
    -------
    (float, str)
        Multiply by the factor to get the unit; ``(1, unit)`` for other units.
    """
    finite = np.abs(flux[np.isfinite(flux)])
    if unit != "Jy" or finite.size == 0 or not np.any(finite > 0):
        return 1.0, unit
    typical = float(np.percentile(finite[finite > 0], 90))
    units = ((1.0, "Jy"), (1e3, "mJy"), (1e6, "uJy"), (1e9, "nJy"))
    return next((u for u in units if typical * u[0] >= 1.0), units[-1])


def robust_limits(
    flux: np.ndarray, error: np.ndarray, *, percentiles: tuple[float, float] = (5.0, 95.0)
) -> tuple[float, float]:
    """Y-limits of a spectrum that keep the continuum readable when lines dominate.

    The continuum range is the ``percentiles`` of the finite flux, widened to
    at least four median errors. The whole flux range is shown when it is
    at most eight continuum ranges. Otherwise a side that reaches further
    than 0.75 range below or 2.5 ranges above the continuum range is cut
    there (0.5 below), and the strongest features run off the axis: the
    continuum range then fills over a fifth of the axis.

    Parameters
    ----------
    flux, error : ndarray, shape (n,)
        Spectrum and its 1-sigma error.
    percentiles : tuple of float
        Percentiles that define the continuum range.

    Returns
    -------
    (float, float)
        Lower and upper limit; ``(-1, 1)`` when no flux is finite.
    """
    f = flux[np.isfinite(flux)]
    if f.size == 0:
        return (-1.0, 1.0)
    lo, hi = np.percentile(f, percentiles)
    e = error[np.isfinite(error) & (error > 0)]
    span = max(hi - lo, 4.0 * float(np.median(e)) if e.size else 0.0)
    if span <= 0:
        span = max(abs(hi), 1.0)
    bottom, top = float(f.min()), float(f.max())
    if top - bottom > 8 * span:
        bottom = bottom if bottom >= lo - 0.75 * span else lo - 0.5 * span
        top = min(top, hi + 2.5 * span)
    elif top - bottom < span:  # a flat spectrum: one continuum range around it
        bottom, top = (bottom + top - span) / 2, (bottom + top + span) / 2
    pad = 0.03 * (top - bottom)
    return (float(bottom - pad), float(top + pad))


def colorbar_ticks(norm, vmin: float, vmax: float, *, min_gap: float = 0.12) -> list[float]:
    """Round tick values for a colour bar, at least ``min_gap`` apart once normalized.

    Zero and the values 1, 2 and 5 x 10^k in ``[vmin, vmax]`` are taken in
    order of importance (zero, then by magnitude, largest first) and kept
    when they fall far enough from the ticks already kept, so the labels of
    a strongly non-linear stretch do not crowd near zero.

    Parameters
    ----------
    norm : callable
        The colour normalization (value -> [0, 1]).
    vmin, vmax : float
        Range of the colour bar.
    min_gap : float
        Smallest distance between two ticks in normalized units.

    Returns
    -------
    list of float
        Increasing tick values.
    """
    top = max(abs(vmin), abs(vmax), 1e-300)
    exponents = np.arange(np.floor(np.log10(top)) - 6, np.floor(np.log10(top)) + 1)
    magnitudes = sorted({m * 10.0**e for e in exponents for m in (1, 2, 5)}, reverse=True)
    candidates = [0.0] + [s * m for m in magnitudes for s in (1, -1)]
    kept: list[float] = []
    for value in candidates:
        if not vmin <= value <= vmax:
            continue
        pos = float(norm(value))
        if all(abs(pos - float(norm(k))) >= min_gap for k in kept):
            kept.append(value)
    return sorted(kept)


def spread_positions(
    values: list[float], *, min_gap: float, limits: tuple[float, float]
) -> list[float]:
    """Label positions near ``values``, at least ``min_gap`` apart and inside ``limits``.

    Positions are pushed apart in order (upward), then back down from the
    upper limit when the last one overshoots it; labels that already stand
    apart keep their values.

    Parameters
    ----------
    values : list of float
        Wanted positions.
    min_gap : float
        Smallest distance between two positions.
    limits : tuple of float
        Lower and upper bound (the positions stay half a gap inside when they
        can).

    Returns
    -------
    list of float
        One position per value, in the order of ``values``.
    """
    if not values:
        return []
    order = np.argsort(values)
    y = np.asarray(values, float)[order]
    lo, hi = limits[0] + min_gap / 2, limits[1] - min_gap / 2
    y[0] = max(y[0], lo)
    for i in range(1, y.size):
        y[i] = max(y[i], y[i - 1] + min_gap)
    y[-1] = min(y[-1], hi)
    for i in range(y.size - 2, -1, -1):
        y[i] = min(y[i], y[i + 1] - min_gap)
    out = np.empty_like(y)
    out[order] = y
    return [float(v) for v in out]


def stretch_limits(image: np.ndarray) -> tuple[float, float, float]:
    """Limits and linear width of the asinh stretch of a 2-D panel.

    Returns
    -------
    vmin, vmax, linear_width : float
        The 0.5 and 99.8 percentiles of the finite pixels, and their robust
        scatter (1.4826 x the median absolute deviation), below which the
        stretch is linear; ``(0, 1, 0.1)`` for an image without a finite pixel.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return (0.0, 1.0, 0.1)
    vmin, vmax = (float(v) for v in np.percentile(finite, (0.5, 99.8)))
    if vmax <= vmin:
        vmin, vmax = vmin - 1.0, vmax + 1.0
    mad = 1.4826 * float(np.median(np.abs(finite - np.median(finite))))
    return (vmin, vmax, max(mad, 1e-3 * (vmax - vmin)))


def slice_and_model(
    data: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    scene: np.ndarray,
    *,
    column: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel slice (coadded columns) and the same coadd of the scene model.

    Parameters
    ----------
    data, variance : ndarray, shape (n_cross, n_disp)
        The slit and its variance.
    mask : ndarray of bool, shape (n_cross, n_disp)
        Pixels not to use.
    scene : ndarray, shape (n_cross, n_disp)
        The scene model (NaN outside the extraction region).
    column, width : int
        Center column and width of the slice.

    Returns
    -------
    values, sigma, model : ndarray, shape (n_cross,)
        The slice's profile (its columns weighted by their flux, as the
        kernel is fitted to, `.core.coadd`), its standard error and the
        model's profile with the same weights.
    """
    usable = usable_pixels(data, variance, mask)
    flux = slice_flux(data, variance, usable, column=column, width=width)
    values, sigma = coadd_columns(data, variance, usable, column=column, width=width, flux=flux)
    model, _ = coadd_columns(
        np.nan_to_num(scene),
        variance,
        usable & np.isfinite(scene),
        column=column,
        width=width,
        flux=flux,
    )
    return values, sigma, model
