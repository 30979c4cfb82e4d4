"""Batch faults in a real subprocess: interruption, resume, lost workers, atomic outputs.

Every test runs ``optimal-extract1d batch`` as a user would (``python -m
optimal_extract1d.cli.main``), waits for the first file to finish (the
progress line on stderr), then does to it what the fault needs: a SIGTERM,
a SIGINT to a batch started in the background (SIGINT ignored at start), a
SIGKILL of a worker process or of a Dask worker.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from optimal_extract1d.cli.batch import run_batch
from optimal_extract1d.io.atomic import (
    PARTIAL_SUFFIX,
    atomic_path,
    remove_partials,
    remove_stale_partials,
)
from optimal_extract1d.sim.models import make_s2d_file

SRC = Path(__file__).resolve().parents[1] / "src"
N_FILES = 10
N_SLITS = 1


@pytest.fixture(scope="module")
def s2d_files(tmp_path_factory):
    """Ten small one-slit s2d files (~0.2 s each)."""
    folder = tmp_path_factory.mktemp("s2d")
    rng = np.random.default_rng(15)
    return [
        make_s2d_file(
            folder / f"f{i:02d}_s2d.fits", rng, n_slits=N_SLITS, n_disp=60, snr_range=(30, 60)
        ).path
        for i in range(N_FILES)
    ]


def _start(inputs, out, *options, ignore_sigint=False):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "STPIPE_DISABLE_CRDS_STEPPARS": "True",
        "PYTHONWARNINGS": "ignore",
    }
    argv = [sys.executable, "-m", "optimal_extract1d.cli.main", "batch", *map(str, inputs)]

    def background():  # what a shell does to a job started with `&` without job control
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [*argv, "--output-dir", str(out), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=background if ignore_sigint else None,
    )


def _wait_for_first_file(proc):
    """Read progress lines until one file is done; return the lines read."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("[1/"):
            return lines
    pytest.fail(f"the batch ended before a file was done: {''.join(lines)}")


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read()
    except FileNotFoundError:
        return False


def _finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _summary(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _files_by_status(rows):
    status = {}
    for row in rows:
        status.setdefault(Path(row["file"]).name, set()).add((row["status"], row["run"]))
    return status


def _assert_no_partial_output(out, inputs):
    """Only complete x1d files (every slit) and the CSV under final names; no temporary left."""
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.endswith(PARTIAL_SUFFIX)], names
    assert set(names) <= {"batch_summary.csv"} | {p.name.replace("_s2d", "_x1d") for p in inputs}
    for name in names:
        if name.endswith("_x1d.fits"):
            with datamodels.open(out / name) as x1d:
                assert len(x1d.spec) == N_SLITS
                assert all(np.isfinite(s.spec_table["FLUX"]).any() for s in x1d.spec)


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads process trees from /proc"
)


@linux_only
@pytest.mark.parametrize(
    "signum, background",
    [(signal.SIGTERM, False), pytest.param(signal.SIGINT, True, marks=pytest.mark.heavy)],
    ids=["TERM", "INT-bg"],
)
def test_interrupt_stops_cleanly_and_resume_does_every_file_once(
    s2d_files, tmp_path, signum, background
):
    out = tmp_path / "out"
    proc = _start(s2d_files, out, "--workers", "2", ignore_sigint=background)
    _wait_for_first_file(proc)
    workers = _children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signum)
    code, stdout, stderr = _finish(proc, timeout=30)
    assert code == 128 + signum, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)], "orphaned worker processes"
    _assert_no_partial_output(out, s2d_files)

    first = _summary(out / "batch_summary.csv")
    status = _files_by_status(first)
    assert sorted(status) == sorted(p.name for p in s2d_files)  # every file has a row
    done = {f for f, s in status.items() if s == {("fit", "now")}}
    not_run = {f for f, s in status.items() if s == {("not run", "")}}
    assert done and not_run and done | not_run == set(status)
    assert all("interrupted by" in r["warnings"] for r in first if r["status"] == "not run")
    assert {p.name.replace("_x1d", "_s2d") for p in out.glob("*_x1d.fits")} == done
    made = {p.name: p.stat().st_mtime_ns for p in out.glob("*_x1d.fits")}

    proc = _start(s2d_files, out, "--workers", "2", "--resume")
    code, stdout, stderr = _finish(proc)
    assert code == 0, stderr
    assert f"{len(done)} kept from an earlier run" in stdout
    second = _files_by_status(_summary(out / "batch_summary.csv"))
    assert sorted(second) == sorted(status)
    assert {f for f, s in second.items() if s == {("fit", "earlier")}} == done
    assert {f for f, s in second.items() if s == {("fit", "now")}} == not_run
    for name, mtime in made.items():  # the x1d of the first run were not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    _assert_no_partial_output(out, s2d_files)
    assert len(list(out.glob("*_x1d.fits"))) == N_FILES


@linux_only
def test_a_worker_killed_fails_its_file_only(s2d_files, tmp_path):
    out = tmp_path / "out"
    proc = _start(s2d_files, out, "--workers", "2")
    _wait_for_first_file(proc)
    victim = _children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)  # as the out-of-memory killer does
    code, stdout, stderr = _finish(proc)
    assert code == 1, stderr  # 1: a file failed
    rows = _summary(out / "batch_summary.csv")
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1
    reason = f"worker process {victim} was killed by SIGKILL (out of memory?)"
    assert reason in errors[0]["warnings"]
    fitted = {Path(r["file"]).name for r in rows if r["status"] == "fit"}
    assert len(fitted) == N_FILES - 1 and Path(errors[0]["file"]).name not in fitted
    assert not (out / Path(errors[0]["file"]).name.replace("_s2d", "_x1d")).exists()
    _assert_no_partial_output(out, s2d_files)


@linux_only
def test_a_worker_killed_after_writing_its_x1d_leaves_no_x1d_for_its_failed_file(
    s2d_files, tmp_path, monkeypatch
):
    """A worker killed between writing its x1d (whole: written atomically) and sending
    its result: the summary reports the file failed, so its x1d must go too (the test
    above met this race under load: the kill came while the worker wrote its second
    file), and ``--resume`` redoes it; an x1d of an earlier run stays."""
    from optimal_extract1d.cli import batch

    out = tmp_path / "out"
    victim, kept = s2d_files[1], s2d_files[2]
    earlier = Path(batch.x1d_path(kept, out))
    out.mkdir()
    earlier.write_bytes(b"an earlier run's x1d")
    os.utime(earlier, (time.time() - 3600, time.time() - 3600))
    real = batch._extract_one

    def dies_after_writing(path, **kwargs):
        if path in (str(victim), str(kept)):
            if path == str(victim):
                Path(batch.x1d_path(path, kwargs["output_dir"])).write_bytes(b"a whole x1d")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, **kwargs)

    monkeypatch.setattr(batch, "_extract_one", dies_after_writing)
    results = run_batch(s2d_files[:4], output_dir=out, workers=2)
    failed = [r.path for r in results if r.state == "failed"]
    assert sorted(failed) == sorted([str(victim), str(kept)])
    assert all("killed by SIGKILL" in r.error for r in results if r.state == "failed")
    assert not Path(batch.x1d_path(victim, out)).exists()
    assert earlier.read_bytes() == b"an earlier run's x1d"  # older than the run: not its
    assert Path(batch.x1d_path(s2d_files[0], out)).exists()


@pytest.mark.heavy
@linux_only
def test_a_lost_dask_worker_has_its_tasks_rerun(s2d_files, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())
        proc = _start(s2d_files, out, "--scheduler", cluster.scheduler_address)
        _wait_for_first_file(proc)
        os.kill(pids[0], signal.SIGKILL)
        code, stdout, stderr = _finish(proc)
    assert code == 0, stderr
    rows = _summary(out / "batch_summary.csv")
    assert {Path(r["file"]).name for r in rows} == {p.name for p in s2d_files}
    assert all(r["status"] == "fit" for r in rows)
    _assert_no_partial_output(out, s2d_files)
    assert len(list(out.glob("*_x1d.fits"))) == N_FILES


def test_resume_reruns_what_changed_and_overwrite_reruns_all(s2d_files, tmp_path):
    inputs = s2d_files[:2]
    out = tmp_path / "out"
    first = run_batch(inputs, output_dir=out, parameters={"bkg_order": 0})
    assert [r.state for r in first] == ["done", "done"]
    with datamodels.open(first[0].rows[0].x1d) as x1d:
        record = x1d.meta.optimal_extraction.batch
        assert record.parameters == '{"bkg_order": 0}'
    same = run_batch(inputs, output_dir=out, parameters={"bkg_order": 0}, resume=True)
    assert [r.state for r in same] == ["earlier", "earlier"]
    assert [r.rows for r in same] == [
        tuple(row.__class__(**{**row.__dict__, "run": "earlier"}) for row in r.rows) for r in first
    ]
    os.utime(inputs[1])  # an input newer than its x1d
    changed = run_batch(inputs, output_dir=out, parameters={"bkg_order": 0}, resume=True)
    assert [r.state for r in changed] == ["earlier", "done"]
    other = run_batch(inputs, output_dir=out, parameters={"bkg_order": 1}, resume=True)
    assert [r.state for r in other] == ["done", "done"]
    with datamodels.open(other[0].rows[0].x1d) as x1d:
        assert x1d.meta.optimal_extraction.parameters.bkg_order == 1
    # a truncated x1d (left by a batch of an older version) is redone
    x1d_file = Path(other[0].rows[0].x1d)
    x1d_file.write_bytes(x1d_file.read_bytes()[:5000])
    os.utime(x1d_file, (time.time() + 10, time.time() + 10))
    again = run_batch(inputs, output_dir=out, parameters={"bkg_order": 1}, resume=True)
    assert [r.state for r in again] == ["done", "earlier"]
    forced = run_batch(inputs, output_dir=out, parameters={"bkg_order": 1})
    assert [r.state for r in forced] == ["done", "done"]


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "a_x1d.fits"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        Path(tmp).write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a_x1d.fits"]
    with atomic_path(target) as tmp:
        assert Path(tmp).name == target.name and Path(tmp).parent.parent == tmp_path
        Path(tmp).write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["a_x1d.fits"]
    # what a killed process leaves: swept for its pid only
    (tmp_path / f".b_x1d.fits.123.xyz{PARTIAL_SUFFIX}").mkdir()
    (tmp_path / f".c_x1d.fits.456.xyz{PARTIAL_SUFFIX}").mkdir()
    assert [Path(p).name for p in remove_partials(tmp_path, [123])] == [
        f".b_x1d.fits.123.xyz{PARTIAL_SUFFIX}"
    ]
    assert sorted(os.listdir(tmp_path)) == [f".c_x1d.fits.456.xyz{PARTIAL_SUFFIX}", "a_x1d.fits"]
    # a file another process completed: every directory left writing it is stale,
    # whatever its pid (a Dask worker on another machine); other files' are kept
    (tmp_path / f".a_x1d.fits.789.xyz{PARTIAL_SUFFIX}").mkdir()
    (tmp_path / f".a_x1d.fits.extra.789.xyz{PARTIAL_SUFFIX}").mkdir()
    assert [Path(p).name for p in remove_stale_partials(target)] == [
        f".a_x1d.fits.789.xyz{PARTIAL_SUFFIX}"
    ]
    assert sorted(os.listdir(tmp_path)) == [
        f".a_x1d.fits.extra.789.xyz{PARTIAL_SUFFIX}",
        f".c_x1d.fits.456.xyz{PARTIAL_SUFFIX}",
        "a_x1d.fits",
    ]
