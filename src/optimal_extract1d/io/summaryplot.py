"""The demo summary: per slit a 2-D cut-out, the spectrum over the truth, the slice and kernel.

`read_summary_slits` gathers what the figure shows from the files a step run
wrote (the s2d, its x1d and the ``scene_model`` diagnostic of every slit);
`plot_demo_summary` draws one panel group per slit, titled with the slit's
S/N and recovered-over-injected flux, in a constrained layout (no label
overlaps another). Matplotlib's object API only: the user's backend is left
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import AsinhNorm
from matplotlib.figure import Figure
from stdatamodels.jwst import datamodels

from . import slits
from .plotmarks import robust_limits, slice_and_model, stretch_limits

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SummarySlit", "plot_demo_summary", "read_summary_slits", "CUTOUT_HALF_HEIGHT"]

#: Rows shown either side of the extracted source in the 2-D cut-out.
CUTOUT_HALF_HEIGHT = 8


@dataclass(frozen=True)
class SummarySlit:
    """What the demo summary shows of one slit (dispersion along axis 1).

    Attributes
    ----------
    name : str
        Slit name.
    data, variance : ndarray, shape (n_cross, n_disp)
        The slit and its variance, as the extraction read them.
    mask : ndarray of bool, shape (n_cross, n_disp)
        Pixels the extraction could not use.
    scene : ndarray, shape (n_cross, n_disp)
        The scene model (``save_scene_model``), NaN outside the region.
    center : float
        Cross-dispersion position of the source (``source_position``).
    slice_column, slice_width : int
        The kernel slice (``meta.optimal_extraction``).
    wavelength, flux, error : ndarray, shape (n,)
        The x1d spectrum: microns, Jy, Jy.
    truth : tuple of ndarray
        Injected ``(wavelength, flux)`` in microns and Jy.
    snr, ratio : float
        Median S/N and median F / F_true (see `.cli.demo.compare_with_truth`).
    """

    name: str
    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    scene: np.ndarray
    center: float
    slice_column: int
    slice_width: int
    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    truth: tuple[np.ndarray, np.ndarray]
    snr: float
    ratio: float


def read_summary_slits(
    s2d: str | Path,
    x1d: Any,
    scene_paths: Mapping[str, str | Path],
    *,
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    figures: Sequence[Mapping[str, float]],
) -> list[SummarySlit]:
    """Gather the summary of every spectrum of a step run from its files.

    Parameters
    ----------
    s2d : str or pathlib.Path
        The input s2d file.
    x1d : ~stdatamodels.jwst.datamodels.MultiSpecModel
        The step's output, one spectrum per slit (in s2d order).
    scene_paths : mapping of str to path
        Slit name -> its ``scene_model`` file.
    truths : sequence of (ndarray, ndarray)
        Injected wavelength (microns) and flux (Jy) per spectrum.
    figures : sequence of mapping
        ``{"snr": ..., "ratio": ...}`` per spectrum.

    Returns
    -------
    list of SummarySlit
    """
    out = []
    with datamodels.open(str(s2d)) as model:
        pairs = {slits.slit_name(s, p): (s, p) for s, p in slits.iter_slits(model)}
        for spec, truth, fig in zip(x1d.spec, truths, figures, strict=True):
            meta = spec.meta.optimal_extraction
            slit, parent = pairs[spec.name]
            sd = slits.read_slit(slit, parent, variance_source="auto", drizzle_scale=1.0)
            with datamodels.open(str(scene_paths[spec.name])) as image:
                scene = np.asarray(image.data, float)
            table = spec.spec_table
            out.append(
                SummarySlit(
                    name=spec.name,
                    data=sd.data,
                    variance=sd.variance,
                    mask=sd.mask,
                    scene=scene.T if sd.disp_axis == 2 else scene,
                    center=float(meta.source_position),
                    slice_column=int(meta.slice_column),
                    slice_width=int(meta.slice_width),
                    wavelength=np.asarray(table["WAVELENGTH"], float),
                    flux=np.asarray(table["FLUX"], float),
                    error=np.asarray(table["FLUX_ERROR"], float),
                    truth=truth,
                    snr=float(fig["snr"]),
                    ratio=float(fig["ratio"]),
                )
            )
    return out


def _edges(centers: np.ndarray) -> np.ndarray | None:
    """Pixel edges from monotonic pixel centers (None when they are not)."""
    if centers.size < 2 or not np.all(np.isfinite(centers)):
        return None
    step = np.diff(centers)
    if not (np.all(step > 0) or np.all(step < 0)):
        return None
    mid = 0.5 * (centers[1:] + centers[:-1])
    return np.r_[centers[0] - step[0] / 2, mid, centers[-1] + step[-1] / 2]


def _cutout(ax: Axes, slit: SummarySlit) -> bool:
    """The slit rows around the source, asinh stretch; True when x is in microns.

    With a finite, monotonic wavelength per column the columns are drawn at
    their wavelengths, so the cut-out shares the spectrum's axis.
    """
    n_cross = slit.data.shape[0]
    c = int(round(slit.center)) if np.isfinite(slit.center) else n_cross // 2
    lo, hi = max(c - CUTOUT_HALF_HEIGHT, 0), min(c + CUTOUT_HALF_HEIGHT + 1, n_cross)
    cut = slit.data[lo:hi]
    vmin, vmax, width = stretch_limits(cut)
    norm = AsinhNorm(linear_width=width, vmin=vmin, vmax=vmax)
    edges = _edges(slit.wavelength) if slit.wavelength.size == cut.shape[1] else None
    if edges is None:
        extent = (-0.5, cut.shape[1] - 0.5, lo - 0.5, hi - 0.5)
        ax.imshow(cut, origin="lower", aspect="auto", cmap="gray", norm=norm, extent=extent)
    else:
        ax.pcolormesh(edges, np.arange(lo, hi + 1) - 0.5, cut, cmap="gray", norm=norm)
    ax.axhline(slit.center, color="C1", lw=0.5, ls="--")
    ax.tick_params(labelsize=6, labelbottom=False)
    ax.set_ylabel("row", fontsize=6)
    return edges is not None


def _spectrum(ax: Axes, slit: SummarySlit) -> None:
    """Extracted spectrum (nJy) with its 1-sigma band, over the injected truth."""
    flux, err = slit.flux * 1e9, slit.error * 1e9
    ax.fill_between(slit.wavelength, flux - err, flux + err, color="C0", alpha=0.3, lw=0)
    ax.plot(slit.wavelength, flux, color="C0", lw=0.6, label="optimal")
    ax.plot(slit.truth[0], slit.truth[1] * 1e9, color="C3", lw=0.6, alpha=0.8, label="injected")
    ax.set_ylim(robust_limits(flux, err))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("wavelength (um)", fontsize=6)
    ax.set_ylabel("flux (nJy)", fontsize=6)


def _slice(ax: Axes, slit: SummarySlit) -> None:
    """The kernel slice against the same coadd of the scene model."""
    values, sigma, model = slice_and_model(
        slit.data,
        slit.variance,
        slit.mask,
        slit.scene,
        column=slit.slice_column,
        width=slit.slice_width,
    )
    rows = np.arange(values.size)
    ax.errorbar(rows, values, sigma, fmt="o", ms=1.5, lw=0.4, color="k", label="slice")
    ax.plot(rows, model, color="C3", lw=0.8, label="kernel")
    ax.set_xlim(slit.center - 2 * CUTOUT_HALF_HEIGHT, slit.center + 2 * CUTOUT_HALF_HEIGHT)
    ax.tick_params(labelsize=6)
    ax.set_xlabel("row", fontsize=6)


def plot_demo_summary(
    summary: Sequence[SummarySlit], path: str | Path | None, *, ncols: int = 4
) -> Figure:
    """One panel group per slit: 2-D cut-out, spectrum over the truth, slice vs kernel.

    Parameters
    ----------
    summary : sequence of SummarySlit
        The slits, in order.
    path : str, pathlib.Path or None
        Output PNG; None draws without saving.
    ncols : int
        Slits per row.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; each slit is a subfigure titled
        ``slit <name>: S/N <snr>, F/F_true <ratio>``.
    """
    n = len(summary)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig = Figure(figsize=(4.6 * ncols, 3.0 * nrows), layout="constrained")
    cells = fig.subfigures(nrows, ncols, squeeze=False, wspace=0.02, hspace=0.02)
    for cell, slit in zip(cells.flat, summary, strict=False):
        grid = cell.add_gridspec(2, 2, width_ratios=(3, 1.2), height_ratios=(1, 2.2))
        cut, spec, prof = (
            cell.add_subplot(grid[0, 0]),
            cell.add_subplot(grid[1, 0]),
            cell.add_subplot(grid[:, 1]),
        )
        if _cutout(cut, slit):
            spec.sharex(cut)
        _spectrum(spec, slit)
        _slice(prof, slit)
        cell.suptitle(
            f"slit {slit.name}: S/N {slit.snr:.1f}, F/F_true {slit.ratio:.3f}", fontsize=8
        )
    if n:
        first = cells.flat[0].axes
        first[1].legend(fontsize=5, loc="best")
        first[2].legend(fontsize=5, loc="best")
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig
