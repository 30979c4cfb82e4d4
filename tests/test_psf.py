import numpy as np
import pytest

from optimal_extract1d.errors import ReferenceFileError
from optimal_extract1d.psf.evaluate import evaluate_native, evaluate_template
from optimal_extract1d.psf.kernel import fitted_params, make_template, wavelength_params
from optimal_extract1d.psf.profilefit import fit_kernel
from optimal_extract1d.psf.tabulated import PSFTable, TabulatedPSF1D
from optimal_extract1d.scene.trace import fit_bins

SUBPIX = 5
OFFSETS = np.arange(-75, 76) / SUBPIX
WAVE = np.array([1.0, 2.0, 3.0, 4.0])
SIGMA = np.array([0.6, 0.8, 1.0, 1.2])  # pixels, grows with wavelength


def gaussian_table(sigma=SIGMA, wave=WAVE):
    values = np.exp(-0.5 * (OFFSETS[:, None] / sigma[None, :]) ** 2)
    return PSFTable(OFFSETS, wave, values / (values.sum(axis=0) / SUBPIX), name="ANY")


def gauss(x, sigma):
    return np.exp(-0.5 * (x / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def test_table_interpolates_offsets_closely_and_wavelengths_linearly():
    table = gaussian_table()
    x = np.linspace(-4, 4, 801)
    # off the 0.2-pixel grid the cubic interpolation stays within 0.3 % of the peak
    err = np.abs(table.sample(x, 2.0) - gauss(x, 0.8))
    assert err.max() < 3e-3 * gauss(0.0, 0.8)
    halfway = table.sample(x, 2.5)
    np.testing.assert_allclose(halfway, 0.5 * (table.sample(x, 2.0) + table.sample(x, 3.0)))
    np.testing.assert_allclose(table.sample(x, 0.2), table.sample(x, 1.0))  # held at the edge
    assert np.all(table.sample(np.array([-16.0, 16.0, 40.0]), 2.0) == 0)
    np.testing.assert_allclose(table.fwhm(WAVE), 2.3548 * SIGMA, rtol=2e-3)


def test_table_rejects_inconsistent_grids():
    with pytest.raises(ReferenceFileError, match="uniform increasing"):
        PSFTable(OFFSETS**3, WAVE, gaussian_table().values, source="x.fits")
    with pytest.raises(ReferenceFileError, match="x.fits: profile table of shape"):
        PSFTable(OFFSETS, WAVE[:3], gaussian_table().values, source="x.fits")
    with pytest.raises(ReferenceFileError, match="increasing"):
        PSFTable(OFFSETS, WAVE[::-1], gaussian_table().values)


def test_model_flux_center_and_stretch():
    table = gaussian_table()
    model = TabulatedPSF1D(table, amplitude=3.0, x_0=1.5, scale=1.25, wavelength=3.0)
    x = np.linspace(-20, 20, 8001)
    assert np.trapezoid(model(x), x) == pytest.approx(3.0, rel=1e-4)
    np.testing.assert_allclose(model(x), 3.0 * gauss(x - 1.5, 1.25 * 1.0), atol=5e-3)
    assert model.fixed["wavelength"] and not model.fixed["scale"]
    assert model.copy().table is table  # copies share the immutable table


def test_template_parameters_and_fwhm_per_width():
    template = make_template(TabulatedPSF1D(gaussian_table(), wavelength=2.0), name="psf")
    assert template.name == "psf"
    assert (template.amplitude_param, template.center_param, template.width_param) == (
        "amplitude",
        "x_0",
        "scale",
    )
    assert fitted_params(template) == ["x_0", "scale"]  # the wavelength is never fitted
    assert template.fwhm_per_width() == pytest.approx(2.3548 * 0.8, rel=3e-3)
    assert template.reference_fwhm() == pytest.approx(template.fwhm_per_width())
    assert make_template("gaussian").reference_fwhm() is None
    assert wavelength_params(make_template("gaussian"), 2.0) == {}


def test_effective_psf_is_sampled_at_pixel_centers_not_integrated_again():
    table = gaussian_table()
    template = make_template(TabulatedPSF1D(table), name="psf")
    y = np.arange(21.0)
    centers = np.array([10.0, 10.3, 9.6])
    lam = np.array([1.0, 2.5, 4.0])
    got = evaluate_native(template, y, {"x_0": centers, "wavelength": lam})
    want = table.sample(y[:, None] - centers[None, :], lam[None, :])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # per-column wavelengths reach evaluate_template (FWHM given at the template's wavelength)
    per = template.fwhm_per_width()
    cols = evaluate_template(template, y, centers, fwhm=per * np.ones(3), extra={"wavelength": lam})
    np.testing.assert_allclose(cols, want, rtol=1e-12)


def _slice(table, rng, *, center, scale, wavelength, snr=300.0):
    y = np.arange(31.0)
    truth = table.sample((y - center) / scale, wavelength) / scale
    sigma = np.full(y.size, truth.sum() / snr * np.sqrt(np.sum(truth**2)) / truth.sum() * 3)
    return truth + sigma * rng.standard_normal(y.size), sigma


def test_fit_kernel_recovers_center_and_scale_and_keeps_the_wavelength(rng):
    table = gaussian_table()
    template = make_template(TabulatedPSF1D(table, wavelength=3.0), name="psf")
    values, sigma = _slice(table, rng, center=14.3, scale=1.15, wavelength=3.0)
    fit = fit_kernel(template, values, sigma, bkg_order=0)
    assert fit.center == pytest.approx(14.3, abs=0.02)
    assert fit.template.model.scale.value == pytest.approx(1.15, rel=0.02)
    assert fit.template.model.wavelength.value == 3.0
    assert fit.fwhm == pytest.approx(1.15 * 2.3548 * 1.0, rel=0.02)
    assert fit.flux == pytest.approx(1.0, rel=0.01)


def test_bins_use_their_own_wavelength(rng):
    table = gaussian_table()
    template = make_template(TabulatedPSF1D(table, wavelength=2.5), name="psf")
    lam = np.array([1.0, 2.0, 3.0, 4.0])
    cols = [_slice(table, rng, center=15.0, scale=1.0, wavelength=w) for w in lam]
    values = np.stack([c[0] for c in cols], axis=1)
    sigma = np.stack([c[1] for c in cols], axis=1)
    per = template.fwhm_per_width()
    bins = fit_bins(
        template,
        values,
        sigma,
        bkg_order=-1,
        center=15.0,
        fwhm=per,
        fit_center=True,
        fit_fwhm=True,
        extra={"wavelength": lam},
    )
    # the profile's own change with wavelength is in the table: the stretch stays 1
    np.testing.assert_allclose(bins.fwhm / per, 1.0, atol=0.03)
    assert bins.shape_params == {}  # the wavelength is not a shared, fitted parameter
    assert bins.good.all()
