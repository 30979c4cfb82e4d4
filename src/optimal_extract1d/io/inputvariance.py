"""Per-pixel variance of a slit: VAR_* arrays, drizzle weights, ERR, or the data.

Part of the input boundary (`.io.slits` calls `choose_variance`). A variance
source is used only when it holds at least one finite, positive value; a
source that is present but unusable (a missing component, a wrong shape,
nothing positive) is reported with a WARNING naming the slit, and the next
source in the order is tried. Pixels with a negative or non-finite
component are marked unusable by `bad_variance`, never repaired.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["VARIANCE_ORDER", "bad_variance", "choose_variance", "read_array"]

log = logging.getLogger(__name__)

#: The order "auto" tries the sources in.
VARIANCE_ORDER = ("var", "wht", "err")
_DESCRIPTION = {
    "var": "VAR_POISSON + VAR_RNOISE + VAR_FLAT",
    "wht": "1 / (WHT s^4)",
    "err": "ERR^2",
}


def read_array(slit: Any, attr: str, name: str) -> np.ndarray | None:
    """A float copy of the slit's ``attr`` array, or None if absent or of the wrong shape.

    Parameters
    ----------
    slit : datamodel
        The slit.
    attr : str
        Array attribute (``"var_rnoise"``, ``"wht"``, ``"dq"``...).
    name : str
        Slit name for the warning.

    Returns
    -------
    ndarray or None
        The array, shaped like SCI; None (with a WARNING when present) otherwise.
    """
    if not slit.hasattr(attr):
        return None
    arr = np.asarray(getattr(slit, attr), dtype=float)
    if arr.shape != np.shape(slit.data):
        log.warning(
            "Slit %s: %s has shape %s but SCI has %s; %s is ignored",
            name,
            attr.upper(),
            arr.shape,
            np.shape(slit.data),
            attr.upper(),
        )
        return None
    return arr.copy()


def choose_variance(
    slit: Any, source: str, drizzle_scale: float, *, name: str
) -> tuple[str, dict[str, np.ndarray]]:
    """Pick the per-pixel variance: VAR_* arrays, drizzle weights, ERR, or the data.

    Parameters
    ----------
    slit : datamodel
        The slit.
    source : str
        ``"auto"`` tries VAR_POISSON+VAR_RNOISE(+VAR_FLAT), then 1/(WHT s^4),
        then ERR^2; an explicit choice that is missing or unusable falls back
        to auto with a warning. When nothing is usable the variance is the
        robust scatter of the data (warning).
    drizzle_scale : float
        ``s`` in 1/(WHT s^4).
    name : str
        Slit name for log messages.

    Returns
    -------
    source : str
        The source used: ``"var"``, ``"wht"``, ``"err"`` or ``"data"``.
    arrays : dict of ndarray
        ``variance``, ``var_poisson``, ``var_rnoise``, ``var_flat``.
    """
    readers = {"var": _variance_from_var, "wht": _variance_from_wht, "err": _variance_from_err}
    order = VARIANCE_ORDER if source == "auto" else (source,)
    for candidate in order:
        comps = readers[candidate](slit, drizzle_scale, name)
        if comps is None:
            continue
        arrays = _with_total(*comps)
        if np.any(~bad_variance(arrays)):
            if candidate != order[0]:
                log.info("Slit %s: variance from %s", name, _DESCRIPTION[candidate])
            return candidate, arrays
        log.warning(
            "Slit %s: %s has no finite positive value; not used", name, _DESCRIPTION[candidate]
        )
    if source != "auto":
        log.warning(
            "Slit %s: variance_source=%r is not available; falling back to 'auto'", name, source
        )
        return choose_variance(slit, "auto", drizzle_scale, name=name)
    return "data", _variance_from_data(slit, name)


def bad_variance(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Pixels whose variance cannot be used: total not finite and positive, or a bad component.

    Parameters
    ----------
    arrays : dict of ndarray
        ``variance``, ``var_poisson``, ``var_rnoise``, ``var_flat`` (as returned
        by `choose_variance`).

    Returns
    -------
    ndarray of bool
        True where the pixel must not be used.
    """
    total = arrays["variance"]
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(total) & (total > 0))
        for key in ("var_poisson", "var_rnoise", "var_flat"):
            comp = arrays[key]
            bad |= ~np.isfinite(comp) | (comp < 0)
    return bad


def _with_total(vp: np.ndarray, vr: np.ndarray, vf: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):
        total = vp + vr + vf
    return {"variance": total, "var_poisson": vp, "var_rnoise": vr, "var_flat": vf}


def _variance_from_var(slit: Any, _scale: float, name: str):
    keys = ("var_poisson", "var_rnoise", "var_flat")
    vp, vr, vf = (read_array(slit, k, name) for k in keys)
    if vp is None and vr is None and vf is None:
        return None
    missing = [k.upper() for k, v in zip(keys[:2], (vp, vr), strict=True) if v is None]
    if missing:
        log.warning(
            "Slit %s: %s missing or unreadable; the VAR_* arrays are not used",
            name,
            " and ".join(missing),
        )
        return None
    return vp, vr, vf if vf is not None else np.zeros(vp.shape)


def _variance_from_wht(slit: Any, scale: float, name: str):
    wht = read_array(slit, "wht", name)
    if wht is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        var = np.where(wht > 0, 1.0 / (wht * scale**4), np.nan)
    zero = np.zeros(wht.shape)
    return zero, var, zero


def _variance_from_err(slit: Any, _scale: float, name: str):
    err = read_array(slit, "err", name)
    if err is None:
        return None
    zero = np.zeros(err.shape)
    with np.errstate(over="ignore"):
        return err**2, zero, zero


def _variance_from_data(slit: Any, name: str) -> dict[str, np.ndarray]:
    data = np.asarray(slit.data, float)
    finite = data[np.isfinite(data)]
    scatter = 1.4826 * np.median(np.abs(finite - np.median(finite))) if finite.size else np.nan
    log.warning(
        "Slit %s: no usable VAR_*, WHT or ERR array; using the robust scatter of the data "
        "(%.3g) as a constant noise level",
        name,
        scatter,
    )
    zero = np.zeros(data.shape)
    return _with_total(np.full(data.shape, scatter**2), zero, zero)
