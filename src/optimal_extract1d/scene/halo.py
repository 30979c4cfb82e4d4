"""The core + halo family (`.psf.halo.CoreHalo1D`), weighed over the whole slit's bins.

A halo of ~10 % of the flux, a few core FWHM wide, is nearly degenerate in
one kernel slice with a Gaussian a little too wide plus the per-column
background: the slice of a S/N 30 continuum gains a chi2 of 5-10 from it,
while the flux a Gaussian leaves to the background is 3-4 %. The whole slit
holds ~15 times the slice's evidence. So under ``kernel = "auto"``, once the
slice chose a Gaussian or a Moffat and the kernel was fitted in bins along
the dispersion (`.variation.vary_kernel`), `halo_over_bins` fits the core +
halo to the same bins -- its center and core width per bin, as the chosen
family's, its halo ``fraction`` one value for the whole slit, its ``ratio``
held at `HALO_RATIO` -- and `HaloEvidence.wins` when its ``chi2_eff`` over
the bins (`.criterion.Criterion.chi2`: a template's misfit at high S/N does
not buy it) is lower by more than the criterion's cost ``k ln(n)`` (one
parameter over a Gaussian, a quarter over a Moffat, whose index it replaces),
``n`` the bins' pixels. A fraction on its bound (0 is the Gaussian) is not a
candidate. The halo's wings fall as x**-3 (index 1.5) or x**-2 (index 1);
both laws are fitted and the one with the lower plain chi2 kept (the same
parameters: the template error's discount would only leave out the cores,
where their fits differ too), and then wings between them (a
share ``tail`` of an index 1.5 halo's flux in a Lorentzian), kept when the
tail lowers the bins' chi2 by more than the criterion's focused cost
(``focus_penalty`` of `.criterion.Criterion`): the law barely shows in the chi2,
and a wrong one biases every column alike. A fraction that changes linearly
with the wavelength is then fitted too, and kept when its slope lowers the
bins' chi2 by more than the focused cost too (it moves the flux of every
column, smoothly along the slit; at ``ln n`` it was kept only where noise
made it large, 0.020 for the example PSF's 0.013 at S/N 30). Without a
background the halo's wings could stand in for a faint sky: where a sky
lowers the bins' chi2 as much as the halo, or pays for its two terms on its
own and still lowers the chi2 by more than their focused cost beside the
halo, the halo is weighed again from the start over a constant in every bin
(and pays for the constant too where the sky does not pay on its own); so
it is too where no halo pays over the sloped sky its law is checked over
(below), paying for the constant.

Where the chosen family is a Gaussian and a Moffat is among the families, a
Moffat is fitted to the same bins too (its index one value for the slit) and
preferred to the halo when its plain chi2 is the lower (the same parameters):
at S/N 10 a 30-column slice may not tell a Moffat from a Gaussian, and the
halo then stood in for the Moffat's wings.

Where the slice chose a constant, it may have been the wings a Gaussian or
Moffat cannot hold; it is kept: fitted smooth along the dispersion
(`.pipeline.slit`), a constant the slit does not need costs its fluxes 1-3 %
of their variance, while a faint sky dropped where a halo's share took it up
leaves 1-5 % of the flux in every column.

The bins' fits of the core + halo refit the offsets of the slice's nod copies
and further sources (one value each for the slit): found with the chosen
family's shape, they are off by 0.01-0.02 px, which at S/N 100 leaves a
misfit at the copies' cores that the halo's fraction absorbed (16 % low on a
three-shutter nod). The evidence is still weighed at the slice's offsets.

The ratio is held: a broad halo and a sky are so nearly degenerate that the
bins rarely constrain it (a ratio of 1.5 or 2.3 differ by a chi2 of ~5 at
S/N 30, and by 1.5 % in flux), and where a fitted one pays, at S/N 100, it
pays for other misfits of the profile.

The fit is skipped when it cannot win: when the chi2 the chosen family
leaves above the bins' degrees of freedom cannot pay for it, or, against a
Gaussian, when the core + halo, evaluated at two fractions at the bins'
fitted centers (the core as narrow as puts the whole profile's FWHM at the
chosen family's; fluxes and background solved exactly, all at once), does
not lower the chi2 by a quarter of a parameter's cost (`SCREEN`). Against a
Moffat the halo holds no parameter more and the grid does not screen: at
the Moffat's widths, narrower than a core + halo's, it lost 14 on a
tabulated PSF's slit where the fit gained 41. The fit must then gain the
screen's share of a parameter's cost itself (the halo is the better of two
laws; at S/N 3 a Moffat slit's x**-2 halo won by 1.0, 7 % high).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
from astropy.modeling import models

from ..core.horne import polynomial_basis
from ..psf.halo import FWHM_PER_SIGMA, HALO_INDICES, CoreHalo1D, fwhm_over_core
from ..psf.kernel import (
    WAVELENGTH_PARAM,
    KernelFit,
    KernelTemplate,
    fitted_params,
    make_template,
    shape_bounds,
    with_params,
)
from ..psf.linear import data_weights, solve_linear, valid_pixels
from ..psf.profilefit import at_bound, component_shapes
from . import trace
from .binsky import background_fit, sky_design
from .choice import score_fits
from .criterion import CRITERION
from .model import SceneSettings
from .variation import BinData

__all__ = ["HALO_RATIO", "SCREEN", "HaloEvidence", "halo_over_bins", "halo_template"]

# The family's template at each index, built once (an astropy model costs ~0.7 ms to
# make or copy; templates are never changed in place, `.psf.kernel.with_params` copies them).
_HALO = make_template("halo")
_HALOS = {index: with_params(_HALO, {"index": index}) for index in HALO_INDICES}
#: The halo's ``gamma`` over the core's FWHM unless the bins pay for fitting it: the
#: example PSF file's (``scripts/make_example_psf.py``).
HALO_RATIO = 1.5
#: The halo is fitted when the best grid shape lowers the bins' chi2 by this share of
#: one parameter's cost: the fit gained up to 3.5 times the grid's (it also refits the
#: centers and widths), and a gain below the cost does not win.
SCREEN = 0.25
#: Finite-difference step of the shape's derivatives in the sky's score test (a center
#: in pixels, a width's logarithm, a share of the flux).
STEP = 1e-4
#: The screening grid: halo ``gamma`` over the core FWHM and halo flux share, at each
#: halo index of `.psf.halo.HALO_INDICES`; the core is as narrow as puts the whole
#: profile's FWHM at the chosen family's in each bin. The best point sets the index.
RATIO_GRID = (HALO_RATIO,)
#: The index of a halo whose wings lie between the two laws: 1.5, with a share
#: ``tail`` of its flux in a Lorentzian (`.psf.halo.CoreHalo1D`).
TAIL_INDEX = 1.5
FRACTION_GRID = (0.05, 0.12)
#: Terms of the sky `_sky_gain` weighs (uniform across the slit, linear along the bins).
SKY_TERMS = 2
#: The background degree across the slit the wing law is weighed over, at least:
#: a constant and a slope, the form a residual sky takes.
LAW_BKG_ORDER = 1


@dataclass(frozen=True)
class HaloEvidence:
    """The core + halo fitted to the bins, against the chosen family.

    Attributes
    ----------
    ratio, fraction : float
        Halo shape (the fit's, or the best grid point's when not fitted).
    gain : float
        Chi2 over the bins of the chosen family less the core + halo's.
    cost : float
        The criterion's cost of the extra shape parameters, ``k ln(n)``.
    n_pixels : int
        Pixels of the bins compared.
    fitted : bool
        Whether the core + halo was fitted (else the grid showed no halo).
    why : str
        Why the core + halo is not a candidate ("" when it is).
    slope, reference : float
        Change of the fraction per micron, and the wavelength of ``fraction``.
    slope_fitted : bool
        Whether the slope was fitted (else held at 0).
    slope_gain : float
        Chi2 the slope gained.
    bkg_order : int or None
        Background degree the bins weighed the halo with, when not the slice's
        (a constant, where the slice chose none and a sky described the bins
        as well as the halo, or paid beside it).
    index : float
        The halo's Moffat index (held): the better of the two laws' fits, or
        1.5 with a Lorentzian ``tail``.
    tail : float
        Share of the halo's flux in a Lorentzian (x**-2 wings) of an index
        1.5 halo (0: none, the x**-3 wings alone).
    tail_fitted : bool
        Whether the tail was fitted (else the better pure law was kept).
    tail_gain : float
        Chi2 the tail gained over the better pure law.
    rival_alpha : float or None
        The index of a Moffat fitted to the bins, against a Gaussian, where
        its chi2 was lower than the halo's; then the halo is not chosen and
        the Moffat is. None otherwise.
    rival_gain : float
        That Moffat's ``chi2_eff`` gain over the Gaussian (0 when not fitted).
    law_check : dict or None
        The wing law weighed again over a sky of degree ``LAW_BKG_ORDER``, where
        the slice's degree is lower and a pure law won (`halo_over_bins`):
        the background degree, the law chosen there (None when no pure law
        won), the one the slice's degree chose, and ``kept`` where the law
        changed there but the halo, weighed again with it at the slice's
        degree, then lost (the first law stays).
    """

    ratio: float
    fraction: float
    gain: float
    cost: float
    n_pixels: int
    fitted: bool
    why: str = ""
    slope: float = 0.0
    reference: float = 0.0
    slope_fitted: bool = False
    slope_gain: float = 0.0
    bkg_order: int | None = None
    index: float = HALO_INDICES[0]
    tail: float = 0.0
    tail_fitted: bool = False
    tail_gain: float = 0.0
    rival_alpha: float | None = None
    rival_gain: float = 0.0
    law_check: dict[str, Any] | None = None

    @property
    def wins(self) -> bool:
        """The core + halo is a candidate and lowers the chi2 by more than its cost."""
        return self.fitted and not self.why and self.gain > self.cost

    def to_meta(self) -> dict[str, Any]:
        """Plain values for the spectrum metadata."""
        return {
            "criterion": "chi2 + k ln(n) over the bins",
            "chosen": self.wins,
            "ratio": float(self.ratio),
            "index": float(self.index),
            "tail": float(self.tail),
            "tail_fitted": bool(self.tail_fitted),
            "tail_chi2_gain": float(self.tail_gain),
            **(
                {}
                if self.rival_alpha is None
                else {"moffat_alpha": self.rival_alpha, "moffat_chi2_gain": self.rival_gain}
            ),
            "slope": float(self.slope),
            "slope_fitted": bool(self.slope_fitted),
            "slope_chi2_gain": float(self.slope_gain),
            "reference_um": float(self.reference),
            "bkg_order": self.bkg_order,
            "fraction": float(self.fraction),
            "chi2_gain": float(self.gain),
            "cost": float(self.cost),
            "n_pixels": int(self.n_pixels),
            "why": self.why or ("not fitted: no grid point paid" if not self.fitted else ""),
            **({} if self.law_check is None else {"law_check": self.law_check}),
        }


def halo_template(evidence: HaloEvidence) -> KernelTemplate:
    """The core + halo with the bins' halo shape set and held (not refitted)."""
    shape = {
        "ratio": evidence.ratio,
        "fraction": evidence.fraction,
        "slope": evidence.slope,
        "reference": evidence.reference,
        "index": evidence.index,
        "tail": evidence.tail,
    }
    template = with_params(_HALOS[evidence.index], shape)
    model = template.model.copy()
    for name in ("ratio", "fraction", "slope", "tail"):
        getattr(model, name).fixed = True
    return replace(template, model=model)


def halo_over_bins(
    template: KernelTemplate,
    data: BinData,
    *,
    fit: KernelFit,
    settings: SceneSettings,
    weigh_sky: bool = True,
) -> HaloEvidence | None:
    """The core + halo against ``template`` (a Gaussian or Moffat) on the bins of ``data``.

    The halo's ratio is held at `HALO_RATIO`; its fraction is one value for
    the slit (one shape parameter beyond the center and width) and, when that
    pays, also a linear function of the wavelength, kept only when the slope
    pays for its own parameter too.

    Parameters
    ----------
    template : KernelTemplate
        The chosen family, with the shape the bins fitted.
    data : BinData
        The bins' profiles and ``template``'s fits to them.
    fit : KernelFit
        The slice fit: its center starts the bins, its components move with the source.
    settings : SceneSettings
        ``bkg_order`` (an integer) and ``fit_trace``.
    weigh_sky : bool
        Whether a sky may be weighed beside the halo where ``bkg_order`` is
        none, and a constant's slope where it is a constant (False when the
        user gave ``bkg_order``: it is kept).

    Returns
    -------
    HaloEvidence or None
        None when there is nothing to compare (not a Gaussian or Moffat, no
        background, fewer than two good bins).
    """
    evidence = _weigh_halo(template, data, fit=fit, settings=settings, weigh_sky=weigh_sky)
    if (
        evidence is None
        or not evidence.wins
        or evidence.tail_fitted
        or evidence.bkg_order is not None  # weighed over a sky: checked there
        or int(settings.bkg_order) >= LAW_BKG_ORDER
    ):
        return evidence
    # the wing law over the sky a residual sky can be, a constant and a slope
    # across the slit: with none, or a constant alone, the wider law's wings can
    # stand in for a sky's slope (example PSF at S/N 30: 4 of 30 slits took the
    # x**-2 law, one 2.2 % high in every column; now 1). Both laws hold the same
    # parameters, so the background is a nuisance of the comparison: the law is
    # taken there, and the halo is then weighed and fitted at the slice's degree.
    # Where the slice chose a constant, the halo is kept over the slope instead.
    sloped, over_slope = _at_degree(
        template, data, fit=fit, settings=settings, bkg_order=LAW_BKG_ORDER
    )
    law = _weigh_halo(template, sloped, fit=fit, settings=over_slope, weigh_sky=False)
    check = _law_check(law, evidence.index)
    if check["index"] is None and law is not None and int(settings.bkg_order) < 0 and weigh_sky:
        # over a sloped sky no halo pays where, with no background, one did: its wings
        # stood in for a sky the score test beside it missed (a 0.2 % sky sloped across
        # a Gaussian's slit at S/N 10: an x**-2 halo of share 0.09, the flux 6.8 % high).
        # It is weighed again over a constant in every bin, which it pays for too.
        again = _over_constant(template, data, fit=fit, settings=settings)
        if again is None:
            n_pixels = int(np.sum(valid_pixels(data.values, data.sigma)))
            why = "no bins fitted over a sky"
            return HaloEvidence(HALO_RATIO, np.nan, 0.0, 0.0, n_pixels, False, why)
        why = "no halo over a sloped sky, nor over a constant"
        return _charged(again, CRITERION.penalty(again.n_pixels), why, law_check=check)
    if check["index"] is not None and int(settings.bkg_order) >= 0 and weigh_sky:
        # a sky the slice saw as a constant: its slope across the slit, too faint to pay
        # in one slice, still moves the halo's share, and the share moves every column's
        # flux alike (example PSF with a 0.5 % sky sloped by +-30 % at S/N 30: the 14 of
        # 30 slits whose slice chose a constant were +0.33 % above the oracle on average,
        # their share up to 0.005 above the slope's, the 15 with a slope and the true
        # law +0.07 %; the cell's bias +0.15 %, var/oracle 1.060). The halo over the
        # sloped sky is kept, and the slice refitted at that degree: +0.02 %, 1.041.
        return replace(law, law_check=check, bkg_order=LAW_BKG_ORDER)
    if check["index"] in (None, evidence.index):  # no pure law there, or the same one
        return replace(evidence, law_check=check)
    again = _weigh_halo(
        template, data, fit=fit, settings=settings, weigh_sky=weigh_sky, laws=(law.index,)
    )
    if again is None or not again.wins:
        return replace(evidence, law_check={**check, "kept": "the law the slice's degree chose"})
    return replace(again, law_check=check)


def _over_constant(
    template: KernelTemplate, data: BinData, *, fit: KernelFit, settings: SceneSettings
) -> HaloEvidence | None:
    """The halo weighed again from the start over a constant in every bin."""
    refit, over_sky = _at_degree(template, data, fit=fit, settings=settings, bkg_order=0)
    return halo_over_bins(template, refit, fit=fit, settings=over_sky)


def _charged(again: HaloEvidence, extra: float, why: str, **fields: Any) -> HaloEvidence:
    """``again`` (`_over_constant`) at ``extra`` more cost, with ``why`` where it loses."""
    again = replace(again, cost=again.cost + extra, bkg_order=0, **fields)
    if not again.wins and not again.why:
        again = replace(again, why=why)
    return again


def _law_check(law: HaloEvidence | None, index: float) -> dict[str, Any]:
    """The record of the wing law weighed over a sloped sky (``model_choice.halo.law_check``)."""
    return {
        "bkg_order": LAW_BKG_ORDER,
        "index": None if law is None or not law.wins or law.tail_fitted else float(law.index),
        "index_at_slice_degree": float(index),
    }


def _weigh_halo(
    template: KernelTemplate,
    data: BinData,
    *,
    fit: KernelFit,
    settings: SceneSettings,
    weigh_sky: bool = True,
    laws: tuple[float, ...] = HALO_INDICES,
) -> HaloEvidence | None:
    """`halo_over_bins` at the slice's background degree, the wing laws ``laws``."""
    kind = type(template.model)
    if kind not in (models.Gaussian1D, models.Moffat1D) or data.fits.chi2.size == 0:
        return None
    good = data.fits.good & np.isfinite(data.fits.chi2)
    if good.sum() < 2:
        return None
    # shape parameters beyond the center and width: the fraction (and the ratio when
    # fitted) against the Moffat's index or nothing
    own = len(fitted_params(template)) - 2
    # against a Moffat the halo holds no parameter more, but it is the better of two
    # laws: it gains by the screen's share of a parameter's cost (at S/N 3 a Moffat
    # slit's x**-2 halo won by 1.0, 7 % high)
    terms = 1 - own if own < 1 else SCREEN
    basis = polynomial_basis(data.values.shape[0], int(settings.bkg_order))
    offsets = np.asarray(fit.offsets, float)
    values, sigma = data.values[:, good], data.sigma[:, good]
    n_pixels = int(np.sum(valid_pixels(values, sigma)))
    penalty = CRITERION.penalty(n_pixels)
    base = float(np.sum(data.fits.chi2[good]))
    dof = n_pixels - int(good.sum()) * (1 + len(offsets) + basis.shape[1] + 2)
    if _cannot_win(base, dof, terms, penalty):
        return HaloEvidence(HALO_RATIO, np.nan, 0.0, terms * penalty, n_pixels, False)
    grid, grid_chi2 = _grid(values, sigma, data.fits, good, basis=basis, offsets=offsets)
    reference = float(np.median(data.wavelength[good]))
    at = {"basis": basis, "offsets": offsets}
    # one fraction for the slit, at every index whose best grid point passes the screen,
    # the better point first; of two that win, the one whose fit has the lower chi2 is
    # kept (both hold the same parameters). When the first fit does not win, the other
    # is not tried: where neither index gives a halo (a Gaussian or Moffat source) it
    # costs one fit, not two.
    points = [
        min((i for i, g in enumerate(grid) if g[2] == index), key=lambda i: grid_chi2[i])
        for index in laws
    ]
    # against a Moffat the grid does not screen (the fit does, above): it is
    # evaluated at the Moffat's widths, narrower than a core + halo's where the
    # Moffat's wings carry more flux (a tabulated PSF's slit at S/N 30: the grid lost 14
    # where the fit gained 41, and the Moffat's fluxes were 0.9 sigma low)
    screen = SCREEN * penalty if own < 1 else -np.inf
    trials = []
    for point in sorted(points, key=lambda i: grid_chi2[i]):
        if base - grid_chi2[point] < screen or (trials and not trials[0][0].wins):
            continue
        index = grid[point][2]
        ratio, fraction, _, core = grid[point]
        width = float(np.median(data.fits.fwhm[good])) * core
        start = {
            "ratio": ratio,
            "fraction": fraction,
            "slope": 0.0,
            "reference": reference,
            "index": index,
            "tail": 0.0,
        }
        held = _fit_bins(
            start,
            data,
            fit=fit,
            settings=settings,
            width=width,
            slope=False,
            bkg_order=int(settings.bkg_order),
        )
        evidence = _evidence(held, data, good, extra_terms=terms, base=template, index=index, **at)
        trials.append((evidence, held, start, width))
    if not trials:
        point = int(np.argmin(grid_chi2))
        ratio, fraction, index, _ = grid[point]
        gain = base - grid_chi2[point]
        return HaloEvidence(ratio, fraction, gain, terms * penalty, n_pixels, False, index=index)
    # between the two laws (the same parameters) the plain chi2 decides, over the bins
    # both fitted: the template error's discount guards against buying parameters,
    # and here would only leave out the cores, where the laws' fits differ too
    plain = _common_chi2(good, *(t[1] for t in trials))
    best, held, start, width = trials[
        max(range(len(trials)), key=lambda i: (trials[i][0].wins, -plain[i]))
    ]
    best = replace(best, reference=reference)
    if not best.wins:
        return best
    # wings between the two laws: an index 1.5 halo with a share ``tail`` of its flux
    # in a Lorentzian, started between them. As the slope below, it is weighed against
    # the better pure law's fit by the plain chi2, but at the criterion's focused cost:
    # the law barely shows in the chi2 (a gain of 5-10 at S/N 200) while a wrong pure
    # one moves every column's flux alike, by 1-2 %.
    start = {**start, "index": TAIL_INDEX, "fraction": best.fraction, "tail": 0.5}
    settings_at = {"fit": fit, "settings": settings, "width": width, "slope": False}
    mixed = _fit_bins(start, data, tail=True, bkg_order=int(settings.bkg_order), **settings_at)
    mix = _evidence(
        mixed,
        replace(data, fits=held),
        good,
        extra_terms=1,
        base=None,
        index=TAIL_INDEX,
        focused=True,
        **at,
    )
    tail = mix.wins
    if tail:
        best = replace(
            best,
            fraction=mix.fraction,
            tail=mix.tail,
            index=TAIL_INDEX,
            tail_fitted=True,
            tail_gain=mix.gain,
        )
        held = mixed
    start = {**start, "index": best.index, "tail": best.tail}
    at = {**at, "index": start["index"]}
    bkg_order = int(settings.bkg_order)
    if bkg_order < 0 and weigh_sky:
        # without a background the halo's wings are the only model of a faint sky.
        # Where a sky describes the bins as well as the halo, or a sky that pays on
        # its own (ln n a term) still pays beside the halo at the focused cost (a true
        # halo and a sky: wide x**-2 wings took up most of a 0.5 % sky at S/N 10,
        # fraction 0.18-0.20 for a true 0.10, 0.8 sigma high; the sky gained 121
        # alone, 7 beside it), the halo is weighed again from the start, its law
        # included, on top of a constant in every bin. Beside a halo standing in for
        # a Moffat's wings, a sky takes up the misfit (4-7 at S/N 5 with no sky,
        # 0.1-6 alone): hence the sky pays alone too.
        sky = _sky_gain(template, data, good, offsets=offsets)
        plain = float(np.sum(data.fits.chi2[good]) - np.sum(held.chi2[good]))
        # beside the halo, its share free (the sky's score test): the share took up
        # what it could of the sky when it was fitted, and a sky beside that share
        # held was weighed against the rest only (a 0.2 % sky at S/N 10: gains 1.3-7.0
        # held, 3.2-16 free; a 0.1 % sky at S/N 30 was left out of 8 of 30 slits held,
        # 2 free). Not the share's slope: a sky's change along the slit is what it
        # takes up (that 0.1 % sky went into the slope of 24 of 30 slits, +1.8 %)
        halo = with_params(_HALOS[start["index"]], held.shape_params)
        beside = replace(data, fits=held, extra={WAVELENGTH_PARAM: data.wavelength})
        over = _sky_gain(
            halo,
            beside,
            good & held.good,
            offsets=np.asarray(held.offsets, float),
            free=("fraction",),
        )
        focused = CRITERION.focus_penalty
        if sky >= plain or (sky > SKY_TERMS * penalty and over > SKY_TERMS * focused):
            again = _over_constant(template, data, fit=fit, settings=settings)
            if again is None:
                return replace(best, fitted=False, why="no bins fitted over a sky")
            # where the sky does not pay on its own, the halo brings the constant the
            # slice did not want: one term more
            extra = penalty if sky <= SKY_TERMS * penalty else 0.0
            why = f"a sky gains {sky:.1f} alone, {over:.1f} beside it; over it, no halo"
            return _charged(again, extra, why)
    # a Gaussian's slice may have missed a Moffat's wings (at S/N 10 its index heads
    # for the Gaussian limit in 30 columns): the halo then stands in for them
    rival = _moffat_rival(
        template, data, good, fit=fit, settings=settings, bkg_order=bkg_order, at=at
    )
    if rival is not None:
        # the same parameters: the plain chi2 decides, as between the halo's two laws
        alpha, gain, moffat = rival
        halo_chi2, moffat_chi2 = _common_chi2(good, held, moffat)
        excess = moffat_chi2 - halo_chi2
        if excess <= 0.0:
            why = f"a Moffat describes the bins better (chi2 lower by {-excess:.1f})"
            return replace(best, why=why, rival_alpha=alpha, rival_gain=gain)
    # a fraction that changes linearly with the wavelength, against the one fraction
    start = {**start, "fraction": best.fraction, "tail": best.tail}
    sloped = _fit_bins(
        start, data, **{**settings_at, "slope": True}, tail=tail, bkg_order=bkg_order
    )
    # the slope moves every column's flux too (a share of the flux more or less
    # in the wings, smoothly along the slit): the focused cost, as the tail's
    slope = _evidence(
        sloped, replace(data, fits=held), good, extra_terms=1, base=None, focused=True, **at
    )
    if slope.wins:
        best = replace(
            best,
            fraction=slope.fraction,
            slope=slope.slope,
            slope_fitted=True,
            slope_gain=slope.gain,
            tail=slope.tail,
        )
    return best


def _moffat_rival(
    template: KernelTemplate, data: BinData, good, *, fit, settings, bkg_order, at
) -> tuple[float, float, trace.BinFits] | None:
    """A Moffat fitted to the bins against the chosen Gaussian: index, ``chi2_eff`` gain, fits.

    Only where the Gaussian was chosen and a Moffat is among the families
    (``kernel = "auto"``); its index is one value for the slit, as the
    halo's fraction, and the nod copies' offsets are refitted as the halo's
    are. None when not weighed, or when the index ends on its bound.
    """
    if type(template.model) is not models.Gaussian1D or not _moffat_allowed(settings):
        return None
    moffat = with_params(make_template("moffat"), {"alpha": 2.5})
    fits = data.refit(moffat, fit, good, bkg_order=bkg_order, fit_center=bool(settings.fit_trace))
    alpha = float(fits.shape_params.get("alpha", np.nan))
    lo, hi = shape_bounds(moffat, data.values.shape[0])["alpha"]
    if (
        not np.isfinite(alpha)
        or at_bound({"alpha": np.array([alpha])}, ["alpha"], {"alpha": (lo, hi)}, n_prof=1)[0]
    ):
        return None
    both = trace.common_bins(good, fits)
    if not trace.enough_common(both, good):
        return None
    args = {"basis": at["basis"], "offsets": at["offsets"], "data": data, "bins": both}
    gain = _chi2_eff(template, data.fits, data.extra, **args) - _chi2_eff(
        with_params(moffat, {"alpha": alpha}), fits, {}, **args
    )
    return alpha, float(gain), fits


def _common_chi2(good: np.ndarray, *fits: trace.BinFits) -> list[float]:
    """Each fit's chi2 summed over the ``good`` bins that every one of them fitted.

    How fits holding the same number of parameters (the halo's two laws, the
    halo and a Moffat) are compared: by the plain chi2, over the same bins.
    """
    both = trace.common_bins(good, *fits)
    return [float(np.sum(f.chi2[both])) for f in fits]


def _moffat_allowed(settings: SceneSettings) -> bool:
    """Whether a Moffat is among the kernel families the slit may take."""
    return any(
        k == "moffat" if isinstance(k, str) else type(k.model) is models.Moffat1D
        for k in settings.other_kernels
    )


def _sky_gain(
    template: KernelTemplate, data: BinData, good, *, offsets, free: tuple[str, ...] = ()
) -> float:
    """Chi2 the bins of ``data.fits`` gain from a sky (``template``'s profiles as fitted).

    The sky is uniform across the slit and linear along the bins: two terms
    shared by all bins, solved with every bin's component fluxes at once.
    With ``free`` (``template``'s shared shape parameters), those and every
    bin's center and width are free too, linearized at the fits: the sky's
    score test, which weighs it against what the shape could take up of it.
    """
    fits = data.fits
    cp, wp = template.center_param, template.width_param
    params = {cp: fits.center[good], wp: fits.fwhm[good] / template.fwhm_per_width()}
    params.update({k: np.asarray(v, float)[good] for k, v in data.extra.items()})
    y = np.arange(data.values.shape[0], dtype=float)
    shapes = component_shapes(template, y, params, offsets=offsets)
    n_good = shapes.shape[1]
    sky = np.column_stack([np.ones(n_good), np.linspace(-1.0, 1.0, n_good)])
    values, sigma = data.values[:, good], data.sigma[:, good]
    a, rhs = sky_design(shapes, values, sigma, sky=sky)
    if free:
        a = _with_shape_columns(a, rhs, template, y, params, free, shapes, values, sigma, offsets)
    with_sky = np.linalg.lstsq(a, rhs, rcond=None)[0]
    without = np.linalg.lstsq(a[:, :-2], rhs, rcond=None)[0]
    chi2_sky = np.sum((rhs - a @ with_sky) ** 2)
    return float(np.sum((rhs - a[:, :-2] @ without) ** 2) - chi2_sky)


def _with_shape_columns(a, rhs, template, y, params, free, shapes, values, sigma, offsets):
    """``a`` (`.binsky.sky_design`) with the shape's derivatives before the sky's two columns.

    Every bin's center and width (one column per bin each) and the shared
    parameters ``free`` (one column each), times the bins' fitted fluxes:
    finite differences of `.psf.profilefit.component_shapes`.
    """
    n_cross, n_bins, n_comp = shapes.shape
    fluxes = np.linalg.lstsq(a[:, :-2], rhs, rcond=None)[0].reshape(n_bins, n_comp)
    _, w, _ = data_weights(values, sigma)
    cp, wp = template.center_param, template.width_param

    def moved(step, changed, model=template):
        return (component_shapes(model, y, {**params, **changed}, offsets=offsets) - shapes) / step

    derivatives = [
        moved(STEP, {cp: params[cp] + STEP}),
        moved(STEP, {wp: params[wp] * (1.0 + STEP)}),
    ]
    for name in free:
        value = float(getattr(template.model, name).value)
        derivatives.append(moved(STEP, {}, with_params(template, {name: value + STEP})))
    index = np.arange(n_bins)
    columns = []
    for k, d in enumerate(derivatives):
        change = np.einsum("rbc,bc->rb", d, fluxes) * w
        if k < 2:  # a column per bin
            block = np.zeros((n_cross, n_bins, n_bins))
            block[:, index, index] = change
            columns.append(block.reshape(n_cross * n_bins, n_bins))
        else:
            columns.append(change.reshape(-1, 1))
    return np.concatenate([a[:, :-2], *columns, a[:, -2:]], axis=1)


def _at_degree(
    template, data: BinData, *, fit, settings: SceneSettings, bkg_order: int
) -> tuple[BinData, SceneSettings]:
    """The bins with the chosen family refitted at background ``bkg_order``, and the settings at it.

    From the slice's center; ``bkg_order`` 0 is a constant in every bin, -1 none.
    The halo is then weighed over them as at a slice of that degree.
    """
    fits = background_fit(
        template,
        data,
        fit=fit,
        fit_center=bool(settings.fit_trace),
        center=fit.center,
        bkg_order=bkg_order,
    )
    return replace(data, fits=fits), replace(settings, bkg_order=bkg_order)


def _fit_bins(
    start, data: BinData, *, fit, settings, width, slope, bkg_order, tail=False
) -> trace.BinFits:
    """The core + halo fitted to every bin; its fraction (and slope, tail) one value for all."""
    halo = with_params(_HALOS[start["index"]], start)
    model = halo.model.copy()
    model.slope.fixed = not slope
    model.ratio.fixed = True
    model.tail.fixed = not tail
    return trace.fit_bins(
        replace(halo, model=model),
        data.values,
        data.sigma,
        bkg_order=bkg_order,
        center=fit.center,
        fwhm=width,
        fit_center=bool(settings.fit_trace),
        fit_fwhm=True,
        offsets=fit.offsets,
        extra={WAVELENGTH_PARAM: data.wavelength},
        fit_offsets=True,
    )


def _evidence(
    fitted: trace.BinFits,
    data: BinData,
    good,
    *,
    extra_terms: float,
    base,
    basis,
    offsets,
    index,
    focused: bool = False,
) -> HaloEvidence:
    """The chi2_eff the core + halo gains over the bins both fitted, and its cost.

    ``chi2_eff`` (`.criterion.Criterion.chi2`) weighs the residuals against the
    noise and the template error, as the orders along the dispersion are
    chosen: a bright slit cannot buy the halo with a template's misfit.
    """
    both = good & fitted.good & np.isfinite(fitted.chi2)
    shape = fitted.shape_params
    n_pixels = int(np.sum(np.isfinite(data.values[:, both]) & (data.sigma[:, both] > 0)))
    per = CRITERION.focus_penalty if focused else CRITERION.penalty(n_pixels)
    cost = extra_terms * per
    if base is None:  # against the bins' other fit of the halo: the plain chi2
        gain = float(np.sum(data.fits.chi2[both]) - np.sum(fitted.chi2[both]))
    else:
        halo = with_params(_HALOS[index], shape)
        at = {"basis": basis, "offsets": offsets, "data": data, "bins": both}
        gain = _chi2_eff(base, data.fits, data.extra, **at) - _chi2_eff(
            halo, fitted, {WAVELENGTH_PARAM: data.wavelength}, **at
        )
    # the tail on a bound is a pure wing law (x**-3 or x**-2), not another family's limit
    values = {n: np.array([v]) for n, v in shape.items() if n != "tail"}
    bounds = {n: getattr(CoreHalo1D, n).bounds for n in values}
    why = ""
    if at_bound(values, list(values), bounds, n_prof=1)[0]:
        why = "shape parameter on its bound"
    elif both.sum() < max(2, good.sum() // 2):
        why = "too few bins fitted"
    return HaloEvidence(
        shape.get("ratio", HALO_RATIO),
        shape["fraction"],
        gain,
        cost,
        n_pixels,
        True,
        why,
        slope=shape.get("slope", 0.0),
        index=index,
        tail=shape.get("tail", 0.0),
    )


def _chi2_eff(template, fits: trace.BinFits, extra, *, basis, offsets, data, bins) -> float:
    """``chi2_eff`` of ``template`` at the bins' fitted centers and widths, summed."""
    return score_fits(
        template, data.values, data.sigma, fits, bins, offsets=offsets, basis=basis, extra=extra
    )


def _cannot_win(chi2: float, dof: int, extra_terms: float, penalty: float) -> bool:
    """The chi2 left above the bins' degrees of freedom cannot pay for the halo.

    As `.scene.fit._cannot_win`: the halo can gain about that excess plus one
    per parameter, give or take two standard deviations of the chi2.
    """
    dof = max(dof, 1)
    possible = chi2 - dof + extra_terms + 2.0 * np.sqrt(2.0 * dof)
    return possible < extra_terms * penalty


def _grid(values, sigma, fits: trace.BinFits, good, *, basis, offsets):
    """Chi2 over the good bins of the core + halo at every grid point, and the grid.

    Every grid point's shape is evaluated at the chosen family's bin centers
    and FWHM (`.psf.halo.fwhm_over_core`), its fluxes and background solved
    exactly (all points and bins at once).
    """
    grid, chi2 = [], []
    n_bins = int(good.sum())
    y = np.arange(values.shape[0], dtype=float)
    for index in HALO_INDICES:  # one index per evaluation: the model holds it
        points = [
            (r, f, index, 1.0 / fwhm_over_core(r, f, index))
            for r, f in product(RATIO_GRID, FRACTION_GRID)
        ]
        n_grid = len(points)
        ratio, fraction, _, core = (
            np.repeat(np.array(g, float), n_bins) for g in zip(*points, strict=True)
        )
        params = {
            "mean": np.tile(fits.center[good], n_grid),
            "stddev": np.tile(fits.fwhm[good], n_grid) * core / FWHM_PER_SIGMA,
            "ratio": ratio,
            "fraction": fraction,
        }
        halo = _HALOS[index]
        shapes = component_shapes(halo, y, params, offsets=offsets)
        data, noise = np.tile(values, (1, n_grid)), np.tile(sigma, (1, n_grid))
        resid, *_ = solve_linear(shapes, data, noise, basis=basis)
        chi2.extend(np.sum(resid**2, axis=0).reshape(n_grid, n_bins).sum(axis=1))
        grid.extend(points)
    return grid, np.asarray(chi2)
