"""The demo summary: per slit a cut-out, the spectrum and the slice against the kernel."""

import re

import numpy as np
import pytest
from test_plotting import PNG, _overlaps

from optimal_extract1d.cli.demo import run_demo
from optimal_extract1d.io import summaryplot
from optimal_extract1d.io.plotmarks import slice_and_model


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run the demo on three slits; return its table, the summary drawn and the figure."""
    outdir = tmp_path_factory.mktemp("demo")
    drawn = []
    real = summaryplot.plot_demo_summary

    def capture(summary, path, **kwargs):
        fig = real(summary, path, **kwargs)
        drawn.append((summary, fig))
        return fig

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(summaryplot, "plot_demo_summary", capture)
        table = run_demo(outdir, n_slits=3, seed=5)
    ((summary, fig),) = drawn
    return outdir, table, summary, fig


def test_summary_png_has_a_titled_panel_group_per_slit(demo):
    outdir, table, summary, fig = demo
    assert (outdir / "demo_summary.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in outdir.glob("*_scene_model.fits")) == [
        f"demo_{i}_scene_model.fits" for i in (1, 2, 3)
    ]
    # the titles carry the S/N and F/F_true the demo prints for each slit
    printed = {
        m[0]: (float(m[1]), float(m[2]))
        for m in re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+$", table, re.M)
    }
    cells = fig.subfigs
    assert len(cells) == len(summary) == len(printed) == 3
    for cell, slit in zip(cells, summary, strict=True):
        title = next(t.get_text() for t in cell.texts)
        snr, ratio = printed[slit.name]
        assert title == f"slit {slit.name}: S/N {snr:.1f}, F/F_true {ratio:.3f}"
        cut, spectrum, kernel = cell.axes
        # the cut-out is drawn at the wavelengths of its columns, over the spectrum's axis
        assert cut.get_shared_x_axes().joined(cut, spectrum)
        assert len(cut.collections) == 1 and cut.get_ylim()[1] - cut.get_ylim()[0] <= 17
        assert spectrum.get_xlabel() == "wavelength (um)" and kernel.get_xlabel() == "row"
    assert not _overlaps(fig)


def test_slice_panel_is_the_coadd_of_the_data_and_of_the_scene_model(demo):
    _, _, summary, fig = demo
    for cell, slit in zip(fig.subfigs, summary, strict=True):
        kernel = cell.axes[2]
        values, sigma, model = slice_and_model(
            slit.data,
            slit.variance,
            slit.mask,
            slit.scene,
            column=slit.slice_column,
            width=slit.slice_width,
        )
        (line,) = kernel.get_lines()[-1:]
        np.testing.assert_allclose(line.get_ydata(), model)
        # the kernel describes the slice: chi2 per row near 1 (and the peak on the source)
        ok = np.isfinite(values) & (sigma > 0)
        chi2 = np.mean(((values - model) / sigma)[ok] ** 2)
        assert chi2 < 3.0
        assert abs(np.nanargmax(model) - slit.center) <= 1
