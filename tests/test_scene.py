"""Helpers of the spatial model."""

import warnings

import numpy as np
import pytest

from optimal_extract1d.core.outliers import nanmedian
from optimal_extract1d.scene.fit import column_wavelength


@pytest.mark.parametrize("shape", [(31, 400), (5, 3), (1, 7), (4, 1)])
@pytest.mark.parametrize("axis", [0, 1])
def test_nanmedian_equals_numpy(shape, axis):
    rng = np.random.default_rng(sum(shape) + axis)
    values = rng.normal(size=shape)
    values[rng.random(shape) < 0.3] = np.nan
    values[0] = np.nan  # an all-NaN line along axis 1, a NaN in every line along axis 0
    values[-1, -1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice
        expected = np.nanmedian(values, axis=axis)
    np.testing.assert_array_equal(nanmedian(values, axis), expected)


def test_column_wavelength_fills_columns_without_a_wavelength():
    lam = np.tile(np.linspace(1.0, 2.0, 10), (5, 1))
    lam[:, 3] = np.nan
    lam[0] = np.nan
    np.testing.assert_allclose(column_wavelength(lam), np.linspace(1.0, 2.0, 10))
