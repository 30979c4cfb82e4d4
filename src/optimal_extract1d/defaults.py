"""Recommended parameter values per instrument mode, shipped in ``reference_files/``.

The files are stpipe parameter files (ASDF, ``strun file.asdf input`` works
on them). `load_mode_defaults` picks the file for an exposure and returns
its parameters; the step uses them as the lowest configuration layer, so
any value a user sets wins.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import asdf

from .errors import ReferenceFileError
from .params import ExtractParams

__all__ = ["ModeDefaults", "load_mode_defaults", "mode_file_name", "REFERENCE_DIR"]

log = logging.getLogger(__name__)

REFERENCE_DIR = Path(str(resources.files("optimal_extract1d") / "reference_files"))
# (EXP_TYPE, grating or None) -> file stem; first match wins, None matches any grating.
_MODES = (
    ("NRS_MSASPEC", None, "nirspec_mos"),
    ("NRS_FIXEDSLIT", None, "nirspec_fs"),
    ("NRS_BRIGHTOBJ", None, "nirspec_fs"),
    ("MIR_LRS-FIXEDSLIT", None, "miri_lrs"),
    ("MIR_LRS-SLITLESS", None, "miri_lrs"),
)
_GENERIC = "generic"
_STEP_CLASS = "optimal_extract1d.step.OptimalExtract1dStep"


@dataclass(frozen=True)
class ModeDefaults:
    """Parameters read from one mode file.

    Attributes
    ----------
    mode : str
        File stem, e.g. ``"nirspec_mos"``.
    path : pathlib.Path
        The file read.
    parameters : dict
        Parameter name -> value (only names of `ExtractParams`).
    """

    mode: str
    path: Path
    parameters: dict[str, Any]


def mode_file_name(exp_type: str | None, grating: str | None) -> str:
    """File stem of the defaults for an EXP_TYPE and grating (``"generic"`` if none)."""
    for mode_exp, mode_grating, stem in _MODES:
        if exp_type == mode_exp and (mode_grating is None or grating == mode_grating):
            if (REFERENCE_DIR / f"{stem}.asdf").exists():
                return stem
    return _GENERIC


def load_mode_defaults(exp_type: str | None, grating: str | None = None) -> ModeDefaults:
    """Load the defaults for an exposure type.

    Parameters
    ----------
    exp_type : str or None
        EXP_TYPE of the input.
    grating : str or None
        GRATING of the input.

    Returns
    -------
    ModeDefaults

    Raises
    ------
    ReferenceFileError
        If the file is unreadable or holds an unknown parameter.
    """
    return _read(mode_file_name(exp_type, grating))


@cache
def _read(stem: str) -> ModeDefaults:
    path = REFERENCE_DIR / f"{stem}.asdf"
    try:
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            tree = dict(af.tree)
    except Exception as err:  # any reader failure is a bad reference file
        msg = f"cannot read mode defaults {path}: {type(err).__name__}: {err}"
        raise ReferenceFileError(msg) from err
    if tree.get("class") != _STEP_CLASS:
        msg = f"{path}: key 'class' is {tree.get('class')!r}, expected {_STEP_CLASS!r}"
        raise ReferenceFileError(msg)
    params = dict(tree.get("parameters") or {})
    known = {f.name for f in dataclasses.fields(ExtractParams)}
    unknown = sorted(set(params) - known)
    if unknown:
        msg = f"{path}: unknown parameter(s) {unknown} under 'parameters'"
        raise ReferenceFileError(msg)
    return ModeDefaults(stem, path, params)
