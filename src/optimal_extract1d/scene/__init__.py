"""The scene of one slit: which sources, nod copies and background it holds, and their shape.

Owns `model.SceneModel` (template, components, background, center and FWHM
per column, profiles) with the `model.SceneSettings` it is built with, and
the code that builds it: `fit.fit_scene` (the entry point: kernel slice and
its fit), `sources`, `components` and `pruning` (further sources and negative
nod copies), `variation` and `trace` (FWHM and center along the dispersion),
`choice` (the ``auto`` choices of kernel, background and orders), `binsky`
(a sky the slice missed, weighed over the bins), `halo` (the core + halo
family, weighed over the bins), `family` (a Moffat the slice chose, weighed
against the Gaussian over the bins), `nodbins` (predicted nod copies the
slice could not afford, weighed over the bins), `shape` (which of its parameters the slit
set, for their flux error), `criterion`,
the one criterion every scene decision is made with, `position`, where the
slit's metadata put the source, and `calfit`, the joint profile of the cal
exposures of a source.

May import: `.core`, `.psf`, and the vocabulary (`.errors`, `.results`,
`.slitdata`); no datamodels, and not the run parameters (`.params`): the
pipeline hands it a `model.SceneSettings`.
"""
