"""Smooth scene choices by `.scene.criterion`: the data choose how stiff the model is.

Every candidate is scored by ``chi2_eff + k ln(n)`` (`.scene.criterion.Criterion`),
where ``k`` counts the parameters the candidate adds and ``n`` the pixels it
is fitted to. The candidate with the lowest value is taken; all candidates'
values are recorded. The choices made here: the kernel family and the
background degree (`choose_kernel`, for ``kernel`` / ``bkg_order`` =
``"auto"``), scored on the kernel slice with the plain chi2 (the template
error is what the choice is about), and the polynomial orders of the center
and FWHM along the dispersion (`choose_orders`, for ``fit_trace`` /
``fit_fwhm`` = ``"auto"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..psf.kernel import KernelFit, KernelTemplate, fitted_params, shape_bounds
from ..psf.linear import solve_linear
from ..psf.profilefit import at_bound, component_shapes
from . import trace
from .criterion import CRITERION

__all__ = [
    "KernelChoice",
    "OrderChoice",
    "choose_kernel",
    "choose_orders",
    "describe_choice",
    "score_bins",
    "score_fits",
    "shape_at_bound",
]


@dataclass(frozen=True)
class OrderChoice:
    """The polynomial orders chosen for the center and the FWHM, and the evidence.

    Attributes
    ----------
    trace_order, fwhm_order : int or None
        Chosen degree; None where the parameter is held at the slice value.
    candidates : tuple of dict
        Every candidate's orders, the FWHM model's abscissa, parameter count
        ``k`` and criterion ``value``.
    n_pixels : int
        Pixels the candidates were scored on.
    fwhm_abscissa : str
        What the chosen FWHM polynomial is smooth in: ``"wavelength"`` or
        ``"column"`` (the keys of ``scene.trace.VARIABLES``).
    """

    trace_order: int | None
    fwhm_order: int | None
    candidates: tuple[dict[str, Any], ...]
    n_pixels: int
    fwhm_abscissa: str = "wavelength"

    def to_meta(self) -> dict[str, Any]:
        """Plain values for the spectrum metadata."""
        return {
            "criterion": f"chi2_eff + k ln(n), template error {CRITERION.template_error:g}",
            "n_pixels": self.n_pixels,
            "trace_order": self.trace_order,
            "fwhm_order": self.fwhm_order,
            "fwhm_abscissa": self.fwhm_abscissa,
            "candidates": list(self.candidates),
        }


@dataclass(frozen=True)
class KernelChoice:
    """The kernel family and background degree chosen on the slice, and the evidence.

    Attributes
    ----------
    fit : KernelFit
        The winning candidate's fit to the slice (with its components).
    bkg_order : int
        Its background degree (-1 = none).
    candidates : tuple of dict
        Every candidate: kernel, background degree, parameter count ``k``,
        chi2 and criterion ``value`` (a candidate that could not be fitted,
        or sat on a bound, has no value and says ``why``).
    n_pixels : int
        Valid pixels of the slice.
    """

    fit: KernelFit
    bkg_order: int
    candidates: tuple[dict[str, Any], ...]
    n_pixels: int

    def to_meta(self) -> dict[str, Any]:
        """Plain values for the spectrum metadata."""
        return {
            "criterion": "chi2 + k ln(n) + component costs on the kernel slice",
            "n_pixels": self.n_pixels,
            "chosen": self.fit.template.name,
            "bkg_order": self.bkg_order,
            "candidates": list(self.candidates),
        }


def choose_kernel(
    fits: Sequence[KernelFit | None],
    names: Sequence[str],
    *,
    bkg_orders: Sequence[int],
    n_pixels: int,
    n_cross: int,
    component_cost: Callable[[KernelFit], float],
    skipped: Mapping[int, str] | None = None,
) -> KernelChoice | None:
    """The candidate whose slice fit has the lowest criterion value; None if none fitted.

    The value is ``chi2 + k ln(n) + components``: ``k`` counts the template's
    non-linear parameters (a Moffat's index is one more than a Gaussian's)
    and its background terms, so a stiffer candidate must gain more than
    ``ln(n)`` in chi2 per parameter (a Gaussian source keeps the Gaussian, a
    slit without sky no background); ``components`` is what the further
    sources and nod copies its fit needed cost by the component rule
    (``component_cost`` of the fit, `.scene.criterion.Criterion.component_cost`),
    so a Gaussian that needs "companions" to
    describe a Moffat's wings pays for them as the search made them pay. A
    family whose extra shape parameter ended on its bound (a Moffat index at
    20, the Gaussian limit) is another family's limit, not a candidate.
    A PSF file's profiles (``kernel = "auto"`` with ``psf_file``) predict
    their width at every wavelength: their stretch is a correction the file
    expects to be 1, not a free width, and is not counted; an analytic
    family must fit the slice better by one parameter's cost to be chosen
    instead.
    ``skipped`` gives, by candidate index, why a candidate was not fitted
    (its ``fit`` is None).
    """
    cost = CRITERION.penalty(n_pixels)
    candidates, best = [], None
    for fit, name, bkg in zip(fits, names, bkg_orders, strict=True):
        entry = {"kernel": name, "bkg_order": bkg, "k": None, "chi2": None, "value": None}
        if fit is None or shape_at_bound(fit, n_cross):
            why = "failed" if fit is None else "shape parameter on its bound"
            why = (skipped or {}).get(len(candidates), why)
            candidates.append({**entry, "why": why})
            continue
        k = len(fitted_params(fit.template)) + bkg + 1 - _predicted_width(fit.template)
        components = component_cost(fit)
        value = float(fit.chi2 + k * cost + components)
        candidates.append(
            {
                **entry,
                "k": k,
                "chi2": float(fit.chi2),
                "components": float(components),
                "value": value,
            }
        )
        if best is None or value < best[0]:
            best = (value, fit, bkg)
    if best is None:
        return None
    return KernelChoice(best[1], best[2], tuple(candidates), n_pixels)


def _predicted_width(template: KernelTemplate) -> int:
    """1 when the template's width is predicted (a PSF reference's), else 0."""
    return int(template.reference_fwhm() is not None)


def shape_at_bound(fit: KernelFit, n_cross: int) -> bool:
    """A fitted shape parameter other than the center and width lies on its bound."""
    template = fit.template
    shape = [
        name
        for name in fitted_params(template)
        if name not in (template.center_param, template.width_param)
    ]
    par = {name: np.array([float(getattr(template.model, name).value)]) for name in shape}
    return bool(at_bound(par, shape, shape_bounds(template, n_cross), n_prof=1)[0])


def choose_orders(
    template: KernelTemplate,
    bins: trace.BinFits,
    profiles: tuple[np.ndarray, np.ndarray],
    *,
    at: tuple[np.ndarray, np.ndarray],
    trace_orders: Sequence[int | None],
    fwhm_orders: Sequence[int | None],
    offsets: Sequence[float],
    basis: np.ndarray,
    extra: Mapping[str, np.ndarray],
    fwhm_abscissae: Sequence[str] = ("wavelength",),
) -> OrderChoice:
    """Score every (center order, FWHM order) candidate on the bin profiles.

    Each candidate fits its polynomials to the good bins' centers and widths
    (as the smooth models do, `.trace.fit_smooth`), fixes the kernel of every
    bin at them, solves the fluxes and background exactly, and scores the
    bins' profiles with `.scene.criterion.CRITERION`. A FWHM that is a line
    (degree 1) is a candidate in every one of ``fwhm_abscissae``: the width
    that diffraction sets is smooth in wavelength, one the optics or the
    detector set may be smooth in pixels, and for a prism, whose dispersion
    changes tenfold along the slit, a line in the one is more than a
    quadratic in the other. An abscissa other than the first is one more
    choice the data make and costs one parameter more: where the two fit
    alike (CEERS 933's few bins) the first is kept. At degree 2 both bend,
    and which bends better is, at S/N 1000, a template's misfit: offered
    both, the choice flipped between noise draws and the flux with it (half
    the errors' worth), so degree 2 is in the first abscissa only.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape (with any shape parameter fitted over the whole slit).
    bins : trace.BinFits
        The free fits of every bin (their center, FWHM, S/N and good mask).
    profiles : tuple of ndarray, shape (n_cross, n_bins)
        Coadded bin profiles and their uncertainties.
    at : tuple of ndarray, shape (n_bins,)
        Bin centers as dispersion columns and as wavelengths.
    trace_orders, fwhm_orders : sequence of int or None
        Candidate degrees; None = held at the global (slice) value.
    offsets : sequence of float
        Offsets of the other components, which move with the source.
    basis : ndarray, shape (n_cross, k)
        Background basis.
    extra : mapping of str to ndarray, shape (n_bins,)
        Template parameters the data set per bin (tabulated PSF wavelength).
    fwhm_abscissae : sequence of str
        What a FWHM line may be smooth in: ``"wavelength"`` (the first, of
        every degree; the others, for degree 1 only, cost one parameter
        more) and ``"column"``.

    Returns
    -------
    OrderChoice
    """
    good = bins.good
    values, sigma = (p[:, good] for p in profiles)
    mid_col, mid_lam = (x[good] for x in at)
    snr = bins.snr[good]
    # a line in another abscissa (degree 0 is the same in all; at degree 2 both bend,
    # and which bends better is a template's misfit at high S/N)
    width_options = [
        (f, x) for f in fwhm_orders for x in (fwhm_abscissae if f == 1 else fwhm_abscissae[:1])
    ]
    combos = [(t, f) for t in trace_orders for f in width_options]
    # the candidates model the intrinsic values and are scored as the bins show them,
    # smeared by the trace's motion across every bin (`.trace.BinFits.smear`)
    shift, widen = (
        (np.zeros(good.sum()),) * 2 if bins.smear is None else (s[good] for s in bins.smear)
    )
    center_of = {
        t: _candidate(mid_col, bins.intrinsic_center[good], snr, t, shift) for t in trace_orders
    }
    abscissa = {"wavelength": mid_lam, "column": mid_col}
    width_of = {
        (f, x): _candidate(abscissa[x], bins.intrinsic_fwhm[good], snr, f, widen)
        for f, x in width_options
    }
    centers = [center_of[t] for t, _ in combos]
    widths = [width_of[f] for _, f in combos]
    chi2, n_pix = score_bins(
        template,
        values,
        sigma,
        centers=centers,
        widths=widths,
        offsets=offsets,
        basis=basis,
        extra={k: np.asarray(v, float)[good] for k, v in extra.items()},
    )
    cost = CRITERION.penalty(n_pix)
    candidates = []
    for (t, (f, x)), value in zip(combos, chi2, strict=True):
        # the other abscissa is one more choice the data make: it costs a parameter
        k = (0 if t is None else t + 1) + (0 if f is None else f + 1) + (x != fwhm_abscissae[0])
        candidates.append(
            {
                "trace_order": t,
                "fwhm_order": f,
                "fwhm_abscissa": x,
                "k": k,
                "value": float(value + k * cost),
            }
        )
    best = min(candidates, key=lambda c: c["value"])
    return OrderChoice(
        best["trace_order"],
        best["fwhm_order"],
        tuple(candidates),
        n_pix,
        fwhm_abscissa=best["fwhm_abscissa"],
    )


def _candidate(x, values, snr, order: int | None, smear):
    """The candidate's value at every bin as the bin shows it, or None (held).

    That is its smooth model of the intrinsic ``values`` plus the ``smear``.
    """
    if order is None:
        return None
    return trace.fit_smooth(x, values, snr, order=order)(x) + smear


def score_bins(template, values, sigma, *, centers, widths, offsets, basis, extra):
    """``chi2_eff`` of every candidate over the bins, and the pixels scored.

    Each candidate sets the kernel's center and width of every bin (None: held
    at the template's); the fluxes of the source and ``offsets``' components
    and the background are solved exactly in every bin.
    """
    n_cross, n_bins = values.shape
    cp, wp = template.center_param, template.width_param
    per = template.fwhm_per_width()
    held = {
        cp: np.full(n_bins, float(getattr(template.model, cp).value)),
        wp: np.full(n_bins, float(getattr(template.model, wp).value)),
    }
    params: dict[str, list[np.ndarray]] = {cp: [], wp: []}
    for center, width in zip(centers, widths, strict=True):
        params[cp].append(held[cp] if center is None else center)
        params[wp].append(held[wp] if width is None else width / per)
    n_cand = len(centers)
    stacked = {k: np.concatenate(v) for k, v in params.items()}
    stacked.update({k: np.tile(v, n_cand) for k, v in extra.items()})
    shapes = component_shapes(
        template, np.arange(n_cross, dtype=float), stacked, offsets=np.asarray(offsets, float)
    )
    data = np.tile(values, (1, n_cand))
    noise = np.tile(sigma, (1, n_cand))
    resid, coeffs, _, n_ok = solve_linear(shapes, data, noise, basis=basis)
    ok = np.isfinite(data) & np.isfinite(noise) & (noise > 0)
    model = np.where(ok, np.nan_to_num(data) / np.where(ok, noise, 1.0), 0.0) - resid
    chi2 = CRITERION.chi2(resid, model).reshape(n_cand, n_bins).sum(axis=1)
    return chi2, int(n_ok[:n_bins].sum())


def describe_choice(model_choice: Mapping[str, Any]) -> str:
    """One line for the log: what the criterion chose for a slit, and by how much.

    ``model_choice`` is the ``meta["model_choice"]`` of a scene (the kernel
    family and background degree of `choose_kernel`, that degree dropped
    when it no longer paid at the model variance, a sky the bins then
    asked for (`.binsky`), nod copies they added (`.scene.nodbins`), a
    Gaussian they preferred to the slice's Moffat (`.scene.family`), a core
    + halo or a Moffat they preferred (`.scene.halo`), the orders of
    `choose_orders`); every candidate's
    criterion value is given relative to the chosen one's (a positive number
    is how much worse it was).
    """
    parts = []
    kernel = model_choice.get("kernel")
    if kernel:

        def chosen(c: Mapping[str, Any]) -> bool:
            return c["kernel"] == kernel["chosen"] and c["bkg_order"] == kernel["bkg_order"]

        best = next((c["value"] for c in kernel["candidates"] if chosen(c)), None)
        others = ", ".join(
            f"{c['kernel']}/{c['bkg_order']} {_relative(c, best)}"
            for c in kernel["candidates"]
            if not chosen(c)
        )
        parts.append(
            f"{kernel['chosen']} kernel, background degree {kernel['bkg_order']}"
            + (f" (vs {others})" if others else "")
        )
    retest = model_choice.get("background_retest") or {}
    if retest and retest["bkg_order"] != retest["degree"]:
        cost = retest.get("cost")
        why = f"(< {cost:.1f})" if cost is not None else "(its fit on a shape bound)"
        parts.append(
            f"at the model variance the slice's background degree {retest['degree']} "
            f"gained {retest['chi2_gain']:.1f} {why}: "
            f"background degree {retest['bkg_order']}"
        )
    copies = model_choice.get("nods_over_bins") or {}
    if copies.get("added"):
        where = ", ".join(f"{o:+.1f}" for o in copies["offsets"])
        parts.append(
            f"nod copies at {where} px over the bins (chi2 gain {copies['chi2_gain']:.1f} "
            f"for a cost of {copies['cost']:.1f})"
        )
    family = model_choice.get("family_over_bins") or {}
    if family.get("chosen") == "gaussian":
        parts.append(
            f"over the bins the Moffat's index {family['moffat_alpha']:.2f} gained "
            f"{family['chi2_gain']:.1f} (< {family['cost']:.1f}): gaussian kernel"
        )
    bins_sky = model_choice.get("bins_background") or {}
    if bins_sky.get("chosen_degree") is not None:
        chosen = next(c for c in bins_sky["candidates"] if c["degree"] == bins_sky["chosen_degree"])
        parts.append(
            f"a sky over the bins (degree {chosen['degree']} along them, chi2 gain "
            f"{chosen['chi2_gain']:.1f} for {chosen['k']} term{'s' * (chosen['k'] != 1)}): "
            "background degree 0"
        )
    halo = model_choice.get("halo") or {}
    if halo.get("chosen"):
        law = f"wings index {halo['index']:g}"
        if halo.get("tail_fitted"):
            law += f" with a Lorentzian share {halo['tail']:.2f}"
        check = halo.get("law_check") or {}
        if check.get("index") is not None and check["index"] != check["index_at_slice_degree"]:
            law += (
                f" over a sloped sky; {check['index_at_slice_degree']:g} at the slice's "
                "background degree"
            )
        with_it = ""
        degree = (halo.get("slice") or {}).get("bkg_order")
        if degree is not None and kernel and degree != kernel.get("bkg_order"):
            with_it = f"; background degree {degree} with it"
        parts.append(
            f"core + halo over the bins ({law}, halo fraction {halo['fraction']:.3f}, "
            f"chi2 gain {halo['chi2_gain']:.1f}){with_it}"
        )
    elif "moffat_alpha" in halo:
        parts.append(f"a Moffat of index {halo['moffat_alpha']:.2f} over the bins: {halo['why']}")
    if "trace_order" in model_choice or "fwhm_order" in model_choice:
        values = sorted(c["value"] for c in model_choice.get("candidates", []))
        margin = f", next best {values[1] - values[0]:+.1f}" if len(values) > 1 else ""
        in_column = model_choice.get("fwhm_abscissa") == "column" and model_choice.get("fwhm_order")
        parts.append(
            f"center degree {_degree(model_choice.get('trace_order'))}, "
            f"FWHM degree {_degree(model_choice.get('fwhm_order'))}"
            f"{' in dispersion pixel' if in_column else ''} "
            f"({len(values)} candidates{margin})"
        )
    return "; ".join(parts)


def _relative(candidate: Mapping[str, Any], best: float | None) -> str:
    """A candidate's criterion value relative to the chosen one's, or why it has none."""
    if candidate["value"] is not None and best is not None:
        return f"{candidate['value'] - best:+.1f}"
    why = str(candidate.get("why"))
    return "not fitted" if why.startswith("not fitted") else why


def _degree(order: int | None) -> str:
    return "held" if order is None else str(order)


def score_fits(template, values, sigma, fits, bins, *, offsets, basis, extra) -> float:
    """``chi2_eff`` of ``template`` at ``fits``' centers and widths, summed over ``bins``.

    `score_bins` of one candidate: the fits of the bins (a `.trace.BinFits`)
    on the bins the boolean mask ``bins`` selects, ``extra`` per bin as
    `score_bins` takes it (every bin's, selected here). How two fits of the
    same bins are weighed (`.scene.halo`'s, `.scene.family`'s, `.scene.nodbins`'s).
    """
    chi2, _ = score_bins(
        template,
        values[:, bins],
        sigma[:, bins],
        centers=[fits.center[bins]],
        widths=[fits.fwhm[bins]],
        offsets=offsets,
        basis=basis,
        extra={k: np.asarray(v, float)[bins] for k, v in extra.items()},
    )
    return float(chi2[0])
