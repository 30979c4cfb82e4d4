import numpy as np

from optimal_extract1d.core.variance import remodel_poisson


def test_poisson_variance_is_predicted_from_the_model(rng):
    n_cross, n_disp = 21, 200
    y = np.arange(n_cross)[:, None]
    model = 50.0 * np.exp(-0.5 * ((y - 10) / 1.2) ** 2) * np.ones((1, n_disp))
    sky = np.linspace(1.0, 3.0, n_disp)[None, :]
    k = 0.02
    noisy = np.clip(model + sky + rng.normal(0, 2.0, model.shape), 0, None)
    var_poisson = k * noisy  # pipeline-like: from the measured counts
    out = remodel_poisson(var_poisson, model, np.ones(model.shape, bool))
    assert out.applied and abs(out.scale - k) / k < 0.05
    expected = k * (model + sky)
    assert np.median(np.abs(out.var_poisson / expected - 1)) < 0.05
    # the modelled variance no longer follows the noise of the data
    resid = noisy - (model + sky)
    assert abs(np.corrcoef(out.var_poisson.ravel(), resid.ravel())[0, 1]) < 0.05


def test_no_relation_keeps_the_input(rng):
    model = rng.normal(0, 1, (11, 50))
    vp = rng.uniform(1, 2, (11, 50))
    out = remodel_poisson(vp, model, np.ones(vp.shape, bool))
    assert not out.applied and np.isnan(out.scale)
    assert out.var_poisson is vp
