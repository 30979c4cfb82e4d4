"""Shared fixtures: synthetic slits from `optimal_extract1d.sim.simulate`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from optimal_extract1d.results import FluxUnits
from optimal_extract1d.sim.simulate import simulate_slit
from optimal_extract1d.slitdata import SlitData

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ceers-933"
if "OPTIMAL_EXTRACT1D_SHARED" in os.environ:
    SHARED_DATA = Path(os.environ["OPTIMAL_EXTRACT1D_SHARED"]) / "data" / "ceers-933"


# Hypothesis profiles (select with HYPOTHESIS_PROFILE=...). "ci", the default, runs
# 1000 examples per core property (tests/test_fuzz.py scales the slow end-to-end
# properties down from this) and keeps the whole suite within a couple of minutes
# on 2 cores; "dev" is for quick local runs, "thorough" for a long hunt.
_FUZZ = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=1000, **_FUZZ)
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
