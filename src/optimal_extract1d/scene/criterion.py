"""The one criterion every scene decision is made with, and its constants.

Candidates of the smooth scene choices (kernel family, background degree,
polynomial orders of the center and FWHM along the dispersion, `.choice`)
are scored by ``chi2_eff + k ln(n)`` (the Bayesian information criterion),
``k`` parameters fitted to ``n`` pixels, where ``chi2_eff`` weighs each
residual against the noise and the template error (`Criterion.chi2`).

Components (a further source, a negative nod copy, one half of a split
blend; `.sources`, `.pruning`) are discrete: one is added when it lowers the
chi2 by more than its cost (`Criterion.component_cost`), the stated
detection threshold squared plus the template-error term, and dropped (or a
split pair merged back) when it no longer does. The separate rules this
replaces (a minimum flux fraction of the main source, a S/N threshold per
component, a template-error charge within a fixed reach of the main source,
minimum separations per kind of component, a reduced-chi2 gate on the blend
test, a reach for merging a pair back) were all expressions of the same
trade-off, now made once.

What is left besides the criterion are the model's limits, not significance
thresholds: ``Criterion.resolution`` and ``Criterion.blend_reach`` (how close
components can be told apart, and where a blend is looked for as a split),
``Criterion.min_split_fwhm``, ``Criterion.edge_rows`` and
``Criterion.max_components``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.profile import PROFILE_ERROR

__all__ = ["CRITERION", "Criterion"]


@dataclass(frozen=True)
class Criterion:
    """The penalized criterion and its constants.

    Attributes
    ----------
    template_error : float
        Fractional accuracy of a PSF template: added, times the model, to
        the noise of every pixel in ``chi2_eff``.
    template_reach : float
        Half width (FWHM) of the envelope the template error is spread over
        around a source: PSF wings, where templates differ most, reach a few
        FWHM.
    nod_prior_snr : float
        S/N a negative nod copy needs where the exposure's nod pattern puts
        one (within a pixel): its cost is this squared instead of the
        detection threshold squared.
    resolution : float
        Components closer than this many FWHM are one component: their
        fluxes cannot be told apart.
    blend_reach : float
        A new component is looked for at least this many FWHM from the
        others; closer, two sources are a blend, found by splitting the
        source in two (where a wrong template's residuals cannot pose as
        companions: the two halves share its shape).
    min_split_fwhm : float
        A blend is split only into sources at least this wide (pixels);
        narrower ones are undersampled noise, cosmic-ray remnants or a
        curved trace's slice.
    edge_rows : float
        A positive component within this many pixels of the first or last
        valid row is a slit-edge artefact (partial coverage, bar shadow),
        not a source.
    max_components : int
        At most this many components besides the main source.
    focus_penalty : float
        Cost of a parameter judged by the flux's squared error instead of the
        model's parsimony (the focused information criterion of Claeskens &
        Hjort 2003, which for one parameter is the AIC's 2): a shape
        parameter that the data barely constrain but that moves the flux of
        every column alike (the share of a PSF halo's wings falling as
        x**-2 rather than x**-3, and the change of the halo's share with the
        wavelength, `.scene.halo`; a background's terms along the
        dispersion, `.pipeline.slit`). Left out wrongly, it biases
        the whole spectrum; kept, it adds its own variance; it is kept when
        its fit lowers the chi2 by more than this, where the flux's expected
        squared error is the lower with it.
    """

    template_error: float = PROFILE_ERROR
    template_reach: float = 3.0
    nod_prior_snr: float = 2.0
    resolution: float = 0.75
    blend_reach: float = 1.5
    min_split_fwhm: float = 1.0
    edge_rows: float = 2.0
    max_components: int = 6
    focus_penalty: float = 2.0

    def penalty(self, n_data: int) -> float:
        """Criterion cost of one smooth-model parameter: ``ln(n)``."""
        return float(np.log(max(n_data, 2)))

    def chi2(self, resid: np.ndarray, model: np.ndarray) -> np.ndarray:
        """``chi2_eff`` per profile from weighted residuals and the model in sigma units.

        Parameters
        ----------
        resid, model : ndarray, shape (n, n_prof)
            Residuals and model, both divided by the pixel's noise (0 where unused).
        """
        return np.sum(resid**2 / (1.0 + (self.template_error * model) ** 2), axis=0)

    def component_cost(
        self,
        threshold: float,
        *,
        offset: float,
        fwhm: float,
        source_snr: float,
        predicted_nod: bool = False,
    ) -> float:
        """Decrease of chi2 a component at ``offset`` pixels from a source must bring.

        The detection threshold squared (``nod_prior_snr`` squared for a nod
        copy where the nod pattern puts one), plus the template-error term:
        the chi2 a template right to ``template_error`` leaves around a source
        of S/N ``source_snr``, ``(template_error * source_snr)**2``, spread
        over a Lorentzian envelope ``1 / (1 + (offset / (template_reach *
        fwhm))**2)``, as a PSF's wings fall. A companion next to a bright
        source must be bright too; far from it, the threshold is all it pays.
        """
        snr = min(self.nod_prior_snr, threshold) if predicted_nod else threshold
        envelope = 1.0 / (1.0 + (offset / max(self.template_reach * fwhm, 1e-3)) ** 2)
        return float(snr**2 + (self.template_error * source_snr) ** 2 * envelope)


#: The criterion every scene decision uses.
CRITERION = Criterion()
