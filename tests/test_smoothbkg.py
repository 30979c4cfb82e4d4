"""The background smooth along the dispersion (core.smoothbkg) and its choice by the criterion."""

import numpy as np
import pytest
from conftest import sky_slits

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.core.horne import extract_columns, polynomial_basis
from optimal_extract1d.core.smoothbkg import fit_smooth_background
from optimal_extract1d.errors import ParameterError
from optimal_extract1d.params import ExtractParams
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR


def _gaussian_profiles(n_cross, n_disp, centers):
    y = np.arange(n_cross)[:, None, None]
    c = np.asarray(centers, float)[None, None, :]
    prof = np.exp(-0.5 * ((y - c) / 1.3) ** 2) * np.ones((1, n_disp, 1))
    return prof / prof.sum(axis=0)


def test_joint_fit_equals_the_dense_least_squares_solution():
    # fluxes of three components in every column and a smooth background across
    # and along the slit, all at once: the per-column elimination is exact
    rng = np.random.default_rng(3)
    n_cross, n_disp, order = 15, 24, 3
    profiles = _gaussian_profiles(n_cross, n_disp, [7.0, 3.0, 11.0])
    basis = polynomial_basis(n_cross, 1)
    variance = rng.uniform(0.5, 2.0, (n_cross, n_disp))
    usable = rng.uniform(size=(n_cross, n_disp)) > 0.1
    data = rng.normal(size=(n_cross, n_disp)) + 5 * profiles[:, :, 0]
    fits = fit_smooth_background(
        data, variance, usable, profiles=profiles, basis=basis, orders=(1, order)
    )
    x = np.linspace(-1, 1, n_disp)
    tv = np.polynomial.legendre.legvander(x, order)
    rows, rhs = [], []
    for yy in range(n_cross):
        for xx in range(n_disp):
            if not usable[yy, xx]:
                continue
            local = np.zeros(n_disp * 3)
            local[xx * 3 : xx * 3 + 3] = profiles[yy, xx]
            glob = (tv[xx][:, None] * basis[yy][None, :]).ravel()
            w = 1 / np.sqrt(variance[yy, xx])
            rows.append(np.concatenate([local, glob]) * w)
            rhs.append(data[yy, xx] * w)
    a, b = np.array(rows), np.array(rhs)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    chi2 = float(np.sum((a @ sol - b) ** 2))
    coeffs = sol[n_disp * 3 :].reshape(order + 1, 2)
    image = basis @ (tv @ coeffs).T
    assert fits[order].chi2 == pytest.approx(chi2, rel=1e-8)
    np.testing.assert_allclose(fits[order].image, image, atol=1e-8)
    assert fits[order].n_params == 2 * (order + 1) and fits[1].chi2 > fits[order].chi2


def _truth_jy(sim):
    return sim.flux * PIXEL_AREA_SR * 1e6


def test_a_smooth_sky_costs_less_variance_with_errors_that_hold(rng):
    # bkg_smooth_order = 7: the background the slice chose (here a constant or a
    # slope), smooth along the dispersion instead of free in every column
    sims, sky = sky_slits(rng, 4, level=0.01, snr=30.0)
    model = make_multislit(sims)
    smooth = OptimalExtract1dStep.call(model, bkg_smooth_order=7)
    # the propagated variances alone (no residual error scale), smooth and per column
    plain = OptimalExtract1dStep.call(model, error_scale="none", bkg_smooth_order=7)
    columns = OptimalExtract1dStep.call(model, error_scale="none", bkg_smooth_order=-1)
    defaults = OptimalExtract1dStep.call(model)
    true_sky = sky.image(sims[0].data.shape[0], 300).mean(axis=0)
    pulls, ratios, bkg_ratios = [], [], []
    for s, p, c, d, sim in zip(
        smooth.spec, plain.spec, columns.spec, defaults.spec, sims, strict=True
    ):
        choice = s.meta.optimal_extraction.background_along_dispersion
        assert choice.chosen == 7 and choice.candidates[0].order == -1
        assert "background_along_dispersion" not in c.meta.optimal_extraction.instance
        # by default the criterion weighs the two: this sky (1.5 ripple periods along
        # the slit) is smooth, and a few terms for the slit win over 300 columns' own
        auto = d.meta.optimal_extraction.background_along_dispersion
        assert auto.candidates[0].order == -1 and auto.chosen >= 3
        t = s.spec_table
        ratios.append(np.nanmedian(p.spec_table["FLUX_ERROR"] / c.spec_table["FLUX_ERROR"]))
        bkg_ratios.append(np.nanmedian(p.spec_table["BKGD_ERROR"] / c.spec_table["BKGD_ERROR"]))
        pulls.append((t["FLUX"] - _truth_jy(sim)) / t["FLUX_ERROR"])
        assert abs(np.nanmedian(t["FLUX"] / _truth_jy(sim)) - 1) < 0.005
        # the BACKGROUND column is the sky's column mean, within its (correlated) error
        resid = (t["BACKGROUND"] - true_sky) / t["BKGD_ERROR"]
        assert np.nanmax(np.abs(resid)) < 5.0
    # the smooth background takes less of the flux's variance (a per-column constant
    # costs ~10 % of it) and is itself known far better than a per-column one ...
    assert np.all(np.array(ratios) < 0.98) and np.median(ratios) < 0.97
    assert np.all(np.array(bkg_ratios) < 0.3)
    # ... and the errors still describe the scatter
    assert 0.9 < np.nanstd(np.concatenate(pulls)) < 1.1


def test_bad_bkg_smooth_order_names_the_allowed_values():
    with pytest.raises(ParameterError, match="bkg_smooth_order must be 'auto' or"):
        ExtractParams(bkg_smooth_order="smooth")
    with pytest.raises(ParameterError, match="-1 = independent columns"):
        ExtractParams(bkg_smooth_order=-2)
    assert ExtractParams(bkg_smooth_order="7").bkg_smooth_order == 7


def test_a_sky_too_faint_for_the_slice_is_found_over_the_whole_slit():
    # at S/N 10 a 0.2 % sky does not pay for a constant in the 30 columns of the
    # kernel slice, but over 300 columns it does, and left out it biases every flux
    sims, _ = sky_slits(np.random.default_rng(12), 6, level=0.002, snr=10.0, fwhm=(2.0, 2.0))
    model = make_multislit(sims)
    x1d = OptimalExtract1dStep.call(model)
    found, ratios = 0, []
    for spec, sim in zip(x1d.spec, sims, strict=True):
        meta = spec.meta.optimal_extraction.instance
        choice = meta.get("background_along_dispersion")
        # the whole slit is asked for a sky where the slice chose no background (the
        # first candidate, what the sums fitted, is then none)
        if choice is not None and choice["candidates"][0]["order"] is None:
            assert choice["chosen"] is not None and choice["chosen"] >= 0
            assert meta["bkg_order"] == 0
            found += 1
        ratios.append(spec.spec_table["FLUX"] / _truth_jy(sim))
    assert found >= 3
    # without the whole-slit background those slits carry the sky (+0.8-2 %)
    unfound = OptimalExtract1dStep.call(model, bkg_smooth_order=-1)
    carried = [
        s.spec_table["FLUX"] / _truth_jy(sim) for s, sim in zip(unfound.spec, sims, strict=True)
    ]
    bias, bias_unfound = (np.nanmedian(np.concatenate(r)) - 1 for r in (ratios, carried))
    assert bias_unfound > 0.008 and abs(bias) < 0.6 * bias_unfound


def test_correlated_noise_does_not_buy_a_rippled_sky():
    # drizzle-like noise (neighbours correlated 0.44 along and across the slit) under
    # a sky constant along the dispersion: weighed against the per-pixel variance,
    # a ripple of the noise pays for Legendre degree 15 in most slits; the terms'
    # cost raised by the measured correlations keeps the sky smooth
    rng = np.random.default_rng(5)

    def chosen(correlated, **params):
        sims, _ = sky_slits(
            rng, 6, level=0.005, snr=30.0, ripple=0.0, periods=0.0, correlated=correlated
        )
        x1d = OptimalExtract1dStep.call(make_multislit(sims), **params)
        choices = [s.meta.optimal_extraction.background_along_dispersion for s in x1d.spec]
        return [c.chosen for c in choices], [c.noise_inflation.instance for c in choices]

    orders, inflation = chosen(0.6)
    assert all(o in (0, 1, 3) for o in orders)
    for f in inflation:  # (1 + 2 (0.44 + 0.06))^1 each way
        assert 1.7 < f["across"] < 2.4 and 1.7 < f["along"] < 2.4
    unweighed, _ = chosen(0.6, error_scale="none")
    assert sum(o is not None and o >= 7 for o in unweighed) >= 4
    # white noise: the terms cost what they did, but for the measurement's noise
    # (the sum of three lags' correlations, about +-0.1)
    orders, inflation = chosen(0.0)
    assert all(o in (0, 1) for o in orders)
    assert all(f["across"] < 1.3 and f["along"] < 1.3 for f in inflation)


def test_a_kernel_fitted_with_the_sky_in_it_is_refitted_without():
    # at S/N 10 a faint sky sloped across the slit may not pay for a constant in
    # the slice, whose Gaussian then takes it up; the whole slit finds the sky, and
    # the kernel is refitted on the data less it: else its fluxes carry the sky
    # (here +0.7 % on average over those slits, paired with an oracle on the same
    # noise: the true profile and variance on the data less the true sky)
    sims, sky = sky_slits(np.random.default_rng(21), 16, level=0.003, snr=10.0)
    x1d = OptimalExtract1dStep.call(make_multislit(sims))
    paired = []
    for spec, sim in zip(x1d.spec, sims, strict=True):
        choice = spec.meta.optimal_extraction.instance["background_along_dispersion"]
        if not choice.get("kernel_refitted"):
            continue
        # the slice chose no background, the whole slit a smooth one
        assert choice["candidates"][0]["order"] is None and choice["chosen"] is not None
        before, after = choice["kernel_refitted"]
        assert after < before  # the sky no longer widens the profile
        data = sim.data - sky.image(*sim.data.shape)
        ok = np.isfinite(data)
        oracle = extract_columns(
            np.where(ok, data, 0.0), sim.true_variance, sim.true_profile, mask=~ok
        )
        flux = spec.spec_table["FLUX"]
        paired.append(np.nanmedian((flux - oracle.flux * PIXEL_AREA_SR * 1e6) / _truth_jy(sim)))
    assert len(paired) >= 4
    assert abs(np.mean(paired)) < 0.0035
