"""The per-slit loop and what a failure means.

Owns `extraction.extract` (every slit of an opened input, each read once) and
`extraction.extract_slit` (one slit: scene, Horne's iteration, refit round,
error scale), `assemble` (a spectrum's arrays and metadata) and `calpath`
(the unresampled exposures of every source, combined in 1-D).

May import: `.io`, `.scene`, `.psf`, `.core` and the vocabulary. Never stpipe or
`.cli`. It is the only layer that catches the package's errors.
"""
