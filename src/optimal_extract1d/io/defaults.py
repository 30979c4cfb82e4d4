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

from ..errors import ParameterError, ReferenceFileError
from ..params import ExtractParams

__all__ = [
    "ModeDefaults",
    "load_mode_defaults",
    "mode_file_name",
    "mode_record",
    "read_mode_file",
    "MODE_STEMS",
    "REFERENCE_DIR",
]

log = logging.getLogger(__name__)

#: The folder of the mode files (and the example PSF) shipped with the package.
REFERENCE_DIR = Path(str(resources.files("optimal_extract1d") / "reference_files"))
# (EXP_TYPE, grating or None) -> file stem; first match wins, None matches any grating.
# The reasons for each mode's values are in docs/modes.rst.
_MODES = (
    ("NRS_MSASPEC", "PRISM", "nirspec_mos_prism"),
    ("NRS_MSASPEC", None, "nirspec_mos"),
    ("NRS_FIXEDSLIT", "PRISM", "nirspec_fs_prism"),
    ("NRS_FIXEDSLIT", None, "nirspec_fs"),
    ("MIR_LRS-FIXEDSLIT", None, "miri_lrs"),
)
# Not listed, so generic: NRS_BRIGHTOBJ and MIR_LRS-SLITLESS are not nodded, their
# sky is still in the data and needs the fitted background.
_GENERIC = "generic"
#: File stems of the shipped mode files, the generic one first.
MODE_STEMS = (_GENERIC, *dict.fromkeys(stem for _, _, stem in _MODES))
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
        Parameter name -> value (only names of `.ExtractParams`).
    """

    mode: str
    path: Path
    parameters: dict[str, Any]


def mode_file_name(exp_type: str | None, grating: str | None) -> str:
    """File stem of the defaults for an EXP_TYPE and grating (``"generic"`` if none)."""
    for mode_exp, mode_grating, stem in _MODES:
        if exp_type == mode_exp and (mode_grating is None or grating == mode_grating):
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
    return read_mode_file(REFERENCE_DIR / f"{stem}.asdf")


def read_mode_file(path: Path) -> ModeDefaults:
    """Read and check one mode file.

    Parameters
    ----------
    path : pathlib.Path
        An stpipe parameter file of `.OptimalExtract1dStep` (ASDF).

    Returns
    -------
    ModeDefaults

    Raises
    ------
    ReferenceFileError
        If the file is unreadable, is for another step class, or holds an
        unknown parameter or an invalid value.
    """
    path = Path(path)
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
    try:
        ExtractParams(**params)
    except ParameterError as err:
        msg = f"{path}: invalid value under 'parameters': {err}"
        raise ReferenceFileError(msg) from err
    return ModeDefaults(path.stem, path, params)


def mode_record(exp_type: str | None, grating: str | None, used: dict[str, Any]) -> dict[str, Any]:
    """Which mode matches the input, its recommended values, and where the run differed.

    Parameters
    ----------
    exp_type, grating : str or None
        EXP_TYPE and GRATING of the input.
    used : dict
        The parameter values the run used.

    Returns
    -------
    dict
        ``mode`` (file stem), ``mode_file``, ``mode_parameters`` (the mode's
        values) and ``differs_from_mode`` (names whose used value is not the
        mode's: set by the user, a parameter file, or a run without the
        step's configuration layers).
    """
    defaults = load_mode_defaults(exp_type, grating)
    differs = sorted(k for k, v in defaults.parameters.items() if used.get(k) != v)
    if differs:
        log.info(
            "Mode %s (EXP_TYPE %s, GRATING %s); not its default: %s",
            defaults.mode,
            exp_type,
            grating,
            ", ".join(f"{k}={used.get(k)!r} (mode {defaults.parameters[k]!r})" for k in differs),
        )
    else:
        log.info(
            "Mode %s (EXP_TYPE %s, GRATING %s); all its defaults used",
            defaults.mode,
            exp_type,
            grating,
        )
    return {
        "mode": defaults.mode,
        "mode_file": defaults.path.name,
        "mode_parameters": dict(defaults.parameters),
        "differs_from_mode": differs,
    }
