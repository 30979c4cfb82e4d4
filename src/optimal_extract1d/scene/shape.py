"""Which of a scene's PSF shape parameters the slit's own data set, and the profiles' derivatives.

Under ``kernel = "auto"`` a core + halo PSF (`.psf.halo.CoreHalo1D`) takes
its wings' share of the flux from the whole slit (`.scene.halo`), and where it
paid, the share's change with the wavelength and the wings' law (``tail``)
too. Those are one value for every column, learnt from the same data as
the fluxes; `learnt_parameters` names them and `profile_derivatives` gives
how every component's normalized profile moves with each, for the flux
variance they add (`.core.shapeerror.shape_variance`).

Other shape parameters are left out: the halo's ratio is held, and a
Gaussian's or a Moffat's center and width per column barely move a flux
fitted with the profile (the Moffat's index, fitted on the slice, adds
under 1 % of the variance on the defaults benchmark's Moffat slits).
"""

from __future__ import annotations

import numpy as np

from ..psf.halo import CoreHalo1D
from ..psf.kernel import with_params
from .model import SceneModel, component_profiles

__all__ = ["STEPS", "bin_groups", "learnt_parameters", "local_derivatives", "profile_derivatives"]

#: Finite-difference step of every parameter (the share, its change per micron, the
#: tail's share of x**-2 wings); taken towards the inside of the parameter's bounds.
STEPS = {"fraction": 1e-4, "slope": 1e-4, "tail": 1e-4}


def learnt_parameters(scene: SceneModel) -> tuple[str, ...]:
    """The core + halo parameters the slit's bins set (`.scene.halo`), in `STEPS` order.

    Empty unless the scene's kernel is a core + halo chosen over the bins
    and its main profile is the template's (not Horne's empirical one). A
    tail on one of its bounds is a pure wing law, not a fitted share.
    """
    template = scene.template
    if scene.status != "fit" or template is None or not isinstance(template.model, CoreHalo1D):
        return ()
    halo = (scene.metadata.get("model_choice") or {}).get("halo") or {}
    if not halo.get("chosen") or "empirical" in scene.metadata:
        return ()
    names = ["fraction"]
    if halo.get("slope_fitted"):
        names.append("slope")
    tail = float(template.model.tail.value)
    if halo.get("tail_fitted") and 0.0 < tail < 1.0:
        names.append("tail")
    return tuple(names)


def profile_derivatives(scene: SceneModel, names: tuple[str, ...]) -> np.ndarray:
    """Derivative of every component's profile with respect to each of ``names``.

    Returns
    -------
    ndarray
        ``(n_cross, n_disp, n_components, n_names)``: the source's profile
        first, then the other components' in the scene's order; finite
        differences of `.model.component_profiles` (normalized profiles,
        as the sums use them).
    """
    template = scene.template
    base = _stacked_profiles(scene, template)
    out = []
    for name in names:
        param = getattr(template.model, name)
        value, step = float(param.value), STEPS[name]
        upper = param.bounds[1]
        if upper is not None and value + step > upper:
            step = -step
        moved = _stacked_profiles(scene, with_params(template, {name: value + step}))
        out.append((moved - base) / step)
    return np.stack(out, axis=3)


def local_derivatives(scene: SceneModel, step: float = 1e-3) -> np.ndarray:
    """Derivatives of every component's profile with respect to the center and the width.

    Both were free in every bin while the shared parameters were set
    (`.scene.halo`): ``(n_cross, n_disp, n_components, 2)``, the components moving
    together (the nod copies and further sources sit at fixed offsets); the
    width's per unit of its logarithm.
    """
    template = scene.template
    base = _stacked_profiles(scene, template)
    center = (_stacked_profiles(scene, template, centers=scene.centers + step) - base) / step
    width = (_stacked_profiles(scene, template, fwhm=scene.fwhm * (1 + step)) - base) / step
    return np.stack([center, width], axis=3)


def bin_groups(scene: SceneModel, n_disp: int) -> np.ndarray | None:
    """The bin of every column whose fit set the shared parameters; -1 outside the good bins.

    From the bins of ``scene.metadata["bins"]`` (`.variation`); None when
    the scene has none (every column is then its own group).
    """
    bins = scene.metadata.get("bins") or {}
    edges, good = bins.get("edges"), bins.get("good")
    if not edges or good is None or len(edges) != len(good) + 1:
        return None
    groups = np.full(n_disp, -1, int)
    for number, (lo, hi, ok) in enumerate(zip(edges[:-1], edges[1:], good, strict=True)):
        if ok:
            groups[int(lo) : min(int(hi), n_disp)] = number
    return groups


def _stacked_profiles(scene: SceneModel, template, *, centers=None, fwhm=None) -> np.ndarray:
    """Every component's normalized profile, ``(n_cross, n_disp, n_components)``.

    As the scene's (`.model.component_profiles`), from ``template`` at the
    scene's centers and FWHM unless others are given.
    """
    parts = component_profiles(
        template,
        scene.profile.weights.shape[0],
        scene.centers if centers is None else centers,
        fwhm=scene.fwhm if fwhm is None else fwhm,
        offsets=tuple(scene.fit.offsets) if scene.fit is not None else (),
        column_params=scene.column_params,
    )
    return np.stack([p.weights for p in parts], axis=2)
