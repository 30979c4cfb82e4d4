import numpy as np
import pytest

from optimal_extract1d.sim.simulate import ResidualSky, simulate_slit

ARRAYS = ("data", "var_poisson", "var_rnoise", "var_flat", "wht", "true_variance", "true_profile")


def _reference_slit(**kw):
    return simulate_slit(
        np.random.default_rng(7),
        n_disp=120,
        snr=20.0,
        fwhm=(1.6, 3.2),
        curvature=1.0,
        background=0.05,
        nod_offsets=(-5.3, 5.3),
        nod_scale=0.5,
        cosmic_rays=5,
        poisson_from_data=True,
        **kw,
    )


def test_default_simulation_is_unchanged_by_the_sky_option():
    default = _reference_slit()
    # sums recorded before the residual sky existed (same seed, same arguments)
    recorded = {
        "data": 181.20861063404277,
        "var_poisson": 0.2604862599219726,
        "var_rnoise": 1.5926074755672617,
        "var_flat": 0.0018813220542233085,
        "true_variance": 1.9797279075297343,
    }
    for name, value in recorded.items():
        assert np.nansum(getattr(default, name)) == pytest.approx(value, rel=1e-12), name
    for other in (_reference_slit(sky=None), _reference_slit(sky=ResidualSky(level=0.0))):
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(other, name), getattr(default, name))


def test_residual_sky_adds_the_requested_level_and_slope():
    level, tilt, ripple = 0.02, 0.3, 0.5
    sky = ResidualSky(level=level, tilt=tilt, ripple=ripple, periods=1.5)
    sim = simulate_slit(
        np.random.default_rng(3), n_disp=400, snr=30.0, spectrum=np.ones(400), center=15.0, sky=sky
    )
    n_cross, n_disp = sim.data.shape
    expected = sky.image(n_cross, n_disp)
    t = np.arange(n_disp) / (n_disp - 1)
    along = 1.0 + ripple * np.sin(2.0 * np.pi * 1.5 * t)
    np.testing.assert_allclose(expected.mean(axis=0), level * along)
    # what the data hold besides the source, scaled by the ripple: level * (1 + tilt v) + noise
    residual = (sim.data - sim.flux[None, :] * sim.true_profile) / along[None, :]
    sigma = np.sqrt(sim.true_variance) / along[None, :]
    good = np.isfinite(residual)
    v = np.broadcast_to(np.linspace(-1.0, 1.0, n_cross)[:, None], residual.shape)
    w = 1.0 / sigma[good] ** 2
    design = np.stack([np.ones(w.size), v[good]], axis=1)
    normal = design.T @ (design * w[:, None])
    coeffs = np.linalg.solve(normal, design.T @ (w * residual[good]))
    errors = np.sqrt(np.diag(np.linalg.inv(normal)))
    assert abs(coeffs[0] - level) < 4 * errors[0]
    assert abs(coeffs[1] - level * tilt) < 4 * errors[1]
    assert errors[0] < 0.02 * level  # the check is sharp: the sky is well above the noise
    # the sky enters the variance the noise was drawn from, and the VAR arrays report it
    pulls = (
        (sim.data - sim.flux[None, :] * sim.true_profile - expected) / np.sqrt(sim.true_variance)
    )[good]
    assert np.std(pulls) == pytest.approx(1.0, abs=0.02)
    plain = simulate_slit(
        np.random.default_rng(3), n_disp=400, snr=30.0, spectrum=np.ones(400), center=15.0
    )
    off_source = good & (sim.true_profile < 1e-9)
    assert off_source.sum() > 1000
    assert np.all(plain.var_poisson[off_source] < 1e-3 * sim.var_poisson[off_source])
    total = sim.var_poisson + sim.var_rnoise + sim.var_flat
    np.testing.assert_allclose(total[good], sim.true_variance[good])


def test_nod_profiles_are_recorded():
    sim = simulate_slit(
        np.random.default_rng(1), n_disp=50, fwhm=(2.0, 2.0), center=15.0, nod_offsets=(-5.0, 5.0)
    )
    assert len(sim.nod_profiles) == 2
    for profile, offset in zip(sim.nod_profiles, (-5.0, 5.0), strict=True):
        np.testing.assert_allclose(profile.sum(axis=0), 1.0)
        rows = np.arange(sim.data.shape[0])[:, None]
        np.testing.assert_allclose((rows * profile).sum(axis=0), sim.center + offset, atol=0.05)
