"""Horne (1986) optimal extraction of JWST slit spectra as an stpipe step.

The package reads top-down, one layer per folder; each layer imports only the
ones below it (``tests/test_architecture.py`` enforces it):

* `step`, `spec3`: the stpipe shell, the only modules that know stpipe;
* `cli`: the ``optimal-extract1d`` command (demo, simulate, batch);
* `pipeline`: the per-slit loop and what a failure means;
* `io`: datamodels in (`io.slits`) and out (`io.x1d`), mode defaults, PSF
  files, diagnostics;
* `scene`: which sources, nod copies and background a slit holds, and their shape;
* `psf`: kernel templates and their fits;
* `core`: Horne's sums, iteration, variance and error scale;
* the vocabulary shared by all: `errors`, `params`, `results`, `slitdata`;
* `sim`: simulated slits with known truth.

``OptimalExtract1dStep`` and ``OptimalSpec3Pipeline`` are imported lazily, so
the pure layers can be used without loading jwst.
"""

from importlib import import_module

__all__ = ["OptimalExtract1dStep", "OptimalSpec3Pipeline", "__version__"]

__version__ = "0.1.0"

_LAZY = {
    "OptimalExtract1dStep": "optimal_extract1d.step",
    "OptimalSpec3Pipeline": "optimal_extract1d.spec3",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optimal_extract1d' has no attribute {name!r}")
