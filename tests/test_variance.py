import numpy as np

from optimal_extract1d.core.variance import neighbour_variance, remodel_poisson


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


def test_neighbour_variance_holds_no_pixel_of_its_own(rng):
    """Each pixel's value is its two neighbours' mean along the dispersion: changing a
    pixel changes its neighbours' values, never its own; a smooth row keeps its level."""
    var = rng.uniform(1.0, 2.0, (5, 40))
    out = neighbour_variance(var)
    np.testing.assert_allclose(out[:, 1:-1], 0.5 * (var[:, :-2] + var[:, 2:]))
    np.testing.assert_allclose(out[:, 0], var[:, 1])  # one neighbour at the edges
    np.testing.assert_allclose(out[:, -1], var[:, -2])
    bumped = var.copy()
    bumped[2, 10] *= 5.0
    moved = neighbour_variance(bumped) != out
    assert not moved[2, 10] and moved[2, 9] and moved[2, 11] and moved.sum() == 2
    # the pixel's noise and its weight are independent: no correlation left
    truth = np.full((50, 400), 4.0)
    noisy = truth + rng.normal(0.0, 1.0, truth.shape)  # a count rate's own noise
    assert np.corrcoef(noisy.ravel(), neighbour_variance(noisy).ravel())[0, 1] < 0.02
    np.testing.assert_allclose(neighbour_variance(np.full((3, 9), 2.5)), 2.5)


def test_neighbour_variance_skips_unusable_neighbours():
    var = np.array([[1.0, np.nan, 3.0, 4.0, -1.0, 6.0, 7.0]])
    out = neighbour_variance(var)
    # beside a NaN or negative neighbour, the other one; an unusable pixel stays as it was
    np.testing.assert_allclose(out[0, [0, 2, 3, 5, 6]], [1.0, 4.0, 3.0, 7.0, 6.0])
    assert np.isnan(out[0, 1]) and out[0, 4] == -1.0
    # a pixel with no usable neighbour keeps its own value
    lone = np.array([[np.nan, 2.0, np.nan]])
    np.testing.assert_allclose(neighbour_variance(lone)[0, 1], 2.0)
    # a single column has no neighbour along the dispersion
    np.testing.assert_array_equal(neighbour_variance(np.ones((4, 1))), np.ones((4, 1)))
