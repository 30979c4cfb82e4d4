import numpy as np
import pytest
from astropy.modeling import models

from optimal_extract1d.errors import ParameterError, ProfileFitError
from optimal_extract1d.psf.evaluate import (
    evaluate_native,
    evaluate_template,
    evaluate_with_derivatives,
)
from optimal_extract1d.psf.kernel import make_template, shape_bounds, with_params
from optimal_extract1d.psf.profilefit import fit_kernel


def _slice(template_name, center, fwhm, n=31, amp=10.0, bkg=0.0, noise=0.05, seed=0):
    t = make_template(template_name)
    y = np.arange(n, dtype=float)
    values = amp * evaluate_template(t, y, np.array([center]), fwhm=np.array([fwhm]))[:, 0] + bkg
    rng = np.random.default_rng(seed)
    return values + rng.normal(0, noise, n), np.full(n, noise)


@pytest.mark.parametrize("name", ["gaussian", "moffat"])
def test_fit_recovers_center_and_fwhm(name):
    values, sigma = _slice(name, 13.3, 2.2, bkg=0.5)
    fit = fit_kernel(make_template(name), values, sigma, bkg_order=1)
    assert fit.center == pytest.approx(13.3, abs=0.02)
    assert fit.fwhm == pytest.approx(2.2, rel=0.03)
    assert fit.snr > 50
    assert fit.to_meta()["kernel"] == name


def test_any_astropy_model_can_be_the_template():
    template = make_template(models.Lorentz1D(amplitude=1.0, x_0=0.0, fwhm=1.0))
    y = np.arange(31.0)
    values = 5.0 * evaluate_template(template, y, np.array([16.2]), fwhm=np.array([2.5]))[:, 0]
    fit = fit_kernel(template, values + 0.01, np.full(31, 0.01), bkg_order=0)
    assert fit.center == pytest.approx(16.2, abs=0.01)
    assert fit.fwhm == pytest.approx(2.5, rel=0.02)


@pytest.mark.parametrize(
    ("name", "model", "shape"),
    [
        ("moffat", models.Moffat1D(1.0, 0.0, 1.0, 2.5), {"alpha": [0.9, 2.5, 7.0]}),
        ("gaussian", models.Gaussian1D(1.0, 0.0, 1.0), {}),
    ],
)
def test_astropy_instance_is_treated_as_the_named_kernel(name, model, shape):
    named, given = make_template(name), make_template(model)
    assert shape_bounds(given, 31) == shape_bounds(named, 31)
    assert given.fwhm_per_width() == named.fwhm_per_width()
    for param, values in shape.items():  # the analytic FWHM at every index
        for value in values:
            per = with_params(named, {param: value}).fwhm_per_width()
            assert with_params(given, {param: value}).fwhm_per_width() == per
    values, sigma = _slice(name, 13.3, 2.2, bkg=0.5)
    fit_named = fit_kernel(named, values, sigma, bkg_order=1)
    fit_given = fit_kernel(given, values, sigma, bkg_order=1)
    assert fit_given.to_meta() | {"kernel": name} == fit_named.to_meta()


def test_moffat_instance_keeps_its_own_start():
    """Bounded index and analytic FWHM from the instance's own starting index."""
    given, named = make_template(models.Moffat1D(alpha=1.5)), make_template("moffat")
    bounds, named_bounds = shape_bounds(given, 31), shape_bounds(named, 31)
    assert bounds["alpha"] == named_bounds["alpha"] == (0.8, 20.0)
    assert bounds["x_0"] == named_bounds["x_0"]
    per = given.fwhm_per_width()
    assert per == pytest.approx(2.0 * np.sqrt(2.0 ** (1 / 1.5) - 1.0))
    np.testing.assert_allclose(np.multiply(bounds["gamma"], per), [0.4, 31.0])  # FWHM range
    values, sigma = _slice("moffat", 13.3, 2.2, bkg=0.5)
    fit_named = fit_kernel(named, values, sigma, bkg_order=1)
    fit_given = fit_kernel(given, values, sigma, bkg_order=1)
    assert fit_given.center == pytest.approx(fit_named.center, abs=1e-4)
    assert fit_given.fwhm == pytest.approx(fit_named.fwhm, rel=1e-4)
    assert fit_given.template.model.alpha.value == pytest.approx(
        fit_named.template.model.alpha.value, rel=1e-3
    )


def test_template_needs_identifiable_parameters():
    with pytest.raises(ParameterError, match="cannot identify"):
        make_template(models.Polynomial1D(2))
    with pytest.raises(ParameterError, match="unknown kernel 'boxcar'"):
        make_template("boxcar")


def test_pure_noise_is_not_a_source():
    rng = np.random.default_rng(3)
    with pytest.raises(ProfileFitError, match="significant|positive"):
        fit_kernel(make_template("gaussian"), rng.normal(0, 1, 31), np.ones(31), bkg_order=0)


def test_too_few_pixels_raises():
    values = np.full(31, np.nan)
    values[:4] = 1.0
    with pytest.raises(ProfileFitError, match="only 4 valid pixels"):
        fit_kernel(make_template("gaussian"), values, np.ones(31), bkg_order=2)


@pytest.mark.parametrize("name", ["gaussian", "moffat"])
def test_pixel_integrals_and_derivatives(name):
    """Values are pixel integrals (exact for the Gaussian); derivatives match differences."""
    template = make_template(name)
    y = np.arange(31.0)
    params = {
        template.center_param: np.array([10.3, 15.0, 20.7]),
        template.width_param: np.array([0.6, 1.3, 4.0]),
    }
    values, grads = evaluate_with_derivatives(template, y, params, names=list(params))
    np.testing.assert_allclose(values, evaluate_native(template, y, params))

    sub = (np.arange(4000) + 0.5) / 4000 - 0.5
    args = [
        1.0
        if n == template.amplitude_param
        else np.asarray(params.get(n, getattr(template.model, n).value)).reshape(1, -1, 1)
        for n in template.model.param_names
    ]
    brute = template.model.evaluate(y[:, None, None] + sub, *args).mean(axis=2)
    atol = 1e-7 if name == "gaussian" else 2e-4  # Moffat: OVERSAMPLE-node quadrature
    np.testing.assert_allclose(values, brute, atol=atol)

    for pname, grad in grads.items():
        step = 1e-6
        moved = {**params, pname: params[pname] + step}
        numeric = (evaluate_native(template, y, moved) - values) / step
        np.testing.assert_allclose(grad, numeric, atol=1e-4)


def test_scattered_pixels_give_the_same_values_as_the_full_slit():
    template = make_template("gaussian")
    params = {"mean": np.array([10.3, 15.0]), "stddev": np.array([0.8, 2.0])}
    full, full_grads = evaluate_with_derivatives(
        template, np.arange(31.0), params, names=["mean", "stddev"]
    )
    rows = np.array([2, 9, 10, 11, 17, 30])
    part, part_grads = evaluate_with_derivatives(
        template, rows * 1.0, params, names=["mean", "stddev"]
    )
    np.testing.assert_allclose(part, full[rows], atol=1e-15)
    for name in part_grads:
        np.testing.assert_allclose(part_grads[name], full_grads[name][rows], atol=1e-14)


@pytest.mark.parametrize(("n_prof", "n_loc", "n_glob"), [(24, 4, 1), (5, 2, 3), (1, 3, 2)])
def test_the_shared_parameter_step_is_the_dense_least_squares_step(n_prof, n_loc, n_glob):
    """psf.lm solves the bordered block-diagonal system by its Schur complement: the
    same step as the dense system (to rounding), without a dense solve."""
    from optimal_extract1d.psf import lm

    rng = np.random.default_rng(0)
    jl = rng.normal(size=(31, n_prof, n_loc))
    jg = rng.normal(size=(31, n_prof, n_glob))
    resid = rng.normal(size=(31, n_prof))
    fast = lm._dense_step(jl, jg, resid, lam=0.01)
    dense = lm._dense_lstsq_step(jl, jg, resid, lam=0.01)
    for a, b in zip(fast, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
