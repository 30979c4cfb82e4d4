"""Units of the input as older and odd products label them, and reading the x1d with specutils.

jwst 1.12 wrote resampled products with ``BUNIT = 'DN/s'`` although photom had
run (``S_PHOTOM = COMPLETE``): the data are MJy/sr, or MJy for a NIRSpec point
source, as jwst's ``extract_1d`` assumes. Such a product must give the same
FLUX in Jy as the one labelled correctly, and specutils must read it.
"""

import logging
import warnings

import numpy as np
import pytest
from conftest import median_ratio_tolerance
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.cli.batch import run_batch
from optimal_extract1d.errors import ParameterError
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

SIM = dict(n_disp=100, snr=50.0, fwhm=(2.0, 2.0))
_VARS = ("var_poisson", "var_rnoise", "var_flat")


@pytest.fixture
def sims(rng):
    return [simulate_slit(rng, spectrum=np.ones(100), **SIM) for _ in range(2)]


def _labelled(model, unit):
    """Set BUNIT (data and err) of the model and of every slit, as an older jwst wrote it."""
    for node in (model, *model.slits):
        node.meta.bunit_data = unit
        node.meta.bunit_err = unit
    return model


def _as_point_source_mjy(model):
    """NIRSpec point-source photom output: the data in MJy (MJy/sr x pixel solid angle)."""
    for slit in model.slits:
        slit.source_type = "POINT"
        slit.data = slit.data * PIXEL_AREA_SR
        slit.err = slit.err * PIXEL_AREA_SR
        for name in _VARS:
            setattr(slit, name, getattr(slit, name) * PIXEL_AREA_SR**2)
        slit.wht = slit.wht / PIXEL_AREA_SR**2  # Var = 1/WHT scales with the data
    return model


def _flux(x1d):
    return [np.asarray(s.spec_table["FLUX"]) for s in x1d.spec]


def _unit_lines(caplog, level):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("optimal_extract1d")
        and r.levelno == level
        and "unit" in r.getMessage()
    ]


def test_dn_per_s_label_after_photom_gives_the_same_jy_as_mjy_per_sr(sims, tmp_path, caplog):
    good, old = tmp_path / "good_s2d.fits", tmp_path / "old_s2d.fits"
    make_multislit(sims, filename=good.name).save(good)
    _labelled(make_multislit(sims, filename=old.name), "DN/s").save(old)
    with datamodels.open(old) as model:  # what the file says
        assert model.slits[0].meta.bunit_data == "DN/s" and model.meta.cal_step.photom == "COMPLETE"
    reference = OptimalExtract1dStep.call(str(good))
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        result = OptimalExtract1dStep.call(str(old))
    for spec in result.spec:
        assert spec.spec_table.columns["FLUX"].unit == "Jy"
        assert spec.spec_table.columns["SURF_BRIGHT"].unit == "MJy/sr"
    for got, want in zip(_flux(result), _flux(reference), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    truth = sims[0].flux * PIXEL_AREA_SR * 1e6
    assert abs(np.median(_flux(result)[0] / truth) - 1) < median_ratio_tolerance(sims[0])
    info = _unit_lines(caplog, logging.INFO)
    assert len(info) == 2 and "Slit 1:" in info[0]
    assert "taken as MJy/sr" in info[0] and "S_PHOTOM = COMPLETE" in info[0]
    assert _unit_lines(caplog, logging.WARNING) == []  # nothing for the batch to flag
    (done,) = run_batch([old], output_dir=tmp_path / "batch")
    assert [row.status for row in done.rows] == ["fit", "fit"]
    assert not any("unit" in row.warnings for row in done.rows)
    assert not any(row.needs_review for row in done.rows)


def test_dn_per_s_label_on_a_nirspec_point_source_is_read_as_mjy(sims, tmp_path, caplog):
    reference = OptimalExtract1dStep.call(make_multislit(sims))
    point = _labelled(_as_point_source_mjy(make_multislit(sims)), "DN/s")
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        result = OptimalExtract1dStep.call(point)
    assert "taken as MJy" in _unit_lines(caplog, logging.INFO)[0]
    assert "a NIRSpec point source" in _unit_lines(caplog, logging.INFO)[0]
    for spec, want in zip(result.spec, _flux(reference), strict=True):
        t = spec.spec_table
        assert t.columns["FLUX"].unit == "Jy"
        # the same scene fitted to data scaled by the pixel solid angle
        np.testing.assert_allclose(t["FLUX"], want, rtol=1e-6)
        assert np.all(t["SURF_BRIGHT"] == 0)  # jwst: no surface brightness from MJy


def test_input_unit_forces_the_unit_of_an_ambiguous_file(sims, tmp_path, caplog):
    reference = _flux(OptimalExtract1dStep.call(make_multislit(sims)))
    unlabelled = _labelled(make_multislit(sims), None)
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        forced = OptimalExtract1dStep.call(unlabelled, input_unit="MJy/sr")
    assert [s.spec_table.columns["FLUX"].unit for s in forced.spec] == ["Jy", "Jy"]
    for got, want in zip(_flux(forced), reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert "data taken as MJy/sr (input_unit), BUNIT says None" in caplog.text
    assert _unit_lines(caplog, logging.WARNING) == []
    # uncalibrated DN/s: a warning that says how to override, FLUX left in DN/s
    caplog.clear()
    raw = _labelled(make_multislit(sims), "DN/s")
    raw.meta.cal_step.photom = None
    for slit in raw.slits:
        slit.meta.cal_step.photom = None
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        counts = OptimalExtract1dStep.call(raw)
    assert counts.spec[0].spec_table.columns["FLUX"].unit == "DN/s"
    assert "set input_unit" in _unit_lines(caplog, logging.WARNING)[0]
    np.testing.assert_allclose(_flux(counts)[0] * PIXEL_AREA_SR * 1e6, reference[0], rtol=1e-12)
    # and the other way: calibrated data read as count rates when the user says so
    as_counts = OptimalExtract1dStep.call(make_multislit(sims), input_unit="DN/s")
    assert as_counts.spec[0].spec_table.columns["FLUX"].unit == "DN/s"
    np.testing.assert_allclose(_flux(as_counts)[0], _flux(counts)[0], rtol=1e-12)


def test_bad_input_unit_names_the_allowed_values(sims):
    with pytest.raises(ParameterError, match=r"input_unit .*'MJy/sr', 'MJy', 'DN/s'"):
        OptimalExtract1dStep.call(make_multislit(sims), input_unit="Jy")


def _spectrum_class(specutils):
    """``Spectrum`` (specutils >= 2), else ``Spectrum1D``."""
    return getattr(specutils, "Spectrum", None) or specutils.Spectrum1D


@pytest.mark.filterwarnings("error")
def test_specutils_reads_the_product_of_a_dn_per_s_labelled_s2d(sims, tmp_path):
    specutils = pytest.importorskip("specutils")
    old = tmp_path / "old_s2d.fits"
    _labelled(make_multislit(sims, filename=old.name), "DN/s").save(old)
    OptimalExtract1dStep.call(str(old), save_results=True, output_dir=str(tmp_path))
    spectra = specutils.SpectrumList.read(tmp_path / "old_x1d.fits", format="JWST x1d multi")
    assert len(spectra) == 2
    for spectrum, sim in zip(spectra, sims, strict=True):
        assert spectrum.flux.unit == "Jy" and spectrum.spectral_axis.unit == "um"
        truth = sim.flux * PIXEL_AREA_SR * 1e6
        assert abs(np.median(spectrum.flux.value / truth) - 1) < median_ratio_tolerance(sim)
        np.testing.assert_allclose(spectrum.spectral_axis.value, sim.wavelength, rtol=1e-6)


@pytest.mark.filterwarnings("error")
def test_specutils_reads_a_one_spectrum_x1d(sims, tmp_path):
    specutils = pytest.importorskip("specutils")
    one = tmp_path / "one_s2d.fits"
    _labelled(make_multislit(sims[:1], filename=one.name), "DN/s").save(one)
    x1d = OptimalExtract1dStep.call(str(one), save_results=True, output_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spectrum = _spectrum_class(specutils).read(tmp_path / "one_x1d.fits", format="JWST x1d")
    assert spectrum.flux.unit == "Jy"
    np.testing.assert_allclose(spectrum.flux.value, x1d.spec[0].spec_table["FLUX"])
    np.testing.assert_allclose(
        spectrum.uncertainty.array, x1d.spec[0].spec_table["FLUX_ERROR"], rtol=1e-12
    )
