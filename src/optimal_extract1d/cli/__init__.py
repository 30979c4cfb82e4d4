"""The ``optimal-extract1d`` command: ``demo``, ``simulate``, ``batch``.

Owns the console script (`main`), batch runs over many files (`batch`) and
the demo (`demo`). May import anything of the package.
"""
