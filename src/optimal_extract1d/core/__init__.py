"""The numerical core: Horne's sums on given profiles, and what surrounds them.

Owns the column sums and their iteration (`horne`, `iteration`), the Poisson
variance model (`variance`), the residual error scale (`errorscale`), the
flux error of a PSF shape the slit set (`shapeerror`), profile
normalisation (`profile`), Horne's empirical profile (`empirical`), column
coadds (`coadd`), the cosmic-ray screen of the fits (`outliers`), the
stacked linear solves every fit goes through (`linalg`), and the cal path's
sums over the native pixels of several exposures (`calsums`).

May import: numpy, scipy, astropy, and the package's vocabulary (`.errors`,
`.results`, `.slitdata`). Nothing else of the package, and no datamodels.
"""
