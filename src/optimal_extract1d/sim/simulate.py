"""Realistic synthetic s2d slits with known truth, for the demo, tests and benchmarks.

This is the pure half (numpy and scipy only); `.sim.models` wraps the arrays
in datamodels.

* `simulate_slit`: one slit's arrays, dispersion along axis 1,
  with a pixel-integrated Gaussian or Moffat source whose FWHM varies with
  wavelength (or the effective profiles of a PSF table, `.psf.tabulated.PSFTable`),
  an offset or curved trace, sky background (uniform, or a smooth residual
  sky, `ResidualSky`), NaN borders,
  optional negative nod copies, cosmic rays and correlated noise, and noise
  drawn from the variance arrays. It returns the injected truth.
* `.sim.models.make_slit_model` / `~.sim.models.make_multislit` / `~.sim.models.make_s2d_file`
  (stdatamodels and gwcs) wrap those arrays in ``SlitModel``/``MultiSlitModel``/``ImageModel``
  with a detector -> (ra, dec, wavelength) gwcs like ``resample_spec`` writes,
  units MJy/sr and the metadata extract_1d reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import convolve, map_coordinates
from scipy.special import erf

from ..psf.tabulated import PSFTable

__all__ = ["SimulatedSlit", "ResidualSky", "simulate_slit", "default_spectrum", "PIXEL_AREA_SR"]

#: NIRSpec s2d pixel solid angle (0.1" x 0.1" resampled pixels ~ 2.35e-13 sr).
PIXEL_AREA_SR = 2.35e-13


@dataclass(frozen=True)
class SimulatedSlit:
    """Arrays of one synthetic slit and the injected truth; axis 1 = dispersion.

    Attributes
    ----------
    data, var_poisson, var_rnoise, var_flat : ndarray, shape (n_cross, n_disp)
        Science image (MJy/sr) and variance arrays as the pipeline writes them.
    wht : ndarray, shape (n_cross, n_disp)
        Drizzle weights, 1 / var_rnoise (resample's "ivm").
    wavelength : ndarray, shape (n_disp,)
        Wavelength of every column, microns.
    flux : ndarray, shape (n_disp,)
        Injected source flux per column, summed over the slit rows (MJy/sr x pixel).
    center, fwhm : ndarray, shape (n_disp,)
        Injected trace center (row) and FWHM (pixels) per column.
    true_profile : ndarray, shape (n_cross, n_disp)
        Injected pixel-integrated profile, unit sum over the slit rows.
    true_variance : ndarray, shape (n_cross, n_disp)
        Variance the noise was drawn with (before correlation).
    cosmic_rays : ndarray of bool, shape (n_cross, n_disp)
        Pixels hit by an injected cosmic ray.
    nod_offsets : tuple of float
        Offsets (rows) of the negative nod copies.
    companion_flux : tuple of ndarray, shape (n_disp,)
        Injected flux of every companion source (summed over the slit rows).
    companion_offsets : tuple of float
        Offsets (rows) of the companions from the main trace.
    nod_profiles : tuple of ndarray, shape (n_cross, n_disp)
        Profile (unit sum over the rows) of every nod copy, in ``nod_offsets`` order.
    """

    data: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    wht: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    center: np.ndarray
    fwhm: np.ndarray
    true_profile: np.ndarray
    true_variance: np.ndarray
    cosmic_rays: np.ndarray
    nod_offsets: tuple[float, ...] = field(default=())
    companion_flux: tuple[np.ndarray, ...] = field(default=())
    companion_offsets: tuple[float, ...] = field(default=())
    nod_profiles: tuple[np.ndarray, ...] = field(default=())


@dataclass(frozen=True)
class ResidualSky:
    """A smooth residual sky: slowly varying along the dispersion, a gentle slope across.

    The sky at row ``i`` and column ``j`` is
    ``level * (1 + ripple * sin(2 pi periods t_j + phase)) * (1 + tilt * v_i)``
    with ``t`` from 0 (first column) to 1 (last) and ``v`` from -1 (first row)
    to +1 (last row), the abscissa of ``core.horne.polynomial_basis``; so every
    column holds a constant plus a slope across the slit.

    Attributes
    ----------
    level : float
        Mean sky per pixel (MJy/sr) before the ripple.
    tilt : float
        Relative change across the slit: the first and last rows hold
        ``1 -+ tilt`` times the row mean.
    ripple : float
        Relative amplitude of the sinusoidal variation along the dispersion.
    periods : float
        Number of ripple periods over the slit's columns.
    phase : float
        Ripple phase (radians) at the first column.
    """

    level: float
    tilt: float = 0.0
    ripple: float = 0.0
    periods: float = 1.0
    phase: float = 0.0

    def image(self, n_cross: int, n_disp: int) -> np.ndarray:
        """The sky of every pixel, shape (n_cross, n_disp), MJy/sr."""
        t = np.arange(n_disp, dtype=float) / max(n_disp - 1, 1)
        v = np.linspace(-1.0, 1.0, n_cross) if n_cross > 1 else np.zeros(1)
        along = 1.0 + self.ripple * np.sin(2.0 * np.pi * self.periods * t + self.phase)
        return self.level * (1.0 + self.tilt * v)[:, None] * along[None, :]


def _pixel_integrated(
    shape: str, rows: np.ndarray, center: np.ndarray, *, fwhm: np.ndarray, moffat_alpha: float
) -> np.ndarray:
    """Profile integrated over each pixel, unit sum over the rows (n_cross, n_disp)."""
    lo = rows[:, None] - 0.5 - center[None, :]
    hi = rows[:, None] + 0.5 - center[None, :]
    if shape == "gaussian":
        s = (fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))))[None, :] * np.sqrt(2.0)
        prof = 0.5 * (erf(hi / s) - erf(lo / s))
    elif shape == "moffat":
        gamma = (fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / moffat_alpha) - 1.0)))[None, :]
        sub = (np.arange(11) + 0.5) / 11.0
        x = lo[:, :, None] + sub[None, None, :]
        prof = np.mean((1.0 + (x / gamma[:, :, None]) ** 2) ** (-moffat_alpha), axis=2)
    else:
        raise ValueError(f"unknown profile shape {shape!r}; use 'gaussian' or 'moffat'")
    return prof / prof.sum(axis=0, keepdims=True)


def _table_profile(
    psf: PSFTable, rows: np.ndarray, center: np.ndarray, *, wavelength: np.ndarray, scale: float
) -> np.ndarray:
    """Effective PSF profile of a table at every pixel, unit sum over the rows.

    The table is already integrated over a pixel, so it is sampled at the pixel
    centers; cubic-spline interpolation, not the kernel's bilinear one.
    """
    offset = (rows[:, None] - center[None, :]) / scale
    fi = (offset - psf.offsets[0]) / psf.step
    fj = np.interp(wavelength, psf.wavelength, np.arange(psf.wavelength.size, dtype=float))
    fj = np.broadcast_to(fj[None, :], fi.shape)
    prof = map_coordinates(psf.values, [fi, fj], order=3, mode="constant", cval=0.0)
    prof = np.clip(prof, 0.0, None)
    return prof / prof.sum(axis=0, keepdims=True)


def default_spectrum(wavelength: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A galaxy-like spectrum shape: power-law continuum plus a few emission lines (peak ~1)."""
    lam = np.asarray(wavelength, float)
    cont = (lam / lam.mean()) ** rng.uniform(-1.5, 0.5)
    lines = np.zeros_like(lam)
    for _ in range(3):
        center = rng.uniform(lam.min(), lam.max())
        width = 0.004 * center
        lines += rng.uniform(0.5, 2.0) * np.exp(-0.5 * ((lam - center) / width) ** 2)
    spec = cont + lines
    return spec / spec.max()


def simulate_slit(
    rng: np.random.Generator,
    *,
    n_cross: int = 31,
    n_disp: int = 400,
    wavelength_range: tuple[float, float] = (0.6, 5.3),
    spectrum: np.ndarray | None = None,
    snr: float = 50.0,
    shape: str = "gaussian",
    fwhm: tuple[float, float] = (1.6, 2.4),
    center: float | None = None,
    curvature: float = 0.0,
    slope: float = 0.0,
    moffat_alpha: float = 2.5,
    background: float = 0.0,
    nod_offsets: tuple[float, ...] = (),
    nod_scale: float | tuple[float, ...] = 0.5,
    nan_border: int = 1,
    cosmic_rays: int = 0,
    correlated: float = 0.0,
    peak_flux: float = 1.0,
    poisson_from_data: bool = False,
    companions: tuple[tuple[float, float], ...] = (),
    psf: PSFTable | None = None,
    psf_scale: float = 1.0,
    sky: ResidualSky | None = None,
    flat_error: float = 0.01,
) -> SimulatedSlit:
    """Simulate one resampled slit with a point source.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator (never the global seed).
    n_cross, n_disp : int
        Slit size in pixels.
    wavelength_range : tuple of float
        First and last column wavelengths (microns); the spacing grows with
        wavelength like a prism's.
    spectrum : ndarray, shape (n_disp,), optional
        Relative source spectrum (peak ~1); galaxy-like when None.
    snr : float
        Optimal-extraction S/N per column at the spectrum's peak; sets the
        read noise.
    shape : str
        ``"gaussian"`` or ``"moffat"`` source profile (pixel-integrated).
    fwhm : tuple of float
        FWHM (pixels) at the first and last column, linear in between.
    center : float, optional
        Trace row at the middle column; slit center when None.
    curvature, slope : float
        Trace = center + slope u + curvature u^2 with u in [-1, 1] along the slit.
    moffat_alpha : float
        Moffat power index.
    background : float
        Sky level (MJy/sr) added to every pixel (adds Poisson variance).
    nod_offsets : tuple of float
        Row offsets of negative copies of the trace (nod subtraction).
    nod_scale : float or tuple of float
        Amplitude of each negative copy relative to the source (one value for
        all, or one per offset): 1 for a 2-point nod; for a 3-shutter slitlet
        nod combined over its 3 exposures, 1/3 at +-1 and 1/6 at +-2 shutters.
    nan_border : int
        Number of NaN rows at the top and bottom edge.
    cosmic_rays : int
        Number of pixels hit by a cosmic ray (not in the variance).
    correlated : float
        Width (pixels) of the Gaussian kernel correlating the noise, as
        drizzling does; the VAR arrays stay the per-pixel values so they
        underestimate the scatter of sums.
    peak_flux : float
        Source flux per column at the spectrum peak (MJy/sr x pixel).
    companions : tuple of (float, float)
        Further point sources ``(offset in rows, flux ratio)`` with the same
        spectrum shape and PSF, e.g. a neighbour in the same slit.
    poisson_from_data : bool
        Write VAR_POISSON computed from the noisy data (as the pipeline does
        from the measured count rate) instead of from the noise-free model.
        The noise is drawn from the model variance either way.
    psf : psf.tabulated.PSFTable, optional
        Draw the source profile (and its companions and nod copies) from
        these effective, pixel-integrated PSF profiles at each column's
        wavelength instead of ``shape``/``fwhm``; the recorded ``fwhm`` is
        the table's.
    psf_scale : float
        Width stretch applied to the ``psf`` profiles (1 = as tabulated).
    sky : ResidualSky, optional
        A smooth residual sky added on top of ``background``; like it, it adds
        Poisson (and flat-field) variance, which the noise is drawn from and
        the VAR arrays report. It draws no random numbers. None = off.
    flat_error : float
        Relative flat-field error per pixel: VAR_FLAT is ``flat_error**2`` times
        the squared scene. The default 1 % caps the column S/N near 250; bright
        sources (S/N 1000-3000) need a smaller one.

    Returns
    -------
    SimulatedSlit
    """
    geometry = _geometry(
        n_cross,
        n_disp,
        wavelength_range,
        center=center,
        slope=slope,
        curvature=curvature,
        fwhm=fwhm,
        psf=psf,
        psf_scale=psf_scale,
    )
    wavelength = geometry.wavelength
    spec = default_spectrum(wavelength, rng) if spectrum is None else np.asarray(spectrum, float)
    flux = peak_flux * spec
    optics = _Optics(geometry, shape=shape, moffat_alpha=moffat_alpha, psf=psf, psf_scale=psf_scale)
    scene = _scene(optics, flux, companions, nod_offsets=nod_offsets, nod_scale=nod_scale)
    if sky is not None:
        background = background + sky.image(n_cross, n_disp)
    var = _variances(scene, flux, snr=snr, background=background, flat_error=flat_error)
    data, var_poisson = _noisy_data(
        rng,
        scene,
        var,
        background=background,
        correlated=correlated,
        poisson_from_data=poisson_from_data,
    )
    data, hits = _add_cosmic_rays(rng, data, var.total, n_hits=cosmic_rays)
    _nan_borders((data, var_poisson, var.rnoise, var.flat), nan_border)
    wht = np.where(np.isfinite(var.rnoise), 1.0 / var.rnoise, 0.0)
    return SimulatedSlit(
        data=data,
        var_poisson=var_poisson,
        var_rnoise=var.rnoise,
        var_flat=var.flat,
        wht=wht,
        wavelength=wavelength,
        flux=flux,
        center=geometry.trace,
        fwhm=geometry.widths,
        true_profile=scene.profile,
        true_variance=var.total,
        cosmic_rays=hits,
        nod_offsets=tuple(nod_offsets),
        companion_flux=scene.companion_flux,
        companion_offsets=tuple(off for off, _ in companions),
        nod_profiles=scene.nod_profiles,
    )


@dataclass(frozen=True)
class _Geometry:
    """Where the source falls on the slit; axis 1 = dispersion.

    Attributes
    ----------
    rows : ndarray, shape (n_cross,)
        Row coordinates.
    wavelength : ndarray, shape (n_disp,)
        Wavelength of every column, microns.
    trace : ndarray, shape (n_disp,)
        Trace center (row) per column.
    widths : ndarray, shape (n_disp,)
        Source FWHM (pixels) per column.
    """

    rows: np.ndarray
    wavelength: np.ndarray
    trace: np.ndarray
    widths: np.ndarray


def _geometry(
    n_cross: int,
    n_disp: int,
    wavelength_range: tuple[float, float],
    *,
    center: float | None,
    slope: float,
    curvature: float,
    fwhm: tuple[float, float],
    psf: PSFTable | None,
    psf_scale: float,
) -> _Geometry:
    """Prism-like wavelengths, the trace and the FWHM per column (see `simulate_slit`)."""
    cols = np.arange(n_disp, dtype=float)
    rows = np.arange(n_cross, dtype=float)
    t = cols / max(n_disp - 1, 1)
    lam0, lam1 = wavelength_range
    wavelength = lam0 + (lam1 - lam0) * (0.6 * t + 0.4 * t**2)
    u = 2.0 * t - 1.0
    c0 = (n_cross - 1) / 2.0 if center is None else float(center)
    trace = c0 + slope * u + curvature * u**2
    if psf is None:
        widths = fwhm[0] + (fwhm[1] - fwhm[0]) * t
    else:
        widths = psf_scale * psf.fwhm(wavelength)
    return _Geometry(rows=rows, wavelength=wavelength, trace=trace, widths=widths)


@dataclass(frozen=True)
class _Optics:
    """The source's profile law: analytic ``shape``/FWHM, or a PSF table when ``psf`` is set."""

    geometry: _Geometry
    shape: str
    moffat_alpha: float
    psf: PSFTable | None
    psf_scale: float

    def profile_at(self, center: np.ndarray) -> np.ndarray:
        """Pixel-integrated profile centered on ``center`` (n_disp,), unit sum over the rows."""
        g = self.geometry
        if self.psf is not None:
            return _table_profile(
                self.psf, g.rows, center, wavelength=g.wavelength, scale=self.psf_scale
            )
        return _pixel_integrated(
            self.shape, g.rows, center, fwhm=g.widths, moffat_alpha=self.moffat_alpha
        )


@dataclass(frozen=True)
class _Scene:
    """The noise-free source image (n_cross, n_disp) and what went into it.

    Attributes
    ----------
    profile : ndarray
        Main source's profile, unit sum over the rows.
    positive : ndarray
        Source plus companions.
    image : ndarray
        ``positive`` minus the negative nod copies.
    companion_flux : tuple of ndarray, shape (n_disp,)
        Flux of every companion, summed over the rows.
    nod_scales : ndarray, shape (n_nods,)
        Amplitude of every nod copy relative to the source.
    nod_profiles : tuple of ndarray
        Profile of every nod copy, unit sum over the rows.
    """

    profile: np.ndarray
    positive: np.ndarray
    image: np.ndarray
    companion_flux: tuple[np.ndarray, ...]
    nod_scales: np.ndarray
    nod_profiles: tuple[np.ndarray, ...]


def _scene(
    optics: _Optics,
    flux: np.ndarray,
    companions: tuple[tuple[float, float], ...],
    *,
    nod_offsets: tuple[float, ...],
    nod_scale: float | tuple[float, ...],
) -> _Scene:
    """Source, companions and negative nod copies on the trace (see `simulate_slit`)."""
    trace = optics.geometry.trace
    prof = optics.profile_at(trace)
    scene = flux[None, :] * prof
    companion_flux = []
    for off, ratio in companions:
        cprof = optics.profile_at(trace + off)
        scene = scene + ratio * flux[None, :] * cprof
        companion_flux.append(ratio * flux * cprof.sum(axis=0))
    positive_scene = scene.copy()
    scales = np.broadcast_to(np.asarray(nod_scale, float), (len(nod_offsets),))
    nod_profiles = tuple(optics.profile_at(trace + off) for off in nod_offsets)
    for nod_prof, scale in zip(nod_profiles, scales, strict=True):
        scene = scene - scale * flux[None, :] * nod_prof
    return _Scene(
        profile=prof,
        positive=positive_scene,
        image=scene,
        companion_flux=tuple(companion_flux),
        nod_scales=scales,
        nod_profiles=nod_profiles,
    )


@dataclass(frozen=True)
class _Variances:
    """Variance arrays (n_cross, n_disp) the noise is drawn from.

    Attributes
    ----------
    poisson, rnoise, flat : ndarray
        VAR_POISSON (from the noise-free model), VAR_RNOISE and VAR_FLAT.
    total : ndarray
        Their sum: the variance of the noise.
    source_plus_sky : ndarray
        Positive scene plus background, which VAR_POISSON scales with.
    """

    poisson: np.ndarray
    rnoise: np.ndarray
    flat: np.ndarray
    total: np.ndarray
    source_plus_sky: np.ndarray


def _variances(
    scene: _Scene,
    flux: np.ndarray,
    *,
    snr: float,
    background: float | np.ndarray,
    flat_error: float = 0.01,
) -> _Variances:
    """Poisson, read-noise and flat variances giving optimal S/N ``snr`` at the peak column.

    ``background`` is the sky per pixel: a number, or an (n_cross, n_disp) image.
    """
    # Variance: Poisson from source + sky (half the read noise at the peak pixel),
    # read noise solved so that the optimal S/N at the peak column is `snr`.
    peak_col = int(np.argmax(flux))
    p = scene.profile[:, peak_col]
    target = (flux[peak_col] / snr) ** 2  # Var(F) = 1 / sum(p^2 / V), Horne eq. 9
    rn_pure = target * np.sum(p**2)
    source_plus_sky = scene.positive + background
    var_poisson = 0.5 * rn_pure * source_plus_sky / source_plus_sky[:, peak_col].max()
    rn = _solve_read_noise(p, var_poisson[:, peak_col], target)
    nod_factor = 1.0 + float(np.sum(scene.nod_scales**2))
    var_rnoise = np.full(scene.image.shape, rn * nod_factor)
    var_poisson = var_poisson * nod_factor
    var_flat = flat_error**2 * (scene.image**2 + background**2)
    true_var = var_poisson + var_rnoise + var_flat
    return _Variances(
        poisson=var_poisson,
        rnoise=var_rnoise,
        flat=var_flat,
        total=true_var,
        source_plus_sky=source_plus_sky,
    )


def _noisy_data(
    rng: np.random.Generator,
    scene: _Scene,
    var: _Variances,
    *,
    background: float | np.ndarray,
    correlated: float,
    poisson_from_data: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the noise (one standard normal per pixel); return data and VAR_POISSON.

    VAR_POISSON is ``var.poisson``, or with ``poisson_from_data`` rescaled to
    the noisy positive scene as the pipeline computes it from the count rate.
    """
    noise = rng.standard_normal(var.total.shape)
    if correlated > 0:
        noise = _correlate(noise, correlated)
    data = scene.image + background + noise * np.sqrt(var.total)
    var_poisson = var.poisson
    if poisson_from_data:
        source_plus_sky = var.source_plus_sky
        positive = scene.positive + background + noise * np.sqrt(var.total)
        ratio = np.divide(
            np.clip(positive, 0.0, None),
            source_plus_sky,
            out=np.zeros_like(positive),
            where=source_plus_sky > 0,
        )
        var_poisson = var_poisson * ratio
    return data, var_poisson


def _add_cosmic_rays(
    rng: np.random.Generator, data: np.ndarray, true_var: np.ndarray, *, n_hits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hit ``n_hits`` distinct pixels with 20-200 sigma; return the data and the hit mask."""
    hits = np.zeros(data.shape, bool)
    if n_hits:
        idx = rng.choice(data.size, size=n_hits, replace=False)
        hits.flat[idx] = True
        data = np.where(hits, data + rng.uniform(20, 200, hits.shape) * np.sqrt(true_var), data)
    return data, hits


def _nan_borders(arrays: tuple[np.ndarray, ...], n_rows: int) -> None:
    """Set the first and last ``n_rows`` rows of every array to NaN, in place."""
    if n_rows:
        for arr in arrays:
            arr[:n_rows] = np.nan
            arr[-n_rows:] = np.nan


def _solve_read_noise(p: np.ndarray, vp: np.ndarray, target: float) -> float:
    """Constant read-noise variance r with 1 / sum(p^2 / (vp + r)) = target."""
    lo, hi = 0.0, max(target, 1e-30) * 1e3 + vp.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 / np.sum(p**2 / (vp + mid)) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _correlate(noise: np.ndarray, width: float) -> np.ndarray:
    """Smooth white noise with a small Gaussian kernel, keeping unit per-pixel variance."""
    half = int(np.ceil(3 * width))
    x = np.arange(-half, half + 1)
    k1 = np.exp(-0.5 * (x / width) ** 2)
    kernel = np.outer(k1, k1)
    kernel /= np.sqrt(np.sum(kernel**2))
    return convolve(noise, kernel, mode="reflect")
