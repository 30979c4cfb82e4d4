"""Datamodel half of the simulator: synthetic s2d files like ``resample_spec`` writes.

`make_multislit` wraps `.sim.simulate.SimulatedSlit` arrays in a NIRSpec MOS-like
``MultiSlitModel``; `make_lrs_image` in a MIRI LRS-like ``ImageModel``
(dispersion along y). Every slit carries a gwcs detector -> (ra, dec,
wavelength) with a tabulated wavelength axis and a bounding box, SCI/ERR/
WHT/VAR_* arrays (float32), units MJy/sr and the pixel solid angle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models
from gwcs import WCS
from gwcs import coordinate_frames as cf
from stdatamodels.jwst import datamodels

from .simulate import PIXEL_AREA_SR, SimulatedSlit, simulate_slit

__all__ = [
    "slit_wcs",
    "make_slit_model",
    "make_multislit",
    "make_lrs_image",
    "make_s2d_file",
    "SimulatedFile",
]

_PIXEL_SCALE_ARCSEC = 0.1


def slit_wcs(
    wavelength: np.ndarray,
    n_cross: int,
    *,
    ra: float = 214.85,
    dec: float = 52.86,
    pa_deg: float = 138.0,
    disp_axis: int = 1,
) -> WCS:
    """A gwcs from detector pixels to (ra, dec, wavelength), like an s2d slit's.

    Parameters
    ----------
    wavelength : ndarray, shape (n_disp,)
        Wavelength (microns) of every dispersion pixel (tabulated, as resample_spec does).
    n_cross : int
        Number of cross-dispersion pixels.
    ra, dec : float
        Sky position of the slit center, degrees.
    pa_deg : float
        Position angle of the slit on the sky, degrees.
    disp_axis : int
        1: dispersion along x; 2: along y.

    Returns
    -------
    gwcs.WCS
    """
    n_disp = wavelength.size
    scale = _PIXEL_SCALE_ARCSEC / 3600.0
    yc = (n_cross - 1) / 2.0
    pa = np.deg2rad(pa_deg)
    ra_slope = scale * np.sin(pa) / np.cos(np.deg2rad(dec))
    dec_slope = scale * np.cos(pa)
    lam = models.Tabular1D(
        points=np.arange(n_disp, dtype=float),
        lookup_table=wavelength,
        bounds_error=False,
        fill_value=np.nan,
    )
    sky_ra = models.Linear1D(slope=ra_slope, intercept=ra - yc * ra_slope)
    sky_dec = models.Linear1D(slope=dec_slope, intercept=dec - yc * dec_slope)
    mapping = models.Mapping((1, 1, 0)) if disp_axis == 1 else models.Mapping((0, 0, 1))
    transform = mapping | sky_ra & sky_dec & lam
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spectral = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    wcs = WCS([(detector, transform), (cf.CompositeFrame([sky, spectral], name="world"), None)])
    nx, ny = (n_disp, n_cross) if disp_axis == 1 else (n_cross, n_disp)
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return wcs


def _fill_arrays(model, sim: SimulatedSlit, *, transpose: bool, with_dq: bool) -> None:
    """Set SCI/ERR/VAR_*/WHT (float32, transposed for dispersion along y) and optionally DQ."""

    def f32(a):
        return np.ascontiguousarray((a.T if transpose else a).astype(np.float32))

    total = sim.var_poisson + sim.var_rnoise + sim.var_flat
    model.data = f32(sim.data)
    model.err = f32(np.sqrt(total))
    model.var_poisson = f32(sim.var_poisson)
    model.var_rnoise = f32(sim.var_rnoise)
    model.var_flat = f32(sim.var_flat)
    model.wht = f32(sim.wht)
    if with_dq:
        model.dq = np.where(np.isfinite(model.data), 0, 1).astype(np.uint32)


def make_slit_model(
    sim: SimulatedSlit,
    *,
    name: str = "1",
    source_id: int = 1,
    with_dq: bool = False,
    ra: float = 214.85,
    dec: float = 52.86,
) -> datamodels.SlitModel:
    """Wrap one simulated slit (dispersion along x) in a ``SlitModel`` with a WCS."""
    slit = datamodels.SlitModel()
    _fill_arrays(slit, sim, transpose=False, with_dq=with_dq)
    n_cross, _ = sim.data.shape
    slit.meta.wcs = slit_wcs(sim.wavelength, n_cross, ra=ra, dec=dec)
    slit.meta.wcsinfo.dispersion_direction = 1
    slit.meta.wcsinfo.spectral_order = 0
    slit.meta.bunit_data = "MJy/sr"
    slit.meta.bunit_err = "MJy/sr"
    slit.meta.photometry.pixelarea_steradians = PIXEL_AREA_SR
    slit.name = name
    slit.slitlet_id = int(source_id)
    slit.source_id = int(source_id)
    slit.source_name = f"sim_{source_id}"
    # the catalogue position of the source: its true row, through the WCS
    source_ra, source_dec, _ = slit.meta.wcs(sim.data.shape[1] / 2.0, float(np.median(sim.center)))
    slit.source_ra, slit.source_dec = float(source_ra), float(source_dec)
    slit.source_xpos, slit.source_ypos = 0.0, 0.0
    slit.shutter_state = "11x11"
    return slit


def _set_exposure_meta(model, exp_type: str, instrument: str, *, filename: str) -> None:
    """Set the exposure, observation and calibration-step metadata of an s2d product."""
    model.meta.filename = filename
    model.meta.telescope = "JWST"
    model.meta.instrument.name = instrument
    model.meta.exposure.type = exp_type
    model.meta.observation.date = "2026-01-01"
    model.meta.observation.time = "00:00:00"
    model.meta.cal_step.assign_wcs = "COMPLETE"
    model.meta.cal_step.photom = "COMPLETE"
    model.meta.cal_step.resample = "COMPLETE"
    model.meta.bunit_data = "MJy/sr"
    model.meta.bunit_err = "MJy/sr"


def make_multislit(
    sims: Sequence[SimulatedSlit],
    *,
    filename: str = "sim_s2d.fits",
    with_dq: bool = False,
    nod_type: str | None = None,
) -> datamodels.MultiSlitModel:
    """A NIRSpec MOS PRISM-like s2d ``MultiSlitModel`` with one slit per simulation.

    ``nod_type`` (e.g. ``"3-SHUTTER-SLITLET"``) records the nod pattern in every
    slit's DITHER metadata, as the pipeline does.
    """
    model = datamodels.MultiSlitModel()
    _set_nirspec_meta(model, filename)
    for i, sim in enumerate(sims):
        ra = 214.85 + 0.001 * i
        slit = make_slit_model(sim, name=str(i + 1), source_id=i + 1, with_dq=with_dq, ra=ra)
        _set_nirspec_meta(slit, filename)  # resample_spec copies the exposure metadata too
        if nod_type:
            slit.meta.dither.nod_type = nod_type
            slit.meta.dither.total_points = int(nod_type.split("-", 1)[0])
        model.slits.append(slit)
    return model


def _set_nirspec_meta(model, filename: str) -> None:
    _set_exposure_meta(model, "NRS_MSASPEC", "NIRSPEC", filename=filename)
    model.meta.instrument.detector = "NRS1"
    model.meta.instrument.grating = "PRISM"
    model.meta.instrument.filter = "CLEAR"


def make_lrs_image(
    sim: SimulatedSlit, *, filename: str = "lrs_s2d.fits", with_dq: bool = True
) -> datamodels.ImageModel:
    """A MIRI LRS fixed-slit-like s2d ``ImageModel``: dispersion along y."""
    model = datamodels.ImageModel()
    _fill_arrays(model, sim, transpose=True, with_dq=with_dq)
    _set_exposure_meta(model, "MIR_LRS-FIXEDSLIT", "MIRI", filename=filename)
    model.meta.instrument.detector = "MIRIMAGE"
    model.meta.instrument.filter = "P750L"
    model.meta.wcsinfo.dispersion_direction = 2
    model.meta.wcsinfo.spectral_order = 1
    model.meta.photometry.pixelarea_steradians = PIXEL_AREA_SR
    n_cross = sim.data.shape[0]
    model.meta.wcs = slit_wcs(sim.wavelength, n_cross, disp_axis=2)
    return model


@dataclass(frozen=True)
class SimulatedFile:
    """A written synthetic s2d file and the truth of its slits."""

    path: Path
    slits: tuple[SimulatedSlit, ...]


def make_s2d_file(
    path: str | Path,
    rng: np.random.Generator,
    *,
    n_slits: int = 20,
    snr_range: tuple[float, float] = (5.0, 80.0),
    nod_type: str | None = None,
    **slit_kwargs,
) -> SimulatedFile:
    """Simulate a NIRSpec MOS s2d with ``n_slits`` varied slits and save it.

    Parameters
    ----------
    path : str or pathlib.Path
        Output file (``*_s2d.fits``).
    rng : numpy.random.Generator
        Random generator.
    n_slits : int
        Number of slits.
    snr_range : tuple of float
        Peak-column S/N drawn log-uniformly in this range.
    nod_type : str, optional
        Nod pattern recorded in the DITHER metadata (see `make_multislit`).
    **slit_kwargs
        Passed to `.sim.simulate.simulate_slit` (fixed for all slits).

    Returns
    -------
    SimulatedFile
    """
    sims = []
    for _ in range(n_slits):
        kwargs = {
            "snr": float(np.exp(rng.uniform(*np.log(snr_range)))),
            "center": float(rng.uniform(11.0, 19.0)),
            "curvature": float(rng.uniform(-0.5, 0.5)),
            "fwhm": (float(rng.uniform(1.4, 1.8)), float(rng.uniform(2.4, 3.2))),
        }
        kwargs.update(slit_kwargs)
        sims.append(simulate_slit(rng, **kwargs))
    path = Path(path)
    model = make_multislit(sims, filename=path.name, nod_type=nod_type)
    model.save(path)
    model.close()
    return SimulatedFile(path=path, slits=tuple(sims))
