"""Matplotlib figures: the demo summary and the per-slit diagnostic plot.

`plot_slit` draws one row per panel function in `SLIT_PANELS`. A panel is
``panel(ax, diag) -> None`` on a `.slitdata.SlitDiagnostics`; to add one,
write the function and append it to `SLIT_PANELS`. A panel with an
``applies(diag) -> bool`` attribute is drawn only where it returns True (the
binned width/center fits exist only with ``fit_fwhm`` or ``fit_trace``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..core.coadd import coadd_columns
from ..core.horne import usable_pixels
from ..scene.trace import SmoothModel, bin_centers
from ..slitdata import SlitDiagnostics

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_demo_summary", "plot_slit", "SLIT_PANELS"]


def plot_demo_summary(x1d, truths, path: Path) -> None:
    """Grid of extracted spectra (with 1-sigma band) over the injected truth.

    ``truths`` holds one ``(wavelength, flux)`` pair per spectrum: the injected
    spectrum in microns and Jy.
    """
    n = len(x1d.spec)
    ncol = 4
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(4 * ncol, 2.2 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True)
    for ax, spec, (wavelength, truth) in zip(axes.flat, x1d.spec, truths, strict=False):
        t = spec.spec_table
        lam, flux, err = t["WAVELENGTH"], t["FLUX"] * 1e9, t["FLUX_ERROR"] * 1e9
        ax.fill_between(lam, flux - err, flux + err, color="C0", alpha=0.3, lw=0)
        ax.plot(lam, flux, color="C0", lw=0.7, label="optimal")
        ax.plot(
            wavelength,
            truth * 1e9,
            color="C3",
            lw=0.6,
            alpha=0.8,
            label="injected",
        )
        ax.set_title(f"slit {spec.name}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("wavelength (um)")
    fig.supylabel("flux (nJy)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _region_window(diag: SlitDiagnostics) -> tuple[int, int, int, int]:
    """(cross0, cross1, disp0, disp1), inclusive, of the first spectrum's region."""
    x1, y1, x2, y2 = diag.spectra[0].region
    return (y1, y2, x1, x2) if diag.slit.disp_axis == 1 else (x1, x2, y1, y2)


def panel_slit_image(ax: Axes, diag: SlitDiagnostics) -> None:
    """The slit (dispersion horizontal), the extraction region and the profile center."""
    data = diag.slit.data
    finite = data[np.isfinite(data)]
    lo, hi = np.percentile(finite, (2, 99.5)) if finite.size else (0.0, 1.0)
    ax.imshow(data, origin="lower", aspect="auto", cmap="gray", vmin=lo, vmax=hi)
    c0, c1, d0, d1 = _region_window(diag)
    ax.add_patch(
        Rectangle((d0 - 0.5, c0 - 0.5), d1 - d0 + 1, c1 - c0 + 1, fill=False, ec="C1", lw=0.8)
    )
    rows = np.arange(data.shape[0])[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        center = np.sum(rows * diag.profile, axis=0) / np.sum(diag.profile, axis=0)
    ax.plot(np.arange(data.shape[1]), center, color="C3", lw=0.6, label="profile center")
    ax.set_xlabel("dispersion pixel")
    ax.set_ylabel("cross-dispersion pixel")
    ax.legend(fontsize=7, loc="upper right")


def panel_kernel_slice(ax: Axes, diag: SlitDiagnostics) -> None:
    """The kernel slice (coadded columns) against the model of the same columns."""
    spectrum = diag.spectra[0]
    meta = spectrum.metadata
    slit = diag.slit
    usable = usable_pixels(slit.data, slit.variance, slit.mask)
    column, width = int(meta.get("slice_column", 0)), int(meta.get("slice_width", 1))
    values, sigma = coadd_columns(slit.data, slit.variance, usable, column=column, width=width)
    model, _ = coadd_columns(
        np.nan_to_num(diag.scene),
        slit.variance,
        usable & np.isfinite(diag.scene),
        column=column,
        width=width,
    )
    rows = np.arange(slit.shape[0])
    ax.errorbar(rows, values, sigma, fmt="o", ms=2.5, lw=0.6, color="k", label="slice")
    ax.plot(rows, model, color="C3", lw=1.0, label="model")
    kernel = meta.get("kernel", {})
    title = f"{meta.get('status', '?')}: {kernel.get('kernel', '?')} kernel"
    for key, label in (("center", "center"), ("fwhm", "FWHM")):
        if isinstance(kernel.get(key), (int, float)):
            title += f", {label} {kernel[key]:.2f} px"
    ax.set_title(f"{title}; columns {column - width // 2}..{column + (width - 1) // 2}", fontsize=8)
    ax.set_xlabel("cross-dispersion pixel")
    ax.set_ylabel(f"mean ({slit.units.sb_unit})")
    ax.legend(fontsize=7)


def panel_spectrum(ax: Axes, diag: SlitDiagnostics) -> None:
    """The extracted spectra with their 1-sigma errors."""
    for i, spectrum in enumerate(diag.spectra):
        scale = spectrum.units.flux_scale
        flux, err = spectrum.flux * scale, spectrum.error * scale
        ok = np.isfinite(spectrum.wavelength)
        lam = spectrum.wavelength[ok]
        ax.fill_between(
            lam, (flux - err)[ok], (flux + err)[ok], color=f"C{i}", alpha=0.3, lw=0, step="mid"
        )
        ax.step(lam, flux[ok], where="mid", color=f"C{i}", lw=0.7, label=spectrum.name)
    ax.axhline(0.0, color="0.5", lw=0.5)
    ax.set_xlabel("wavelength (um)")
    ax.set_ylabel(f"flux ({diag.spectra[0].units.flux_unit})")
    ax.legend(fontsize=7)


def panel_kernel_variation(ax: Axes, diag: SlitDiagnostics) -> None:
    """Binned center and FWHM fits with their smooth models, along the dispersion."""
    meta = diag.spectra[0].metadata
    bins = meta["bins"]
    d0 = _region_window(diag)[2]
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
        axis.set_ylabel(f"{label} (px)", color=color)
    ax.set_xlabel("dispersion pixel")
    handles = [h for a in (ax, right) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, fontsize=7, ncols=3, loc="upper left")
    ax.set_title("kernel in bins (fit_trace / fit_fwhm) and the smooth models used", fontsize=8)


panel_kernel_variation.applies = lambda diag: "bins" in diag.spectra[0].metadata


#: The panel functions `plot_slit` draws, one row each, top to bottom.
SLIT_PANELS: tuple[Callable[[Axes, SlitDiagnostics], None], ...] = (
    panel_slit_image,
    panel_kernel_slice,
    panel_kernel_variation,
    panel_spectrum,
)


def plot_slit(
    diag: SlitDiagnostics,
    path: str | Path,
    panels: Sequence[Callable[[Axes, SlitDiagnostics], None]] = SLIT_PANELS,
) -> None:
    """Write the diagnostic PNG of one slit: one row per panel.

    Parameters
    ----------
    diag : diagnostics.SlitDiagnostics
        The slit and its extraction.
    path : str or pathlib.Path
        Output PNG.
    panels : sequence of callable
        ``panel(ax, diag)`` drawers, top to bottom.
    """
    panels = [p for p in panels if getattr(p, "applies", lambda _: True)(diag)]
    fig = Figure(figsize=(9, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        panel(ax, diag)
    fig.suptitle(f"slit {diag.slit.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
