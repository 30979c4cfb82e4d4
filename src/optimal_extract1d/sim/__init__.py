"""Simulated slits with known truth, for the demo, tests and benchmarks.

Owns the simulator of one resampled slit as arrays (`simulate`) and its
packaging as jwst datamodels with a WCS (`models`), and the simulator of
unresampled nod exposures (`calsim`) with its datamodels (`calmodels`).

May import: the vocabulary, `.psf` (tabulated PSFs, pixel profiles) and
stdatamodels/gwcs (in `models` and `calmodels` only). Never `.pipeline`, the stpipe shell or `.cli`.
"""
