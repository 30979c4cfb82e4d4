"""One PSF model fitted jointly to all the cal exposures of a source.

The spatial profile is a function of (along-slit offset from the source,
wavelength): a Gaussian or Moffat whose FWHM is a polynomial in wavelength,
centred in every exposure at the source position of the metadata plus a
fitted offset (the refinement of ``source_ypos`` and the nod offsets). The
fluxes of the output bins are solved linearly for every trial shape
(`.core.calsums.bin_flux`), the background as the mode says
(`.core.calsums.project`), so the fit varies only the shape: the offsets,
the FWHM coefficients and, for a Moffat, the index. Candidates (kernel
family, FWHM degree) are compared by ``chi^2 + k ln(n)``, the criterion of
`.scene.choice`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ..core.calsums import bin_flux, project
from ..errors import ProfileFitError
from ..psf.pointwise import pixel_profile

__all__ = ["CalPSF", "CalFitData", "fit_cal_psf", "MIN_FWHM"]

log = logging.getLogger(__name__)

#: Smallest FWHM (pixels) the width law may give.
MIN_FWHM = 0.5
_MAX_OFFSET = 3.0  # pixels a fitted offset may move from the metadata position
_GOOD_BIN_SNR = 3.0


@dataclass(frozen=True)
class CalFitData:
    """The stacked pixels of a source's exposures, as the fit sees them.

    Attributes
    ----------
    along : ndarray, shape (n_rows, n_pix)
        Along-slit offset of every pixel from the metadata source position (pixels).
    wavelength : ndarray, shape (n_rows, n_pix)
        Wavelength of every pixel (microns).
    exposure : ndarray of int, shape (n_rows, n_pix)
        Exposure index of every pixel.
    data, variance : ndarray, shape (n_rows, n_pix)
        Data and total variance.
    usable : ndarray of bool, shape (n_rows, n_pix)
    bins : ndarray of int, shape (n_rows, n_pix)
        Output bin of every pixel (-1 = none).
    n_bins : int
    n_exp : int
    mode : str
        Background treatment (`.core.calsums.MODES`).
    exposure_levels : bool
        ``"nod"`` mode: a sky level per exposure and bin is fitted too
        (`.core.calsums.ExposureSky`).
    """

    along: np.ndarray
    wavelength: np.ndarray
    exposure: np.ndarray
    data: np.ndarray
    variance: np.ndarray
    usable: np.ndarray
    bins: np.ndarray
    n_bins: int
    n_exp: int
    mode: str
    exposure_levels: bool = False

    def project(self, profile, data, weight, bins) -> tuple[np.ndarray, np.ndarray]:
        """`.core.calsums.project` with this data's background treatment."""
        levels = self.exposure_levels and self.mode == "nod"
        return project(
            profile, data, weight, self.mode, bins=bins if levels else None, n_bins=self.n_bins
        )


@dataclass(frozen=True)
class CalPSF:
    """The fitted joint profile.

    Attributes
    ----------
    kernel : str
        ``"gaussian"`` or ``"moffat"``.
    offsets : tuple of float
        Fitted source offset of every exposure from its metadata position (pixels).
    fwhm_coeffs : tuple of float
        FWHM (pixels) as a polynomial in ``(wavelength - lam0) / lam_half``.
    lam0, lam_half : float
        Center and half-range of the wavelengths (microns).
    alpha : float
        Moffat index (unused for a Gaussian).
    chi2 : float
        Profiled chi^2 of the fit.
    n_pixels : int
        Pixels fitted.
    choice : dict
        Criterion value of every candidate tried.
    """

    kernel: str
    offsets: tuple[float, ...]
    fwhm_coeffs: tuple[float, ...]
    lam0: float
    lam_half: float
    alpha: float = 2.5
    trace_coeffs: tuple[float, ...] = ()
    chi2: float = float("nan")
    n_pixels: int = 0
    choice: dict = field(default_factory=dict)

    def _x(self, wavelength: np.ndarray) -> np.ndarray:
        return (np.asarray(wavelength, float) - self.lam0) / self.lam_half

    def fwhm(self, wavelength: np.ndarray) -> np.ndarray:
        """FWHM (pixels) at the given wavelengths."""
        fwhm = np.polynomial.polynomial.polyval(self._x(wavelength), self.fwhm_coeffs)
        return np.maximum(fwhm, MIN_FWHM)

    def trace(self, wavelength: np.ndarray) -> np.ndarray:
        """Offset of the source along the slit common to all exposures (pixels; 0 at lam0)."""
        if not self.trace_coeffs:
            return np.zeros(np.shape(wavelength))
        return np.polynomial.polynomial.polyval(self._x(wavelength), (0.0, *self.trace_coeffs))

    def profile(self, along: np.ndarray, wavelength: np.ndarray, exposure: np.ndarray):
        """Unit-flux profile value of every pixel."""
        shift = np.asarray(self.offsets, float)[exposure] + self.trace(wavelength)
        return pixel_profile(self.kernel, along - shift, self.fwhm(wavelength), alpha=self.alpha)

    def to_meta(self) -> dict:
        """Plain values for the spectrum metadata."""
        return {
            "kernel": self.kernel,
            "exposure_offsets_px": [float(v) for v in self.offsets],
            "fwhm_model": {
                "coefficients": [float(v) for v in self.fwhm_coeffs],
                "variable": "(wavelength_um - lam0) / lam_half",
                "lam0": float(self.lam0),
                "lam_half": float(self.lam_half),
            },
            "trace_model": {
                "coefficients": [0.0, *(float(v) for v in self.trace_coeffs)],
                "variable": "(wavelength_um - lam0) / lam_half",
                "note": "pixels along the slit, added to every exposure's offset",
            },
            **({"moffat_alpha": float(self.alpha)} if self.kernel == "moffat" else {}),
            "chi2": float(self.chi2),
            "n_pixels": int(self.n_pixels),
            "model_choice": self.choice,
        }


def _chi(psf: CalPSF, d: CalFitData, cols: np.ndarray) -> np.ndarray:
    """Weighted residuals of the profiled fit on the pixel columns ``cols``."""
    along, lam = d.along[:, cols], d.wavelength[:, cols]
    use = d.usable[:, cols]
    prof = np.where(use, psf.profile(along, lam, d.exposure[:, cols]), 0.0)
    prof = np.nan_to_num(prof)
    weight = np.where(use, 1.0 / np.where(use, d.variance[:, cols], 1.0), 0.0)
    bins = np.where(use, d.bins[:, cols], -1)
    q, y = d.project(prof, d.data[:, cols], weight, bins)
    flux, _ = bin_flux(q, y, weight, bins, d.n_bins)
    fb = np.where(bins >= 0, np.nan_to_num(flux)[np.clip(bins, 0, None)], 0.0)
    return (np.sqrt(weight) * (y - fb * q))[use]


def _snr_bins(psf: CalPSF, d: CalFitData) -> np.ndarray:
    """S/N of every bin's flux under ``psf``."""
    prof = np.nan_to_num(np.where(d.usable, psf.profile(d.along, d.wavelength, d.exposure), 0))
    weight = np.where(d.usable, 1.0 / np.where(d.usable, d.variance, 1.0), 0.0)
    bins = np.where(d.usable, d.bins, -1)
    q, y = d.project(prof, d.data, weight, bins)
    flux, den = bin_flux(q, y, weight, bins, d.n_bins)
    return np.nan_to_num(flux * np.sqrt(den))


def fit_cal_psf(
    d: CalFitData,
    *,
    kernel: str = "auto",
    fwhm_order: int = 2,
    fit_fwhm: bool | str = "auto",
    trace_order: int = 2,
    fit_trace: bool | str = "auto",
    start: CalPSF | None = None,
) -> CalPSF:
    """Fit the joint profile of all exposures.

    Parameters
    ----------
    d : CalFitData
        The stacked pixels.
    kernel : str
        ``"gaussian"``, ``"moffat"`` or ``"auto"`` (both, the lower criterion wins).
    fwhm_order : int
        Highest degree of FWHM(wavelength).
    fit_fwhm : bool or str
        True: degree ``fwhm_order``; False: a constant FWHM; ``"auto"``:
        every degree up to ``fwhm_order``, the lower criterion wins.
    trace_order, fit_trace : int, bool or str
        The same for the source position along the slit as a function of
        wavelength (common to all exposures, on top of their offsets).
        The FWHM degree is chosen first (no trace), then the trace degree,
        then (``kernel = "auto"``) the Moffat competes with the Gaussian.
    start : CalPSF, optional
        A previous fit to start from (its coefficients seed every candidate);
        by default a coarse grid of offsets and widths.

    Returns
    -------
    CalPSF

    Raises
    ------
    ProfileFitError
        If no bin holds a source at S/N >= 3.
    """
    if start is None:
        lam = d.wavelength[d.usable]
        lam0 = float(0.5 * (lam.min() + lam.max()))
        lam_half = float(max(0.5 * (lam.max() - lam.min()), 1e-6))
        start = _grid_start(d, lam0, lam_half)
    snr = _snr_bins(start, d)
    good = snr >= _GOOD_BIN_SNR
    if good.sum() < 3:
        msg = f"no source found: {int(good.sum())} output bin(s) at S/N >= {_GOOD_BIN_SNR}"
        raise ProfileFitError(msg)
    in_good = (d.bins >= 0) & good[np.clip(d.bins, 0, None)] & d.usable
    cols = np.flatnonzero(in_good.any(axis=0))
    n = int(d.usable[:, cols].sum())
    fwhm_orders = _orders(fit_fwhm, fwhm_order, start=0)
    trace_orders = _orders(fit_trace, trace_order, start=0)
    first = "moffat" if kernel == "moffat" else "gaussian"
    best, choice = None, {}

    def consider(family: str, order: int, t_order: int) -> None:
        nonlocal best
        psf = _fit_one(d, cols, start, family, order, t_order)
        k = d.n_exp + order + 1 + t_order + (family == "moffat")
        bic = psf.chi2 + k * np.log(max(n, 2))
        choice[f"{family}_fwhm{order}_trace{t_order}"] = float(bic)
        if best is None or bic < best[0]:
            best = (bic, psf)

    for order in fwhm_orders:  # the FWHM degree is chosen with the first family, no trace
        consider(first, order, trace_orders[0])
    chosen = len(best[1].fwhm_coeffs) - 1
    for t_order in trace_orders[1:]:  # then the trace degree
        consider(first, chosen, t_order)
    if kernel == "auto":  # then the Moffat competes at those degrees
        consider("moffat", chosen, len(best[1].trace_coeffs))
    return CalPSF(**{**best[1].__dict__, "choice": choice, "n_pixels": n})


def _orders(flag: bool | str, order: int, *, start: int) -> tuple[int, ...]:
    """Degrees to try: all up to ``order`` (auto), only ``order`` (True) or none (False)."""
    if flag is True:
        return (order,)
    if flag is False:
        return (start,)
    return tuple(range(start, order + 1))


def _grid_start(d: CalFitData, lam0: float, lam_half: float) -> CalPSF:
    """Best common offset and constant FWHM (Gaussian) on a coarse grid."""
    step = max(1, d.data.shape[1] // 4000)
    cols = np.arange(0, d.data.shape[1], step)
    best = None
    for fwhm in (1.5, 2.5, 4.0):
        for offset in np.arange(-2.0, 2.01, 0.5):
            psf = CalPSF("gaussian", (offset,) * d.n_exp, (fwhm,), lam0, lam_half)
            chi2 = float(np.sum(_chi(psf, d, cols) ** 2))
            if best is None or chi2 < best[0]:
                best = (chi2, psf)
    return best[1]


def _fit_one(
    d: CalFitData, cols: np.ndarray, start: CalPSF, family: str, order: int, t_order: int
) -> CalPSF:
    """Least-squares fit of one candidate (offsets, FWHM and trace coefficients, Moffat index)."""
    n_exp = d.n_exp
    fwhm0 = [*start.fwhm_coeffs[: order + 1], *([0.0] * (order + 1 - len(start.fwhm_coeffs)))]
    trace0 = [*start.trace_coeffs[:t_order], *([0.0] * (t_order - len(start.trace_coeffs)))]
    x0 = [*start.offsets, *fwhm0, *trace0]
    lo = [o - _MAX_OFFSET for o in start.offsets] + [MIN_FWHM] + [-10.0] * order
    hi = [o + _MAX_OFFSET for o in start.offsets] + [15.0] + [10.0] * order
    lo, hi = lo + [-_MAX_OFFSET] * t_order, hi + [_MAX_OFFSET] * t_order
    if family == "moffat":
        alpha0 = start.alpha if start.kernel == "moffat" else 2.5
        x0, lo, hi = [*x0, alpha0], [*lo, 1.05], [*hi, 12.0]

    def build(theta: np.ndarray) -> CalPSF:
        coeffs = tuple(theta[n_exp : n_exp + order + 1])
        trace = tuple(theta[n_exp + order + 1 : n_exp + order + 1 + t_order])
        alpha = float(theta[-1]) if family == "moffat" else 2.5
        return CalPSF(
            family, tuple(theta[:n_exp]), coeffs, start.lam0, start.lam_half, alpha, trace
        )

    try:
        res = least_squares(
            lambda t: _chi(build(t), d, cols),
            np.asarray(x0, float),
            bounds=(lo, hi),
            x_scale="jac",
            tr_solver="lsmr",  # the exact solver's SVD of the tall Jacobian dominated the run
            max_nfev=200,
        )
    except ValueError as err:  # a degenerate problem (no pixel left) is a fit failure
        raise ProfileFitError(f"the joint profile fit failed: {err}") from err
    psf = build(res.x)
    return CalPSF(**{**psf.__dict__, "chi2": float(2.0 * res.cost)})
