"""What a slit's scene is: `SceneModel`, and the `SceneSettings` it is built with.

A scene is the main source's PSF template, the further sources and negative
nod copies fitted with it (at fixed offsets), the polynomial background, and
the center and FWHM of the template in every column (constant, or smooth
models along the dispersion). `.scene.fit.fit_scene` builds it; the pipeline
turns it into profiles for Horne's sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.profile import Profile, normalize_profile
from ..core.smoothbkg import SmoothBackground
from ..psf.evaluate import kernel_profile
from ..psf.kernel import KernelFit, KernelTemplate

__all__ = [
    "BKG_CANDIDATES",
    "FALLBACK_BKG_ORDER",
    "FALLBACK_FWHM",
    "SceneModel",
    "SceneSettings",
    "box_scene",
    "component_profiles",
    "fallback_bkg_order",
    "fixed_kernel",
]

#: FWHM (pixels) of the fixed fallback kernel when the fit fails.
FALLBACK_FWHM = 2.0
#: Background degrees tried with ``bkg_order = "auto"``: none, a constant, a slope.
BKG_CANDIDATES = (-1, 0, 1)
#: Background degree of the fallbacks with ``bkg_order = "auto"`` (nod-subtracted
#: slits have little sky left, and a constant would absorb their nod copies).
FALLBACK_BKG_ORDER = -1


@dataclass(frozen=True)
class SceneSettings:
    """The settings the scene of a slit is built with (a subset of the run parameters).

    Attributes
    ----------
    bkg_order : int or str
        Degree of the polynomial background fitted with the PSF; -1 = none;
        ``"auto"``: chosen per slit among `BKG_CANDIDATES`.
    slice_width : int
        Dispersion columns coadded into the kernel slice.
    slice_column : int or None
        Dispersion pixel (as stored, before any crop) at the center of the
        slice; None = the column with the most signal.
    empirical : bool
        Replace the main source's kernel profile by Horne's empirical profile.
    other_kernels : tuple of str or KernelTemplate
        Named templates (``"moffat"``) or templates (a PSF file's) the slice
        is also fitted with; the criterion (`.scene.choice.choose_kernel`)
        picks the family. Empty: the given template only.
    halo : bool
        Weigh a Gaussian core with a Moffat halo (`.psf.halo.CoreHalo1D`)
        against the chosen Gaussian or Moffat over the whole slit's bins
        (`.scene.halo`), as ``kernel = "auto"`` does.
    fit_fwhm, fit_trace : bool or str
        Fit the kernel width / center in bins and model them along the
        dispersion; ``"auto"``: the criterion decides (`.scene.choice`).
    fwhm_order, trace_order : int
        Degrees of the FWHM(wavelength) and center(dispersion pixel) models
        (the highest tried with ``"auto"``).
    n_bins : int or None
        Bins for those fits; None = chosen from the signal.
    model_nods : bool
        Look for negative nod copies of the trace.
    source_positions : tuple of float or None
        Cross-dispersion positions (as stored) of the sources; None = search.
    detect_threshold : float
        S/N a further source or nod copy needs.
    """

    bkg_order: int | str = "auto"
    slice_width: int = 30
    slice_column: int | None = None
    empirical: bool = False
    other_kernels: tuple[str | KernelTemplate, ...] = ()
    halo: bool = False
    fit_fwhm: bool | str = "auto"
    fwhm_order: int = 2
    fit_trace: bool | str = "auto"
    trace_order: int = 2
    n_bins: int | None = None
    model_nods: bool = True
    source_positions: tuple[float, ...] | None = None
    detect_threshold: float = 5.0


@dataclass(frozen=True)
class SceneModel:
    """The scene of one slit: template, components, background, center and FWHM per column.

    Attributes
    ----------
    status : str
        ``"fit"``, ``"fixed_kernel"`` (the fit failed: the template at the slit
        center) or ``"box"`` (no usable pixel: a uniform profile).
    reason : str
        Why a fallback was taken; empty for a fit.
    column : int
        Center column of the kernel slice.
    fit : KernelFit or None
        The kernel fitted to the slice: template with its shape parameters,
        center, FWHM, background coefficients and the other components
        (``offsets`` and ``kinds`` of `.KernelFit`).
    template : KernelTemplate or None
        PSF shape of every column (with any shape parameter refitted over
        the whole slit); None for a box.
    centers, fwhm : ndarray, shape (n_disp,)
        Center of the main source and FWHM in every column (pixels); the
        smooth models of ``metadata["trace_model"]`` / ``["fwhm_model"]``
        evaluated, or constants.
    column_params : dict of str to ndarray, shape (n_disp,)
        Template parameters the data set per column (the wavelength of a
        tabulated PSF); empty for analytic templates.
    profiles : list of Profile
        Normalized profile of the main source, then of every other component.
    kinds : tuple of str
        ``"source"`` or ``"nod"`` for every profile (the first is the main source).
    bkg_order : int
        Degree of the background polynomial fitted with the profiles (-1 = none).
    metadata : dict
        Bin fits, smooth models and the empirical profile's settings, for
        the spectrum metadata.
    background : SmoothBackground or None
        A background fitted smoothly along the dispersion
        (`.core.smoothbkg.SmoothBackground`), subtracted from the data before the sums, which
        then fit no background of their own; None: the sums fit the
        background of ``bkg_order`` in every column.
    """

    status: str
    reason: str
    column: int
    fit: KernelFit | None
    template: KernelTemplate | None
    centers: np.ndarray
    fwhm: np.ndarray
    profiles: list[Profile]
    kinds: tuple[str, ...]
    bkg_order: int = -1
    column_params: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    background: SmoothBackground | None = None

    @property
    def profile(self) -> Profile:
        """Profile of the main source."""
        return self.profiles[0]

    def others(self, index: int) -> np.ndarray | None:
        """Profiles of every component but ``index``, ``(n_cross, n_disp, m)``."""
        rest = [p.weights for i, p in enumerate(self.profiles) if i != index]
        return np.stack(rest, axis=2) if rest else None


def component_profiles(
    template: KernelTemplate,
    n_cross: int,
    centers: np.ndarray,
    *,
    fwhm: np.ndarray,
    offsets: tuple[float, ...] = (),
    column_params: dict[str, np.ndarray] | None = None,
) -> list[Profile]:
    """Normalized profile of the main source, then of every other component."""
    return [
        kernel_profile(template, n_cross, centers + off, fwhm=fwhm, extra=column_params or {})
        for off in (0.0, *offsets)
    ]


def fixed_kernel(
    template: KernelTemplate, n_cross: int, *, center: float | None = None
) -> KernelFit:
    """The fallback kernel: the template at ``center`` (default the slit center), `FALLBACK_FWHM`.

    A PSF reference template keeps its own width instead.
    """
    return KernelFit(
        template=template,
        center=(n_cross - 1) / 2.0 if center is None else float(center),
        fwhm=template.reference_fwhm() or FALLBACK_FWHM,
        amplitude=np.nan,
        bkg_coeffs=(),
        snr=np.nan,
        chi2_reduced=np.nan,
    )


def fallback_bkg_order(bkg_order: int | str) -> int:
    """The background degree of a fallback scene: the user's, or `FALLBACK_BKG_ORDER`."""
    return FALLBACK_BKG_ORDER if bkg_order == "auto" else int(bkg_order)


def box_scene(
    shape: tuple[int, int],
    reason: str,
    *,
    fit: KernelFit | None,
    column: int,
    bkg_order: int,
) -> SceneModel:
    """The uniform (box) profile over the whole column, the last fallback."""
    n_cross, n_disp = shape
    centers, fwhm = np.full(n_disp, (n_cross - 1) / 2.0), np.full(n_disp, np.nan)
    profile = Profile(normalize_profile(np.ones(shape)), centers, fwhm)
    return SceneModel(
        status="box",
        reason=reason,
        column=column,
        fit=fit,
        template=None,
        centers=centers,
        fwhm=fwhm,
        profiles=[profile],
        kinds=("source",),
        bkg_order=bkg_order,
    )
