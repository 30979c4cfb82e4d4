"""Batch extraction: many s2d files, one x1d each, and a "second look" summary.

Files run in parallel in worker processes (`concurrent.futures`) or, with a
scheduler address, as tasks on a Dask cluster; both call `extract_file`,
which never raises: a file that fails becomes a summary row with its error,
and the batch goes on. The summary has one row per spectrum (or skipped
slit, or failed file) with its fit status, the warnings logged for it and
its median S/N, and is written as CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..errors import InputError, OptimalExtractError, ParameterError

__all__ = [
    "check_parameters",
    "SummaryRow",
    "FileResult",
    "extract_file",
    "run_batch",
    "write_summary",
    "format_summary",
    "Progress",
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
)
# Step parameters the batch sets itself.
_RESERVED = ("output_dir", "output_file", "save_results", "input_dir")


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

    return OptimalExtract1dStep.validated_parameters(values)


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
        slit without spectrum, ``error`` for a file that failed.
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
        Output file; empty for a file that failed.
    """

    file: str
    slit: str
    status: str
    needs_review: bool
    median_snr: float
    n_warnings: int
    warnings: str
    x1d: str


@dataclass(frozen=True)
class FileResult:
    """What one input file produced."""

    path: str
    rows: tuple[SummaryRow, ...]
    seconds: float
    error: str = ""


def extract_file(path: str, output_dir: str, parameters: dict[str, Any]) -> FileResult:
    """Run `.OptimalExtract1dStep` on one file and summarize it; never raises.

    Parameters
    ----------
    path : str
        Input s2d file.
    output_dir : str
        Where the x1d is written.
    parameters : dict
        Step parameters (already validated).

    Returns
    -------
    FileResult
    """
    from ..step import OptimalExtract1dStep

    start = time.perf_counter()
    with _captured_warnings() as messages:
        try:
            x1d = OptimalExtract1dStep.call(
                path, output_dir=output_dir, save_results=True, configure_log=False, **parameters
            )
            with x1d:
                out = os.path.join(output_dir, x1d.meta.filename)
                rows = _rows(path, out, x1d, messages=messages)
        except Exception as err:  # any failure of one file is reported, the batch goes on
            error = f"{type(err).__name__}: {err}"
            row = SummaryRow(path, "", "error", True, np.nan, 1, error, "")
            return FileResult(path, (row,), time.perf_counter() - start, error)
    return FileResult(path, tuple(rows), time.perf_counter() - start)


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

    Returns
    -------
    list of FileResult

    Raises
    ------
    InputError
        If two inputs have the same file name (their x1d would overwrite each other).
    OptimalExtractError
        If ``scheduler`` is given and dask.distributed is not installed.
    """
    paths = [os.fspath(p) for p in inputs]
    _check_unique_names(paths)
    os.makedirs(output_dir, exist_ok=True)
    kwargs = {"output_dir": os.fspath(output_dir), "parameters": dict(parameters or {})}
    if scheduler is not None:
        finished = _run_dask(paths, kwargs, scheduler)
    elif workers > 1 and len(paths) > 1:
        finished = _run_processes(paths, kwargs, workers)
    else:
        finished = (extract_file(p, **kwargs) for p in paths)
    by_path = {}
    for result in finished:
        by_path[result.path] = result
        if progress is not None:
            progress(result)
    return [by_path[p] for p in paths]


def _check_unique_names(paths: list[str]) -> None:
    names = [os.path.basename(p) for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        msg = f"input file names repeat ({', '.join(repeated)}): their x1d files would collide"
        raise InputError(msg)


def _run_processes(paths: list[str], kwargs: dict, workers: int) -> Iterator[FileResult]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(extract_file, p, **kwargs): p for p in paths}
        for future in as_completed(futures):
            yield _result_of(future, futures[future])


def _run_dask(paths: list[str], kwargs: dict, scheduler: str) -> Iterator[FileResult]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:
        msg = "--scheduler needs dask.distributed: pip install 'optimal-extract1d[dask]'"
        raise OptimalExtractError(msg) from err
    with Client(scheduler) as client:
        futures = client.map(extract_file, paths, pure=False, **kwargs)
        where = dict(zip(futures, paths, strict=True))
        for future in dask_completed(futures):
            yield _result_of(future, where[future])


def _result_of(future: Any, path: str) -> FileResult:
    """The future's result; a worker that died becomes an error row."""
    try:
        return future.result()
    except Exception as err:  # a crashed worker must not stop the batch
        error = f"worker failed: {type(err).__name__}: {err}"
        return FileResult(
            path, (SummaryRow(path, "", "error", True, np.nan, 1, error, ""),), 0.0, error
        )


def write_summary(results: Sequence[FileResult], path: str | os.PathLike) -> None:
    """Write every summary row as CSV (columns ``SUMMARY_FIELDS``)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for result in results:
            for row in result.rows:
                values = dataclasses.asdict(row)
                values["median_snr"] = f"{row.median_snr:.2f}"
                writer.writerow(values)


def format_summary(results: Sequence[FileResult]) -> str:
    """A short text summary: counts, then the rows that need a second look."""
    rows = [row for r in results for row in r.rows]
    failed = [r for r in results if r.error]
    review = [row for row in rows if row.needs_review]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = [
        f"{len(results)} files ({len(failed)} failed), {len(rows)} rows: {counts}",
        f"{len(review)} need a second look" + (":" if review else "."),
    ]
    for row in review:
        note = row.warnings[:100] + ("..." if len(row.warnings) > 100 else "")
        lines.append(
            f"  {os.path.basename(row.file)} {row.slit or '-'}: {row.status}, "
            f"S/N {row.median_snr:.1f}, {row.n_warnings} warnings: {note}"
        )
    return "\n".join(lines)
