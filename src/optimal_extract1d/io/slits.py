"""Datamodels to plain arrays: iterate the slits of the input, read one slit.

This is the input half of the datamodel boundary (`.io.x1d` is the output half).
Every array leaves here copied, as float64, transposed once so that the
dispersion runs along axis 1: ``(n_cross, n_disp)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from ..errors import InputError
from ..results import FluxUnits
from ..slitdata import SlitData
from .inputvariance import bad_variance, choose_variance, read_array
from .nods import expected_nod_offsets

__all__ = [
    "SLIT_TYPES",
    "input_data_unit",
    "iter_slits",
    "meta_source",
    "read_slit",
    "slit_name",
    "stored_geometry",
]

log = logging.getLogger(__name__)

#: Datamodels that hold one slit (a ``MultiSlitModel`` holds many).
SLIT_TYPES = (datamodels.ImageModel, datamodels.SlitModel)
_COPY_ATTRIBUTES = (
    "slitlet_id",
    "source_id",
    "source_name",
    "source_alias",
    "source_type",
    "stellarity",
    "source_xpos",
    "source_ypos",
    "source_ra",
    "source_dec",
    "shutter_state",
    "quadrant",
    "slit_xscale",
    "slit_yscale",
)
_VERTICAL_EXP_TYPES = ("MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS")


def iter_slits(model: Any) -> Iterator[tuple[Any, Any]]:
    """Yield ``(slit, parent)`` for every slit of the input, in order.

    ``parent`` is the model the slit came from (itself for a single slit),
    used for metadata the slit does not carry.
    """
    if isinstance(model, datamodels.MultiSlitModel):
        for slit in model.slits:
            yield slit, model
    elif isinstance(model, SLIT_TYPES):
        yield model, model
    else:
        for member in model:
            yield from iter_slits(member)


def meta_source(model: Any) -> Any:
    """The model whose primary metadata the output copies (first of a container)."""
    if isinstance(model, (datamodels.MultiSlitModel, *SLIT_TYPES)):
        return model
    return meta_source(model[0])


def slit_name(slit: Any, parent: Any) -> str:
    """Name of a slit: its NAME, else the fixed-slit name, else the EXP_TYPE."""
    name = getattr(slit, "name", None) if slit.hasattr("name") else None
    if not name:
        name = parent.meta.instrument.fixed_slit or parent.meta.exposure.type or "SLIT"
    return str(name)


def _meta(slit: Any, parent: Any, *path: str) -> Any:
    """First non-None metadata value at ``path`` on the slit, then on the parent."""
    for node in (slit, parent):
        value = node.meta
        for key in path:
            value = getattr(value, key, None)
            if value is None:
                break
        if value is not None:
            return value
    return None


def stored_geometry(slit: Any, parent: Any) -> tuple[tuple[int, int], int] | None:
    """Shape of a slit as stored and its dispersion axis, without reading it.

    Parameters
    ----------
    slit, parent : datamodel
        The slit and the model it came from (see `iter_slits`).

    Returns
    -------
    tuple or None
        ``((ny, nx), disp_axis)``, or None when the slit has no 2-D science data
        (`read_slit` then raises `.InputError`).
    """
    shape = np.shape(slit.data) if slit.hasattr("data") else ()
    if len(shape) != 2 or 0 in shape:
        return None
    axis, _ = _axis(slit, parent)
    return (int(shape[0]), int(shape[1])), axis


def read_slit(
    slit: Any,
    parent: Any,
    *,
    variance_source: str,
    drizzle_scale: float,
    input_unit: str = "auto",
) -> SlitData:
    """Read one slit into a `.SlitData`.

    Parameters
    ----------
    slit, parent : datamodel
        The slit and the model it came from (see `iter_slits`).
    variance_source : str
        ``"auto"``, ``"var"``, ``"wht"`` or ``"err"`` (see `.inputvariance.choose_variance`).
    drizzle_scale : float
        Pixel scale ratio for the drizzle-weight variance.
    input_unit : str
        Unit of the data: ``"auto"`` (BUNIT, or as jwst decides when BUNIT
        says ``DN/s`` but photom has run; see `input_data_unit`), or
        ``"MJy/sr"``, ``"MJy"``, ``"DN/s"`` to override BUNIT.

    Returns
    -------
    SlitData

    Raises
    ------
    InputError
        If the slit has no 2-D science data or no wavelength information.
    """
    name = slit_name(slit, parent)
    data = np.asarray(slit.data, dtype=float) if slit.hasattr("data") else np.zeros((0, 0))
    if data.ndim != 2 or data.size == 0:
        msg = f"slit {name!r} has no 2-D science data (shape {data.shape})"
        raise InputError(msg)
    disp_axis = _dispersion_axis(slit, parent, name)
    source, var = choose_variance(slit, variance_source, drizzle_scale, name=name)
    wavelength, ra, dec = _world_grid(slit, name)
    mask = ~np.isfinite(data) | bad_variance(var)
    dq = read_array(slit, "dq", name)
    if dq is not None:
        mask |= (dq.astype(np.int64) & dqflags.pixel["DO_NOT_USE"]) != 0
    arrays = {
        "data": data.copy(),
        "mask": mask,
        "wavelength": wavelength,
        "ra": ra,
        "dec": dec,
        **var,
    }
    if disp_axis == 2:
        arrays = {k: np.ascontiguousarray(v.T) for k, v in arrays.items()}
    return SlitData(
        name=name,
        disp_axis=disp_axis,
        units=_flux_units(
            slit,
            parent,
            name,
            input_data_unit(slit, parent, name, input_unit),
            forced=input_unit != "auto",
        ),
        variance_source=source,
        attributes=_identity(slit, parent),
        nod_offsets=_nod_offsets(slit, parent, ra=arrays["ra"], dec=arrays["dec"]),
        **arrays,
    )


def _nod_offsets(slit: Any, parent: Any, *, ra: np.ndarray, dec: np.ndarray) -> tuple[float, ...]:
    """Nod-copy offsets (pixels) from the dither metadata and the slit's pixel scale."""
    with np.errstate(invalid="ignore"):
        step = np.hypot(np.diff(ra, axis=0) * np.cos(np.deg2rad(dec[1:])), np.diff(dec, axis=0))
    scale = float(np.nanmedian(step)) * 3600.0 if np.any(np.isfinite(step)) else np.nan
    return expected_nod_offsets(
        nod_type=_meta(slit, parent, "dither", "nod_type"),
        primary_type=_meta(slit, parent, "dither", "primary_type"),
        y_offset=_meta(slit, parent, "dither", "y_offset"),
        pixel_scale=scale,
    )


def _axis(slit: Any, parent: Any) -> tuple[int, bool]:
    """Dispersion axis (1 = x, 2 = y) and whether it was guessed from EXP_TYPE."""
    axis = _meta(slit, parent, "wcsinfo", "dispersion_direction")
    if axis in (1, 2):
        return int(axis), False
    exp_type = _meta(slit, parent, "exposure", "type")
    return (2 if exp_type in _VERTICAL_EXP_TYPES else 1), True


def _dispersion_axis(slit: Any, parent: Any, name: str) -> int:
    axis, guessed = _axis(slit, parent)
    if guessed:
        log.warning(
            "Slit %s: dispersion_direction is not set; assuming %s from EXP_TYPE %s",
            name,
            "y" if axis == 2 else "x",
            _meta(slit, parent, "exposure", "type"),
        )
    return axis


def _world_grid(slit: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wavelength, RA and Dec of every pixel, from the WCS (evaluated once)."""
    ny, nx = slit.data.shape
    wcs = getattr(slit.meta, "wcs", None)
    nan = np.full((ny, nx), np.nan)
    if wcs is not None:
        y, x = np.mgrid[:ny, :nx].astype(float)
        try:
            world = wcs(x, y)
        except Exception as err:  # a broken WCS is reported, then the array is tried
            log.warning("Slit %s: WCS evaluation failed (%s: %s)", name, type(err).__name__, err)
        else:
            world = world if isinstance(world, tuple) else (world,)
            lam = np.asarray(world[-1], float)
            ra, dec = (
                (np.asarray(world[0], float), np.asarray(world[1], float))
                if len(world) >= 3
                else (nan, nan)
            )
            if lam.shape != (ny, nx):
                log.warning(
                    "Slit %s: the WCS gave wavelengths of shape %s for SCI of shape %s",
                    name,
                    lam.shape,
                    (ny, nx),
                )
            elif np.any(np.isfinite(lam)):
                return lam, *(np.array(np.broadcast_to(a, lam.shape)) for a in (ra, dec))
    lam = read_array(slit, "wavelength", name)
    if lam is not None and np.any(np.isfinite(lam) & (lam > 0)):
        log.warning("Slit %s: no usable WCS; wavelengths from the WAVELENGTH array", name)
        return np.where(lam > 0, lam, np.nan), nan, nan.copy()
    msg = f"slit {name!r} has neither a usable WCS nor a WAVELENGTH array"
    raise InputError(msg)


def input_data_unit(slit: Any, parent: Any, name: str, input_unit: str = "auto") -> str | None:
    """The unit of a slit's data: BUNIT, or as jwst's ``extract_1d`` decides, or as forced.

    Products written before jwst labelled its resampled data correctly may say
    ``BUNIT = 'DN/s'`` although photom has run (``S_PHOTOM = COMPLETE``). jwst's
    ``extract_1d`` ignores BUNIT: after photom the data are MJy for a NIRSpec
    point source (``SRCTYPE = POINT``) and MJy/sr otherwise. Such a slit is
    read the same way, and an INFO line says so.

    Parameters
    ----------
    slit, parent : datamodel
        The slit and the model it came from (see `iter_slits`).
    name : str
        Slit name, for the log.
    input_unit : str
        ``"auto"``, or the unit to use whatever BUNIT says (``"MJy/sr"``,
        ``"MJy"``, ``"DN/s"``).

    Returns
    -------
    str or None
        The unit; BUNIT as written when it is neither DN/s after photom nor
        forced (None when BUNIT is not set).
    """
    bunit = _meta(slit, parent, "bunit_data")
    if input_unit != "auto":
        if (bunit or "").replace(" ", "") != input_unit:
            log.info(
                "Slit %s: data taken as %s (input_unit), BUNIT says %r", name, input_unit, bunit
            )
        return input_unit
    photom = str(_meta(slit, parent, "cal_step", "photom") or "").upper()
    if (bunit or "").replace(" ", "") != "DN/s" or photom != "COMPLETE":
        return bunit
    source_type = _source_type(slit, parent)
    instrument = str(_meta(slit, parent, "instrument", "name") or "").upper()
    if instrument == "NIRSPEC" and source_type == "POINT":
        unit, why = "MJy", "a NIRSpec point source"
    else:
        unit, why = "MJy/sr", f"source type {source_type or 'not set'}, not a NIRSpec point source"
    log.info(
        "Slit %s: BUNIT says 'DN/s' but photom has run (S_PHOTOM = COMPLETE): the data are "
        "taken as %s, as jwst's extract_1d does (%s); FLUX is converted to Jy "
        "(set input_unit to override)",
        name,
        unit,
        why,
    )
    return unit


def _source_type(slit: Any, parent: Any) -> str:
    """SRCTYPE of the slit (MultiSlitModel / SlitModel), else the target's, upper case."""
    value = getattr(slit, "source_type", None) if slit.hasattr("source_type") else None
    if not value:
        value = _meta(slit, parent, "target", "source_type")
    return str(value or "").upper()


def _flux_units(slit: Any, parent: Any, name: str, bunit: str | None, *, forced: bool) -> FluxUnits:
    """Conversion of pixel sums in unit ``bunit`` to x1d units (Jy when calibrated)."""
    area = _meta(slit, parent, "photometry", "pixelarea_steradians")
    unit = (bunit or "").replace(" ", "")
    if unit == "MJy/sr":
        if area:
            return FluxUnits(area * 1e6, "Jy", 1.0, 1.0, "MJy/sr")
        log.warning(
            "Slit %s: pixel solid angle (PIXAR_SR) is missing; FLUX is left in MJy/sr "
            "summed over pixels",
            name,
        )
        return FluxUnits(1.0, "MJy/sr", 1.0, 1.0, "MJy/sr")
    if unit == "MJy":
        bkg = 1.0 / area if area else 0.0
        return FluxUnits(1e6, "Jy", 0.0, bkg, "MJy/sr")
    if unit == "DN/s" and forced:  # the user says the data are uncalibrated count rates
        return FluxUnits(1.0, "DN/s", 1.0, 1.0, "DN/s")
    if bunit:
        log.warning(
            "Slit %s: input unit %r is not MJy/sr or MJy; FLUX is left in the input unit "
            "(set input_unit = MJy/sr or MJy if the data are calibrated)",
            name,
            bunit,
        )
    else:
        log.warning(
            "Slit %s: the input unit (BUNIT) is not set; FLUX is left in the input unit, "
            "labelled DN/s (set input_unit = MJy/sr, MJy or DN/s to say what it is)",
            name,
        )
    keep = bunit or "DN/s"
    return FluxUnits(1.0, keep, 1.0, 1.0, keep)


def _identity(slit: Any, parent: Any) -> dict[str, Any]:
    attrs = {}
    for key in _COPY_ATTRIBUTES:
        value = getattr(slit, key, None) if slit.hasattr(key) else None
        if value is not None:
            attrs[key] = value
    attrs["spectral_order"] = _meta(slit, parent, "wcsinfo", "spectral_order")
    attrs["detector"] = _meta(slit, parent, "instrument", "detector")
    attrs["position_angle"] = _meta(slit, parent, "aperture", "position_angle")
    return attrs
