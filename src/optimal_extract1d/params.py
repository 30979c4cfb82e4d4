"""The step parameters as one frozen, validated dataclass.

`ExtractParams` field names equal the step's spec names, so the step builds it
with ``ExtractParams.from_object(step)`` and the pure modules never see stpipe.
Checks that need the slit shapes live in `check_region` and `check_slice`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError

__all__ = [
    "ExtractParams",
    "CalParams",
    "INPUT_LEVELS",
    "CAL_BACKGROUNDS",
    "KERNELS",
    "VARIANCE_SOURCES",
    "ERROR_SCALES",
    "INPUT_UNITS",
    "check_region",
    "check_slice",
]

#: The values of ``kernel`` given by name.
KERNELS = ("auto", "gaussian", "moffat", "empirical", "psf")
#: The values of ``variance_source``.
VARIANCE_SOURCES = ("auto", "var", "wht", "err")
#: The values of ``input_unit``: BUNIT (``auto``) or the unit to read the data in.
INPUT_UNITS = ("auto", "MJy/sr", "MJy", "DN/s")
#: The values of ``error_scale``.
ERROR_SCALES = ("none", "residual")
# fit_fwhm / fit_trace: on, off, or decided per slit by the data ("auto").
AUTO = "auto"
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


@dataclass(frozen=True)
class ExtractParams:
    """Parameters of one optimal extraction run.

    Attributes
    ----------
    extraction_region : tuple of 4 int or None
        ``(x1, y1, x2, y2)``, inclusive, in slit pixels as stored in the file
        (x along the image rows); None = the whole slit.
    slice_width : int
        Number of dispersion columns coadded into the kernel slice.
    slice_column : int or None
        Dispersion-axis pixel at the center of the slice; None = the column
        with the most signal.
    kernel : str or astropy.modeling.Fittable1DModel
        PSF template: ``"auto"`` (Gaussian or Moffat, and the profiles of
        ``psf_file`` when given, chosen per slit by the criterion of
        `.scene.choice`; then a Gaussian core with a Moffat halo,
        `.psf.halo.CoreHalo1D`, weighed over the slit's bins, `.scene.halo`),
        ``"gaussian"``, ``"moffat"``,
        ``"empirical"`` (Horne's data-driven profile), ``"psf"`` (the profiles
        of ``psf_file``), or (from Python) any astropy 1-D model.
    psf_file : str or None
        jwst ``SpecPsfModel`` file with the cross-dispersion PSF per
        wavelength; required by ``kernel = "psf"``, a further family of
        ``kernel = "auto"``, unused otherwise.
    bkg_order : int or str
        Degree of the polynomial background fitted with the PSF; -1 = none;
        ``"auto"``: none, a constant or a slope across the slit, chosen per
        slit by the criterion of `.scene.choice` (nod copies are modelled in
        every candidate).
    bkg_smooth_order : int or str
        How the background varies along the dispersion: -1 = independent in
        every column; N >= 0 = a Legendre polynomial of degree N
        (`.core.smoothbkg`); ``"auto"``: chosen over the whole slit among
        independent columns (none where ``bkg_order = "auto"`` chose no
        background on the kernel slice) and the background smooth along the
        dispersion (a constant where the slice chose none) of the degrees
        `.core.smoothbkg.CANDIDATE_ORDERS`. Not where ``bkg_order = -1``.
    variance_source : str
        ``"auto"``, ``"var"`` (VAR_* arrays), ``"wht"`` (drizzle weights) or
        ``"err"`` (ERR squared).
    drizzle_scale : float
        Pixel scale ratio ``s`` in Var = 1 / (WHT s^4).
    input_unit : str
        Unit of the input data: ``"auto"`` (BUNIT; ``DN/s`` after photom is
        read as jwst's ``extract_1d`` does, see `.io.slits.input_data_unit`) or
        ``"MJy/sr"``, ``"MJy"``, ``"DN/s"`` whatever BUNIT says.
    fit_fwhm, fit_trace : bool or str
        Fit the kernel width / center in bins and model it along the dispersion;
        ``"auto"``: the data of every slit decide whether it varies, and with
        which degree up to ``fwhm_order`` / ``trace_order`` (`.scene.choice`).
    fwhm_order, trace_order : int
        Polynomial degree of the FWHM(wavelength) and center(dispersion pixel)
        models (the highest one tried with ``"auto"``).
    n_bins : int or None
        Number of bins for those fits; None = chosen from the signal.
    reject_sigma : float
        Outlier threshold of Horne's iteration, in standard deviations.
    max_iter : int
        Passes of Horne's iteration (variance re-estimation + rejection); 0 = none.
    model_nods : bool
        Fit negative nod copies of the trace with the source.
    source_positions : tuple of float or None
        Cross-dispersion positions (slit pixels as stored) of the sources to
        extract; None = the brightest, plus any other significant peak.
    detect_threshold : float
        S/N (coadded profile, matched filter) a further source or nod copy needs.
    error_scale : str
        ``"residual"``: scale the propagated errors to the measured
        scatter: on s2d input raised to the scatter of the residuals, pixel
        correlations included, never lowered; on the cal path set to the
        scatter of the spectrum. ``"none"``: keep them. Either way the
        errors of a core + halo chosen by ``kernel = "auto"`` carry the
        variance of the wings' share the slit set (`.core.shapeerror`).
    """

    extraction_region: tuple[int, int, int, int] | None = None
    slice_width: int = 30
    slice_column: int | None = None
    kernel: str = "auto"
    psf_file: str | None = None
    bkg_order: int | str = AUTO
    bkg_smooth_order: int | str = AUTO
    variance_source: str = "auto"
    drizzle_scale: float = 1.0
    input_unit: str = "auto"
    fit_fwhm: bool | str = AUTO
    fwhm_order: int = 2
    fit_trace: bool | str = AUTO
    trace_order: int = 2
    n_bins: int | None = None
    reject_sigma: float = 5.0
    max_iter: int = 5
    model_nods: bool = True
    source_positions: tuple[float, ...] | None = None
    detect_threshold: float = 5.0
    error_scale: str = "residual"

    def __post_init__(self) -> None:
        if self.extraction_region is not None:
            region = tuple(int(v) for v in self.extraction_region)
            if len(region) != 4:
                msg = f"extraction_region needs 4 values (x1, y1, x2, y2), got {region}"
                raise ParameterError(msg)
            x1, y1, x2, y2 = region
            if x2 < x1 or y2 < y1 or min(region) < 0:
                msg = (
                    f"extraction_region {region} is empty or negative: "
                    "need 0 <= x1 <= x2 and 0 <= y1 <= y2"
                )
                raise ParameterError(msg)
            object.__setattr__(self, "extraction_region", region)
        for name in ("fit_fwhm", "fit_trace"):
            object.__setattr__(self, name, _on_off_auto(name, getattr(self, name)))
        if self.slice_width < 1:
            msg = f"slice_width must be >= 1, got {self.slice_width}"
            raise ParameterError(msg)
        if self.slice_column is not None and self.slice_column < 0:
            msg = f"slice_column must be >= 0, got {self.slice_column}"
            raise ParameterError(msg)
        if isinstance(self.kernel, str) and self.kernel not in KERNELS:
            msg = f"kernel must be one of {KERNELS}, got {self.kernel!r}"
            raise ParameterError(msg)
        if self.kernel == "psf" and not self.psf_file:
            msg = "kernel='psf' needs psf_file: a jwst SpecPsfModel file with the PSF profiles"
            raise ParameterError(msg)
        for name in ("fwhm_order", "trace_order", "max_iter"):
            if getattr(self, name) < 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise ParameterError(msg)
        if self.n_bins is not None and self.n_bins < 1:
            msg = f"n_bins must be >= 1 or None, got {self.n_bins}"
            raise ParameterError(msg)
        if self.source_positions is not None:
            positions = tuple(float(p) for p in self.source_positions)
            if not positions or not all(np.isfinite(positions)):
                msg = f"source_positions must be finite pixel positions, got {positions}"
                raise ParameterError(msg)
            object.__setattr__(self, "source_positions", positions)
        if self.error_scale not in ERROR_SCALES:
            msg = f"error_scale must be one of {ERROR_SCALES}, got {self.error_scale!r}"
            raise ParameterError(msg)
        if not self.detect_threshold > 0:
            msg = f"detect_threshold must be > 0, got {self.detect_threshold}"
            raise ParameterError(msg)
        if not self.reject_sigma > 0:
            msg = f"reject_sigma must be > 0, got {self.reject_sigma}"
            raise ParameterError(msg)
        for name in _DEGREE_PARAMS:
            object.__setattr__(self, name, _order_or_auto(getattr(self, name), name))
        if self.variance_source not in VARIANCE_SOURCES:
            msg = f"variance_source must be one of {VARIANCE_SOURCES}, got {self.variance_source!r}"
            raise ParameterError(msg)
        if self.input_unit not in INPUT_UNITS:
            msg = f"input_unit must be one of {INPUT_UNITS}, got {self.input_unit!r}"
            raise ParameterError(msg)
        if not self.drizzle_scale > 0:
            msg = f"drizzle_scale must be > 0, got {self.drizzle_scale}"
            raise ParameterError(msg)

    @classmethod
    def from_object(cls, obj: object) -> ExtractParams:
        """Build the parameters from the same-named attributes of ``obj`` (a step)."""
        values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}
        for key in ("extraction_region", "source_positions"):
            if values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def check_region(params: ExtractParams, shape: tuple[int, int], name: str) -> None:
    """Check the extraction region against one slit's image shape.

    Parameters
    ----------
    params : ExtractParams
        The run parameters.
    shape : tuple of int
        ``(ny, nx)`` of the slit image as stored in the file.
    name : str
        Slit name, for the message.

    Raises
    ------
    ParameterError
        If the region lies outside the slit.
    """
    ny, nx = shape
    if params.extraction_region is not None:
        x1, y1, x2, y2 = params.extraction_region
        if x2 >= nx or y2 >= ny:
            msg = (
                f"extraction_region {params.extraction_region} lies outside slit "
                f"{name!r} of {nx} x {ny} pixels (x 0..{nx - 1}, y 0..{ny - 1})"
            )
            raise ParameterError(msg)


def check_slice(
    params: ExtractParams, shape: tuple[int, int], name: str, *, disp_axis: int
) -> None:
    """Check the kernel slice (width and column) against one slit's dispersion range.

    The range is the extraction region's when one is set (check it first with
    `check_region`), else the whole slit.

    Parameters
    ----------
    params : ExtractParams
        The run parameters.
    shape : tuple of int
        ``(ny, nx)`` of the slit image as stored in the file.
    name : str
        Slit name, for the message.
    disp_axis : int
        1 if the slit disperses along x, 2 along y.

    Raises
    ------
    ParameterError
        If ``slice_width`` is wider than the dispersion range or ``slice_column``
        lies outside it.
    """
    first, last = _dispersion_range(params, shape, disp_axis)
    where = "its extraction region" if params.extraction_region is not None else "the slit"
    n_disp = last - first + 1
    if params.slice_width > n_disp:
        msg = (
            f"slice_width {params.slice_width} is wider than slit {name!r}: {where} has "
            f"{n_disp} dispersion columns"
        )
        raise ParameterError(msg)
    if params.slice_column is not None and not first <= params.slice_column <= last:
        msg = (
            f"slice_column {params.slice_column} is outside slit {name!r}: {where} covers "
            f"dispersion pixels {first}..{last}"
        )
        raise ParameterError(msg)


def _dispersion_range(
    params: ExtractParams, shape: tuple[int, int], disp_axis: int
) -> tuple[int, int]:
    """First and last dispersion pixel (inclusive) of the region, or of the whole slit."""
    ny, nx = shape
    if params.extraction_region is None:
        return 0, (nx if disp_axis == 1 else ny) - 1
    x1, y1, x2, y2 = params.extraction_region
    return (x1, x2) if disp_axis == 1 else (y1, y2)


def _on_off_auto(name: str, value: object) -> bool | str:
    """``True``, ``False`` or ``"auto"`` from a bool or its spellings on a command line."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word == AUTO:
            return AUTO
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    msg = f"{name} must be True, False or 'auto', got {value!r}"
    raise ParameterError(msg)


#: The degree parameters that take ``"auto"`` or an integer >= -1, and what -1 means.
_DEGREE_PARAMS = {"bkg_order": "no background", "bkg_smooth_order": "independent columns"}


def _order_or_auto(value: object, name: str) -> int | str:
    """``"auto"`` or an integer degree >= -1, from a number or its spelling on a command line.

    ``name`` is one of `_DEGREE_PARAMS` (for the messages).
    """
    meaning = _DEGREE_PARAMS[name]
    degree: int | str | None = None
    if isinstance(value, str):
        word = value.strip().lower()
        if word == AUTO:
            return AUTO
        try:
            degree = int(word)
        except ValueError:
            pass
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        degree = int(value)
    if degree is None:
        msg = f"{name} must be 'auto' or an integer >= -1 (-1 = {meaning}), got {value!r}"
        raise ParameterError(msg)
    if degree < -1:
        msg = f"{name} must be 'auto' or >= -1 (-1 = {meaning}), got {degree}"
        raise ParameterError(msg)
    return degree


#: The values of ``input_level``.
INPUT_LEVELS = ("auto", "s2d", "cal")
#: The values of ``cal_background``.
CAL_BACKGROUNDS = ("auto", "nod", "subtracted", "none")


@dataclass(frozen=True)
class CalParams:
    """Parameters of the cal path (extraction from the unresampled exposures).

    Attributes
    ----------
    input_level : str
        ``"auto"`` (cal when every slit has a WCS with a ``slit_frame`` and
        was not resampled), ``"s2d"`` or ``"cal"``.
    cal_background : str
        ``"auto"``, ``"nod"`` (raw exposures: the sky of every detector pixel
        is fitted, common to all exposures), ``"subtracted"`` (each exposure
        had the others subtracted: the negative nod copies are modelled) or
        ``"none"`` (background already removed, e.g. master background).
    cal_wavelengths : tuple of float or None
        Output wavelength grid (microns, increasing); None = the wavelengths
        of the detector columns along the source trace (the s2d's sampling).
    save_exposure_spectra : bool
        Also write the spectrum of every exposure (named ``<source>_exp<i>``).
    """

    input_level: str = "auto"
    cal_background: str = "auto"
    cal_wavelengths: tuple[float, ...] | None = None
    save_exposure_spectra: bool = False

    def __post_init__(self) -> None:
        if self.input_level not in INPUT_LEVELS:
            msg = f"input_level must be one of {INPUT_LEVELS}, got {self.input_level!r}"
            raise ParameterError(msg)
        if self.cal_background not in CAL_BACKGROUNDS:
            msg = f"cal_background must be one of {CAL_BACKGROUNDS}, got {self.cal_background!r}"
            raise ParameterError(msg)
        if self.cal_wavelengths is not None:
            grid = np.asarray(self.cal_wavelengths, float)
            if grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
                msg = "cal_wavelengths must hold at least 2 finite, increasing wavelengths"
                raise ParameterError(msg)
            object.__setattr__(self, "cal_wavelengths", tuple(float(v) for v in grid))

    @classmethod
    def from_object(cls, obj: object) -> CalParams:
        """Build the parameters from the same-named attributes of ``obj`` (a step)."""
        values = {f.name: getattr(obj, f.name, f.default) for f in dataclasses.fields(cls)}
        if values["cal_wavelengths"] is not None:
            values["cal_wavelengths"] = tuple(values["cal_wavelengths"])
        return cls(**values)
