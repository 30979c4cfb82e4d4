"""A sky the kernel slice could not see, weighed over the whole slit's bins.

With ``bkg_order = "auto"`` the background degree is chosen on the kernel
slice (`.choice.choose_kernel`). For a family with a free wing shape (a
Moffat's index, fitted once for the whole slit) one slice cannot tell wide
wings from a flat sky: at column S/N 10, a 0.5 % sky (15 % of the source's
flux over a 31-row slit) was taken as wings of index 1.5-1.8 instead of the
true 2.5 by 16 of 40 slits, which then chose no background and came out
0.5-0.9 sigma high in every column (var/oracle 1.1-1.9). The whole slit holds
the information the slice lacks: its bins, at many times the slice's S/N,
share the wing shape, and a sky is smooth along them. `background_over_bins`
fits the bins again with a constant in each, which sets the wing shape a sky
leaves, then solves at those shapes every bin's fluxes with a sky flat
across the slit and a Legendre polynomial along the bins (degrees
``SKY_DEGREES``), and weighs what each gains over no sky against its ``k ln n``
(`.criterion.CRITERION`, the template error included). A constant in every
bin would cost ``ln n`` per bin: 157 for 24 bins, more than the 94-125 these
slits gained; their sky, smooth along the bins, gains nearly as much for
one to four terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelFit, KernelTemplate, fitted_params, with_params
from ..psf.linear import data_weights
from ..psf.profilefit import component_shapes
from . import trace
from .choice import score_bins
from .criterion import CRITERION
from .variation import BinData

__all__ = [
    "BackgroundEvidence",
    "background_over_bins",
    "background_fit",
    "free_wing_shape",
    "sky_design",
]


# Degrees along the bins of the sky weighed (flat across the slit).
SKY_DEGREES = (0, 1, 2, 3)


@dataclass(frozen=True)
class BackgroundEvidence:
    """What a sky smooth along the bins gains over the slice's choice of none.

    Attributes
    ----------
    degree : int or None
        The winning sky's degree along the bins; None: no sky.
    gains, levels : dict of int to float
        Every degree's ``chi2_eff`` gain over no sky, and its mean sky level
        per pixel (a degree whose level is not positive is no candidate).
    penalty : float
        ``ln n``, the cost of each term.
    n_bins, n_pixels : int
        Bins and pixels weighed.
    shape_params : dict of str to dict
        The wing shape the bins fitted without a sky, and with a constant each.
    """

    degree: int | None
    gains: dict[int, float]
    levels: dict[int, float]
    penalty: float
    n_bins: int
    n_pixels: int
    shape_params: dict[str, dict[str, float]]

    @property
    def wins(self) -> bool:
        """Whether a sky won (the slit is then refitted with a background)."""
        return self.degree is not None

    def to_meta(self) -> dict[str, Any]:
        """Plain values for the spectrum metadata."""
        return {
            "criterion": "chi2_eff + k ln(n) over the bins, k = the sky's terms along them",
            "chosen_degree": self.degree,
            "candidates": [
                {
                    "degree": d,
                    "k": d + 1,
                    "chi2_gain": float(g),
                    "level": float(self.levels[d]),
                    "value": float(-g + (d + 1) * self.penalty),
                }
                for d, g in self.gains.items()
            ],
            "n_bins": self.n_bins,
            "n_pixels": self.n_pixels,
            "shape_params": self.shape_params,
        }


def free_wing_shape(template: KernelTemplate, extra: dict) -> list[str]:
    """The template's fitted parameters besides its center, width and the data's."""
    own = (template.center_param, template.width_param, *extra)
    return [name for name in fitted_params(template) if name not in own]


def background_over_bins(
    template: KernelTemplate,
    bins: BinData,
    *,
    fit: KernelFit,
    fit_center: bool,
) -> BackgroundEvidence | None:
    """Weigh a sky smooth along the bins against none, the wing shape refitted.

    Parameters
    ----------
    template : KernelTemplate
        The family the slice chose, with the wing shape the bins fitted
        without a background.
    bins : BinData
        The bins' profiles and their fits without a background.
    fit : KernelFit
        The slice's fit: starting width and the other components' offsets.
    fit_center : bool
        Whether the bins fit the center (else it is held at theirs).

    Returns
    -------
    BackgroundEvidence or None
        None when the template has no free wing shape or fewer than two
        bins were fitted.
    """
    shape = free_wing_shape(template, bins.extra)
    none = bins.fits
    if not shape or int(none.good.sum()) < 2:
        return None
    n_cross = bins.values.shape[0]
    const = background_fit(template, bins, fit=fit, fit_center=fit_center, center=none.center)
    both = none.good & const.good
    n_bins = int(both.sum())
    if n_bins < 2:
        return None
    extra = {k: np.asarray(v, float)[both] for k, v in bins.extra.items()}
    values, sigma = bins.values[:, both], bins.sigma[:, both]
    chi2_none, n_pixels = score_bins(
        template,
        values,
        sigma,
        centers=[none.center[both]],
        widths=[none.fwhm[both]],
        offsets=fit.offsets,
        basis=polynomial_basis(n_cross, -1),
        extra=extra,
    )
    shaped = with_params(template, const.shape_params)
    params = {
        template.center_param: const.center[both],
        template.width_param: const.fwhm[both] / shaped.fwhm_per_width(),
        **extra,
    }
    shapes = component_shapes(
        shaped, np.arange(n_cross, dtype=float), params, offsets=np.asarray(fit.offsets, float)
    )
    along = (
        np.asarray(bins.wavelength, float)[both] if np.size(bins.wavelength) else np.arange(n_bins)
    )
    gains, levels = {}, {}
    for d in SKY_DEGREES:
        if d + 1 < n_bins:
            chi2, levels[d] = _smooth_sky_chi2(shapes, values, sigma, along=along, degree=d)
            gains[d] = float(chi2_none[0]) - chi2
    penalty = CRITERION.penalty(n_pixels)
    # Only a positive sky: wide wings can stand in for it, not for a negative one.
    # A negative level is what the bins' inverse-variance coadd makes of data whose
    # Poisson variance comes from the data themselves (a pixel below its mean weighs
    # more): -0.2 % of the flux per pixel on a Moffat slit with no sky at S/N 10,
    # which gained 8-20 in chi2 over 8 of 17 such slits.
    net = {d: g - (d + 1) * penalty for d, g in gains.items() if levels[d] > 0}
    best = max(net, key=net.get) if net else None
    shapes_meta = {
        "none": {n: float(getattr(template.model, n).value) for n in shape},
        "constant": {n: float(const.shape_params.get(n, np.nan)) for n in shape},
    }
    degree = best if best is not None and net[best] > 0 else None
    return BackgroundEvidence(degree, gains, levels, penalty, n_bins, n_pixels, shapes_meta)


def _smooth_sky_chi2(
    shapes, values, sigma, *, along: np.ndarray, degree: int
) -> tuple[float, float]:
    """``chi2_eff`` of the bins with their fluxes free and one sky shared by all, and its level.

    The sky is flat across the slit and a Legendre series of ``degree`` in
    ``along`` (the bins' wavelengths mapped onto [-1, 1]); every bin's
    component fluxes and the sky's terms are solved at once, by weighted
    least squares. The level is the series' mean over [-1, 1] (its constant
    term), per pixel.
    """
    _, n_bins, n_comp = shapes.shape
    lo, hi = float(np.min(along)), float(np.max(along))
    x = 2.0 * (along - lo) / (hi - lo) - 1.0 if hi > lo else np.zeros(n_bins)
    sky = np.polynomial.legendre.legvander(x, degree)  # (n_bins, degree + 1)
    a, rhs = sky_design(shapes, values, sigma, sky=sky)
    coeffs = np.linalg.lstsq(a, rhs, rcond=None)[0]
    model = a @ coeffs
    level = float(coeffs[n_bins * n_comp])
    return float(CRITERION.chi2((rhs - model)[:, None], model[:, None])[0]), level


def sky_design(shapes, values, sigma, *, sky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted design and data of the bins' fluxes with a sky shared by all bins.

    Parameters
    ----------
    shapes : ndarray, shape (n_cross, n_bins, n_comp)
        Every bin's component profiles (`.psf.profilefit.component_shapes`).
    values, sigma : ndarray, shape (n_cross, n_bins)
        The bins' profiles and uncertainties.
    sky : ndarray, shape (n_bins, k)
        The sky's terms at every bin, each flat across the slit.

    Returns
    -------
    a : ndarray, shape (n_cross * n_bins, n_bins * n_comp + k)
        Columns: every bin's component fluxes (bin-major), then the sky's
        terms; rows divided by the pixel's sigma (0 where unusable).
    rhs : ndarray, shape (n_cross * n_bins,)
        The data divided by their sigma.
    """
    n_cross, n_bins, n_comp = shapes.shape
    _, w, d = data_weights(values, sigma)
    design = np.zeros((n_cross, n_bins, n_bins * n_comp + sky.shape[1]))
    index = np.arange(n_bins)
    for j in range(n_comp):
        design[:, index, index * n_comp + j] = shapes[:, :, j]
    design[:, :, n_bins * n_comp :] = sky[None, :, :]
    design *= w[:, :, None]
    return design.reshape(-1, design.shape[2]), (d * w).reshape(-1)


def background_fit(
    template: KernelTemplate,
    bins: BinData,
    *,
    fit: KernelFit,
    fit_center: bool,
    center: float | np.ndarray,
    bkg_order: int = 0,
) -> trace.BinFits:
    """``template`` fitted to every bin with a background (width free, shape shared).

    The background is a polynomial of ``bkg_order`` across the slit in every
    bin (a constant by default). ``center`` starts the fit (the slice's, or
    every bin's own); ``fit``'s FWHM starts the width and its components move
    with the source.
    """
    return trace.fit_bins(
        template,
        bins.values,
        bins.sigma,
        bkg_order=bkg_order,
        center=center,
        fwhm=fit.fwhm,
        fit_center=fit_center,
        fit_fwhm=True,
        offsets=fit.offsets,
        extra=bins.extra,
    )
