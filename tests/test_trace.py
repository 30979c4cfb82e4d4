import numpy as np
import pytest

from optimal_extract1d.core.coadd import coadd_bins
from optimal_extract1d.psf.evaluate import evaluate_template
from optimal_extract1d.psf.kernel import make_template
from optimal_extract1d.scene.trace import (
    MIN_BIN_SNR,
    SmoothModel,
    choose_bins,
    fit_bins,
    fit_smooth,
)


def test_bins_hold_equal_signal_and_cover_the_slit():
    snr = np.r_[np.full(100, 2.0), np.full(100, 20.0)]
    edges = choose_bins(snr, 10)
    assert edges[0] == 0 and edges[-1] == 200 and np.all(np.diff(edges) > 0)
    s2 = np.add.reduceat(snr**2, edges[:-1])
    assert s2.max() / s2.min() < 1.5  # equal shares of S/N^2
    assert np.sum(edges[:-1] < 100) < 3  # few bins where the signal is weak


def test_automatic_bin_count_follows_the_signal():
    assert len(choose_bins(np.full(400, 0.5), None)) - 1 == 1  # total S/N 10: one bin
    assert len(choose_bins(np.full(400, 10.0), None)) - 1 == 24  # capped at MAX_BINS
    assert len(choose_bins(np.full(400, 3.0), None)) - 1 == 16  # 60^2 / 15^2
    assert len(choose_bins(np.full(400, 1.0), None)) - 1 == 1  # 20^2 / 15^2 = 1.8


def test_a_faint_continuum_beside_bright_lines_gets_the_bins_its_own_snr_reaches():
    """Lines' S/N counted in the bin number split a faint continuum into unfit bins.

    CEERS 933: two bright lines set 24 bins, and the continuum got 19 of them at
    a first-pass S/N of 15 each that fitted to 3-10, under MIN_BIN_SNR.
    """
    from optimal_extract1d.scene.trace import TARGET_BIN_SNR

    snr = np.full(400, 2.0)  # continuum S/N^2 1600: 7 bins of 15
    for c in (120, 300):
        snr[c - 2 : c + 3] = (40.0, 110.0, 150.0, 110.0, 40.0)
    edges = choose_bins(snr, None)
    wide = np.diff(edges) > 1
    s2 = np.add.reduceat(snr**2, edges[:-1])
    assert wide.sum() <= 1600 // TARGET_BIN_SNR**2 + 2  # + the stretches the lines cut
    # every continuum bin but those cut short by a line reaches the target
    assert np.median(s2[wide]) >= 0.9 * TARGET_BIN_SNR**2
    # the lines' columns are still bins of their own
    assert {121, 122, 301, 302} <= set(edges.tolist())
    # a number of bins the user asks for is kept
    assert len(choose_bins(snr, 20)) - 1 >= 20


def test_smooth_model_clips_a_bin_by_its_own_precision():
    """A faint bin off by two of its errors stays; a bright one off by ten is clipped.

    Clipped by the residual in pixels, CEERS 933's one faint bin over the
    PRISM's red half (FWHM 4.6 px where its lines' are 2.2) was dropped and the
    lines' width held there.
    """
    rng = np.random.default_rng(3)
    x = np.linspace(1.0, 5.0, 12)
    snr = np.full(12, 40.0)
    snr[-1] = 5.0
    truth = 2.0 + 0.1 * x
    values = truth + rng.normal(0.0, 4.0 / snr)  # precision ~ width / S/N
    values[-1] = truth[-1] + 2 * 4.0 / snr[-1]  # faint, 1.6 px off: two of its errors
    model = fit_smooth(x, values, snr, order=1)
    assert model.n_clipped == 0
    values[3] += 10 * 4.0 / snr[3]  # bright, 1 px off: ten of its errors
    model = fit_smooth(x, values, snr, order=1)
    assert model.n_clipped == 1
    np.testing.assert_allclose(model(x[:-1]), truth[:-1], atol=0.1)


def _bin_profiles(centers, fwhm, amp, noise, rng, n_cross=31):
    t = make_template("gaussian")
    y = np.arange(n_cross, dtype=float)
    values = amp * evaluate_template(t, y, centers, fwhm=fwhm) + rng.normal(
        0, noise, (n_cross, centers.size)
    )
    return values, np.full(values.shape, noise)


def test_all_bins_fitted_at_once_recover_center_and_width(rng):
    centers = np.linspace(12.0, 16.0, 8)
    fwhm = np.linspace(1.6, 3.2, 8)
    values, sigma = _bin_profiles(centers, fwhm, 10.0, 0.05, rng)
    fits = fit_bins(
        make_template("gaussian"),
        values,
        sigma,
        bkg_order=0,
        center=14.0,
        fwhm=2.0,
        fit_center=True,
        fit_fwhm=True,
    )
    np.testing.assert_allclose(fits.center, centers, atol=0.02)
    np.testing.assert_allclose(fits.fwhm, fwhm, rtol=0.02)
    assert fits.good.all()


def test_faint_bins_are_not_trusted(rng):
    values, sigma = _bin_profiles(np.full(4, 15.0), np.full(4, 2.0), 10.0, 0.05, rng)
    values[:, 2] = rng.normal(0, 0.05, 31)  # no source in bin 2
    fits = fit_bins(
        make_template("gaussian"),
        values,
        sigma,
        bkg_order=-1,
        center=15.0,
        fwhm=2.0,
        fit_center=False,
        fit_fwhm=True,
    )
    assert fits.good.tolist() == [True, True, False, True]
    assert fits.snr[2] < MIN_BIN_SNR
    np.testing.assert_allclose(fits.center, 15.0)  # center held when only the width is fitted


def test_coadd_bins_is_the_weighted_mean():
    data = np.arange(12.0).reshape(2, 6)
    var = np.ones((2, 6))
    usable = np.ones((2, 6), bool)
    usable[0, 1] = False
    values, sigma = coadd_bins(data, var, usable, edges=np.array([0, 3, 6]))
    np.testing.assert_allclose(values, [[1.0, 4.0], [7.0, 10.0]])
    np.testing.assert_allclose(
        sigma, [[1 / np.sqrt(2), 1 / np.sqrt(3)], [1 / np.sqrt(3), 1 / np.sqrt(3)]]
    )


def test_smooth_model_clips_outliers_and_holds_beyond_the_range(rng):
    lam = np.linspace(1.0, 5.0, 12)
    truth = 1.5 + 0.3 * lam
    values = truth + rng.normal(0, 0.01, 12)
    values[5] += 2.0  # a wild bin
    model = fit_smooth(lam, values, np.ones(12), order=2)
    assert model.n_clipped >= 1
    np.testing.assert_allclose(model(lam), truth, atol=0.05)
    assert model(np.array([0.5]))[0] == pytest.approx(model(np.array([1.0]))[0])
    meta = model.to_meta()
    assert meta["order"] == 2 and len(meta["coeffs"]) == 3
    rebuilt = SmoothModel.from_meta(meta)
    assert rebuilt == model
    np.testing.assert_allclose(rebuilt(lam), model(lam))
    # the variable is a field, not the prose describing it
    assert SmoothModel.from_meta({**meta, "variable": "reworded"}).variable == "wavelength"
    column = fit_smooth(lam, values, np.ones(12), order=2, variable="column").to_meta()
    assert SmoothModel.from_meta({**column, "variable": ""}).variable == "column"
    # products written before the field existed are read by their description
    old = {k: v for k, v in meta.items() if k != "abscissa"}
    assert SmoothModel.from_meta(old) == model
    with pytest.raises(ValueError, match="abscissa"):
        SmoothModel.from_meta({**meta, "abscissa": "time"})


def test_smooth_model_lowers_the_order_for_few_bins():
    model = fit_smooth(np.array([2.0, 3.0]), np.array([1.0, 2.0]), np.ones(2), order=2)
    assert model.order == 0


def test_a_column_holding_a_whole_share_of_the_signal_is_a_bin_of_its_own():
    from optimal_extract1d.scene.trace import choose_bins

    snr = np.full(400, 0.6)
    snr[199:202] = (9.0, 30.0, 9.0)  # an emission line over a faint continuum
    edges = choose_bins(snr, None)
    assert 200 in edges and 201 in edges  # the peak column alone
    # a flat continuum is binned as before: equal shares, no single-column bins
    flat = choose_bins(np.full(400, 5.0), None)
    assert np.all(np.diff(flat) > 1)


def test_a_faint_line_gets_a_bin_once_the_bright_ones_took_theirs():
    from optimal_extract1d.scene.trace import choose_bins

    snr = np.full(400, 2.0)
    snr[49:52] = (20.0, 60.0, 20.0)  # a faint line in the blue
    for c in (220, 260, 330, 372):  # four bright ones in the red
        snr[c - 2 : c + 3] = (40.0, 110.0, 150.0, 110.0, 40.0)
    edges = choose_bins(snr, None)
    assert 50 in edges and 51 in edges  # the faint line's peak column alone
    assert 221 in edges and 222 in edges
    # the lines' columns are bins on top of the continuum's, which keep their budget
    assert np.sum(np.diff(edges) > 1) <= 24


def test_a_bin_whose_fit_fell_under_the_snr_its_width_needs_is_merged_into_a_neighbour():
    """CEERS 933 with no background: the red tail, placed at S/N 15, fitted to 9.4.

    Left out, its 3.3 px width held no weight and the lines' 2.1 px were held
    over the PRISM's red half. It is merged into its fainter neighbour; a
    line's column is never merged, and a stretch of continuum that a line cut
    from its bin joins the continuum on its own side.
    """
    from optimal_extract1d.scene.trace import plan_bins

    snr = np.full(400, 2.0)
    snr[198:203] = (40.0, 110.0, 150.0, 110.0, 40.0)  # a line
    plan = plan_bins(snr, None)
    assert plan.line.sum() >= 3 and np.all(np.diff(plan.edges)[plan.line] == 1)
    n = plan.line.size
    fitted = np.full(n, 14.0)
    fitted[plan.line] = 5.0  # a line's column under the floor stays a bin
    fitted[-1] = 9.4  # the red tail
    fitted[-2] = 12.0
    fitted[-3] = 11.0
    first_line = int(np.flatnonzero(plan.line)[0])
    fitted[first_line - 1] = np.nan  # a failed fit beside the line
    merged = plan.merged_where_faint(fitted)
    assert merged.edges[0] == 0 and merged.edges[-1] == 400
    assert merged.line.size == merged.edges.size - 1
    # the tail joined the fainter of its one neighbours, the bin before it
    assert plan.edges[-2] not in merged.edges and plan.edges[-3] in merged.edges
    # the failed bin beside the line joined the continuum before it, not the line
    assert plan.edges[first_line - 1] not in merged.edges
    assert plan.edges[first_line] in merged.edges
    # every line column is still a bin of its own
    for c in np.flatnonzero(plan.line):
        assert plan.edges[c] in merged.edges and plan.edges[c + 1] in merged.edges
    assert merged.line.sum() == plan.line.sum()
    # nothing under the floor: the plan itself
    assert plan.merged_where_faint(np.full(n, 14.0)) is plan
