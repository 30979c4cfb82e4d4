"""The flux variance of a PSF shape shared by the slit's columns (core.shapeerror)."""

import numpy as np
import pytest

from optimal_extract1d.core.horne import extract_columns, polynomial_basis
from optimal_extract1d.core.shapeerror import shape_variance

N_CROSS, N_DISP = 17, 14


def _profile(y, center, share, slope, t, core_sigma):
    """A Gaussian core and Lorentzian wings whose share changes along the slit, unit sum."""
    f = share + slope * t
    core = np.exp(-0.5 * ((y - center) / core_sigma) ** 2)
    wings = 1.0 / (1.0 + ((y - center) / 3.0) ** 2)
    p = (1 - f) * core / core.sum(axis=0) + f * wings / wings.sum(axis=0)
    return p / p.sum(axis=0)


def _scene(theta, core_sigma=1.1):
    y = np.arange(N_CROSS, dtype=float)[:, None]
    t = np.linspace(-1, 1, N_DISP)[None, :]
    center = 8.0 + 0.3 * t
    source = _profile(y, center, *theta, t, core_sigma)
    nod = _profile(y, center - 5.0, *theta, t, core_sigma)
    return source, nod


def _derivatives(theta, step=1e-6):
    base = np.stack(_scene(theta), axis=2)
    out = []
    for k in range(len(theta)):
        moved = np.array(theta, float)
        moved[k] += step
        out.append((np.stack(_scene(moved), axis=2) - base) / step)
    return np.stack(out, axis=3)  # (n_cross, n_disp, n_comp, p)


def test_matches_the_joint_fisher_matrix_of_every_column_and_the_shape():
    """Column flux variance = the joint Cramér–Rao bound (columns' terms and shape free)."""
    rng = np.random.default_rng(4)
    theta = (0.12, 0.03)
    source, nod = _scene(theta)
    flux = rng.uniform(50, 150, N_DISP)
    nod_flux = -0.4 * flux
    basis = polynomial_basis(N_CROSS, 1)
    sky = np.outer(basis[:, 0], rng.uniform(1, 2, N_DISP)) + np.outer(
        basis[:, 1], 0.3 * np.ones(N_DISP)
    )
    data = flux * source + nod_flux * nod + sky
    variance = rng.uniform(0.5, 2.0, data.shape) * (1 + 0.01 * np.abs(data))
    mask = np.zeros(data.shape, bool)
    mask[0, 3] = mask[16, 9] = True  # missing pixels change a column's design
    sums = extract_columns(
        data, variance, source, mask=mask, bkg_basis=basis, extra=nod[:, :, None]
    )
    deriv = _derivatives(theta)
    shape = shape_variance(sums, data, deriv)
    assert shape is not None

    # brute force: one Fisher matrix over (flux, nod flux, 2 sky terms) per column + theta
    m = 4
    n = N_DISP * m + 2
    jac = np.zeros((N_CROSS, N_DISP, n))
    for x in range(N_DISP):
        jac[:, x, x * m] = source[:, x]
        jac[:, x, x * m + 1] = nod[:, x]
        jac[:, x, x * m + 2 : x * m + 4] = basis
        jac[:, x, -2:] = flux[x] * deriv[:, x, 0, :] + nod_flux[x] * deriv[:, x, 1, :]
    weight = np.where(mask, 0.0, 1.0 / variance)
    fisher = np.einsum("yxi,yx,yxj->ij", jac, weight, jac)
    bound = np.diag(np.linalg.inv(fisher))[0::m][:N_DISP]
    np.testing.assert_allclose(sums.variance + shape.variance, bound, rtol=1e-6)
    np.testing.assert_allclose(shape.relative, shape.variance / sums.variance)
    assert np.all(shape.variance > 0)
    errors = np.sqrt(np.diag(np.linalg.inv(fisher)))[-2:]
    np.testing.assert_allclose(shape.parameter_errors, errors, rtol=1e-6)


def test_a_shape_the_data_do_not_constrain_gives_no_term():
    """A derivative that is zero everywhere: no information, no term (not a division by 0)."""
    theta = (0.12, 0.03)
    source, nod = _scene(theta)
    data = 100 * source
    sums = extract_columns(
        data, np.ones(data.shape), source, mask=np.zeros(data.shape, bool), bkg_basis=None
    )
    deriv = np.zeros((N_CROSS, N_DISP, 1, 1))
    assert shape_variance(sums, data, deriv) is None


@pytest.mark.parametrize("empty_column", [5])
def test_empty_columns_take_no_term(empty_column):
    theta = (0.12, 0.0)
    source, _ = _scene(theta)
    data = 100 * source
    mask = np.zeros(data.shape, bool)
    mask[:, empty_column] = True
    sums = extract_columns(data, np.ones(data.shape), source, mask=mask, bkg_basis=None)
    deriv = _derivatives(theta)[:, :, :1, :1]
    shape = shape_variance(sums, data, deriv)
    assert shape is not None
    assert shape.variance[empty_column] == 0.0
    assert np.all(shape.variance[np.arange(N_DISP) != empty_column] > 0)


def test_a_width_free_in_every_bin_takes_its_share_of_the_information():
    """The shared parameters' errors are the joint bound's with one width per bin free."""
    rng = np.random.default_rng(5)
    theta = (0.12, 0.03)
    source, nod = _scene(theta)
    flux = rng.uniform(50, 150, N_DISP)
    nod_flux = -0.4 * flux
    data = flux * source + nod_flux * nod
    variance = rng.uniform(0.5, 2.0, data.shape)
    mask = np.zeros(data.shape, bool)
    sums = extract_columns(data, variance, source, mask=mask, extra=nod[:, :, None])
    deriv = _derivatives(theta)
    # the core's width: widen both components' profiles (a numerical derivative)
    wider = np.stack(_scene(theta, core_sigma=1.1 + 1e-6), axis=2)
    width = ((wider - np.stack(_scene(theta), axis=2)) / 1e-6)[..., None]
    groups = np.repeat(np.arange(5), 3)[:N_DISP]
    groups[-1] = -1  # a column outside the good bins brings no information
    shape = shape_variance(sums, data, deriv, local=width, groups=groups)
    assert shape is not None
    # brute force: (flux, nod flux) per column, one width per group, then theta
    n_groups = groups.max() + 1
    n = 2 * N_DISP + n_groups + 2
    jac = np.zeros((N_CROSS, N_DISP, n))
    for x in range(N_DISP):
        jac[:, x, 2 * x] = source[:, x]
        jac[:, x, 2 * x + 1] = nod[:, x]
        if groups[x] >= 0:
            jac[:, x, 2 * N_DISP + groups[x]] = (
                flux[x] * width[:, x, 0, 0] + nod_flux[x] * width[:, x, 1, 0]
            )
            jac[:, x, -2:] = flux[x] * deriv[:, x, 0, :] + nod_flux[x] * deriv[:, x, 1, :]
    fisher = np.einsum("yxi,yx,yxj->ij", jac, 1.0 / variance, jac)
    errors = np.sqrt(np.diag(np.linalg.inv(fisher)))[-2:]
    np.testing.assert_allclose(shape.parameter_errors, errors, rtol=1e-6)
    # without the width the parameters are better known
    narrow = shape_variance(sums, data, deriv, groups=groups)
    assert np.all(narrow.parameter_errors < shape.parameter_errors)
