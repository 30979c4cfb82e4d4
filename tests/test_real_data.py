"""Extraction of a real NIRSpec MOS s2d built from the CEERS 933 cutouts."""

import numpy as np
from ceers import CEERS_LINES_UM, requires_ceers
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep

pytestmark = requires_ceers


def test_real_s2d_has_the_expected_structure(ceers_s2d):
    with datamodels.open(ceers_s2d) as model:
        slit = model.slits[0]
        assert not slit.hasattr("dq")  # resample_spec writes no DQ: NaN marks bad pixels
        assert np.isnan(slit.data).any()
        assert slit.meta.bunit_data == "MJy/sr"


def test_emission_lines_come_out_positive_and_significant(ceers_s2d):
    result = OptimalExtract1dStep.call(str(ceers_s2d))
    (spec,) = result.spec
    t = spec.spec_table
    assert spec.source_id == 933 and spec.name == "138"
    for line in CEERS_LINES_UM:
        near = np.abs(t["WAVELENGTH"] - line) < 0.02
        peak = np.nanmax(t["FLUX"][near])
        err = t["FLUX_ERROR"][near][np.nanargmax(t["FLUX"][near])]
        # errors include the drizzle correlations (error_scale): ~1.7x the VAR_* ones
        assert peak > 0 and peak / err > 10, (line, peak, err)
    # line flux well above the continuum around it
    cont = np.nanmedian(t["FLUX"][(t["WAVELENGTH"] > 2.8) & (t["WAVELENGTH"] < 3.3)])
    assert np.nanmax(t["FLUX"][np.abs(t["WAVELENGTH"] - 3.43) < 0.02]) > 10 * abs(cont)
    assert spec.meta.optimal_extraction.status == "fit"


def test_nod_model_matches_the_positive_trace_alone(ceers_s2d):
    kw = dict(bkg_order=-1, fit_fwhm=True, fit_trace=True)
    (full,) = OptimalExtract1dStep.call(str(ceers_s2d), **kw).spec
    meta = full.meta.optimal_extraction
    offsets = sorted(c.offset for c in meta.kernel.components)
    assert all(c.kind == "nod" for c in meta.kernel.components)
    # the 3-shutter nod puts copies one and two shutters (5.3 px) away
    np.testing.assert_allclose(offsets, [-10.6, -5.3, 5.3, 10.6], atol=1.2)
    y = round(meta.source_position)
    (alone,) = OptimalExtract1dStep.call(
        str(ceers_s2d), extraction_region=[0, y - 2, 340, y + 3], **kw
    ).spec
    t, r = full.spec_table, alone.spec_table
    ok = np.isfinite(t["FLUX"]) & np.isfinite(r["FLUX"])
    pull = (t["FLUX"] - r["FLUX"])[ok] / r["FLUX_ERROR"][ok]
    assert abs(np.median(pull)) < 0.3 and np.median(np.abs(pull)) < 0.5
    for line in CEERS_LINES_UM:
        near = np.abs(t["WAVELENGTH"] - line) < 0.03
        f_full, f_alone = np.nansum(t["FLUX"][near]), np.nansum(r["FLUX"][near])
        err = np.sqrt(np.nansum(r["FLUX_ERROR"][near] ** 2))
        assert abs(f_full - f_alone) < 2 * err, (line, f_full, f_alone, err)


def test_ceers_labelled_dn_per_s_after_photom_gives_the_same_jy(ceers_s2d, tmp_path):
    """The real s2d as jwst 1.12 would label it: BUNIT 'DN/s' on the slit, S_PHOTOM COMPLETE."""
    reference = OptimalExtract1dStep.call(str(ceers_s2d)).spec[0].spec_table
    with datamodels.open(ceers_s2d) as model:
        model.meta.cal_step.photom = "COMPLETE"
        for slit in model.slits:
            slit.meta.bunit_data = slit.meta.bunit_err = "DN/s"
        old = tmp_path / "ceers_dn_s2d.fits"
        model.save(old)
    t = OptimalExtract1dStep.call(str(old)).spec[0].spec_table
    assert t.columns["FLUX"].unit == "Jy" and t.columns["SURF_BRIGHT"].unit == "MJy/sr"
    np.testing.assert_allclose(t["FLUX"], reference["FLUX"], rtol=1e-12)
    np.testing.assert_allclose(t["FLUX_ERROR"], reference["FLUX_ERROR"], rtol=1e-12)


def test_the_red_half_of_the_prism_keeps_the_flux_a_box_measures(ceers_s2d):
    """With no parameters, 4-5.3 um holds what a +-3 px box around the trace holds.

    CEERS 933's continuum is twice as wide there (FWHM ~4.6 px) as its lines
    (~2.2 px). Its bins were placed for S/N 15 and fitted (nod copies, sky) to
    3-10, so none covered the red half, and the one that did once placed at the
    fits' S/N was clipped for its distance in pixels: the lines' width, held
    over the red half, gave 0.68 of the box. The box (no nod copy within 3 px)
    and the extraction share their pixels: their ratio scatters by ~7 %.
    """
    (spec,) = OptimalExtract1dStep.call(str(ceers_s2d)).spec
    t, meta = spec.spec_table, spec.meta.optimal_extraction
    assert meta.fwhm_model.valid[1] > 5.0  # the width is modelled, not held, out there
    bins = meta.bins
    assert any(g and w > 4.5 for g, w in zip(bins.good, bins.wavelength_um, strict=True))
    with datamodels.open(ceers_s2d) as model:
        data = model.slits[0].data
    per_pixel = np.nanmedian(t["FLUX"] / (t["SURF_BRIGHT"] * t["NPIXELS"]))  # Jy per MJy/sr
    rows = np.arange(data.shape[0])[:, None]
    near = np.abs(rows - meta.source_position) <= 3
    box = np.nansum(np.where(near, data, 0.0), axis=0) * per_pixel
    red = np.flatnonzero(t["WAVELENGTH"] > 4.0)
    ratio = np.nansum(t["FLUX"][red]) / np.sum(box[red])
    assert 0.85 < ratio < 1.15, ratio
