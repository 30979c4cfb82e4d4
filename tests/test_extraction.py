import logging

import numpy as np
import pytest
from conftest import slit_data_from_sim

from optimal_extract1d.extraction import extract_slit
from optimal_extract1d.params import ExtractParams
from optimal_extract1d.results import DQ_DO_NOT_USE, DQ_FALLBACK
from optimal_extract1d.simulate import simulate_slit


@pytest.mark.parametrize("shape", ["gaussian", "moffat"])
def test_flux_recovered_within_one_percent_at_snr_50(rng, shape):
    sim = simulate_slit(
        rng, n_disp=200, snr=50.0, fwhm=(2.0, 2.0), shape=shape, spectrum=np.ones(200)
    )
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(kernel=shape))
    ratio = res.flux / sim.flux
    assert abs(np.median(ratio) - 1.0) < 0.01
    assert res.metadata["status"] == "fit"
    assert abs(res.metadata["kernel"]["center"] - 15.0) < 0.1


def test_error_bars_calibrated_over_200_realizations():
    rng = np.random.default_rng(2024)
    pulls = []
    for _ in range(200):
        sim = simulate_slit(
            rng, n_cross=21, n_disp=40, snr=30.0, fwhm=(2.0, 2.0), spectrum=np.ones(40)
        )
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(slice_width=40))
        pulls.append((res.flux - sim.flux) / res.error)
    pulls = np.concatenate(pulls)
    assert abs(np.std(pulls) - 1.0) < 0.1


def test_extraction_region_restricts_rows_and_columns(flat_sim):
    params = ExtractParams(extraction_region=(10, 8, 59, 22))
    (res,) = extract_slit(slit_data_from_sim(flat_sim), params)
    assert res.flux.shape == (50,)
    assert res.region == (10, 8, 59, 22)
    assert abs(np.median(res.flux / flat_sim.flux[10:60]) - 1.0) < 0.02


def test_no_signal_falls_back_to_fixed_kernel_and_says_so(rng, caplog):
    sim = simulate_slit(rng, n_disp=80, snr=50.0, spectrum=np.ones(80), peak_flux=1.0)
    empty = slit_data_from_sim(
        sim, data=sim.data - sim.flux[None, :] * sim.true_profile, name="blank"
    )
    with caplog.at_level(logging.WARNING, logger="optimal_extract1d"):
        (res,) = extract_slit(empty, ExtractParams())
    assert res.metadata["status"] == "fixed_kernel"
    assert "significant" in res.metadata["fallback_reason"]
    assert np.all(res.dq & DQ_FALLBACK)
    assert "blank" in caplog.text and "falling back" in caplog.text
    # pure noise: fluxes scatter around zero within their errors
    assert abs(np.mean(res.flux / res.error)) < 0.5


def test_all_masked_slit_gives_nan_flux_and_do_not_use(flat_sim):
    sd = slit_data_from_sim(flat_sim, mask=np.ones(flat_sim.data.shape, bool))
    (res,) = extract_slit(sd, ExtractParams())
    assert np.all(np.isnan(res.flux))
    assert np.all(res.dq & DQ_DO_NOT_USE)
    assert res.metadata["status"] == "box"


def test_user_slice_column_is_used(flat_sim):
    (res,) = extract_slit(slit_data_from_sim(flat_sim), ExtractParams(slice_column=40))
    assert res.metadata["slice_column"] == 40
