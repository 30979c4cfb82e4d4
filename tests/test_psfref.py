import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst.datamodels import ImageModel

from optimal_extract1d.errors import ReferenceFileError
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file, write_psf_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_example_psf.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_example_psf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _profiles(n_wave=6):
    offsets = np.arange(-40, 41) / 4.0
    sigma = np.linspace(0.7, 1.3, n_wave)
    prof = np.exp(-0.5 * (offsets[:, None] / sigma[None, :]) ** 2)
    return prof, np.linspace(1.0, 5.0, n_wave)


def test_shipped_example_is_what_the_script_writes(tmp_path):
    if not SCRIPT.exists():
        pytest.skip("source checkout only")
    path = _script().main(tmp_path / "example.fits")
    fresh, shipped = read_psf_file(path).table("1", 1), read_psf_file(EXAMPLE_PSF).table("1", 1)
    # the same file up to the last bits numpy's and scipy's versions may round differently
    np.testing.assert_allclose(fresh.values, shipped.values, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fresh.wavelength, shipped.wavelength, rtol=1e-12, atol=0)
    assert EXAMPLE_PSF.stat().st_size < 300_000
    # NIRSpec PRISM-like: 0.6-5.3 um, FWHM growing with wavelength, oversampled 5x
    assert shipped.wavelength[0] == pytest.approx(0.6) and shipped.wavelength[-1] == 5.3
    assert 1.3 < shipped.fwhm(0.6) < shipped.fwhm(5.3) < 3.0
    assert shipped.step == pytest.approx(0.2)


def test_horizontal_and_vertical_files_give_the_same_table(tmp_path):
    prof, wave = _profiles()
    h = write_psf_file(tmp_path / "h.fits", prof, wave, subpix=4, center=40)
    v = write_psf_file(tmp_path / "v.fits", prof, wave, subpix=4, center=40, disp_axis=2)
    th = read_psf_file(h).table("any slit", 1)
    tv = read_psf_file(v).table("any slit", 2)
    np.testing.assert_allclose(th.values, tv.values)
    np.testing.assert_allclose(th.offsets, np.arange(-40, 41) / 4.0)
    np.testing.assert_allclose(th.values.sum(axis=0) * th.step, 1.0)  # unit integral
    with pytest.raises(ReferenceFileError, match=r"center_col \(CENTCOL\) is not set"):
        read_psf_file(h).table("S1", 2)  # a horizontal-only file for a MIRI LRS slit


def test_slit_name_matches_before_any_and_missing_aperture_is_an_error(tmp_path):
    prof, wave = _profiles()
    path = write_psf_file(tmp_path / "s200.fits", prof, wave, subpix=4, center=40, name="S200A1")
    ref = read_psf_file(path)
    assert ref.aperture("s200a1").name == "S200A1"  # case-insensitive, like jwst
    with pytest.raises(ReferenceFileError, match=r"s200.fits' has no aperture for slit '42'"):
        ref.aperture("42")


def test_wavelengths_beyond_the_table_are_logged(tmp_path, caplog):
    prof, wave = _profiles()
    ref = read_psf_file(write_psf_file(tmp_path / "p.fits", prof, wave, subpix=4, center=40))
    with caplog.at_level(logging.WARNING, logger="optimal_extract1d"):
        template = ref.template("S7", 1, np.linspace(3.0, 7.0, 100))
    assert template.name == "psf"
    assert "Slit S7" in caplog.text and "outside the PSF table" in caplog.text


def test_bad_files_raise_reference_file_errors_naming_them(tmp_path):
    with pytest.raises(ReferenceFileError, match="PSF file '.*nope.fits' does not exist"):
        read_psf_file(tmp_path / "nope.fits")
    text = tmp_path / "text.fits"
    text.write_text("not a FITS file")
    with pytest.raises(ReferenceFileError, match="cannot read PSF file .*text.fits.* SpecPsfModel"):
        read_psf_file(text)
    image = tmp_path / "image.fits"
    ImageModel(np.zeros((4, 4))).save(image)
    with pytest.raises(ReferenceFileError, match="image.fits' has no PSF apertures"):
        read_psf_file(image)
    prof, wave = _profiles()
    good = write_psf_file(tmp_path / "good.fits", prof, wave, subpix=4, center=40)
    for name, key, value, message in (
        ("subpix.fits", "SUBPIX", 0.0, "the oversampling factor subpix .SUBPIX. must be > 0"),
        ("center.fits", "CENTROW", None, "neither center_row"),
    ):
        with fits.open(good) as hdul:
            if value is None:
                del hdul["PSF"].header[key]
            else:
                hdul["PSF"].header[key] = value
            hdul.writeto(tmp_path / name)
        with pytest.raises(ReferenceFileError, match=f"{name}', aperture 0 .ANY.: {message}"):
            read_psf_file(tmp_path / name)
    with fits.open(good) as hdul:
        hdul["WAVE"].data = hdul["WAVE"].data[:-1]
        hdul.writeto(tmp_path / "wave.fits")
    with pytest.raises(ReferenceFileError, match="as long as one axis of the PSF image"):
        read_psf_file(tmp_path / "wave.fits")
