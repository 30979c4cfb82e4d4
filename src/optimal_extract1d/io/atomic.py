"""Atomic output files: a product appears under its final name complete, or not at all.

Every file the package writes (x1d, diagnostic images and plots, the batch
summary) is first written to a temporary path, then renamed into place. The
temporary file keeps the final base name, inside a hidden directory next to
the target (``.<name>.<pid>.<random>.partial/<name>``): products that record
their own file name (a datamodel's ``FILENAME``) record the final one, the
format is still chosen from the extension, and the rename stays on one file
system, so it is atomic. A process killed mid-write leaves at most such a
hidden directory, never a truncated file under a final name;
`remove_partials` sweeps the directories of processes known to be gone, and
`remove_stale_partials` those of a file another process has since completed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

__all__ = ["atomic_path", "remove_partials", "remove_stale_partials", "PARTIAL_SUFFIX"]

#: Suffix of the hidden directories that hold files being written.
PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path to write ``path`` to; rename it into place on success.

    Parameters
    ----------
    path : path
        The final file name. Its directory must exist.

    Yields
    ------
    str
        Where to write: same base name as ``path``, in a fresh hidden
        directory next to it.

    Notes
    -----
    When the block raises (including ``KeyboardInterrupt`` and ``SystemExit``,
    which a worker's SIGTERM handler raises), the temporary directory is
    removed and ``path`` is left as it was. An existing ``path`` is replaced
    only by a complete file (``os.replace``).
    """
    head, name = os.path.split(os.fspath(path))
    tmpdir = tempfile.mkdtemp(
        prefix=f".{name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX, dir=head or "."
    )
    tmp = os.path.join(tmpdir, name)
    try:
        yield tmp
        if not os.path.exists(tmp):
            msg = f"nothing was written to the temporary file of {path}"
            raise FileNotFoundError(msg)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def remove_partials(directory: str | os.PathLike, pids: Iterable[int]) -> list[str]:
    """Remove the temporary directories that processes ``pids`` left in ``directory``.

    Parameters
    ----------
    directory : path
        An output directory.
    pids : list of int
        Processes that have ended (a worker killed mid-write).

    Returns
    -------
    list of str
        The directories removed.
    """
    owners = {str(pid) for pid in pids}
    return _sweep(directory, lambda name, pid: pid in owners)


def remove_stale_partials(path: str | os.PathLike) -> list[str]:
    """Remove the temporary directories other processes left for the complete file ``path``.

    On a Dask cluster a worker killed mid-write leaves its directory, and the
    scheduler reruns the task elsewhere; the workers' process ids are not
    known here (nor alive on this machine), but once ``path`` is complete
    every directory that was writing it is stale.

    Returns
    -------
    list of str
        The directories removed.
    """
    head, target = os.path.split(os.fspath(path))
    return _sweep(head or ".", lambda name, pid: name == target and pid.isdigit())


def _sweep(directory: str | os.PathLike, wanted: Callable[[str, str], bool]) -> list[str]:
    """Remove the temporary directories for which ``wanted(name, pid)`` holds.

    They are named ``.<name>.<pid>.<random>.partial`` (`atomic_path`);
    returns the paths removed.
    """
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if entry.startswith(".") and entry.endswith(PARTIAL_SUFFIX):
            parts = entry.removesuffix(PARTIAL_SUFFIX).rsplit(".", 2)  # .<name>, pid, random
            if len(parts) == 3 and wanted(parts[0][1:], parts[1]):
                full = os.path.join(directory, entry)
                shutil.rmtree(full, ignore_errors=True)
                removed.append(full)
    return removed
