"""Write the example PSF reference file shipped in src/optimal_extract1d/reference_files/.

Run from the repository root: ``PYTHONPATH=src python scripts/make_example_psf.py``.
``tests/test_psfref.py`` fails when the shipped file differs from what this
script writes.

The file, ``example_psf_nirspec_prism.fits``, is a jwst ``SpecPsfModel`` (one
aperture, ``ANY``) with NIRSpec PRISM-like cross-dispersion profiles on s2d
pixels of 0.1": a Gaussian core whose FWHM grows from the optics' 1.3 pixels
with the diffraction limit (1.03 λ/D, D = 6.5 m) plus broad wings (a Moffat
profile of index 1.5, whose flux share grows from 8 % to 14 % with
wavelength), at 48 wavelengths from 0.6 to 5.3 µm, sampled 5 times per pixel
over ±15 pixels. The profiles are *effective* ones: the PSF integrated over a
pixel (analytically), as jwst samples these files at the pixel centers.

It is an illustration, not a calibration: for science make one from STPSF
(see docs/psf.rst) or from bright stars observed in the same mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.special import erf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optimal_extract1d.io.psfref import write_psf_file  # noqa: E402

OUT = ROOT / "src" / "optimal_extract1d" / "reference_files" / "example_psf_nirspec_prism.fits"
SUBPIX = 5
HALF_WIDTH = 15  # pixels each side of the trace
WAVELENGTH = np.geomspace(0.6, 5.3, 48)  # microns
PIXEL_ARCSEC = 0.1
OPTICS_FWHM = 1.3  # pixels: the core FWHM without diffraction
WING_ALPHA = 1.5  # Moffat index of the wings (1-D wings of an Airy-like PSF fall ~ x^-3)


def core_fwhm(lam: np.ndarray) -> np.ndarray:
    """FWHM (pixels) of the Gaussian core: optics and diffraction in quadrature."""
    diffraction = 1.03 * lam * 1e-6 / 6.5 * 206265.0 / PIXEL_ARCSEC
    return np.hypot(OPTICS_FWHM, diffraction)


def wing_fraction(lam: np.ndarray) -> np.ndarray:
    """Share of the flux in the wings."""
    return 0.08 + 0.06 * (lam - 0.6) / 4.7


def _cdf(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Cumulative cross-dispersion PSF (core + wings) at offsets x (pixels)."""
    sigma = core_fwhm(lam) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    core = 0.5 * (1.0 + erf(x / (np.sqrt(2.0) * sigma)))
    gamma = 1.5 * core_fwhm(lam)
    u = x / gamma
    wings = 0.5 * (1.0 + u / np.sqrt(1.0 + u**2))  # Moffat index 1.5, exactly
    f = wing_fraction(lam)
    return (1.0 - f) * core + f * wings


def effective_profiles() -> tuple[np.ndarray, np.ndarray]:
    """Offsets (pixels) and effective profiles ``(n_offset, n_wave)``, unit integral."""
    offsets = np.arange(-HALF_WIDTH * SUBPIX, HALF_WIDTH * SUBPIX + 1) / SUBPIX
    x, lam = offsets[:, None], WAVELENGTH[None, :]
    profiles = _cdf(x + 0.5, lam) - _cdf(x - 0.5, lam)  # integrated over one pixel
    return offsets, profiles / (profiles.sum(axis=0) / SUBPIX)


def main(out: Path = OUT) -> Path:
    """Write the example file to ``out``."""
    offsets, profiles = effective_profiles()
    path = write_psf_file(
        out,
        profiles,
        WAVELENGTH,
        subpix=SUBPIX,
        center=HALF_WIDTH * SUBPIX,
        description="Example NIRSpec PRISM-like cross-dispersion PSF (core + wings), "
        "made by scripts/make_example_psf.py",
    )
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return path


if __name__ == "__main__":
    main()
