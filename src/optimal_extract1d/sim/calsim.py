"""Simulated unresampled (cal) nod exposures of one source, with known truth.

The pure half (numpy only); `.sim.calmodels` wraps the arrays in SlitModels
with a NIRSpec-like WCS (``detector -> slit_frame -> world``).

The geometry is that of a NIRSpec MOS slitlet on the detector: the slit's
center row bends with the dispersion pixel (a tilted, curved trace), the
lines of equal wavelength are tilted against the columns, and the same
wavelength solution holds in every exposure. The source is nodded between
the shutters of a three-shutter slitlet: in exposure ``i`` it sits
``nods[i]`` shutter pitches from the slitlet center. The sky is the same on
a detector pixel in every exposure (as nod subtraction assumes), with bar
shadows across the slit. The variance arrays are the expectations the noise
is drawn from; cosmic rays are added to the data with no DQ flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..psf.pointwise import pixel_profile

__all__ = ["CalGeometry", "CalExposureArrays", "CalSimulation", "simulate_cal", "SHUTTER_PITCH"]

#: Shutter pitch along the slit, in slit_frame units (one open shutter = 1).
SHUTTER_PITCH = 1.15
_SLIT_HALF_LENGTH = 2.2  # slit_frame units, for a three-shutter slitlet plus margins


@dataclass(frozen=True)
class CalGeometry:
    """Detector geometry of the slit, shared by all exposures.

    Attributes
    ----------
    n_cross, n_disp : int
        Rows and columns of the cut-out.
    center : tuple of 3 float
        Slit center row ``c0 + c1 x + c2 x^2`` (x = column): tilted and curved.
    units_per_pixel : float
        Slit-frame units per detector row (NIRSpec: ~0.228).
    wavelength : tuple of 3 float
        ``l0 + l1 x + l2 x^2`` microns at the slit center.
    line_tilt : float
        Columns the lines of equal wavelength move per row off the slit center.
    """

    n_cross: int = 25
    n_disp: int = 300
    center: tuple[float, float, float] = (11.0, 0.01, 1.5e-5)
    units_per_pixel: float = 0.2283
    wavelength: tuple[float, float, float] = (1.0, 0.012, 1.0e-5)
    line_tilt: float = 0.05

    def slit_y(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Slit-frame ``y`` relative to the slitlet center (decreasing with the row, as NIRSpec)."""
        c0, c1, c2 = self.center
        return (c0 + c1 * x + c2 * x * x - y) * self.units_per_pixel

    def wavelength_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Wavelength (microns) of every pixel."""
        c0, c1, c2 = self.center
        l0, l1, l2 = self.wavelength
        return l0 + l1 * x + l2 * x * x + l1 * self.line_tilt * (y - c0 - c1 * x - c2 * x * x)


@dataclass(frozen=True)
class CalExposureArrays:
    """One simulated exposure, dispersion along x, in MJy/sr.

    Attributes
    ----------
    data, var_poisson, var_rnoise, var_flat : ndarray, shape (n_cross, n_disp)
    dq : ndarray of uint32
        DO_NOT_USE outside the slit.
    nod : int
        Shutter index of the source (0 = slitlet center).
    source_ypos : float
        Source position in its shutter (slit-frame units).
    cosmic_rays : ndarray of bool
        Pixels hit by a cosmic ray.
    profile : ndarray, shape (n_cross, n_disp)
        True unit-flux profile of every pixel (fraction of the source flux).
    """

    data: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    dq: np.ndarray
    nod: int
    source_ypos: float
    cosmic_rays: np.ndarray
    profile: np.ndarray


@dataclass(frozen=True)
class CalSimulation:
    """Simulated exposures and the truth.

    Attributes
    ----------
    geometry : CalGeometry
    exposures : tuple of CalExposureArrays
    truth_wavelength, truth_flux : ndarray
        The injected spectrum (microns, Jy) on a fine grid; see `true_flux`.
    fwhm : tuple of 2 float
        FWHM (pixels) at the blue and red ends (linear in wavelength between).
    pixel_area : float
        Pixel solid angle (sr).
    """

    geometry: CalGeometry
    exposures: tuple[CalExposureArrays, ...]
    truth_wavelength: np.ndarray
    truth_flux: np.ndarray
    fwhm: tuple[float, float]
    pixel_area: float

    def true_flux(self, wavelength: np.ndarray) -> np.ndarray:
        """The injected flux (Jy) at the given wavelengths."""
        return np.interp(wavelength, self.truth_wavelength, self.truth_flux)


def simulate_cal(
    rng: np.random.Generator,
    *,
    geometry: CalGeometry | None = None,
    snr: float = 30.0,
    nods: tuple[int, ...] = (0, 1, -1),
    source_ypos: float = -0.1,
    fwhm: tuple[float, float] = (1.6, 2.6),
    kernel: str = "gaussian",
    sky: float = 0.5,
    n_cosmic_rays: int = 0,
    lines: tuple[tuple[float, float], ...] = (),
    pixel_area: float = 4.85e-13,
    flat_error: float = 0.0,
    measured_variance: bool = False,
) -> CalSimulation:
    """Simulate nod exposures of one point source.

    Parameters
    ----------
    rng : numpy.random.Generator
    geometry : CalGeometry, optional
        Detector geometry; the default is NIRSpec-PRISM-like (25 x 300 px).
    snr : float
        S/N of the optimal flux of one exposure in one column at the median
        continuum (with the true profile and variance, sky known).
    nods : tuple of int
        Shutter index of the source in each exposure.
    source_ypos : float
        Source position in its shutter (slit-frame units).
    fwhm : tuple of 2 float
        FWHM along the slit (pixels) at the blue and red ends.
    kernel : str
        ``"gaussian"`` or ``"moffat"``.
    sky : float
        Sky per pixel as a fraction of the source's peak pixel (median column).
    n_cosmic_rays : int
        Cosmic rays per exposure (5-50 sigma, no DQ flag).
    lines : tuple of tuple of 2 float
        Emission lines ``(wavelength, peak)`` added to the continuum (Gaussian of
        1.5 columns sigma; peak in Jy).
    pixel_area : float
        Pixel solid angle (sr); data are in MJy/sr.
    flat_error : float
        Relative error of the flat field: every detector pixel's signal is
        off by a fixed factor ``1 + N(0, flat_error)``, and VAR_FLAT is
        ``(flat_error x data)^2``, from the measured data as in the pipeline.
    measured_variance : bool
        VAR_POISSON from the measured signal (``max(data, 0)``, as the
        pipeline's ramp fit does) instead of the true one.

    Returns
    -------
    CalSimulation
    """
    g = geometry or CalGeometry()
    y, x = np.mgrid[: g.n_cross, : g.n_disp].astype(float)
    lam = g.wavelength_at(x, y)
    base = g.slit_y(x, y)
    inside = np.abs(base) <= _SLIT_HALF_LENGTH
    fine = np.linspace(np.nanmin(lam) - 0.1, np.nanmax(lam) + 0.1, 4000)
    cont = 1e-6 * (1.0 + 0.3 * np.sin(2.0 * fine) + 0.1 * fine)
    step = g.wavelength[1]
    for center, peak in lines:
        cont = cont + peak * np.exp(-0.5 * ((fine - center) / (1.5 * step)) ** 2)
    truth = np.interp(lam, fine, cont)
    width = fwhm[0] + (fwhm[1] - fwhm[0]) * (lam - lam.min()) / (lam.max() - lam.min())
    shadow = 1.0 + 0.15 * np.cos(2 * np.pi * (base / SHUTTER_PITCH))
    median_peak = 1e-6 * float(pixel_profile(kernel, np.zeros(1), np.median(width))[0])
    sky_flux = sky * median_peak * shadow * (1.0 + 0.2 * (lam - lam.mean()))
    # noise scale: one exposure's optimal S/N at the median continuum, per column
    mid = g.n_disp // 2
    prof_mid = pixel_profile(
        kernel, (base[:, mid] - source_ypos) / g.units_per_pixel, width[:, mid]
    )
    src_mid = 1e-6 * prof_mid
    floor = 0.2 * median_peak
    info = np.sum(src_mid**2 / (sky_flux[:, mid] + src_mid + floor))
    c = info / snr**2
    to_sb = 1.0 / (pixel_area * 1e6)
    # the same detector pixels in every exposure (drawn only when asked: same streams otherwise)
    flat = 1.0 + flat_error * rng.normal(size=lam.shape) if flat_error > 0 else 1.0
    exposures = []
    for nod in nods:
        offset = (base - nod * SHUTTER_PITCH - source_ypos) / g.units_per_pixel
        profile = pixel_profile(kernel, offset, width)
        source = truth * profile
        var_p = c * (sky_flux + np.clip(source, 0, None))
        var_r = np.full_like(var_p, c * floor)
        data = (sky_flux + source) * flat + rng.normal(size=var_p.shape) * np.sqrt(var_p + var_r)
        var_f = (flat_error * data) ** 2
        if measured_variance:
            var_p = c * np.clip(data, 0, None)
        hits = np.zeros(data.shape, bool)
        if n_cosmic_rays:
            idx = rng.choice(np.flatnonzero(inside), size=n_cosmic_rays, replace=False)
            hits.flat[idx] = True
            sigma = np.sqrt(var_p + var_r).flat[idx]
            data.flat[idx] += rng.uniform(5.0, 50.0, size=idx.size) * sigma
        data = np.where(inside, data, np.nan)
        exposures.append(
            CalExposureArrays(
                data=data * to_sb,
                var_poisson=np.where(inside, var_p, 0.0) * to_sb**2,
                var_rnoise=np.where(inside, var_r, 0.0) * to_sb**2,
                var_flat=np.where(inside, var_f, 0.0) * to_sb**2,
                dq=np.where(inside, 0, 1).astype(np.uint32),
                nod=int(nod),
                source_ypos=float(source_ypos),
                cosmic_rays=hits,
                profile=np.where(inside, profile, np.nan),
            )
        )
    return CalSimulation(g, tuple(exposures), fine, cont, tuple(fwhm), pixel_area)
