"""Sphinx configuration for the optimal-extract1d documentation."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))  # document this checkout

project = "optimal-extract1d"
author = "optimal-extract1d developers"
copyright = "2026, optimal-extract1d developers"  # noqa: A001
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "optimal_docs",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# `name` is a Python reference, and every reference must resolve (-W makes a
# stale one fail the build). Parameter names, metadata keys and array
# attributes are ``literals``.
default_role = "py:obj"
nitpicky = True
# The words of numpy type descriptions ("ndarray of bool, shape (n_cross,
# n_disp), optional"): array vocabulary and dimension names. In a type field
# they stay text (docs/_ext/optimal_docs.py); references elsewhere are checked.
optimal_type_words = (
    # numpy and numpydoc vocabulary ("mapping of str to ndarray")
    *"ndarray shape optional to sequence mapping callable datamodel path uint32".split(),
    # dimension names in shapes ("shape (n_comp - 1,)", "(n_disp, order + 1)")
    *"n_cross n_disp n_prof n_comp n_bins n_wave n_offset n_rows n_cols n m k order".split(),
    *"n_exp n_pix".split(),  # the cal path's stacked pixels
    *"n_par n_local".split(),  # shape parameters shared by a slit, and free per bin
)
# No intersphinx offline: names outside the package cannot resolve.
nitpick_ignore = [
    ("py:class", "numpy.random.Generator"),
    ("py:class", "os.PathLike"),
    ("py:class", "pathlib.Path"),
    ("py:class", "configobj.ConfigObj"),
    ("py:class", "gwcs.WCS"),
    ("py:class", "matplotlib.figure.Figure"),
    ("py:class", "stdatamodels.jwst.datamodels.ImageModel"),
    ("py:class", "stdatamodels.jwst.datamodels.MultiSpecModel"),
    ("py:class", "ModelContainer"),
    ("py:class", "SlitModel"),
    ("py:class", "astropy.modeling.Fittable1DModel"),
    ("py:obj", "astropy.modeling.Parameter"),
    ("py:obj", "numpy.nanmedian"),
    ("py:obj", "numpy.add.reduceat"),
    ("py:obj", "concurrent.futures"),
]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
