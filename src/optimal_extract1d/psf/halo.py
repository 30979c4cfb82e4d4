"""A Gaussian core with a Moffat halo (index 1.5 or 1): the ``"halo"`` kernel family.

A JWST spectrograph's PSF collapsed onto the cross-dispersion axis is a core
plus extended wings (diffraction, scattering), neither a Gaussian nor a
Moffat, and a Gaussian or a Moffat fitted to it leaves the wings to the
per-column background: a few per cent of the flux are lost. `CoreHalo1D` is
a stiff family between them: a Gaussian core and a Moffat halo share their
center. The halo's ``index`` is 1.5 (wings falling as ``x**-3``, as the
example PSF file's) or 1 (a Lorentzian, ``x**-2``: the 2-D Airy pattern's
wings, falling as ``r**-3``, collapsed across the slit); it is held, and
the halo's width is tied to the core's FWHM by a ``ratio``, and its share
of the flux is a ``fraction``, optionally changing linearly with the
wavelength (``slope``). Under ``kernel = "auto"`` the ratio is held and the
fraction (and slope) fitted over the whole slit (`.scene.halo`). Its width
parameter is the core's ``stddev``; the FWHM it reports is the core's.

Both parts have closed-form pixel integrals (the normal CDF, and
``u / (2 sqrt(1 + u**2))`` or ``arctan(u) / pi`` for the halo), so
`halo_pixels` integrates them over the pixels exactly, one ``erf`` and one
square root or arctangent per pixel edge.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.modeling import Fittable1DModel, Parameter
from scipy.optimize import brentq
from scipy.special import erf

__all__ = [
    "CoreHalo1D",
    "FRACTION_BOUNDS",
    "HALO_INDICES",
    "RATIO_BOUNDS",
    "SLOPE_BOUNDS",
    "TAIL_BOUNDS",
    "fwhm_over_core",
    "halo_pixels",
    "halo_share",
]

#: FWHM of a Gaussian over its standard deviation.
FWHM_PER_SIGMA = float(2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Fit range of the halo's Moffat ``gamma`` over the core's FWHM: from a halo about as
#: wide as the core (its FWHM is 1.53 gamma) to one so broad that a slit of a few tens
#: of pixels cannot tell it from the sky.
RATIO_BOUNDS = (0.5, 3.0)
#: Fit range of the halo's share of the flux; 0 is the Gaussian (the family's limit,
#: not a candidate of ``kernel = "auto"``). A PSF's halo holds ~10-25 % of the flux;
#: a fit pulled to 30 % describes something else (an extended source, a sky between
#: nod copies: CEERS 933's emission-line galaxy asks for 41 %).
FRACTION_BOUNDS = (0.0, 0.3)
#: Fit range of the halo share's change per micron (the example PSF's grows 0.013).
SLOPE_BOUNDS = (-0.05, 0.05)
#: Range of the Lorentzian's share of an index 1.5 halo (``tail``): 0 is the x**-3
#: wings, 1 the x**-2 ones.
TAIL_BOUNDS = (0.0, 1.0)
#: Halo indices of the family, wings falling as x**-3 (the example PSF file's) and as
#: x**-2 (a Lorentzian, the Airy pattern collapsed across the slit).
HALO_INDICES = (1.5, 1.0)
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))


def _halo_density(u, gamma, index, tail=0.0):
    """The unit-area halo at ``u = t / gamma``: Moffat of index 1.5, or a Lorentzian.

    With ``tail`` > 0 a share ``tail`` of an index 1.5 halo is a Lorentzian
    of the same ``gamma`` (an index 1 halo is one already).
    """
    lorentz = 1.0 / (np.pi * gamma * (1.0 + u**2))
    if index == 1.0:
        return lorentz
    moffat = 0.5 / gamma * (1.0 + u**2) ** -1.5
    if np.all(tail == 0):
        return moffat
    return (1.0 - tail) * moffat + tail * lorentz


def _halo_cdf(u, index, tail=0.0):
    """The halo's integral from the center to ``u = t / gamma``."""
    lorentz = np.arctan(u) / np.pi
    if index == 1.0:
        return lorentz
    moffat = 0.5 * u / np.sqrt(1.0 + u**2)
    if np.all(tail == 0):
        return moffat
    return (1.0 - tail) * moffat + tail * lorentz


def _check_index(index) -> float:
    value = float(np.ravel(index)[0])
    if value not in HALO_INDICES:
        msg = f"halo index must be one of {HALO_INDICES}, got {value}"
        raise ValueError(msg)
    return value


class CoreHalo1D(Fittable1DModel):
    """Gaussian core plus a Moffat halo (index 1.5 or 1), sharing their center.

    ``amplitude * ((1 - f) N(x; mean, stddev) + f H(x; mean, gamma))`` with
    ``N`` the unit-area Gaussian, ``H`` the unit-area Moffat of index 1.5,
    ``(1 + ((x - mean) / gamma)**2)**-1.5 / (2 gamma)``, or of index 1 (a
    Lorentzian, ``1 / (pi gamma (1 + ((x - mean) / gamma)**2))``),
    ``gamma = ratio * FWHM(core) = ratio * 2 sqrt(2 ln 2) * stddev`` and the
    halo's share ``f = fraction + slope * (wavelength - reference)``: a
    halo that grows (or shrinks) linearly with the wavelength, which the data
    set (`.kernel.WAVELENGTH_PARAM`); ``wavelength`` and ``reference`` are
    never fitted.

    Parameters
    ----------
    amplitude : float
        Total flux (area) of the profile.
    mean : float
        Center.
    stddev : float
        Standard deviation of the core.
    ratio : float
        Halo ``gamma`` over the core's FWHM.
    fraction : float
        Halo share of the flux at the ``reference`` wavelength.
    slope : float
        Change of the halo share per unit wavelength (microns).
    wavelength, reference : float
        Wavelength of the profile and of ``fraction`` (microns).
    index : float
        The halo's Moffat index, one of `HALO_INDICES`; never fitted.
    """

    amplitude = Parameter(default=1.0)
    mean = Parameter(default=0.0)
    stddev = Parameter(default=1.0, bounds=(1e-6, None))
    ratio = Parameter(default=1.5, bounds=RATIO_BOUNDS)
    fraction = Parameter(default=0.1, bounds=FRACTION_BOUNDS)
    slope = Parameter(default=0.0, bounds=SLOPE_BOUNDS, fixed=True)
    wavelength = Parameter(default=0.0, fixed=True)
    reference = Parameter(default=0.0, fixed=True)
    index = Parameter(default=1.5, fixed=True)
    tail = Parameter(default=0.0, bounds=TAIL_BOUNDS, fixed=True)

    @staticmethod
    def evaluate(
        x, amplitude, mean, stddev, ratio, fraction, slope, wavelength, reference, index, tail
    ):
        """The profile at ``x``."""
        f, t, core, gamma = _core_parts(
            x, mean, stddev, ratio, fraction, slope, wavelength, reference
        )
        halo = _halo_density(t / gamma, gamma, _check_index(index), tail)
        return amplitude * ((1.0 - f) * core + f * halo)

    @staticmethod
    def fit_deriv(
        x, amplitude, mean, stddev, ratio, fraction, slope, wavelength, reference, index, tail
    ):
        """Derivatives with respect to every parameter (none for the wavelengths and index)."""
        f, t, core, gamma = _core_parts(
            x, mean, stddev, ratio, fraction, slope, wavelength, reference
        )
        u2 = (t / gamma) ** 2
        index = _check_index(index)
        share = {index: 1.0} if index == 1.0 else {1.5: 1.0 - tail, 1.0: tail}
        density = {i: _halo_density(t / gamma, gamma, i) for i in share}
        halo = d_halo_mean = halo_scale = 0.0
        for i, w in share.items():
            p = 2.0 * i  # the density falls as (1 + u2)**(-p / 2)
            h = w * density[i]
            halo = halo + h
            d_halo_mean = d_halo_mean + h * p * t / (gamma**2 * (1.0 + u2))
            halo_scale = halo_scale + h * (p * u2 / (1.0 + u2) - 1.0)  # gamma dH/dgamma
        d_amplitude = (1.0 - f) * core + f * halo
        d_mean = amplitude * ((1.0 - f) * core * t / stddev**2 + f * d_halo_mean)
        d_stddev = (
            amplitude * ((1.0 - f) * core * ((t / stddev) ** 2 - 1.0) + f * halo_scale) / stddev
        )
        d_ratio = amplitude * f * halo_scale / ratio
        d_fraction = amplitude * (halo - core)
        d_slope = d_fraction * (wavelength - reference)
        d_tail = amplitude * f * (density[1.0] - density[index])
        zero = np.zeros_like(d_amplitude)
        return [
            d_amplitude,
            d_mean,
            d_stddev,
            d_ratio,
            d_fraction,
            d_slope,
            zero,
            zero,
            zero,
            d_tail,
        ]


def _core_parts(x, mean, stddev, ratio, fraction, slope, wavelength, reference):
    """The halo share, offsets from the center, unit-area core and halo ``gamma`` at ``x``."""
    f = halo_share(fraction, slope, wavelength, reference)
    t = x - mean
    core = np.exp(-0.5 * (t / stddev) ** 2) / (_SQRT_2PI * stddev)
    return f, t, core, ratio * FWHM_PER_SIGMA * stddev


def halo_share(fraction, slope, wavelength, reference):
    """The halo's share of the flux at ``wavelength``, kept within [0, 0.95]."""
    return np.clip(fraction + slope * (wavelength - reference), 0.0, 0.95)


@functools.lru_cache(maxsize=64)
def fwhm_over_core(ratio: float, fraction: float, index: float = 1.5) -> float:
    """The whole profile's FWHM over its core's (at least 1: the halo widens the half maximum)."""
    s = 1.0 / FWHM_PER_SIGMA

    def excess(x):  # the profile at x less half its peak, for a core of FWHM 1
        args = (1.0, 0.0, s, ratio, fraction, 0.0, 0.0, 0.0, index, 0.0)
        return CoreHalo1D.evaluate(x, *args) - 0.5 * CoreHalo1D.evaluate(0.0, *args)

    hi = 0.5
    while excess(hi) > 0:
        hi *= 2.0
    return 2.0 * brentq(excess, 0.0, hi, xtol=1e-10)


def halo_pixels(
    y: np.ndarray, model: CoreHalo1D, params: Mapping[str, Any], *, names: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Exact pixel integrals of a unit-area `CoreHalo1D` and their derivatives.

    With pixel edges ``a, b = y -/+ 0.5 - mean``, the core's integral is
    ``(erf(b / s sqrt2) - erf(a / s sqrt2)) / 2`` and the halo's
    ``C(b / gamma) - C(a / gamma)``, ``C(u) = u / (2 sqrt(1 + u**2))`` (index
    1.5) or ``arctan(u) / pi`` (index 1). With
    ``n(t)`` and ``h(t)`` the two densities at an edge, ``d/dmean = (1 - f)
    (n(a) - n(b)) + f (h(a) - h(b))``, ``d/dstddev = [(1 - f) (a n(a) - b n(b))
    + f (a h(a) - b h(b))] / s``, ``d/dratio = f (a h(a) - b h(b)) / ratio`` and
    ``d/dfraction`` the halo's integral less the core's (times the wavelength
    less the reference for ``d/dslope``).

    Parameters
    ----------
    y : ndarray, shape (n_cross,)
        Pixel centers.
    model : CoreHalo1D
        Values of the parameters missing from ``params``.
    params : mapping of str to ndarray, shape (n_prof,), or float
        Parameter values (the amplitude is ignored).
    names : sequence of str
        Parameters to differentiate.

    Returns
    -------
    values : ndarray, shape (n_cross, n_prof)
    derivatives : dict of str to ndarray, shape (n_cross, n_prof)
    """

    def value(name):
        v = params.get(name, float(getattr(model, name).value))
        return np.asarray(v, float).reshape(1, -1)

    mean, s = value("mean"), value("stddev")
    ratio = value("ratio")
    index = _check_index(params.get("index", model.index.value))
    tail = value("tail") if index == 1.5 else 0.0
    lever = value("wavelength") - value("reference")
    f = halo_share(value("fraction"), value("slope"), value("wavelength"), value("reference"))
    gamma = ratio * FWHM_PER_SIGMA * s
    y = np.asarray(y, float)
    contiguous = y.size > 1 and bool(np.all(np.diff(y) == 1.0))
    if contiguous:  # neighbouring pixels share an edge: one erf and one root per edge
        t = (y[0] - 0.5 + np.arange(y.size + 1.0))[:, None] - mean
    else:
        t = np.concatenate([y[:, None] - 0.5, y[:, None] + 0.5]) - mean
    u = t / gamma
    core_cdf = 0.5 * erf(t / (np.sqrt(2.0) * s))
    halo_cdf = _halo_cdf(u, index, tail)

    def pixels(edge_values):
        if contiguous:
            return np.diff(edge_values, axis=0)
        return edge_values[y.size :] - edge_values[: y.size]

    core, halo = pixels(core_cdf), pixels(halo_cdf)
    values = (1.0 - f) * core + f * halo
    if not names:
        return values, {}
    n_edge = np.exp(-0.5 * (t / s) ** 2) / (_SQRT_2PI * s)
    h_edge = _halo_density(u, gamma, index, tail)
    # with F(edge) the CDF at an edge, d/dmean = -(F'(b) - F'(a)), and a width w
    # scaling the edges as t / w gives dF/dw = -t F'(t) / w
    derivatives = {
        "mean": lambda: -pixels((1.0 - f) * n_edge + f * h_edge),
        "stddev": lambda: -pixels(t * ((1.0 - f) * n_edge + f * h_edge)) / s,
        "ratio": lambda: -pixels(t * f * h_edge) / ratio,
        "fraction": lambda: halo - core,
        "slope": lambda: (halo - core) * lever,
        "tail": lambda: f * pixels(_halo_cdf(u, 1.0) - _halo_cdf(u, index)),
    }
    return values, {name: derivatives[name]() for name in names}
