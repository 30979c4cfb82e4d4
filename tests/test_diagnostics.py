"""Diagnostic images (profile, scene model, residual) and per-slit plots."""

import numpy as np
import pytest
from conftest import MEDIAN_SE
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.sim.models import make_lrs_image, make_multislit
from optimal_extract1d.sim.simulate import simulate_slit

ALL = dict(save_profile=True, save_scene_model=True, save_residual_image=True)


@pytest.fixture
def mos_file(rng, tmp_path):
    sims = [simulate_slit(rng, n_disp=90, snr=40.0, fwhm=(2.0, 2.0)) for _ in range(2)]
    path = tmp_path / "mos_s2d.fits"
    make_multislit(sims, filename=path.name).save(path)
    return path


def _open(path):
    with datamodels.open(path) as model:
        return np.asarray(model.data, float)


def test_images_per_slit_have_the_slit_shape_and_residual_is_data_minus_scene(mos_file, tmp_path):
    region = [5, 3, 80, 26]  # x1, y1, x2, y2
    x1d = OptimalExtract1dStep.call(
        str(mos_file), output_dir=str(tmp_path), extraction_region=region, **ALL
    )
    # fitted per column: the flux and the background terms the slit's scene chose
    orders = {s.name: s.meta.optimal_extraction.bkg_order for s in x1d.spec}
    with datamodels.open(mos_file) as s2d:
        for slit in s2d.slits:
            n_linear = 1 + max(orders[slit.name] + 1, 0)
            stem = tmp_path / f"mos_{slit.name}"
            profile = _open(f"{stem}_profile.fits")
            scene = _open(f"{stem}_scene_model.fits")
            residual = _open(f"{stem}_residual.fits")
            data = np.asarray(slit.data, float)
            assert profile.shape == scene.shape == residual.shape == data.shape
            np.testing.assert_allclose(residual, data - scene, rtol=1e-6, atol=1e-6)
            inside = np.zeros(data.shape, bool)
            inside[3:27, 5:81] = True
            assert np.all(profile[~inside] == 0) and np.all(np.isnan(scene[~inside]))
            np.testing.assert_allclose(profile[:, 5:81].sum(axis=0), 1.0, rtol=1e-5)
            # the model is a good description of the data: residuals are noise-like
            noise = np.sqrt(slit.var_poisson + slit.var_rnoise + slit.var_flat)
            pull = (residual / noise)[inside & np.isfinite(residual)]
            # ~1,800 unit-normal pulls, less the fitted terms (of 24 rows per column):
            # their std is sqrt(1 - n_linear / 24) (0.979 with the flux alone), with a
            # standard error of 1 / sqrt(2 N) = 0.017; their median has a standard
            # error of sqrt(pi / 2) / sqrt(N) = 0.029. Five of each (0.7 < std < 1.5
            # and |median| < 0.2 were ~8-sigma windows).
            std = np.sqrt(1 - n_linear / (region[3] - region[1] + 1))
            assert abs(np.median(pull)) < 5 * MEDIAN_SE / np.sqrt(pull.size)
            assert abs(np.std(pull) - std) < 5 / np.sqrt(2 * pull.size)


def test_dispersion_along_y_is_transposed_back(rng, tmp_path):
    sim = simulate_slit(
        rng, n_cross=41, n_disp=120, wavelength_range=(5.0, 12.0), snr=40.0, fwhm=(2.5, 2.5)
    )
    model = make_lrs_image(sim, filename="lrs_s2d.fits")
    OptimalExtract1dStep.call(model, output_dir=str(tmp_path), save_plots=True, **ALL)
    data = np.asarray(model.data, float)
    assert data.shape == (120, 41)
    profile = _open(tmp_path / "lrs_profile.fits")  # single slit: no slit name in the file name
    residual = _open(tmp_path / "lrs_residual.fits")
    scene = _open(tmp_path / "lrs_scene_model.fits")
    assert profile.shape == data.shape
    np.testing.assert_allclose(profile.sum(axis=1), 1.0, rtol=1e-5)  # normalized along x
    np.testing.assert_allclose(residual, data - scene, rtol=1e-6, atol=1e-6)
    assert (tmp_path / "lrs_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_one_png_per_slit(mos_file, tmp_path):
    OptimalExtract1dStep.call(str(mos_file), output_dir=str(tmp_path), save_plots=True)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["mos_1_plot.png", "mos_2_plot.png"]
    assert all((tmp_path / p).stat().st_size > 10_000 for p in pngs)


def test_nothing_is_written_by_default(mos_file, tmp_path):
    before = set(tmp_path.iterdir())
    OptimalExtract1dStep.call(str(mos_file), output_dir=str(tmp_path))
    assert set(tmp_path.iterdir()) == before


def test_repeated_slit_names_in_a_container_get_distinct_files(rng, tmp_path):
    sims = [simulate_slit(rng, n_disp=60, snr=40.0, fwhm=(2.0, 2.0)) for _ in range(2)]
    first, second = make_multislit(sims[:1]), make_multislit(sims[1:])  # both slits named "1"
    OptimalExtract1dStep.call(
        ModelContainer([first, second]),
        output_dir=str(tmp_path),
        output_file="pair",
        save_profile=True,
    )
    assert sorted(p.name for p in tmp_path.glob("*_profile.fits")) == [
        "pair_1_0_profile.fits",
        "pair_1_1_profile.fits",
    ]


def _diagnostics(model, **kw):
    from optimal_extract1d.io.diagnostics import slit_diagnostics
    from optimal_extract1d.params import ExtractParams
    from optimal_extract1d.pipeline.extraction import extract

    params = ExtractParams(**kw)
    return slit_diagnostics(model, extract(model, params, keep_slits=True))


def test_plot_shows_the_binned_fits_and_the_smooth_models_used(curved_widening):
    import matplotlib.pyplot as plt

    from optimal_extract1d.io.plotting import SLIT_PANELS, panel_kernel_variation

    sim = curved_widening(n_disp=300, snr=40.0, center=14.2)
    model = make_multislit([sim])
    (plain,) = _diagnostics(model, fit_fwhm=False, fit_trace=False)
    assert not panel_kernel_variation.applies(plain)  # no bins: the panel is left out
    (auto,) = _diagnostics(model)  # the defaults find the variation on this slit
    assert panel_kernel_variation.applies(auto)
    (diag,) = _diagnostics(model, fit_fwhm=True, fit_trace=True)
    assert panel_kernel_variation in SLIT_PANELS and panel_kernel_variation.applies(diag)
    fig, ax = plt.subplots()
    panel_kernel_variation(ax, diag)
    lines = {line.get_label(): line for a in fig.axes for line in a.get_lines()}
    d0 = diag.spectra[0].region[0]
    center, fwhm = lines["center model"], lines["FWHM model"]
    columns = np.asarray(center.get_xdata(), int)
    # the drawn models are the ones the extraction used: they follow the injected
    # (curved) trace and the doubling width
    np.testing.assert_allclose(center.get_ydata(), sim.center[columns], atol=0.05)
    np.testing.assert_allclose(fwhm.get_ydata(), sim.fwhm[columns], rtol=0.06)
    assert columns[0] == d0 and len(lines["center (bins)"].get_xdata()) >= 10
    plt.close(fig)


def test_each_slit_is_read_once_and_the_diagnostics_reuse_it(rng, tmp_path, monkeypatch):
    from optimal_extract1d.io import slits

    sims = [simulate_slit(rng, n_disp=80, snr=30.0, spectrum=np.ones(80)) for _ in range(3)]
    model = make_multislit(sims, filename="three_s2d.fits")
    reads = []
    real = slits.read_slit

    def counting(slit, parent, **kw):
        reads.append(slits.slit_name(slit, parent))
        return real(slit, parent, **kw)

    monkeypatch.setattr(slits, "read_slit", counting)
    OptimalExtract1dStep.call(model, save_profile=True, save_plots=True, output_dir=str(tmp_path))
    assert sorted(reads) == sorted({*reads}) and len(reads) == 3
    assert len(list(tmp_path.glob("*_profile.fits"))) == 3
    assert len(list(tmp_path.glob("*_plot.png"))) == 3


def test_plotting_leaves_the_users_matplotlib_backend_alone():
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg');"
        "import optimal_extract1d.io.plotting;"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
