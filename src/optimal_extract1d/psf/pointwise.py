"""Unit-flux PSF profiles at scattered pixels, each with its own offset and width.

The s2d path evaluates a template on a grid of rows shared by many columns
(`.psf.evaluate`); the cal path needs one value per detector pixel, at the
pixel's own along-slit offset from the source and the FWHM at its own
wavelength. The profiles are integrated over the pixel (one pixel along the
slit) and normalized to unit integral, so a pixel's value is the fraction of
the source flux at that wavelength that falls in it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, gammaln

from ..errors import ParameterError
from .evaluate import OVERSAMPLE, _pixel_nodes

__all__ = ["POINTWISE_KERNELS", "pixel_profile"]

#: The kernels `pixel_profile` knows.
POINTWISE_KERNELS = ("gaussian", "moffat")
_SQRT2 = np.sqrt(2.0)
_FWHM_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def pixel_profile(
    kernel: str, offset: np.ndarray, fwhm: np.ndarray, *, alpha: float = 2.5
) -> np.ndarray:
    """Fraction of a unit-flux source falling in each pixel.

    Parameters
    ----------
    kernel : str
        ``"gaussian"`` or ``"moffat"`` (index ``alpha``).
    offset : ndarray
        Pixel center minus source position, along the slit (pixels).
    fwhm : ndarray or float
        FWHM at each pixel (pixels), broadcast against ``offset``.
    alpha : float
        Moffat index (> 0.5).

    Returns
    -------
    ndarray
        Shape of ``offset``; NaN where ``offset`` is NaN.

    Raises
    ------
    ParameterError
        If the kernel is not one of `POINTWISE_KERNELS`.
    """
    offset = np.asarray(offset, float)
    fwhm = np.maximum(np.asarray(fwhm, float), 1e-3)
    if kernel == "gaussian":
        s = fwhm / _FWHM_SIGMA * _SQRT2
        return 0.5 * (erf((offset + 0.5) / s) - erf((offset - 0.5) / s))
    if kernel == "moffat":
        if not alpha > 0.5:
            msg = f"the Moffat index must exceed 0.5, got {alpha}"
            raise ParameterError(msg)
        gamma = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / alpha) - 1.0))
        norm = np.exp(gammaln(alpha) - gammaln(alpha - 0.5)) / (np.sqrt(np.pi) * gamma)
        nodes, weights = _pixel_nodes(OVERSAMPLE)
        total = np.zeros(np.broadcast(offset, gamma).shape)
        for node, weight in zip(nodes, weights, strict=True):
            total += weight * (1.0 + ((offset + node) / gamma) ** 2) ** (-alpha)
        return total * norm
    msg = f"the cal path supports the kernels {POINTWISE_KERNELS}, got {kernel!r}"
    raise ParameterError(msg)
