"""Matplotlib figures: the per-slit diagnostic plot (`plot_slit`).

`plot_slit` draws one row per panel function in `SLIT_PANELS`. A panel is
``panel(ax, diag) -> None`` on a `.slitdata.SlitDiagnostics`; to add one,
write the function and append it to `SLIT_PANELS`. A panel with an
``applies(diag) -> bool`` attribute is drawn only where it returns True (the
binned width/center fits exist only with ``fit_fwhm`` or ``fit_trace``); one
with ``dispersion_x = True`` plots against the slit's dispersion column and
shares its x axis with the other such panels, so a feature can be followed
from the 2-D image down to the spectrum. What the panels mark is computed in
`.io.plotmarks`. Matplotlib's object API only: the user's backend is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import AsinhNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..scene.trace import SmoothModel, bin_centers
from ..slitdata import SlitDiagnostics
from .plotmarks import (
    SPECTRUM_COLORS,
    colorbar_ticks,
    column_wavelength,
    component_tracks,
    data_gaps,
    extended_interp,
    flux_display_unit,
    region_window,
    robust_limits,
    slice_and_model,
    spread_positions,
    stretch_limits,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "SLIT_PANELS",
    "YSCALES",
    "panel_kernel_slice",
    "panel_kernel_variation",
    "panel_slit_image",
    "panel_spectrum",
    "plot_slit",
    "wavelength_axis",
]

#: The y scales `panel_spectrum` accepts, robust linear limits, log (positive flux
#: only) or symlog (linear within one median error of zero).
YSCALES = ("linear", "log", "symlog")


_MARKER = {"ms": 6, "mec": "k", "mew": 0.5, "gid": "component"}
_LABEL = {
    "textcoords": "offset points",
    "ha": "left",
    "va": "center",
    "fontsize": 7,
    "gid": "component-label",
}
_GAP_LABEL = {"rotation": 90, "ha": "center", "va": "top", "fontsize": 7, "color": "0.25"}


def wavelength_axis(ax: Axes, diag: SlitDiagnostics, *, location: str = "top"):
    """Add a secondary x axis in microns to a panel plotted against dispersion column.

    Returns the secondary axis, or None when the slit's wavelength is not
    monotonic along the dispersion (no axis is added then).
    """
    mapping = column_wavelength(diag)
    if mapping is None:
        return None
    columns, lam = mapping
    forward = partial(extended_interp, xp=columns, fp=lam)
    up = lam[-1] > lam[0]
    inverse = partial(
        extended_interp, xp=lam if up else lam[::-1], fp=columns if up else columns[::-1]
    )
    secondary = ax.secondary_xaxis(location, functions=(forward, inverse))
    secondary.set_xlabel("wavelength (um)", fontsize=8)
    secondary.tick_params(labelsize=7)
    return secondary


def _mark_gaps(ax: Axes, diag: SlitDiagnostics, *, text: bool) -> None:
    """Shade the all-NaN column runs; label the ones wide enough to hold a word."""
    n_disp = diag.slit.shape[1]
    for first, last in data_gaps(diag.slit.data, offset=diag.slit.offset[1]):
        edge = first == diag.slit.offset[1] or last == diag.slit.offset[1] + n_disp - 1
        ax.axvspan(first - 0.5, last + 0.5, color="0.85", hatch="///", ec="0.6", lw=0, gid="gap")
        if text and (last - first + 1) >= 0.02 * n_disp:
            label = "no data" if edge else "gap"
            at = ax.get_xaxis_transform()
            ax.text((first + last) / 2, 0.97, label, transform=at, gid="gap-label", **_GAP_LABEL)


def _mark_components(ax: Axes, tracks, *, ylim: tuple[float, float]) -> None:
    """A marker at the left edge for every component, and its name beside it.

    Names of components closer than a label height are spread apart
    (`.io.plotmarks.spread_positions`); the markers stay on the centers.
    """
    starts = [
        (t, float(t.center[np.isfinite(t.center)][0]))
        for t in tracks
        if np.isfinite(t.center).any()
    ]
    height = ax.figure.get_figheight() * 72.0 * ax.get_position().height  # points
    per_point = (ylim[1] - ylim[0]) / max(height, 1.0)
    spread = spread_positions([at for _, at in starts], min_gap=10.0 * per_point, limits=ylim)
    for (track, at), y in zip(starts, spread, strict=True):
        axis = ax.get_yaxis_transform()
        ax.plot(0.0, at, ">", color=track.color, transform=axis, **_MARKER)
        offset = (6, (y - at) / per_point)
        box = {"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.85, "ec": track.color}
        ax.annotate(track.label, (0.0, at), xycoords=axis, xytext=offset, bbox=box, **_LABEL)


def panel_slit_image(ax: Axes, diag: SlitDiagnostics) -> None:
    """The slit (asinh stretch, colour bar) with the FWHM window of every component.

    Each component of the scene (source, further sources, negative nod
    copies) gets a marker with its name at the left edge (``gid="component"``)
    and its window center +- FWHM/2, as the extraction used them; the
    extraction region is framed and gaps in the data are hatched.
    """
    data = diag.slit.data
    c_off, d_off = diag.slit.offset
    vmin, vmax, width = stretch_limits(data)
    extent = (d_off - 0.5, d_off + data.shape[1] - 0.5, c_off - 0.5, c_off + data.shape[0] - 0.5)
    image = ax.imshow(
        data,
        origin="lower",
        aspect="auto",
        cmap="gray",
        norm=AsinhNorm(linear_width=width, vmin=vmin, vmax=vmax),
        extent=extent,
        interpolation="nearest",
    )
    cax = ax.inset_axes([1.008, 0.0, 0.012, 1.0])
    bar = ax.figure.colorbar(image, cax=cax)
    ticks = colorbar_ticks(image.norm, vmin, vmax)
    bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    bar.minorticks_off()
    bar.set_label(diag.slit.units.sb_unit if diag.slit.units.sb_scale else "data", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    c0, c1, d0, d1 = region_window(diag)
    ax.add_patch(
        Rectangle((d0 - 0.5, c0 - 0.5), d1 - d0 + 1, c1 - c0 + 1, fill=False, ec="y", lw=0.8)
    )
    _mark_gaps(ax, diag, text=True)
    tracks = component_tracks(diag)
    for track in tracks:
        style = "-" if track.kind == "source" else ":"
        for sign in (-1, 1):
            edge = track.center + sign * track.fwhm / 2
            ax.plot(track.columns, edge, ls=style, lw=0.9, color=track.color, gid="fwhm-window")
    _mark_components(ax, tracks, ylim=extent[2:])
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_ylabel("cross-dispersion pixel", fontsize=8)
    ax.set_xlabel("dispersion column", fontsize=8)
    ax.tick_params(labelsize=7)
    wavelength_axis(ax, diag)
    # the frame lies on the image's edge when the region is the whole slit
    n_cross, n_disp = data.shape
    whole = c0 <= c_off and d0 <= d_off
    whole = whole and c1 >= c_off + n_cross - 1 and d1 >= d_off + n_disp - 1
    region = "extraction region: the whole slit" if whole else "yellow: extraction region"
    ax.set_title(
        "data (asinh stretch); center and FWHM window of each source (solid) "
        f"and nod copy (dotted); {region}",
        fontsize=8,
    )


panel_slit_image.dispersion_x = True


def panel_spectrum(ax: Axes, diag: SlitDiagnostics, *, yscale: str = "linear") -> None:
    """The extracted spectra against dispersion column, with their 1-sigma band.

    Y-limits are `.io.plotmarks.robust_limits` of all spectra (linear scale):
    the continuum stays readable when a line dominates, and columns running
    off the top are marked with a triangle. ``yscale`` is one of `YSCALES`.
    """
    if yscale not in YSCALES:
        msg = f"yscale must be one of {YSCALES}, not {yscale!r}"
        raise ValueError(msg)
    d0 = region_window(diag)[2]
    units = diag.spectra[0].units
    shown, unit = flux_display_unit(units.flux_unit, diag.spectra[0].flux * units.flux_scale)
    fluxes, errors = [], []
    for i, spectrum in enumerate(diag.spectra):
        scale = spectrum.units.flux_scale * shown
        flux, err = spectrum.flux * scale, spectrum.error * scale
        x = d0 + np.arange(flux.size)
        color = SPECTRUM_COLORS[i % len(SPECTRUM_COLORS)]
        ax.fill_between(
            x, flux - err, flux + err, color=color, alpha=0.35, lw=0, step="mid", gid="error-band"
        )
        ax.step(x, flux, where="mid", color=color, lw=0.8, label=f"{spectrum.name} (+-1 sigma)")
        fluxes.append(flux)
        errors.append(err)
    flux, err = np.concatenate(fluxes), np.concatenate(errors)
    ax.axhline(0.0, color="0.5", lw=0.5)
    _mark_gaps(ax, diag, text=False)
    _set_flux_scale(ax, flux, err, yscale=yscale)
    if yscale == "linear":
        top = ax.get_ylim()[1]
        above = [(d0 + np.flatnonzero(f > top), f[f > top]) for f in fluxes]
        cols = np.concatenate([a for a, _ in above])
        if cols.size:
            peak = np.nanmax(np.concatenate([v for _, v in above]))
            ax.plot(
                cols,
                np.full(cols.size, top),
                "^",
                ms=4,
                color="C3",
                clip_on=False,
                gid="off-scale",
                label=f"above the axis (peak {peak:.3g})",
            )
    ax.set_xlabel("dispersion column", fontsize=8)
    ax.set_ylabel(f"flux ({unit})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", ncols=min(3, len(diag.spectra) + 1))
    wavelength_axis(ax, diag)


panel_spectrum.dispersion_x = True


def _set_flux_scale(ax: Axes, flux: np.ndarray, err: np.ndarray, *, yscale: str) -> None:
    """Robust linear limits, or a log / symlog axis over the whole range."""
    if yscale == "linear":
        ax.set_ylim(robust_limits(flux, err))
        return
    finite = flux[np.isfinite(flux)]
    if yscale == "symlog":
        e = err[np.isfinite(err) & (err > 0)]
        ax.set_yscale("symlog", linthresh=float(np.median(e)) if e.size else 1.0)
        return
    ax.set_yscale("log")
    positive = finite[finite > 0]
    if positive.size:
        ax.set_ylim(np.percentile(positive, 1) / 2, positive.max() * 2)


def panel_kernel_slice(ax: Axes, diag: SlitDiagnostics) -> None:
    """The kernel slice (coadded columns) against the model of the same columns."""
    meta = diag.spectra[0].metadata
    slit = diag.slit
    column, width = int(meta.get("slice_column", 0)), int(meta.get("slice_width", 1))
    values, sigma, model = slice_and_model(
        slit.data,
        slit.variance,
        slit.mask,
        diag.scene,
        column=column - slit.offset[1],
        width=width,
    )
    rows = slit.offset[0] + np.arange(slit.shape[0])
    ax.errorbar(rows, values, sigma, fmt="o", ms=2.5, lw=0.6, color="k", label="slice")
    ax.plot(rows, model, color="C3", lw=1.0, label="scene model")
    index = min(max(column - region_window(diag)[2], 0), diag.spectra[0].flux.size - 1)
    for track in component_tracks(diag):
        ax.axvline(
            track.center[index],
            color=track.color,
            lw=0.8,
            ls="-" if track.kind == "source" else ":",
        )
    kernel = meta.get("kernel", {})
    title = f"kernel slice, {meta.get('status', '?')}: {kernel.get('kernel', '?')} kernel"
    for key, label in (("center", "center"), ("fwhm", "FWHM")):
        if isinstance(kernel.get(key), (int, float)):
            title += f", {label} {kernel[key]:.2f} px"
    ax.set_title(f"{title}; columns {column - width // 2}..{column + (width - 1) // 2}", fontsize=8)
    ax.set_xlabel("cross-dispersion pixel", fontsize=8)
    ax.set_ylabel(f"mean ({slit.units.sb_unit})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")


def panel_kernel_variation(ax: Axes, diag: SlitDiagnostics) -> None:
    """Binned center and FWHM fits with their smooth models, along the dispersion."""
    meta = diag.spectra[0].metadata
    bins = meta["bins"]
    d0 = region_window(diag)[2]
    edges = np.asarray(bins["edges"], float)
    mid = d0 + bin_centers(edges)
    good = np.asarray(bins["good"], bool)
    columns = np.arange(int(edges[-1])) if edges.size else np.zeros(0)
    wavelength = diag.spectra[0].wavelength
    right = ax.twinx()
    for axis, key, model_key, color, label in (
        (ax, "center", "trace_model", "C0", "center"),
        (right, "fwhm", "fwhm_model", "C3", "FWHM"),
    ):
        values = np.asarray(bins[key], float)
        axis.plot(mid[good], values[good], "o", ms=3.5, color=color, label=f"{label} (bins)")
        axis.plot(
            mid[~good],
            values[~good],
            "o",
            ms=3.5,
            mfc="none",
            color=color,
            label=f"{label} (bins not used)",
        )
        smooth = meta.get(model_key, {})
        if "coeffs" in smooth:
            model = SmoothModel.from_meta(smooth)
            x = columns if model.variable == "column" else wavelength[: columns.size]
            axis.plot(d0 + columns, model(x), color=color, lw=1.0, label=f"{label} model")
        axis.set_ylabel(f"{label} (px)", color=color, fontsize=8)
        axis.tick_params(labelsize=7)
    ax.set_xlabel("dispersion column", fontsize=8)
    handles = [h for a in (ax, right) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, fontsize=6, ncols=6, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.set_title(
        "kernel in bins (fit_trace / fit_fwhm) and the smooth models used", fontsize=8, pad=18
    )


panel_kernel_variation.applies = lambda diag: "bins" in diag.spectra[0].metadata
panel_kernel_variation.dispersion_x = True


#: The panel functions `plot_slit` draws, one row each, top to bottom.
SLIT_PANELS: tuple[Callable[[Axes, SlitDiagnostics], None], ...] = (
    panel_slit_image,
    panel_spectrum,
    panel_kernel_variation,
    panel_kernel_slice,
)


def _attribute(panel: Callable, name: str, default):
    """A panel attribute (``applies``, ``dispersion_x``), also through a partial."""
    return getattr(panel, name, getattr(getattr(panel, "func", None), name, default))


def plot_slit(
    diag: SlitDiagnostics,
    path: str | Path | None,
    panels: Sequence[Callable[[Axes, SlitDiagnostics], None]] = SLIT_PANELS,
    *,
    yscale: str = "linear",
) -> Figure:
    """Write the diagnostic PNG of one slit: one row per panel.

    Parameters
    ----------
    diag : ~optimal_extract1d.slitdata.SlitDiagnostics
        The slit and its extraction.
    path : str, pathlib.Path or None
        Output PNG; None draws the figure without saving it.
    panels : sequence of callable
        ``panel(ax, diag)`` drawers, top to bottom. Those with
        ``dispersion_x = True`` share their x axis.
    yscale : str
        Y scale of `panel_spectrum`, one of `YSCALES`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not attached to any pyplot backend).
    """
    if yscale not in YSCALES:
        msg = f"yscale must be one of {YSCALES}, not {yscale!r}"
        raise ValueError(msg)
    panels = [p for p in panels if _attribute(p, "applies", lambda _: True)(diag)]
    panels = [partial(p, yscale=yscale) if p is panel_spectrum else p for p in panels]
    heights = [1.3 if _attribute(p, "dispersion_x", False) else 1.0 for p in panels]
    fig = Figure(figsize=(10, 2.5 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    shared = None
    for ax, panel in zip(axes, panels, strict=True):
        if _attribute(panel, "dispersion_x", False):
            if shared is None:
                shared = ax
            else:
                ax.sharex(shared)
        panel(ax, diag)
    fig.suptitle(f"slit {diag.slit.name}", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
