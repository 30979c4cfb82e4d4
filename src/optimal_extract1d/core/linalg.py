"""Stacked linear solves that never raise: every fit of the package solves through here.

numpy's ``numpy.linalg.solve`` and ``numpy.linalg.inv`` raise ``numpy.linalg.LinAlgError``
for one exactly singular matrix in a stack, and ``numpy.linalg.lstsq`` for one
non-finite one; a slit whose edge rows are all NaN (NIRSpec fixed slits) used
to stop a whole file that way. The callers regularize their normal matrices
(a ridge of ``1e-12``-``1e-10`` of the trace, 1 on an empty diagonal), so the
guards here only catch what slips through: a system that is not finite gives
NaN, a singular one its least-squares (minimum-norm) solution. On regular
systems the results are numpy's, bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cross_products", "solve_stacked", "invert_stacked", "lstsq_or_none", "finite_matrices"]


def cross_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[:, p].T @ b[:, p]`` for every p: ``(n, P, i)`` and ``(n, P, j)`` give ``(P, i, j)``.

    The normal matrices of stacked least-squares problems (rows along axis 0).
    A batched matrix product, several times faster than the equivalent
    ``einsum`` for more than a few problems; ``einsum`` for one.
    """
    if a.shape[1] == 1:
        return np.einsum("ybi,ybj->bij", a, b)
    return np.matmul(a.transpose(1, 2, 0), b.transpose(1, 0, 2))


def finite_matrices(stack: np.ndarray) -> np.ndarray:
    """Whether each matrix of a stack ``(..., m, n)`` is finite, shape ``(...)``.

    The whole stack is tested first: the usual all-finite case then needs no
    reduction over every small matrix, several times slower.
    """
    finite = np.isfinite(stack)
    if finite.all():
        return np.ones(stack.shape[:-2], bool)
    return np.all(finite, axis=(-2, -1))


def solve_stacked(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``normal[i] @ x[i] = rhs[i]`` for every system of a stack.

    Parameters
    ----------
    normal : ndarray, shape (n, m, m)
        The matrices.
    rhs : ndarray, shape (n, m)
        The right-hand sides.

    Returns
    -------
    ndarray, shape (n, m)
        NaN for a system with a non-finite matrix; the least-squares solution
        of a singular one.
    """
    ok = finite_matrices(normal)
    if ok.all():  # the usual case, without copying the systems out
        try:
            return np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            pass
    out = np.full(rhs.shape, np.nan)
    if not ok.any():
        return out
    try:
        out[ok] = np.linalg.solve(normal[ok], rhs[ok][:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # one singular system: solve them one by one
        for i in np.nonzero(ok)[0]:
            out[i] = np.linalg.lstsq(normal[i], np.nan_to_num(rhs[i]), rcond=None)[0]
    return out


def invert_stacked(normal: np.ndarray) -> np.ndarray:
    """The inverse of every matrix of a stack ``(n, m, m)``.

    NaN for a non-finite matrix, the pseudo-inverse of a singular one.
    """
    ok = finite_matrices(normal)
    if ok.all():  # the usual case, without copying the matrices out
        try:
            return np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            pass
    out = np.full(normal.shape, np.nan)
    if not ok.any():
        return out
    try:
        out[ok] = np.linalg.inv(normal[ok])
    except np.linalg.LinAlgError:
        for i in np.nonzero(ok)[0]:
            out[i] = np.linalg.pinv(normal[i])
    return out


def lstsq_or_none(design: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """``numpy.linalg.lstsq`` of one system, None when it is not finite or does not converge."""
    if not (np.all(np.isfinite(design)) and np.all(np.isfinite(values))):
        return None
    try:
        return np.linalg.lstsq(design, values, rcond=None)[0]
    except np.linalg.LinAlgError:
        return None
