import logging

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from optimal_extract1d.errors import InputError
from optimal_extract1d.io.inputs import open_input
from optimal_extract1d.io.inputvariance import choose_variance
from optimal_extract1d.io.slits import read_slit
from optimal_extract1d.sim.models import make_lrs_image, make_slit_model
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit


@pytest.fixture
def slit(rng):
    return make_slit_model(simulate_slit(rng, n_disp=60))


def test_auto_variance_prefers_var_arrays(slit):
    source, arrays = choose_variance(slit, "auto", 1.0, name="s")
    assert source == "var"
    expected = slit.var_poisson + slit.var_rnoise + slit.var_flat
    np.testing.assert_allclose(arrays["variance"], expected, rtol=1e-6)


def test_variance_falls_back_to_wht_then_err(slit):
    del slit.var_poisson, slit.var_rnoise, slit.var_flat
    source, arrays = choose_variance(slit, "auto", 0.5, name="s")
    assert source == "wht"
    good = slit.wht > 0
    np.testing.assert_allclose(arrays["variance"][good], 1.0 / (slit.wht[good] * 0.5**4), rtol=1e-6)
    assert np.isnan(arrays["variance"][~good]).all()  # zero weight: unusable, not infinite
    del slit.wht
    source, arrays = choose_variance(slit, "auto", 1.0, name="s")
    assert source == "err"
    np.testing.assert_allclose(arrays["var_poisson"], slit.err.astype(float) ** 2)


def test_missing_requested_variance_falls_back_with_warning(slit, caplog):
    del slit.wht
    with caplog.at_level(logging.WARNING, logger="optimal_extract1d"):
        source, _ = choose_variance(slit, "wht", 1.0, name="S7")
    assert source == "var"
    assert "S7" in caplog.text and "'wht' is not available" in caplog.text


def test_read_slit_converts_and_masks(slit):
    slit.dq = np.zeros(slit.data.shape, np.uint32)
    slit.dq[5, 7] = 1  # DO_NOT_USE
    sd = read_slit(slit, slit, variance_source="auto", drizzle_scale=1.0)
    assert sd.data.dtype == np.float64 and sd.shape == slit.data.shape
    assert sd.mask[5, 7] and sd.mask[0].all()  # NaN border row
    assert sd.units.flux_unit == "Jy" and sd.units.flux_scale == pytest.approx(PIXEL_AREA_SR * 1e6)
    assert np.isfinite(sd.wavelength[10]).all()
    assert sd.attributes["source_id"] == 1


def test_units_mjy_and_dn(slit, caplog):
    slit.meta.bunit_data = "MJy"
    sd = read_slit(slit, slit, variance_source="auto", drizzle_scale=1.0)
    assert (sd.units.flux_scale, sd.units.sb_scale) == (1e6, 0.0)
    slit.meta.bunit_data = "DN/s"
    with caplog.at_level(logging.WARNING, logger="optimal_extract1d"):
        sd = read_slit(slit, slit, variance_source="auto", drizzle_scale=1.0)
    assert sd.units.flux_unit == "DN/s" and sd.units.flux_scale == 1.0
    assert "DN/s" in caplog.text


def test_vertical_dispersion_is_transposed(rng):
    sim = simulate_slit(rng, n_cross=40, n_disp=90)
    image = make_lrs_image(sim)
    assert image.data.shape == (90, 40)
    sd = read_slit(image, image, variance_source="auto", drizzle_scale=1.0)
    assert sd.shape == (40, 90) and sd.disp_axis == 2
    np.testing.assert_allclose(sd.wavelength[20], sim.wavelength, rtol=1e-6)


def test_open_input_rejects_unusable_things(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_input(tmp_path / "missing_s2d.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match="cannot read .*junk.fits"):
        open_input(junk)
    with pytest.raises(InputError, match="not a spectral slit model"):
        open_input(datamodels.MultiSpecModel())
    with pytest.raises(InputError, match="contains no slits"):
        open_input(datamodels.MultiSlitModel())
