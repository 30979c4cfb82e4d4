"""``optimal-extract1d params FILE``: the parameters a run on FILE would use, and their origin.

``strun --help`` shows the spec defaults only; a run replaces them with the
mode defaults of the input (``reference_files/``) and then with the user's
values. This command builds the configuration exactly as a run does
(`.OptimalExtract1dStep.run_parameters`) and says, for every parameter,
which layer its value comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..io.defaults import load_mode_defaults

__all__ = ["EffectiveParameter", "EffectiveParameters", "effective_parameters", "format_parameters"]

#: Where a value comes from: the user, the input's mode file, the step's spec.
SOURCES = ("user", "mode", "spec default")


@dataclass(frozen=True)
class EffectiveParameter:
    """One parameter of a run.

    Attributes
    ----------
    name : str
        Parameter name (as in the step's spec).
    value : object
        The value the run uses.
    source : str
        ``"user"``, ``"mode"`` (the input's mode file) or ``"spec default"``.
    """

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class EffectiveParameters:
    """The parameters of a run on one file.

    Attributes
    ----------
    path : str
        The input file.
    exp_type, grating : str or None
        EXP_TYPE and GRATING of the input, which choose the mode.
    mode : str
        Mode file stem, e.g. ``"nirspec_mos_prism"``.
    mode_file : str
        Mode file name in ``reference_files/``.
    parameters : tuple of EffectiveParameter
        Every parameter of the step, in spec order.
    """

    path: str
    exp_type: str | None
    grating: str | None
    mode: str
    mode_file: str
    parameters: tuple[EffectiveParameter, ...]


def effective_parameters(path: str | os.PathLike, values: dict[str, str]) -> EffectiveParameters:
    """The parameters a run on ``path`` with the user's ``values`` would use.

    Parameters
    ----------
    path : str or os.PathLike
        The input s2d file.
    values : dict
        Parameter name -> value as typed on the command line.

    Returns
    -------
    EffectiveParameters

    Raises
    ------
    InputError
        If the file does not exist.
    ParameterError
        If a name or value is not accepted (the message says what is).
    """
    from ..step import OptimalExtract1dStep

    keys = OptimalExtract1dStep.input_mode_keys(path)
    exp_type, grating = keys.get("meta.exposure.type"), keys.get("meta.instrument.grating")
    mode = load_mode_defaults(exp_type, grating)
    used = OptimalExtract1dStep.run_parameters(path, values)
    rows = []
    for name, value in used.items():
        if name in values:
            source = "user"
        elif name in mode.parameters:
            source = "mode"
        else:
            source = "spec default"
        rows.append(EffectiveParameter(name, value, source))
    return EffectiveParameters(
        os.fspath(path), exp_type, grating, mode.mode, mode.path.name, tuple(rows)
    )


def format_parameters(effective: EffectiveParameters) -> str:
    """The parameters as a table: name, value (as typed on a command line), source."""
    lines = [
        f"Parameters of a run on {effective.path} (EXP_TYPE {effective.exp_type}, "
        f"GRATING {effective.grating}; mode {effective.mode}, {effective.mode_file}):",
    ]
    width = max(len(p.name) for p in effective.parameters)
    spelled = [_spelled(p.value) for p in effective.parameters]
    value_width = max(len(v) for v in spelled)
    for p, value in zip(effective.parameters, spelled, strict=True):
        lines.append(f"  {p.name:<{width}}  {value:<{value_width}}  {p.source}")
    counts = {s: sum(p.source == s for p in effective.parameters) for s in SOURCES}
    lines.append(", ".join(f"{n} from {s}" for s, n in counts.items()))
    return "\n".join(lines)


def _spelled(value: Any) -> str:
    """A value as it would be typed after ``--name=`` (lists comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
