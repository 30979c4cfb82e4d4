"""Build the scene of one slit: the kernel slice, its fit with the other components, the profiles.

`fit_scene` is the entry point. In order: the kernel fitted to the coadded
slice around `slice_column` (`fit_slice`) with the further sources and
negative nod copies found in it (`.sources.find_components`), or only
refitted (`.pruning.prune_components`) in the refit round; with ``auto``
settings, the background degree and the kernel family chosen among
candidates by the criterion of `.choice` (``_choose_fit``); the kernel's
variation along the dispersion (`.variation.vary_kernel`); Horne's empirical
profile when asked. It raises `.ProfileFitError` when the kernel cannot be
fitted: the pipeline then takes `fixed_scene`, or `.model.box_scene` when no
pixel is usable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from astropy.modeling import models

from ..core import coadd, horne
from ..core.empirical import DEFAULT_ORDER as EMPIRICAL_ORDER
from ..core.empirical import empirical_profile, trace_support
from ..core.outliers import nanmedian
from ..core.profile import Profile
from ..errors import ProfileFitError
from ..psf.evaluate import kernel_profile
from ..psf.kernel import (
    KernelFit,
    KernelTemplate,
    fitted_params,
    make_template,
    shape_bounds,
    wavelength_params,
    with_params,
)
from ..psf.linear import solve_linear, valid_pixels
from ..psf.profilefit import FitFailure, attempt_kernel_fit, component_shapes
from ..slitdata import SlitData
from .binsky import BackgroundEvidence, background_over_bins
from .choice import KernelChoice, choose_kernel, shape_at_bound
from .components import ComponentSearch, SliceData, component_cost, linear_refit
from .criterion import CRITERION
from .family import gaussian_over_bins
from .halo import HaloEvidence, halo_over_bins, halo_template
from .model import (
    BKG_CANDIDATES,
    SceneModel,
    SceneSettings,
    component_profiles,
    fixed_kernel,
)
from .nodbins import NodEvidence, nods_over_bins
from .position import metadata_position
from .pruning import prune_components
from .sources import describe_components, find_components
from .variation import KernelVariation, vary_kernel

__all__ = [
    "attempt_slice_fit",
    "column_wavelength",
    "fit_scene",
    "fit_slice",
    "fixed_scene",
    "slice_column",
]

log = logging.getLogger(__name__)


def fit_scene(
    sd: SlitData,
    settings: SceneSettings,
    template: KernelTemplate,
    *,
    usable: np.ndarray,
    variance: np.ndarray,
    column: int,
    previous: SceneModel | None = None,
    noise_scale: float = 1.0,
) -> SceneModel:
    """The scene of a slit: kernel fit, components, varying kernel, empirical profile.

    A ``previous`` scene (refit with the model variance) keeps its slice and
    components; only their parameters are refitted, and components no longer
    significant with the slice's errors times ``noise_scale`` are dropped.

    Raises
    ------
    ProfileFitError
        When the kernel cannot be fitted to the slice.
    """
    wavelength = column_wavelength(sd.wavelength)
    auto_background = settings.bkg_order == "auto"
    if previous is not None:  # the refit keeps the background the first round chose
        settings = replace(settings, bkg_order=previous.bkg_order)
    bkg_orders = BKG_CANDIDATES if settings.bkg_order == "auto" else (settings.bkg_order,)
    slice_fit = {
        "usable": usable,
        "column": column,
        "settings": settings,
        "search": _search(sd, settings),
        "extra": wavelength_params(template, wavelength[column]),
        "previous": previous.fit if previous else None,
        "noise_scale": noise_scale,
    }
    held = _held_copies(previous)
    if held and slice_fit["search"] is not None:
        slice_fit["search"] = replace(slice_fit["search"], held=held)
    kernel_choice, retest = None, None
    if previous is None and (settings.other_kernels or len(bkg_orders) > 1):
        kernel_choice = _choose_fit(
            template, sd, variance, slice_fit=slice_fit, bkg_orders=bkg_orders
        )
        fit = kernel_choice.fit
        settings = replace(settings, bkg_order=kernel_choice.bkg_order)
    else:
        coadded = _slice(sd, variance, slice_fit)  # the fit and its background retest share it
        fit = fit_slice(template, sd.data, variance, coadded=coadded, **slice_fit)
        if previous is not None and auto_background and _slice_chose_background(previous):
            fit, retest = _retest_background(
                fit, sd, variance, slice_fit=slice_fit, coadded=coadded
            )
            settings = replace(settings, bkg_order=retest["bkg_order"])
            slice_fit = {**slice_fit, "settings": settings}
    if previous is None and fit.offsets:
        log.info("Slit %s: found in the kernel slice: %s", sd.name, describe_components(fit))
    vary = {
        "usable": usable,
        "wavelength": wavelength,
        "settings": settings,
        "name": sd.name,
        "noise_scale": noise_scale,
    }
    varied = vary_kernel(fit, sd.data, variance, **vary)
    copies = None
    if previous is None and varied.bins is not None and slice_fit["search"] is not None:
        copies = nods_over_bins(
            varied.template, varied.bins, fit=fit, search=slice_fit["search"], settings=settings
        )
    if copies is not None and copies.wins:
        with_copies = _with_copies(
            fit, copies, sd, variance, slice_fit=slice_fit, settings=settings
        )
        if with_copies is not None:
            fit = with_copies
            slice_fit = {**slice_fit, "search": replace(slice_fit["search"], held=copies.added)}
            varied = vary_kernel(fit, sd.data, variance, **vary)
    else:
        # the slice's fluxes with the components where the whole slit's bins placed
        # them (`.variation.vary_kernel` fits their offsets), so the weighings below
        # start from there (the first round's places where no bins were fitted)
        at = copies.offsets if copies is not None else _bins_offsets(varied, previous)
        refined = _at_offsets(fit, at, sd, variance, slice_fit=slice_fit, settings=settings)
        fit = refined or fit
    family = None
    if kernel_choice is not None and varied.bins is not None and _gaussian_first(template):
        family = gaussian_over_bins(varied.template, varied.bins, fit=fit, settings=settings)
    if family is not None and not family.moffat_kept:
        gaussian = _refit_on_slice(
            template,
            fit,
            sd,
            variance,
            slice_fit=slice_fit,
            bkg_order=int(settings.bkg_order),
            extra=slice_fit["extra"],
        )
        if gaussian is not None:
            fit = gaussian
            varied = vary_kernel(fit, sd.data, variance, **vary)
    sky = None
    if previous is None and settings.bkg_order == -1 and 0 in bkg_orders and varied.bins:
        sky = background_over_bins(
            varied.template, varied.bins, fit=fit, fit_center=bool(settings.fit_trace)
        )
    if sky is not None and sky.wins:
        with_sky = _with_bins_sky(fit, sky, sd, variance, slice_fit=slice_fit)
        if with_sky is not None:
            fit, settings = with_sky, replace(settings, bkg_order=0)
            varied = vary_kernel(fit, sd.data, variance, **{**vary, "settings": settings})
    halo, halo_slice = None, None
    if previous is None and settings.halo and varied.bins is not None:
        halo = halo_over_bins(
            varied.template, varied.bins, fit=fit, settings=settings, weigh_sky=auto_background
        )
    if halo is not None and halo.wins:
        with_halo = _with_halo(
            fit,
            halo,
            sd,
            variance,
            slice_fit=slice_fit,
            # the degrees from the one the bins weighed the halo with: a lower one
            # would let the halo's wings stand in for the sky
            bkg_orders=tuple(b for b in bkg_orders if b >= _halo_degree(halo, settings)),
        )
        if with_halo is not None:
            halo_slice = with_halo.to_meta()
            fit = with_halo.fit
            settings = replace(settings, bkg_order=with_halo.bkg_order)
            varied = vary_kernel(fit, sd.data, variance, **{**vary, "settings": settings})
    elif halo is not None and halo.rival_alpha is not None:
        degree = _halo_degree(halo, settings)
        moffat = _with_moffat(fit, halo, sd, variance, slice_fit=slice_fit, bkg_order=degree)
        if moffat is not None:
            fit = moffat
            settings = replace(settings, bkg_order=degree)
            varied = vary_kernel(fit, sd.data, variance, **{**vary, "settings": settings})
    placed = _bins_offsets(varied, None)
    if placed and placed != tuple(fit.offsets):  # a refit slice (halo, Moffat, sky) placed them
        at = {"slice_fit": slice_fit, "settings": settings}
        fit = _at_offsets(fit, placed, sd, variance, **at) or fit
    profiles = component_profiles(
        varied.template,
        sd.shape[0],
        varied.centers,
        fwhm=varied.fwhm,
        offsets=fit.offsets,
        column_params=varied.column_params,
    )
    meta = dict(varied.metadata)
    if kernel_choice is not None:
        meta["model_choice"] = {"kernel": kernel_choice.to_meta(), **meta.get("model_choice", {})}
    elif previous is not None and "model_choice" in previous.metadata:
        kept = previous.metadata["model_choice"].get("kernel")
        if kept is not None:
            meta["model_choice"] = {"kernel": kept, **meta.get("model_choice", {})}
    if retest is not None:
        meta["model_choice"] = {**meta.get("model_choice", {}), "background_retest": retest}
    # what the bins weighed: this round's record, else the first round's (the refit
    # keeps the first round's choices and does not weigh them again)
    earlier = previous.metadata.get("model_choice", {}) if previous is not None else {}
    this_round = {
        "nods_over_bins": None if copies is None else copies.to_meta(),
        "family_over_bins": None if family is None else family.to_meta(),
        "bins_background": None if sky is None else sky.to_meta(),
        "halo": None
        if halo is None
        else {**halo.to_meta(), **({"slice": halo_slice} if halo_slice else {})},
    }
    for key, record in this_round.items():
        record = earlier.get(key) if record is None else record
        if record is not None:
            meta["model_choice"] = {**meta.get("model_choice", {}), key: record}
    if settings.empirical:
        profiles[0] = _empirical(sd, settings, usable=usable, variance=variance, kernel=profiles[0])
        meta["empirical"] = {"order": EMPIRICAL_ORDER, "support": "2 FWHM + 1 px of the trace"}
    return SceneModel(
        status="fit",
        reason="",
        column=column,
        fit=fit,
        template=varied.template,
        centers=varied.centers,
        fwhm=varied.fwhm,
        profiles=profiles,
        kinds=("source", *fit.kinds),
        bkg_order=int(settings.bkg_order),
        column_params=varied.column_params,
        metadata=meta,
    )


def _nods_record(previous: SceneModel | None) -> dict[str, Any]:
    """The first round's ``model_choice.nods_over_bins`` (`.nodbins`), or {}."""
    if previous is None:
        return {}
    return previous.metadata.get("model_choice", {}).get("nods_over_bins", {})


def _held_copies(previous: SceneModel | None) -> tuple[float, ...]:
    """The nod copies the first round's bins added (`.nodbins`): the refit keeps them."""
    record = _nods_record(previous)
    return tuple(record.get("offsets", ())) if record.get("added") else ()


def _refined_offsets(previous: SceneModel | None) -> tuple[float, ...]:
    """The components' offsets the first round's bins refined (`.nodbins`), or ()."""
    return tuple(_nods_record(previous).get("refined_offsets", ()))


def _bins_offsets(varied: KernelVariation, previous: SceneModel | None) -> tuple[float, ...]:
    """The components' offsets the bins fitted (`.variation.vary_kernel`), or the first round's."""
    if varied.bins is not None and varied.bins.fits.offsets:
        return tuple(varied.bins.fits.offsets)
    return _refined_offsets(previous)


def _fluxes_at(
    fit: KernelFit,
    offsets: list[float],
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    settings: SceneSettings,
) -> KernelFit:
    """The slice's fluxes and background solved with its components at ``offsets``, shapes held."""
    values, sigma = _slice(sd, variance, slice_fit)
    data = SliceData(values, sigma, int(settings.bkg_order))
    return linear_refit(fit, data, center=fit.center, offsets=offsets)


def _at_offsets(
    fit: KernelFit,
    offsets: tuple[float, ...],
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    settings: SceneSettings,
) -> KernelFit | None:
    """The slice's fluxes refitted with its components at ``offsets``, shapes held.

    None when there are none, when they are not the fit's components (the
    refit dropped one), or when a component's flux changed sign.
    """
    if not offsets or len(offsets) != len(fit.offsets):
        return None
    at = {"slice_fit": slice_fit, "settings": settings}
    trial = _fluxes_at(fit, list(offsets), sd, variance, **at)
    signs = zip(trial.component_flux, fit.component_flux, strict=True)
    if any((a < 0) != (b < 0) for a, b in signs):
        return None
    return trial


def _with_copies(
    fit: KernelFit,
    copies: NodEvidence,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    settings: SceneSettings,
) -> KernelFit | None:
    """The slice refitted with the nod copies the bins added; None unless all are negative."""
    # the copies at the bins' offsets, the slice's shapes held: the slice alone
    # places a faint copy to a pixel or worse (one moved -10.7 -> -11.8)
    at = {"slice_fit": slice_fit, "settings": settings}
    trial = _fluxes_at(fit, [*fit.offsets, *copies.added], sd, variance, **at)
    if any(f >= 0 for f in trial.component_flux[len(fit.offsets) :]):
        return None
    return trial


def _gaussian_first(template: KernelTemplate) -> bool:
    """Whether the first family, which a Moffat the slice chose is weighed against, is Gaussian."""
    return type(template.model) is models.Gaussian1D


def _slice_chose_background(previous: SceneModel) -> bool:
    """Whether the first round's background was the kernel slice's own choice (``auto``).

    Not a background the bins' sky or the halo brought: those were weighed
    over the whole slit.
    """
    choice = previous.metadata.get("model_choice", {})
    kernel = choice.get("kernel")
    if kernel is None or previous.bkg_order < 0 or kernel.get("bkg_order") != previous.bkg_order:
        return False
    if choice.get("bins_background", {}).get("chosen_degree") is not None:
        return False
    return (choice.get("halo") or {}).get("bkg_order") is None


def _retest_background(
    fit: KernelFit,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    coadded: tuple[np.ndarray, np.ndarray],
) -> tuple[KernelFit, dict[str, Any]]:
    """The slice's background degree weighed again against one less, at the model variance.

    The first round chose it on the input variance; the pipeline's VAR_POISSON,
    computed from the noisy data and zero where they are negative, weighs
    pixels below their mean more, so at S/N 3 with no sky a constant came out
    negative and paid for its term in 10 of 30 slices (2 expected). Both
    degrees are fitted to the slice the refit used (its errors times the
    ``noise_scale`` further sources were re-tested against) and weighed by
    `.choice.choose_kernel`, the first round's rule: their chi2, terms and
    components. ``coadded`` is the slice and its uncertainty (``_slice``), as
    the refit coadded them. Returns the fit kept and a record for
    ``model_choice.background_retest``.
    """
    degree = int(slice_fit["settings"].bkg_order)
    values, sigma = coadded
    sigma = sigma * slice_fit["noise_scale"]
    n_pixels = int(np.sum(valid_pixels(values, sigma)))
    less = _refit_from(
        fit,
        fit.template,
        sd,
        variance,
        values=values,
        sigma=sigma,
        slice_fit=slice_fit,
        bkg_order=degree - 1,
    )
    less = less if isinstance(less, KernelFit) and np.isfinite(less.chi2) else None
    choice = choose_kernel(
        [less, fit],
        [fit.template.name] * 2,
        bkg_orders=(degree - 1, degree),
        n_pixels=n_pixels,
        n_cross=sd.shape[0],
        component_cost=_component_price(slice_fit["search"], less),
    )
    kept = choice.fit if choice is not None else fit
    value = {c["bkg_order"]: c["value"] for c in choice.candidates} if choice else {}
    gain = float(less.chi2 - fit.chi2) if less is not None else None
    record = {
        "criterion": "chi2 + k ln(n) + component costs on the kernel slice, at the model variance",
        "degree": degree,
        "n_pixels": n_pixels,
        "penalty": CRITERION.penalty(n_pixels),
        "chi2_gain": gain,
        # what the degree had to gain: its term's ln(n), and any difference in the
        # components' costs (a nod copy the lower degree's fit dropped or kept)
        "cost": (
            gain - (value[degree - 1] - value[degree])
            if gain is not None and None not in (value.get(degree - 1), value.get(degree))
            else None
        ),
        "bkg_order": degree if kept is fit else degree - 1,
    }
    return kept, record


def _with_bins_sky(
    fit: KernelFit, sky: BackgroundEvidence, sd: SlitData, variance: np.ndarray, *, slice_fit: dict
) -> KernelFit | None:
    """The slice refitted with a constant background, as the bins' sky asked (`.binsky`).

    It starts from the wing shape the bins fitted with their constants and
    from ``fit``'s components. None when it cannot be fitted.
    """
    template = with_params(fit.template, sky.shape_params["constant"])
    return _refit_on_slice(
        template, fit, sd, variance, slice_fit=slice_fit, bkg_order=0, extra=slice_fit["extra"]
    )


def _with_moffat(
    fit: KernelFit,
    halo: HaloEvidence,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    bkg_order: int,
) -> KernelFit | None:
    """The slice refitted with the Moffat the bins preferred to the halo (`.halo`).

    From the bins' index and ``fit``'s components, at the background degree
    the bins weighed them with. None when it cannot be fitted.
    """
    template = with_params(make_template("moffat"), {"alpha": halo.rival_alpha})
    return _refit_on_slice(
        template, fit, sd, variance, slice_fit=slice_fit, bkg_order=bkg_order, extra=None
    )


def _refit_on_slice(
    template: KernelTemplate,
    fit: KernelFit,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    bkg_order: int,
    extra: Mapping[str, float] | None,
) -> KernelFit | None:
    """``template`` refitted to the kernel slice from ``fit``'s scene; None when it fails."""
    values, sigma = _slice(sd, variance, slice_fit)
    trial = _refit_seeded(
        template,
        fit,
        values,
        sigma,
        bkg_order=bkg_order,
        extra=extra,
        search=slice_fit["search"],
    )
    return trial if isinstance(trial, KernelFit) else None


def _halo_degree(halo: HaloEvidence, settings: SceneSettings) -> int:
    """The background degree the bins weighed the halo with."""
    return int(settings.bkg_order) if halo.bkg_order is None else halo.bkg_order


def _with_halo(
    fit: KernelFit,
    halo: HaloEvidence,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    bkg_orders: tuple[int, ...],
) -> KernelChoice | None:
    """The slice refitted with the core + halo the bins chose, from ``fit``'s components.

    The halo's ratio and fraction are the whole slit's (`.halo.halo_over_bins`)
    and held; the center, core width, fluxes and background are refitted, at
    every background degree of ``bkg_orders`` (the Gaussian's or Moffat's
    misfit of the halo weighed in the degree it chose: it can hide a sky's
    slope), the criterion choosing among them. None when no degree can be
    fitted.
    """
    values, sigma = _slice(sd, variance, slice_fit)
    template = halo_template(halo)
    extra = wavelength_params(template, column_wavelength(sd.wavelength)[slice_fit["column"]])
    fits = []
    for bkg_order in bkg_orders:
        trial = _refit_seeded(
            template,
            fit,
            values,
            sigma,
            bkg_order=bkg_order,
            extra=extra,
            search=slice_fit["search"],
        )
        fits.append(trial if isinstance(trial, KernelFit) else None)
    n_pixels = int(np.sum(valid_pixels(values, sigma)))
    return choose_kernel(
        fits,
        [template.name] * len(fits),
        bkg_orders=bkg_orders,
        n_pixels=n_pixels,
        n_cross=sd.shape[0],
        component_cost=_component_price(slice_fit["search"], None),
    )


def _choose_fit(
    template: KernelTemplate,
    sd: SlitData,
    variance: np.ndarray,
    *,
    slice_fit: dict,
    bkg_orders: tuple[int, ...],
) -> KernelChoice:
    """The slice fitted with every family and background degree; the one the criterion prefers.

    In two stages. First the background: the first family is fitted with the
    search for further sources and nod copies (`attempt_slice_fit`) without a
    background, and the other degrees start from the components it found
    (`_refit_from`), so a background never hides the nod copies: it
    competes with them. Then the family: the other families are fitted at
    the chosen degree from the first family's components, dropping the ones
    they do not need (`_refit_from` again). When another family wins, the
    other background degrees are fitted again with it. Every
    candidate's criterion counts its components: a Gaussian that needs two
    "companions" to describe a Moffat's wings loses to the Moffat, and a
    Moffat that bends to absorb negative nod copies loses to the Gaussian
    that models them.

    Raises
    ------
    ProfileFitError
        When no candidate can be fitted (the first one's reason).
    """
    settings = slice_fit["settings"]
    families = [
        template,
        *(make_template(k) if isinstance(k, str) else k for k in settings.other_kernels),
    ]
    values, sigma = _slice(sd, variance, slice_fit)
    n_pixels = int(np.sum(valid_pixels(values, sigma)))
    seeded = {"values": values, "sigma": sigma, "slice_fit": slice_fit}
    # Stage 1: the background degree, with the first family.
    base = _refit_from(None, families[0], sd, variance, bkg_order=bkg_orders[0], **seeded)
    shape = base.template if isinstance(base, KernelFit) else families[0]
    fits, skipped = [base], {}
    cost = CRITERION.penalty(n_pixels)
    for bkg in bkg_orders[1:]:
        extra_terms = bkg - bkg_orders[0]
        last = fits[-1] if isinstance(fits[-1], KernelFit) else None
        if _cannot_win(base, extra_terms, n_pixels):
            fits.append(None)
            skipped[len(fits) - 1] = _NO_EVIDENCE
        elif (
            isinstance(base, KernelFit)
            and last is not None
            and len(fits) > 1
            and base.chi2 - last.chi2 < (len(fits) - 1) * cost
        ):
            # forward selection: the lower degree did not pay for its term, so the
            # next one (a slope once a constant did not help) is not tried
            fits.append(None)
            skipped[len(fits) - 1] = _LOWER_DID_NOT_PAY
        else:
            fits.append(_refit_from(base, shape, sd, variance, bkg_order=bkg, **seeded))
    names, orders = [families[0].name] * len(bkg_orders), list(bkg_orders)
    first_failure = next((f for f in fits if isinstance(f, FitFailure)), None)
    fits = [None if isinstance(f, FitFailure) else f for f in fits]
    reference = base if isinstance(base, KernelFit) else None
    price = _component_price(slice_fit["search"], reference)

    def chosen():
        return choose_kernel(
            fits,
            names,
            bkg_orders=orders,
            n_pixels=n_pixels,
            n_cross=sd.shape[0],
            skipped=skipped,
            component_cost=price,
        )

    stage = chosen()
    bkg = stage.bkg_order if stage is not None else bkg_orders[0]
    seed = stage.fit if stage is not None else None
    # Stage 2: the other families at that degree, from the first family's components.
    for family in families[1:]:
        names.append(family.name)
        orders.append(bkg)
        extra_terms = len(fitted_params(family)) - len(fitted_params(families[0]))
        if _cannot_win(seed, extra_terms, n_pixels):
            fits.append(None)
            skipped[len(fits) - 1] = _NO_EVIDENCE
            continue
        # the first family's further sources may be its misfit of this family's wings,
        # and the nod copies it dropped may have been hidden by that misfit: this family
        # is judged and fitted from the nod copies alone and searches its own
        # components; with further sources in the seed, it is also refitted with them,
        # and the better scene is kept
        sources_only = _without_sources(seed)
        if _heads_for_its_limit(
            sources_only or seed, family, values, sigma, bkg_order=bkg, n_cross=sd.shape[0]
        ):
            fits.append(None)
            skipped[len(fits) - 1] = _AT_ITS_LIMIT
            continue
        own = _own_parameters(family, sd, seeded)
        trials = [_searched(sources_only or seed, family, bkg, own)]
        if sources_only is not None:
            trials.append(_refit_from(seed, family, sd, variance, bkg_order=bkg, **own))
        for trial in trials:
            first_failure = first_failure or (trial if isinstance(trial, FitFailure) else None)
        trial = _best_scene(
            [t for t in trials if isinstance(t, KernelFit)], price, n_cross=sd.shape[0]
        )
        fits.append(trial)
        if sources_only is not None and (trial is None or shape_at_bound(trial, sd.shape[0])):
            # the first family's further sources may have stood in for a sky as well as
            # for this family's wings, so the degree chosen with them can leave this
            # family nothing to fit but the sky (a Moffat's index then runs to its
            # bound): the other degrees, from the nod copies alone
            for other in bkg_orders:
                if other != bkg:
                    names.append(family.name)
                    orders.append(other)
                    extra = _searched(sources_only, family, other, own)
                    fits.append(extra if isinstance(extra, KernelFit) else None)
    if all(fit is None for fit in fits):
        raise ProfileFitError(first_failure.reason)
    choice = chosen()
    if choice is not None and choice.fit.template.name != families[0].name:
        # Stage 3: the background degree was chosen with the first family, whose misfit
        # of this family's shape can outweigh a sky's slope: the other degrees again,
        # with the family chosen, from its components.
        family = next(f for f in families if f.name == choice.fit.template.name)
        own = _own_parameters(family, sd, seeded)
        tried = {order for name, order in zip(names, orders, strict=True) if name == family.name}
        for bkg_order in bkg_orders:
            if bkg_order not in tried:  # not already fitted at every degree (Stage 2)
                names.append(family.name)
                orders.append(bkg_order)
                trial = _refit_from(choice.fit, family, sd, variance, bkg_order=bkg_order, **own)
                fits.append(trial if isinstance(trial, KernelFit) else None)
        choice = chosen()
    if choice is None:  # every fitted candidate sits on a bound: keep the first
        index = next(i for i, fit in enumerate(fits) if fit is not None)
        return KernelChoice(fits[index], orders[index], (), n_pixels)
    return choice


def _heads_for_its_limit(
    seed: KernelFit | None,
    family: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    n_cross: int,
) -> bool:
    """The family's one shape parameter lowers the chi2 towards its upper bound.

    A Moffat's index at its upper bound (20) is the Gaussian: a fit that ends
    there is not a candidate (`.choice.shape_at_bound`), and fitting it costs
    10-25 Levenberg-Marquardt steps crawling from the start. The slice's chi2
    is evaluated at the seed's center, FWHM and components with the index at
    its bound and at 0.6 of it (fluxes and background solved exactly): if
    the bound fits at least as well, the data pull the index to the limit
    and the family is not fitted. A Moffat's wings lower the chi2 at the
    smaller index whenever the data show them.
    """
    if not isinstance(seed, KernelFit):
        return False
    shape = [n for n in fitted_params(family) if n not in (family.center_param, family.width_param)]
    if len(shape) != 1:
        return False
    name = shape[0]
    hi = shape_bounds(family, n_cross)[name][1]
    if not np.isfinite(hi) or hi <= 0:
        return False
    y = np.arange(values.size, dtype=float)
    basis = horne.polynomial_basis(values.size, bkg_order)
    chi2 = []
    native = {k: float(getattr(family.model, k).value) for k in fitted_params(family)}
    for value in (hi, 0.6 * hi):
        params = {
            **{k: np.array([v]) for k, v in native.items()},
            name: np.array([value]),
            family.center_param: np.array([seed.center]),
            family.width_param: np.array([seed.fwhm / family.fwhm_per_width_at({name: value})]),
        }
        shapes = component_shapes(family, y, params, offsets=np.asarray(seed.offsets, float))
        resid, *_ = solve_linear(shapes, values[:, None], sigma[:, None], basis=basis)
        chi2.append(float(np.sum(resid**2)))
    return chi2[0] <= chi2[1]


def _own_parameters(family: KernelTemplate, sd: SlitData, seeded: dict) -> dict:
    """``seeded`` with the family's own data-set parameters at the slice.

    A PSF file's profiles are taken at the slice's wavelength (the first
    family's parameters, e.g. none for a Gaussian, would leave the table's
    middle one).
    """
    slice_fit = seeded["slice_fit"]
    wavelength = column_wavelength(sd.wavelength)[slice_fit["column"]]
    extra = wavelength_params(family, wavelength)
    return {**seeded, "slice_fit": {**slice_fit, "extra": extra}}


def _searched(
    seed: KernelFit | None, template: KernelTemplate, bkg_order: int, seeded: dict
) -> KernelFit | FitFailure | None:
    """``template`` refitted from ``seed``'s components, then its own component search.

    The search (`.sources.find_components`) adds the nod copies and sources
    this family's fit needs and drops the ones it does not.
    """
    if seed is None:
        return None
    values, sigma, slice_fit = seeded["values"], seeded["sigma"], seeded["slice_fit"]
    fit = _from_seed(template, seed, values, sigma, bkg_order=bkg_order, extra=slice_fit["extra"])
    if isinstance(fit, FitFailure) or slice_fit["search"] is None:
        return fit
    return find_components(fit, values, sigma, bkg_order=bkg_order, search=slice_fit["search"])


def _without_sources(seed: KernelFit | None) -> KernelFit | None:
    """The seed with its further (positive) sources taken out; None when it has none."""
    if seed is None or not any(f > 0 for f in seed.component_flux):
        return None
    keep = [i for i, f in enumerate(seed.component_flux) if f < 0]
    return replace(
        seed,
        offsets=tuple(seed.offsets[i] for i in keep),
        component_flux=tuple(seed.component_flux[i] for i in keep),
        component_snr=tuple(seed.component_snr[i] for i in keep),
    )


def _best_scene(fits: list[KernelFit], price, *, n_cross: int) -> KernelFit | None:
    """Of fits of one family, the one with the lowest chi2 plus its components' cost.

    A fit whose shape parameter ended on its bound only when no other is left.
    """
    if not fits:
        return None
    inside = [f for f in fits if not shape_at_bound(f, n_cross)] or fits
    return min(inside, key=lambda f: f.chi2 + price(f))


def _component_price(search: ComponentSearch, reference: KernelFit | None):
    """The cost of a fit's further components by the component rule.

    Every candidate's components are charged with the ``reference`` fit's
    source S/N and FWHM (the first family's, without a background): the
    template-error term of the charge is a property of the source, not of the
    template fitted to it, so a template that fits the source better (a higher
    S/N, a wider FWHM by its own definition) pays no more for the same nod
    copies. Without a reference, each fit's own.
    """

    def price(fit: KernelFit) -> float:
        source = reference or fit
        return sum(
            component_cost(search, source, o, f)
            for o, f in zip(fit.offsets, fit.component_flux, strict=True)
        )

    return price


_AT_ITS_LIMIT = "not fitted: its shape parameter heads for the first family's limit"
_LOWER_DID_NOT_PAY = "not fitted: the degree below did not pay for its term"
_NO_EVIDENCE = "not fitted: the chi2 left above its degrees of freedom is below the cost"


def _cannot_win(fit: KernelFit | FitFailure | None, extra_terms: int, n_pixels: int) -> bool:
    """A candidate with ``extra_terms`` more parameters than ``fit`` cannot beat it.

    A stiffer model can gain about the chi2 ``fit`` leaves above its degrees
    of freedom, plus one per parameter from fitting noise, give or take the
    chi2's own scatter (two standard deviations, ``2 sqrt(2 dof)``, are
    allowed: a real sky can hide in a chi2 that came out low); if even that
    is below the criterion's cost of its parameters, the candidate cannot
    win and is not fitted. This is the criterion's own bound, not a further
    threshold: it saves the fits on faint slices, where the data cannot tell
    the families or a background apart.
    """
    if not isinstance(fit, KernelFit) or extra_terms <= 0:
        return False
    dof = fit.chi2 / fit.chi2_reduced if fit.chi2_reduced > 0 else 1.0
    possible = fit.chi2 - dof + extra_terms + 2.0 * np.sqrt(2.0 * dof)
    return possible < extra_terms * CRITERION.penalty(n_pixels)


def _refit_from(
    seed: KernelFit | FitFailure | None,
    template: KernelTemplate,
    sd: SlitData,
    variance: np.ndarray,
    *,
    values: np.ndarray,
    sigma: np.ndarray,
    slice_fit: dict,
    bkg_order: int,
) -> KernelFit | FitFailure:
    """The slice fitted with ``template`` and ``bkg_order``, from ``seed``'s components.

    The components the seed found are refitted and pruned where they no
    longer hold up (`.pruning.prune_components`): a Moffat drops the
    "companions" a Gaussian needed in its wings, a background keeps the nod
    copies it would otherwise absorb. With no seed, a fresh fit with its own
    search (`attempt_slice_fit`).
    """
    if seed is None or isinstance(seed, FitFailure):
        settings = replace(slice_fit["settings"], bkg_order=bkg_order)
        return attempt_slice_fit(template, sd.data, variance, **{**slice_fit, "settings": settings})
    return _refit_seeded(
        template,
        seed,
        values,
        sigma,
        bkg_order=bkg_order,
        extra=slice_fit["extra"],
        search=slice_fit["search"],
    )


def _refit_seeded(
    template: KernelTemplate,
    seed: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    extra: Mapping[str, float] | None,
    search: ComponentSearch | None,
) -> KernelFit | FitFailure:
    """``template`` refitted to the slice from ``seed``'s center, width and components.

    The components that no longer hold up are then dropped
    (`.pruning.prune_components`).
    """
    fit = _from_seed(template, seed, values, sigma, bkg_order=bkg_order, extra=extra)
    if isinstance(fit, FitFailure) or search is None or not fit.offsets:
        return fit
    return prune_components(fit, values, sigma, bkg_order=bkg_order, search=search)


def _from_seed(
    template: KernelTemplate,
    seed: KernelFit,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    extra: Mapping[str, float] | None,
) -> KernelFit | FitFailure:
    """``template``, with ``extra`` set, fitted from ``seed``'s center, width and components."""
    return attempt_kernel_fit(
        with_params(template, extra or {}),
        values,
        sigma,
        bkg_order=bkg_order,
        center=seed.center,
        fwhm=seed.fwhm,
        offsets=seed.offsets,
    )


def _slice(sd: SlitData, variance: np.ndarray, slice_fit: dict) -> tuple[np.ndarray, np.ndarray]:
    """The coadded kernel slice and its uncertainty."""
    return _coadd_slice(
        sd.data,
        variance,
        slice_fit["usable"],
        column=slice_fit["column"],
        width=slice_fit["settings"].slice_width,
    )


def _coadd_slice(
    data: np.ndarray, variance: np.ndarray, usable: np.ndarray, *, column: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel slice: its columns' profile, weighted by their flux (`.core.coadd`)."""
    flux = coadd.slice_flux(data, variance, usable, column=column, width=width)
    return coadd.coadd_columns(data, variance, usable, column=column, width=width, flux=flux)


def fixed_scene(
    sd: SlitData, template: KernelTemplate, *, column: int, reason: str, bkg_order: int
) -> SceneModel:
    """First fallback: the template where the metadata put the source, no components.

    The position is the slit's ``source_ra``/``source_dec`` through its
    WCS; without one, the slit center, or the center of the rows holding
    data when the slit center holds none (a slit whose edge rows are all
    NaN) (`.position.metadata_position`). The metadata record which
    (``fallback_position``). The kernel is `.model.fixed_kernel`.
    """
    rows = np.nonzero(horne.usable_pixels(sd.data, sd.variance, sd.mask).any(axis=1))[0]
    position = metadata_position(sd, rows_with_data=rows)
    fit = fixed_kernel(template, sd.shape[0], center=position.center)
    wavelength = column_wavelength(sd.wavelength)
    centers, fwhm = np.full(sd.shape[1], fit.center), np.full(sd.shape[1], fit.fwhm)
    column_params = wavelength_params(fit.template, wavelength)
    profile = kernel_profile(fit.template, sd.shape[0], centers, fwhm=fwhm, extra=column_params)
    return SceneModel(
        status="fixed_kernel",
        reason=reason,
        column=column,
        fit=fit,
        template=fit.template,
        centers=centers,
        fwhm=fwhm,
        profiles=[profile],
        kinds=("source",),
        bkg_order=bkg_order,
        column_params=column_params,
        metadata={"fallback_position": position.to_meta()},
    )


def slice_column(
    sd: SlitData, settings: SceneSettings, *, usable: np.ndarray, variance: np.ndarray
) -> int:
    """Center column of the kernel slice: the user's, or the one with the most signal."""
    if settings.slice_column is not None:
        return int(np.clip(settings.slice_column - sd.offset[1], 0, sd.shape[1] - 1))
    return coadd.brightest_column(sd.data, variance, usable, width=settings.slice_width)


def column_wavelength(wavelength: np.ndarray) -> np.ndarray:
    """Median wavelength of every column, NaN columns filled by interpolation."""
    n_disp = wavelength.shape[1]
    lam = nanmedian(wavelength, axis=0)
    x = np.arange(n_disp, dtype=float)
    good = np.isfinite(lam)
    if good.sum() >= 2:
        return np.interp(x, x[good], lam[good])
    return x


def fit_slice(
    template: KernelTemplate,
    data: np.ndarray,
    variance: np.ndarray,
    **slice_fit,
) -> KernelFit:
    """`attempt_slice_fit`, a failure raised.

    Raises
    ------
    ProfileFitError
        When the fit fails or finds no significant source.
    """
    fit = attempt_slice_fit(template, data, variance, **slice_fit)
    if isinstance(fit, FitFailure):
        raise ProfileFitError(fit.reason)
    return fit


def attempt_slice_fit(
    template: KernelTemplate,
    data: np.ndarray,
    variance: np.ndarray,
    *,
    usable: np.ndarray,
    column: int,
    settings: SceneSettings,
    search: ComponentSearch | None = None,
    extra: Mapping[str, float] | None = None,
    previous: KernelFit | None = None,
    noise_scale: float = 1.0,
    coadded: tuple[np.ndarray, np.ndarray] | None = None,
) -> KernelFit | FitFailure:
    """Fit the kernel to the slice of ``settings.slice_width`` columns around ``column``.

    With a ``search``, further sources and negative nod copies found in the
    slice are fitted together with the main source (`.sources.find_components`).
    With a ``previous`` fit (a refit with new weights), its components are
    refitted from its values and not searched again; the ones no longer
    significant, with the slice's standard errors times ``noise_scale`` (the
    real noise of correlated pixels), are dropped.
    ``extra`` sets template parameters the data fix for the slice (e.g. the
    wavelength of its center column, `.psf.kernel.wavelength_params`); the
    fitted template keeps them. ``coadded``: the slice and its uncertainty
    when the caller has coadded them already (``_slice``).

    Returns
    -------
    KernelFit or FitFailure
        The fit, or why the kernel cannot be fitted to the slice.
    """
    if extra:
        template = with_params(template, extra)
    if coadded is None:
        coadded = _coadd_slice(data, variance, usable, column=column, width=settings.slice_width)
    values, sigma = coadded
    bkg_order = settings.bkg_order
    if previous is not None:
        return _refit_seeded(
            previous.template,
            previous,
            values,
            sigma * noise_scale,
            bkg_order=bkg_order,
            extra=extra,
            search=search,
        )
    start = search.positions[0] if search is not None and search.positions else None
    fit = attempt_kernel_fit(template, values, sigma, bkg_order=bkg_order, center=start)
    if isinstance(fit, FitFailure) or search is None:
        return fit
    return find_components(fit, values, sigma, bkg_order=bkg_order, search=search)


def _search(sd: SlitData, settings: SceneSettings) -> ComponentSearch:
    positions = None
    if settings.source_positions is not None:
        positions = tuple(p - sd.offset[0] for p in settings.source_positions)
    return ComponentSearch(
        nods=settings.model_nods,
        sources=positions is None,
        threshold=settings.detect_threshold,
        expected_nods=sd.nod_offsets,
        positions=positions,
    )


def _empirical(
    sd: SlitData,
    settings: SceneSettings,
    *,
    usable: np.ndarray,
    variance: np.ndarray,
    kernel: Profile,
) -> Profile:
    """Horne's profile from the data, starting from the kernel profile's flux and trace.

    The background comes from the pixels outside the trace support only, so
    that a polynomial background cannot eat the wings the profile should have.
    """
    basis = horne.polynomial_basis(sd.shape[0], settings.bkg_order)
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
