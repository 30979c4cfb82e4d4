"""Property tests (hypothesis) on the pure core and on `extract_slit` end to end.

The number of examples comes from the hypothesis profile loaded in
``conftest.py`` ("ci" by default: 1000 per core property; the end-to-end
properties and the kernel fit, which fit a kernel per example, run a tenth of
that, the parameter checks a quarter).

Every property names the exceptions it allows, by exact type; any other one,
a bare `OptimalExtractError` included, is a leak and fails it:

* the Horne sums (`extract_columns`, `normalize_profile`): none, whatever the input;
* the parameters (`ExtractParams`, `check_region`, `check_slice`): `ParameterError`;
* the kernel fit to one slice (`fit_kernel`), the unit whose failure is reported:
  `ProfileFitError`;
* a whole-slit extraction (`extract_slit`) with checked parameters: none -- a
  kernel that cannot be fitted becomes a fixed-kernel or box fallback.

A leak the properties found is pinned by regression tests at the end.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import slit_data_from_sim
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optimal_extract1d.core.horne import extract_columns, polynomial_basis, usable_pixels
from optimal_extract1d.core.profile import normalize_profile
from optimal_extract1d.errors import ParameterError, ProfileFitError
from optimal_extract1d.params import (
    ERROR_SCALES,
    KERNELS,
    VARIANCE_SOURCES,
    ExtractParams,
    check_region,
    check_slice,
)
from optimal_extract1d.pipeline.extraction import extract, extract_slit
from optimal_extract1d.psf.evaluate import evaluate_template
from optimal_extract1d.psf.kernel import make_template
from optimal_extract1d.psf.profilefit import MIN_KERNEL_SNR, fit_kernel
from optimal_extract1d.results import DQ_DO_NOT_USE
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import simulate_slit

END_TO_END = settings(max_examples=max(20, settings().max_examples // 10))
# The parameter checks: a quarter (250 in "ci"; hypothesis's own drawing dominates).
QUARTER = settings(max_examples=max(50, settings().max_examples // 4))
SPECIALS = st.sampled_from([np.nan, np.inf, -np.inf])
# A usable pixel whose profile value is above this must give a finite flux;
# below it P**2 / V may underflow to 0 and the column may be reported empty.
MEANINGFUL_P = 1e-100

# ------------------------------------------------------------------------------------
# Strategies


@st.composite
def shapes(draw, max_cross=12, max_disp=6):
    return draw(st.integers(1, max_cross)), draw(st.integers(1, max_disp))


@st.composite
def profiles(draw, shape):
    """A normalized profile: random non-negative values, or a PSF template at random places."""
    n_cross, n_disp = shape
    if draw(st.booleans()):
        raw_values = st.one_of(st.floats(-1.0, 10.0), st.just(0.0), SPECIALS)
        raw = draw(arrays(np.float64, shape, elements=raw_values))
    else:
        template = make_template(draw(st.sampled_from(["gaussian", "moffat"])))
        centers = draw(arrays(np.float64, n_disp, elements=st.floats(-5.0, n_cross + 5.0)))
        fwhm = draw(arrays(np.float64, n_disp, elements=st.floats(0.3, 30.0)))
        raw = evaluate_template(template, np.arange(n_cross, dtype=float), centers, fwhm=fwhm)
    return normalize_profile(raw)


@st.composite
def images(draw, shape, sprinkle=True):
    """Data, variance and mask with NaN/inf sprinkles and bad variances."""
    data_values = st.floats(-1e6, 1e6)
    var_values = st.floats(1e-6, 1e6)
    if sprinkle:
        data_values = st.one_of(data_values, SPECIALS)
        var_values = st.one_of(var_values, st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf]))
    data = draw(arrays(np.float64, shape, elements=data_values))
    variance = draw(arrays(np.float64, shape, elements=var_values))
    mask = draw(arrays(np.bool_, shape, elements=st.sampled_from([False, False, True])))
    return data, variance, mask


@st.composite
def horne_inputs(draw, sprinkle=True):
    shape = draw(shapes())
    data, variance, mask = draw(images(shape, sprinkle))
    profile = draw(profiles(shape))
    order = draw(st.integers(-1, 3))
    basis = polynomial_basis(shape[0], order) if order >= 0 else None
    return data, variance, profile, mask, basis


def _under_profile(profile, usable, threshold):
    return np.any(usable & (profile > threshold), axis=0)


@contextmanager
def quiet():
    """The core must not leak numpy RuntimeWarnings (overflow, divide, invalid)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


# ------------------------------------------------------------------------------------
# Core Horne sums


@given(horne_inputs())
def test_horne_sums_are_never_inf_and_variances_never_negative(inputs):
    data, variance, profile, mask, basis = inputs
    copies = [a.copy() for a in (data, variance, profile, mask)]
    with quiet():
        out = extract_columns(data, variance, profile, mask=mask, bkg_basis=basis)
        propagated = out.propagate(variance)
    for value in (out.flux, out.variance, out.mean_background, out.background):
        assert not np.any(np.isinf(value))
    for var in (out.variance, propagated, out.propagate_background(variance)):
        assert not np.any(np.isinf(var))
        assert not np.any(var < 0)
    assert np.all(np.isnan(out.flux) == np.isnan(out.variance))
    for before, after in zip(copies, (data, variance, profile, mask), strict=True):
        np.testing.assert_array_equal(before, after)  # inputs untouched


@given(horne_inputs())
def test_flux_is_nan_only_where_no_usable_pixel_is_under_the_profile(inputs):
    data, variance, profile, mask, basis = inputs
    with quiet():
        out = extract_columns(data, variance, profile, mask=mask, bkg_basis=basis)
    usable = usable_pixels(data, variance, mask)
    nothing = ~_under_profile(profile, usable, 0.0)
    something = _under_profile(profile, usable, MEANINGFUL_P)
    assert np.all(np.isnan(out.flux[nothing]))
    assert np.all(np.isfinite(out.flux[something]))
    np.testing.assert_array_equal(out.empty, np.isnan(out.flux))
    np.testing.assert_array_equal(out.npixels, usable.sum(axis=0))


@given(shapes(), st.integers(-1, 3), st.data())
def test_any_float64_input_gives_no_inf_and_no_negative_variance(shape, order, draw):
    # Magnitudes from subnormal to 1.8e308 in data, variance and the raw profile.
    data, variance, raw = (
        draw.draw(arrays(np.float64, shape, elements=ANY_FLOAT), label=label)
        for label in ("data", "variance", "raw profile")
    )
    mask = draw.draw(arrays(np.bool_, shape), label="mask")
    basis = polynomial_basis(shape[0], order) if order >= 0 else None
    with quiet():
        profile = normalize_profile(raw)
        out = extract_columns(data, variance, profile, mask=mask, bkg_basis=basis)
        variances = [out.variance, out.propagate(variance), out.propagate_background(variance)]
    assert np.all(np.isfinite(profile)) and np.all(profile >= 0)
    for values in (out.flux, out.mean_background, *variances):
        assert not np.any(np.isinf(values))
    for var in variances:
        assert not np.any(var < 0)
    usable = usable_pixels(data, variance, mask)
    assert np.all(np.isnan(out.flux[~_under_profile(profile, usable, 0.0)]))


@given(horne_inputs(sprinkle=False), st.floats(-1e4, 1e4), st.data())
def test_noise_free_profile_times_flux_gives_the_flux(inputs, flux, data_strategy):
    _, variance, profile, mask, basis = inputs
    shape = profile.shape
    coeffs = (
        np.zeros(0)
        if basis is None
        else np.asarray(
            data_strategy.draw(
                arrays(np.float64, basis.shape[1], elements=st.floats(-100.0, 100.0)), label="bkg"
            )
        )
    )
    background = np.zeros(shape) if basis is None else (basis @ coeffs)[:, None] * np.ones(shape)
    image = flux * profile + background
    garbage = data_strategy.draw(st.sampled_from([np.nan, np.inf, 1e30]), label="garbage")
    image = np.where(mask, garbage, image)  # masked pixels must not matter
    out = extract_columns(image, variance, profile, mask=mask, bkg_basis=basis)
    usable = usable_pixels(image, variance, mask)
    # Where the background terms were dropped (degenerate with the profile over
    # the usable pixels) the split between source and background is not unique.
    check = _under_profile(profile, usable, 1e-3) & ~out.background_dropped
    assume(np.any(check))
    if basis is None:  # Horne's sums: exact to rounding
        np.testing.assert_allclose(out.flux[check], flux, rtol=1e-9, atol=1e-9)
    else:
        # The weighted fit with a background is exact up to the conditioning of
        # its normal equations (pixel variances in a column can span 12 decades
        # here); the numerical error must be negligible against the error bar.
        error = np.abs(out.flux[check] - flux) / np.sqrt(out.variance[check])
        assert np.all(error < 1e-3), error.max()


@given(horne_inputs())
def test_without_background_the_variance_is_horne_eq_9(inputs):
    data, variance, profile, mask, _ = inputs
    out = extract_columns(data, variance, profile, mask=mask)
    usable = usable_pixels(data, variance, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.sum(np.where(usable, profile**2 / np.where(usable, variance, 1.0), 0.0), axis=0)
    ok = ~out.empty
    np.testing.assert_allclose(out.variance[ok], 1.0 / inv[ok], rtol=1e-9)
    np.testing.assert_allclose(out.propagate(variance)[ok], out.variance[ok], rtol=1e-7)


# ------------------------------------------------------------------------------------
# extract_slit end to end


@st.composite
def slits(draw):
    n_cross, n_disp = draw(shapes(max_cross=15, max_disp=25))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sim = simulate_slit(
        rng,
        n_cross=n_cross,
        n_disp=n_disp,
        spectrum=np.ones(n_disp),
        snr=draw(st.floats(0.5, 200.0)),
        fwhm=(draw(st.floats(0.8, 6.0)),) * 2,
        center=draw(st.floats(-2.0, n_cross + 1.0)),
        nan_border=draw(st.integers(0, 2)),
        cosmic_rays=draw(st.integers(0, min(3, n_cross * n_disp))),
    )
    shape = sim.data.shape
    data, variance, mask = draw(images(shape))
    use_data = draw(arrays(np.bool_, shape))
    var = sim.var_poisson + sim.var_rnoise + sim.var_flat
    return slit_data_from_sim(
        sim,
        data=np.where(use_data, sim.data, data),
        variance=np.where(draw(arrays(np.bool_, shape)), var, variance),
        mask=mask | ~np.isfinite(sim.data),
    )


@st.composite
def params(draw, shape):
    """Valid parameters for a slit of ``shape``; the region and slice may not fit it."""
    n_cross, n_disp = shape
    region = None
    if draw(st.booleans()):
        x1, x2 = sorted(draw(st.integers(0, n_disp)) for _ in range(2))
        y1, y2 = sorted(draw(st.integers(0, n_cross)) for _ in range(2))
        region = (x1, y1, x2, y2)
    positions = st.lists(st.floats(-3.0, n_cross + 3.0), min_size=1, max_size=3).map(tuple)
    return ExtractParams(
        extraction_region=region,
        slice_width=draw(st.integers(1, 40)),
        slice_column=draw(st.none() | st.integers(0, n_disp)),
        kernel=draw(st.sampled_from(["gaussian", "moffat", "empirical"])),
        bkg_order=draw(st.integers(-1, 3)),
        fit_fwhm=draw(st.booleans()),
        fwhm_order=draw(st.integers(0, 3)),
        fit_trace=draw(st.booleans()),
        trace_order=draw(st.integers(0, 3)),
        n_bins=draw(st.none() | st.integers(1, 30)),
        reject_sigma=draw(st.floats(1.0, 10.0)),
        max_iter=draw(st.integers(0, 6)),
        model_nods=draw(st.booleans()),
        source_positions=draw(st.none() | positions),
        detect_threshold=draw(st.floats(1.0, 20.0)),
        error_scale=draw(st.sampled_from(ERROR_SCALES)),
    )


@END_TO_END
@given(slits(), st.data())
def test_extract_slit_with_checked_parameters_raises_nothing_nor_returns_inf(slit, data):
    p = data.draw(params(slit.shape), label="params")
    try:  # what `extraction.extract` checks against every slit before any work
        check_region(p, slit.shape, "sim")
        check_slice(p, slit.shape, "sim", disp_axis=1)
    except ParameterError:
        return
    results = extract_slit(slit, p)
    assert len(results) >= 1
    for res in results:
        assert res.flux.shape == (slit.cropped(p.extraction_region).shape[1],)
        for values in (res.flux, res.var_poisson, res.var_rnoise, res.var_flat, res.background):
            assert not np.any(np.isinf(values))
        for var in (res.var_poisson, res.var_rnoise, res.var_flat, res.bkg_var_rnoise):
            assert not np.any(var < 0)
        assert res.dq.dtype == np.uint32
        assert np.all(res.dq[np.isnan(res.flux)] & DQ_DO_NOT_USE)
        assert res.metadata["status"] in ("fit", "fixed_kernel", "box")


# ------------------------------------------------------------------------------------
# Parameters and the kernel fit: only their own error types


@st.composite
def raw_params(draw):
    """Parameter values of the right types (as the step's spec guarantees), valid or not."""
    ints, floats = st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True)
    return dict(
        extraction_region=draw(st.none() | st.lists(ints, min_size=3, max_size=5).map(tuple)),
        slice_width=draw(ints),
        slice_column=draw(st.none() | ints),
        kernel=draw(st.sampled_from([*KERNELS, "boxcar", ""])),
        psf_file=draw(st.sampled_from([None, "", "psf.fits"])),
        bkg_order=draw(ints),
        variance_source=draw(st.sampled_from([*VARIANCE_SOURCES, "VAR"])),
        drizzle_scale=draw(floats),
        fwhm_order=draw(ints),
        trace_order=draw(ints),
        n_bins=draw(st.none() | ints),
        reject_sigma=draw(floats),
        max_iter=draw(ints),
        source_positions=draw(st.none() | st.lists(floats, max_size=3).map(tuple)),
        detect_threshold=draw(floats),
        error_scale=draw(st.sampled_from([*ERROR_SCALES, "scaled"])),
    )


@QUARTER
@given(raw_params(), shapes(max_cross=40, max_disp=60), st.sampled_from([1, 2]))
def test_parameters_raise_parameter_error_and_nothing_else(values, shape, disp_axis):
    try:
        p = ExtractParams(**values)
    except ParameterError:
        return
    # accepted: then every documented constraint holds
    assert p.slice_width >= 1 and p.bkg_order >= -1 and p.reject_sigma > 0
    assert p.detect_threshold > 0 and p.drizzle_scale > 0
    assert min(p.fwhm_order, p.trace_order, p.max_iter) >= 0
    assert p.source_positions is None or (
        p.source_positions and np.all(np.isfinite(p.source_positions))
    )
    assert p.extraction_region is None or len(p.extraction_region) == 4
    ny, nx = shape if disp_axis == 1 else shape[::-1]
    try:
        check_region(p, (ny, nx), "sim")
        check_slice(p, (ny, nx), "sim", disp_axis=disp_axis)
    except ParameterError:
        return


@st.composite
def slices(draw):
    """A coadded slice: a source (and maybe others) in noise, with bad pixels sprinkled."""
    n = draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = np.arange(n, dtype=float)
    flux, center = draw(st.floats(-100.0, 1e4)), draw(st.floats(-3.0, n + 3.0))
    sigma_psf = draw(st.floats(0.5, 8.0)) / 2.3548
    values = flux * np.exp(-0.5 * ((y - center) / sigma_psf) ** 2)
    for offset in draw(st.lists(st.floats(-n, n), max_size=2)):
        ratio = draw(st.floats(-1.0, 1.0))
        values = values + ratio * flux * np.exp(-0.5 * ((y - center - offset) / sigma_psf) ** 2)
    sigma = np.full(n, draw(st.floats(1e-3, 100.0)))
    values = values + sigma * rng.standard_normal(n)
    rarely = st.sampled_from([False, False, False, False, True])
    bad_values = st.one_of(st.floats(-1e6, 1e6), SPECIALS)
    bad_sigma = st.one_of(st.floats(1e-6, 1e6), st.sampled_from([0.0, -1.0, np.nan, np.inf]))
    values = np.where(
        draw(arrays(np.bool_, n, elements=rarely)),
        draw(arrays(np.float64, n, elements=bad_values)),
        values,
    )
    sigma = np.where(
        draw(arrays(np.bool_, n, elements=rarely)),
        draw(arrays(np.float64, n, elements=bad_sigma)),
        sigma,
    )
    return values, sigma


@END_TO_END
@given(slices(), st.data())
def test_kernel_fit_raises_profile_fit_error_and_nothing_else(values_sigma, data):
    values, sigma = values_sigma
    n = values.size
    bkg_order = data.draw(st.integers(-1, 3), label="bkg_order")
    kwargs = dict(
        bkg_order=bkg_order,
        center=data.draw(st.none() | st.floats(-5.0, n + 5.0), label="center"),
        fwhm=data.draw(st.none() | st.floats(0.3, 30.0), label="fwhm"),
        offsets=tuple(data.draw(st.lists(st.floats(-n, n), max_size=3), label="offsets")),
    )
    template = make_template(data.draw(st.sampled_from(["gaussian", "moffat"]), label="kernel"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy/astropy overflow on the way
            fit = fit_kernel(template, values, sigma, **kwargs)
    except ProfileFitError:
        return
    # a fit that is returned is a usable one
    assert np.isfinite(fit.center) and -0.5 <= fit.center <= n - 0.5
    assert 0 < fit.fwhm < n and fit.flux > 0 and fit.snr >= MIN_KERNEL_SNR


# ------------------------------------------------------------------------------------
# Regressions found by the fuzzer (kept as plain tests: the example database is local)


def test_moffat_fit_to_a_flat_slice_falls_back_instead_of_overflowing():
    # alpha ran off to <= 0 or ~0: 2 ** (1 / alpha) raised OverflowError.
    template = make_template("moffat")
    for bkg_order in (-1, 0):
        with pytest.raises(ProfileFitError, match="unusable shape|valid pixels"):
            fit_kernel(template, np.full(5, 24.0), np.ones(5), bkg_order=bkg_order)


def test_diverging_moffat_fit_falls_back_instead_of_raising_astropy_errors():
    # One deep negative pixel: the model diverged and astropy raised NonFiniteValueError.
    values = np.ones(15)
    values[7] = -9927.5  # as found (shrunk) by hypothesis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy/astropy overflow on the way
        with pytest.raises(ProfileFitError, match="does not describe the slice"):
            fit_kernel(make_template("moffat"), values, np.ones(15), bkg_order=0)


def test_extreme_magnitudes_give_nan_or_finite_never_inf():
    # Found by the fuzzer: each of these returned inf (or a zero profile) before.
    np.testing.assert_allclose(normalize_profile(np.full((2, 1), 8.9e307)), 0.5)
    one = np.ones((1, 1))
    with quiet():
        subnormal_var = extract_columns(one, np.full((1, 1), 5e-324), one, mask=one < 0)
        huge = extract_columns(
            np.full((2, 1), 1e300),
            np.full((2, 1), 1e-300),
            np.full((2, 1), 0.5),
            mask=np.zeros((2, 1), bool),
        )
        beyond = extract_columns(
            np.array([[1e300], [0.0]]),
            np.ones((2, 1)),
            np.array([[1e-10], [1 - 1e-10]]),
            mask=np.array([[False], [True]]),
        )
    assert np.isnan(subnormal_var.flux[0]) and subnormal_var.npixels[0] == 0
    np.testing.assert_allclose(huge.flux, 2e300)
    np.testing.assert_allclose(huge.variance, 2e-300)
    assert np.isnan(beyond.flux[0]) and beyond.empty[0]  # 1e310 is beyond float64


# A leak found by the properties above, fixed: with bkg_order=-1 a starting-center grid
# point whose profile misses every valid pixel made the normal matrix singular, and
# numpy's LinAlgError escaped the kernel fit and the whole-slit extraction.


def _source_near_the_edge():
    """A source at row 2 of a 30-row slit (rows 8-29 are to be masked)."""
    return simulate_slit(
        np.random.default_rng(0),
        n_cross=30,
        n_disp=40,
        center=2.0,
        spectrum=np.ones(40),
        fwhm=(2.0, 2.0),
    )


def test_kernel_fit_far_from_the_valid_pixels_without_background_raises_profile_fit_error():
    y = np.arange(30.0)
    values = 100.0 * np.exp(-0.5 * ((y - 2.0) / 0.85) ** 2)
    values[8:] = np.nan  # grid centres beyond ~row 15 see no valid pixel under the profile
    try:
        fit_kernel(make_template("gaussian"), values, np.ones(30), bkg_order=-1)
    except ProfileFitError:
        pass


def test_extract_slit_with_far_rows_masked_and_no_background_falls_back():
    sim = _source_near_the_edge()
    mask = ~np.isfinite(sim.data)
    mask[8:] = True
    (res,) = extract_slit(slit_data_from_sim(sim, mask=mask), ExtractParams(bkg_order=-1))
    assert res.metadata["status"] in ("fit", "fixed_kernel")


def test_a_slit_with_far_rows_nan_and_no_background_gives_a_spectrum():
    model = make_multislit([_source_near_the_edge()])
    model.slits[0].data[8:] = np.nan
    run = extract(model, ExtractParams(bkg_order=-1))
    assert len(run.spectra) == 1 and not run.skipped


MANY = 2000  # examples per core property in CI's heavy run (the default "ci" profile: 300)


@pytest.mark.heavy
@pytest.mark.parametrize(
    "prop",
    [
        test_horne_sums_are_never_inf_and_variances_never_negative,
        test_flux_is_nan_only_where_no_usable_pixel_is_under_the_profile,
        test_any_float64_input_gives_no_inf_and_no_negative_variance,
        test_noise_free_profile_times_flux_gives_the_flux,
        test_without_background_the_variance_is_horne_eq_9,
        test_extract_slit_with_checked_parameters_raises_nothing_nor_returns_inf,
        test_parameters_raise_parameter_error_and_nothing_else,
        test_kernel_fit_raises_profile_fit_error_and_nothing_else,
    ],
    ids=lambda prop: prop.__name__.removeprefix("test_"),
)
def test_properties_hold_over_many_examples(prop, monkeypatch):
    """The properties above at the example count of the old default profile and more:
    the default run is sized to the time, CI's heavy run to the search."""
    scale = MANY // settings().max_examples
    current = prop._hypothesis_internal_use_settings
    many = settings(current, max_examples=max(current.max_examples, 1) * scale)
    monkeypatch.setattr(prop, "_hypothesis_internal_use_settings", many)
    prop()
