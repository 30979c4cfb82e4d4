"""Write the per-mode parameter files shipped in src/optimal_extract1d/reference_files/.

Run from the repository root after changing a value below:
``PYTHONPATH=src python scripts/make_mode_defaults.py``. The files are
stpipe parameter files (``strun file.asdf input`` works on them);
``tests/test_defaults.py`` fails when the shipped files differ from what
this script writes. The reasons for the values are in docs/modes.rst.

To add a parameter, add one line to ``PARAMETERS``: the parameter name and
the values of the modes that differ from ``generic``. ``generic`` itself
defaults to the step's spec default, so it always matches the step.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import asdf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optimal_extract1d.params import ExtractParams  # noqa: E402

OUT = ROOT / "src" / "optimal_extract1d" / "reference_files"
CLASS = "optimal_extract1d.step.OptimalExtract1dStep"

# File stem -> one-line description (which inputs it serves).
MODES = {
    "generic": "Any slit spectrum without a dedicated mode: the step's spec defaults.",
    "nirspec_mos": "NIRSpec MOS (NRS_MSASPEC), gratings.",
    "nirspec_mos_prism": "NIRSpec MOS (NRS_MSASPEC), PRISM/CLEAR.",
    "nirspec_fs": "NIRSpec fixed slits (NRS_FIXEDSLIT), gratings.",
    "nirspec_fs_prism": "NIRSpec fixed slits (NRS_FIXEDSLIT), PRISM/CLEAR.",
    "miri_lrs": "MIRI LRS fixed slit (dispersion along y).",
}

# Modes whose s2d normally arrives nod-subtracted: negative copies of the trace in
# the slit and a residual sky (docs/modes.rst). Their background is "auto" like
# everyone's: none, a constant or a slope, chosen per slit with the nod copies modelled.
NODDED = ("nirspec_mos", "nirspec_mos_prism", "nirspec_fs", "nirspec_fs_prism", "miri_lrs")

# Parameter -> {mode: value} for the modes that differ from generic.
# One line per parameter; generic = the step's spec default unless given here.
PARAMETERS: dict[str, dict[str, Any]] = {
    "slice_width": {"nirspec_mos": 100, "nirspec_fs": 100},
    "kernel": {},
    "fit_fwhm": {},
    "fit_trace": {},
    "bkg_order": {},
}


def mode_parameters(stem: str) -> dict[str, Any]:
    """Parameter values of one mode (every name in PARAMETERS), checked by ExtractParams."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExtractParams)}
    values = {}
    for name, per_mode in PARAMETERS.items():
        unknown = set(per_mode) - set(MODES)
        if unknown:
            raise ValueError(f"PARAMETERS[{name!r}] names unknown mode(s) {sorted(unknown)}")
        values[name] = per_mode.get(stem, per_mode.get("generic", defaults[name]))
    ExtractParams(**values)  # raises on an unknown name or an invalid value
    return values


def mode_tree(stem: str) -> dict[str, Any]:
    """The ASDF tree of one mode file."""
    return {
        "class": CLASS,
        "name": "optimal_extract_1d",
        "parameters": mode_parameters(stem),
        "meta": {"description": MODES[stem], "mode": stem},
    }


def main(out: Path = OUT) -> None:
    """Write every mode file into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for stem in MODES:
        path = out / f"{stem}.asdf"
        asdf.AsdfFile(mode_tree(stem)).write_to(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
