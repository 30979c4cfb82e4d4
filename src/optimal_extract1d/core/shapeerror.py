"""The flux variance a PSF shape learnt from the slit adds: every column's share of it.

Horne's variance ``1 / sum(P^2 / V)`` takes the profile as known. Where a
shape parameter of the PSF is one value for the whole slit and the slit's
data set it (the share of a core + halo PSF's flux in its wings, its change
with the wavelength: `.psf.halo.CoreHalo1D`), its error moves every
column's flux alike, and it is large where the parameter is nearly
degenerate with the background (a halo's broad wings and a sky across the
slit: a flux error about equal to the share's).

`shape_variance` computes that term as the Cramér–Rao bound does. The
columns' own parameters ``alpha_x`` (the flux, the other components'
fluxes, the background terms: the design of `.horne.ColumnSums`) and the
shared shape parameters ``theta`` enter the expected data as
``A_x alpha_x`` with ``d(A_x alpha_x)/d theta = G_x`` (the profiles'
derivatives times the fitted fluxes). With ``N_x = A_x^T W_x A_x``,
``B_x = A_x^T W_x G_x`` and ``C_x = G_x^T W_x G_x``, the information on
``theta`` left after every column's own parameters is
``I = sum_x (C_x - B_x^T N_x^-1 B_x)`` and the variance of column ``x``'s
flux grows from ``(N_x^-1)_00`` by ``u_x I^-1 u_x^T``, ``u_x = (N_x^-1 B_x)_0``:
how much the column's flux estimate leans on the shape.

The term is the same error in every column (fully correlated along the
slit): binning columns does not average it down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .horne import ColumnSums

__all__ = ["MAX_CONDITION", "ShapeVariance", "shape_variance"]

#: Largest condition number of the shape parameters' information matrix; above it
#: they are not separately constrained and no term is computed.
MAX_CONDITION = 1e12


@dataclass(frozen=True)
class ShapeVariance:
    """The flux variance the shared shape parameters add, per column.

    Attributes
    ----------
    variance : ndarray, shape (n_disp,)
        Added variance of every column's flux (data units squared; 0 in
        empty columns).
    relative : ndarray, shape (n_disp,)
        ``variance`` over the column's own flux variance (that of the sums).
    parameter_errors : ndarray, shape (n_par,)
        Standard error of every shape parameter, as the slit's data set it.
    """

    variance: np.ndarray
    relative: np.ndarray
    parameter_errors: np.ndarray


def shape_variance(
    sums: ColumnSums,
    data: np.ndarray,
    derivatives: np.ndarray,
    *,
    local: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> ShapeVariance | None:
    """The flux variance of every column due to shape parameters shared by the slit.

    Parameters
    ----------
    sums : ColumnSums
        The column fits (`.horne.extract_columns`) whose design holds the
        profile, the other components and the background basis; their
        weights are the variance the term is computed at.
    data : ndarray, shape (n_cross, n_disp)
        The data the sums were made on (for the other components' fluxes).
    derivatives : ndarray, shape (n_cross, n_disp, n_comp, n_par)
        Derivative of the profile of each of the first ``n_comp`` design
        terms (the source, then the other components) with respect to each
        of the ``n_par`` shape parameters.
    local : ndarray, shape (n_cross, n_disp, n_comp, n_local), optional
        Derivatives with respect to shape parameters that were free in every
        group of columns while the shared ones were set (the center and the
        width in every bin): they take their part of the information on the
        shared ones, while the fluxes are made with the profile as it is.
    groups : ndarray of int, shape (n_disp,), optional
        The group (bin) of every column for ``local``; columns of a negative
        group bring no information (the fluxes still take the term). Default:
        every column its own group.

    Returns
    -------
    ShapeVariance or None
        None when the sums carry no design, or the parameters are not
        constrained (information not positive definite or worse
        conditioned than `MAX_CONDITION`).
    """
    if sums.design is None or sums.cov is None or sums.inv_var is None:
        return None
    n_disp = sums.flux.size
    labels = np.arange(n_disp) if groups is None else np.asarray(groups, int)
    a = np.moveaxis(sums.design, 1, 0)  # (n_disp, n_cross, m)
    w = sums.inv_var.T  # column-scaled weights
    cov = sums.cov
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scale = cov[:, 0, 0] / sums.variance  # each column's weight scale
        good = ~sums.empty & np.isfinite(scale) & (scale > 0)
        good &= np.all(np.isfinite(cov), axis=(1, 2))
    if not good.any():
        return None
    a, w, cov, scale = a[good], w[good], cov[good], scale[good]
    d = np.where(w > 0, np.nan_to_num(data.T[good]), 0.0)
    coeffs = np.einsum("jkl,jil,ji->jk", cov, a, w * d)
    n_comp, p = derivatives.shape[2], derivatives.shape[3]
    parts = [derivatives] if local is None else [derivatives, local]
    # the expected data's derivatives: every component's flux times its profile's
    moves = np.einsum("ijcp,jc->jip", np.concatenate(parts, axis=3)[:, good], coeffs[:, :n_comp])
    b = np.einsum("jim,ji,jip->jmp", a, w, moves)
    lean = np.matmul(cov, b)  # N^-1 B, free of the weights' scale
    c = np.einsum("jip,ji,jiq->jpq", moves, w, moves)
    left = scale[:, None, None] * (c - np.matmul(np.swapaxes(b, 1, 2), lean))
    info = _shared_information(left, labels[good], p)
    eigen = np.linalg.eigvalsh(info)
    if not np.all(np.isfinite(eigen)) or eigen[0] <= 0 or eigen[-1] > MAX_CONDITION * eigen[0]:
        return None
    inverse = np.linalg.inv(info)
    u = lean[:, 0, :p]
    added = np.zeros(n_disp)
    added[good] = np.einsum("jp,pq,jq->j", u, inverse, u)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(good, added / sums.variance, 0.0)
    return ShapeVariance(
        variance=added, relative=relative, parameter_errors=np.sqrt(np.diag(inverse))
    )


def _shared_information(left: np.ndarray, labels: np.ndarray, p: int) -> np.ndarray:
    """The information on the first ``p`` parameters once every group's own ones are free.

    ``left`` holds every column's information on the shared and the group's
    parameters after its own terms (``(n, p + q, p + q)``); summed over each
    group's columns, the group's ``q`` parameters are eliminated (a Schur
    complement; a pseudo-inverse where the group does not constrain them).
    """
    inside = labels >= 0
    if not inside.any():
        return np.zeros((p, p))
    _, index = np.unique(labels[inside], return_inverse=True)
    total = np.zeros((int(index.max()) + 1, *left.shape[1:]))
    np.add.at(total, index, left[inside])
    total = 0.5 * (total + np.swapaxes(total, 1, 2))
    shared, cross, own = total[:, :p, :p], total[:, :p, p:], total[:, p:, p:]
    if own.shape[1]:
        shared = shared - np.matmul(
            cross, np.matmul(np.linalg.pinv(own, hermitian=True), np.swapaxes(cross, 1, 2))
        )
    return np.sum(shared, axis=0)
