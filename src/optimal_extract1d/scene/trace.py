"""Kernel fits in bins along the dispersion axis, and smooth FWHM(λ), center(λ) models.

All bins of a slit are fitted at once as one least-squares problem
(`.psf.profilefit.fit_profiles`): the template's center and/or width are the
non-linear parameters of every bin, while its amplitude and the polynomial
background are solved exactly for each trial (variable projection). Bins
whose flux S/N is too low, or whose fit runs to a bound, keep the global
kernel. The good bins are then
modelled with a sigma-clipped polynomial (the power series of astropy's
``Polynomial1D``, fitted with numpy) that the extraction evaluates per column:
the width in wavelength (diffraction sets it), the center in the dispersion
pixel (the detector geometry sets it, as in specreduce's ``FitTrace``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import polynomial as P

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelTemplate, fitted_params, shape_bounds, with_params
from ..psf.profilefit import fit_profiles

__all__ = [
    "BinFits",
    "BinPlan",
    "SmoothModel",
    "bin_centers",
    "choose_bins",
    "common_bins",
    "enough_common",
    "fit_bins",
    "fit_smooth",
    "plan_bins",
]

log = logging.getLogger(__name__)

# Bins need this flux S/N for their width or center to be trusted.
MIN_BIN_SNR = 10.0
# Automatic binning aims at this S/N per bin, with at most MAX_BINS bins.
TARGET_BIN_SNR = 15.0
MAX_BINS = 24
MIN_BIN_COLUMNS = 4
# A bin center further than this (pixels) from the global center is "wild".
MAX_CENTER_JUMP = 3.0


@dataclass(frozen=True)
class BinFits:
    """Kernel parameters fitted in bins.

    Attributes
    ----------
    center, fwhm : ndarray, shape (n_bins,)
        Fitted center and FWHM (pixels); the global value where not fitted.
    snr : ndarray, shape (n_bins,)
        Flux S/N of each bin's coadded profile.
    good : ndarray of bool, shape (n_bins,)
        Bins whose fit is trusted (enough signal, inside the bounds).
    shape_params : dict of str to float
        Other template parameters fitted with one value for all bins.
    chi2 : ndarray, shape (n_bins,)
        Chi-square of every bin's fit (empty when not recorded).
    smear : tuple of ndarray, shape (n_bins,), or None
        What coadding the bin's columns over a moving trace adds to its
        fitted center and FWHM (apparent minus intrinsic, pixels; see
        `.variation`); None: nothing known, the fits are the intrinsic values.
    offsets : tuple of float
        Offsets of the further components the fits used (refitted, or as given).
    """

    center: np.ndarray
    fwhm: np.ndarray
    snr: np.ndarray
    good: np.ndarray
    shape_params: dict[str, float] = field(default_factory=dict)
    chi2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    smear: tuple[np.ndarray, np.ndarray] | None = None
    offsets: tuple[float, ...] = ()

    @property
    def intrinsic_center(self) -> np.ndarray:
        """The source's center at every bin's central column (the fit less the smear's shift)."""
        return self.center if self.smear is None else self.center - self.smear[0]

    @property
    def intrinsic_fwhm(self) -> np.ndarray:
        """The kernel's FWHM in every bin (the fit less what the smear widened it by)."""
        return self.fwhm if self.smear is None else self.fwhm - self.smear[1]


def bin_centers(edges: np.ndarray) -> np.ndarray:
    """Central column of every bin (bin i is ``edges[i]:edges[i+1]``)."""
    edges = np.asarray(edges, float)
    return 0.5 * (edges[:-1] + edges[1:] - 1)


def choose_bins(column_snr: np.ndarray, n_bins: int | None) -> np.ndarray:
    """Bin edges holding equal shares of the total S/N squared (`plan_bins`'s edges)."""
    return plan_bins(column_snr, n_bins).edges


@dataclass(frozen=True)
class BinPlan:
    """Bin edges along the dispersion, and which bins are an emission line's column.

    Attributes
    ----------
    edges : ndarray of int, shape (n_bins + 1,)
        Increasing column edges from 0 to n_disp (bin i is ``edges[i]:edges[i+1]``).
    line : ndarray of bool, shape (n_bins,)
        Bins that are one column holding a whole share of the S/N (a line).
    """

    edges: np.ndarray
    line: np.ndarray

    def merged_where_faint(self, snr: np.ndarray) -> BinPlan:
        """The plan with every bin whose fit fell under ``MIN_BIN_SNR`` merged into a neighbour.

        The bins were placed at the S/N a fixed profile predicts; their fits
        free the center, the width and every component's flux, and one may
        come out under the S/N its width needs (CEERS 933 with no background:
        the PRISM's red tail, 4.2-5.4 um, at 9.4). Left out, its columns hold
        no weight in the smooth models, which are held over them from the
        bins beside. Such a bin is merged with its neighbour of lower fitted
        S/N, never with a line's column (which would dilute the line's
        profile) nor across one; a column of continuum that a line cut from
        its bin is merged so too. The faintest bins are merged first, each
        bin once.

        Parameters
        ----------
        snr : ndarray, shape (n_bins,)
            Fitted flux S/N of every bin (NaN where the fit failed).

        Returns
        -------
        BinPlan
            Itself when no bin merges.
        """
        snr = np.nan_to_num(np.asarray(snr, float), nan=-np.inf)
        n = snr.size
        faint = ~self.line & (snr < MIN_BIN_SNR)
        if not faint.any() or n < 2:
            return self
        drop = set()  # indices of the edges removed (edge k separates bins k-1 and k)
        used = np.zeros(n, bool)
        for i in np.argsort(snr, kind="stable"):
            if not faint[i] or used[i]:
                continue
            nbrs = [j for j in (i - 1, i + 1) if 0 <= j < n and not self.line[j] and not used[j]]
            if not nbrs:
                continue
            j = min(nbrs, key=lambda k: snr[k])
            drop.add(max(i, j))
            used[[i, j]] = True
        if not drop:
            return self
        keep = np.ones(n + 1, bool)
        keep[sorted(drop)] = False
        line = np.delete(self.line, [k - 1 for k in sorted(drop)])
        return BinPlan(self.edges[keep], line)


def plan_bins(column_snr: np.ndarray, n_bins: int | None) -> BinPlan:
    """Bin edges holding equal shares of the total S/N squared.

    A column that holds a whole share or more on its own (an emission line)
    becomes a bin of its own.

    Parameters
    ----------
    column_snr : ndarray, shape (n_disp,)
        First-pass S/N of every column (negative or NaN count as 0).
    n_bins : int or None
        Number of bins; None = as many as reach ``TARGET_BIN_SNR`` (1 to ``MAX_BINS``).

    Returns
    -------
    BinPlan
    """
    n_disp = column_snr.size
    s2 = np.clip(np.nan_to_num(column_snr), 0.0, None) ** 2
    total = s2.sum()
    max_bins = max(n_disp // MIN_BIN_COLUMNS, 1)
    auto = n_bins is None
    if auto:
        n_bins = int(np.clip(total // TARGET_BIN_SNR**2, 1, MAX_BINS))
    n_bins = int(np.clip(n_bins, 1, max_bins))
    if total <= 0:
        edges = np.linspace(0, n_disp, n_bins + 1).round().astype(int)
        return BinPlan(edges, np.zeros(edges.size - 1, bool))
    heavy = _heavy_columns(s2, n_bins)
    starts, stops = _runs(heavy)
    light = np.where(heavy, 0.0, s2)
    # the lines' columns are bins on top of those of the other columns, as many as
    # if the lines were not there, less the one each line would have taken; and,
    # binned automatically, no more than reach the target on the other columns'
    # own S/N (the lines' S/N, counted in ``n_bins``, would split a faint
    # continuum into bins too faint to fit)
    n_light = n_bins - starts.size
    if auto:
        n_light = min(n_light, int(light.sum() // TARGET_BIN_SNR**2))
    n_light = max(n_light, 1)
    edges = np.zeros(0, int)
    if light.sum() > 0:
        cum = np.concatenate([[0.0], np.cumsum(light)]) / light.sum()
        edges = np.searchsorted(cum, np.linspace(0, 1, n_light + 1)[1:-1])
    # A column holding a whole bin's share or more (an emission line) is a bin of
    # its own: mixed with its neighbours, the line's profile would be diluted by
    # their noise (an inverse-variance mean weighs every column alike).
    heavy_rows = np.flatnonzero(heavy)
    edges = np.concatenate([edges, heavy_rows, heavy_rows + 1])
    edges = np.unique(np.concatenate([[0], np.clip(edges, 1, n_disp - 1), [n_disp]]))
    edges = edges.astype(int)
    line = (np.diff(edges) == 1) & heavy[edges[:-1]]
    return BinPlan(edges, line)


def _heavy_columns(s2: np.ndarray, n_bins: int) -> np.ndarray:
    """Columns holding a bin's share of the S/N squared or more (emission lines).

    The share is the S/N squared of the other columns over the bins left for
    them: once the brightest lines took their bins, a fainter line may hold a
    share of what is left, and its profile is then not averaged with a
    stretch of continuum either.
    """
    heavy = np.zeros(s2.size, bool)
    while heavy.sum() < n_bins:
        share = s2[~heavy].sum() / (n_bins - int(heavy.sum()))
        new = ~heavy & (s2 >= share) & (share > 0)
        if not new.any():
            break
        heavy |= new
    return heavy


def _runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and past-the-last index of every run of True in ``flags``."""
    step = np.diff(np.r_[0, flags.astype(int), 0])
    return np.flatnonzero(step == 1), np.flatnonzero(step == -1)


def common_bins(good: np.ndarray, *fits: BinFits) -> np.ndarray:
    """The ``good`` bins that every one of ``fits`` fitted (good, with a finite chi2).

    Where two fits of the same bins are compared (`.scene.halo`, `.scene.family`,
    `.scene.nodbins`): over the same bins.
    """
    return np.logical_and.reduce([good] + [f.good & np.isfinite(f.chi2) for f in fits])


def enough_common(common: np.ndarray, good: np.ndarray) -> bool:
    """Whether the ``common`` bins are enough to weigh fits on: half the ``good``, two at least."""
    return bool(common.sum() >= max(2, good.sum() // 2))


def fit_bins(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    bkg_order: int,
    center: float | np.ndarray,
    fwhm: float | np.ndarray,
    fit_center: bool,
    fit_fwhm: bool,
    offsets: tuple[float, ...] = (),
    extra: Mapping[str, np.ndarray] | None = None,
    fit_offsets: bool = False,
) -> BinFits:
    """Fit the kernel's center and/or FWHM to every bin's profile in one problem.

    Parameters
    ----------
    template : KernelTemplate
        PSF shape (its other shape parameters stay as fitted globally).
    values, sigma : ndarray, shape (n_cross, n_bins)
        Coadded bin profiles and their uncertainties (see `.core.coadd.coadd_bins`).
    bkg_order : int
        Polynomial background degree (-1 = none), solved in every bin.
    center : float or ndarray, shape (n_bins,)
        Starting center (the global kernel's, or a provisional trace's at
        every bin), the value where it is not fitted, and the reference a
        bin's fitted center may not leave by more than ``MAX_CENTER_JUMP``.
    fwhm : float or ndarray, shape (n_bins,)
        Starting FWHM (the global kernel's, or every bin's), and the value
        where it is not fitted.
    fit_center, fit_fwhm : bool
        Which parameters are free.
    offsets : tuple of float
        Offsets of further components (sources, nod copies) that move with
        the source; their fluxes are fitted in every bin.
    extra : mapping of str to ndarray, shape (n_bins,), optional
        Template parameters the data set per bin (never fitted), e.g. the
        wavelength of a tabulated PSF (`.psf.kernel.wavelength_params`).
    fit_offsets : bool
        Refit the ``offsets``, one value each for all bins (``offsets`` of
        the result); else they are held.

    Returns
    -------
    BinFits
        With ``edges`` left empty (filled by the caller).
    """
    n_cross, n_bins = values.shape
    per = template.fwhm_per_width()
    cp, wp = template.center_param, template.width_param
    center = np.broadcast_to(np.asarray(center, float), (n_bins,))
    width = np.broadcast_to(np.asarray(fwhm, float) / per, (n_bins,))
    start = {cp: center.copy(), wp: width.copy()}
    start.update(
        {k: np.broadcast_to(np.asarray(v, float), (n_bins,)) for k, v in (extra or {}).items()}
    )
    free = [name for name, on in ((cp, fit_center), (wp, fit_fwhm)) if on]
    # Other shape parameters (e.g. the Moffat index) are refitted with one value for
    # the whole slit when the width is fitted: one slice constrains them poorly.
    others = [n for n in fitted_params(template) if n not in (cp, wp) and n not in start]
    shared = others if fit_fwhm else []
    for name in shared:
        start[name] = np.full(n_bins, float(getattr(template.model, name).value))
    fits = fit_profiles(
        template,
        values,
        sigma,
        basis=polynomial_basis(n_cross, bkg_order),
        start=start,
        free=free,
        shared=shared,
        bounds=shape_bounds(template, n_cross),
        offsets=offsets,
        fit_offsets=fit_offsets and len(offsets) > 0,
    )
    extra = {n: float(fits.params[n][0]) for n in shared}
    per = with_params(template, extra).fwhm_per_width()
    centers, widths = fits.params[cp], np.abs(fits.params[wp]) * per
    good = (
        (fits.flux_snr[:, 0] >= MIN_BIN_SNR)
        & ~fits.at_bound
        & (np.abs(centers - center) <= MAX_CENTER_JUMP)
    )
    found = tuple(float(o) for o in np.ravel(fits.offsets)) if fit_offsets else tuple(offsets)
    return BinFits(centers, widths, fits.flux_snr[:, 0], good, extra, fits.chi2, offsets=found)


# The abscissae a smooth model can use, as written in its metadata.
VARIABLES = {
    "wavelength": "wavelength (um), Polynomial1D with domain -> window [-1, 1]",
    "column": "dispersion pixel (0-based), Polynomial1D with domain -> window [-1, 1]",
}


@dataclass(frozen=True)
class SmoothModel:
    """A sigma-clipped polynomial in wavelength or dispersion pixel for a kernel parameter.

    Attributes
    ----------
    coeffs : tuple of float
        Polynomial1D coefficients over ``domain`` mapped to [-1, 1].
    domain : tuple of float
        Range of the variable (microns or pixels) at the fitted bins.
    order : int
        Degree used (may be lower than requested when few bins are good).
    n_used, n_clipped : int
        Bins used in and clipped from the fit.
    valid : tuple of float or None
        Range the good bins cover (their outer edges); the model is held
        constant beyond it. None = ``domain`` (the bin centers).
    variable : str
        ``"wavelength"`` (microns) or ``"column"`` (dispersion pixel).
    """

    coeffs: tuple[float, ...]
    domain: tuple[float, float]
    order: int
    n_used: int
    n_clipped: int
    valid: tuple[float, float] | None = None
    variable: str = "wavelength"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate at ``x`` (of ``variable``), held constant beyond the range the bins cover."""
        lo, hi = self.valid if self.valid is not None else self.domain
        u = _to_window(np.clip(x, lo, hi), self.domain)
        return P.polyval(u, np.asarray(self.coeffs, float))

    def to_meta(self) -> dict:
        """Plain values for the spectrum metadata (`from_meta` rebuilds the model)."""
        return {
            "coeffs": list(self.coeffs),
            "domain": list(self.domain),
            "valid": list(self.valid if self.valid is not None else self.domain),
            "order": self.order,
            "n_bins_used": self.n_used,
            "n_bins_clipped": self.n_clipped,
            "abscissa": self.variable,
            "variable": VARIABLES[self.variable],
        }

    @classmethod
    def from_meta(cls, meta: Mapping) -> SmoothModel:
        """The model recorded by `to_meta` (a dict or the spectrum's metadata node).

        The variable is the ``abscissa`` field (``"wavelength"`` or
        ``"column"``); products written before that field existed are read
        by their ``variable`` description.
        """
        get = meta.get if isinstance(meta, Mapping) else lambda key: getattr(meta, key, None)
        variable = get("abscissa")
        if variable is None:
            variable = next(k for k, v in VARIABLES.items() if v == str(get("variable")))
        if variable not in VARIABLES:
            msg = f"unknown smooth-model abscissa {variable!r}; expected one of {list(VARIABLES)}"
            raise ValueError(msg)
        domain = (float(get("domain")[0]), float(get("domain")[1]))
        valid = (float(get("valid")[0]), float(get("valid")[1]))
        return cls(
            tuple(float(c) for c in get("coeffs")),
            domain,
            int(get("order")),
            int(get("n_bins_used")),
            int(get("n_bins_clipped")),
            None if valid == domain else valid,
            variable,
        )


def fit_smooth(
    x: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    *,
    order: int,
    valid: tuple[float, float] | None = None,
    variable: str = "wavelength",
) -> SmoothModel:
    """Fit a sigma-clipped polynomial (3 sigma, 3 passes) to per-bin values.

    The clipping weighs every bin's residual by its weight, as the fit does:
    a bin whose S/N is low is not clipped for being far off in pixels while
    within its errors (CEERS 933's one bin over the PRISM's red half, whose
    continuum is twice as wide as its lines: clipped, the width there was the
    lines' and the red fluxes came out 25-50 % low).

    The polynomial is the same as astropy's ``Polynomial1D`` with the bins'
    range of ``x`` as domain and window [-1, 1]; numpy fits it (this runs
    for every slit, and the astropy fitter's overhead dominated).

    Parameters
    ----------
    x, values, weights : ndarray, shape (n,)
        Bin positions (wavelengths or columns), fitted values and weights
        (e.g. the bin S/N); n >= 1.
    order : int
        Requested degree; lowered to n - 2 (at least 0) when n is small.
    valid : tuple of float, optional
        Range of ``x`` the bins cover, beyond which the model is held
        constant (default: the bin centers).
    variable : str
        What ``x`` is: ``"wavelength"`` or ``"column"`` (see ``VARIABLES``).

    Returns
    -------
    SmoothModel
    """
    if variable not in VARIABLES:
        msg = f"unknown smooth-model variable {variable!r}; use one of {list(VARIABLES)}"
        raise ValueError(msg)
    n = x.size
    order = int(max(min(order, n - 2), 0))
    lo, hi = float(np.min(x)), float(np.max(x))
    domain = (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
    u = _to_window(x, domain)
    # the power series on [-1, 1] (P.polyfit's, without its per-call overhead: this
    # runs about 13 times per slit)
    basis = np.vander(u, order + 1, increasing=True)
    weighted = basis * weights[:, None]
    clipped = np.zeros(n, bool)
    for _ in range(3 if n > order + 1 else 1):  # sigma clipping, 3 sigma, 3 passes
        keep = ~clipped
        coeffs = np.linalg.lstsq(weighted[keep], (values * weights)[keep], rcond=None)[0]
        # in units of every bin's precision: a faint bin far off in pixels may be
        # within its errors, a bright one a little off may not
        resid = (values - basis @ coeffs) * weights
        kept = resid[~clipped]
        again = np.abs(resid - np.median(kept)) > 3.0 * np.std(kept) if kept.size > 2 else clipped
        if np.array_equal(again, clipped) or again.sum() > n - order - 1:
            break
        clipped = again
    return SmoothModel(
        tuple(float(c) for c in coeffs),
        domain,
        order,
        int(n - clipped.sum()),
        int(clipped.sum()),
        None if valid is None else (float(min(valid)), float(max(valid))),
        variable,
    )


def _to_window(x: np.ndarray, domain: tuple[float, float]) -> np.ndarray:
    """Map ``domain`` onto [-1, 1] (astropy Polynomial1D's domain -> window)."""
    lo, hi = domain
    return 2.0 * (np.asarray(x, float) - lo) / (hi - lo) - 1.0
