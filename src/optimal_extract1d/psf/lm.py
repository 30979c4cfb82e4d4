"""Vectorized Levenberg–Marquardt for many 1-D profiles of template components.

Every profile ``b`` (a kernel slice or one bin along the dispersion) is
``m_b(y) = sum_j f_bj Phi(y; c_b + o_j, theta_b) + sum_k a_bk L_k(y)``: unit-sum
pixel-integrated template components (the source, further sources, nod
copies at offsets ``o_j``) with fluxes ``f``, plus a polynomial background.
All parameters of all profiles are improved together by Gauss–Newton steps
with Marquardt damping, with analytic derivatives (the astropy model's
``fit_deriv``, else central differences, see `.psf.evaluate.evaluate_with_derivatives`):
one template evaluation per iteration for all profiles, no Python loop over
profiles. Profiles that share nothing are solved as a stack of small systems
with their own damping; parameters shared by all profiles (a Moffat index,
component offsets) make one dense system. The fit starts from the exact fluxes
and background of the starting shapes (`.psf.linear`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.linalg import cross_products, lstsq_or_none, solve_stacked
from .evaluate import cheap_derivatives, evaluate_with_derivatives
from .kernel import KernelTemplate
from .linear import data_weights, design_matrix, normal_matrix, solve_normal

__all__ = ["LMResult", "levenberg_marquardt", "MAX_ITER"]

#: Iteration limit of a fit.
MAX_ITER = 40
_RTOL = 1e-6
# A step that lowers chi2 by less than this has moved the parameters by about
# 10 % of their uncertainty or less, and Gauss-Newton steps converge
# quadratically, so the optimum is much closer still: converged. (1e-4 took a
# third more steps for no change a fit's uncertainty could show.)
_ATOL_CHI2 = 1e-2


@dataclass(frozen=True)
class LMResult:
    """Best non-linear parameters found.

    Attributes
    ----------
    params : dict of str to ndarray, shape (n_prof,)
        Native template parameters of the main component.
    offsets : ndarray, shape (n_comp - 1,)
        Component offsets.
    shapes : ndarray, shape (n_cross, n_prof, n_comp)
        The unit-sum components there (`.profilefit.component_shapes`).
    """

    params: dict[str, np.ndarray]
    offsets: np.ndarray
    shapes: np.ndarray


class _Problem:
    """Data, weights and parameter layout of one fit."""

    def __init__(self, template, values, sigma, *, basis, free, shared, offsets, fit_offsets):
        self.template, self.basis = template, basis
        _, self.w, self.d = data_weights(values, sigma)
        self.y = np.arange(values.shape[0], dtype=float)
        self.free, self.shared = list(free), list(shared)
        self.n_comp = len(offsets) + 1
        self.fit_offsets = fit_offsets and len(offsets) > 0
        self.n_lin = self.n_comp + basis.shape[1]
        self.cheap_derivatives = cheap_derivatives(template)

    @property
    def n_global(self) -> int:
        return len(self.shared) + (self.n_comp - 1 if self.fit_offsets else 0)

    def components(self, params, offsets, derivatives: bool = True):
        """Unit-sum components (and derivatives), ``(n_cross, n_prof, n_comp)``."""
        cp = self.template.center_param
        n_prof = np.size(params[cp])
        shifts = np.concatenate(([0.0], offsets))
        flat = {k: np.repeat(v, self.n_comp) for k, v in params.items()}
        flat[cp] = (params[cp][:, None] + shifts[None, :]).ravel()
        names = [n for n in self.free + self.shared if n != cp] + [cp] if derivatives else []
        t, dt = evaluate_with_derivatives(self.template, self.y, flat, names=names)
        shape = (self.y.size, n_prof, self.n_comp)
        total = t.sum(axis=0)
        total = np.where(total > 0, total, 1.0)
        unit = t / total
        dphi = {n: ((g - unit * g.sum(axis=0)) / total).reshape(shape) for n, g in dt.items()}
        return unit.reshape(shape), dphi

    def design(self, phi):
        return design_matrix(phi, self.basis)  # (n_cross, n_prof, n_lin)

    def solve_linear(self, phi):
        """Exact fluxes and background for fixed shapes (the start of every fit).

        The normal equations of `.psf.linear.solve_linear`, by the same solve
        (`.psf.linear.solve_normal`).
        """
        a = self.design(phi) * self.w[:, :, None]
        return solve_normal(normal_matrix(a), np.einsum("ybi,yb->bi", a, self.d * self.w))

    def residual(self, phi, lin):
        model = np.einsum("ybi,bi->yb", self.design(phi), lin)
        return (self.d - model) * self.w

    def jacobian(self, phi, dphi, lin):
        """Local ``(n_cross, n_prof, n_lin + n_free)`` and global ``(.., n_global)`` parts."""
        flux = lin[:, : self.n_comp]
        local = [self.design(phi)]
        for name in self.free:
            local.append(np.einsum("ybj,bj->yb", dphi[name], flux)[:, :, None])
        glob = [np.einsum("ybj,bj->yb", dphi[name], flux)[:, :, None] for name in self.shared]
        if self.fit_offsets:
            glob.append(dphi[self.template.center_param][:, :, 1:] * flux[None, :, 1:])
        w = self.w[:, :, None]
        jl = np.concatenate(local, axis=2) * w
        jg = np.concatenate(glob, axis=2) * w if glob else np.zeros((*jl.shape[:2], 0))
        return jl, jg


def levenberg_marquardt(
    template: KernelTemplate,
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    basis: np.ndarray,
    start: Mapping[str, np.ndarray],
    free: Sequence[str],
    bounds: Mapping[str, tuple[float, float]],
    shared: Sequence[str] = (),
    offsets: Sequence[float] = (),
    fit_offsets: bool = False,
    max_iter: int = MAX_ITER,
) -> LMResult:
    """Fit the non-linear template parameters of every profile (see the module doc).

    Parameters
    ----------
    template : KernelTemplate
        PSF shape.
    values, sigma : ndarray, shape (n_cross, n_prof)
        Profiles and their uncertainties (NaN or sigma <= 0: not used).
    basis : ndarray, shape (n_cross, k)
        Background basis.
    start : mapping of str to ndarray, shape (n_prof,)
        Every native parameter but the amplitude.
    free : sequence of str
        Parameters fitted in every profile separately.
    bounds : mapping of str to (float, float)
        Bounds of the free and shared parameters (offsets: the slit length).
    shared : sequence of str
        Parameters fitted with one value for all profiles.
    offsets : sequence of float
        Offsets of further components.
    fit_offsets : bool
        Fit the offsets (shared) or keep them.
    max_iter : int
        Iteration limit.

    Returns
    -------
    LMResult
    """
    prob = _Problem(
        template,
        values,
        sigma,
        basis=basis,
        free=free,
        shared=shared,
        offsets=offsets,
        fit_offsets=fit_offsets,
    )
    params = _start_params(start, shared, values.shape[1])
    state = _State(params, np.asarray(offsets, float).copy(), prob, bounds=bounds)
    state.evaluate(fresh_linear=True)
    state = _iterate(state, values.shape[1], max_iter)
    return LMResult(state.params, state.offsets, state.phi)


def _start_params(start, shared, n_prof: int) -> dict[str, np.ndarray]:
    """Starting values, one per profile; shared parameters start from their mean."""
    params = {
        k: np.array(np.broadcast_to(np.asarray(v, float), (n_prof,))) for k, v in start.items()
    }
    for name in shared:
        params[name] = np.full(n_prof, float(np.mean(params[name])))
    return params


def _iterate(state: _State, n_prof: int, max_iter: int) -> _State:
    """Damped steps from ``state`` until chi2 stops dropping (or ``max_iter`` steps)."""
    n_global = state.prob.n_global
    lam = np.full(n_prof, 1e-3) if n_global == 0 else np.array([1e-3])
    for _ in range(max_iter):
        trial = state.step(lam)
        better = (
            trial.chi2 < state.chi2 * (1 + 1e-12)
            if n_global == 0
            else (np.full(n_prof, trial.chi2.sum() < state.chi2.sum()))
        )
        if n_global:
            lam = lam / 3.0 if better[0] else lam * 4.0
        else:
            lam = np.where(better, lam / 3.0, lam * 4.0)
        drop = np.abs(state.chi2 - trial.chi2)
        small = (drop < _ATOL_CHI2) | (drop < _RTOL * np.maximum(state.chi2, 1e-300))
        state = state.accept(trial, better)
        if np.all(small | (lam > 1e8)):
            break
    return state


class _State:
    """Parameters, their residuals and Jacobian at one point of the fit."""

    def __init__(self, params, offsets, prob: _Problem, *, bounds):
        self.params, self.offsets, self.prob, self.bounds = params, offsets, prob, bounds
        self.lin = None

    def evaluate(self, fresh_linear: bool = False) -> None:
        """Components and chi2 here.

        Derivatives come along when they cost little next to the values (an
        exact Gaussian); otherwise only when a step is taken from here.
        """
        self.phi, self.dphi = self.prob.components(
            self.params, self.offsets, derivatives=self.prob.cheap_derivatives
        )
        phi = self.phi
        if fresh_linear or self.lin is None:
            self.lin = self.prob.solve_linear(phi)
        self.resid = self.prob.residual(phi, self.lin)
        self.chi2 = np.sum(self.resid**2, axis=0)

    def step(self, lam: np.ndarray) -> _State:
        """The damped step from here, parameters held on the bounds they press against.

        A parameter on its bound whose step points outward (a Moffat index at
        its Gaussian limit) would be clipped back while the others moved as if
        it had not been: the fit then zigzags for tens of iterations. Its
        Jacobian column is zeroed instead and the step solved again, so the
        others take the step that is right with it held (an active set).
        """
        if not self.dphi:
            self.phi, self.dphi = self.prob.components(self.params, self.offsets)
        jl, jg = self.prob.jacobian(self.phi, self.dphi, self.lin)
        delta_l, delta_g = self._solve(jl, jg, lam)
        held_l, held_g = self._pressing(delta_l, delta_g)
        if held_l.any() or held_g.any():
            n_lin = self.prob.n_lin
            jl[:, :, n_lin:] = np.where(held_l[None, :, :], 0.0, jl[:, :, n_lin:])
            jg[:, :, : held_g.size] = np.where(held_g[None, None, :], 0.0, jg[:, :, : held_g.size])
            delta_l, delta_g = self._solve(jl, jg, lam)
        return self._moved(delta_l, delta_g)

    def _solve(self, jl, jg, lam):
        if jg.shape[2] == 0:
            return _local_step(jl, self.resid, lam), np.zeros(0)
        return _dense_step(jl, jg, self.resid, lam=float(lam[0]))

    def _pressing(self, delta_l, delta_g) -> tuple[np.ndarray, np.ndarray]:
        """Free ``(n_prof, n_free)`` and shared ``(n_shared,)`` parameters on a bound, going out."""
        prob = self.prob

        def out(value, delta, name):
            lo, hi = self.bounds[name]
            return ((value <= lo) & (delta < 0)) | ((value >= hi) & (delta > 0))

        held_l = np.zeros((delta_l.shape[0], len(prob.free)), bool)
        for i, name in enumerate(prob.free):
            held_l[:, i] = out(self.params[name], delta_l[:, prob.n_lin + i], name)
        held_g = np.array(
            [bool(out(self.params[n][0], delta_g[j], n)) for j, n in enumerate(prob.shared)],
            dtype=bool,
        )
        return held_l, held_g

    def _moved(self, delta_l, delta_g) -> _State:
        prob = self.prob
        params = {k: v.copy() for k, v in self.params.items()}
        for i, name in enumerate(prob.free):
            params[name] = np.clip(params[name] + delta_l[:, prob.n_lin + i], *self.bounds[name])
        for j, name in enumerate(prob.shared):
            params[name] = np.clip(params[name] + delta_g[j], *self.bounds[name])
        offsets = self.offsets.copy()
        if prob.fit_offsets:
            n_cross = prob.y.size
            offsets = np.clip(offsets + delta_g[len(prob.shared) :], -n_cross, n_cross)
        trial = _State(params, offsets, prob, bounds=self.bounds)
        trial.lin = self.lin + delta_l[:, : prob.n_lin]
        trial.evaluate()
        return trial

    def accept(self, trial: _State, better: np.ndarray) -> _State:
        if np.all(better):
            return trial
        if not np.any(better):
            return self
        # Per-profile acceptance (no shared parameters): profiles are independent,
        # so the merged state is the two states' columns, nothing to re-evaluate.
        keep = better
        params = {k: np.where(keep, trial.params[k], self.params[k]) for k in self.params}
        merged = _State(params, self.offsets, self.prob, bounds=self.bounds)
        merged.lin = np.where(keep[:, None], trial.lin, self.lin)
        merged.phi = np.where(keep[None, :, None], trial.phi, self.phi)
        merged.resid = np.where(keep[None, :], trial.resid, self.resid)
        merged.chi2 = np.where(keep, trial.chi2, self.chi2)
        if self.dphi and trial.dphi:
            merged.dphi = {
                n: np.where(keep[None, :, None], trial.dphi[n], self.dphi[n]) for n in self.dphi
            }
        else:
            merged.dphi = {}
        return merged


def _local_step(jl: np.ndarray, resid: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Damped Gauss–Newton step of every profile: ``(J^T J + lam diag) d = J^T r``."""
    normal = cross_products(jl, jl)
    grad = np.einsum("ybi,yb->bi", jl, resid)
    diag = np.einsum("bii->bi", normal)
    damped = normal + (lam[:, None] * np.maximum(diag, 1e-12))[:, :, None] * np.eye(normal.shape[1])
    return solve_stacked(damped, grad)


def _dense_step(jl, jg, resid, *, lam: float):
    """Damped step with parameters shared by all profiles.

    The normal matrix is block-diagonal in the profiles' own parameters,
    bordered by the shared ones: ``[[A, B], [B^T, C]]`` with one small block
    ``A_b`` per profile. The shared step solves the Schur complement
    ``(C - sum_b B_b^T A_b^-1 B_b) z = h - sum_b B_b^T A_b^-1 g_b``, then every
    profile's own step ``A_b^-1 (g_b - B_b z)``: the same step as the one
    dense system, for the cost of the small blocks (a dense least-squares
    solve of 24 bins x 4 parameters cost ~100x more, and far more again when
    BLAS threads compete for the cores). A singular system falls back to the
    dense least-squares solve.
    """
    if jl.shape[1] == 1:  # one profile: the bordered system is small, solve it whole
        return _joint_step(jl[:, 0], jg[:, 0], resid[:, 0], lam=lam)
    a = cross_products(jl, jl)
    b = cross_products(jl, jg)
    c = np.einsum("ybk,ybl->kl", jg, jg)
    g = np.einsum("ybi,yb->bi", jl, resid)
    h = np.einsum("ybk,yb->k", jg, resid)
    a = a + lam * _diag_matrix(np.maximum(np.einsum("bii->bi", a), 1e-12))
    c = c + lam * np.diag(np.maximum(np.diag(c), 1e-12))
    try:
        a_inv = np.linalg.solve(a, np.concatenate([b, g[:, :, None]], axis=2))  # one LU
        a_inv_b, a_inv_g = a_inv[:, :, :-1], a_inv[:, :, -1]
        schur = c - np.einsum("bik,bil->kl", b, a_inv_b)
        z = np.linalg.solve(schur, h - np.einsum("bik,bi->k", b, a_inv_g))
    except np.linalg.LinAlgError:
        return _dense_lstsq_step(jl, jg, resid, lam=lam)
    x = a_inv_g - np.einsum("bik,k->bi", a_inv_b, z)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(z))):
        return _dense_lstsq_step(jl, jg, resid, lam=lam)
    return x, z


def _joint_step(jl, jg, resid, *, lam: float):
    """`_dense_step` of one profile: ``jl`` ``(n_cross, n_loc)``, ``jg`` ``(n_cross, n_glob)``.

    The same damped system (``lam`` times the diagonal), solved at once.
    """
    jac = np.concatenate([jl, jg], axis=1)
    normal = jac.T @ jac
    normal += lam * np.diag(np.maximum(np.diag(normal), 1e-12))
    try:
        delta = np.linalg.solve(normal, jac.T @ resid)
    except np.linalg.LinAlgError:
        delta = None
    if delta is None or not np.all(np.isfinite(delta)):
        return _dense_lstsq_step(jl[:, None], jg[:, None], resid[:, None], lam=lam)
    n_loc = jl.shape[1]
    return delta[None, :n_loc], delta[n_loc:]


def _diag_matrix(d: np.ndarray) -> np.ndarray:
    """Diagonal matrices ``(n, k, k)`` from their diagonals ``(n, k)``."""
    return d[:, :, None] * np.eye(d.shape[1])[None, :, :]


def _dense_lstsq_step(jl, jg, resid, *, lam: float):
    """`_dense_step` as one dense least-squares system (singular cases)."""
    n_cross, n_prof, n_loc = jl.shape
    n_glob = jg.shape[2]
    size = n_prof * n_loc + n_glob
    jac = np.zeros((n_cross, n_prof, size))
    rows = np.arange(n_prof)[:, None]
    jac[:, rows, rows * n_loc + np.arange(n_loc)[None, :]] = jl  # block-diagonal local parts
    jac[:, :, n_prof * n_loc :] = jg
    flat = jac.reshape(n_cross * n_prof, size)
    normal = flat.T @ flat
    grad = flat.T @ resid.ravel()
    damped = normal + lam * np.diag(np.maximum(np.diag(normal), 1e-12))
    delta = lstsq_or_none(damped, grad)
    if delta is None:  # not finite: no step (the damping grows until the fit stops)
        delta = np.zeros(size)
    return delta[: n_prof * n_loc].reshape(n_prof, n_loc), delta[n_prof * n_loc :]
