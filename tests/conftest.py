"""Shared fixtures and helpers: synthetic slits, profiles, offline ``strun`` runs, tolerances."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from optimal_extract1d.core.horne import extract_columns, polynomial_basis
from optimal_extract1d.core.profile import normalize_profile
from optimal_extract1d.results import FluxUnits
from optimal_extract1d.sim.simulate import ResidualSky, simulate_slit
from optimal_extract1d.slitdata import SlitData

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ceers-933"
if "OPTIMAL_EXTRACT1D_SHARED" in os.environ:
    SHARED_DATA = Path(os.environ["OPTIMAL_EXTRACT1D_SHARED"]) / "data" / "ceers-933"


# Hypothesis profiles (select with HYPOTHESIS_PROFILE=...). "ci", the default, runs
# 300 examples per core property (tests/test_fuzz.py scales the slow end-to-end
# properties down from this), about 8 s of the suite on 2 cores; the heavy run of
# CI (pytest -m heavy) repeats the properties at 2000 examples
# (test_fuzz.py::test_properties_hold_over_many_examples); "dev" is for quick local
# runs, "thorough" for a long hunt.
_FUZZ = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=300, **_FUZZ)
settings.register_profile("dev", max_examples=100, **_FUZZ)
settings.register_profile("thorough", max_examples=20000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def slit_data_from_sim(sim, name="sim", **overrides) -> SlitData:
    """A `SlitData` holding a simulated slit (identity units)."""
    lam = np.broadcast_to(sim.wavelength, sim.data.shape).copy()
    zeros = np.zeros_like(sim.data)
    fields = dict(
        name=name,
        data=sim.data.copy(),
        variance=sim.var_poisson + sim.var_rnoise + sim.var_flat,
        var_poisson=sim.var_poisson.copy(),
        var_rnoise=sim.var_rnoise.copy(),
        var_flat=sim.var_flat.copy(),
        mask=~np.isfinite(sim.data),
        wavelength=lam,
        ra=zeros,
        dec=zeros.copy(),
        disp_axis=1,
        units=FluxUnits(1.0, "MJy/sr", 1.0, 1.0, "MJy/sr"),
        variance_source="var",
        attributes={},
    )
    fields.update(overrides)
    return SlitData(**fields)


@pytest.fixture
def flat_sim(rng):
    """A slit with constant FWHM 2 px, flat spectrum, column S/N 50."""
    return simulate_slit(rng, n_disp=120, snr=50.0, fwhm=(2.0, 2.0), spectrum=np.ones(120))


def curved_widening_slit(rng, *, n_disp, snr, **overrides):
    """A slit whose FWHM doubles along the dispersion, on a curved trace.

    FWHM 1.6 -> 3.2 px, trace curvature 0.8 px and slope 0.4 px (`simulate_slit`'s
    ``u`` terms), flat spectrum; ``overrides`` go to `simulate_slit` and win
    over these.
    """
    kwargs = dict(fwhm=(1.6, 3.2), curvature=0.8, slope=0.4, spectrum=np.ones(n_disp))
    kwargs.update(overrides)
    return simulate_slit(rng, n_disp=n_disp, snr=snr, **kwargs)


@pytest.fixture
def curved_widening(rng):
    """Factory of `curved_widening_slit` slits drawn from the test's `rng`."""

    def make(*, n_disp, snr, **overrides):
        return curved_widening_slit(rng, n_disp=n_disp, snr=snr, **overrides)

    return make


def sky_slits(rng, n, *, level, snr, fwhm=(1.6, 3.2), ripple=0.5, periods=1.5, **kwargs):
    """``n`` flat-spectrum slits of 300 columns under a residual sky, and that sky.

    The sky is ``level`` per pixel, sloped by 30 % across the slit and rippled
    by ``ripple`` over ``periods`` along it; ``kwargs`` go to `simulate_slit`.
    """
    sky = ResidualSky(level=level, tilt=0.3, ripple=ripple, periods=periods)
    sims = [
        simulate_slit(rng, n_disp=300, snr=snr, fwhm=fwhm, spectrum=np.ones(300), sky=sky, **kwargs)
        for _ in range(n)
    ]
    return sims, sky


def gaussian_profile(n_cross, n_disp, center=10.0, sigma=1.2):
    """Normalized Gaussian profile (sampled at the pixel centres), the same in every column."""
    y = np.arange(n_cross)[:, None]
    raw = np.exp(-0.5 * ((y - center) / sigma) ** 2) * np.ones((1, n_disp))
    return normalize_profile(raw)


@pytest.fixture
def strun(tmp_path):
    """Run ``strun ARGS`` in ``tmp_path`` as a user with no CRDS server and an empty cache.

    Returns a function ``run(*args, timeout=300)`` giving the `subprocess.CompletedProcess`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRDS", "STPIPE"))}
    env.update(CRDS_SERVER_URL="https://127.0.0.1:9", CRDS_PATH=str(tmp_path / "crds"))
    exe = os.path.join(os.path.dirname(sys.executable), "strun")

    def run(*args, timeout=300):
        return subprocess.run(
            [exe, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run


def horne_variance(sim, bkg_order=2):
    """Per-column variance of Horne's flux given the true profile and variance.

    The Cramer-Rao bound of a slit's column fluxes with a polynomial background of
    degree ``bkg_order`` fitted along (-1 = none); over the simulator's S/N it is
    1.05 (NaN border rows) to 1.3 (quadratic background under a wide profile).
    """
    mask = ~np.isfinite(sim.data)
    out = extract_columns(
        np.where(mask, np.nan, sim.flux * sim.true_profile),
        sim.true_variance,
        sim.true_profile,
        mask=mask,
        bkg_basis=polynomial_basis(sim.data.shape[0], bkg_order),
    )
    return out.variance


# Standard error of the median of n normal values, in units of sigma / sqrt(n).
MEDIAN_SE = np.sqrt(np.pi / 2)


def median_ratio_tolerance(sim, *, bkg_order=2, columns=slice(None), n_sigma=5.0):
    """Bound on ``|median(flux / truth) - 1|`` over the ``columns`` of a simulated slit.

    Each column's ratio scatters by ``s_i = sqrt(horne_variance) / flux``; the
    median of n of them by ``MEDIAN_SE * rms(s_i) / sqrt(n)``. Returns ``n_sigma``
    of that, e.g. 5 x 1.2533 x 1.16 / 50 / sqrt(100) = 0.0145 for 100 columns at
    S/N 50 with a quadratic background.
    """
    rel = np.sqrt(horne_variance(sim, bkg_order)[columns]) / sim.flux[columns]
    return n_sigma * MEDIAN_SE * np.sqrt(np.mean(rel**2)) / np.sqrt(rel.size)


def centroid_tolerance(fwhm, snr, *, n_sigma=5.0):
    """Bound on the error of a fitted source centre (pixels): ``n_sigma`` standard errors.

    A Gaussian profile of width ``s = fwhm / 2.3548`` seen at (optimal) S/N ``snr``
    over read noise has a centre with standard error ``sqrt(2) s / snr`` (its
    Cramer-Rao bound; smaller by sqrt(2) where the source's own Poisson noise
    dominates). For a kernel fitted to a slice of ``w`` columns, ``snr`` is the
    column S/N times sqrt(w).
    """
    return n_sigma * np.sqrt(2.0) * fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / snr


@pytest.fixture(scope="session")
def ceers_s2d(tmp_path_factory):
    """The real CEERS 933 s2d (nod-subtracted cutouts through jwst's ResampleSpecStep),
    built once per test session; skips when ../shared is absent (see tests/ceers.py)."""
    from ceers import NOD_FILES, build_ceers_s2d

    if len(NOD_FILES) != 3:
        pytest.skip("../shared CEERS data absent")
    return build_ceers_s2d(tmp_path_factory.mktemp("ceers_s2d"))
