"""Where nodding puts negative copies of the trace, from the exposure's dither metadata.

Nod-subtracted s2d products hold, besides the source, negative copies of its
trace at the other nod positions; `expected_nod_offsets` predicts their
offsets so that `.scene.sources.find_components` looks for them there first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["expected_nod_offsets", "SHUTTER_PITCH_ARCSEC"]

#: NIRSpec MSA shutter pitch along the slitlet (arcsec).
SHUTTER_PITCH_ARCSEC = 0.53


def expected_nod_offsets(
    *,
    nod_type: str | None,
    primary_type: str | None,
    y_offset: float | None,
    pixel_scale: float,
) -> tuple[float, ...]:
    """Where a nod pattern puts negative copies of the trace in the combined s2d.

    Parameters
    ----------
    nod_type, primary_type : str or None
        DITHER keywords NOD_TYPE (e.g. ``3-SHUTTER-SLITLET``) and PATTTYPE
        (e.g. ``2-POINT-NOD``, ``ALONG-SLIT-NOD``).
    y_offset : float or None
        Dither offset of the exposure along the slit (arcsec); the nod throw
        of a 2-point nod is twice its size.
    pixel_scale : float
        Arcsec per s2d pixel along the slit.

    Returns
    -------
    tuple of float
        Offsets in pixels from the source (both signs); empty when unknown.
        An n-shutter slitlet nod gives copies at +-1..n-1 shutter pitches.
    """
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        return ()
    nod = str(nod_type or "").upper()
    pattern = str(primary_type or "").upper()
    if "SHUTTER" in nod:
        head = nod.split("-", 1)[0]
        n = int(head) if head.isdigit() else 0
        pitch = SHUTTER_PITCH_ARCSEC / pixel_scale
        return tuple(s * k * pitch for k in range(1, n) for s in (-1.0, 1.0))
    if "NOD" in pattern or "NOD" in nod:
        if y_offset:
            throw = 2.0 * abs(float(y_offset)) / pixel_scale
            return (-throw, throw)
    return ()
