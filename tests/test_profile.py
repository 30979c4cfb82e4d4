import numpy as np

from optimal_extract1d.core.coadd import brightest_column, coadd_columns, column_flux
from optimal_extract1d.core.profile import normalize_profile
from optimal_extract1d.psf.evaluate import kernel_profile
from optimal_extract1d.psf.kernel import make_template


def test_normalize_clips_and_sums_to_one():
    raw = np.array([[1.0, -1.0, 0.0], [3.0, 2.0, np.nan], [-2.0, 2.0, 0.0]])
    p = normalize_profile(raw)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=0), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(p[:, 0], [0.25, 0.75, 0.0])


def test_kernel_profile_follows_centers_and_widths():
    prof = kernel_profile(
        make_template("gaussian"), 41, np.array([10.0, 20.0, 30.0]), fwhm=np.array([2.0, 3.0, 4.0])
    )
    y = np.arange(41)
    centroid = (prof.weights * y[:, None]).sum(axis=0)
    np.testing.assert_allclose(centroid, [10.0, 20.0, 30.0], atol=1e-6)
    np.testing.assert_allclose(prof.weights.sum(axis=0), 1.0)


def test_brightest_column_sees_through_nod_negatives(rng):
    n_cross, n_disp = 31, 200
    y = np.arange(n_cross)[:, None]
    signal = np.zeros(n_disp)
    signal[140:160] = 5.0
    trace = np.exp(-0.5 * ((y - 15) / 1.0) ** 2)
    neg = 0.5 * np.exp(-0.5 * ((y - 9) / 1.0) ** 2) + 0.5 * np.exp(-0.5 * ((y - 21) / 1.0) ** 2)
    data = (trace - neg) * signal + rng.normal(0, 0.3, (n_cross, n_disp))
    var = np.full(data.shape, 0.09)
    col = brightest_column(data, var, np.ones(data.shape, bool), width=20)
    assert 140 <= col < 160
    values, sigma = coadd_columns(data, var, np.ones(data.shape, bool), column=col, width=20)
    assert np.argmax(values) == 15
    np.testing.assert_allclose(sigma, 0.3 / np.sqrt(20))


def test_a_slice_weighted_by_flux_keeps_the_profile_of_a_line():
    """The inverse-variance mean of a line's columns and the continuum's weighs the
    line's core (its own Poisson noise) less than its wings: a flat-topped profile.
    Weighted by their flux, the columns give the true profile in every row."""
    y = np.arange(31)[:, None]
    profile = np.exp(-0.5 * ((y - 15) / 1.0) ** 2)
    profile /= profile.sum()
    flux = np.full(30, 1.0)
    flux[14:17] = (60.0, 200.0, 60.0)  # a line over a faint continuum
    model = profile * flux
    variance = 0.01 + model  # noiseless data, Poisson variance
    usable = np.ones(model.shape, bool)
    plain, _ = coadd_columns(model, variance, usable, column=15, width=30)
    weighted, sigma = coadd_columns(
        model,
        variance,
        usable,
        column=15,
        width=30,
        flux=column_flux(model, variance, usable, edges=np.array([0, 30])),
    )
    rows = profile[:, 0] > 1e-3 * profile.max()  # the core and the wings
    ratio = weighted[rows] / profile[rows, 0]
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=0.01)
    plain_ratio = plain[rows] / profile[rows, 0]
    assert plain_ratio.max() / plain_ratio.min() > 1.2  # the wings' mixture is not the core's
    # a constant flux gives the weighted mean, and its standard error
    flat = profile * 5.0
    mean, mean_sigma = coadd_columns(flat, 0.01 + flat, usable, column=15, width=30)
    np.testing.assert_allclose(
        coadd_columns(flat, 0.01 + flat, usable, column=15, width=30, flux=np.full(30, 3.0)),
        (mean, mean_sigma),
    )
