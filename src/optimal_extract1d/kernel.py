"""PSF templates (astropy.modeling 1-D models) and the kernel fit to a slice.

A *template* is any astropy 1-D model with an amplitude, a centre and a
width parameter (Gaussian1D, Moffat1D, Lorentz1D, or a user model). The
*kernel* is the template plus a Polynomial1D background, fitted to the
coadded cross-dispersion slice with astropy's TRF least-squares fitter.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import Fittable1DModel, Model, fitting, models
from astropy.utils.exceptions import AstropyUserWarning

from .errors import ParameterError, ProfileFitError

__all__ = [
    "KernelTemplate",
    "KernelFit",
    "make_template",
    "fit_kernel",
    "evaluate_template",
]

log = logging.getLogger(__name__)

_CENTER_NAMES = ("mean", "x_0", "x0", "center", "loc", "mu")
_WIDTH_NAMES = ("stddev", "sigma", "fwhm", "gamma", "width", "scale")
_AMPLITUDE_NAMES = ("amplitude", "amp", "norm")
# A fit whose flux is below this S/N is treated as "no signal".
MIN_KERNEL_SNR = 5.0


@dataclass(frozen=True)
class KernelTemplate:
    """A PSF shape and the names of its amplitude, centre and width parameters.

    Attributes
    ----------
    name : str
        Short name recorded in the output metadata.
    model : astropy.modeling.Fittable1DModel
        Prototype; its other shape parameters (e.g. Moffat ``alpha``) are
        used as given, or as fitted once the template comes out of `fit_kernel`.
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
        if self.name == "gaussian":
            return 2.0 * np.sqrt(2.0 * np.log(2.0))
        if self.name == "moffat":
            alpha = np.float64(self.model.alpha.value)
            # NaN or inf for a fitted alpha <= 0 or ~0: `_summarize` rejects the fit.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return float(2.0 * np.sqrt(np.power(2.0, 1.0 / alpha) - 1.0))
        return _numeric_fwhm(self) / abs(width)


def make_template(kernel: str | Fittable1DModel) -> KernelTemplate:
    """Build the template for a kernel name or an astropy 1-D model.

    Parameters
    ----------
    kernel : str or astropy.modeling.Fittable1DModel
        ``"gaussian"``, ``"moffat"``, or a model instance whose parameters
        include an amplitude, a centre and a width (names such as
        ``amplitude``/``mean``/``stddev`` or ``x_0``/``fwhm``).

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
        msg = f"unknown kernel {kernel!r}: use 'gaussian', 'moffat' or an astropy 1-D model"
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
            f"cannot identify amplitude/centre/width among the parameters {names} of "
            f"{type(kernel).__name__}; expected one of {_AMPLITUDE_NAMES}, "
            f"{_CENTER_NAMES}, {_WIDTH_NAMES}"
        )
        raise ParameterError(msg)
    return KernelTemplate(type(kernel).__name__.lower(), kernel.copy(), *picked)


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
        Fitted centre, cross-dispersion pixels of the fitted array.
    fwhm : float
        Fitted FWHM in pixels.
    amplitude : float
        Fitted peak amplitude (data units).
    bkg_coeffs : tuple of float
        Polynomial1D background coefficients (domain = the slice pixels,
        window [-1, 1]).
    snr : float
        Signal-to-noise ratio of the PSF flux in the slice.
    chi2_reduced : float
        Reduced chi-square of the fit.
    """

    template: KernelTemplate
    center: float
    fwhm: float
    amplitude: float
    bkg_coeffs: tuple[float, ...]
    snr: float
    chi2_reduced: float

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
            "bkg_coeffs": [float(c) for c in self.bkg_coeffs],
            "snr": float(self.snr),
            "chi2_reduced": float(self.chi2_reduced),
            "psf_parameters": shape,
        }


def evaluate_template(
    template: KernelTemplate, y: np.ndarray, centers: np.ndarray, fwhm: np.ndarray
) -> np.ndarray:
    """Evaluate the unit-amplitude template at many centres and widths at once.

    Parameters
    ----------
    template : KernelTemplate
        Shape to evaluate (other shape parameters as stored in the template).
    y : ndarray, shape (n_cross,)
        Cross-dispersion pixel coordinates.
    centers, fwhm : ndarray, shape (n_disp,)
        Centre and FWHM (pixels) for every column.

    Returns
    -------
    ndarray, shape (n_cross, n_disp)
        Template values (not normalized).
    """
    m = template.model
    width = np.asarray(fwhm, float) / template.fwhm_per_width()
    values = []
    for name in m.param_names:
        if name == template.amplitude_param:
            values.append(1.0)
        elif name == template.center_param:
            values.append(np.asarray(centers, float)[None, :])
        elif name == template.width_param:
            values.append(width[None, :])
        else:
            values.append(float(getattr(m, name).value))
    return np.asarray(type(m).evaluate(np.asarray(y, float)[:, None], *values), float)


def fit_kernel(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    center: float | None = None,
    fwhm: float | None = None,
) -> KernelFit:
    """Fit PSF template + Polynomial1D background to a 1-D cross-dispersion slice.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape to fit.
    values : ndarray, shape (n_cross,)
        Coadded slice (NaN where no data).
    sigma : ndarray, shape (n_cross,)
        Uncertainty of ``values``.
    bkg_order : int
        Background polynomial degree; -1 = no background term.
    center, fwhm : float, optional
        Starting centre and FWHM in pixels; from the data when None.

    Returns
    -------
    KernelFit

    Raises
    ------
    ProfileFitError
        When too few pixels are valid, the fit does not converge to a positive
        source inside the slice, or the source is not significant.
    """
    y = np.arange(values.size, dtype=float)
    ok = np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)
    n_free = 3 + max(bkg_order + 1, 0)
    if ok.sum() <= n_free:
        msg = f"only {int(ok.sum())} valid pixels in the slice for {n_free} free parameters"
        raise ProfileFitError(msg)
    yv, dv, sv = y[ok], values[ok], sigma[ok]
    c0, f0 = _initial_guess(yv, dv, sv, center, fwhm)
    compound = _build_kernel(template, y, dv, c0, f0, bkg_order)
    fitter = fitting.TRFLSQFitter()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The fit may be unsuccessful", category=AstropyUserWarning
        )
        try:
            fitted = fitter(compound, yv, dv, weights=1.0 / sv, maxiter=200)
        except (fitting.NonFiniteValueError, ValueError) as err:  # the fit diverged
            msg = f"the kernel fit failed ({type(err).__name__}: {str(err).splitlines()[0]})"
            raise ProfileFitError(msg) from err
    return _summarize(template, fitted, yv, dv, sv, bkg_order, values.size)


def _initial_guess(y, d, s, center, fwhm):
    if center is None:
        snr = np.convolve(d / s, np.ones(3) / 3.0, mode="same")
        center = float(y[np.argmax(snr)])
    if fwhm is None:
        fwhm = 2.0
    return float(center), float(fwhm)


def _build_kernel(template, y, d, center, fwhm, bkg_order):
    psf = template.model.copy()
    amp = max(float(np.nanmax(d) - np.nanmedian(d)), 1e-30)
    setattr(psf, template.amplitude_param, amp)
    setattr(psf, template.center_param, center)
    setattr(psf, template.width_param, fwhm / template.fwhm_per_width())
    getattr(psf, template.amplitude_param).bounds = (0.0, None)
    getattr(psf, template.center_param).bounds = (-0.5, y.size - 0.5)
    w_per = 1.0 / template.fwhm_per_width()
    getattr(psf, template.width_param).bounds = (0.4 * w_per, max(y.size, 2) * w_per)
    if bkg_order < 0:
        return psf
    bkg = models.Polynomial1D(bkg_order, domain=(0.0, max(y.size - 1.0, 1.0)), window=(-1.0, 1.0))
    return psf + bkg


def _summarize(template, fitted, y, d, s, bkg_order, n_cross) -> KernelFit:
    psf = fitted[0] if bkg_order >= 0 else fitted
    bkg = fitted[1] if bkg_order >= 0 else None
    params = np.asarray(fitted.parameters, float)
    if not np.all(np.isfinite(params)):
        msg = "the kernel fit returned non-finite parameters"
        raise ProfileFitError(msg)
    fit_template = KernelTemplate(
        template.name,
        psf.copy(),
        template.amplitude_param,
        template.center_param,
        template.width_param,
    )
    center = float(getattr(psf, template.center_param).value)
    width = abs(float(getattr(psf, template.width_param).value))
    fwhm = width * fit_template.fwhm_per_width()
    if not (np.isfinite(fwhm) and fwhm > 0):
        msg = f"the kernel fit returned an unusable shape (FWHM {fwhm:.3g} px)"
        raise ProfileFitError(msg)
    amplitude = float(getattr(psf, template.amplitude_param).value)
    resid = (d - fitted(y)) / s
    dof = max(y.size - params.size, 1)
    shape = psf(y) / max(amplitude, 1e-300)
    snr = _psf_snr(shape, d - (bkg(y) if bkg is not None else 0.0), s)
    if not (amplitude > 0 and -0.5 <= center <= n_cross - 0.5):
        msg = (
            f"no positive source inside the slice (amplitude {amplitude:.3g}, centre {center:.2f})"
        )
        raise ProfileFitError(msg)
    if not snr >= MIN_KERNEL_SNR:
        msg = f"no significant source in the slice (S/N {snr:.2f} < {MIN_KERNEL_SNR})"
        raise ProfileFitError(msg)
    return KernelFit(
        template=fit_template,
        center=center,
        fwhm=float(fwhm),
        amplitude=amplitude,
        bkg_coeffs=tuple(float(c) for c in bkg.parameters) if bkg is not None else (),
        snr=float(snr),
        chi2_reduced=float(np.sum(resid**2) / dof),
    )


def _psf_snr(shape: np.ndarray, d: np.ndarray, s: np.ndarray) -> float:
    w = shape / s**2
    denom = np.sum(shape * w)
    if not denom > 0:
        return 0.0
    return float(np.sum(w * d) / denom * np.sqrt(denom))
