"""Plain results to datamodels: the x1d ``MultiSpecModel``, as jwst writes it.

This is the output half of the datamodel boundary (`.io.slits` is the input
half). Table columns and dtypes come from the SpecModel schema; units and
conversions follow ``jwst.extract_1d.extract`` (FLUX in Jy, surface
brightness and background in MJy/sr).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from astropy.io import fits
from stdatamodels.jwst import datamodels
from stdatamodels.properties import _as_fitsrec as as_fitsrec

from ..results import DQ_DO_NOT_USE, SpectrumResult
from .atomic import atomic_path
from .specwcs import spectral_wcs

__all__ = ["build_x1d", "build_spec", "save_x1d", "spec_table_dtype", "METADATA_KEY"]

log = logging.getLogger(__name__)

#: Name of the metadata node holding what this package records.
METADATA_KEY = "optimal_extraction"


@cache
def spec_table_dtype() -> np.dtype:
    """Dtype of the x1d spectrum table, from the SpecModel schema."""
    return np.dtype(datamodels.SpecModel().get_dtype("spec_table"))


def build_x1d(
    spectra: Sequence[SpectrumResult], meta_source: Any, run_metadata: dict[str, Any]
) -> datamodels.MultiSpecModel:
    """Build the output x1d model.

    Every spectrum is built as a plain tree (`build_spec`). stdatamodels
    validates every assignment against the schema, and a whole spectrum
    (table, WCS, metadata) costs ~6 ms to validate, more than its
    extraction; saving validates the whole model again anyway. So only what
    comes from the input (identity and geometry values, ``_identity``) is
    validated here, per spectrum, and the model is made from the finished
    tree. The table, WCS and metadata are this module's own.

    Parameters
    ----------
    spectra : sequence of SpectrumResult
        Extracted spectra, in output order.
    meta_source : datamodel
        Model whose primary metadata is copied to the output.
    run_metadata : dict
        Run-level record (parameters, ``skipped_slits``), stored under
        ``meta.optimal_extraction``. A spectrum that cannot be written (an
        unexpected exception, logged at ERROR) is added to ``skipped_slits``
        as ``{"name", "reason", "error"}``; the others are still written.

    Returns
    -------
    ~stdatamodels.jwst.datamodels.MultiSpecModel
    """
    header = datamodels.MultiSpecModel()
    header.update(meta_source, only="PRIMARY")
    skipped = list(run_metadata.get("skipped_slits", []))
    trees = []
    for result in spectra:
        try:
            trees.append(build_spec(result))
        except Exception as err:  # one spectrum's failure must not lose the others
            _skip(result.name, err, skipped)
    trees = _schema_checked(trees, skipped)
    header.meta.wcs = None  # each spectrum carries its own WCS, as in jwst
    header.meta.target.source_type = None
    setattr(header.meta, METADATA_KEY, {**run_metadata, "skipped_slits": skipped})
    return datamodels.MultiSpecModel({"meta": header.meta.instance, "spec": trees})


def save_x1d(model: datamodels.MultiSpecModel, path: str | os.PathLike) -> str:
    """Write an x1d model to ``path`` atomically (`.io.atomic.atomic_path`).

    The file appears under ``path`` only once it is complete, and records
    ``path``'s base name as its ``FILENAME``. An existing file is replaced.

    Returns
    -------
    str
        ``path``.
    """
    with atomic_path(path) as tmp:
        model.save(tmp)
    return os.fspath(path)


def _identity(tree: dict[str, Any]) -> dict[str, Any]:
    """The values of a spectrum tree taken from the input (no table, WCS or metadata)."""
    return {k: v for k, v in tree.items() if k not in ("spec_table", "meta")}


def _schema_checked(trees: list[dict[str, Any]], skipped: list) -> list[dict[str, Any]]:
    """The trees whose input-derived values the SpecModel schema accepts."""
    probe = datamodels.MultiSpecModel()
    try:
        probe.spec = [_identity(tree) for tree in trees]
    except Exception:  # a value the schema refuses: find its tree, keep the others
        good = []
        for tree in trees:
            try:
                datamodels.MultiSpecModel().spec = [_identity(tree)]
            except Exception as err:
                _skip(tree["name"], err, skipped)
            else:
                good.append(tree)
        return good
    return trees


def _skip(name: str, err: Exception, skipped: list) -> None:
    reason = f"unexpected {type(err).__name__} while writing the spectrum: {err}"
    log.error("Slit %s skipped: %s", name, reason, exc_info=True)
    skipped.append({"name": name, "reason": reason, "error": type(err).__name__})


def build_spec(result: SpectrumResult) -> dict[str, Any]:
    """One x1d spectrum (table + identity + WCS + metadata) as a SpecModel tree.

    Columns whose wavelength is not finite are dropped, as jwst does. A value
    that overflows float64 in the unit conversion becomes NaN, and a row
    whose FLUX is not finite gets DQ_DO_NOT_USE.
    """
    keep = np.isfinite(result.wavelength)
    if not keep.any():
        log.warning("Spectrum %s: no column has a wavelength; its table is empty", result.name)
    elif not keep.all():
        log.info(
            "Spectrum %s: %d columns without a wavelength dropped", result.name, int((~keep).sum())
        )
    table = np.zeros(int(keep.sum()), dtype=spec_table_dtype())
    with np.errstate(over="ignore", invalid="ignore"):
        for column, values in _columns(result).items():
            table[column] = values[keep]
    _no_inf(table)
    tree = {"spec_table": _with_units(table, result), "name": result.name}
    tree.update({k: v for k, v in result.attributes.items() if v is not None})
    tree["source_type"] = _source_type(result)
    tree.update(_geometry(result, keep))
    tree["meta"] = {**tree.get("meta", {}), METADATA_KEY: result.metadata}
    return tree


def _source_type(result: SpectrumResult) -> str:
    """SRCTYPE: the slit's POINT or EXTENDED, else what the extraction assumed.

    A kernel (fitted or fixed) is a point-source profile, a box is not; readers
    such as specutils and jdaviz choose FLUX or SURF_BRIGHT from it.
    """
    given = str(result.attributes.get("source_type") or "").upper()
    if given in ("POINT", "EXTENDED"):
        return given
    return "EXTENDED" if result.metadata.get("status") == "box" else "POINT"


def _no_inf(table: np.ndarray) -> None:
    """Replace values that overflowed in the unit conversion by NaN; flag such rows."""
    for name in table.dtype.names:
        values = table[name]
        if values.dtype.kind == "f" and np.isinf(values).any():
            values[np.isinf(values)] = np.nan
    table["DQ"][~np.isfinite(table["FLUX"])] |= DQ_DO_NOT_USE


def _columns(r: SpectrumResult) -> dict[str, np.ndarray]:
    u = r.units
    fs2, sbs2, bks2 = u.flux_scale**2, u.sb_scale**2, u.bkg_scale**2
    npix = np.where(r.npixels > 0, r.npixels, 1.0)
    vp, vr, vf = r.var_poisson, r.var_rnoise, r.var_flat
    bvp, bvr, bvf = r.bkg_var_poisson, r.bkg_var_rnoise, r.bkg_var_flat
    return {
        "WAVELENGTH": r.wavelength,
        "FLUX": r.flux * u.flux_scale,
        "FLUX_ERROR": np.sqrt(vp + vr + vf) * u.flux_scale,
        "FLUX_VAR_POISSON": vp * fs2,
        "FLUX_VAR_RNOISE": vr * fs2,
        "FLUX_VAR_FLAT": vf * fs2,
        "SURF_BRIGHT": r.flux / npix * u.sb_scale,
        "SB_ERROR": np.sqrt(vp + vr + vf) / npix * u.sb_scale,
        "SB_VAR_POISSON": vp / npix**2 * sbs2,
        "SB_VAR_RNOISE": vr / npix**2 * sbs2,
        "SB_VAR_FLAT": vf / npix**2 * sbs2,
        "DQ": r.dq,
        "BACKGROUND": r.background * u.bkg_scale,
        "BKGD_ERROR": np.sqrt(bvp + bvr + bvf) * u.bkg_scale,
        "BKGD_VAR_POISSON": bvp * bks2,
        "BKGD_VAR_RNOISE": bvr * bks2,
        "BKGD_VAR_FLAT": bvf * bks2,
        "NPIXELS": r.npixels,
    }


def _with_units(table: np.ndarray, r: SpectrumResult) -> fits.FITS_rec:
    """The table as the FITS_rec a SpecModel holds, with jwst's column units."""
    u = r.units
    units = {"WAVELENGTH": "um"}
    units.update(dict.fromkeys(("FLUX", "FLUX_ERROR"), u.flux_unit))
    units.update(
        dict.fromkeys(("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT"), u.flux_var_unit)
    )
    units.update(dict.fromkeys(("SURF_BRIGHT", "SB_ERROR", "BACKGROUND", "BKGD_ERROR"), u.sb_unit))
    sb_var = (
        "SB_VAR_POISSON",
        "SB_VAR_RNOISE",
        "SB_VAR_FLAT",
        "BKGD_VAR_POISSON",
        "BKGD_VAR_RNOISE",
        "BKGD_VAR_FLAT",
    )
    units.update(dict.fromkeys(sb_var, u.sb_var_unit))
    rec = as_fitsrec(table)  # what stdatamodels makes of a table assigned to a model
    for name, unit in units.items():
        rec.columns[name].unit = unit
    return rec


def _geometry(r: SpectrumResult, keep: np.ndarray) -> dict[str, Any]:
    wavelength = r.wavelength[keep]
    ra = float(np.nanmedian(r.ra)) if np.any(np.isfinite(r.ra)) else 0.0
    dec = float(np.nanmedian(r.dec)) if np.any(np.isfinite(r.dec)) else 0.0
    x1, y1, x2, y2 = r.region
    geometry = {
        "slit_ra": ra,
        "slit_dec": dec,
        "dispersion_direction": r.disp_axis,
        "extraction_xstart": x1 + 1,
        "extraction_xstop": x2 + 1,
        "extraction_ystart": y1 + 1,
        "extraction_ystop": y2 + 1,
    }
    if wavelength.size > 1:
        geometry["meta"] = {"wcs": spectral_wcs(ra, dec, wavelength)}
    return geometry
