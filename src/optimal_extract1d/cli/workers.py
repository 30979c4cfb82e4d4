"""Worker processes that survive the loss of one of them, and stop on request.

``concurrent.futures.ProcessPoolExecutor`` cannot do either: when one worker
dies (the out-of-memory killer) the whole pool breaks and every pending
file fails with ``BrokenProcessPool``; it cannot end its running workers,
and workers orphaned by a killed parent keep running. `WorkerPool` gives
each worker one item at a time over its own pipe, so it always knows which
item a dead worker held: that item comes back as a `WorkerLost` with the
reason (the signal that killed it), a new worker takes its place and the
others carry on. Leaving the ``with`` block (normally, or by an exception
such as an interrupt) ends every worker: SIGTERM, then SIGKILL for one that
has not gone after a grace period. Workers ignore SIGINT (a Ctrl-C reaches
the whole process group; the parent decides), exit at once on SIGTERM
(files being written stay in their temporary directories, which the parent
sweeps with `.io.atomic.remove_partials`), and on Linux are sent SIGTERM by
the kernel if the parent dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["WorkerPool", "WorkerLost", "exit_reason"]

_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerLost:
    """The result of an item whose worker process died while running it.

    Attributes
    ----------
    pid : int
        The worker's process id.
    exitcode : int or None
        Its exit code (negative: killed by that signal).
    reason : str
        Readable account, e.g. ``worker process 123 was killed by SIGKILL
        (out of memory?)``.
    """

    pid: int
    exitcode: int | None
    reason: str


def exit_reason(pid: int, exitcode: int | None) -> str:
    """Why a worker process ended, from its exit code."""
    if exitcode is None:
        return f"worker process {pid} stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if exitcode == -signal.SIGKILL else ""
        return f"worker process {pid} was killed by {name}{hint}"
    return f"worker process {pid} exited with status {exitcode}"


class _Worker:
    def __init__(self, context: Any, func: Callable[[Any], Any]) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_worker_main, args=(func, child, os.getpid()), daemon=True
        )
        self.process.start()
        child.close()
        self.item: tuple[int, Any] | None = None


class WorkerPool:
    """A pool of worker processes running ``func`` on items, one item per worker at a time.

    Parameters
    ----------
    func : callable
        Called in a worker with one item; must be picklable (a module-level
        function or a ``functools.partial`` of one). It should not raise; if it
        does, the exception is returned as its result.
    workers : int
        Number of processes.
    context : object, optional
        A ``multiprocessing`` context. Default: ``fork`` where available
        (workers start in milliseconds and share the imported modules), else
        the platform's default.

    Examples
    --------
    >>> with WorkerPool(abs, 2) as pool:  # doctest: +SKIP
    ...     results = dict(pool.imap_unordered([-1, -2, -3]))
    """

    def __init__(self, func: Callable[[Any], Any], workers: int, context: Any = None) -> None:
        if context is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self.func = func
        self.size = max(1, int(workers))
        self.context = context
        self._workers: list[_Worker] = []
        #: Process ids of every worker started (for sweeping their temporary files).
        self.pids: list[int] = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def _start(self) -> _Worker:
        worker = _Worker(self.context, self.func)
        self._workers.append(worker)
        self.pids.append(worker.process.pid)
        return worker

    def imap_unordered(self, items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Run ``func`` on every item; yield ``(item, result)`` as they finish.

        The result of an item whose worker died is a `WorkerLost`; a new
        worker is started for the remaining items.
        """
        pending = deque(enumerate(items))
        for _ in range(min(self.size, len(pending))):
            self._assign(self._start(), pending)
        while any(w.item is not None for w in self._workers):
            busy = [w for w in self._workers if w.item is not None]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                item = worker.item
                result = self._receive(worker)
                if isinstance(result, WorkerLost):
                    self._retire(worker)
                    if pending:
                        worker = self._start()
                worker.item = None
                self._assign(worker, pending)
                yield item[1], result

    def _assign(self, worker: _Worker, pending: deque) -> None:
        if pending and worker.process.is_alive():
            worker.item = pending.popleft()
            worker.conn.send(worker.item)

    @staticmethod
    def _receive(worker: _Worker) -> Any:
        try:
            if worker.conn.poll():
                index, result = worker.conn.recv()
                if index == worker.item[0]:
                    return result
        except (EOFError, OSError):
            pass
        worker.process.join(_GRACE_SECONDS)
        return WorkerLost(
            worker.process.pid,
            worker.process.exitcode,
            exit_reason(worker.process.pid, worker.process.exitcode),
        )

    def _retire(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        self._workers.remove(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()

    def terminate(self) -> None:
        """End every worker: SIGTERM, then SIGKILL after a grace period; reap them all."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.close()
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + _GRACE_SECONDS
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._workers.clear()


def _worker_main(func: Callable[[Any], Any], conn: Connection, parent: int) -> None:
    """A worker's loop: receive ``(index, item)``, send ``(index, func(item))``, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _die_with_parent(parent)
    while True:
        try:
            index, item = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe, or is gone
            return
        try:
            result = func(item)
        except Exception as err:  # func should not raise; report it rather than die
            result = err
        try:
            conn.send((index, result))
        except (BrokenPipeError, OSError):
            return
        except Exception as err:  # a result that cannot be pickled
            conn.send((index, RuntimeError(f"result not picklable: {err}")))


def _exit_on_signal(signum: int, frame: object) -> None:
    """Exit at once; the parent sweeps the temporary files.

    An exception could be swallowed by the code running (a plugin loader that
    catches everything), and the worker would go on writing.
    """
    os._exit(128 + signum)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (no orphans)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the closed pipe still ends the worker
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)
