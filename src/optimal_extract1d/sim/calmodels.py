"""Datamodel half of the cal simulator: SlitModels like NIRSpec's cal cut-outs.

`make_cal_models` wraps a `.sim.calsim.CalSimulation` in one ``SlitModel``
per exposure, each with a gwcs ``detector -> slit_frame -> world`` (the
slit frame's ``y`` is relative to the shutter holding the source, as in
NIRSpec MOS), SCI/ERR/DQ/VAR_* in MJy/sr, the pixel solid angle, the
source position (``source_ypos``) and the nod metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models
from gwcs import WCS
from gwcs import coordinate_frames as cf
from stdatamodels.jwst import datamodels

from .calsim import SHUTTER_PITCH, CalGeometry, CalSimulation

__all__ = ["cal_wcs", "make_cal_models", "save_cal_models"]

_ARCSEC_PER_UNIT = 0.1 / 0.2283  # sky arcsec per slit-frame unit (0.1" rows)


def cal_wcs(
    g: CalGeometry, *, nod: int, ra: float = 214.85, dec: float = 52.86, pa_deg: float = 138.0
) -> WCS:
    """A NIRSpec-like cal slit WCS: ``detector -> slit_frame -> world``.

    Parameters
    ----------
    g : CalGeometry
        Detector geometry.
    nod : int
        Shutter index of the source: the slit frame is centred on its shutter.
    pa_deg : float
        Position angle of the slit.

    Returns
    -------
    gwcs.WCS
    """
    c0, c1, c2 = g.center
    l0, l1, l2 = g.wavelength
    k, t = g.units_per_pixel, g.line_tilt
    sy = models.Polynomial2D(
        2, c0_0=k * c0 - nod * SHUTTER_PITCH, c1_0=k * c1, c2_0=k * c2, c0_1=-k
    )
    lam = models.Polynomial2D(
        2,
        c0_0=1e-6 * (l0 - l1 * t * c0),
        c1_0=1e-6 * (l1 - l1 * t * c1),
        c2_0=1e-6 * (l2 - l1 * t * c2),
        c0_1=1e-6 * l1 * t,
    )
    sx = models.Const2D(0.0)
    det2slit = models.Mapping((0, 1, 0, 1, 0, 1)) | sx & sy & lam
    scale = _ARCSEC_PER_UNIT / 3600.0
    pa = np.deg2rad(pa_deg)
    ra_slope = scale * np.sin(pa) / np.cos(np.deg2rad(dec))
    dec_slope = scale * np.cos(pa)
    # the telescope moves with the nod: slit-frame y (relative to the source's
    # shutter) maps to the same sky in every exposure
    sky_ra = models.Linear1D(slope=ra_slope, intercept=ra)
    sky_dec = models.Linear1D(slope=dec_slope, intercept=dec)
    slit2world = models.Mapping((1, 1, 2)) | sky_ra & sky_dec & models.Scale(1e6)
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    slit_spatial = cf.Frame2D(
        name="slit_spatial", axes_order=(0, 1), unit=(u.one, u.one), axes_names=("x_slit", "y_slit")
    )
    slit_spectral = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.m,), axes_names=("wavelength",)
    )
    slit_frame = cf.CompositeFrame([slit_spatial, slit_spectral], name="slit_frame")
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spectral = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    world = cf.CompositeFrame([sky, spectral], name="world")
    wcs = WCS([(detector, det2slit), (slit_frame, slit2world), (world, None)])
    wcs.bounding_box = ((-0.5, g.n_disp - 0.5), (-0.5, g.n_cross - 0.5))
    return wcs


def make_cal_models(
    sim: CalSimulation,
    *,
    source_id: int = 1,
    slit_name: str = "1",
    background: str = "none",
) -> list[datamodels.SlitModel]:
    """One SlitModel per simulated exposure, as NIRSpec MOS cal cut-outs.

    Parameters
    ----------
    sim : CalSimulation
    source_id : int
    slit_name : str
    background : str
        ``"none"`` (raw), or ``"nod"``: each exposure has the mean of the
        others subtracted and ``meta.cal_step.bkg_subtract`` COMPLETE, as
        calwebb_spec2 leaves them (VAR arrays unchanged, as jwst's
        ``background_sub`` does).

    Returns
    -------
    list of SlitModel
    """
    arrays = [e.data for e in sim.exposures]
    out = []
    n = len(sim.exposures)
    for i, exp in enumerate(sim.exposures):
        data, vp, vr = exp.data, exp.var_poisson, exp.var_rnoise
        if background == "nod" and n > 1:
            others = [j for j in range(n) if j != i]
            data = data - np.mean([arrays[j] for j in others], axis=0)  # VAR_* kept, as jwst
        m = datamodels.SlitModel()
        m.data = data.astype(np.float32)
        m.var_poisson = vp.astype(np.float32)
        m.var_rnoise = vr.astype(np.float32)
        m.var_flat = exp.var_flat.astype(np.float32)
        m.err = np.sqrt(vp + vr + exp.var_flat).astype(np.float32)
        m.dq = exp.dq.copy()
        m.meta.wcs = cal_wcs(sim.geometry, nod=exp.nod)
        m.meta.wcsinfo.dispersion_direction = 1
        m.meta.wcsinfo.spectral_order = 0
        m.meta.bunit_data = "MJy/sr"
        m.meta.bunit_err = "MJy/sr"
        m.meta.photometry.pixelarea_steradians = sim.pixel_area
        m.meta.instrument.name = "NIRSPEC"
        m.meta.instrument.detector = "NRS1"
        m.meta.instrument.grating = "PRISM"
        m.meta.instrument.filter = "CLEAR"
        m.meta.exposure.type = "NRS_MSASPEC"
        m.meta.dither.nod_type = f"{n}-SHUTTER-SLITLET"
        m.meta.dither.position_number = i + 1
        m.meta.filename = f"sim_{i + 1:05d}_cal.fits"
        if background == "nod":
            m.meta.cal_step.bkg_subtract = "COMPLETE"
        m.name = slit_name
        m.source_id = int(source_id)
        m.slitlet_id = int(source_id)
        m.source_name = f"sim_{source_id}"
        m.source_xpos, m.source_ypos = 0.0, float(exp.source_ypos)
        m.xstart, m.ystart = 1, 1
        m.shutter_state = "1" * n
        out.append(m)
    return out


def save_cal_models(models_: list[datamodels.SlitModel], outdir: Path) -> list[Path]:
    """Save each exposure as a MultiSlitModel ``*_cal.fits`` (as calwebb_spec2 writes)."""
    paths = []
    for m in models_:
        multi = datamodels.MultiSlitModel()
        multi.update(m)
        multi.slits.append(m.copy())
        path = Path(outdir) / m.meta.filename
        multi.meta.filename = path.name
        multi.save(path)
        paths.append(path)
    return paths
