import numpy as np

from optimal_extract1d.core.empirical import empirical_profile, trace_support
from optimal_extract1d.core.horne import extract_columns


def test_empirical_profile_recovers_a_shape_no_template_fits(rng):
    n_cross, n_disp = 31, 300
    y = np.arange(n_cross)[:, None]
    x = np.linspace(0, 1, n_disp)[None, :]
    # double-peaked, asymmetric source drifting along the slit
    shape = np.exp(-0.5 * ((y - 12 - x) / 1.0) ** 2) + 0.6 * np.exp(
        -0.5 * ((y - 17 - x) / 1.5) ** 2
    )
    shape /= shape.sum(axis=0)
    flux = 100.0 * (1 + 0.5 * np.sin(6 * x[0]))
    var = np.full(shape.shape, 0.04)
    data = flux * shape + rng.normal(0, 0.2, shape.shape)
    usable = np.ones(shape.shape, bool)
    centers = np.full(n_disp, 14.5)
    prof = empirical_profile(
        data,
        var,
        usable,
        flux=flux,
        background=np.zeros(shape.shape),
        support=trace_support(centers, np.full(n_disp, 4.0), n_cross),
    )
    assert np.all(prof.weights >= 0)
    np.testing.assert_allclose(prof.weights.sum(axis=0), 1.0)
    assert np.max(np.abs(prof.weights - shape)) < 0.02
    out = extract_columns(data, var, prof.weights, mask=~usable)
    assert abs(np.median(out.flux / flux) - 1) < 0.005
