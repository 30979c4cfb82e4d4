"""Stacked solves never raise: a singular or non-finite system gives least squares or NaN."""

from __future__ import annotations

import numpy as np

from optimal_extract1d.core.linalg import (
    finite_matrices,
    invert_stacked,
    lstsq_or_none,
    solve_stacked,
)
from optimal_extract1d.psf.linear import solve_linear


def test_regular_systems_are_numpys_bit_for_bit(rng):
    a = rng.normal(size=(6, 3, 3))
    normal = a @ np.swapaxes(a, 1, 2) + np.eye(3)
    rhs = rng.normal(size=(6, 3))
    expected = np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]
    np.testing.assert_array_equal(solve_stacked(normal, rhs), expected)
    np.testing.assert_array_equal(invert_stacked(normal), np.linalg.inv(normal))


def test_a_singular_or_non_finite_system_spoils_only_itself(rng):
    normal = np.stack([np.eye(2) * 2.0, np.zeros((2, 2)), np.full((2, 2), np.nan)])
    normal[1, 0, 0] = 4.0  # rank 1: the second unknown is undetermined
    rhs = np.array([[2.0, 4.0], [8.0, 1.0], [1.0, 1.0]])
    x = solve_stacked(normal, rhs)
    np.testing.assert_allclose(x[0], [1.0, 2.0])
    np.testing.assert_allclose(x[1], [2.0, 0.0])  # minimum-norm least squares
    assert np.all(np.isnan(x[2]))
    inv = invert_stacked(normal)
    np.testing.assert_allclose(inv[1], [[0.25, 0.0], [0.0, 0.0]])
    assert np.all(np.isnan(inv[2]))
    assert lstsq_or_none(np.full((2, 2), np.nan), np.ones(2)) is None


def test_a_component_on_rows_without_data_gets_no_flux_and_raises_nothing(rng):
    # a profile fit on a slit whose upper half is all NaN (NIRSpec S200A1: 47 of 91
    # rows): a component centered there sees no usable pixel
    y = np.arange(20.0)
    shapes = np.stack([np.exp(-0.5 * (y - c) ** 2) for c in (5.0, 16.0)], axis=1)
    shapes[:12, 1] = 0.0  # a tabulated PSF ends: nothing of it on the rows with data
    shapes = (shapes / shapes.sum(axis=0))[:, None, :]
    values = 100.0 * shapes[:, 0, 0] + rng.normal(0, 0.1, 20)
    values[11:] = np.nan
    resid, coeffs, snr, n_ok = solve_linear(
        shapes, values[:, None], np.full((20, 1), 0.1), basis=np.ones((20, 1))
    )
    assert abs(coeffs[0, 0] - 100.0) < 1.0 and coeffs[0, 1] == 0.0
    assert n_ok[0] == 11 and np.all(np.isfinite(resid))


def test_finite_matrices_flags_each_matrix_with_a_nan_or_inf(rng):
    stack = rng.normal(size=(3, 4, 5, 5))
    assert finite_matrices(stack).shape == (3, 4)
    assert finite_matrices(stack).all()
    stack[1, 2, 0, 3] = np.nan
    stack[2, 0, 4, 4] = -np.inf
    expected = np.ones((3, 4), bool)
    expected[1, 2] = expected[2, 0] = False
    np.testing.assert_array_equal(finite_matrices(stack), expected)
