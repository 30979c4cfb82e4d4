"""The PSF template of a run: a named or astropy kernel, or the profiles of a PSF file."""

from __future__ import annotations

import logging

from ..io import psfref
from ..params import ExtractParams
from ..psf.kernel import KernelTemplate, make_template
from ..slitdata import SlitData

__all__ = ["default_template", "psf_candidate", "psf_reference", "slice_kernel"]

log = logging.getLogger(__name__)


def slice_kernel(kernel):
    """Template fitted to the slice first: ``empirical`` and ``auto`` start from a Gaussian."""
    return "gaussian" if isinstance(kernel, str) and kernel in ("empirical", "auto") else kernel


def psf_reference(params: ExtractParams) -> psfref.PSFReference | None:
    """The PSF file read and checked once, for ``kernel = "psf"`` or ``"auto"``; else None.

    Under ``auto`` the file's profiles are one more family the criterion
    chooses from (`psf_candidate`).
    """
    kernel = params.kernel if isinstance(params.kernel, str) else None
    if not params.psf_file or kernel not in ("psf", "auto"):
        if params.psf_file:
            log.info(
                "psf_file %s is not used: kernel is %r, not 'psf' or 'auto'",
                params.psf_file,
                params.kernel,
            )
        return None
    reference = psfref.read_psf_file(params.psf_file)
    log.info(
        "PSF kernel from %s (apertures %s)%s",
        reference.filename,
        ", ".join(ap.name for ap in reference.apertures),
        ", a candidate of kernel=auto beside the Gaussian and the Moffat"
        if kernel == "auto"
        else "",
    )
    return reference


def psf_candidate(
    params: ExtractParams, slit: SlitData, psf: psfref.PSFReference | None
) -> tuple[KernelTemplate, ...]:
    """The PSF file's template of a slit as a further family of ``kernel = "auto"``; else none."""
    if psf is None or params.kernel != "auto":
        return ()
    return (psf.template(slit.name, slit.disp_axis, slit.wavelength),)


def default_template(params: ExtractParams, slit: SlitData) -> KernelTemplate:
    """The template of one slit when the run did not make it (one-slit calls)."""
    reference = psf_reference(params)
    if reference is not None and params.kernel == "psf":
        return reference.template(slit.name, slit.disp_axis, slit.wavelength)
    return make_template(slice_kernel(params.kernel))
