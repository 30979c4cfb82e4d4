"""PSF templates (astropy.modeling 1-D models) and the kernel fit to a slice.

A *template* is any astropy 1-D model with an amplitude, a center and a
width parameter (Gaussian1D, Moffat1D, Lorentz1D, or a user model). It is
always evaluated integrated over the pixel, as the data are (`.psf.evaluate`).
The *kernel* is the template plus a polynomial background, fitted to the
coadded cross-dispersion slice by `.psf.profilefit.fit_kernel`.

An astropy Gaussian1D or Moffat1D, named (``"gaussian"``, ``"moffat"``) or
given as an instance, has an analytic FWHM and, for the Moffat index, a
physical fit range; other models get a numeric FWHM and their own bounds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import Fittable1DModel, Model, models

from ..errors import ParameterError
from .halo import FWHM_PER_SIGMA, CoreHalo1D

__all__ = [
    "KernelTemplate",
    "KernelFit",
    "make_template",
    "shape_bounds",
    "with_params",
    "fitted_params",
    "wavelength_params",
    "WAVELENGTH_PARAM",
]

log = logging.getLogger(__name__)

_CENTER_NAMES = ("mean", "x_0", "x0", "center", "loc", "mu")
_WIDTH_NAMES = ("stddev", "sigma", "fwhm", "gamma", "width", "scale")
_AMPLITUDE_NAMES = ("amplitude", "amp", "norm")
#: A template parameter of this name is the wavelength (microns) of the profile; the
#: data set it (per column, bin or slice), fits never vary it.
WAVELENGTH_PARAM = "wavelength"


@dataclass(frozen=True)
class KernelTemplate:
    """A PSF shape and the names of its amplitude, center and width parameters.

    Attributes
    ----------
    name : str
        Short name recorded in the output metadata.
    model : astropy.modeling.Fittable1DModel
        Prototype; its other shape parameters (e.g. Moffat ``alpha``) are
        used as given, or as fitted once the template comes out of
        `.psf.profilefit.fit_kernel`.
    amplitude_param, center_param, width_param : str
        Parameter names of ``model``.
    """

    name: str
    model: Fittable1DModel
    amplitude_param: str
    center_param: str
    width_param: str

    def fwhm_per_width(self) -> float:
        """FWHM of the template divided by its width parameter (pixels per unit)."""
        width = float(getattr(self.model, self.width_param).value)
        if type(self.model) in (models.Gaussian1D, CoreHalo1D):  # a halo's FWHM: its core's
            return FWHM_PER_SIGMA
        if type(self.model) is models.Moffat1D:
            return moffat_fwhm_per_gamma(self.model.alpha.value)
        return _numeric_fwhm(self) / abs(width)

    def fwhm_per_width_at(self, shape: Mapping[str, float]) -> float:
        """`fwhm_per_width` with some shape parameters set (no model copy for known templates)."""
        if type(self.model) in (models.Gaussian1D, CoreHalo1D):
            return self.fwhm_per_width()
        if type(self.model) is models.Moffat1D:
            return moffat_fwhm_per_gamma(shape.get("alpha", self.model.alpha.value))
        return with_params(self, shape).fwhm_per_width()

    def reference_fwhm(self) -> float | None:
        """FWHM (pixels) of the model as given, if it is a PSF reference; else None.

        A model with a true ``reference_psf`` attribute (`.psf.tabulated.TabulatedPSF1D`)
        knows its expected width: fits start from it and the fallback kernel
        uses it.
        """
        if not getattr(self.model, "reference_psf", False):
            return None
        return abs(float(getattr(self.model, self.width_param).value)) * self.fwhm_per_width()


def make_template(kernel: str | Fittable1DModel, *, name: str | None = None) -> KernelTemplate:
    """Build the template for a kernel name or an astropy 1-D model.

    Parameters
    ----------
    kernel : str or astropy.modeling.Fittable1DModel
        ``"gaussian"``, ``"moffat"``, or a model instance whose parameters
        include an amplitude, a center and a width (names such as
        ``amplitude``/``mean``/``stddev`` or ``x_0``/``fwhm``/``scale``).
        Parameters marked ``fixed`` in the model are never fitted; one named
        `WAVELENGTH_PARAM` is set from the data (see `wavelength_params`).
        A Gaussian1D or Moffat1D instance is treated as the named kernel
        (analytic FWHM, Moffat index bounds), starting from its own values.
    name : str, optional
        Name recorded in the metadata; the model's class name (lower case) when None.

    Returns
    -------
    KernelTemplate

    Raises
    ------
    ParameterError
        If the name is unknown or the model's parameters cannot be identified.
    """
    if isinstance(kernel, str):
        if kernel == "gaussian":
            return KernelTemplate(
                "gaussian", models.Gaussian1D(1.0, 0.0, 1.0), "amplitude", "mean", "stddev"
            )
        if kernel == "moffat":
            return KernelTemplate(
                "moffat", models.Moffat1D(1.0, 0.0, 1.0, 2.5), "amplitude", "x_0", "gamma"
            )
        if kernel == "halo":
            return KernelTemplate("halo", CoreHalo1D(), "amplitude", "mean", "stddev")
        msg = f"unknown kernel {kernel!r}: use 'gaussian', 'moffat', 'halo' or an astropy 1-D model"
        raise ParameterError(msg)
    if not (isinstance(kernel, Model) and kernel.n_inputs == 1 and kernel.n_outputs == 1):
        msg = f"kernel must be a name or an astropy 1-D model, got {type(kernel).__name__}"
        raise ParameterError(msg)
    names = kernel.param_names
    picked = [
        next((n for n in cands if n in names), None)
        for cands in (_AMPLITUDE_NAMES, _CENTER_NAMES, _WIDTH_NAMES)
    ]
    if None in picked:
        msg = (
            f"cannot identify amplitude/center/width among the parameters {names} of "
            f"{type(kernel).__name__}; expected one of {_AMPLITUDE_NAMES}, "
            f"{_CENTER_NAMES}, {_WIDTH_NAMES}"
        )
        raise ParameterError(msg)
    return KernelTemplate(name or type(kernel).__name__.lower(), kernel.copy(), *picked)


def moffat_fwhm_per_gamma(alpha: float) -> float:
    """A Moffat's FWHM over its ``gamma``: ``2 sqrt(2^(1/alpha) - 1)``.

    NaN or inf for an index <= 0 or ~0 (`.profilefit` rejects such a fit).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return float(2.0 * np.sqrt(np.power(2.0, 1.0 / np.float64(alpha)) - 1.0))


def _numeric_fwhm(template: KernelTemplate) -> float:
    m = template.model
    c = float(getattr(m, template.center_param).value)
    w = abs(float(getattr(m, template.width_param).value))
    x = np.linspace(c - 20 * w, c + 20 * w, 8001)
    y = m(x)
    above = x[y >= 0.5 * np.max(y)]
    return float(above[-1] - above[0]) if above.size > 1 else w


@dataclass(frozen=True)
class KernelFit:
    """The kernel fitted to one cross-dispersion slice.

    Attributes
    ----------
    template : KernelTemplate
        Template carrying the fitted shape parameters.
    center : float
        Fitted center, cross-dispersion pixels of the fitted array.
    fwhm : float
        Fitted FWHM in pixels.
    amplitude : float
        Fitted peak amplitude (data units).
    bkg_coeffs : tuple of float
        Background coefficients: Legendre polynomials over the slice pixels
        mapped onto [-1, 1] (see `.core.horne.polynomial_basis`).
    snr : float
        Signal-to-noise ratio of the PSF flux in the slice.
    chi2_reduced : float
        Reduced chi-square of the fit.
    flux : float
        Flux of the source in the slice (data units summed over pixels).
    chi2 : float
        Chi-square of the fit.
    offsets : tuple of float
        Center offsets (pixels) of the other components fitted with the source:
        further sources (positive flux) and negative nod copies.
    component_flux, component_snr : tuple of float
        Flux in the slice of each other component (data units) and its S/N.
    """

    template: KernelTemplate
    center: float
    fwhm: float
    amplitude: float
    bkg_coeffs: tuple[float, ...]
    snr: float
    chi2_reduced: float
    flux: float = float("nan")
    chi2: float = float("nan")
    offsets: tuple[float, ...] = ()
    component_flux: tuple[float, ...] = ()
    component_snr: tuple[float, ...] = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        """``"source"`` or ``"nod"`` (negative copy) for every other component."""
        return tuple("source" if f > 0 else "nod" for f in self.component_flux)

    def to_meta(self) -> dict[str, Any]:
        """Fitted values as plain Python types, for the spectrum metadata."""
        shape = {
            n: float(getattr(self.template.model, n).value) for n in self.template.model.param_names
        }
        return {
            "kernel": self.template.name,
            "center": float(self.center),
            "fwhm": float(self.fwhm),
            "amplitude": float(self.amplitude),
            "flux": float(self.flux),
            "bkg_coeffs": [float(c) for c in self.bkg_coeffs],
            "snr": float(self.snr),
            "chi2_reduced": float(self.chi2_reduced),
            "psf_parameters": shape,
            "components": [
                {"offset": float(o), "flux": float(f), "snr": float(n), "kind": k}
                for o, f, n, k in zip(
                    self.offsets, self.component_flux, self.component_snr, self.kinds, strict=True
                )
            ],
        }


def shape_bounds(template: KernelTemplate, n_cross: int) -> dict[str, tuple[float, float]]:
    """Fit bounds of the native non-linear parameters of a template.

    The center stays on the slit, the FWHM between 0.4 pixel and the slit
    length; other shape parameters use the astropy bounds, or a physical
    range for known templates (Moffat index 0.8-20, for an astropy Moffat1D).
    """
    m = template.model
    per = template.fwhm_per_width()
    bounds = {
        template.center_param: (-0.5, n_cross - 0.5),
        template.width_param: (0.4 / per, max(n_cross, 2) / per),
    }
    for name in m.param_names:
        if name in bounds or name == template.amplitude_param:
            continue
        lo, hi = getattr(m, name).bounds
        if type(m) is models.Moffat1D and name == "alpha":
            lo, hi = 0.8, 20.0
        bounds[name] = (-np.inf if lo is None else lo, np.inf if hi is None else hi)
    return bounds


def with_params(template: KernelTemplate, params: Mapping[str, float]) -> KernelTemplate:
    """A copy of the template with some native parameters set (itself if none changes)."""
    m = template.model
    if all(float(getattr(m, name).value) == float(value) for name, value in params.items()):
        return template  # templates are never modified in place
    model = m.copy()
    for name, value in params.items():
        setattr(model, name, float(value))
    return dataclasses.replace(template, model=model)


def fitted_params(template: KernelTemplate) -> list[str]:
    """Native parameters a fit may vary: all but the amplitude and the ``fixed`` ones."""
    fixed = template.model.fixed
    return [n for n in template.model.param_names if n != template.amplitude_param and not fixed[n]]


def wavelength_params(template: KernelTemplate, wavelength) -> dict[str, np.ndarray]:
    """The template parameters the data set: ``{WAVELENGTH_PARAM: wavelength}`` or ``{}``.

    Parameters
    ----------
    template : KernelTemplate
        Template; only one with a parameter named `WAVELENGTH_PARAM` takes it.
    wavelength : float or ndarray
        Wavelength (microns) of every profile (column, bin or slice).

    Returns
    -------
    dict of str to ndarray
        To pass as ``extra``/``start`` values to the evaluation and fit functions.
    """
    if WAVELENGTH_PARAM not in template.model.param_names:
        return {}
    return {WAVELENGTH_PARAM: np.asarray(wavelength, float)}
