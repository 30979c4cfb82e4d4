"""What an extraction produces for one spectrum, as plain arrays.

`SpectrumResult` is built by `.pipeline.assemble` from the pure modules and
turned into an x1d table by `.io.x1d`; it holds values in the input data units
(flux summed over pixels), before any unit conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SpectrumResult",
    "FluxUnits",
    "DQ_DO_NOT_USE",
    "DQ_OUTLIER",
    "DQ_FLUX_ESTIMATED",
    "DQ_FALLBACK",
]

# JWST pixel DQ bits used in the spectrum DQ column (values of
# stdatamodels.jwst.datamodels.dqflags.pixel; a test keeps them in sync).
DQ_DO_NOT_USE = 2**0  #: no usable pixel in the column (flux is NaN)
DQ_OUTLIER = 2**4  #: pixels of this column were rejected as outliers
DQ_FLUX_ESTIMATED = 2**28  #: masked pixels carried a large part of the profile
DQ_FALLBACK = 2**30  #: extracted with a fallback kernel or box (OTHER_BAD_PIXEL)


@dataclass(frozen=True)
class FluxUnits:
    """How to turn pixel sums of the input into x1d units.

    Attributes
    ----------
    flux_scale : float
        Multiplies a pixel-summed value to give FLUX.
    flux_unit : str
        Unit of FLUX and FLUX_ERROR.
    sb_scale : float
        Multiplies a per-pixel value to give a surface brightness (0 when the
        input is not a surface brightness, as jwst does for MJy input).
    bkg_scale : float
        Multiplies a per-pixel value to give BACKGROUND.
    sb_unit : str
        Unit of SURF_BRIGHT and BACKGROUND.
    """

    flux_scale: float
    flux_unit: str
    sb_scale: float
    bkg_scale: float
    sb_unit: str

    @property
    def flux_var_unit(self) -> str:
        """Unit of the FLUX_VAR_* columns."""
        return _squared(self.flux_unit)

    @property
    def sb_var_unit(self) -> str:
        """Unit of the SB_VAR_* and BKGD_VAR_* columns."""
        return _squared(self.sb_unit)


def _squared(unit: str) -> str:
    return {"Jy": "Jy^2", "MJy/sr": "MJy^2 / sr^2", "DN/s": "DN^2 / s^2"}.get(unit, f"({unit})^2")


@dataclass(frozen=True)
class SpectrumResult:
    """One extracted spectrum, per dispersion column, in input data units.

    Attributes
    ----------
    name : str
        Spectrum name (the slit name, with a source index for multi-source slits).
    flux : ndarray, shape (n_disp,)
        Optimal flux, data units summed over pixels.
    var_poisson, var_rnoise, var_flat : ndarray, shape (n_disp,)
        Variance components of ``flux``.
    background : ndarray, shape (n_disp,)
        Mean fitted background per pixel, data units.
    bkg_var_poisson, bkg_var_rnoise, bkg_var_flat : ndarray, shape (n_disp,)
        Variance components of ``background``.
    npixels : ndarray, shape (n_disp,)
        Number of pixels used per column.
    dq : ndarray of uint32, shape (n_disp,)
        Spectrum DQ bits (see the module constants).
    wavelength, ra, dec : ndarray, shape (n_disp,)
        World coordinates along the trace (microns, degrees).
    region : tuple of 4 int
        ``(x1, y1, x2, y2)`` extracted, inclusive, in slit pixels as stored.
    units : FluxUnits
        Conversion of the input units to the x1d units.
    disp_axis : int
        1 if the slit disperses along x in the file, 2 along y.
    attributes : dict
        Slit identity copied to the output spectrum.
    metadata : dict
        Fit results and status, recorded in the spectrum's metadata.
    profile : ndarray, shape (n_cross, n_disp), optional
        Normalized spatial profile used, over ``region`` (dispersion along axis 1).
    scene : ndarray, shape (n_cross, n_disp), optional
        Model of the slit over ``region``: flux x profile (all sources of the
        slit) plus the fitted background.
    """

    name: str
    flux: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    background: np.ndarray
    bkg_var_poisson: np.ndarray
    bkg_var_rnoise: np.ndarray
    bkg_var_flat: np.ndarray
    npixels: np.ndarray
    dq: np.ndarray
    wavelength: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    region: tuple[int, int, int, int]
    units: FluxUnits
    disp_axis: int
    attributes: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    profile: np.ndarray | None = None
    scene: np.ndarray | None = None

    @property
    def error(self) -> np.ndarray:
        """Total flux uncertainty, sqrt of the summed variance components."""
        return np.sqrt(self.var_poisson + self.var_rnoise + self.var_flat)
