"""Write the per-mode parameter files shipped in src/optimal_extract1d/reference_files/.

Run from the repository root: ``python scripts/make_mode_defaults.py``.
The files are stpipe parameter files (``strun file.asdf input`` works on them).
"""

from pathlib import Path

import asdf

OUT = Path(__file__).resolve().parents[1] / "src" / "optimal_extract1d" / "reference_files"
CLASS = "optimal_extract1d.step.OptimalExtract1dStep"

MODES = {
    "generic": {
        "description": "Generic slit spectra: Gaussian kernel, quadratic background.",
        "parameters": {"slice_width": 30, "kernel": "gaussian", "bkg_order": 2},
    },
}


def main() -> None:
    """Write every mode file."""
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, spec in MODES.items():
        tree = {
            "class": CLASS,
            "name": "optimal_extract_1d",
            "parameters": spec["parameters"],
            "meta": {"description": spec["description"], "mode": stem},
        }
        path = OUT / f"{stem}.asdf"
        asdf.AsdfFile(tree).write_to(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
