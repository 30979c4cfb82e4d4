"""The PSF template of a run: a named or astropy kernel, or the profiles of a PSF file."""

from __future__ import annotations

import logging

from ..io import psfref
from ..params import ExtractParams
from ..psf.kernel import KernelTemplate, make_template
from ..slitdata import SlitData

__all__ = ["default_template", "psf_reference", "slice_kernel"]

log = logging.getLogger(__name__)


def slice_kernel(kernel):
    """Template fitted to the slice first: ``empirical`` and ``auto`` start from a Gaussian."""
    return "gaussian" if isinstance(kernel, str) and kernel in ("empirical", "auto") else kernel


def psf_reference(params: ExtractParams) -> psfref.PSFReference | None:
    """The PSF file read and checked once, for ``kernel = "psf"``; else None."""
    if not (isinstance(params.kernel, str) and params.kernel == "psf"):
        if params.psf_file:
            log.info(
                "psf_file %s is not used: kernel is %r, not 'psf'", params.psf_file, params.kernel
            )
        return None
    reference = psfref.read_psf_file(params.psf_file)
    log.info(
        "PSF kernel from %s (apertures %s)",
        reference.filename,
        ", ".join(ap.name for ap in reference.apertures),
    )
    return reference


def default_template(params: ExtractParams, slit: SlitData) -> KernelTemplate:
    """The template of one slit when the run did not make it (one-slit calls)."""
    reference = psf_reference(params)
    if reference is not None:
        return reference.template(slit.name, slit.disp_axis, slit.wavelength)
    return make_template(slice_kernel(params.kernel))
