"""Simulated slits with known truth, for the demo, tests and benchmarks.

Owns the simulator of one resampled slit as arrays (`simulate`) and its
packaging as jwst datamodels with a WCS (`models`).

May import: the vocabulary, `.psf` (tabulated PSFs) and stdatamodels/gwcs (in
`models` only). Never `.pipeline`, the stpipe shell or `.cli`.
"""
