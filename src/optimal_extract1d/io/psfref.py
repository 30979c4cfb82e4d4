"""Read (and write) jwst ``SpecPsfModel`` PSF reference files for ``kernel = "psf"``.

The boundary between the file format and the pure `.psf` layer. A
``SpecPsfModel`` holds one or more *apertures*, each a 2-D PSF image
``data`` whose dispersion axis runs along ``wave`` (columns for horizontal
dispersion, rows for vertical), oversampled ``subpix`` times in the
cross-dispersion direction, with the trace center at row ``center_row``
(horizontal dispersion) or column ``center_col`` (vertical). jwst's MIRI LRS
optimal extraction (``jwst/extract_1d/psf_profile.py``) samples it at the
data pixel centers; so do we: data pixel ``y`` at trace center ``t`` reads
PSF row ``center_row + (y - t) * subpix``. An aperture whose ``name`` is the
slit name serves that slit; ``ANY`` or ``NONE`` serve every slit.

`read_psf_file` reads and checks a file once into a frozen `PSFReference`;
`PSFReference.template` turns the aperture of one slit into the kernel
template (`.psf.tabulated.TabulatedPSF1D`). Every problem raises `.ReferenceFileError`
naming the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from stdatamodels.jwst.datamodels import SpecPsfModel

from ..errors import ReferenceFileError
from ..psf.kernel import KernelTemplate, make_template
from ..psf.tabulated import PSFTable, TabulatedPSF1D

__all__ = [
    "PSFAperture",
    "PSFReference",
    "read_psf_file",
    "write_psf_file",
    "EXAMPLE_PSF",
    "WILDCARD_NAMES",
]

log = logging.getLogger(__name__)

#: Aperture names that serve every slit (as in jwst).
WILDCARD_NAMES = ("ANY", "NONE")
#: The example file shipped with the package (scripts/make_example_psf.py), NIRSpec
#: PRISM-like profiles, 0.6-5.3 um, an illustration rather than a calibration.
EXAMPLE_PSF = Path(
    str(resources.files("optimal_extract1d") / "reference_files" / "example_psf_nirspec_prism.fits")
)


@dataclass(frozen=True)
class PSFAperture:
    """One aperture of a PSF reference file, as stored.

    Attributes
    ----------
    name : str
        Aperture name (upper case); ``ANY``/``NONE`` match every slit.
    data : ndarray, shape (n_rows, n_cols)
        PSF image (non-finite values replaced by 0).
    wave : ndarray, shape (n_wave,)
        Wavelengths (microns) along the dispersion axis of ``data``.
    subpix : float
        Oversampling factor in the cross-dispersion direction.
    center_row, center_col : float or None
        Trace center in PSF rows (horizontal dispersion) / columns (vertical).
    """

    name: str
    data: np.ndarray
    wave: np.ndarray
    subpix: float
    center_row: float | None
    center_col: float | None


@dataclass(frozen=True)
class PSFReference:
    """A checked PSF reference file.

    Attributes
    ----------
    path : str
        The file.
    apertures : tuple of PSFAperture
        Its apertures, in file order.
    """

    path: str
    apertures: tuple[PSFAperture, ...]

    @property
    def filename(self) -> str:
        """Base name of the file (recorded in the spectrum metadata)."""
        return os.path.basename(self.path)

    def aperture(self, slit_name: str) -> PSFAperture:
        """The aperture for a slit: same name (case-insensitive), else ``ANY``/``NONE``.

        Raises
        ------
        ReferenceFileError
            If no aperture matches.
        """
        wanted = str(slit_name).upper()
        for ap in self.apertures:
            if ap.name == wanted:
                return ap
        for ap in self.apertures:
            if ap.name in WILDCARD_NAMES:
                return ap
        names = [ap.name for ap in self.apertures]
        msg = (
            f"PSF file {self.path!r} has no aperture for slit {slit_name!r} "
            f"(apertures {names}; ANY or NONE would match every slit)"
        )
        raise ReferenceFileError(msg)

    def table(self, slit_name: str, disp_axis: int) -> PSFTable:
        """Cross-dispersion profile table of a slit's aperture.

        Parameters
        ----------
        slit_name : str
            Slit name, matched to the aperture names.
        disp_axis : int
            1 if the slit's dispersion runs along x in its file (use
            ``center_row``, wavelengths along the PSF columns), 2 if along y
            (``center_col``, wavelengths along the PSF rows).

        Returns
        -------
        psf.tabulated.PSFTable

        Raises
        ------
        ReferenceFileError
            If no aperture matches, or it does not fit this dispersion direction.
        """
        ap = self.aperture(slit_name)
        horizontal = disp_axis == 1
        center = ap.center_row if horizontal else ap.center_col
        image = ap.data if horizontal else ap.data.T
        key = "center_row (CENTROW)" if horizontal else "center_col (CENTCOL)"
        where = f"PSF file {self.path!r}, aperture {ap.name!r}"
        if center is None:
            msg = f"{where}: {key} is not set, needed for dispersion along {'xy'[disp_axis - 1]}"
            raise ReferenceFileError(msg)
        if image.shape[1] != ap.wave.size:
            msg = (
                f"{where}: for dispersion along {'xy'[disp_axis - 1]} the PSF image "
                f"{ap.data.shape} needs {ap.wave.size} wavelengths along axis "
                f"{1 if horizontal else 0}"
            )
            raise ReferenceFileError(msg)
        return _profile_table(image, ap.wave, ap.subpix, center=center, name=ap.name, where=where)

    def template(self, slit_name: str, disp_axis: int, wavelength: np.ndarray) -> KernelTemplate:
        """The ``"psf"`` kernel template of a slit (`.psf.tabulated.TabulatedPSF1D`).

        Parameters
        ----------
        slit_name : str
            Slit name.
        disp_axis : int
            Dispersion direction in the slit's file (1 = x, 2 = y).
        wavelength : ndarray
            The slit's wavelengths (microns); a warning is logged when they
            leave the tabulated range (the edge profile is used there).

        Returns
        -------
        KernelTemplate
        """
        table = self.table(slit_name, disp_axis)
        lam = np.asarray(wavelength, float)
        lam = lam[np.isfinite(lam)]
        lo, hi = float(table.wavelength[0]), float(table.wavelength[-1])
        outside = float(np.mean((lam < lo) | (lam > hi))) if lam.size else 0.0
        if outside > 0:
            log.warning(
                "Slit %s: %.0f%% of its wavelengths (%.3g-%.3g um) lie outside the PSF "
                "table of %s (%.3g-%.3g um); the edge profiles are used there",
                slit_name,
                100 * outside,
                lam.min(),
                lam.max(),
                self.filename,
                lo,
                hi,
            )
        return make_template(TabulatedPSF1D(table), name="psf")


def _profile_table(image, wave, subpix, *, center, name, where) -> PSFTable:
    """Collapse an aperture (dispersion along axis 1) into a normalized `.PSFTable`."""
    good = np.isfinite(wave)
    wave, image = wave[good], image[:, good]
    wave, first = np.unique(wave, return_index=True)
    image = np.clip(image[:, first], 0.0, None)
    step = 1.0 / subpix
    total = image.sum(axis=0) * step
    keep = total > 0
    if not keep.any():
        msg = f"{where}: no wavelength has a positive PSF profile"
        raise ReferenceFileError(msg)
    offsets = (np.arange(image.shape[0]) - float(center)) * step
    if not (offsets[0] < 0 < offsets[-1]):
        msg = f"{where}: the trace center {center} lies outside the PSF image rows"
        raise ReferenceFileError(msg)
    values = image[:, keep] / total[keep]
    return PSFTable(offsets, wave[keep], values, name=name, source=where)


def read_psf_file(path: str | os.PathLike) -> PSFReference:
    """Read and check a ``SpecPsfModel`` file.

    Parameters
    ----------
    path : str or os.PathLike
        FITS (or ASDF) file in jwst's ``SpecPsfModel`` format.

    Returns
    -------
    PSFReference

    Raises
    ------
    ReferenceFileError
        If the file is missing, is not a ``SpecPsfModel``, has no apertures,
        or an aperture lacks or has inconsistent ``data``, ``wave`` or ``subpix``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"PSF file {path!r} does not exist"
        raise ReferenceFileError(msg)
    try:
        model = SpecPsfModel(path)
    except Exception as err:  # any reader failure means "not a SpecPsfModel"
        msg = f"cannot read PSF file {path!r} as a SpecPsfModel: {type(err).__name__}: {err}"
        raise ReferenceFileError(msg) from err
    with model:
        apertures = tuple(
            _check_aperture(ap, i, path) for i, ap in enumerate(getattr(model, "apertures", []))
        )
    if not apertures:
        msg = f"PSF file {path!r} has no PSF apertures (no PSF/WAVE extensions)"
        raise ReferenceFileError(msg)
    return PSFReference(path, apertures)


def _check_aperture(ap, index: int, path: str) -> PSFAperture:
    name = str(getattr(ap, "name", None) or "ANY").upper()
    where = f"PSF file {path!r}, aperture {index} ({name})"
    data = np.asarray(getattr(ap, "data", None), float)
    wave = np.asarray(getattr(ap, "wave", None), float)
    subpix = getattr(ap, "subpix", None)
    if data.ndim != 2 or data.size == 0:
        msg = f"{where}: the PSF image must be 2-D, got shape {data.shape}"
        raise ReferenceFileError(msg)
    if wave.ndim != 1 or wave.size not in data.shape or not np.any(np.isfinite(wave)):
        msg = (
            f"{where}: the wavelengths (shape {wave.shape}) must be 1-D, finite and as "
            f"long as one axis of the PSF image {data.shape}"
        )
        raise ReferenceFileError(msg)
    if subpix is None or not (np.isfinite(subpix) and subpix > 0):
        msg = f"{where}: the oversampling factor subpix (SUBPIX) must be > 0, got {subpix}"
        raise ReferenceFileError(msg)
    center_row, center_col = getattr(ap, "center_row", None), getattr(ap, "center_col", None)
    if center_row is None and center_col is None:
        msg = f"{where}: neither center_row (CENTROW) nor center_col (CENTCOL) is set"
        raise ReferenceFileError(msg)
    bad = ~np.isfinite(data)
    if bad.any():
        log.warning("%s: %d non-finite PSF values read as 0", where, int(bad.sum()))
    return PSFAperture(
        name=name,
        data=np.where(bad, 0.0, data),
        wave=wave.copy(),
        subpix=float(subpix),
        center_row=None if center_row is None else float(center_row),
        center_col=None if center_col is None else float(center_col),
    )


def write_psf_file(
    path: str | os.PathLike,
    profiles: np.ndarray,
    wavelength: np.ndarray,
    *,
    subpix: float,
    center: float,
    disp_axis: int = 1,
    name: str = "ANY",
    description: str = "Cross-dispersion PSF profiles for optimal_extract_1d",
) -> Path:
    """Write cross-dispersion profiles as a one-aperture ``SpecPsfModel`` file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.fits``).
    profiles : ndarray, shape (n_offset, n_wave)
        Effective (pixel-integrated) profile at every sub-pixel offset and
        wavelength; any normalization.
    wavelength : ndarray, shape (n_wave,)
        Wavelengths (microns).
    subpix : float
        Samples per data pixel along the offsets.
    center : float
        Index (fractional allowed) of the trace center along the offsets.
    disp_axis : int
        1: write for horizontal dispersion (``data`` is ``profiles``,
        ``center_row``); 2: vertical (``data`` is ``profiles.T``, ``center_col``).
    name : str
        Aperture name (``ANY`` = every slit).
    description : str
        DESCRIP keyword.

    Returns
    -------
    pathlib.Path
    """
    profiles = np.asarray(profiles, float)
    model = SpecPsfModel()
    model.apertures.append(model.apertures.item())
    ap = model.apertures[0]
    ap.name = name
    ap.subpix = float(subpix)
    ap.wave = np.asarray(wavelength, float)
    if disp_axis == 1:
        ap.data, ap.center_row = profiles, float(center)
    else:
        ap.data, ap.center_col = np.ascontiguousarray(profiles.T), float(center)
    model.meta.reftype = "SPECPSF"
    model.meta.description = description
    model.meta.author = "optimal_extract1d"
    model.meta.pedigree = "DUMMY"
    model.meta.useafter = "2022-01-01T00:00:00"
    model.meta.telescope = "JWST"
    path = Path(path)
    model.save(path)
    model.close()
    return path
