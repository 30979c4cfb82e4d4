import numpy as np
import pytest
from conftest import slit_data_from_sim

from optimal_extract1d.params import ExtractParams
from optimal_extract1d.pipeline.extraction import extract_slit
from optimal_extract1d.sim.simulate import simulate_slit


def _pulls(rng, n, params, var_scale=1.0, **kw):
    pulls, factors = [], []
    for _ in range(n):
        sim = simulate_slit(rng, n_disp=200, snr=30.0, fwhm=(2.0, 2.0), spectrum=np.ones(200), **kw)
        sd = slit_data_from_sim(sim)
        s = var_scale
        sd = slit_data_from_sim(
            sim,
            variance=sd.variance * s,
            var_poisson=sd.var_poisson * s,
            var_rnoise=sd.var_rnoise * s,
            var_flat=sd.var_flat * s,
        )
        (res,) = extract_slit(sd, ExtractParams(**params))
        pulls.append((res.flux - sim.flux) / res.error)
        factors.append(res.metadata.get("error_scale", {}).get("factor", 1.0))
    return np.std(np.concatenate(pulls)), np.mean(factors)


@pytest.mark.parametrize("bkg_order", [-1, 2])
def test_correlated_noise_gets_honest_error_bars(rng, bkg_order):
    raw, _ = _pulls(rng, 4, {"error_scale": "none", "bkg_order": bkg_order}, correlated=1.0)
    scaled, factor = _pulls(rng, 4, {"bkg_order": bkg_order}, correlated=1.0)
    assert raw > 1.3  # the propagated variance ignores the correlations
    assert 0.9 < scaled < 1.1
    assert factor > 1.3


def test_white_noise_keeps_its_error_bars(rng):
    scaled, factor = _pulls(rng, 4, {})
    assert abs(factor - 1) < 0.05
    assert 0.9 < scaled < 1.1


def test_a_wrong_variance_level_is_corrected(rng):
    scaled, factor = _pulls(rng, 3, {}, var_scale=0.25)  # VAR 4x too small
    assert factor == pytest.approx(2.0, rel=0.08)
    assert 0.9 < scaled < 1.1
