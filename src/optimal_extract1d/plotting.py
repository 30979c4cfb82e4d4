"""Matplotlib figures: the demo summary (diagnostic plots come later)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .simulate import PIXEL_AREA_SR  # noqa: E402

__all__ = ["plot_demo_summary"]


def plot_demo_summary(x1d, sims, path: Path) -> None:
    """Grid of extracted spectra (with 1-sigma band) over the injected truth."""
    n = len(x1d.spec)
    ncol = 4
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.2 * nrow), squeeze=False, sharex=True)
    for ax, spec, sim in zip(axes.flat, x1d.spec, sims, strict=False):
        t = spec.spec_table
        lam, flux, err = t["WAVELENGTH"], t["FLUX"] * 1e9, t["FLUX_ERROR"] * 1e9
        ax.fill_between(lam, flux - err, flux + err, color="C0", alpha=0.3, lw=0)
        ax.plot(lam, flux, color="C0", lw=0.7, label="optimal")
        ax.plot(
            sim.wavelength,
            sim.flux * PIXEL_AREA_SR * 1e15,
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
    plt.close(fig)
