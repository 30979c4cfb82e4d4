"""PSF templates and their fits to cross-dispersion profiles.

Owns the kernel templates (`kernel`: Gaussian, Moffat, any astropy 1-D model),
their pixel-integrated evaluation (`evaluate`), the linear solve of fluxes
and background for fixed shapes (`linear`), the vectorized
Levenberg-Marquardt fitter (`lm`), the fits of one or many profiles with
their linear parts (`profilefit`), the tabulated PSF model (`tabulated`)
and profiles at scattered pixels for the cal path (`pointwise`).

May import: `.core` and the vocabulary (`.errors`, `.results`, `.slitdata`); no
datamodels.
"""
