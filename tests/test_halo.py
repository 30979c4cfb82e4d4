"""The core + halo family: its pixel integrals, and its choice under kernel="auto"."""

import logging

import numpy as np
import pytest
from conftest import sky_slits, slit_data_from_sim
from scipy.integrate import quad

from optimal_extract1d.core.horne import extract_columns
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file
from optimal_extract1d.params import ExtractParams
from optimal_extract1d.pipeline.slit import extract_slit
from optimal_extract1d.psf.evaluate import evaluate_with_derivatives
from optimal_extract1d.psf.halo import FWHM_PER_SIGMA, CoreHalo1D, fwhm_over_core, halo_pixels
from optimal_extract1d.psf.kernel import make_template, with_params
from optimal_extract1d.psf.tabulated import PSFTable
from optimal_extract1d.sim.simulate import ResidualSky, simulate_slit

PARAMS = {
    "mean": 0.3,
    "stddev": 1.1,
    "ratio": 1.7,
    "fraction": 0.15,
    "slope": 0.02,
    "wavelength": 3.0,
    "reference": 2.0,
}


@pytest.mark.parametrize("index, tail", [(1.5, 0.0), (1.0, 0.0), (1.5, 0.4)])
def test_the_pixel_integrals_are_the_profile_integrated_over_each_pixel(index, tail):
    y = np.arange(-12.0, 13.0)
    values, _ = halo_pixels(
        y,
        CoreHalo1D(index=index, tail=tail),
        {k: np.array([v]) for k, v in PARAMS.items()},
        names=(),
    )
    args = (1.0, *PARAMS.values(), index, tail)
    exact = [quad(lambda x: CoreHalo1D.evaluate(x, *args), a - 0.5, a + 0.5)[0] for a in y]
    np.testing.assert_allclose(values[:, 0], exact, atol=1e-12)
    total = quad(lambda x: CoreHalo1D.evaluate(x, *args), -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-8)  # the amplitude is the flux


@pytest.mark.parametrize("index, tail", [(1.5, 0.0), (1.0, 0.0), (1.5, 0.4)])
@pytest.mark.parametrize("name", ["mean", "stddev", "ratio", "fraction", "slope", "tail"])
def test_the_derivatives_match_finite_differences(name, index, tail):
    template = with_params(make_template("halo"), {"index": index})
    y = np.arange(-10.0, 11.0)
    params = {k: np.array([v, 0.8 * v + 0.1]) for k, v in {**PARAMS, "tail": tail}.items()}
    _, grads = evaluate_with_derivatives(template, y, params, names=[name])
    step = 1e-6
    up = {**params, name: params[name] + step}
    down = {**params, name: params[name] - step}
    numeric = (
        halo_pixels(y, template.model, up, names=())[0]
        - halo_pixels(y, template.model, down, names=())[0]
    ) / (2 * step)
    np.testing.assert_allclose(grads[name], numeric, atol=1e-8)


@pytest.mark.parametrize("tail", [0.0, 0.4])
def test_the_astropy_derivatives_match_finite_differences(tail):
    x = np.linspace(-8.0, 8.0, 41)
    args = [1.3, *PARAMS.values(), 1.5, tail]
    grads = CoreHalo1D.fit_deriv(x, *args)
    for i, name in enumerate(CoreHalo1D.param_names):
        if name in ("wavelength", "reference", "index"):
            continue
        up, down = list(args), list(args)
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric = (CoreHalo1D.evaluate(x, *up) - CoreHalo1D.evaluate(x, *down)) / 2e-6
        np.testing.assert_allclose(grads[i], numeric, atol=1e-7, err_msg=name)


def test_the_halo_widens_the_half_maximum():
    assert fwhm_over_core(1.5, 0.0) == pytest.approx(1.0)
    assert 1.0 < fwhm_over_core(1.5, 0.1) < fwhm_over_core(1.5, 0.3)


def _oracle_ratio(sim, res):
    """The extraction's squared error over the oracle's (true profile and variance)."""
    best = extract_columns(
        sim.data, sim.true_variance, sim.true_profile, mask=~np.isfinite(sim.data)
    )
    good = np.isfinite(res.flux) & np.isfinite(best.flux)
    return np.sum((res.flux[good] - sim.flux[good]) ** 2) / np.sum(
        (best.flux[good] - sim.flux[good]) ** 2
    )


#: The residual sky of the core + halo slits: 0.5 % of the source per pixel, sloped.
SKY = ResidualSky(level=0.005, tilt=0.3)


def _core_halo_slit(rng, snr, *, sky=SKY):
    """A slit drawn from the example PSF file: a Gaussian core with a Moffat 1.5 halo."""
    psf = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    return simulate_slit(
        rng,
        n_disp=400,
        snr=snr,
        spectrum=np.ones(400),
        psf=psf,
        psf_scale=1.3,
        curvature=1.0,
        sky=sky,
    )


#: A faint sky rippled along the dispersion: the slice of some slits takes no sky.
FAINT_SKY = ResidualSky(level=0.002, tilt=0.3, ripple=0.5, periods=1.5)


def _moffat_slit(rng, snr):
    """A slit of a Moffat source whose FWHM doubles across the band, no sky."""
    return simulate_slit(
        rng,
        n_disp=400,
        snr=snr,
        spectrum=np.ones(400),
        shape="moffat",
        fwhm=(1.6, 3.2),
        curvature=1.0,
    )


def test_defaults_choose_the_halo_for_a_core_halo_source_and_recover_its_flux(rng, caplog):
    biases, gaussian_biases = [], []
    for _ in range(3):
        sim = _core_halo_slit(rng, 30.0)
        sd = slit_data_from_sim(sim)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
            (res,) = extract_slit(sd, ExtractParams())
        halo = res.metadata["model_choice"]["halo"]
        # the slit's one INFO line says so
        (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
        assert f"core + halo over the bins (wings index {halo['index']:g}" in line
        assert halo["chosen"] and halo["chi2_gain"] > halo["cost"]
        assert res.metadata["kernel"]["kernel"] == "halo"
        assert 0.05 < halo["fraction"] < 0.2  # the file's wings hold 8-14 % of the flux
        biases.append(np.nanmedian(res.flux / sim.flux) - 1)
        # a Gaussian leaves the halo to the background
        (gaussian,) = extract_slit(sd, ExtractParams(kernel="gaussian"))
        gaussian_biases.append(np.nanmedian(gaussian.flux / sim.flux) - 1)
    # one fraction for the slit, where the file's wings grow from 8 to 14 %: a slit
    # can be ~1 % off, the flux is right on average
    assert abs(np.mean(biases)) < 0.005
    assert np.max(np.abs(biases)) < 0.015
    assert np.mean(gaussian_biases) < -0.03


def test_the_halo_is_not_chosen_for_a_gaussian_or_a_moffat_source(rng):
    for shape in ("gaussian", "gaussian", "moffat"):
        sim = simulate_slit(
            rng, n_disp=400, snr=100.0, spectrum=np.ones(400), shape=shape, fwhm=(1.6, 3.2)
        )
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        halo = res.metadata["model_choice"].get("halo")
        assert halo is None or not halo["chosen"]
        assert res.metadata["kernel"]["kernel"] != "halo"
        assert _oracle_ratio(sim, res) < 1.05


def _lorentzian_wing_slit(rng, snr, *, tail=None):
    """A slit whose PSF has the example file's core and wing share, with Lorentzian wings.

    The wings of the 2-D Airy pattern, collapsed across the slit, fall as x**-2;
    with ``tail``, that share of the wings does and the rest falls as x**-3.
    """
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    index = 1.0 if tail is None else 1.5
    params = {
        "mean": np.zeros(table.wavelength.size),
        "stddev": table.fwhm(table.wavelength) / FWHM_PER_SIGMA,
        "ratio": np.full(table.wavelength.size, 1.5),
        "fraction": np.full(table.wavelength.size, 0.1),
        "index": index,
        "tail": np.full(table.wavelength.size, tail or 0.0),
    }
    values, _ = halo_pixels(table.offsets, CoreHalo1D(index=index), params, names=())
    psf = PSFTable(table.offsets, table.wavelength, values / (values.sum(axis=0) * table.step))
    return simulate_slit(
        rng, n_disp=400, snr=snr, spectrum=np.ones(400), psf=psf, psf_scale=1.3, curvature=1.0
    )


def test_the_halo_index_follows_the_wings_and_the_flux_follows(rng):
    """Under kernel="auto" the bins choose the halo's index: 1 (x**-2 wings) here, 1.5
    for the example file's wings (the test above); held at 1.5, these slits lost 1.7 %."""
    biases, indices = [], []
    for _ in range(3):
        sim = _lorentzian_wing_slit(rng, 100.0)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        halo = res.metadata["model_choice"]["halo"]
        assert halo["chosen"] and res.metadata["kernel"]["kernel"] == "halo"
        indices.append(halo["index"])
        biases.append(np.nanmedian(res.flux / sim.flux) - 1)
    assert indices.count(1.0) >= 2
    assert abs(np.mean(biases)) < 0.005


def test_wings_between_the_two_laws_are_fitted_as_a_mixture(rng):
    """Wings half x**-2 and half x**-3: the pure laws' fits differ by a chi2 of ~20 at
    S/N 200 and their fluxes by 2 %, coherent over the slit; a Lorentzian share of
    the halo's flux lies between them."""
    biases = []
    for _ in range(2):
        sim = _lorentzian_wing_slit(rng, 200.0, tail=0.5)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        halo = res.metadata["model_choice"]["halo"]
        assert halo["chosen"] and res.metadata["kernel"]["kernel"] == "halo"
        assert halo["tail_fitted"] and halo["tail_chi2_gain"] > 2.0
        assert halo["index"] == 1.5 and 0.2 < halo["tail"] < 0.9
        biases.append(np.nanmedian(res.flux / sim.flux) - 1)
    # the pure Lorentzian kept one of these slits 1.1 % high, a pure x**-3 law is ~1 % low
    assert np.max(np.abs(biases)) < 0.007


def test_the_halo_of_a_nodded_slit_is_weighed_with_its_nod_copies_where_they_are(rng):
    """Three-shutter nod copies 5.3 and 10.6 px away carry the halo too. Held at the
    offsets the slice's Gaussian found (0.01-0.02 px off at S/N 100), they left a
    misfit at their cores that the halo's fraction absorbed: 16 % low, the flux low
    with it. The bins' fit refits them."""
    psf = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    fractions, biases = [], []
    for _ in range(3):
        sim = simulate_slit(
            rng,
            n_disp=400,
            snr=100.0,
            spectrum=np.ones(400),
            psf=psf,
            psf_scale=1.3,
            curvature=1.0,
            nod_offsets=(-5.3, 5.3, -10.6, 10.6),
            nod_scale=(1 / 3, 1 / 3, 1 / 6, 1 / 6),
        )
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        halo = res.metadata["model_choice"]["halo"]
        assert halo["chosen"] and halo["index"] == 1.5
        truth = 0.08 + 0.06 * (halo["reference_um"] - 0.6) / 4.7  # the example file's
        fractions.append(halo["fraction"] / truth)
        biases.append(np.nanmedian(res.flux / sim.flux) - 1)
    # one slit's fraction is known to ~5 % at S/N 100 (without nod copies as well)
    assert np.mean(fractions) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(biases)) < 0.003


def test_a_moffat_the_slice_took_for_a_gaussian_is_not_given_a_halo(rng):
    """At S/N 10 a 30-column slice may not tell a Moffat from a Gaussian (its index
    heads for the Gaussian limit); the core + halo then stands in for the wings over
    the bins (a halo fraction of 0.25, 0.5-0.7 sigma high in every column, in 2 of 30
    slits of the defaults benchmark). A Moffat fitted to the same bins is weighed too,
    and the lower chi2 decides."""
    rivals, ratios = 0, []
    for _ in range(15):
        sim = simulate_slit(
            rng,
            n_disp=400,
            snr=10.0,
            spectrum=np.ones(400),
            shape="moffat",
            fwhm=(1.6, 3.2),
            curvature=1.5,
            sky=ResidualSky(level=1.5e-4, tilt=0.3),
        )
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        halo = res.metadata["model_choice"].get("halo") or {}
        assert not halo.get("chosen")
        if "moffat_alpha" in halo:
            rivals += 1
            assert res.metadata["kernel"]["kernel"] == "moffat"
            assert "Moffat" in halo["why"]
        ratios.append(_oracle_ratio(sim, res))
    assert rivals >= 1  # this draw has one slit whose halo beat its Gaussian
    assert np.mean(ratios) < 1.06


def test_a_sky_the_slice_missed_is_fitted_beside_the_halo():
    """Where the kernel slice chose no background, the halo's wide x**-2 wings took up
    most of a faint sky (fraction 0.14-0.17 for a true ~0.1, fluxes 3.5-5.4 % high in
    these two slits): a sky that still pays beside the halo has the halo weighed again,
    its law included, on top of a constant in every bin."""
    rng = np.random.default_rng(7)  # slits 0 and 5 of this draw: the slice takes no sky
    missed, every = [], []
    for _ in range(6):
        sim = _core_halo_slit(rng, 10.0, sky=FAINT_SKY)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
        bias = np.nanmedian(res.flux / sim.flux) - 1
        every.append(bias)
        choice = res.metadata["model_choice"]
        if choice["kernel"]["bkg_order"] != -1:
            continue
        halo = choice["halo"]
        assert halo["chosen"] and halo["bkg_order"] == 0
        assert res.metadata["bkg_order"] >= 0  # the extraction fits a sky too
        assert 0.07 < halo["fraction"] < 0.13  # the file's wings hold 8-14 % of the flux
        missed.append(bias)
    assert len(missed) == 2
    assert np.max(np.abs(missed)) < 0.015
    # where the slice took the sky, it stays beside the halo: weighed again without
    # it, the halo's share took it up in 3 of these 4 slits (fluxes 3.5-5.7 % high)
    assert np.max(np.abs(every)) < 0.025 and abs(np.mean(every)) < 0.01


def test_a_moffat_slice_is_weighed_against_the_halo_without_the_grid_screen():
    """Against a Moffat the halo holds no parameter more; its screening grid, at the
    Moffat's bin widths (narrower than a core + halo's, the Moffat's wings carrying
    more flux), lost 5 on this slit where the fit gains: the Moffat stayed, 3.5 % low."""
    rng = np.random.default_rng(5)
    for _ in range(16):  # the 16th slit of this draw: its slice takes a Moffat
        sim = _core_halo_slit(rng, 20.0)
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    choice = res.metadata["model_choice"]
    assert choice["kernel"]["chosen"] == "moffat"
    assert choice["halo"]["chosen"] and res.metadata["kernel"]["kernel"] == "halo"
    assert abs(np.nanmedian(res.flux / sim.flux) - 1) < 0.02


def test_a_sky_beside_a_halo_standing_in_for_moffat_wings_must_pay_alone_too():
    """A halo standing in for a Moffat's wings leaves a misfit that a sky beside it
    takes up (a gain of 4 here, with no sky in the slit; 0.1 alone). Weighed again
    over that sky, this slit took a halo of fraction 0.24, 7.6 % high; the sky must
    pay on its own as well, and the Moffat fitted to the bins stays preferred."""
    rng = np.random.default_rng(3)
    for _ in range(13):  # the 13th slit of this draw
        sim = _moffat_slit(rng, 5.0)
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    halo = res.metadata["model_choice"]["halo"]
    assert not halo["chosen"] and halo["bkg_order"] is None
    assert res.metadata["kernel"]["kernel"] == "moffat"
    assert abs(np.nanmedian(res.flux / sim.flux) - 1) < 0.03


def test_against_a_moffat_the_halo_gains_a_share_of_a_parameters_cost():
    """The halo holds no parameter more than a Moffat but is the better of two laws:
    on this S/N 3 Moffat slit the x**-2 law won by a chi2 of 1.0, 7 % high."""
    rng = np.random.default_rng(4)
    for _ in range(36):  # the 36th slit of this draw
        sim = _moffat_slit(rng, 3.0)
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    halo = res.metadata["model_choice"]["halo"]
    assert res.metadata["model_choice"]["kernel"]["chosen"] == "moffat"
    assert not halo["chosen"] and halo["cost"] > 0
    # the slice's Moffat was then weighed against the Gaussian over the bins
    # (`scene.family`): at S/N 3 its index did not pay there, and the Gaussian took it
    family = res.metadata["model_choice"]["family_over_bins"]
    assert family["chosen"] == "gaussian" and family["chi2_gain"] < family["cost"]
    assert res.metadata["kernel"]["kernel"] == "gaussian"
    assert abs(np.nanmedian(res.flux / sim.flux) - 1) < 0.03


def test_an_explicit_background_degree_keeps_the_halo_without_a_sky():
    """The sky weighed beside the halo is the step's choice: with ``bkg_order = -1``
    given, the halo is weighed without one (the draw of the test above)."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        sim = _core_halo_slit(rng, 10.0, sky=FAINT_SKY)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=-1))
        halo = res.metadata["model_choice"].get("halo") or {}
        assert halo.get("bkg_order") is None
        assert res.metadata["bkg_order"] == -1


def test_the_wing_law_is_weighed_over_a_sloped_sky(caplog):
    """Over a constant alone, the x**-2 law's wider wings stood in for the sky's slope
    across the slit on this example-PSF slit (x**-3 wings): it took the x**-2 law and
    came out 2.2 % high in every column. Weighed over a constant and a slope, the
    law is the true one, and the halo is then fitted at the slice's own degree."""
    rng = np.random.default_rng(5)
    sim = _core_halo_slit(rng, 30.0)
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
    assert "wings index 1.5 over a sloped sky; 1 at the slice's background degree" in line
    halo = res.metadata["model_choice"]["halo"]
    assert halo["chosen"] and halo["index"] == 1.5 and not halo["tail_fitted"]
    assert halo["law_check"] == {"bkg_order": 1, "index": 1.5, "index_at_slice_degree": 1.0}
    good = np.isfinite(res.flux)
    assert abs(np.median(res.flux[good] / sim.flux[good]) - 1.0) < 0.005


def test_where_the_slice_chose_a_constant_the_halo_is_kept_over_the_sloped_sky(caplog):
    """A sky's slope across the slit, too faint to pay in one slice, moves the halo's
    share when only a constant is fitted beside it, and the share moves every column
    alike: on `benchmarks/defaults.py`'s example-PSF cell at S/N 30 the slits whose
    slice chose a constant were +0.33 % above the oracle on average (+0.07 % with a
    slope). The halo weighed over a constant and a slope is kept, with the slice
    refitted at that degree; given ``bkg_order = 0``, the user's constant is kept
    (the former behaviour)."""
    for seed in (2, 4):  # slices that choose a constant; the true x**-3 law wins
        sim = _core_halo_slit(np.random.default_rng(seed), 30.0)
        sd = slit_data_from_sim(sim)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
            (res,) = extract_slit(sd, ExtractParams())
        # the slit's INFO line says the degree the halo took
        (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
        assert "background degree 0 (vs" in line
        assert "halo fraction" in line and "; background degree 1 with it" in line
        (constant,) = extract_slit(sd, ExtractParams(bkg_order=0))
        choice = res.metadata["model_choice"]
        halo = choice["halo"]
        assert choice["kernel"]["bkg_order"] == 0  # the slice's own choice
        assert halo["chosen"] and halo["index"] == 1.5 and halo["bkg_order"] == 1
        assert halo["law_check"]["bkg_order"] == 1 and halo["law_check"]["index"] == 1.5
        assert res.metadata["bkg_order"] == 1
        kept = constant.metadata["model_choice"]["halo"]
        assert kept["bkg_order"] is None and constant.metadata["bkg_order"] == 0
        # the share over the slope is lower, and the flux closer to the truth
        assert halo["fraction"] < kept["fraction"] - 0.001
        good = np.isfinite(res.flux) & np.isfinite(constant.flux)
        bias = np.median(res.flux[good] / sim.flux[good]) - 1
        bias_constant = np.median(constant.flux[good] / sim.flux[good]) - 1
        assert abs(bias) < abs(bias_constant) - 0.0008


def test_the_errors_carry_the_wings_share_the_slit_set(rng, monkeypatch):
    """The flux errors grow by the variance of the share the slit set, as its offsets scatter."""
    from optimal_extract1d.pipeline import slit as slit_module

    computed = slit_module._shape_error
    sky = ResidualSky(level=0.005, tilt=0.3, ripple=0.5, periods=1.5)
    offsets, predicted, laws, relative = [], [], [], []
    for _ in range(12):
        sd = slit_data_from_sim(sim := _core_halo_slit(rng, 30.0, sky=sky))
        monkeypatch.setattr(slit_module, "_shape_error", computed)
        (res,) = extract_slit(sd, ExtractParams())
        monkeypatch.setattr(slit_module, "_shape_error", lambda *a, **k: None)
        (plain,) = extract_slit(sd, ExtractParams())
        halo, shape = res.metadata["model_choice"]["halo"], res.metadata["shape_error"]
        assert halo["chosen"] and "fraction" in shape["parameters"]
        assert 0.001 < shape["parameters"]["fraction"] < 0.03
        # the same fit; every variance of the flux raised alike, so FLUX_ERROR is
        # still the root of the FLUX_VAR_* sum
        np.testing.assert_array_equal(plain.flux, res.flux)
        good = np.isfinite(res.flux)
        ratio = res.var_poisson[good] / plain.var_poisson[good]
        np.testing.assert_allclose(res.var_rnoise[good] / plain.var_rnoise[good], ratio)
        assert np.median(ratio) - 1 == pytest.approx(shape["relative_variance"], rel=0.05)
        relative.append(shape["relative_variance"])
        laws.append(halo["index"] if not halo["tail_fitted"] else np.nan)
        offsets.append(np.median((res.flux - sim.flux)[good] / sim.flux[good]))
        own = (plain.var_poisson + plain.var_rnoise + plain.var_flat)[good] / sim.flux[good] ** 2
        predicted.append(np.sqrt(shape["relative_variance"] * np.median(own)))
    # a few per cent of a column's variance at S/N 30
    assert 0.005 < np.median(relative) < 0.1
    # the share's error moves every column of a slit alike: over the slits that took
    # the file's wing law, the slits' offsets scatter as the term says
    right = np.array(laws) == 1.5
    assert right.sum() >= 5
    ratio = np.sqrt(np.mean(np.square(np.array(offsets)[right]))) / np.sqrt(
        np.mean(np.square(np.array(predicted)[right]))
    )
    assert 0.5 < ratio < 2.0


def test_a_gaussian_source_carries_no_shape_error(rng):
    sim = simulate_slit(rng, n_disp=400, snr=30.0, spectrum=np.ones(400), fwhm=(1.6, 3.2))
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    assert not res.metadata["model_choice"].get("halo", {}).get("chosen")
    assert "shape_error" not in res.metadata


def test_a_sky_sloped_across_the_slit_does_not_pass_for_a_halo():
    # a Gaussian source under a 0.2 % sky sloped across the slit, at S/N 10: with no
    # background in the slice an x**-2 halo of share 0.09 paid (fluxes 6.8 % high),
    # the sky's score test beside it missing the slope; over a constant and a slope
    # no halo pays, so it is weighed again over a constant, and loses
    sims, _ = sky_slits(np.random.default_rng(21), 2, level=0.002, snr=10.0)
    (res,) = extract_slit(slit_data_from_sim(sims[1]), ExtractParams())
    halo = res.metadata["model_choice"]["halo"]
    assert halo["law_check"]["index"] is None and halo["law_check"]["index_at_slice_degree"] == 1
    assert not halo["chosen"] and halo["bkg_order"] == 0
    assert halo["why"] == "no halo over a sloped sky, nor over a constant"
    assert abs(np.nanmedian(res.flux / sims[1].flux) - 1) < 0.02


def test_the_pipelines_data_derived_poisson_variance_does_not_pull_the_wings_low():
    """VAR_POISSON from the measured count rate gives a wing pixel that fluctuated low a
    larger weight than one that fluctuated high. The kernel fitted with it found the
    halo at half its share and took every column low: on these 12 core + halo slits
    at S/N 10, -3.3 % against an oracle with the true profile, where the same draws
    with the model's Poisson variance give -1.2 % (the halo not chosen on some faint
    slits). The first fit now weighs each pixel by its neighbours' variance
    (`_fit_variance`): -1.6 %, within 0.4 % of the model-variance extraction."""
    psf = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    differences, truth = 0.0, 0.0
    rng = np.random.default_rng(5)
    for _ in range(12):
        state = rng.bit_generator.state
        fluxes = []
        for from_data in (True, False):  # the same noise; only VAR_POISSON differs
            rng.bit_generator.state = state
            sim = simulate_slit(
                rng,
                n_disp=400,
                snr=10.0,
                spectrum=np.ones(400),
                psf=psf,
                psf_scale=1.3,
                curvature=1.0,
                poisson_from_data=from_data,
            )
            (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
            fluxes.append(res.flux)
        good = np.isfinite(fluxes[0]) & np.isfinite(fluxes[1])
        differences += np.sum(fluxes[0][good] - fluxes[1][good])
        truth += np.sum(sim.flux[good])
    assert abs(differences / truth) < 0.008
