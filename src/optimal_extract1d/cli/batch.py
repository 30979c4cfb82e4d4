"""Batch extraction: many s2d files, one x1d each, and a "second look" summary.

Files run in parallel in worker processes (`.cli.workers.WorkerPool`) or,
with a scheduler address, as tasks on a Dask cluster; both call
`extract_file`, which never raises: a file that fails becomes a summary row
with its error, and the batch goes on. The summary has one row per spectrum
(or skipped slit, or failed file) with its fit status, the warnings logged
for it and its median S/N, and is written as CSV.

A batch survives interruption. Every x1d, diagnostic file and the CSV is
written atomically (`.io.atomic`). On SIGINT or SIGTERM, `run_batch` stops
handing out files, ends its workers (or cancels its Dask tasks) and raises
`BatchInterrupted` carrying the results so far, the unfinished files marked
``not run``. Every x1d records the batch parameters it was made with, so
``resume=True`` keeps an up-to-date x1d instead of redoing it. A worker
process that dies marks its file failed with the reason; on Dask, the
scheduler reruns the task of a lost worker elsewhere.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import importlib.metadata
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..errors import InputError, OptimalExtractError, ParameterError
from ..io.atomic import atomic_path, remove_partials, remove_stale_partials
from .workers import WorkerLost, WorkerPool

__all__ = [
    "check_parameters",
    "SummaryRow",
    "FileResult",
    "BatchInterrupted",
    "extract_file",
    "x1d_path",
    "earlier_result",
    "run_batch",
    "write_summary",
    "format_summary",
    "Progress",
    "BATCH_KEY",
    "NOT_RUN",
]

log = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "file",
    "slit",
    "status",
    "needs_review",
    "median_snr",
    "n_warnings",
    "warnings",
    "x1d",
    "run",
)
# Step parameters the batch sets itself.
_RESERVED = ("output_dir", "output_file", "save_results", "input_dir")
#: Key, under the x1d's ``meta.optimal_extraction``, of what the batch records.
BATCH_KEY = "batch"
#: Status of the summary row of a file an interrupted batch did not finish.
NOT_RUN = "not run"


def check_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Validate step parameters for a batch (strings allowed); return them typed.

    Raises
    ------
    ParameterError
        If a name is not a step parameter, a value does not fit the spec, or
        the parameter is one the batch sets itself (output location).
    """
    reserved = sorted(set(values) & set(_RESERVED))
    if reserved:
        msg = f"{reserved} are set by the batch; use --output-dir for the output location"
        raise ParameterError(msg)
    from ..step import OptimalExtract1dStep

    known = set(OptimalExtract1dStep.load_spec_file()) - set(_RESERVED)
    unknown = [name for name in values if name not in known]
    if unknown:
        raise ParameterError("; ".join(_unknown_parameter(name, known) for name in unknown))
    return OptimalExtract1dStep.validated_parameters(values)


def _unknown_parameter(name: str, known: set[str]) -> str:
    """``unknown step parameter 'kernal' (did you mean 'kernel'?)``."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"unknown step parameter '{name}'{hint}; "
        "`strun optimal_extract_1d --help` lists the parameters"
    )


@dataclass(frozen=True)
class SummaryRow:
    """One line of the batch summary.

    Attributes
    ----------
    file : str
        Input file.
    slit : str
        Spectrum (slit) name; empty for a file that failed.
    status : str
        ``fit``, ``fixed_kernel`` or ``box`` (see the step), ``skipped`` for a
        slit without spectrum, ``error`` for a file that failed, ``not run``
        for a file an interrupted batch did not finish.
    needs_review : bool
        True unless the kernel was fitted, nothing was logged at WARNING and
        the median S/N is finite.
    median_snr : float
        Median FLUX / FLUX_ERROR over the columns with a finite flux.
    n_warnings : int
        Number of WARNING/ERROR log messages about this slit or its file.
    warnings : str
        Those messages (or the error, or the skip reason), joined by ``" | "``.
    x1d : str
        Output file; empty for a file that failed or did not run.
    run : str
        ``now`` (extracted by this batch), ``earlier`` (an up-to-date x1d of an
        earlier batch, kept by ``resume``) or empty (not run).
    """

    file: str
    slit: str
    status: str
    needs_review: bool
    median_snr: float
    n_warnings: int
    warnings: str
    x1d: str
    run: str = "now"


@dataclass(frozen=True)
class FileResult:
    """What one input file produced.

    Attributes
    ----------
    path : str
        Input file.
    rows : tuple of SummaryRow
        Its summary rows.
    seconds : float
        Time spent on it by the worker.
    error : str
        Why it failed (empty when it did not).
    state : str
        ``done`` (extracted now), ``earlier`` (kept from an earlier batch),
        ``failed`` or ``not run``.
    worker : str
        ``host:pid`` of the process that ran it.
    peak_rss_mb : float
        That process's peak resident memory so far (MB; NaN where unknown).
    """

    path: str
    rows: tuple[SummaryRow, ...]
    seconds: float
    error: str = ""
    state: str = "done"
    worker: str = ""
    peak_rss_mb: float = np.nan


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by SIGINT or SIGTERM.

    Attributes
    ----------
    signum : int
        The signal.
    results : list of FileResult
        One per input, in input order: the finished files, then those not
        finished with state ``not run``.
    """

    def __init__(self, signum: int, results: list[FileResult] | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.results = results or []


def x1d_path(path: str | os.PathLike, output_dir: str | os.PathLike) -> str:
    """The x1d file the step writes for input ``path`` in ``output_dir``."""
    step = _path_maker(os.fspath(output_dir))
    return step.make_output_path(basepath=os.fspath(path), suffix=step.default_suffix())


@functools.lru_cache(maxsize=8)
def _path_maker(output_dir: str) -> Any:
    from ..step import OptimalExtract1dStep

    return OptimalExtract1dStep(output_dir=output_dir)


def extract_file(
    path: str, output_dir: str, parameters: dict[str, Any], resume: bool = False
) -> FileResult:
    """Run `.OptimalExtract1dStep` on one file and summarize it; never raises.

    The x1d is written atomically, and records under
    ``meta.optimal_extraction.batch`` the parameters given (``parameters``),
    the package version and the warnings logged, for `earlier_result`.

    Parameters
    ----------
    path : str
        Input s2d file.
    output_dir : str
        Where the x1d is written.
    parameters : dict
        Step parameters (already validated).
    resume : bool
        Keep an up-to-date x1d of an earlier batch (`earlier_result`)
        instead of extracting the file again.

    Returns
    -------
    FileResult
    """
    from ..io.x1d import save_x1d
    from ..step import OptimalExtract1dStep

    start = time.perf_counter()
    out = x1d_path(path, output_dir)
    if resume:
        earlier = earlier_result(path, out, parameters)
        if earlier is not None:
            return _with_worker(earlier, time.perf_counter() - start)
    with _captured_warnings() as messages:
        try:
            x1d = OptimalExtract1dStep.call(
                path, output_dir=output_dir, save_results=False, configure_log=False, **parameters
            )
            with x1d:
                record = {
                    "parameters": _canonical(parameters),
                    "version": _version(),
                    "input": os.path.abspath(path),
                    "warnings": list(messages),
                }
                x1d.meta.optimal_extraction.instance[BATCH_KEY] = record
                save_x1d(x1d, out)
                rows = _rows(path, out, x1d, messages=messages)
        except Exception as err:  # any failure of one file is reported, the batch goes on
            error = f"{type(err).__name__}: {err}"
            row = SummaryRow(path, "", "error", True, np.nan, 1, error, "")
            result = FileResult(path, (row,), 0.0, error, state="failed")
            return _with_worker(result, time.perf_counter() - start)
    return _with_worker(FileResult(path, tuple(rows), 0.0), time.perf_counter() - start)


def _with_worker(result: FileResult, seconds: float) -> FileResult:
    """The result with its time, and this process's name and peak memory."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        if sys.platform == "darwin":
            peak /= 1024  # bytes on macOS
    except ImportError:  # Windows
        peak = np.nan
    worker = f"{platform.node()}:{os.getpid()}"
    return dataclasses.replace(result, seconds=seconds, worker=worker, peak_rss_mb=peak)


@functools.cache
def _version() -> str:
    """The installed package's version (an x1d made by another version is redone)."""
    try:
        return importlib.metadata.version("optimal-extract1d")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _canonical(parameters: dict[str, Any]) -> str:
    """The parameters as canonical JSON (what a rerun is compared on)."""
    return json.dumps(parameters, sort_keys=True, default=repr)


def earlier_result(path: str, out: str, parameters: dict[str, Any]) -> FileResult | None:
    """The summary of an up-to-date x1d of an earlier batch, or None if the file must run.

    An x1d is up to date when it exists, opens as an x1d written by the batch
    (which writes atomically, so it is complete), is newer than the input and
    than any file named by a parameter (``psf_file``), and records the same
    parameters and package version. The reason for a rerun is logged at INFO.

    Parameters
    ----------
    path : str
        Input s2d file.
    out : str
        Its x1d (`x1d_path`).
    parameters : dict
        The parameters of this batch.

    Returns
    -------
    FileResult or None
        With state ``earlier`` and the rows rebuilt from the x1d (the
        warnings as recorded when it was made).
    """
    reason = _stale(path, out, parameters)
    if isinstance(reason, str):
        log.info("%s: extracted again (%s)", os.path.basename(path), reason)
        return None
    x1d, record = reason
    with x1d:
        rows = _rows(path, out, x1d, messages=list(record.get("warnings", [])))
    rows = [dataclasses.replace(row, run="earlier") for row in rows]
    return FileResult(path, tuple(rows), 0.0, state="earlier")


def _stale(path: str, out: str, parameters: dict[str, Any]) -> str | tuple[Any, dict]:
    """Why ``out`` cannot stand for this run, or the opened x1d and its batch record."""
    from stdatamodels.jwst import datamodels

    if not os.path.exists(out):
        return "no x1d yet"
    made = os.path.getmtime(out)
    sources = [path] + [v for k, v in parameters.items() if k.endswith("_file") and v]
    for source in sources:
        if os.path.exists(source) and os.path.getmtime(source) > made:
            return f"{os.path.basename(source)} is newer than the x1d"
    try:
        with warnings.catch_warnings():  # a damaged file is expected here, and redone
            warnings.simplefilter("ignore")
            x1d = datamodels.open(out)
    except Exception as err:  # unreadable: redo it
        return f"the x1d cannot be read ({type(err).__name__})"
    record = getattr(getattr(x1d.meta, "optimal_extraction", None), "instance", {}) or {}
    batch = dict(record.get(BATCH_KEY) or {})
    if not isinstance(x1d, datamodels.MultiSpecModel) or not batch:
        x1d.close()
        return "the x1d was not written by a batch"
    if batch.get("version") != _version():
        x1d.close()
        return f"made by version {batch.get('version')}, this is {_version()}"
    if batch.get("parameters") != _canonical(parameters):
        x1d.close()
        return f"parameters changed: {batch.get('parameters')} -> {_canonical(parameters)}"
    return x1d, batch


@contextmanager
def _captured_warnings() -> Iterator[list[str]]:
    """Collect WARNING+ log messages of this thread (Dask may run files in threads)."""
    messages: list[str] = []
    thread = threading.get_ident()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                messages.append(record.getMessage())

    handler = _Collect(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield messages
    finally:
        root.removeHandler(handler)


def _rows(path: str, out: str, x1d: Any, *, messages: list[str]) -> list[SummaryRow]:
    """Summary rows of one x1d: its spectra, then its skipped slits, with their warnings."""
    record = getattr(x1d.meta, "optimal_extraction", None)
    skipped = [(s.name, s.reason) for s in (getattr(record, "skipped_slits", None) or [])]
    names = [str(spec.name) for spec in x1d.spec] + [name for name, _ in skipped]
    about = {name: [m for m in messages if _names_slit(m, name)] for name in names}
    general = [m for m in messages if not any(_names_slit(m, n) for n in names)]
    rows = []
    for spec in x1d.spec:
        t = spec.spec_table
        flux, err = np.asarray(t["FLUX"], float), np.asarray(t["FLUX_ERROR"], float)
        good = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        snr = float(np.median(flux[good] / err[good])) if good.any() else np.nan
        status = str(getattr(spec.meta.optimal_extraction, "status", "unknown"))
        notes = about[str(spec.name)] + general
        review = status != "fit" or bool(notes) or not np.isfinite(snr)
        rows.append(
            SummaryRow(
                path, str(spec.name), status, review, snr, len(notes), " | ".join(notes), out
            )
        )
    for name, reason in skipped:
        notes = [*(about[name] or [reason]), *general]  # the skip is logged with its reason
        rows.append(
            SummaryRow(path, name, "skipped", True, np.nan, len(notes), " | ".join(notes), out)
        )
    return rows


def _names_slit(message: str, name: str) -> bool:
    return message.startswith((f"Slit {name}:", f"Slit {name} "))


class Progress:
    """A plain progress display on a stream: a bar on a terminal, else one line per file."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, result: FileResult) -> None:
        """Count one finished file and show it."""
        self.done += 1
        state = "FAILED" if result.error else f"{len(result.rows)} rows"
        if result.state == "earlier":
            state += ", kept from an earlier run"
        name = os.path.basename(result.path)
        if self._tty:
            filled = int(30 * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (30 - filled)
            end = "\n" if self.done == self.total else ""
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {name}: {state}\x1b[K{end}")
        else:
            self.stream.write(
                f"[{self.done}/{self.total}] {name}: {state} ({result.seconds:.1f} s)\n"
            )
        self.stream.flush()


def run_batch(
    inputs: Sequence[str | os.PathLike],
    *,
    output_dir: str | os.PathLike = ".",
    parameters: dict[str, Any] | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[FileResult], None] | None = None,
    resume: bool = False,
) -> list[FileResult]:
    """Extract every input file; return the results in input order.

    Parameters
    ----------
    inputs : sequence of path
        s2d files.
    output_dir : path
        Directory for the x1d files (created if needed).
    parameters : dict, optional
        Step parameters, validated (see `.OptimalExtract1dStep.validated_parameters`).
    workers : int
        Worker processes on this machine (1 = run in this process).
    scheduler : str, optional
        Address of a Dask scheduler; when given, files run as Dask tasks and
        ``workers`` is ignored.
    progress : callable, optional
        Called with every `FileResult` as it finishes.
    resume : bool
        Keep the up-to-date x1d of an earlier batch (see `earlier_result`)
        instead of extracting its file again; its rows are in the results,
        with state ``earlier``.

    Returns
    -------
    list of FileResult

    Raises
    ------
    BatchInterrupted
        On SIGINT or SIGTERM (when called from the main thread), once the
        workers are ended or the Dask tasks cancelled; it carries the
        results, the unfinished files with state ``not run``.
    InputError
        If two inputs have the same file name (their x1d would overwrite each other).
    OptimalExtractError
        If ``scheduler`` is given and dask.distributed is not installed.
    """
    paths = [os.fspath(p) for p in inputs]
    _check_unique_names(paths)
    os.makedirs(output_dir, exist_ok=True)
    kwargs = {
        "output_dir": os.fspath(output_dir),
        "parameters": dict(parameters or {}),
        "resume": resume,
    }
    by_path: dict[str, FileResult] = {}
    started = time.time()
    try:
        with _stop_on_signals() as stopping:
            if scheduler is not None:
                finished = _run_dask(paths, kwargs, scheduler)
            elif workers > 1 and len(paths) > 1:
                finished = _run_processes(paths, kwargs, workers)
            else:
                finished = (extract_file(p, **kwargs) for p in paths)
            try:
                for result in finished:
                    by_path[result.path] = result
                    if progress is not None:
                        progress(result)
                    if stopping:  # the exception was swallowed by the code it interrupted
                        raise BatchInterrupted(stopping[0])
            finally:
                close = getattr(finished, "close", None)
                if close is not None:  # end the workers now, still under the signal guard
                    close()
    except BatchInterrupted as stop:
        reason = f"batch interrupted by {signal.Signals(stop.signum).name}"
        stop.results = [
            by_path.get(p) or _finished_unseen(p, kwargs, started) or _not_run(p, reason)
            for p in paths
        ]
        raise
    return [by_path[p] for p in paths]


def _finished_unseen(path: str, kwargs: dict, started: float) -> FileResult | None:
    """A file whose x1d this batch wrote, but whose result the interrupt kept from us."""
    out = x1d_path(path, kwargs["output_dir"])
    if not os.path.exists(out) or os.path.getmtime(out) < started:
        return None
    result = earlier_result(path, out, kwargs["parameters"])
    if result is None:
        return None
    rows = tuple(dataclasses.replace(row, run="now") for row in result.rows)
    return dataclasses.replace(result, rows=rows, state="done")


def _not_run(path: str, reason: str) -> FileResult:
    row = SummaryRow(path, "", NOT_RUN, True, np.nan, 0, reason, "", run="")
    return FileResult(path, (row,), 0.0, state=NOT_RUN)


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into `BatchInterrupted` (main thread only), then restore.

    SIGINT is caught even where it was ignored at start-up (a batch started
    in the background by a shell). A second signal during the clean-up is
    ignored: the workers are being ended anyway. Yields the list of signals
    received, for a caller to check in case the exception was swallowed.
    """
    stopping: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum: int, frame: object) -> None:
        if stopping:
            return
        stopping.append(signum)
        raise BatchInterrupted(signum)

    for s in signals:
        signal.signal(s, handler)
    try:
        yield stopping
    finally:
        for s in signals:
            signal.signal(s, previous[s] if previous[s] is not None else signal.SIG_DFL)


def _check_unique_names(paths: list[str]) -> None:
    names = [os.path.basename(p) for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        msg = f"input file names repeat ({', '.join(repeated)}): their x1d files would collide"
        raise InputError(msg)


def _run_processes(paths: list[str], kwargs: dict, workers: int) -> Iterator[FileResult]:
    """Files on a `.cli.workers.WorkerPool`; a worker that dies fails its file only."""
    _preload()
    started = time.time()
    pool = WorkerPool(functools.partial(_extract_one, **kwargs), workers)
    try:
        with pool:
            for path, result in pool.imap_unordered(paths):
                if isinstance(result, WorkerLost):
                    _remove_unconfirmed(x1d_path(path, kwargs["output_dir"]), since=started)
                yield _from_worker(path, result)
    finally:
        remove_partials(kwargs["output_dir"], pool.pids)


def _remove_unconfirmed(out: str, *, since: float) -> None:
    """Remove the x1d a lost worker wrote in this run before it died.

    A worker killed between writing its x1d (atomically: the file is whole)
    and sending its result leaves an x1d whose file the summary reports as
    failed. It goes, so that the outputs match the summary and ``--resume``
    extracts the file again. An x1d older than the run (the second before it
    started: file times use a coarser clock) is an earlier run's and stays.
    """
    try:
        if os.stat(out).st_mtime >= since - 1.0:
            os.remove(out)
            log.warning("%s: written by a worker that then died; removed", out)
    except FileNotFoundError:
        pass


def _preload() -> None:
    """Load here what every worker would load for its first file; forked workers share it.

    The scan of the asdf plugins alone takes ~3 s per process.
    """
    import asdf

    from ..step import OptimalExtract1dStep

    config = asdf.get_config()
    _ = (config.extensions, config.resource_mappings, OptimalExtract1dStep.spec)


def _extract_one(path: str, **kwargs: Any) -> FileResult:
    return extract_file(path, **kwargs)


def _from_worker(path: str, result: Any) -> FileResult:
    """A worker's answer as a `FileResult` (a lost worker or an exception as an error)."""
    if isinstance(result, FileResult):
        return result
    if isinstance(result, WorkerLost):
        error = f"worker failed: {result.reason}"
    else:
        error = f"worker failed: {type(result).__name__}: {result}"
    row = SummaryRow(path, "", "error", True, np.nan, 1, error, "")
    return FileResult(path, (row,), 0.0, error, state="failed")


def _run_dask(paths: list[str], kwargs: dict, scheduler: str) -> Iterator[FileResult]:
    """Files as Dask tasks; the scheduler reruns the task of a lost worker elsewhere.

    On an interrupt the tasks are cancelled. Dask cannot stop a task that is
    already running: it finishes in its worker, and its x1d appears complete.
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:
        msg = "--scheduler needs dask.distributed: pip install 'optimal-extract1d[dask]'"
        raise OptimalExtractError(msg) from err
    with Client(scheduler) as client:
        futures = client.map(extract_file, paths, pure=False, **kwargs)
        where = dict(zip(futures, paths, strict=True))
        del futures  # a result stays in its worker's memory while a future refers to it
        try:
            for future in dask_completed(list(where), with_results=False):
                path = where.pop(future)
                result = _result_of(future, path)
                future.release()
                # a worker killed while writing this file left its temporary
                # directory; the rerun task completed the file
                for x1d in {row.x1d for row in result.rows if row.x1d}:
                    remove_stale_partials(x1d)
                yield result
        finally:
            unfinished = [f for f in where if not f.done()]
            if unfinished:
                client.cancel(unfinished)


def _result_of(future: Any, path: str) -> FileResult:
    """The future's result; a task that failed (``KilledWorker``...) becomes an error row."""
    try:
        return future.result()
    except Exception as err:  # a crashed worker must not stop the batch
        return _from_worker(path, err)


def write_summary(results: Sequence[FileResult], path: str | os.PathLike) -> None:
    """Write every summary row as CSV (columns ``SUMMARY_FIELDS``), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for result in results:
            for row in result.rows:
                values = dataclasses.asdict(row)
                values["median_snr"] = f"{row.median_snr:.2f}"
                writer.writerow(values)


def format_summary(results: Sequence[FileResult]) -> str:
    """A short text summary: counts, then the rows that need a second look."""
    rows = [row for r in results for row in r.rows if row.status != NOT_RUN]
    failed = [r for r in results if r.error]
    earlier = [r for r in results if r.state == "earlier"]
    not_run = [r for r in results if r.state == NOT_RUN]
    review = [row for row in rows if row.needs_review]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    files = f"{len(results)} files ({len(failed)} failed"
    if earlier:
        files += f", {len(earlier)} kept from an earlier run"
    if not_run:
        files += f", {len(not_run)} not run"
    lines = [
        f"{files}), {len(rows)} rows: {counts}",
        f"{len(review)} need a second look" + (":" if review else "."),
    ]
    for row in review:
        note = row.warnings[:100] + ("..." if len(row.warnings) > 100 else "")
        lines.append(
            f"  {os.path.basename(row.file)} {row.slit or '-'}: {row.status}, "
            f"S/N {row.median_snr:.1f}, {row.n_warnings} warnings: {note}"
        )
    return "\n".join(lines)
