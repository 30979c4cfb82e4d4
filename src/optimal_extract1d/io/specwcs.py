"""The 1-D WCS each x1d spectrum carries: sky position and a wavelength table.

jwst attaches the same WCS to every spectrum it extracts
(``jwst.extract_1d.spec_wcs.create_spectral_wcs``); importing that module
imports all of ``jwst.extract_1d`` (IFU, residual fringe and their fitting
libraries), about a second per process. This builds the same gwcs from the
same gwcs and astropy.modeling pieces, so the x1d files are alike and the
step starts fast.
"""

from __future__ import annotations

import logging

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling.models import Const1D, Mapping, Tabular1D
from gwcs import coordinate_frames as cf
from gwcs.wcs import WCS

__all__ = ["spectral_wcs"]

log = logging.getLogger(__name__)


def spectral_wcs(ra: float, dec: float, wavelength: np.ndarray) -> WCS:
    """A gwcs mapping spectrum pixel -> (RA, Dec, wavelength in micron).

    The inverse (wavelength -> pixel) is set when the wavelengths are
    strictly monotonic, as jwst does.
    """
    pixel_frame = cf.CoordinateFrame(
        naxes=1, axes_type=("SPATIAL",), axes_order=(0,), unit=(u.pix,), name="pixel_frame"
    )
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spectral = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    world = cf.CompositeFrame([sky, spectral], name="world")

    pixel = np.arange(len(wavelength), dtype=float)
    transform = Mapping((0, 0, 0)) | Const1D(ra) & Const1D(dec) & Tabular1D(
        points=pixel, lookup_table=wavelength, bounds_error=False, fill_value=None
    )
    transform.name = "pixel_to_world"
    step = np.diff(wavelength)
    if np.all(step > 0) or np.all(step < 0):
        order = slice(None) if step[0] > 0 else slice(None, None, -1)
        transform.inverse = Mapping((2,)) | Tabular1D(
            points=wavelength[order], lookup_table=pixel[order], bounds_error=False
        )
    else:
        log.warning("Wavelengths are not strictly monotonic, inverse transform is not set")
    return WCS([(pixel_frame, transform), (world, None)])
