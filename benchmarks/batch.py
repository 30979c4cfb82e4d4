"""Scale benchmark of ``optimal-extract1d batch``: throughput, memory along the run, overhead.

Run by hand (10-20 minutes on a shared 2-core machine)::

    python benchmarks/batch.py                 # 500 files, 2 workers
    python benchmarks/batch.py --files 100     # a quicker look

It writes a handful of small simulated s2d files (one NIRSpec MOS slit of
31 x 80 pixels each) and copies them to ``--files`` names, then extracts
them with the step's defaults (no parameters), each way in a fresh Python
process:

1. ``serial loop``: ``OptimalExtract1dStep.call(f, save_results=True)`` in a
   plain loop, one process: the floor, no batch machinery;
2. ``batch, 1 process``: `optimal_extract1d.cli.batch.run_batch` with
   ``workers=1`` (the same loop plus the summary, the atomic writes and the
   parameters recorded for ``--resume``);
3. ``process pool``: ``run_batch(workers=2)``;
4. ``Dask LocalCluster``: ``run_batch(scheduler=...)`` on a local cluster of
   2 worker processes with one thread each;
5. ``Dask, profiler off``: the same with Dask's statistical profiler off
   (``distributed.worker.profile.enabled: False``). The profiler keeps the
   call trees of the last 1000 one-second cycles in every worker, which
   grow the worker's memory for the first ~17 minutes of work.

It prints the throughput (files/s) and its ratio to the serial loop, the
peak resident memory of every worker after 10 %, 50 % and 100 % of its
files (flat = no growth with the number of files), and the overhead per
file: the wall time x workers / files minus the mean time a worker spent in
`optimal_extract1d.cli.batch.extract_file`, i.e. what dispatching,
pickling, scheduling and waiting cost per file. For the one-process batch
it is its time per file minus the serial loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

RUNNERS = {
    "serial loop": """
        import resource
        from optimal_extract1d import OptimalExtract1dStep
        peaks, seconds = [], []
        for f in FILES:
            t = time.perf_counter()
            OptimalExtract1dStep.call(f, output_dir=OUT, save_results=True, configure_log=False)
            seconds.append(time.perf_counter() - t)
            peaks.append(("main", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        RESULT = {"seconds": seconds, "peaks": peaks, "failed": 0}
    """,
    "batch, 1 process": """
        from optimal_extract1d.cli.batch import run_batch
        results = run_batch(FILES, output_dir=OUT, workers=1, progress=DONE.append)
        RESULT = summarize(DONE)
    """,
    "process pool": """
        from optimal_extract1d.cli.batch import run_batch
        results = run_batch(FILES, output_dir=OUT, workers=WORKERS, progress=DONE.append)
        RESULT = summarize(DONE)
    """,
    "Dask LocalCluster": """
        from distributed import LocalCluster
        from optimal_extract1d.cli.batch import run_batch
        with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            START = time.perf_counter()  # the cluster's start-up is not the batch's
            results = run_batch(FILES, output_dir=OUT, scheduler=cluster.scheduler_address,
                                progress=DONE.append)
            WALL = time.perf_counter() - START
        RESULT = summarize(DONE)
    """,
    "Dask, profiler off": """
        import dask
        from distributed import LocalCluster
        from optimal_extract1d.cli.batch import run_batch
        with dask.config.set({"distributed.worker.profile.enabled": False}), LocalCluster(
                n_workers=WORKERS, threads_per_worker=1, processes=True,
                dashboard_address=None) as cluster:
            START = time.perf_counter()
            results = run_batch(FILES, output_dir=OUT, scheduler=cluster.scheduler_address,
                                progress=DONE.append)
            WALL = time.perf_counter() - START
        RESULT = summarize(DONE)
    """,
}

PRELUDE = """
import json, logging, os, sys, time, warnings
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
FILES = json.loads(sys.argv[1]); OUT = sys.argv[2]; WORKERS = int(sys.argv[3])

DONE = []  # results in completion order (the progress callback)

def summarize(results):
    # a worker's peak memory after each of its files, in completion order
    return {
        "seconds": [r.seconds for r in results],
        "peaks": [(r.worker, r.peak_rss_mb) for r in results],
        "failed": sum(bool(r.error) for r in results),
    }

import optimal_extract1d.cli.batch, optimal_extract1d.step  # imports are not the batch's
START = time.perf_counter()
WALL = None
"""

EPILOGUE = """
RESULT["wall"] = WALL if WALL is not None else time.perf_counter() - START
print("RESULT " + json.dumps(RESULT))
"""


def make_inputs(folder: Path, n_files: int, n_distinct: int = 5) -> list[str]:
    """``n_files`` s2d files: ``n_distinct`` simulated ones, copied round-robin."""
    from optimal_extract1d.sim.models import make_s2d_file

    rng = np.random.default_rng(2026)
    distinct = [
        make_s2d_file(
            folder / f"sim{i}_s2d.fits", rng, n_slits=1, n_disp=80, snr_range=(20, 60)
        ).path
        for i in range(n_distinct)
    ]
    paths = []
    for i in range(n_files):
        path = folder / f"f{i:04d}_s2d.fits"
        shutil.copyfile(distinct[i % n_distinct], path)
        paths.append(str(path))
    for path in distinct:
        path.unlink()
    return paths


def run(name: str, files: list[str], out: Path, workers: int) -> dict:
    code = PRELUDE + textwrap.dedent(RUNNERS[name]) + EPILOGUE
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "STPIPE_DISABLE_CRDS_STEPPARS": "True",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(files), str(out), str(workers)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def memory_along_run(peaks: list) -> dict[str, tuple[float, float, float]]:
    """Per worker: peak RSS (MB) after 10 %, 50 % and 100 % of its files."""
    by_worker: dict[str, list[float]] = {}
    for worker, peak in peaks:
        by_worker.setdefault(worker, []).append(peak)
    out = {}
    for worker, values in sorted(by_worker.items()):
        n = len(values)
        out[worker] = tuple(values[max(0, int(q * n) - 1)] for q in (0.1, 0.5, 1.0)) + (n,)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--only", nargs="*", choices=list(RUNNERS), default=list(RUNNERS), help="runs to do"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        files = make_inputs(folder / "in", args.files)
        print(f"{args.files} s2d files (1 slit, 31 x 80 px), {args.workers} workers, defaults")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        results = {}
        for i, name in enumerate(args.only):
            out = folder / f"out{i}"
            out.mkdir()
            workers = 1 if name in ("serial loop", "batch, 1 process") else args.workers
            results[name] = run(name, files, out, workers)
            r = results[name]
            print(f"  {name}: {r['wall']:.1f} s, {r['failed']} failed", flush=True)
    report(results, args.files, args.workers)


def report(results: dict, n: int, workers: int) -> None:
    base = results.get("serial loop")
    print()
    header = "run", "files/s", "x serial", "s/file (worker)", "overhead/file"
    print("{:<20} {:>8} {:>9} {:>16} {:>14}".format(*header))
    for name, r in results.items():
        rate = n / r["wall"]
        ratio = f"{rate / (n / base['wall']):.2f}" if base else "-"
        mean = float(np.mean(r["seconds"]))
        k = 1 if name in ("serial loop", "batch, 1 process") else workers
        if name == "batch, 1 process" and base:
            overhead = (r["wall"] - base["wall"]) / n
        elif name == "serial loop":
            overhead = float("nan")
        else:
            overhead = r["wall"] * k / n - mean
        print(f"{name:<20} {rate:>8.2f} {ratio:>9} {mean:>16.3f} {overhead * 1e3:>11.1f} ms")
    print("\npeak resident memory per worker (MB) after 10 % / 50 % / 100 % of its files:")
    for name, r in results.items():
        for worker, (p10, p50, p100, count) in memory_along_run(r["peaks"]).items():
            label = worker.rsplit(":", 1)[-1]
            print(f"  {name:<20} {label:>8}: {p10:7.0f} {p50:7.0f} {p100:7.0f}  ({count} files)")


if __name__ == "__main__":
    main()
