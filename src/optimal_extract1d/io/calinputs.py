"""Unresampled (cal) slit exposures: recognise them and read them into `.CalExposure`.

The cal path of issue 13 extracts from the calwebb_spec2 products of a
source (``*_cal.fits`` MultiSlitModels, SlitModel cut-outs, an association
or a ModelContainer) instead of the resampled s2d. A slit is cal data when
its WCS has a ``slit_frame`` (so every pixel has an along-slit position)
and it was not resampled (``meta.cal_step.resample`` is not COMPLETE).

Every pixel's wavelength and along-slit coordinate come from the WCS
(``detector -> slit_frame`` gives the slit-frame ``y`` and the wavelength
in meters); the along-slit offset from the source is ``(y - source_ypos)``
divided by the slit-frame size of one detector row, i.e. in pixels.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from stdatamodels.jwst.datamodels import dqflags

from ..errors import InputError
from ..slitdata import CalExposure
from .inputvariance import bad_variance, choose_variance, read_array
from .slits import _axis, _flux_units, _identity, input_data_unit, iter_slits, slit_name

__all__ = ["is_cal_input", "is_cal_slit", "read_exposures", "background_state"]

log = logging.getLogger(__name__)


def _frames(slit: Any) -> list[str]:
    wcs = getattr(slit.meta, "wcs", None)
    try:
        return [str(f) for f in (wcs.available_frames if wcs is not None else [])]
    except AttributeError:
        return []


def is_cal_slit(slit: Any, parent: Any) -> bool:
    """Whether one slit is unresampled cal data (WCS with a slit_frame, not resampled)."""
    resampled = str(getattr(parent.meta.cal_step, "resample", None) or "").upper()
    if resampled == "COMPLETE":
        return False
    return "slit_frame" in _frames(slit)


def is_cal_input(model: Any) -> bool:
    """Whether an opened input holds unresampled (cal) slits only.

    Parameters
    ----------
    model : datamodel or ModelContainer
        As returned by `.io.inputs.open_input`.

    Returns
    -------
    bool
        True when every slit has a WCS with a ``slit_frame`` and none was resampled.
    """
    pairs = list(iter_slits(model))
    return bool(pairs) and all(is_cal_slit(s, p) for s, p in pairs)


def background_state(parent: Any) -> str:
    """What calwebb_spec2/3 did to the background: ``"nod"``, ``"master"`` or ``"none"``."""
    steps = parent.meta.cal_step
    if str(getattr(steps, "master_background", None) or "").upper() == "COMPLETE":
        return "master"
    if str(getattr(steps, "bkg_subtract", None) or "").upper() == "COMPLETE":
        return "nod"
    return "none"


def read_exposures(
    model: Any, *, variance_source: str = "auto", input_unit: str = "auto"
) -> list[CalExposure]:
    """Read every slit of a cal input into a `.CalExposure`.

    Parameters
    ----------
    model : datamodel or ModelContainer
        Cal slits (see `is_cal_input`).
    variance_source : str
        ``"auto"``, ``"var"`` or ``"err"`` (see `.io.inputvariance.choose_variance`).
    input_unit : str
        ``"auto"`` (BUNIT) or the unit to read the data in (see `.io.slits.input_data_unit`).

    Returns
    -------
    list of CalExposure
        In input order.

    Raises
    ------
    InputError
        If a slit has no 2-D data, no ``slit_frame`` in its WCS, or no pixel
        with a wavelength.
    """
    out = []
    for index, (slit, parent) in enumerate(iter_slits(model)):
        out.append(
            _read_one(
                slit, parent, index=index, variance_source=variance_source, input_unit=input_unit
            )
        )
    return out


def _read_one(
    slit: Any, parent: Any, *, index: int, variance_source: str, input_unit: str
) -> CalExposure:
    name = slit_name(slit, parent)
    label = f"{getattr(parent.meta, 'filename', None) or 'exposure'}[{name}]"
    data = np.asarray(slit.data, dtype=float) if slit.hasattr("data") else np.zeros((0, 0))
    if data.ndim != 2 or data.size == 0:
        msg = f"{label}: no 2-D science data (shape {data.shape})"
        raise InputError(msg)
    if "slit_frame" not in _frames(slit):
        msg = f"{label}: the WCS has no slit_frame; cannot place pixels along the slit"
        raise InputError(msg)
    _, var = choose_variance(slit, variance_source, 1.0, name=name)
    wavelength, along, ra, dec = _geometry(slit, label)
    mask = ~np.isfinite(data) | bad_variance(var) | ~np.isfinite(wavelength) | ~np.isfinite(along)
    dq = read_array(slit, "dq", name)
    if dq is not None:
        mask |= (dq.astype(np.int64) & dqflags.pixel["DO_NOT_USE"]) != 0
    if mask.all():
        msg = f"{label}: no usable pixel (all masked, or no wavelength / slit position)"
        raise InputError(msg)
    bunit = input_data_unit(slit, parent, name, input_unit)
    units = _flux_units(slit, parent, name, bunit, forced=input_unit != "auto")
    s = units.flux_scale
    arrays = {
        "data": data * s,
        "mask": mask,
        "wavelength": wavelength,
        "along_slit": along,
        "ra": ra,
        "dec": dec,
        **{k: v * s * s for k, v in var.items()},
    }
    if _axis(slit, parent)[0] == 2:
        arrays = {k: np.ascontiguousarray(v.T) for k, v in arrays.items()}
    attributes = _identity(slit, parent)
    source_id = attributes.get("source_id")
    key = f"source {source_id}" if source_id not in (None, 0) else name
    return CalExposure(
        name=str(getattr(parent.meta, "filename", None) or f"{name}_{index}"),
        slit=name,
        source_key=key,
        flux_scale=float(s),
        flux_unit=units.flux_unit,
        footprint=(int(getattr(slit, "xstart", 0) or 0), int(getattr(slit, "ystart", 0) or 0)),
        background=background_state(parent),
        attributes=attributes,
        **arrays,
    )


def _geometry(slit: Any, label: str) -> tuple[np.ndarray, ...]:
    """Wavelength (microns), along-slit offset (pixels), RA and Dec of every pixel."""
    ny, nx = slit.data.shape
    y, x = np.mgrid[:ny, :nx].astype(float)
    wcs = slit.meta.wcs
    try:
        _, sy, lam = wcs.get_transform("detector", "slit_frame")(x, y)
        world = wcs(x, y)
    except Exception as err:  # a broken WCS is an input problem, named
        msg = f"{label}: the WCS cannot be evaluated ({type(err).__name__}: {err})"
        raise InputError(msg) from err
    sy = np.asarray(sy, float)
    lam = np.asarray(lam, float) * 1e6  # slit_frame wavelengths are in meters
    axis = 0 if _axis(slit, slit)[0] == 1 else 1
    with np.errstate(invalid="ignore"):
        step = np.abs(np.diff(sy, axis=axis))
    if not np.any(np.isfinite(step) & (step > 0)):
        msg = f"{label}: the slit_frame gives no along-slit scale"
        raise InputError(msg)
    scale = float(np.nanmedian(step[step > 0]))
    ypos = getattr(slit, "source_ypos", None) if slit.hasattr("source_ypos") else None
    if ypos is None or not np.isfinite(ypos):
        log.warning("%s: SOURCE_YPOS is not set; the source is assumed at the slit center", label)
        ypos = 0.0
    along = (sy - float(ypos)) / scale
    ra, dec = (np.asarray(world[0], float), np.asarray(world[1], float))
    return lam, along, ra, dec
