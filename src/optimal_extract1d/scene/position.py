"""Where the slit's metadata put the source: the fallback position of a faint slit.

A slice with no significant source cannot say where the source is; the slit
can. Its ``source_ra``/``source_dec`` (from the MSA catalogue or the target)
and the sky coordinates of every pixel (its WCS) give the row the source
falls on, the same way jwst's extract_1d places a NIRSpec aperture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..slitdata import SlitData

__all__ = ["SourcePosition", "metadata_position"]


@dataclass(frozen=True)
class SourcePosition:
    """A source row and where it came from.

    Attributes
    ----------
    center : float
        Cross-dispersion row (pixels of the slit's arrays).
    origin : str
        ``"source_ra/source_dec through the WCS"`` or ``"slit center"``.
    """

    center: float
    origin: str

    def to_meta(self) -> dict[str, float | str]:
        """Plain values for the spectrum metadata."""
        return {"center": float(self.center), "origin": self.origin}


def metadata_position(sd: SlitData) -> SourcePosition:
    """The row of the slit's ``source_ra``/``source_dec``, or the slit center.

    In every column with finite sky coordinates, the pixels' offsets from the
    source are projected on the slit's direction on the sky (the change of
    RA cos(Dec) and Dec along the rows), and the row where the projection
    crosses zero is interpolated; the median over the columns is taken. The
    slit center is returned when the metadata give no source position or it
    falls off the slit.
    """
    n_cross = sd.shape[0]
    center = SourcePosition((n_cross - 1) / 2.0, "slit center")
    ra0, dec0 = (sd.attributes.get(k) for k in ("source_ra", "source_dec"))
    try:
        ra0, dec0 = float(ra0), float(dec0)
    except (TypeError, ValueError):
        return center
    ra, dec = np.asarray(sd.ra, float), np.asarray(sd.dec, float)
    if not (np.isfinite(ra0) and np.isfinite(dec0)) or ra.shape != sd.shape or n_cross < 2:
        return center
    cos_dec = np.cos(np.deg2rad(dec0))
    dx = ((ra - ra0 + 180.0) % 360.0 - 180.0) * cos_dec
    dy = dec - dec0
    with np.errstate(invalid="ignore"):
        step_x, step_y = np.nanmedian(np.diff(dx, axis=0)), np.nanmedian(np.diff(dy, axis=0))
    length = np.hypot(step_x, step_y)
    if not np.isfinite(length) or length == 0:
        return center
    along = (dx * step_x + dy * step_y) / length**2  # offset from the source, in rows
    rows = np.arange(n_cross, dtype=float)[:, None]
    estimate = rows - along
    good = np.isfinite(estimate)
    if not good.any():
        return center
    row = float(np.median(estimate[good]))
    if not -0.5 <= row <= n_cross - 0.5:
        return center
    return SourcePosition(row, "source_ra/source_dec through the WCS")
