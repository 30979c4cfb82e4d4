"""Batch extraction: processes and Dask, summary CSV, failures reported not fatal."""

import csv

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from optimal_extract1d.cli.batch import run_batch
from optimal_extract1d.cli.main import main, split_step_options
from optimal_extract1d.errors import InputError
from optimal_extract1d.sim.models import make_multislit, make_s2d_file
from optimal_extract1d.sim.simulate import simulate_slit


@pytest.fixture
def inputs(tmp_path):
    """Two small simulated s2d files, a file with a pure-noise slit and an unreadable
    slit, and one broken file."""
    rng = np.random.default_rng(7)
    good = [
        make_s2d_file(tmp_path / f"g{i}_s2d.fits", rng, n_slits=2, n_disp=80, snr_range=(30, 60))
        for i in range(2)
    ]
    sims = [simulate_slit(rng, n_disp=80, snr=snr, fwhm=(2.0, 2.0)) for snr in (0.01, 30.0)]
    noisy = tmp_path / "noise_s2d.fits"
    model = make_multislit(sims, filename=noisy.name)
    model.slits[1].meta.wcs = None  # no wavelengths: the slit is skipped
    model.save(noisy)
    broken = tmp_path / "broken_s2d.fits"
    broken.write_text("this is not a FITS file")
    return [g.path for g in good], noisy, broken


def _summary(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fluxes(path):
    with datamodels.open(path) as x1d:
        return [np.asarray(s.spec_table["FLUX"]) for s in x1d.spec]


def test_batch_with_processes_writes_x1d_and_summary(inputs, tmp_path, capsys):
    good, noisy, broken = inputs
    out = tmp_path / "out"
    argv = ["batch", *map(str, [*good, noisy, broken]), "--workers", "2", "--output-dir", str(out)]
    assert main([*argv, "--bkg_order", "1", "--slice-width=20"]) == 1  # 1: a file failed
    captured = capsys.readouterr()
    assert "[4/4]" in captured.err and "1 failed" in captured.out
    rows = _summary(out / "batch_summary.csv")
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"].rsplit("/", 1)[-1], []).append(row)
    for path in good:
        file_rows = by_file[path.name]
        assert [r["slit"] for r in file_rows] == ["1", "2"]
        assert all(r["status"] == "fit" and r["needs_review"] == "False" for r in file_rows)
        assert all(float(r["median_snr"]) > 5 for r in file_rows)
        x1d = out / path.name.replace("_s2d", "_x1d")
        assert file_rows[0]["x1d"] == str(x1d)
        with datamodels.open(x1d) as model:
            assert model.meta.optimal_extraction.parameters.bkg_order == 1
            assert model.meta.optimal_extraction.parameters.slice_width == 20
    noise_row, skipped_row = by_file[noisy.name]
    assert noise_row["status"] != "fit" and noise_row["needs_review"] == "True"
    assert int(noise_row["n_warnings"]) >= 1 and "Slit 1" in noise_row["warnings"]
    assert skipped_row["slit"] == "2" and skipped_row["status"] == "skipped"
    assert skipped_row["needs_review"] == "True" and skipped_row["n_warnings"] == "1"
    assert "neither a usable WCS" in skipped_row["warnings"]
    assert "Slit 2" not in noise_row["warnings"]
    (error_row,) = by_file[broken.name]
    assert error_row["status"] == "error" and "cannot read" in error_row["warnings"]
    assert not (out / "broken_x1d.fits").exists()


def test_dask_cluster_gives_the_same_spectra_as_one_process(inputs, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    good, _, _ = inputs
    serial = run_batch(good, output_dir=tmp_path / "serial")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        argv = ["batch", *map(str, good), "--output-dir", str(tmp_path / "dask")]
        assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert "0 failed" in capsys.readouterr().out
    for result in serial:
        x1d = result.rows[0].x1d
        for a, b in zip(_fluxes(x1d), _fluxes(x1d.replace("serial", "dask")), strict=True):
            np.testing.assert_array_equal(a, b)


def test_bad_step_parameter_stops_before_any_work(inputs, tmp_path, capsys):
    good, _, _ = inputs
    out = tmp_path / "out"
    assert main(["batch", str(good[0]), "--output-dir", str(out), "--bkg_ordr", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown step parameter 'bkg_ordr' (did you mean 'bkg_order'?)" in err
    assert "Extra value" not in err
    assert main(["batch", str(good[0]), "--output-dir", str(out), "--kernal=moffat"]) == 2
    assert "'kernal' (did you mean 'kernel'?)" in capsys.readouterr().err
    assert main(["batch", str(good[0]), "--output-dir", str(out), "--zzzz", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown step parameter 'zzzz';" in err and "did you mean" not in err
    # output_dir is the batch's own --output-dir (alias --output_dir); output_file is refused
    assert main(["batch", str(good[0]), "--output-dir", str(out), "--output_file", "x.fits"]) == 2
    assert "use --output-dir" in capsys.readouterr().err
    assert not out.exists()


def test_repeated_file_names_are_refused(inputs, tmp_path):
    good, _, _ = inputs
    other = tmp_path / "elsewhere"
    other.mkdir()
    copy = other / good[0].name
    copy.write_bytes(good[0].read_bytes())
    with pytest.raises(InputError, match="g0_s2d.fits.*collide"):
        run_batch([good[0], copy], output_dir=tmp_path / "out")


def test_split_step_options():
    tokens = ["a.fits", "--workers", "3", "--kernel", "moffat", "b.fits", "--bkg-order=1"]
    batch, options = split_step_options(
        [*tokens, "--output-dir=o", "--resume", "--extraction_region=1,2,3,4", "--overwrite"]
    )
    assert batch == ["a.fits", "--workers", "3", "b.fits", "--output-dir=o"] + [
        "--resume",
        "--overwrite",
    ]
    assert options == {"kernel": "moffat", "bkg_order": "1", "extraction_region": "1,2,3,4"}
    with pytest.raises(SystemExit):
        split_step_options(["a.fits", "--kernel"])


def test_resume_and_overwrite_flags(inputs, tmp_path, capsys):
    good, _, _ = inputs
    out = tmp_path / "out"
    argv = ["batch", str(good[0]), "--output-dir", str(out)]
    assert main(argv) == 0
    x1d = out / good[0].name.replace("_s2d", "_x1d")
    made = x1d.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "1 kept from an earlier run" in captured.out and "will be replaced" not in captured.err
    assert x1d.stat().st_mtime_ns == made
    rows = _summary(out / "batch_summary.csv")
    assert [(r["slit"], r["status"], r["run"]) for r in rows] == [
        ("1", "fit", "earlier"),
        ("2", "fit", "earlier"),
    ]
    assert main(argv) == 0  # the default redoes the file, and says so
    assert "1 x1d files exist and will be replaced" in capsys.readouterr().err
    assert x1d.stat().st_mtime_ns > made
    assert main([*argv, "--overwrite"]) == 0
    assert "will be replaced" not in capsys.readouterr().err
    with pytest.raises(SystemExit):  # they exclude each other
        main([*argv, "--resume", "--overwrite"])
