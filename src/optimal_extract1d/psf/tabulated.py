"""A tabulated cross-dispersion PSF (from a PSF reference file) as an astropy model.

`PSFTable` holds the *effective* cross-dispersion profile of a point source
(the PSF already integrated over a detector pixel, as jwst's ``SpecPsfModel``
files are: jwst samples them at pixel centers) on a grid of offsets from the
trace, at a grid of wavelengths. `TabulatedPSF1D` is the astropy 1-D model
the kernel fits use: amplitude, center ``x_0``, a width stretch ``scale``
relative to the reference (so FWHM(λ) can be fitted as for any template),
and the ``wavelength`` of the profile, which the data fix (never fitted).

Pure: numpy, scipy and astropy only. `.io.psfref` reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from astropy.modeling import Fittable1DModel, Parameter

from ..errors import ReferenceFileError

__all__ = ["PSFTable", "TabulatedPSF1D"]

# Zero rows padded on both sides of the table for the 4-point cubic stencil.
_PAD = 3


@dataclass(frozen=True)
class PSFTable:
    """Effective cross-dispersion PSF profiles at a grid of wavelengths.

    Attributes
    ----------
    offsets : ndarray, shape (n_offset,)
        Uniform, increasing grid of offsets from the trace center, data pixels.
    wavelength : ndarray, shape (n_wave,)
        Increasing wavelengths of the profiles, microns.
    values : ndarray, shape (n_offset, n_wave)
        Profile at every offset and wavelength, normalized to unit integral
        over the offset (``values.sum(axis=0) * step == 1``); it is the PSF
        integrated over one pixel, so sampling it at the pixel centers gives
        the pixel values.
    name : str
        Aperture the profiles belong to (``ANY`` for all).
    source : str
        File the table was read from (for messages and metadata).
    """

    offsets: np.ndarray
    wavelength: np.ndarray
    values: np.ndarray
    name: str = "ANY"
    source: str = ""

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, float)
        wave = np.asarray(self.wavelength, float)
        values = np.asarray(self.values, float)
        label = self.source or "PSF table"
        if offsets.ndim != 1 or offsets.size < 4 or values.shape != (offsets.size, wave.size):
            msg = (
                f"{label}: profile table of shape {values.shape} does not match "
                f"{offsets.size} offsets x {wave.size} wavelengths (need >= 4 offsets)"
            )
            raise ReferenceFileError(msg)
        step = np.diff(offsets)
        if not (np.all(step > 0) and np.allclose(step, step[0], rtol=1e-6, atol=0)):
            msg = f"{label}: PSF offsets must be a uniform increasing grid"
            raise ReferenceFileError(msg)
        if wave.size < 1 or not (np.all(np.isfinite(wave)) and np.all(np.diff(wave) > 0)):
            msg = f"{label}: PSF wavelengths must be finite and increasing, got {wave}"
            raise ReferenceFileError(msg)
        if not np.all(np.isfinite(values)):
            msg = f"{label}: the PSF profiles contain non-finite values"
            raise ReferenceFileError(msg)
        for name, arr in (("offsets", offsets), ("wavelength", wave), ("values", values)):
            arr = arr.copy()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def __deepcopy__(self, memo) -> PSFTable:
        # Immutable (read-only arrays): model copies share one table.
        return self

    @property
    def step(self) -> float:
        """Offset grid spacing, data pixels (1 / oversampling)."""
        return float(self.offsets[1] - self.offsets[0])

    @cached_property
    def _padded(self) -> np.ndarray:
        """Values with ``_PAD`` zero rows on both sides (the cubic stencil's reach)."""
        zeros = np.zeros((_PAD, self.values.shape[1]))
        return np.concatenate([zeros, self.values, zeros])

    def sample(self, offset: np.ndarray, wavelength: np.ndarray | float) -> np.ndarray:
        """Interpolate the profile at offsets and wavelengths.

        Cubic convolution (Catmull-Rom) along the offsets, which keeps the
        core's curvature (linear interpolation of a 1.5-pixel core sampled 5
        times per pixel is 1 % low at the peak), linear in wavelength.

        Parameters
        ----------
        offset : ndarray
            Offsets from the trace center, data pixels.
        wavelength : ndarray or float
            Wavelengths (microns), broadcast against ``offset``; held at the
            first/last profile outside the tabulated range.

        Returns
        -------
        ndarray
            Profile values (0 beyond the tabulated offsets), broadcast shape.
        """
        n_off, n_wave = self.values.shape
        fi = (np.asarray(offset, float) - self.offsets[0]) / self.step
        inside = (fi > -2.0) & (fi < n_off + 1.0)
        fi = np.where(inside, fi, 0.0)
        i0 = np.floor(fi).astype(int)
        t = fi - i0
        weights = (
            0.5 * (-(t**3) + 2 * t**2 - t),
            0.5 * (3 * t**3 - 5 * t**2 + 2),
            0.5 * (-3 * t**3 + 4 * t**2 + t),
            0.5 * (t**3 - t**2),
        )
        fj = np.interp(
            np.asarray(wavelength, float), self.wavelength, np.arange(n_wave, dtype=float)
        )
        j0 = np.clip(np.floor(fj).astype(int), 0, max(n_wave - 2, 0))
        j1 = np.minimum(j0 + 1, n_wave - 1)
        tj = fj - j0
        v = self._padded
        out = 0.0
        for k, w in enumerate(weights):
            row = i0 + (_PAD - 1) + k
            out = out + w * (v[row, j0] * (1.0 - tj) + v[row, j1] * tj)
        return np.where(inside, out, 0.0)

    @cached_property
    def _fwhm_grid(self) -> np.ndarray:
        """FWHM (data pixels) of every tabulated profile, as `sample` interpolates it."""
        x = np.linspace(self.offsets[0], self.offsets[-1], 20 * (self.offsets.size - 1) + 1)
        fine = self.sample(x[:, None], self.wavelength[None, :])
        return np.array([_profile_fwhm(x, col) for col in fine.T])

    def fwhm(self, wavelength: np.ndarray | float) -> np.ndarray:
        """FWHM (data pixels) of the profile at some wavelengths (interpolated)."""
        return np.interp(np.asarray(wavelength, float), self.wavelength, self._fwhm_grid)


def _profile_fwhm(x: np.ndarray, y: np.ndarray) -> float:
    """Full width at half maximum of a sampled single-peaked profile."""
    k = int(np.argmax(y))
    half = 0.5 * y[k]
    below = np.nonzero(y[:k] < half)[0]
    above = np.nonzero(y[k:] < half)[0]
    if below.size == 0 or above.size == 0:
        return float(x[-1] - x[0])
    i, j = below[-1], k + above[0]
    left = x[i] + (half - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i])
    right = x[j - 1] + (half - y[j - 1]) / (y[j] - y[j - 1]) * (x[j] - x[j - 1])
    return float(right - left)


class TabulatedPSF1D(Fittable1DModel):
    """The reference PSF profile of a `PSFTable`, shifted, stretched and scaled.

    ``f(x) = amplitude / scale * T((x - x_0) / scale, wavelength)``, where ``T``
    is the table's unit-integral effective profile, so ``amplitude`` is the
    flux under the profile. ``wavelength`` is fixed (``fixed`` is True): the
    extraction sets it per column, slice and bin, and fits never vary it.

    The model is already integrated over the pixel (``pixel_integrated``), and
    its own width (``scale = 1``) is the expected one (``reference_psf``).

    Parameters
    ----------
    table : PSFTable
        The reference profiles.
    amplitude, x_0, scale : float
        Flux, center (pixels) and width stretch.
    wavelength : float, optional
        Wavelength of the profile (microns); the middle of the table when None.
    """

    amplitude = Parameter(default=1.0, description="Flux under the profile")
    x_0 = Parameter(default=0.0, description="Center (pixels)")
    scale = Parameter(default=1.0, description="Width relative to the reference PSF")
    wavelength = Parameter(default=1.0, fixed=True, description="Wavelength (microns), fixed")

    pixel_integrated = True
    reference_psf = True

    def __init__(
        self,
        table: PSFTable,
        amplitude: float = 1.0,
        x_0: float = 0.0,
        *,
        scale: float = 1.0,
        wavelength: float | None = None,
        **kwargs,
    ):
        self._table = table
        if wavelength is None:
            wavelength = float(np.median(table.wavelength))
        super().__init__(amplitude, x_0, scale, wavelength, **kwargs)

    @property
    def table(self) -> PSFTable:
        """The reference profiles."""
        return self._table

    def evaluate(self, x, amplitude, x_0, scale, wavelength):
        """Profile value at ``x`` (vectorized over every argument)."""
        return amplitude / scale * self._table.sample((x - x_0) / scale, wavelength)
