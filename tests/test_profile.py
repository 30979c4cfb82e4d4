import numpy as np

from optimal_extract1d.core.coadd import brightest_column, coadd_columns
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
