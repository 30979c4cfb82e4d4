"""The scene of one slit: which sources, nod copies and background it holds, and their shape.

Owns the spatial model of a slit (`slitshape.spatial_model` and the
`slitshape.SlitShape` it returns): the kernel slice and its fit
(`spatial`), the search for further sources and negative nod copies
(`sources`, `components`, `pruning`), and the variation of FWHM and trace
along the dispersion (`trace`).

May import: `core`, `psf`, and the vocabulary (`errors`, `params`,
`results`, `slitdata`); no datamodels.
"""
