"""The scene's model choice: fit_fwhm / fit_trace = "auto" decided per slit by the criterion."""

import logging

import numpy as np
import pytest
from conftest import slit_data_from_sim

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.core.horne import extract_columns, polynomial_basis
from optimal_extract1d.errors import ParameterError
from optimal_extract1d.io.psfref import EXAMPLE_PSF, read_psf_file
from optimal_extract1d.params import ExtractParams
from optimal_extract1d.pipeline.slit import extract_slit
from optimal_extract1d.scene.criterion import CRITERION
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, ResidualSky, simulate_slit


def _oracle(sim, *, sky=False):
    """Horne with the true profile and variance, fitting the true nod copies and, with
    ``sky``, the sky's form (a constant and a slope), as `benchmarks/defaults.py`'s."""
    return extract_columns(
        sim.data,
        sim.true_variance,
        sim.true_profile,
        mask=~np.isfinite(sim.data),
        bkg_basis=polynomial_basis(sim.data.shape[0], 1) if sky else None,
        extra=np.stack(sim.nod_profiles, axis=2) if sim.nod_profiles else None,
    )


def _oracle_mse(sim, flux):
    best = _oracle(sim)
    good = np.isfinite(flux) & np.isfinite(best.flux)
    return np.sum((flux[good] - sim.flux[good]) ** 2) / np.sum(
        (best.flux[good] - sim.flux[good]) ** 2
    )


def _choices(rng, n, **kw):
    out = []
    for _ in range(n):
        sim = simulate_slit(rng, n_disp=400, spectrum=np.ones(400), **kw)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=-1))
        out.append((sim, res))
    return out


def test_auto_finds_a_widening_bowed_trace_and_reaches_the_oracle(rng):
    for sim, res in _choices(rng, 4, snr=30.0, fwhm=(1.6, 3.2), curvature=1.2):
        choice = res.metadata["model_choice"]
        assert choice["trace_order"] == 2 and choice["fwhm_order"] >= 1
        assert _oracle_mse(sim, res.flux) < 1.05
        # the chosen candidate is the one with the lowest criterion value
        best = min(choice["candidates"], key=lambda c: c["value"])
        assert (best["trace_order"], best["fwhm_order"]) == (
            choice["trace_order"],
            choice["fwhm_order"],
        )
        held = next(c for c in choice["candidates"] if c["trace_order"] == c["fwhm_order"] == 0)
        assert held["value"] - best["value"] > 100  # overwhelming evidence at this S/N


def _degree_one(choice, abscissa):
    return next(
        c["value"]
        for c in choice["candidates"]
        if c["trace_order"] == choice["trace_order"]
        and c["fwhm_order"] == 1
        and c["fwhm_abscissa"] == abscissa
    )


def test_the_fwhm_model_is_smooth_in_pixels_or_in_wavelength_as_the_data_say(rng):
    # the simulation's Gaussian widens 3x linearly in column, on a prism's wavelength
    # scale (spacing growing tenfold): a quadratic in wavelength cannot follow it
    for sim, res in _choices(rng, 3, snr=100.0, fwhm=(1.6, 4.8), curvature=1.2):
        choice = res.metadata["model_choice"]
        assert (choice["fwhm_order"], choice["fwhm_abscissa"]) == (1, "column")
        assert res.metadata["fwhm_model"]["abscissa"] == "column"
        assert _oracle_mse(sim, res.flux) < 1.02
        # the other abscissa costs one parameter more, and is offered for a line only
        k = {(c["fwhm_order"], c["fwhm_abscissa"]): c["k"] for c in choice["candidates"]}
        assert k[(1, "column")] == k[(1, "wavelength")] + 1
        assert {a for (d, a) in k if d != 1} == {"wavelength"}
    # the example PSF file's width follows the diffraction, smooth in wavelength
    table = read_psf_file(EXAMPLE_PSF).table("ANY", 1)
    for _ in range(2):
        sim = simulate_slit(
            rng, n_disp=400, spectrum=np.ones(400), snr=100.0, psf=table, psf_scale=1.5
        )
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=-1))
        choice = res.metadata["model_choice"]
        assert _degree_one(choice, "column") - _degree_one(choice, "wavelength") > 50


def test_auto_holds_a_constant_kernel_where_nothing_varies(rng):
    picks = _choices(rng, 10, snr=30.0, fwhm=(2.0, 2.0), curvature=0.0)
    held = [
        r.metadata["model_choice"]["trace_order"] in (None, 0)
        and r.metadata["model_choice"]["fwhm_order"] in (None, 0)
        for _, r in picks
    ]
    # BIC's false-positive rate per extra parameter is a few per cent: most slits stay flat
    assert sum(held) >= 7
    assert np.mean([_oracle_mse(s, r.flux) for s, r in picks]) < 1.03


def test_auto_at_low_snr_costs_no_variance(rng):
    # S/N 3 per column: the bins still hold S/N ~60 together, so the criterion may
    # model the 0.3 px bow; whatever it picks, the flux is at the oracle's variance
    picks = _choices(rng, 3, snr=3.0, fwhm=(1.8, 2.2), curvature=0.3)
    for _, res in picks:
        choice = res.metadata.get("model_choice")
        if choice is not None:
            best = min(choice["candidates"], key=lambda c: c["value"])
            assert best["fwhm_abscissa"] == choice["fwhm_abscissa"]
    assert np.mean([_oracle_mse(s, r.flux) for s, r in picks]) < 1.05


def test_the_criterion_discounts_the_template_error():
    resid = np.full((10, 1), 3.0)
    faint, bright = np.zeros((10, 1)), np.full((10, 1), 1000.0)
    assert CRITERION.chi2(resid, faint)[0] == pytest.approx(90.0)
    # at 1000 sigma a 3-sigma residual is well within a 5 % template error
    assert CRITERION.chi2(resid, bright)[0] == pytest.approx(10 * 9 / (1 + 50**2))


@pytest.mark.parametrize(
    "value, expected",
    [("auto", "auto"), ("True", True), ("false", False), (True, True), (np.bool_(False), False)],
)
def test_fit_flags_take_true_false_or_auto(value, expected):
    params = ExtractParams(fit_fwhm=value, fit_trace=value)
    assert params.fit_fwhm == expected and params.fit_trace == expected


def test_a_bad_fit_flag_names_the_allowed_values():
    with pytest.raises(ParameterError, match=r"fit_fwhm must be True, False or 'auto'"):
        ExtractParams(fit_fwhm="maybe")
    assert OptimalExtract1dStep.validated_parameters({"fit_trace": "False"}) == {
        "fit_trace": "False"
    }
    assert OptimalExtract1dStep().fit_fwhm == "auto"  # the default in every mode


def test_auto_kernel_takes_the_moffat_for_a_moffat_source_and_keeps_one_spectrum(rng):
    for _ in range(3):
        sim = simulate_slit(
            rng,
            n_disp=400,
            snr=30.0,
            spectrum=np.ones(400),
            shape="moffat",
            fwhm=(1.6, 3.2),
            curvature=1.2,
        )
        spectra = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=-1))
        assert len(spectra) == 1  # the wings are not taken for a companion
        kernel = spectra[0].metadata["model_choice"]["kernel"]
        assert kernel["chosen"] == "moffat1d" or kernel["chosen"] == "moffat"
        values = {c["kernel"]: c["value"] for c in kernel["candidates"]}
        assert values["moffat"] < values["gaussian"]
        assert _oracle_mse(sim, spectra[0].flux) < 1.05


def test_auto_kernel_keeps_the_gaussian_for_a_gaussian_source(rng):
    chosen = []
    for _ in range(6):
        sim = simulate_slit(rng, n_disp=400, snr=30.0, spectrum=np.ones(400), fwhm=(2.0, 2.0))
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=-1))
        chosen.append(res.metadata["model_choice"]["kernel"]["chosen"])
        # whichever wins, a Moffat here is close to its Gaussian limit: no loss
        assert _oracle_mse(sim, res.flux) < 1.05
    assert chosen.count("gaussian") >= 4


def test_a_bad_background_degree_is_refused_before_any_work():
    with pytest.raises(ParameterError, match=r"bkg_order must be 'auto' or an integer >= -1"):
        OptimalExtract1dStep.validated_parameters({"bkg_order": "foo"})
    assert ExtractParams(bkg_order="1").bkg_order == 1
    assert ExtractParams(bkg_order="AUTO").bkg_order == "auto"


def test_a_line_over_a_faint_continuum_keeps_its_flux():
    """Issue 11 item 4: the profile comes from where the signal is. The line's peak
    column holds most of the slit's S/N squared; mixed into a bin with 50 continuum
    columns at S/N 0.6 it was diluted (FWHM 1.65 px where the truth is 2.2) and the
    line lost 21 % of its flux. Now it is a bin of its own."""
    rng = np.random.default_rng(5)
    spectrum = np.full(400, 0.02)
    spectrum[199:202] = (0.3, 1.0, 0.3)
    sim = simulate_slit(
        rng, n_disp=400, snr=30.0, spectrum=spectrum, fwhm=(1.8, 2.6), curvature=0.5
    )
    (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    line = slice(199, 202)
    error = np.sqrt(np.sum(res.error[line] ** 2))
    assert abs(np.sum(res.flux[line]) - np.sum(sim.flux[line])) < 5 * error


def test_the_choice_and_its_evidence_are_one_info_line_per_slit(rng, caplog):
    import logging

    sim = simulate_slit(rng, n_disp=300, snr=30.0, spectrum=np.ones(300), fwhm=(1.6, 3.2))
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    lines = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
    assert len(lines) == 1
    choice = res.metadata["model_choice"]
    kernel = choice["kernel"]
    assert f"{kernel['chosen']} kernel, background degree {kernel['bkg_order']}" in lines[0]
    assert f"FWHM degree {choice['fwhm_order']}" in lines[0]
    # every other kernel candidate is listed with its criterion relative to the choice
    assert lines[0].split("; background along")[0].count("/") == len(kernel["candidates"]) - 1
    # and the background's form along the dispersion, with every candidate, on the same line
    along = res.metadata["background_along_dispersion"]
    assert "background along the dispersion: " in lines[0]
    assert lines[0].count(" +") >= len(along["candidates"]) - 1 + len(kernel["candidates"]) - 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("along the dispersion" in m for m in infos) == 1


def test_the_background_along_the_dispersion_is_logged_with_the_kernel_given_too(caplog):
    """With the kernel and the fits given there is no model choice to log, but the
    background's form along the dispersion is still chosen: its INFO line stays."""
    import logging

    rng = np.random.default_rng(1)
    sim = simulate_slit(rng, n_disp=300, snr=30.0, spectrum=np.ones(300), fwhm=(1.6, 3.2))
    given = ExtractParams(kernel="gaussian", fit_fwhm=True, fit_trace=True, bkg_order=0)
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        (res,) = extract_slit(slit_data_from_sim(sim), given)
    assert "model_choice" not in res.metadata
    along = res.metadata["background_along_dispersion"]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    (line,) = [m for m in infos if "along the dispersion" in m]
    assert "chose background along the dispersion: " in line
    assert line.count(" +") == len(along["candidates"])  # every candidate, the chosen +0.0


def test_the_bins_too_faint_for_the_smooth_models_are_counted_once_per_slit(caplog):
    """Every fit of the bins (two rounds, and refits for the halo, nods or a sky) logged its
    faint bins at INFO: CEERS 933 said it twice. The slit's summary line counts them.

    Binned automatically, the faint last bin is merged into its neighbour
    (`.scene.trace.BinPlan.merged_where_faint`); the bins a user asks for
    are kept as they are, and are counted."""
    import logging

    spectrum = np.where(np.arange(300) < 150, 1.0, 0.0)  # a break: the last bin is too faint
    sim = simulate_slit(
        np.random.default_rng(1), n_disp=300, snr=15.0, spectrum=spectrum, fwhm=(1.6, 3.2)
    )
    (auto,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
    assert all(auto.metadata["bins"]["good"])
    assert auto.metadata["bins"]["edges"][-2] < 150 < auto.metadata["bins"]["edges"][-1]
    with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(n_bins=24))
    good = np.asarray(res.metadata["bins"]["good"], bool)
    assert 0 < np.count_nonzero(~good) < good.size
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    (line,) = [m for m in lines if "bins too faint" in m]
    assert f"{np.count_nonzero(~good)} of {good.size} bins too faint" in line
    assert "columns extracted" in line  # the slit's summary line


@pytest.mark.parametrize(
    ("snr", "seed", "excess"),
    [(57.5, 2, 1.1), (223.0, 3, 1.3)],  # true column S/N ~30 and ~100 (benchmarks/defaults.py)
    ids=["snr30", "snr100"],
)
def test_a_widening_moffat_with_nods_and_sky_is_one_spectrum_at_the_bound(snr, seed, excess):
    """Issue 11, the Moffat x3 + 2 % sky + three-shutter nods cell: the Gaussian
    fitted first needed a "companion" in the Moffat's wings where a nod copy was, and
    the Moffat refitted from that scene alone kept the companion or missed the copy
    (slice chi2 1500 on 25 rows; at S/N 30, 2 of 10 slits split, var/oracle 9.6). The
    Moffat now searches its own components. At S/N 100 the Gaussian's misfit also
    chose the background degree: a constant for a sky with a slope (var/oracle 3-9
    on those slits); the degrees are now fitted again with the family chosen."""
    rng = np.random.default_rng([11, seed])
    nods = (-5.3, 5.3, -10.6, 10.6)
    ratio, sq, sq_oracle, pulls = [], 0.0, 0.0, []
    for _ in range(6):
        sim = simulate_slit(
            rng,
            n_disp=400,
            snr=snr,
            spectrum=np.ones(400),
            shape="moffat",
            fwhm=(1.6, 4.8),
            center=rng.uniform(14.0, 16.0),
            slope=0.3,
            curvature=1.5,
            nod_offsets=nods,
            nod_scale=(1 / 3, 1 / 3, 1 / 6, 1 / 6),
            sky=ResidualSky(level=0.02, tilt=0.3, ripple=0.5, periods=1.5, phase=rng.uniform(0, 6)),
            poisson_from_data=True,
        )
        spectra = extract_slit(slit_data_from_sim(sim, nod_offsets=nods), ExtractParams())
        assert len(spectra) == 1  # no spurious source
        res = spectra[0]
        assert res.metadata["model_choice"]["kernel"]["chosen"] == "moffat"
        best = _oracle(sim, sky=True)
        good = np.isfinite(res.flux)
        ratio.append(res.flux[good] / sim.flux[good])
        sq += np.sum((res.flux - sim.flux)[good] ** 2)
        sq_oracle += np.sum((best.flux - sim.flux)[good] ** 2)
        pulls.append(((res.flux - sim.flux) / res.error)[good])
    assert abs(np.median(np.concatenate(ratio)) - 1) < 0.005
    assert sq < excess * sq_oracle
    assert 0.9 < np.std(np.concatenate(pulls)) < 1.15


def test_a_moffat_is_weighed_at_every_degree_when_the_gaussians_companions_took_the_sky(
    tmp_path,
):
    """benchmarks/defaults.py's Moffat x3 + 2 % sky + nods at S/N 100, its second slit:
    the Gaussian fitted first took two "companions" (+2.9 and +7.4 px) for the
    Moffat's wings and the sky, so no background paid beside them, and the Moffat,
    fitted at that degree from the nod copies, ran to its index's bound on the sky.
    The slit came out as two spectra, -14 % (var/oracle of the cell 1.07 -> 11.2).
    The Moffat is now also fitted at the other degrees. (The draw is the cell's to
    the last digit of its S/N: at 222.94 the Gaussian takes no companions. Which
    slits the search sends that way is chance; the Moffat's other degrees are not.)"""
    rng = np.random.default_rng([11, 3])  # the cell's draws, in its order
    nods = (-5.3, 5.3, -10.6, 10.6)
    for _ in range(2):
        center, phase = rng.uniform(14.0, 16.0), rng.uniform(0.0, 2 * np.pi)
        sim = simulate_slit(
            rng,
            n_disp=400,
            snr=222.94262618292822,  # true column S/N 100 (the cell's, to the last digit)
            spectrum=np.ones(400),
            shape="moffat",
            fwhm=(1.6, 4.8),
            center=center,
            slope=0.3,
            curvature=1.5,
            nod_offsets=nods,
            nod_scale=(1 / 3, 1 / 3, 1 / 6, 1 / 6),
            sky=ResidualSky(level=0.02, tilt=0.3, ripple=0.5, periods=1.5, phase=phase),
            poisson_from_data=True,
        )
    path = tmp_path / "moffat_s2d.fits"
    make_multislit([sim], filename=path.name, nod_type="3-SHUTTER-SLITLET").save(path)
    x1d = OptimalExtract1dStep.call(str(path))
    assert len(x1d.spec) == 1
    (spec,) = x1d.spec
    record = spec.meta.optimal_extraction
    assert record.model_choice.kernel.chosen == "moffat" and record.bkg_order >= 0
    # every (family, degree) is one candidate in the record, fitted once
    pairs = [(c.kernel, c.bkg_order) for c in record.model_choice.kernel.candidates]
    assert len(pairs) == len(set(pairs)) and {("moffat", b) for b in (-1, 0, 1)} <= set(pairs)
    flux = np.asarray(spec.spec_table["FLUX"], float) / (PIXEL_AREA_SR * 1e6)
    best = _oracle(sim, sky=True)
    good = np.isfinite(flux) & np.isfinite(best.flux)
    assert abs(np.sum(flux[good]) / np.sum(best.flux[good]) - 1) < 0.005
    sq = np.sum((flux - sim.flux)[good] ** 2)
    assert sq < 1.5 * np.sum((best.flux - sim.flux)[good] ** 2)


def _line_source(rng, *, amplitudes, centers):
    """Continuum at S/N ~2 per column and unresolved lines peaking at S/N ~60-150
    (the emission-line sources of benchmarks/defaults.py); the lines' columns."""
    wavelength = simulate_slit(np.random.default_rng(0), n_disp=400).wavelength
    cols = np.arange(400, dtype=float)
    spectrum, windows = np.full(400, 0.006), []
    for c, a in zip(centers, amplitudes, strict=True):
        sigma = 0.004 * np.interp(c, cols, wavelength) / np.interp(c, cols, np.gradient(wavelength))
        spectrum += a * np.exp(-0.5 * ((cols - c) / sigma) ** 2)
        half = int(np.ceil(4 * sigma)) + 1
        windows.append(slice(round(c) - half, round(c) + half + 1))
    return spectrum / spectrum.max(), windows


def _line_pulls(rng, *, amplitudes, centers):
    """Extract one emission-line slit: its number of spectra, and every line's
    (integrated flux - truth) / error."""
    spectrum, windows = _line_source(rng, amplitudes=amplitudes, centers=centers)
    sim = simulate_slit(
        rng,
        n_disp=400,
        snr=265.0,  # the brightest line's peak at S/N ~150
        spectrum=spectrum,
        fwhm=(1.6, 3.2),
        center=rng.uniform(14.0, 16.0),
        slope=0.3,
        curvature=1.5,
        sky=ResidualSky(
            level=0.005 * 0.006, tilt=0.3, ripple=0.5, periods=1.5, phase=rng.uniform(0, 6)
        ),
        poisson_from_data=True,
    )
    spectra = extract_slit(slit_data_from_sim(sim), ExtractParams())
    res = spectra[0]
    return len(spectra), [
        (np.sum(res.flux[w]) - np.sum(sim.flux[w])) / np.sqrt(np.sum(res.error[w] ** 2))
        for w in windows
    ]


def test_an_emission_line_source_is_one_spectrum_with_its_line_fluxes():
    """Issue 11, the emission-line cells: the kernel slice around the brightest line
    was the inverse-variance mean of its columns, which weighs the line's core (its
    own Poisson noise) less than its wings and less than the continuum: the mean
    profile came out flat-topped and was split into two sources about 2 px apart,
    (4 of these 8 slits), and in three of them every line lost 2-200 sigma of its flux. The slice
    now weighs its columns by their flux (`.core.coadd.column_flux`)."""
    pulls = []
    for seed in range(3, 11):
        rng = np.random.default_rng(seed)
        centers: list[float] = []
        while len(centers) < 6:  # as benchmarks/defaults.py draws them
            c = rng.uniform(20, 380)
            if all(abs(c - o) > 25 for o in centers):
                centers.append(c)
        n_spectra, slit_pulls = _line_pulls(
            rng, amplitudes=rng.uniform(0.4, 1.0, 6), centers=centers
        )
        assert n_spectra == 1
        pulls += slit_pulls
    pulls = np.asarray(pulls)
    assert np.all(np.abs(pulls) < 4)
    assert np.sqrt(np.mean(pulls**2)) < 1.5


def test_faint_lines_far_from_the_bright_ones_keep_their_cores():
    """Two faint lines in the blue, four bright ones in the red. The cosmic-ray
    screen scaled the running median profile (the continuum's, S/N ~0.5 per pixel)
    up to each line and took the cores for outliers of it: the faint lines' bin fitted
    a FWHM of 3.1 px where the truth is 1.7, the extraction rejected their cores,
    and one lost 22 sigma of its flux; their columns also shared one bin with 200
    columns of continuum. The screen now counts the median profile's own noise, and
    a line that holds a bin's share of what the brighter lines left is a bin of its
    own."""
    rng = np.random.default_rng(2026)
    pulls = []
    for _ in range(4):
        n_spectra, slit_pulls = _line_pulls(
            rng,
            amplitudes=(*rng.uniform(0.4, 0.5, 2), *rng.uniform(0.8, 1.0, 4)),
            centers=(*rng.uniform(30, 100, 2), 221.0, 260.0, 330.0, 372.0),
        )
        assert n_spectra == 1
        pulls += slit_pulls
    pulls = np.asarray(pulls)
    assert np.all(np.abs(pulls) < 4)  # no line loses its core
    assert np.sqrt(np.mean(pulls**2)) < 1.5


def test_a_moffat_pulled_to_its_gaussian_limit_is_not_fitted_and_real_wings_are():
    # the Moffat's index at its bound (20) is the Gaussian: when the slice's chi2
    # falls towards it, the Moffat is not fitted (10-25 LM steps saved per slit) ...
    rng = np.random.default_rng(21)
    for shape, skipped in (("gaussian", True), ("moffat", False)):
        for _ in range(3):
            sim = simulate_slit(
                rng, n_disp=300, snr=100.0, spectrum=np.ones(300), shape=shape, fwhm=(2.0, 3.0)
            )
            (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams())
            kernel = res.metadata["model_choice"]["kernel"]
            moffat = [c for c in kernel["candidates"] if c["kernel"] == "moffat"]
            heads = [
                str(c.get("why", "")).endswith("heads for the first family's limit") for c in moffat
            ]
            assert any(heads) == skipped
            # ... and a real Moffat's wings are fitted and chosen, the flux on target
            assert kernel["chosen"] == shape
            good = np.isfinite(res.flux)
            assert abs(np.median(res.flux[good] / sim.flux[good]) - 1) < 0.005


def _faint_slit_without_sky(rng):
    """A Gaussian slit at low S/N and no sky, with the pipeline's VAR_POISSON: computed
    from the noisy data, zero where they are negative."""
    return simulate_slit(
        rng,
        n_disp=400,
        snr=1.5,
        spectrum=np.ones(400),
        fwhm=(1.6, 3.2),
        curvature=1.5,
        poisson_from_data=True,
    )


def test_a_slice_background_is_weighed_again_at_the_model_variance(caplog):
    """At low S/N with no sky, the input VAR_POISSON (computed from the noisy data, zero
    where they are negative) made a constant pay for its term in 8 of these 12 slices
    (gains of 3.4 and more); weighed again at the model variance, each gained 0.1-1.0
    and was dropped. The slice is now fitted at its neighbours' variance
    (`_fit_variance`), which holds no pixel's own noise: no slice chooses the
    constant. Where one still would, the retest weighs it at the model variance."""
    rng = np.random.default_rng(21)
    chose_constant = 0
    for _ in range(12):
        sim = _faint_slit_without_sky(rng)
        sd = slit_data_from_sim(sim)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="optimal_extract1d"):
            (res,) = extract_slit(sd, ExtractParams())
        chose_constant += res.metadata["model_choice"]["kernel"]["bkg_order"] >= 0
        retest = res.metadata["model_choice"].get("background_retest")
        if retest is None:
            continue
        assert retest["degree"] >= 0
        assert retest["bkg_order"] in (retest["degree"], retest["degree"] - 1)
        if retest["bkg_order"] < retest["degree"]:
            assert retest["chi2_gain"] < retest["cost"]
            (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
            assert "at the model variance" in line
        # the extraction keeps the retest's degree, unless the whole slit then chose a
        # sky smooth along the dispersion (at the focused cost, a faint one pays)
        smooth = res.metadata.get("background_along_dispersion") or {}
        if res.metadata["bkg_order"] != retest["bkg_order"]:
            chosen = smooth.get("chosen")
            assert retest["bkg_order"] == -1 and chosen is not None and chosen >= 0
    assert chose_constant <= 1


def test_an_explicit_background_degree_is_not_weighed_again():
    """The retest weighs only a degree the slice chose (``bkg_order = "auto"``):
    a user's ``bkg_order`` wins, on the same draw whose constants the retest drops."""
    rng = np.random.default_rng(21)
    for _ in range(4):
        sim = _faint_slit_without_sky(rng)
        (res,) = extract_slit(slit_data_from_sim(sim), ExtractParams(bkg_order=0))
        assert "background_retest" not in res.metadata["model_choice"]
        assert res.metadata["bkg_order"] == 0


def test_the_background_retest_weighs_both_degrees_against_the_refits_noise():
    """Where further sources made the refit re-test them against the slice's real
    (correlated) noise, the retest weighs both background degrees on that same
    slice: the degree's fit had the scaled errors and the one-less fit the
    propagated ones, so the degree "gained" 22-37 on a slit with no sky (1.7-2
    times the noise) and was always kept; weighed alike it gains 0.3-6 (at
    penalty 3.4). Of these 30 slits 9 reach the retest, 6 of them drop the
    degree. (Of the first 12, 5 reach it and 2 drop it: 3 before the companion's
    offset came from the whole slit's bins, which placed it at 6.95-7.04 px
    instead of 6.84-7.13, and one slice's slope then gained 3.9 instead of 3.2.
    With the kernel fitted at the pixels' own data-derived variance 4 of 12
    reached it and 3 dropped it; at the neighbours' variance one more slice
    chose a slope, kept at a gain of 5.9.)"""
    rng = np.random.default_rng(3)
    retests, dropped = 0, 0
    for _ in range(30):
        sim = simulate_slit(
            rng,
            snr=10.0,
            companions=((7.0, 0.4),),
            correlated=0.6,
            poisson_from_data=True,
            fwhm=(1.6, 3.2),
            spectrum=np.ones(400),
        )
        res = extract_slit(slit_data_from_sim(sim), ExtractParams())[0]
        choice = res.metadata["model_choice"]
        retest = choice.get("background_retest")
        if retest is None:
            continue
        assert choice["noise_scale"] > 1.5
        retests += 1
        assert retest["chi2_gain"] < 3.0 * retest["penalty"]
        dropped += retest["bkg_order"] < retest["degree"]
    assert retests >= 6 and dropped >= retests - 3


def test_drizzle_like_noise_keeps_the_defaults_at_the_oracle(rng):
    """Pixels correlated as on CEERS 933's s2d (0.44 at lag 1 along and across the
    slit, which the VAR arrays do not say), under the residual sky of a nodded slit:
    with no parameters a widening, bowed Gaussian keeps one spectrum per slit, the
    oracle's variance (pooled over the slits, as `benchmarks/defaults.py` pools a
    cell) and errors the error scale raises to the real scatter. The model choice
    still weighs the first round against the VAR arrays: one of these eight slits
    takes a 3 % halo that its correlated noise paid for (flux 2 % high), the known
    limit the family count allows; the benchmark's 90 slits of this noise took none."""
    squares, oracle_squares, pulls, gaussians = 0.0, 0.0, [], 0
    for phase in np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False):
        sim = simulate_slit(
            rng,
            n_disp=400,
            spectrum=np.ones(400),
            snr=30.0,
            fwhm=(1.6, 3.2),
            center=rng.uniform(14.0, 16.0),
            slope=0.3,
            curvature=1.5,
            correlated=0.6,
            poisson_from_data=True,
            sky=ResidualSky(level=0.005, tilt=0.3, ripple=0.5, periods=1.5, phase=phase),
        )
        results = extract_slit(slit_data_from_sim(sim), ExtractParams())
        assert len(results) == 1
        (res,) = results
        choice = res.metadata["model_choice"]
        gaussians += choice["kernel"]["chosen"] == "gaussian" and not (
            choice.get("halo") or {}
        ).get("chosen")
        assert res.metadata["error_scale"]["factor"] > 1.1
        best = _oracle(sim, sky=True)
        good = np.isfinite(res.flux) & np.isfinite(best.flux)
        squares += np.sum((res.flux[good] - sim.flux[good]) ** 2)
        oracle_squares += np.sum((best.flux[good] - sim.flux[good]) ** 2)
        error = np.sqrt(res.var_poisson + res.var_rnoise + res.var_flat)
        pulls.append(((res.flux - sim.flux) / error)[good])
    assert gaussians >= 7
    assert squares / oracle_squares < 1.05
    assert 0.93 < np.std(np.concatenate(pulls)) < 1.07
