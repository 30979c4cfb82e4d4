"""`SlitData`: one slit as plain arrays, the unit of work of every layer below the io.

`SlitDiagnostics` pairs a slit with its spectra and scene model, for the
diagnostic files and plots.

Pure data: no datamodel import, so the core, psf and scene layers can take a
slit without pulling stdatamodels in. `.io.slits.read_slit` makes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results import FluxUnits, SpectrumResult

__all__ = ["CalExposure", "SlitData", "SlitDiagnostics"]


@dataclass(frozen=True)
class SlitData:
    """One slit as plain arrays, dispersion along axis 1.

    Attributes
    ----------
    name : str
        Slit name.
    data : ndarray, shape (n_cross, n_disp)
        Science values.
    variance : ndarray, shape (n_cross, n_disp)
        Total variance used for the weights.
    var_poisson, var_rnoise, var_flat : ndarray, shape (n_cross, n_disp)
        Variance components propagated to the FLUX_VAR_* columns.
    mask : ndarray of bool, shape (n_cross, n_disp)
        True for pixels not to use (DO_NOT_USE, NaN data, bad variance).
    wavelength, ra, dec : ndarray, shape (n_cross, n_disp)
        World coordinates of every pixel (NaN where undefined).
    disp_axis : int
        1 if the dispersion runs along x in the file, 2 if along y.
    units : FluxUnits
        Unit conversion for the output.
    variance_source : str
        Which input the variance came from: ``"var"``, ``"wht"``, ``"err"`` or ``"data"``.
    attributes : dict
        Slit identity copied to the output spectrum (source_id, ...).
    offset : tuple of int
        ``(cross, disp)`` index of element [0, 0] in the full slit (non-zero
        after cropping to an extraction region).
    nod_offsets : tuple of float
        Where the exposure's nod pattern puts negative copies of the trace
        (pixels from the source along the slit); empty when unknown.
    """

    name: str
    data: np.ndarray
    variance: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    mask: np.ndarray
    wavelength: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    disp_axis: int
    units: FluxUnits
    variance_source: str
    attributes: dict[str, Any]
    offset: tuple[int, int] = (0, 0)
    nod_offsets: tuple[float, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_cross, n_disp)``."""
        return self.data.shape

    def cropped(self, region: tuple[int, int, int, int] | None) -> SlitData:
        """The slit restricted to an ``(x1, y1, x2, y2)`` region in file pixels."""
        if region is None:
            return self
        x1, y1, x2, y2 = region
        if self.disp_axis == 1:
            cross, disp = slice(y1, y2 + 1), slice(x1, x2 + 1)
        else:
            cross, disp = slice(x1, x2 + 1), slice(y1, y2 + 1)
        arrays = {
            f.name: getattr(self, f.name)[cross, disp]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return dataclasses.replace(self, offset=(cross.start, disp.start), **arrays)

    def region(self) -> tuple[int, int, int, int]:
        """``(x1, y1, x2, y2)`` of these arrays in file pixels, inclusive."""
        c0, d0 = self.offset
        n_cross, n_disp = self.shape
        if self.disp_axis == 1:
            return (d0, c0, d0 + n_disp - 1, c0 + n_cross - 1)
        return (c0, d0, c0 + n_cross - 1, d0 + n_disp - 1)


@dataclass(frozen=True)
class SlitDiagnostics:
    """One slit with what the extraction made of it, dispersion along axis 1.

    Attributes
    ----------
    index : int
        Position of the slit in the input (`.io.slits.iter_slits` order).
    label : str or None
        File-name infix (lower-case slit name); None for a single-slit input.
    slit : SlitData
        The whole slit as read for the extraction.
    spectra : tuple of SpectrumResult
        The spectra extracted from it (one per source).
    profile : ndarray, shape (n_cross, n_disp)
        Sum of the normalized profiles of its spectra; 0 outside the region.
    scene : ndarray, shape (n_cross, n_disp)
        Model of the slit (all sources plus background); NaN outside the region.
    """

    index: int
    label: str | None
    slit: SlitData
    spectra: tuple[SpectrumResult, ...]
    profile: np.ndarray
    scene: np.ndarray

    @property
    def residual(self) -> np.ndarray:
        """Data minus scene model, shape (n_cross, n_disp); NaN outside the region."""
        return self.slit.data - self.scene


@dataclass(frozen=True)
class CalExposure:
    """One unresampled (cal) slit exposure as plain arrays, for the cal path.

    Every pixel carries its own wavelength and along-slit coordinate, so the
    tilted, curved trace on the detector needs no rectification. Values are
    in flux per pixel (the input surface brightness times the pixel solid
    angle, see ``flux_scale``), so exposures with slightly different pixel
    areas combine directly.

    Attributes
    ----------
    name : str
        Exposure label (file name, else slit name and index).
    slit : str
        Slit name.
    source_key : str
        Exposures with the same key are combined into one spectrum (the
        source ID, else the slit name).
    data : ndarray, shape (n_cross, n_disp)
        Science values times ``flux_scale``.
    variance, var_poisson, var_rnoise, var_flat : ndarray, shape (n_cross, n_disp)
        Total variance and its components, times ``flux_scale**2``.
    mask : ndarray of bool, shape (n_cross, n_disp)
        True for pixels not to use.
    wavelength : ndarray, shape (n_cross, n_disp)
        Wavelength of every pixel (microns).
    along_slit : ndarray, shape (n_cross, n_disp)
        Along-slit offset of every pixel from the nominal source position
        (``source_ypos``), in pixels (NaN outside the slit).
    ra, dec : ndarray, shape (n_cross, n_disp)
        Sky coordinates of every pixel (degrees; NaN where undefined).
    flux_scale : float
        Factor that turned the input unit into flux per pixel.
    flux_unit : str
        Unit of ``data`` (``"Jy"`` for MJy/sr input).
    footprint : tuple of int
        ``(xstart, ystart)`` of the cut-out on the detector: exposures with
        equal footprints and shapes share their pixels (nod subtraction).
    background : str
        What calwebb_spec2/3 already did to the background: ``"none"``,
        ``"nod"`` (bkg_subtract: the other nods subtracted) or ``"master"``.
    attributes : dict
        Slit identity copied to the output spectrum.
    """

    name: str
    slit: str
    source_key: str
    data: np.ndarray
    variance: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    mask: np.ndarray
    wavelength: np.ndarray
    along_slit: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux_scale: float
    flux_unit: str
    footprint: tuple[int, int]
    background: str
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_cross, n_disp)``."""
        return self.data.shape
