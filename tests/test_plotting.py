"""The per-slit diagnostic PNG and what it marks (components, gaps, limits, shared axes)."""

import numpy as np
import pytest
from ceers import CEERS_LINES_UM, requires_ceers
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.io import plotting
from optimal_extract1d.io.plotmarks import (
    component_tracks,
    data_gaps,
    flux_display_unit,
    robust_limits,
)
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import simulate_slit

PNG = b"\x89PNG\r\n\x1a\n"
THREE_SHUTTER = dict(nod_offsets=(-5.3, 5.3, -10.6, 10.6), nod_scale=(1 / 3, 1 / 3, 1 / 6, 1 / 6))
COMPANION = 8.0  # offset (px) of the second source from the first
GAP = slice(140, 150)  # all-NaN columns, as a detector gap leaves them


@pytest.fixture(scope="module")
def nodded_pair():
    """A nodded (3-shutter) slit with two sources and a detector gap, as an s2d model."""
    sim = simulate_slit(
        np.random.default_rng(3),
        n_cross=41,
        n_disp=300,
        snr=30.0,
        center=18.0,
        fwhm=(1.8, 2.6),
        companions=((COMPANION, 0.5),),
        **THREE_SHUTTER,
    )
    sim.data[:, GAP] = np.nan
    return sim, make_multislit([sim], filename="pair_s2d.fits", nod_type="3-SHUTTER-SLITLET")


def _run_capturing(source, outdir):
    """Run the step with ``save_plots``; return the (diag, figure) pairs `plot_slit` drew."""
    figures = []
    real = plotting.plot_slit

    def capture(diag, path, *args, **kwargs):
        fig = real(diag, path, *args, **kwargs)
        figures.append((diag, fig))
        return fig

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plotting, "plot_slit", capture)
        OptimalExtract1dStep.call(source, output_dir=str(outdir), save_plots=True)
    return figures


@pytest.fixture(scope="module")
def pair_run(nodded_pair, tmp_path_factory):
    """The step's plot of the nodded pair: (simulation, diagnostics, figure, output dir)."""
    sim, model = nodded_pair
    outdir = tmp_path_factory.mktemp("pair_plot")
    ((diag, fig),) = _run_capturing(model, outdir)
    return sim, diag, fig, outdir


def _axes(fig):
    """The image and spectrum panels of a slit figure."""
    by_title = {}
    for ax in fig.axes:
        if any(line.get_gid() == "component" for line in ax.get_lines()):
            by_title["image"] = ax
        if any(c.get_gid() == "error-band" for c in ax.collections):
            by_title["spectrum"] = ax
    return by_title["image"], by_title["spectrum"]


def _markers(ax):
    return [line for line in ax.get_lines() if line.get_gid() == "component"]


def _label_boxes(fig):
    """Every title, axis label group (tick labels and label) and legend, with its owner."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = []
    for ax in fig.findobj(lambda a: isinstance(a, Axes)):
        parts = [ax.xaxis, ax.yaxis, ax.title, ax._left_title, ax._right_title, ax.get_legend()]
        for part in parts:
            if part is None or not part.get_visible():
                continue
            if hasattr(part, "get_text") and not part.get_text():
                continue
            box = part.get_tightbbox(renderer)
            if box is not None and box.width > 0 and box.height > 0:
                boxes.append((ax, box))
    for sub in fig.findobj(lambda a: hasattr(a, "subfigs")):
        boxes += [(sub, t.get_window_extent(renderer)) for t in sub.texts if t.get_text()]
    return boxes


def _overlaps(fig):
    """Pairs of labels of different owners whose boxes intersect by more than 1 px^2."""
    boxes = _label_boxes(fig)
    out = []
    for i, (owner_a, a) in enumerate(boxes):
        for owner_b, b in boxes[i + 1 :]:
            if owner_a is owner_b:
                continue
            dx = min(a.x1, b.x1) - max(a.x0, b.x0)
            dy = min(a.y1, b.y1) - max(a.y0, b.y0)
            if dx > 1 and dy > 1:
                out.append((a, b))
    return out


def test_component_tracks_follow_the_injected_sources_and_nod_copies(nodded_pair):
    from optimal_extract1d.io.diagnostics import slit_diagnostics
    from optimal_extract1d.params import ExtractParams
    from optimal_extract1d.pipeline.extraction import extract

    sim, model = nodded_pair
    (diag,) = slit_diagnostics(model, extract(model, ExtractParams(), keep_slits=True))
    tracks = component_tracks(diag)
    assert [t.kind for t in tracks].count("source") == 2 and len(tracks) == 6
    sources = sorted((t for t in tracks if t.kind == "source"), key=lambda t: t.center[0])
    assert [t.label for t in sources] == [s.name for s in diag.spectra]  # named as the spectra
    good = np.isfinite(sim.wavelength)
    # the window the extraction used sits on the injected trace, with the injected width
    for track, offset in zip(sources, (0.0, COMPANION), strict=True):
        assert np.median(np.abs(track.center - sim.center - offset)[good]) < 0.1
        assert np.median(np.abs(track.fwhm / sim.fwhm - 1)[good]) < 0.1
    nods = sorted(np.median(t.center - sim.center) for t in tracks if t.kind == "nod")
    np.testing.assert_allclose(nods, sorted(THREE_SHUTTER["nod_offsets"]), atol=0.3)


def test_slit_png_of_a_nodded_multi_source_slit(pair_run):
    sim, diag, fig, outdir = pair_run
    png = outdir / "pair_1_plot.png"  # <input>_<slit>_plot.png
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 50_000
    image, spectrum = _axes(fig)
    # every component marked: two sources and four nod copies, each with its window
    tracks = component_tracks(diag)
    assert len(_markers(image)) == len(tracks) == 6
    assert sum(line.get_gid() == "fwhm-window" for line in image.get_lines()) == 2 * 6
    labels = {t.get_text() for t in image.texts}
    assert {s.name for s in diag.spectra} <= labels and sum("nod" in t for t in labels) == 4
    # a colour bar beside the image, and the two panels follow the same columns
    assert image.images[0].colorbar is not None
    assert image.get_shared_x_axes().joined(image, spectrum)
    assert image.get_xlim() == spectrum.get_xlim() == (-0.5, 299.5)
    # the gap is hatched in both panels and named in the image
    for ax in (image, spectrum):
        (gap,) = [p for p in ax.patches if p.get_gid() == "gap"]
        x = gap.get_path().transformed(gap.get_patch_transform()).vertices[:, 0]
        assert (x.min(), x.max()) == (GAP.start - 0.5, GAP.stop - 0.5)
    assert [t.get_text() for t in image.texts if t.get_gid() == "gap-label"] == ["gap"]
    assert data_gaps(diag.slit.data) == [(GAP.start, GAP.stop - 1)]
    assert not _overlaps(fig)


def test_the_image_title_names_the_extraction_region(pair_run):
    from dataclasses import replace

    from matplotlib.figure import Figure

    _, diag, fig, _ = pair_run
    image, _ = _axes(fig)
    # the defaults extract the whole slit: its frame would lie on the image's edge
    assert image.get_title().endswith("extraction region: the whole slit")
    x1, y1, x2, y2 = diag.spectra[0].region
    boxed = replace(diag.spectra[0], region=(x1 + 20, y1 + 3, x2 - 20, y2 - 3))
    ax = Figure().add_subplot()
    plotting.panel_slit_image(ax, replace(diag, spectra=(boxed, *diag.spectra[1:])))
    assert ax.get_title().endswith("yellow: extraction region")


def test_secondary_axes_give_the_wavelength_of_each_column(pair_run):
    sim, diag, fig, _ = pair_run
    image, spectrum = _axes(fig)
    FigureCanvasAgg(fig).draw()
    columns = np.arange(sim.wavelength.size)
    for ax in (image, spectrum):
        (top,) = [c for c in ax.child_axes if c.get_xlabel() == "wavelength (um)"]
        lo, hi = top.get_xlim()
        ticks = [w for w in top.get_xticks() if lo <= w <= hi]
        assert len(ticks) >= 3
        for w in ticks:  # a tick labelled w stands over the column of wavelength w
            x = top.transData.transform((w, 0.0))[0]
            column = ax.transData.inverted().transform((x, 0.0))[0]
            assert np.interp(column, columns, sim.wavelength) == pytest.approx(w, rel=1e-3)


def test_spectrum_limits_keep_the_continuum_and_show_the_error_band(pair_run):
    sim, diag, fig, _ = pair_run
    _, spectrum = _axes(fig)
    bottom, top = spectrum.get_ylim()
    shown, _ = flux_display_unit("Jy", diag.spectra[0].flux * diag.spectra[0].units.flux_scale)
    for result in diag.spectra:
        flux = result.flux * result.units.flux_scale * shown
        lo, hi = np.nanpercentile(flux, (5, 95))
        assert bottom <= lo and hi <= top
    # the 1-sigma band is visible: its median height is over 2 % of the axis
    for band in (c for c in spectrum.collections if c.get_gid() == "error-band"):
        for path in band.get_paths():  # one polygon each side of the gap
            y = path.vertices[:, 1]
            n = y.size // 2
            height = np.abs(y[1:n] - y[-2 : -n - 1 : -1])
            assert np.nanmedian(height) > 0.02 * (top - bottom)


def test_robust_limits_keep_the_continuum_when_one_line_dominates():
    rng = np.random.default_rng(1)
    continuum = 50 + rng.normal(0, 5, 400)
    lined = continuum.copy()
    lined[200:203] = 5000.0  # a line 100 times the continuum
    err = np.full(400, 5.0)
    bottom, top = robust_limits(lined, err)
    lo, hi = np.percentile(lined, (5, 95))
    assert bottom < lo and hi < top and top < 5000  # the line runs off the top
    assert (hi - lo) / (top - bottom) > 0.2  # the continuum fills a fifth of the axis
    # without the line the whole spectrum is shown
    bottom, top = robust_limits(continuum, err)
    assert bottom < continuum.min() and continuum.max() < top
    # degenerate spectra get a finite, non-empty range around their values
    for flat, error in ((np.zeros(50), np.zeros(50)), (np.full(50, 3.0), np.full(50, 1e-12))):
        bottom, top = robust_limits(flat, error)
        assert bottom < flat[0] < top and np.isfinite([bottom, top]).all()
    assert robust_limits(np.full(5, np.nan), np.full(5, np.nan)) == (-1.0, 1.0)


def test_off_scale_columns_are_marked_and_the_log_scale_is_offered(nodded_pair, tmp_path):
    from optimal_extract1d.io.diagnostics import slit_diagnostics
    from optimal_extract1d.params import ExtractParams
    from optimal_extract1d.pipeline.extraction import extract

    sim, model = nodded_pair
    (diag,) = slit_diagnostics(model, extract(model, ExtractParams(), keep_slits=True))
    fig = plotting.plot_slit(diag, None, yscale="symlog")
    assert _axes(fig)[1].get_yscale() == "symlog"
    with pytest.raises(ValueError, match=r"yscale must be one of \('linear', 'log', 'symlog'\)"):
        plotting.plot_slit(diag, tmp_path / "x.png", yscale="logarithmic")
    assert not (tmp_path / "x.png").exists()


def test_data_gaps_are_the_all_nan_column_runs():
    data = np.ones((5, 20))
    data[:, :2] = np.nan
    data[:, 8:11] = np.nan
    data[2, 15] = np.nan  # one NaN pixel is not a gap
    data[:, 19] = np.nan
    assert data_gaps(data) == [(0, 1), (8, 10), (19, 19)]
    assert data_gaps(data, offset=100) == [(100, 101), (108, 110), (119, 119)]
    assert data_gaps(np.ones((3, 4))) == []


@requires_ceers
def test_slit_png_of_the_ceers_933_s2d(ceers_s2d, tmp_path):
    ((diag, fig),) = _run_capturing(str(ceers_s2d), tmp_path)
    (png,) = tmp_path.glob("*_plot.png")
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 50_000
    image, spectrum = _axes(fig)
    tracks = component_tracks(diag)
    kinds = [t.kind for t in tracks]
    # the source and the negative copies the nod subtraction left
    assert kinds[0] == "source" and kinds.count("nod") >= 2
    assert len(_markers(image)) == len(tracks)
    assert image.images[0].colorbar is not None
    assert image.get_shared_x_axes().joined(image, spectrum)
    # the emission lines dominate the flux; the axis keeps the continuum readable
    # (5-95 % range over a fifth of it) and marks the line columns above it
    result = diag.spectra[0]
    shown, _ = flux_display_unit("Jy", result.flux * result.units.flux_scale)
    flux = result.flux * result.units.flux_scale * shown
    bottom, top = spectrum.get_ylim()
    lo, hi = np.nanpercentile(flux, (5, 95))
    assert bottom <= lo and hi <= top and (hi - lo) / (top - bottom) > 0.2
    (above,) = [line for line in spectrum.get_lines() if line.get_gid() == "off-scale"]
    lam = np.interp(above.get_xdata(), np.arange(flux.size) + result.region[0], result.wavelength)
    for line in CEERS_LINES_UM:
        assert np.min(np.abs(lam - line)) < 0.05
    assert not _overlaps(fig)


def test_colorbar_ticks_of_the_asinh_stretch_are_round_and_apart():
    from matplotlib.colors import AsinhNorm

    from optimal_extract1d.io.plotmarks import colorbar_ticks, stretch_limits

    rng = np.random.default_rng(2)
    image = rng.normal(0, 0.01, (30, 200))
    image[14:17] += 1.0  # a bright trace over noise: asinh crowds ticks near zero
    vmin, vmax, width = stretch_limits(image)
    # linear within the noise (the trace rows, 10 % of the pixels, widen the MAD ~14 %)
    assert width == pytest.approx(0.01, rel=0.2)
    norm = AsinhNorm(linear_width=width, vmin=vmin, vmax=vmax)
    ticks = colorbar_ticks(norm, vmin, vmax)
    positions = norm(np.array(ticks))
    assert 0.0 in ticks and len(ticks) >= 3
    assert np.all(np.diff(positions) >= 0.12) and all(vmin <= t <= vmax for t in ticks)
    mantissa = [abs(t) / 10 ** np.floor(np.log10(abs(t))) for t in ticks if t]
    np.testing.assert_allclose([min(abs(m - r) for r in (1, 2, 5)) for m in mantissa], 0, atol=1e-9)


def test_names_of_close_components_are_spread_apart():
    from optimal_extract1d.io.plotmarks import spread_positions

    # three nod copies 1 px apart, labels needing 2.5 px: spread, order kept, inside the slit
    spread = spread_positions([10.0, 11.0, 9.0, 30.0], min_gap=2.5, limits=(-0.5, 40.5))
    assert spread[3] == 30.0  # a lone component keeps its place
    close = np.array(spread[:3])
    assert np.all(np.diff(np.sort(close)) >= 2.5 - 1e-9)
    assert list(np.argsort(close)) == [2, 0, 1]
    # near the top edge the labels are pushed down instead
    top = spread_positions([40.0, 40.2], min_gap=2.5, limits=(-0.5, 40.5))
    assert max(top) <= 40.5 - 1.25 and abs(top[0] - top[1]) >= 2.5 - 1e-9


def test_jy_spectra_are_shown_in_a_unit_that_gives_readable_numbers():
    assert flux_display_unit("Jy", np.array([2.0, 3.0])) == (1.0, "Jy")
    assert flux_display_unit("Jy", np.array([4e-3, 5e-3])) == (1e3, "mJy")
    assert flux_display_unit("Jy", np.array([3e-8, np.nan])) == (1e9, "nJy")
    assert flux_display_unit("MJy/sr", np.array([3e-8])) == (1.0, "MJy/sr")  # other units kept
    assert flux_display_unit("Jy", np.array([np.nan, 0.0])) == (1.0, "Jy")
