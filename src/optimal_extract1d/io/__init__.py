"""The datamodel boundary: everything that reads or writes files.

Owns opening the input (`inputs`), reading a slit into a `.SlitData`
(`slits`, `inputvariance`, `nods`), reading unresampled cal exposures into
`.CalExposure` (`calinputs`), the mode defaults shipped in
``reference_files/`` (`defaults`), PSF reference files (`psfref`), the x1d
product (`x1d`, `specwcs`) and the diagnostic files and plots
(`diagnostics`, `plotting`).

May import: stdatamodels, gwcs, asdf, matplotlib; the vocabulary and the pure
layers (`.core`, `.psf`, `.scene`). Never `.pipeline`, the stpipe shell or `.cli`.
"""
