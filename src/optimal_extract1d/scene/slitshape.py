"""The spatial model of one slit: kernel fit with its fallbacks, and the profiles.

`spatial_model` fits the kernel to the slice (with the other components:
further sources, negative nod copies), lets it vary along the dispersion
when asked, or takes Horne's empirical profile, and falls back to a fixed
kernel at the slit centre when the fit fails, or to a box profile when no
pixel is usable. `SlitShape` says which, and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import coadd, horne
from ..core.empirical import DEFAULT_ORDER as EMPIRICAL_ORDER
from ..core.empirical import empirical_profile, trace_support
from ..core.profile import Profile
from ..errors import ProfileFitError
from ..params import ExtractParams
from ..psf.evaluate import kernel_profile
from ..psf.kernel import KernelFit, KernelTemplate, wavelength_params
from ..slitdata import SlitData
from . import spatial
from .components import ComponentSearch

__all__ = ["SlitShape", "spatial_model", "box_shape"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlitShape:
    """The spatial model chosen for a slit and how it was obtained.

    ``profiles[0]`` is the main source; the others are further sources or
    negative nod copies (``kinds``), fitted in every column with their own flux.
    """

    profiles: list[Profile]
    kinds: tuple[str, ...]
    status: str  # "fit", "fixed_kernel" or "box"
    reason: str
    fit: KernelFit | None
    column: int
    metadata: dict[str, Any]

    @property
    def profile(self) -> Profile:
        """Profile of the main source."""
        return self.profiles[0]

    def others(self, index: int) -> np.ndarray | None:
        """Profiles of every component but ``index``, ``(n_cross, n_disp, m)``."""
        rest = [p.weights for i, p in enumerate(self.profiles) if i != index]
        return np.stack(rest, axis=2) if rest else None


def _search(sd: SlitData, params: ExtractParams) -> ComponentSearch:
    positions = None
    if params.source_positions is not None:
        positions = tuple(p - sd.offset[0] for p in params.source_positions)
    return ComponentSearch(
        nods=params.model_nods,
        sources=positions is None,
        threshold=params.detect_threshold,
        expected_nods=sd.nod_offsets,
        positions=positions,
    )


def spatial_model(
    sd: SlitData,
    params: ExtractParams,
    template: KernelTemplate,
    usable: np.ndarray,
    variance: np.ndarray,
    previous: SlitShape | None = None,
    noise_scale: float = 1.0,
) -> SlitShape:
    """Kernel fit (with its fallbacks), components, varying kernel, empirical profile.

    A ``previous`` shape (refit with the model variance) keeps its slice and
    components; only their parameters are refitted, and components no longer
    significant with the slice's errors times ``noise_scale`` are dropped.
    """
    if not usable.any():
        reason = "no usable pixel in the slit"
        log.warning("Slit %s: %s; all fluxes are NaN", sd.name, reason)
        return box_shape(sd, reason, None, sd.shape[1] // 2)
    column = previous.column if previous else _slice_column(sd, params, usable, variance)
    wavelength = spatial.column_wavelength(sd.wavelength)
    try:
        fit = spatial.fit_slice(
            template,
            sd.data,
            variance,
            usable,
            column,
            params,
            _search(sd, params),
            sd.name,
            extra=wavelength_params(template, wavelength[column]),
            previous=previous.fit if previous else None,
            noise_scale=noise_scale,
        )
    except ProfileFitError as err:
        fit = spatial.fixed_kernel(template, sd.shape[0])
        log.warning(
            "Slit %s: kernel fit failed (%s); falling back to a fixed %s kernel at the "
            "slit centre (%.1f px, FWHM %.1f px)",
            sd.name,
            err,
            template.name,
            fit.center + sd.offset[0],
            fit.fwhm,
        )
        prof = kernel_profile(
            fit.template,
            sd.shape[0],
            np.full(sd.shape[1], fit.center),
            np.full(sd.shape[1], fit.fwhm),
            wavelength_params(fit.template, wavelength),
        )
        return SlitShape([prof], ("source",), "fixed_kernel", str(err), fit, column, {})
    varied = spatial.vary_kernel(fit, sd.data, variance, usable, wavelength, params, sd.name)
    profiles, meta = varied.profiles(sd.shape[0]), dict(varied.metadata)
    if params.kernel == "empirical":
        profiles[0] = _empirical(sd, params, usable, variance, profiles[0])
        meta["empirical"] = {"order": EMPIRICAL_ORDER, "support": "2 FWHM + 1 px of the trace"}
    return SlitShape(profiles, ("source", *fit.kinds), "fit", "", fit, column, meta)


def _empirical(
    sd: SlitData, params: ExtractParams, usable: np.ndarray, variance: np.ndarray, kernel: Profile
) -> Profile:
    """Horne's profile from the data, starting from the kernel profile's flux and trace.

    The background comes from the pixels outside the trace support only, so
    that a polynomial background cannot eat the wings the profile should have.
    """
    basis = horne.polynomial_basis(sd.shape[0], params.bkg_order)
    support = trace_support(kernel.centers, kernel.fwhm, sd.shape[0])
    background = horne.fit_background(sd.data, variance, usable & ~support, basis=basis)
    first = horne.extract_columns(sd.data - background, variance, kernel.weights, mask=~usable)
    return empirical_profile(
        sd.data,
        variance,
        usable,
        flux=first.flux,
        background=background,
        support=support,
        order=EMPIRICAL_ORDER,
    )


def _slice_column(
    sd: SlitData, params: ExtractParams, usable: np.ndarray, variance: np.ndarray
) -> int:
    if params.slice_column is not None:
        return int(np.clip(params.slice_column - sd.offset[1], 0, sd.shape[1] - 1))
    return coadd.brightest_column(sd.data, variance, usable, width=params.slice_width)


def box_shape(sd: SlitData, reason: str, fit: KernelFit | None, column: int) -> SlitShape:
    """The uniform (box) profile, the last fallback."""
    return SlitShape([spatial.box_profile(sd.shape)], ("source",), "box", reason, fit, column, {})
