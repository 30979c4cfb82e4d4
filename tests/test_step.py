import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits
from conftest import median_ratio_tolerance
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels
from stdatamodels.validate import ValidationWarning

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.errors import InputError, ParameterError, ReferenceFileError
from optimal_extract1d.io.inputs import open_input
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file, write_psf_file
from optimal_extract1d.sim.models import make_lrs_image, make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

SIM = dict(n_disp=100, snr=50.0, fwhm=(2.0, 2.0))


def truth_jy(sim):
    return sim.flux * PIXEL_AREA_SR * 1e6


@pytest.fixture
def sims(rng):
    return [simulate_slit(rng, spectrum=np.ones(100), **SIM) for _ in range(3)]


def _check_spectrum(spec, sim):
    t = spec.spec_table
    # 5 standard errors of the median ratio (conftest.median_ratio_tolerance): 0.0145
    # for 100 columns at S/N 50, where a flat 2 % was an 8-sigma window
    tol = median_ratio_tolerance(sim, bkg_order=spec.meta.optimal_extraction.bkg_order)
    assert abs(np.median(t["FLUX"] / truth_jy(sim)) - 1) < tol
    np.testing.assert_allclose(t["WAVELENGTH"], sim.wavelength, rtol=1e-6)


def test_multislit_input_one_spectrum_per_slit(sims):
    model = make_multislit(sims)
    before = model.slits[1].data.copy()
    result = OptimalExtract1dStep.call(model)
    assert isinstance(result, datamodels.MultiSpecModel)
    assert result.meta.cal_step.extract_1d == "COMPLETE"
    assert [s.name for s in result.spec] == ["1", "2", "3"]
    assert [s.source_id for s in result.spec] == [1, 2, 3]
    for spec, sim in zip(result.spec, sims, strict=True):
        _check_spectrum(spec, sim)
    np.testing.assert_array_equal(model.slits[1].data, before)  # input unchanged
    assert model.meta.cal_step.extract_1d is None


def test_slitmodel_and_container_inputs(sims):
    slit = make_multislit(sims[:1]).slits[0]
    slit_model = datamodels.SlitModel(slit.instance)
    slit_model.meta.exposure.type = "NRS_MSASPEC"
    single = OptimalExtract1dStep.call(slit_model)
    assert len(single.spec) == 1
    _check_spectrum(single.spec[0], sims[0])
    container = ModelContainer([make_multislit(sims[:2]), make_multislit(sims[2:])])
    multi = OptimalExtract1dStep.call(container)
    assert len(multi.spec) == 3
    for spec, sim in zip(multi.spec, sims, strict=True):
        _check_spectrum(spec, sim)


def test_imagemodel_with_vertical_dispersion(rng):
    sim = simulate_slit(
        rng,
        n_cross=41,
        n_disp=150,
        wavelength_range=(5.0, 12.0),
        spectrum=np.ones(150),
        snr=40.0,
        fwhm=(2.5, 2.5),
    )
    result = OptimalExtract1dStep.call(make_lrs_image(sim))
    spec = result.spec[0]
    assert spec.dispersion_direction == 2
    assert spec.name == "MIR_LRS-FIXEDSLIT"
    _check_spectrum(spec, sim)


def test_output_table_schema_and_units(sims, tmp_path):
    path = tmp_path / "sim_s2d.fits"
    make_multislit(sims).save(path)
    result = OptimalExtract1dStep.call(str(path))
    t = result.spec[0].spec_table
    expected = np.dtype(datamodels.SpecModel().get_dtype("spec_table"))
    assert t.dtype.names == expected.names
    assert [t.dtype[n].newbyteorder("=") for n in t.dtype.names] == [
        expected[n].newbyteorder("=") for n in expected.names
    ]
    units = {c.name: c.unit for c in t.columns}
    assert units["FLUX"] == "Jy" and units["FLUX_VAR_POISSON"] == "Jy^2"
    assert units["SURF_BRIGHT"] == "MJy/sr" and units["WAVELENGTH"] == "um"
    np.testing.assert_allclose(
        t["FLUX_ERROR"] ** 2, t["FLUX_VAR_POISSON"] + t["FLUX_VAR_RNOISE"] + t["FLUX_VAR_FLAT"]
    )
    assert np.all(t["NPIXELS"] == 29)  # 31 rows minus the NaN borders
    meta = result.spec[0].meta.optimal_extraction
    assert meta.kernel.kernel == "gaussian" and abs(meta.kernel.fwhm - 2.0) < 0.3
    assert result.meta.optimal_extraction.skipped_slits == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.validate()  # the whole model passes the schema (as on save)
    with pytest.warns(ValidationWarning):
        result.spec[0].source_id = "not an integer"  # later assignments are still validated


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. specutils' "SRCTYPE is missing"
def test_x1d_opens_with_specutils(sims, tmp_path):
    specutils = pytest.importorskip("specutils")
    path = tmp_path / "sim_s2d.fits"
    make_multislit(sims).save(path)
    x1d = OptimalExtract1dStep.call(str(path), save_results=True, output_dir=str(tmp_path))
    # a fitted kernel is a point-source profile: SRCTYPE says so for every spectrum
    assert [s.source_type for s in x1d.spec] == ["POINT"] * 3
    out = tmp_path / "sim_x1d.fits"
    spectra = specutils.SpectrumList.read(out, format="JWST x1d multi")
    assert len(spectra) == 3
    assert spectra[0].flux.unit == "Jy"
    tol = median_ratio_tolerance(sims[0])  # bkg_order 2: the widest of the modes' bounds
    assert abs(np.median(spectra[0].flux.value / truth_jy(sims[0])) - 1) < tol


def test_bad_input_and_parameters_raise_clear_errors(sims, tmp_path):
    with pytest.raises(InputError, match="not a spectral slit model"):
        OptimalExtract1dStep.call(datamodels.MultiSpecModel())
    with pytest.raises(ParameterError, match="outside slit '1'"):
        OptimalExtract1dStep.call(make_multislit(sims), extraction_region=[0, 0, 500, 10])


def test_a_file_cut_at_a_block_boundary_is_named_truncated_and_other_open_warnings_pass(
    sims, tmp_path, caplog
):
    model = make_multislit(sims)
    path = tmp_path / "cut_s2d.fits"
    model.save(path)
    raw = path.read_bytes()
    # whole 2880-byte blocks, cut inside the second slit's SCI data: only the reader's
    # own check of the headers against the file's size can tell
    with datamodels.open(path) as opened:
        assert len(opened.slits) == 3
    cut = (len(raw) // 2 // 2880) * 2880
    path.write_bytes(raw[:cut])
    with pytest.raises(InputError, match=r"cut_s2d\.fits' is truncated or corrupted: File may"):
        OptimalExtract1dStep.call(str(path))
    # a whole file whose header holds a value its schema rejects: stdatamodels' warning
    # reaches the caller once (stpipe logs it), and the slits are extracted
    model.save(path)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["EXP_TYPE"] = "NOT_A_MODE"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        open_input(str(path)).close()
    assert [w.category for w in record if "NOT_A_MODE" in str(w.message)] == [ValidationWarning]
    caplog.clear()
    result = OptimalExtract1dStep.call(str(path), bkg_order=0)
    assert len(result.spec) == 3
    logged = [r for r in caplog.records if "NOT_A_MODE" in r.getMessage()]
    assert len(logged) == 1 and "ValidationWarning" in logged[0].getMessage()


def test_strun_by_alias_offline(sims, tmp_path, strun):
    path = tmp_path / "offline_s2d.fits"
    make_multislit(sims).save(path)
    proc = strun("optimal_extract_1d", str(path), "--bkg_order=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "offline_x1d.fits"
    with datamodels.open(out) as x1d:
        assert len(x1d.spec) == 3
        assert x1d.spec[0].meta.optimal_extraction.bkg_order == 1
        _check_spectrum(x1d.spec[0], sims[0])


def test_profile_fits_through_the_step_with_vertical_dispersion(curved_widening):
    sim = curved_widening(
        n_disp=200,
        snr=40.0,
        n_cross=41,
        wavelength_range=(5.0, 12.0),
        fwhm=(2.0, 4.0),
        slope=0.0,
        center=19.0,
        cosmic_rays=10,
    )
    result = OptimalExtract1dStep.call(
        make_lrs_image(sim), fit_fwhm=True, fit_trace=True, bkg_order=1
    )
    spec = result.spec[0]
    meta = spec.meta.optimal_extraction
    assert meta.fwhm_model.order == 2 and meta.trace_model.order == 2
    assert meta.iteration.n_rejected >= 1
    _check_spectrum(spec, sim)
    lam = spec.spec_table["WAVELENGTH"]
    from optimal_extract1d.scene.trace import SmoothModel

    fwhm = SmoothModel.from_meta(meta.fwhm_model)
    # the fitted (point-sampled) FWHM tracks the injected one, which doubles
    assert fwhm(lam[-1]) / fwhm(lam[0]) > 1.7


@pytest.fixture(scope="module")
def psf_sims():
    rng = np.random.default_rng(7)
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    return [
        simulate_slit(rng, n_disp=200, snr=50.0, psf=table, spectrum=np.ones(200)) for _ in range(2)
    ]


def test_psf_kernel_through_the_step_beats_a_gaussian(psf_sims):
    model = make_multislit(psf_sims)
    psf = OptimalExtract1dStep.call(model, kernel="psf", psf_file=str(EXAMPLE_PSF))
    gauss = OptimalExtract1dStep.call(model, kernel="gaussian")
    for p, g, sim in zip(psf.spec, gauss.spec, psf_sims, strict=True):
        bias_psf = abs(np.median(p.spec_table["FLUX"] / truth_jy(sim)) - 1)
        bias_gauss = abs(np.median(g.spec_table["FLUX"] / truth_jy(sim)) - 1)
        assert bias_psf < 0.01 and bias_gauss > 0.03
        kernel = p.meta.optimal_extraction.kernel
        assert kernel.kernel == "psf" and kernel.psf.file == EXAMPLE_PSF.name
        assert abs(kernel.psf.scale - 1) < 0.03
    assert psf.meta.optimal_extraction.parameters.psf_file == str(EXAMPLE_PSF)


def test_auto_kernel_takes_a_given_psf_file_as_a_candidate(psf_sims, caplog):
    # kernel = "auto" (the default) with psf_file: the file's profiles are one more
    # family; on slits drawn from that PSF the criterion picks it, and the flux
    # matches the hand-picked kernel="psf" run, where a Gaussian misses the wings
    model = make_multislit(psf_sims)
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        auto = OptimalExtract1dStep.call(model, psf_file=str(EXAMPLE_PSF))
    assert "a candidate of kernel=auto" in caplog.text
    for spec, sim in zip(auto.spec, psf_sims, strict=True):
        meta = spec.meta.optimal_extraction
        assert meta.model_choice.kernel.chosen == "psf"
        assert meta.kernel.psf.file == EXAMPLE_PSF.name
        # fitted at the slice's own wavelength: the file's width, unstretched
        assert abs(meta.kernel.psf.scale - 1) < 0.03
        assert abs(np.median(spec.spec_table["FLUX"] / truth_jy(sim)) - 1) < 0.01


def test_auto_kernel_prefers_a_family_the_data_show_over_a_wrong_psf_file():
    # the file is a prior, not a rule: Gaussian slits keep the Gaussian
    rng = np.random.default_rng(8)
    sims = [simulate_slit(rng, n_disp=200, snr=100.0, fwhm=(3.0, 3.0)) for _ in range(2)]
    auto = OptimalExtract1dStep.call(make_multislit(sims), psf_file=str(EXAMPLE_PSF))
    for spec, sim in zip(auto.spec, sims, strict=True):
        assert spec.meta.optimal_extraction.model_choice.kernel.chosen != "psf"
        assert abs(np.median(spec.spec_table["FLUX"] / truth_jy(sim)) - 1) < 0.005


def test_strun_with_a_psf_file(psf_sims, tmp_path, strun):
    path = tmp_path / "psf_s2d.fits"
    make_multislit(psf_sims[:1]).save(path)
    proc = strun("optimal_extract_1d", str(path), "--kernel=psf", f"--psf_file={EXAMPLE_PSF}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with datamodels.open(tmp_path / "psf_x1d.fits") as x1d:
        assert x1d.spec[0].meta.optimal_extraction.kernel.psf.file == EXAMPLE_PSF.name
        ratio = x1d.spec[0].spec_table["FLUX"] / truth_jy(psf_sims[0])
        assert abs(np.median(ratio) - 1) < 0.01


def test_psf_kernel_with_vertical_dispersion_uses_center_col(tmp_path):
    example = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    lam = np.linspace(5.0, 12.0, example.wavelength.size)  # MIRI LRS-like wavelengths
    center = float(np.argmin(np.abs(example.offsets)))
    path = write_psf_file(
        tmp_path / "lrs_psf.fits", example.values, lam, subpix=5, center=center, disp_axis=2
    )
    table = read_psf_file(path).table("MIR_LRS-FIXEDSLIT", 2)
    rng = np.random.default_rng(11)
    sim = simulate_slit(
        rng,
        n_cross=41,
        n_disp=200,
        wavelength_range=(5.0, 12.0),
        spectrum=np.ones(200),
        snr=50.0,
        psf=table,
        center=19.4,
    )
    result = OptimalExtract1dStep.call(make_lrs_image(sim), kernel="psf", psf_file=str(path))
    spec = result.spec[0]
    assert spec.dispersion_direction == 2
    assert spec.meta.optimal_extraction.kernel.psf.file == "lrs_psf.fits"
    assert abs(np.median(spec.spec_table["FLUX"] / truth_jy(sim)) - 1) < 0.01
    with pytest.raises(ReferenceFileError, match=r"center_col \(CENTCOL\) is not set"):
        OptimalExtract1dStep.call(make_lrs_image(sim), kernel="psf", psf_file=str(EXAMPLE_PSF))


def test_psf_kernel_errors_name_the_problem(psf_sims, tmp_path):
    model = make_multislit(psf_sims)
    with pytest.raises(ParameterError, match="kernel='psf' needs psf_file"):
        OptimalExtract1dStep.call(model, kernel="psf")
    with pytest.raises(ReferenceFileError, match="PSF file '.*missing.fits' does not exist"):
        OptimalExtract1dStep.call(model, kernel="psf", psf_file=str(tmp_path / "missing.fits"))
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    other = write_psf_file(
        tmp_path / "s200a1.fits", table.values, table.wavelength, subpix=5, center=75, name="S200A1"
    )
    with pytest.raises(ReferenceFileError, match="s200a1.fits' has no aperture for slit '1'"):
        OptimalExtract1dStep.call(model, kernel="psf", psf_file=str(other))


def test_a_spectrum_the_schema_refuses_is_skipped_and_the_others_written(sims, monkeypatch, caplog):
    model = make_multislit(sims)
    model.slits[1].instance["source_name"] = 12.5  # not a string: refused under strict validation
    monkeypatch.setenv("STRICT_VALIDATION", "true")
    result = OptimalExtract1dStep.call(model)
    assert [s.name for s in result.spec] == [model.slits[0].name, model.slits[2].name]
    (skipped,) = result.meta.optimal_extraction.skipped_slits
    assert skipped.name == model.slits[1].name
    assert (
        "while writing the spectrum" in skipped.reason and "not of type 'string'" in skipped.reason
    )
    assert f"Slit {model.slits[1].name} skipped" in caplog.text


def test_the_input_is_kept_out_of_gc_scans_during_the_run_and_released_after(
    sims, tmp_path, monkeypatch
):
    import gc

    from optimal_extract1d import step as step_module

    path = tmp_path / "in_s2d.fits"
    make_multislit(sims).save(path)
    seen = []
    extract = step_module.extraction.extract

    def watched(model, *args, **kwargs):
        seen.append(gc.get_freeze_count())
        return extract(model, *args, **kwargs)

    monkeypatch.setattr(step_module.extraction, "extract", watched)
    assert gc.get_freeze_count() == 0
    result = OptimalExtract1dStep.call(str(path))
    assert seen[0] > 0  # the opened model was frozen while the slits were extracted
    assert gc.get_freeze_count() == 0  # and returned to the collector afterwards
    assert len(result.spec) == 3

    # a failing run releases it too
    def failing(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(step_module.extraction, "extract", failing)
    with pytest.raises(RuntimeError, match="boom"):
        OptimalExtract1dStep.call(str(path))
    assert gc.get_freeze_count() == 0

    # a host process that froze its own objects keeps them frozen, and nothing more
    monkeypatch.setattr(step_module.extraction, "extract", watched)
    gc.freeze()
    try:
        host = gc.get_freeze_count()
        OptimalExtract1dStep.call(str(path))
        # (frozen objects freed by reference counting leave the count; none join it)
        assert 0 < seen[-1] <= host
        assert 0 < gc.get_freeze_count() <= host
    finally:
        gc.unfreeze()
