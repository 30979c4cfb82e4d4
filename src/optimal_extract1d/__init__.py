"""Horne (1986) optimal extraction of JWST slit spectra as an stpipe step.

``OptimalExtract1dStep`` and ``OptimalSpec3Pipeline`` are imported lazily, so the pure modules
(`horne`, `kernel`, `profile`, ...) can be used without loading jwst.
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
