"""A Moffat the kernel slice chose, weighed again against the Gaussian over the whole slit.

The slice holds ~30 columns; a Moffat's index is one parameter more than a
Gaussian, and on a Gaussian source the slice's chi2 drops by more than its
cost ``ln n`` by chance in a few per cent of slits (3 of the 100 faint,
nodded Gaussian slits of ``benchmarks/speed.py``'s file, winning by 0.5 to
1.5). The index it then takes is what the noise made it, 1.0 to 1.6, and
the wings that index puts outside the core raise every column's flux by
10-28 %: a profile normalized over the slit with a share in wings the data
do not have. The bins along the dispersion (`.variation.vary_kernel`) hold
~15 times the slice's evidence. So where the slice chose a Moffat under
``kernel = "auto"`` and the Gaussian is among the families,
`gaussian_over_bins` fits a Gaussian to the same bins (its center and width
per bin, as the Moffat's; the nod copies' and further sources' offsets
refitted, one value each for the slit, as the halo's are, `.scene.halo`) and the
Moffat is kept only when its ``chi2_eff`` over the bins is the lower by
more than the criterion's cost of its index, ``ln n``, ``n`` the bins'
pixels (`.criterion.Criterion`). The mirror of the Moffat weighed over the
bins against a chosen Gaussian (`.scene.halo`'s rival).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import models

from ..core.horne import polynomial_basis
from ..psf.kernel import KernelFit, KernelTemplate, make_template
from ..psf.linear import valid_pixels
from . import trace
from .choice import score_fits
from .criterion import CRITERION
from .model import SceneSettings
from .variation import BinData

__all__ = ["FamilyEvidence", "gaussian_over_bins"]


@dataclass(frozen=True)
class FamilyEvidence:
    """The Moffat against the Gaussian over the bins.

    Attributes
    ----------
    alpha : float
        The Moffat's index (one value for the slit, as the bins fitted it).
    gain : float
        Its ``chi2_eff`` over the bins below the Gaussian's.
    cost : float
        What it had to gain: ``ln n`` for its index.
    n_pixels : int
        The bins' pixels.
    """

    alpha: float
    gain: float
    cost: float
    n_pixels: int

    @property
    def moffat_kept(self) -> bool:
        """Whether the Moffat's index paid for itself over the bins."""
        return self.gain > self.cost

    def to_meta(self) -> dict[str, Any]:
        """Plain values for ``model_choice.family_over_bins``."""
        return {
            "criterion": "chi2_eff + k ln(n) over the bins, k = the Moffat's index",
            "moffat_alpha": self.alpha,
            "chi2_gain": self.gain,
            "cost": self.cost,
            "n_pixels": self.n_pixels,
            "chosen": "moffat" if self.moffat_kept else "gaussian",
        }


def gaussian_over_bins(
    template: KernelTemplate, data: BinData, *, fit: KernelFit, settings: SceneSettings
) -> FamilyEvidence | None:
    """The chosen Moffat against a Gaussian fitted to the same bins.

    Parameters
    ----------
    template : KernelTemplate
        The chosen family, with the index the bins fitted.
    data : BinData
        The bins' profiles and ``template``'s fits to them.
    fit : KernelFit
        The slice fit: its center starts the bins, its components move with the source.
    settings : SceneSettings
        ``bkg_order`` (an integer, the slice's) and ``fit_trace``.

    Returns
    -------
    FamilyEvidence or None
        None when there is nothing to weigh: not a Moffat, fewer than two
        bins both fitted.
    """
    if type(template.model) is not models.Moffat1D or data.fits.chi2.size == 0:
        return None
    good = data.fits.good & np.isfinite(data.fits.chi2)
    if good.sum() < 2:
        return None
    # both families over the bins with the components' offsets refitted (one value each
    # for the slit): the slice's were fitted with the Moffat's shape, and off by up to
    # 0.4 px for a Gaussian's nod copies where the Moffat bent to take them
    refit = {
        "bkg_order": int(settings.bkg_order),
        "fit_center": bool(settings.fit_trace),
        "fit_offsets": bool(fit.offsets),
    }
    gaussian = make_template("gaussian")
    rival = data.refit(gaussian, fit, good, **refit)
    own = data.refit(template, fit, good, **refit) if fit.offsets else data.fits
    both = trace.common_bins(good, rival, own)
    if not trace.enough_common(both, good):
        return None
    basis = polynomial_basis(data.values.shape[0], int(settings.bkg_order))
    n_pixels = int(np.sum(valid_pixels(data.values[:, both], data.sigma[:, both])))

    def chi2_eff(shape: KernelTemplate, bins: trace.BinFits) -> float:
        at = np.asarray(bins.offsets or fit.offsets, float)
        return score_fits(
            shape, data.values, data.sigma, bins, both, offsets=at, basis=basis, extra={}
        )

    gain = chi2_eff(gaussian, rival) - chi2_eff(template, own)
    alpha = float(template.model.alpha.value)
    return FamilyEvidence(alpha, float(gain), CRITERION.penalty(n_pixels), n_pixels)
