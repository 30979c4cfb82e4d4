"""One slit: the scene, Horne's iterated sums, the refit round, one spectrum per source.

`extract_slit` runs, in order:

1. the scene (`.scene.fit.fit_scene`) on the pipeline variance, with cosmic
   rays screened out of its fits (`.core.outliers.fit_outliers`); when the
   kernel cannot be fitted, the fixed kernel at the slit center
   (`.scene.fit.fixed_scene`), and with no usable pixel the box
   (`.scene.model.box_scene`);
2. Horne's iteration on its profiles (`.core.iteration.iterate_extraction`);
3. when the variance model changed the weights, outliers fell in the fitted
   data, or correlated noise may have faked further sources: the scene
   refitted with the model variance and the iteration run again;
4. one spectrum per source (`.assemble`), with the residual error scale and,
   where the slit's data set the PSF's wings, the flux variance that adds
   (`.core.shapeerror`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from ..core import horne, iteration
from ..core.errorscale import (
    ErrorScale,
    dispersion_correlation,
    residual_error_scale,
    slice_noise_scale,
)
from ..core.outliers import fit_outliers
from ..core.shapeerror import shape_variance
from ..core.smoothbkg import CANDIDATE_ORDERS, SmoothBackground, column_chi2, fit_smooth_background
from ..core.variance import neighbour_variance
from ..errors import ProfileFitError
from ..params import ExtractParams
from ..psf.kernel import KernelTemplate
from ..results import SpectrumResult
from ..scene.choice import describe_choice
from ..scene.criterion import CRITERION
from ..scene.fit import fit_scene, fixed_scene, slice_column
from ..scene.model import SceneModel, SceneSettings, box_scene, fallback_bkg_order
from ..scene.shape import (
    bin_groups,
    learnt_parameters,
    local_derivatives,
    profile_derivatives,
)
from ..scene.sources import describe_fates
from ..slitdata import SlitData
from . import assemble
from .templates import default_template, psf_candidate, psf_reference

__all__ = ["extract_slit", "scene_settings", "CORE_PROFILE", "NOISE_RETEST"]

log = logging.getLogger(__name__)

# The kernel is refitted with the model variance when it changed the variance of
# the trace core (profile above CORE_PROFILE) from the one the kernel was fitted
# with (`_fit_variance`) by more than this (median). It was 2 %: fitted at the
# pipeline's data-derived VAR_POISSON, a first-round kernel was biased (pixels
# that fluctuated low weigh more), and at 5 or 10 % a S/N-10 slit kept -0.4 %.
# At the neighbours' variance that bias is gone: at 10 % every defaults.py cell
# tried gave the same figures, and 34 of speed.py's 100 slits (changes of
# 2.1-4.5 %) skip the refit (docs/algorithm.rst, section 10).
REFIT_VARIANCE_CHANGE = 0.10
#: Further sources are re-tested when the slice's real noise exceeds the
#: propagated one by more than this factor.
NOISE_RETEST = 1.1
#: Profile weight above which a pixel belongs to the trace core.
CORE_PROFILE = 0.05


def scene_settings(
    params: ExtractParams, candidates: tuple[KernelTemplate, ...] = ()
) -> SceneSettings:
    """The settings of the scene, from the run parameters (and a PSF file's template)."""
    return SceneSettings(
        bkg_order=params.bkg_order,
        slice_width=params.slice_width,
        slice_column=params.slice_column,
        empirical=params.kernel == "empirical",
        other_kernels=("moffat", *candidates) if params.kernel == "auto" else (),
        halo=params.kernel == "auto",
        fit_fwhm=params.fit_fwhm,
        fwhm_order=params.fwhm_order,
        fit_trace=params.fit_trace,
        trace_order=params.trace_order,
        n_bins=params.n_bins,
        model_nods=params.model_nods,
        source_positions=params.source_positions,
        detect_threshold=params.detect_threshold,
    )


def extract_slit(
    slit: SlitData,
    params: ExtractParams,
    template: KernelTemplate | None = None,
    *,
    candidates: tuple[KernelTemplate, ...] | None = None,
) -> list[SpectrumResult]:
    """Extract one slit: scene on the slice, profiles, Horne's iterated sums.

    Parameters
    ----------
    slit : SlitData
        The slit, dispersion along axis 1.
    params : ExtractParams
        Run parameters.
    template : KernelTemplate, optional
        PSF template for the slice fit; built from ``params.kernel`` (and
        ``params.psf_file``) when None (`.templates.default_template`).
    candidates : tuple of KernelTemplate, optional
        Further families ``kernel = "auto"`` chooses from besides the Gaussian
        and the Moffat: the PSF file's template; read from ``params.psf_file``
        when None (`.templates.psf_candidate`).

    Returns
    -------
    list of SpectrumResult
        One spectrum per source of the slit (one unless several were found
        or given in ``params.source_positions``).
    """
    template = template or default_template(params, slit)
    if candidates is None:
        candidates = psf_candidate(params, slit, psf_reference(params))
    settings = scene_settings(params, candidates)
    sd = slit.cropped(params.extraction_region)
    usable = horne.usable_pixels(sd.data, sd.variance, sd.mask)
    _log_empty_edges(sd, usable)
    fit_usable = usable & ~fit_outliers(sd.data, sd.variance, usable)
    fit_variance = _fit_variance(sd)
    scene = _scene(sd, settings, template, usable=fit_usable, variance=fit_variance)
    result = _iterate(sd, params, scene)
    noise, measured = _slice_noise(sd, scene, result, usable=usable, params=params)
    if scene.status == "fit" and (
        noise > 1.0
        or _refit_needed(result, sd, fit_usable, scene=scene, params=params, old=fit_variance)
    ):
        # Horne's loop: refit the kernel with the model variance, without the outliers
        # (and the further sources re-tested against the real noise of the slice).
        first = scene
        scene = _scene(
            sd,
            settings,
            template,
            usable=fit_usable & ~result.rejected,
            variance=_model_variance(sd, result),
            previous=scene,
            noise_scale=noise,
        )
        result = _iterate(sd, params, scene, start=result.var_poisson)
        measured = None  # on the first round's sums
        if first.fit.offsets:
            final = scene.fit if scene.status == "fit" else None
            log.info("Slit %s: %s", sd.name, describe_fates(first.fit, final, noise_scale=noise))
    errors = None  # the error scale measured on the main source's final sums, if it was
    if scene.status == "fit" and _smooth_wanted(params, scene):
        before = scene
        scene, result, errors = _smooth_background(
            sd, params, scene, result, usable=usable, measured=measured
        )
        if before.bkg_order < 0 and scene.background is not None:
            scene, result = _refit_under_sky(
                sd, settings, template, before, scene, result, usable=usable, fit_usable=fit_usable
            )
    if scene.status != "box" and np.all(result.sums.empty) and usable.any():
        errors = None
        reason = (scene.reason + "; " if scene.reason else "") + "no usable pixel under the kernel"
        scene = box_scene(
            sd.shape, reason, fit=scene.fit, column=scene.column, bkg_order=scene.bkg_order
        )
        result = _iterate(sd, params, scene)
    choices = _describe_choices(scene.metadata)
    if choices:
        log.info("Slit %s: chose %s", sd.name, choices)
    spectra = _spectra(sd, scene, result, usable=usable, params=params, noise=errors)
    assemble.log_slit(
        sd,
        scene.profile,
        scene.status,
        spectra=spectra,
        result=result,
        bins=scene.metadata.get("bins"),
    )
    return spectra


def _smooth_wanted(params: ExtractParams, scene: SceneModel) -> bool:
    """Whether the background is fitted smoothly along the dispersion (`_smooth_background`).

    With ``bkg_smooth_order`` a degree, or ``"auto"``, the scene's background
    (a constant when ``bkg_order = "auto"`` chose none: the whole slit is then
    asked whether it holds a sky after all) is fitted smooth along the
    dispersion; with ``"auto"`` the criterion chooses among independent
    columns and the smooth degrees. Not where the user asked for no
    background (``bkg_order = -1``) or for independent columns.
    """
    if params.bkg_smooth_order == -1:
        return False
    return scene.bkg_order >= 0 or params.bkg_order == "auto"


def _smooth_background(
    sd: SlitData,
    params: ExtractParams,
    scene: SceneModel,
    result: iteration.IteratedSums,
    *,
    usable: np.ndarray,
    measured: ErrorScale | None = None,
) -> tuple[SceneModel, iteration.IteratedSums, ErrorScale | None]:
    """The background smooth along the dispersion (`_smooth_wanted`).

    The scene's background across the slit (a constant when the slice chose
    none) is fitted as a Legendre polynomial along the dispersion jointly
    with every component's flux in every column (`.core.smoothbkg`). With
    ``bkg_smooth_order = "auto"``, the candidates are the sums' own background
    (independent columns, or none where the scene chose none) and the
    degrees of `.core.smoothbkg.CANDIDATE_ORDERS`, scored by ``chi2 + 2 k``
    (the focused cost, `.scene.criterion.Criterion.focus_penalty`: every term
    moves the fluxes of many columns alike), ``k`` the background's terms. A
    sky too faint to show in the slice's columns can show over the whole
    slit, where it would bias every flux; and a sky that varies slowly along
    the dispersion costs the fluxes far less as a few terms for the slit
    than as a constant in every column, which is partly degenerate with the
    profile (a PSF's wings above all: a tabulated PSF with a 0.5 % sky at
    S/N 30, var/oracle 1.054 -> 0.946 against an oracle fitting the sky in
    every column). With a degree, that one. A smooth
    background is subtracted and the sums made again without a background
    of their own; they then carry it (model, BACKGROUND and its variances,
    and the variance its uncertainty adds to the flux). Every candidate is
    recorded; the first is what the sums fitted (independent columns, -1, or
    none).

    Drizzled pixels correlate, and noise fitted by a term smooth over many
    of them lowers the chi2 (computed with the per-pixel variance) more than
    white noise would: by ``1 + 2 sum_k rho_k`` across the slit
    (`.core.errorscale.ErrorScale.smooth_inflation`, of the correlations
    measured from the sums' residuals, as for the error scale) and as much
    again along the dispersion (`.core.errorscale.dispersion_correlation`).
    With ``error_scale = "residual"`` a term's cost is raised by that
    factor: both for the smooth degrees, across only for independent
    columns. Without it, the correlated Gaussian of `benchmarks/defaults.py`
    took a ripple of the noise at S/N 30 / 100 (var/oracle 1.029 / 1.016;
    1.001 / 1.004 so).

    ``measured``: the error scale `_slice_noise` measured on these sums, if
    it did. Returns the scene, the sums and the error scale measured on the main
    source's sums: the final one's noise (`_spectra` sees it through the final
    weights) unless the slit gained a sky the residuals held (None).
    """
    variance = _model_variance(sd, result)
    ok = usable & ~result.rejected
    # the sums fitted the scene's background in every column (or none) with, to
    # their 1 % tolerance, this variance
    sums = result.sums
    n_columns = int(np.count_nonzero(~sums.empty))
    n_pixels = int(np.count_nonzero(ok & ~sums.empty[None, :]))
    # the focused cost: a background's terms move the fluxes of many columns alike
    # (`.scene.criterion.Criterion.focus_penalty`); at ln n a 2 % sky's ripple did not
    # pay at S/N 10 beside a Moffat's nod copies, and the fluxes kept it (var/oracle
    # 1.093, calib 1.032; 1.016, 0.993 so)
    cost = CRITERION.focus_penalty
    noise, along = None, 1.0
    if params.error_scale == "residual":
        model = np.nan_to_num(sums.model)
        noise = measured
        if noise is None:
            noise = residual_error_scale(
                sd.data, model, variance, usable=ok, weights=sums.pixel_weights, sums=sums
            )
        rho = dispersion_correlation(
            sd.data, model, variance, usable=ok, source=model - np.nan_to_num(sums.background)
        )
        along = max(1.0 + 2.0 * sum(rho), 1.0)
    across = noise.smooth_inflation if noise is not None else 1.0
    degree = max(scene.bkg_order, 0)
    basis = horne.polynomial_basis(sd.shape[0], degree)
    candidates = [
        {
            "order": -1 if scene.bkg_order >= 0 else None,  # independent columns, or none
            "k": (scene.bkg_order + 1) * n_columns,
            "chi2": column_chi2(sd.data, sums.model, variance, ok),
        }
    ]
    auto = params.bkg_smooth_order == "auto"
    orders = CANDIDATE_ORDERS if auto else (int(params.bkg_smooth_order),)
    profiles = np.stack([p.weights for p in scene.profiles], axis=2)
    fits = fit_smooth_background(
        sd.data, variance, ok, profiles=profiles, basis=basis, orders=orders
    )
    candidates += [{"order": o, "k": f.n_params, "chi2": f.chi2} for o, f in fits.items()]
    for c in candidates:
        inflation = across * along if c["order"] not in (-1, None) else across
        c["value"] = round(c["chi2"] + c["k"] * cost * inflation, 2)
        c["chi2"] = round(c["chi2"], 2)
    if auto:
        chosen = min(candidates, key=lambda c: c["value"])["order"]
    else:
        order = params.bkg_smooth_order
        chosen = order if order in fits else candidates[0]["order"]
    meta = {
        "criterion": "chi2 + 2 k c (focused; c: correlated noise)",
        "noise_inflation": {"across": round(across, 3), "along": round(along, 3)},
        "n_pixels": n_pixels,
        "candidates": candidates,
        "chosen": chosen,
    }
    scene = replace(scene, metadata={**scene.metadata, "background_along_dispersion": meta})
    if chosen in _ALONG_NAMES:
        return scene, result, noise
    if scene.bkg_order < 0:  # a sky the residuals held: the noise is measured again
        noise = None
    scene = replace(scene, background=fits[chosen], bkg_order=degree)
    # the sums again on the data less the background, with the variance and the
    # rejections the iteration ended with (the model hardly moves: not iterated again)
    sums = _source_sums(sd, scene, result, index=0, variance=variance)
    return scene, replace(result, sums=sums), noise


_ALONG_NAMES = {-1: "independent columns", None: "none"}


def _describe_choices(metadata: dict) -> str:
    """The slit's one INFO line of its model choice ("" when nothing was chosen).

    The scene's choices (`.scene.choice.describe_choice`, under ``auto``) and
    the background's form along the dispersion (`describe_background_along`,
    also where the user gave the kernel and the fits), as one line.
    """
    parts = []
    if "model_choice" in metadata:
        parts.append(describe_choice(metadata["model_choice"]))
    if metadata.get("background_along_dispersion"):
        parts.append(describe_background_along(metadata["background_along_dispersion"]))
    return "; ".join(parts)


def describe_background_along(meta: dict) -> str:
    """The background's choice along the dispersion, for the slit's INFO line.

    ``meta`` is the ``background_along_dispersion`` record of `_smooth_background`:
    the chosen form, every candidate's criterion value relative to the chosen
    one's, the correlated noise's factor on a term's cost when above 1, and the
    kernel's FWHM before and after its refit under that sky (`_refit_under_sky`).
    """
    names = _ALONG_NAMES
    best = min(c["value"] for c in meta["candidates"])
    others = ", ".join(
        f"{names.get(c['order'], c['order'])} {c['value'] - best:+.1f}" for c in meta["candidates"]
    )
    chosen = meta["chosen"]
    text = (
        f"background along the dispersion: {names.get(chosen, f'Legendre degree {chosen}')}"
        f" ({others})"
    )
    inflation = meta.get("noise_inflation", {})
    across, along = inflation.get("across", 1.0), inflation.get("along", 1.0)
    if across * along > 1.0:
        text += f", its terms cost x {across:.2f} across and x {along:.2f} along (correlated noise)"
    if "kernel_refitted" in meta:
        before, after = meta["kernel_refitted"]
        text += f", the kernel refitted under it (FWHM {before:.2f} -> {after:.2f} px)"
    return text


def _refit_under_sky(
    sd: SlitData,
    settings: SceneSettings,
    template: KernelTemplate,
    before: SceneModel,
    scene: SceneModel,
    result: iteration.IteratedSums,
    *,
    usable: np.ndarray,
    fit_usable: np.ndarray,
) -> tuple[SceneModel, iteration.IteratedSums]:
    """The kernel refitted on the data less the sky the whole slit found (`_smooth_background`).

    The slice chose no background, so its kernel and the bins' widths were
    fitted with the sky in the data: a Gaussian a little too wide takes up a
    faint constant, and a profile too wide puts the sky's share under it into
    the flux (a 0.5 % sky at S/N 10, slices with no background: fluxes +0.4 to
    +1.4 %, the cell +0.33 % with a straight trace; +0.03 % so). The scene is
    refitted as Horne's loop refits it (`_scene` with ``previous``: its
    components and family kept, their parameters and the orders along the
    dispersion fitted again) on the data less that sky, the sky fitted again
    at its degree with the new profiles, and the sums made again. Kept as
    it was when the refit does not fit. The record
    (``background_along_dispersion.kernel_refitted``) gives the median FWHM
    before and after.
    """
    variance = _model_variance(sd, result)
    less = replace(sd, data=sd.data - scene.background.image)
    # the kernel on the pixels the fits use, the sky on the ones it was chosen on
    refit = _scene(
        less,
        settings,
        template,
        usable=fit_usable & ~result.rejected,
        variance=variance,
        previous=before,
    )
    if refit.status != "fit":
        return scene, result
    ok = usable & ~result.rejected
    profiles = np.stack([p.weights for p in refit.profiles], axis=2)
    order = scene.background.order
    fits = fit_smooth_background(
        sd.data, variance, ok, profiles=profiles, basis=scene.background.basis, orders=(order,)
    )
    background = fits.get(order, scene.background)
    fwhm = [round(float(np.nanmedian(s.profile.fwhm)), 4) for s in (before, refit)]
    choice = {**scene.metadata["background_along_dispersion"], "kernel_refitted": fwhm}
    refit = replace(
        refit,
        background=background,
        bkg_order=scene.bkg_order,
        metadata={**refit.metadata, "background_along_dispersion": choice},
    )
    log.debug(
        "Slit %s: the kernel refitted on the data less that background (FWHM %.2f -> %.2f px)",
        sd.name,
        *fwhm,
    )
    sums = _source_sums(sd, refit, result, index=0, variance=variance)
    return refit, replace(result, sums=sums)


def _with_background(
    sums: horne.ColumnSums, smooth: SmoothBackground, variance: np.ndarray
) -> horne.ColumnSums:
    """Sums made on the data less a smooth background, carrying that background.

    The model and background include it; the mean background's variance is
    the smooth fit's (``mean_variance``), shared among the variance
    components in proportion to their sums over the column (the
    ``background_weights`` are set so that `.horne.ColumnSums.propagate_background`
    gives that). The flux's variance gains what the background's uncertainty
    adds (`.core.smoothbkg.SmoothBackground.flux_variance`), shared the same
    way: the pixel weights are scaled per column so that
    `.horne.ColumnSums.propagate` includes it (the flux is unchanged).
    """
    empty = sums.empty[None, :]
    usable = sums.pixel_weights != 0
    total = np.sum(np.where(usable, variance, 0.0), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.sqrt(np.where(total > 0, smooth.mean_variance / total, 0.0))
        own = np.sum(np.where(usable, sums.pixel_weights**2 * variance, 0.0), axis=0)
        extra = smooth.flux_variance(sums.pixel_weights)
        inflate = np.sqrt(np.where(own > 0, 1.0 + extra / own, 1.0))
    return replace(
        sums,
        variance=np.where(sums.empty, np.nan, sums.variance + extra),
        pixel_weights=sums.pixel_weights * inflate[None, :],
        background=np.where(empty, np.nan, smooth.image),
        model=np.where(empty, np.nan, sums.model + smooth.image),
        mean_background=np.where(sums.empty, np.nan, smooth.image.mean(axis=0)),
        background_weights=np.where(usable & ~empty, h[None, :], 0.0),
    )


def _log_empty_edges(sd: SlitData, usable: np.ndarray) -> None:
    """One INFO line when rows at the slit's edges hold no data (NIRSpec fixed slits).

    Their pixels are left out of every fit and sum like any masked pixel, the
    kernel's starting center is searched only in the rows with data
    (`.psf.profilefit`), and a fallback kernel sits at their center.
    """
    rows = np.nonzero(usable.any(axis=1))[0]
    n_cross = sd.shape[0]
    if rows.size == 0 or (rows[0] == 0 and rows[-1] == n_cross - 1):
        return
    empty = rows[0] + (n_cross - 1 - rows[-1])
    if empty <= 2:  # the usual NaN border row at each edge is not news
        return
    c0 = sd.offset[0]
    log.info(
        "Slit %s: %d of %d rows at the edges hold no data; the kernel is fitted to rows %d-%d",
        sd.name,
        empty,
        n_cross,
        rows[0] + c0,
        rows[-1] + c0,
    )


def _scene(
    sd: SlitData,
    settings: SceneSettings,
    template: KernelTemplate,
    *,
    usable: np.ndarray,
    variance: np.ndarray,
    previous: SceneModel | None = None,
    noise_scale: float = 1.0,
) -> SceneModel:
    """The fitted scene, or its fallbacks: the fixed kernel when the fit fails, the box."""
    if not usable.any():
        reason = "no usable pixel in the slit"
        log.warning("Slit %s: %s; all fluxes are NaN", sd.name, reason)
        return box_scene(
            sd.shape,
            reason,
            fit=None,
            column=sd.shape[1] // 2,
            bkg_order=fallback_bkg_order(settings.bkg_order),
        )
    column = (
        previous.column
        if previous
        else slice_column(sd, settings, usable=usable, variance=variance)
    )
    try:
        return fit_scene(
            sd,
            settings,
            template,
            usable=usable,
            variance=variance,
            column=column,
            previous=previous,
            noise_scale=noise_scale,
        )
    except ProfileFitError as err:
        bkg_order = previous.bkg_order if previous else fallback_bkg_order(settings.bkg_order)
        scene = fixed_scene(sd, template, column=column, reason=str(err), bkg_order=bkg_order)
        log.warning(
            "Slit %s: kernel fit failed (%s); falling back to a fixed %s kernel at the "
            "%s (%.1f px, FWHM %.1f px)",
            sd.name,
            err,
            template.name,
            scene.metadata["fallback_position"]["origin"],
            scene.fit.center + sd.offset[0],
            scene.fit.fwhm,
        )
        return scene


def _refit_needed(
    result: iteration.IteratedSums,
    sd: SlitData,
    fit_usable: np.ndarray,
    *,
    scene: SceneModel,
    params: ExtractParams,
    old: np.ndarray,
) -> bool:
    """Refit when the variance model changed the weights or outliers entered the fits.

    ``old`` is the variance the kernel was fitted with (`_fit_variance`).
    """
    if np.isfinite(result.poisson_scale):
        core = fit_usable & (scene.profile.weights > CORE_PROFILE)
        new = _model_variance(sd, result)
        with np.errstate(invalid="ignore", divide="ignore"):
            change = np.abs(new - old)[core] / old[core]
        if change.size and np.nanmedian(change) > REFIT_VARIANCE_CHANGE:
            return True
    pixels = result.rejected & fit_usable
    if not pixels.any():
        return False
    if params.fit_fwhm or params.fit_trace or params.kernel == "empirical":
        return True
    lo = max(scene.column - params.slice_width // 2, 0)
    return bool(pixels[:, lo : lo + params.slice_width].any())


def _fit_variance(sd: SlitData) -> np.ndarray:
    """The variance the first kernel fit weighs pixels with: no pixel's own noise in it.

    The data-derived terms (VAR_POISSON, VAR_FLAT; ERR**2 when it is the
    source) are their neighbours' along the dispersion
    (`.core.variance.neighbour_variance`), the read noise the pixel's own.
    Horne's sums start from the input variance and remodel it
    (`.core.iteration`); the refit round fits with that model.
    """
    terms = (neighbour_variance(sd.var_poisson), sd.var_rnoise, neighbour_variance(sd.var_flat))
    with np.errstate(invalid="ignore", over="ignore"):
        total = terms[0] + terms[1] + terms[2]
    return np.where(np.isfinite(sd.variance), total, sd.variance)


def _model_variance(sd: SlitData, result: iteration.IteratedSums) -> np.ndarray:
    """The variance the iteration ended with: its Poisson part and the input's others."""
    return result.var_poisson + sd.var_rnoise + sd.var_flat


def _slice_noise(
    sd: SlitData,
    scene: SceneModel,
    result: iteration.IteratedSums,
    *,
    usable: np.ndarray,
    params: ExtractParams,
) -> tuple[float, ErrorScale | None]:
    """Real over propagated noise of the kernel slice, when further sources were found.

    Drizzled pixels are correlated along and across the slit, so a detection
    at ``detect_threshold`` in the variance's terms can be noise. With
    ``error_scale = "residual"`` the first round's residuals measure by how
    much (`.core.errorscale.slice_noise_scale`); 1 when not needed or not above
    `NOISE_RETEST`. With it, the error scale measured on the way (None when
    not measured), which `_smooth_background` uses where the sums stay these.
    """
    if params.error_scale != "residual" or scene.kinds.count("source") < 2:
        return 1.0, None
    variance = _model_variance(sd, result)
    sums = result.sums
    model = np.nan_to_num(sums.model)
    source = model - np.nan_to_num(sums.background)
    ok = usable & ~result.rejected
    cross = residual_error_scale(
        sd.data, model, variance, usable=ok, weights=sums.pixel_weights, sums=sums
    )
    noise = slice_noise_scale(
        sd.data, model, variance, usable=ok, source=source, cross=cross, width=params.slice_width
    )
    if noise <= NOISE_RETEST:
        return 1.0, cross
    log.info(
        "Slit %s: the residuals scatter %.2f x the variance over the kernel slice "
        "(correlated pixels); further sources re-tested against that noise",
        sd.name,
        noise,
    )
    return noise, cross


def _iterate(
    sd: SlitData,
    params: ExtractParams,
    scene: SceneModel,
    *,
    start: np.ndarray | None = None,
) -> iteration.IteratedSums:
    return iteration.iterate_extraction(
        _data(sd, scene),
        sd.var_poisson,
        sd.var_rnoise + sd.var_flat,
        profile=scene.profile.weights,
        mask=sd.mask,
        bkg_basis=_basis(sd, scene),
        extra=scene.others(0),
        reject_sigma=params.reject_sigma,
        max_iter=params.max_iter,
        start_var_poisson=start,
    )


def _spectra(
    sd: SlitData,
    scene: SceneModel,
    result: iteration.IteratedSums,
    *,
    usable: np.ndarray,
    params: ExtractParams,
    noise: ErrorScale | None = None,
) -> list[SpectrumResult]:
    """One spectrum per source component, ordered along the slit.

    ``noise``: the error scale already measured on the main source's sums
    (`_smooth_background`), seen through their final weights.
    """
    sources = [i for i, kind in enumerate(scene.kinds) if kind == "source"]
    variance = _model_variance(sd, result)
    position = {i: float(np.nanmedian(scene.profiles[i].centers)) for i in sources}
    spectra = []
    for number, i in enumerate(sorted(sources, key=position.get), start=1):
        sums = (
            result.sums if i == 0 else _source_sums(sd, scene, result, index=i, variance=variance)
        )
        meta = assemble.metadata(sd, scene, result, params=params)
        meta.update(
            source_index=number,
            n_sources=len(sources),
            source_position=position[i] + sd.offset[0],
            main_source=i == 0,
        )
        factor = 1.0
        if params.error_scale == "residual":
            ok = usable & ~result.rejected
            if i == 0 and noise is not None:
                scale = noise.for_weights(sums.pixel_weights, variance, ok)
            else:
                scale = residual_error_scale(
                    sd.data,
                    np.nan_to_num(sums.model),
                    variance,
                    usable=ok,
                    weights=sums.pixel_weights,
                    sums=sums,
                )
            factor, meta["error_scale"] = scale.applied_factor, scale.to_meta()
        if i == 0:
            shape = _shape_error(sd, scene, result, variance=variance)
            if shape is not None:
                relative, meta["shape_error"] = shape
                factor = factor * np.sqrt(1.0 + relative)
        name = sd.name if len(sources) == 1 else f"{sd.name}_{number}"
        spectra.append(
            assemble.spectrum(
                sd,
                name=name,
                profile=scene.profiles[i],
                sums=sums,
                result=result,
                usable=usable,
                status=scene.status,
                meta=meta,
                error_factor=factor,
            )
        )
    return spectra


def _shape_error(
    sd: SlitData, scene: SceneModel, result: iteration.IteratedSums, *, variance: np.ndarray
) -> tuple[np.ndarray, dict] | None:
    """The flux variance the PSF shape learnt from the slit adds, relative to each column's own.

    The core + halo's wings' share (and its slope, tail) is one value for
    every column, set by the slit's bins with a background of the scene's
    degree and a center and width of their own in each: the term is
    computed over that design, every column's fluxes and background terms
    and every bin's center and width free (`.core.shapeerror.shape_variance`),
    at the model variance. None when no shape parameter was learnt.
    """
    names = learnt_parameters(scene)
    if not names:
        return None
    data = _data(sd, scene)
    sums = horne.extract_columns(
        data,
        variance,
        scene.profile.weights,
        mask=sd.mask | result.rejected,
        bkg_basis=horne.polynomial_basis(sd.shape[0], scene.bkg_order),
        extra=scene.others(0),
    )
    shape = shape_variance(
        sums,
        data,
        profile_derivatives(scene, names),
        local=local_derivatives(scene),
        groups=bin_groups(scene, sd.shape[1]),
    )
    if shape is None:
        return None
    relative = np.where(np.isfinite(shape.relative), shape.relative, 0.0)
    used = ~sums.empty
    meta = {
        "parameters": {n: float(e) for n, e in zip(names, shape.parameter_errors, strict=True)},
        "relative_variance": float(np.median(relative[used])) if used.any() else 0.0,
        "note": "errors include the flux variance of the PSF shape learnt from the slit; "
        "it is the same error in every column and does not average down when binning",
    }
    return relative, meta


def _source_sums(
    sd: SlitData,
    scene: SceneModel,
    result: iteration.IteratedSums,
    *,
    index: int,
    variance: np.ndarray,
) -> horne.ColumnSums:
    """Column sums of component ``index``, the other components fitted with it.

    On the data less the scene's smooth background, when it has one, which
    the sums then carry (`_with_background`).
    """
    sums = horne.extract_columns(
        _data(sd, scene),
        variance,
        scene.profiles[index].weights,
        mask=sd.mask | result.rejected,
        bkg_basis=_basis(sd, scene),
        extra=scene.others(index),
    )
    if scene.background is None:
        return sums
    return _with_background(sums, scene.background, variance)


def _basis(sd: SlitData, scene: SceneModel) -> np.ndarray:
    """The background basis of the sums: the degree the scene was built with.

    None when the scene's background is smooth along the dispersion: it is
    subtracted before the sums (`_data`).
    """
    return horne.polynomial_basis(
        sd.shape[0], -1 if scene.background is not None else scene.bkg_order
    )


def _data(sd: SlitData, scene: SceneModel) -> np.ndarray:
    """The data the sums are made on: less the smooth background when there is one."""
    return sd.data if scene.background is None else sd.data - scene.background.image
