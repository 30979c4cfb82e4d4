import numpy as np
import pytest
from conftest import gaussian_profile

from optimal_extract1d.core.horne import extract_columns, polynomial_basis, usable_pixels


def test_noise_free_profile_gives_exact_flux_and_horne_variance():
    prof = gaussian_profile(21, 7)
    flux = np.linspace(1.0, 7.0, 7)
    var = np.full(prof.shape, 0.01) + 0.1 * prof
    out = extract_columns(prof * flux, var, prof, mask=np.zeros(prof.shape, bool))
    np.testing.assert_allclose(out.flux, flux, rtol=1e-12)
    # Horne eq. 9: Var(F) = 1 / sum(P^2 / V)
    np.testing.assert_allclose(out.variance, 1.0 / np.sum(prof**2 / var, axis=0), rtol=1e-12)
    np.testing.assert_allclose(out.propagate(var), out.variance, rtol=1e-10)


def test_masked_pixels_are_compensated_by_the_profile():
    prof = gaussian_profile(21, 3)
    data = prof * 5.0
    mask = np.zeros(prof.shape, bool)
    mask[10, :] = True  # the peak pixel
    data[10, :] = 1e6  # garbage under the mask must not matter
    out = extract_columns(data, np.ones(prof.shape), prof, mask=mask)
    np.testing.assert_allclose(out.flux, 5.0, rtol=1e-12)
    assert np.all(out.npixels == 20)


def test_column_without_usable_pixels_is_nan_not_inf():
    prof = gaussian_profile(15, 4)
    data = prof * 2.0
    data[:, 1] = np.nan
    var = np.ones(prof.shape)
    var[:, 2] = 0.0  # zero variance is unusable, not infinite weight
    out = extract_columns(data, var, prof, mask=np.zeros(prof.shape, bool))
    assert np.isnan(out.flux[1]) and np.isnan(out.flux[2])
    assert out.empty.tolist() == [False, True, True, False]
    assert np.all(np.isfinite(out.flux[[0, 3]]))
    assert not np.any(np.isinf(out.variance))


def test_polynomial_background_is_fitted_with_the_profile():
    prof = gaussian_profile(31, 5, center=15.0)
    basis = polynomial_basis(31, 2)
    bkg = basis @ np.array([0.3, 0.1, -0.05])
    data = prof * 4.0 + bkg[:, None]
    out = extract_columns(
        data, np.ones(prof.shape), prof, mask=np.zeros(prof.shape, bool), bkg_basis=basis
    )
    np.testing.assert_allclose(out.flux, 4.0, rtol=1e-10)
    np.testing.assert_allclose(out.mean_background, bkg.mean(), rtol=1e-10)
    # Without the background term the same data give a biased flux.
    plain = extract_columns(data, np.ones(prof.shape), prof, mask=np.zeros(prof.shape, bool))
    assert abs(plain.flux[0] - 4.0) > 0.1


def test_degenerate_background_is_dropped_not_crashing():
    prof = gaussian_profile(5, 2, center=2.0)
    mask = np.ones(prof.shape, bool)
    mask[2, :] = False  # one usable pixel: profile + quadratic background is singular
    out = extract_columns(
        prof * 3.0, np.ones(prof.shape), prof, mask=mask, bkg_basis=polynomial_basis(5, 2)
    )
    assert out.background_dropped.all()
    np.testing.assert_allclose(out.flux, 3.0)


def test_usable_pixels_rejects_bad_variance():
    data = np.array([[1.0, np.nan, 1.0, 1.0, 1.0]])
    var = np.array([[1.0, 1.0, 0.0, -1.0, np.inf]])
    assert usable_pixels(data, var, np.zeros((1, 5), bool)).tolist() == [
        [True, False, False, False, False]
    ]


@pytest.mark.parametrize("bkg_order", [-1, 2])
def test_error_bars_match_scatter_over_noise_realizations(bkg_order):
    rng = np.random.default_rng(7)
    prof = gaussian_profile(25, 400, center=12.0, sigma=1.0)
    var = 0.02 + 0.05 * prof
    truth = 3.0
    noise = rng.standard_normal(prof.shape) * np.sqrt(var)
    out = extract_columns(
        truth * prof + noise,
        var,
        prof,
        mask=np.zeros(prof.shape, bool),
        bkg_basis=polynomial_basis(25, bkg_order),
    )
    pulls = (out.flux - truth) / np.sqrt(out.variance)
    assert abs(np.std(pulls) - 1.0) < 0.1
    assert abs(np.mean(pulls)) < 0.15


def test_the_diagonal_dominance_shortcut_decides_as_the_determinants_do(rng, monkeypatch):
    from optimal_extract1d.core import horne

    def normal_matrices(n_pixels, twin):
        a = rng.normal(size=(200, n_pixels, 4))
        a[:50, :, 1] = a[:50, :, 0] + twin * a[:50, :, 1]  # near-twins of the profile column
        return np.einsum("xni,xnj->xij", a, a)

    cases = {"apart": normal_matrices(3000, 1.0), "twins": normal_matrices(30, 1e-9)}
    assert horne._diagonally_dominant(horne_scaled(cases["apart"]))
    assert not horne._diagonally_dominant(horne_scaled(cases["twins"]))
    for normal in cases.values():
        fast = horne._invert_normal(normal.copy())
        with monkeypatch.context() as m:
            m.setattr(horne, "_diagonally_dominant", lambda scaled: False)
            full = horne._invert_normal(normal.copy())
        np.testing.assert_array_equal(fast[1], full[1])
        np.testing.assert_array_equal(fast[0], full[0])
    assert full[1][:50].all() and not full[1][50:].any()  # the twins fell back, the rest not


def horne_scaled(normal):
    d = np.sqrt(np.einsum("xii->xi", normal))
    return normal / d[:, :, None] / d[:, None, :]
