import numpy as np
import pytest
from astropy.modeling import models

from optimal_extract1d.errors import ParameterError, ProfileFitError
from optimal_extract1d.kernel import evaluate_template, make_template
from optimal_extract1d.profilefit import fit_kernel


def _slice(template_name, center, fwhm, n=31, amp=10.0, bkg=0.0, noise=0.05, seed=0):
    t = make_template(template_name)
    y = np.arange(n, dtype=float)
    values = amp * evaluate_template(t, y, np.array([center]), np.array([fwhm]))[:, 0] + bkg
    rng = np.random.default_rng(seed)
    return values + rng.normal(0, noise, n), np.full(n, noise)


@pytest.mark.parametrize("name", ["gaussian", "moffat"])
def test_fit_recovers_centre_and_fwhm(name):
    values, sigma = _slice(name, 13.3, 2.2, bkg=0.5)
    fit = fit_kernel(make_template(name), values, sigma, bkg_order=1)
    assert fit.center == pytest.approx(13.3, abs=0.02)
    assert fit.fwhm == pytest.approx(2.2, rel=0.03)
    assert fit.snr > 50
    assert fit.to_meta()["kernel"] == name


def test_any_astropy_model_can_be_the_template():
    template = make_template(models.Lorentz1D(amplitude=1.0, x_0=0.0, fwhm=1.0))
    y = np.arange(31.0)
    values = 5.0 * evaluate_template(template, y, np.array([16.2]), np.array([2.5]))[:, 0]
    fit = fit_kernel(template, values + 0.01, np.full(31, 0.01), bkg_order=0)
    assert fit.center == pytest.approx(16.2, abs=0.01)
    assert fit.fwhm == pytest.approx(2.5, rel=0.02)


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
