"""The run: every slit of an opened input, each read once and extracted by `.slit.extract_slit`.

This module decides what a failure means:

* a slit that cannot be read (no data, no wavelengths) is skipped, with a
  WARNING naming it, and listed in the ``skipped`` of `ExtractionRun`; if no slit at
  all can be read the run stops with `.InputError`;
* a kernel that cannot be fitted falls back, in this order, to a fixed
  kernel at the slit center, then to a box (uniform profile) extraction
  (`.slit.extract_slit`); the spectrum says so in its DQ (`.DQ_FALLBACK`) and
  metadata;
* any other error of one slit skips that slit only.

The input is walked once (`.io.slits.iter_slits`); every slit's stored shape
is checked against the parameters before any slit is read, and each slit is
read once (`.io.slits.read_slit`); with ``keep_slits`` the `.SlitData` read
stay in the run for the diagnostics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, OptimalExtractError, ParameterError
from ..io import inputs, psfref, slits
from ..params import ExtractParams, check_region, check_slice
from ..psf.kernel import KernelTemplate, make_template
from ..results import SpectrumResult
from ..slitdata import SlitData
from .slit import extract_slit
from .templates import psf_candidate, psf_reference, slice_kernel

__all__ = ["ExtractionRun", "SkippedSlit", "extract", "extract_slit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedSlit:
    """A slit that produced no spectrum, and why.

    Attributes
    ----------
    name : str
        Slit name.
    reason : str
        What went wrong, as logged.
    error : str
        Type name of the error (``InputError``, ``ParameterError``, ... or the
        unexpected exception's type).
    """

    name: str
    reason: str
    error: str = ""


@dataclass(frozen=True)
class ExtractionRun:
    """Everything one run produced.

    Attributes
    ----------
    spectra : list of SpectrumResult
        One per extracted source, in input order.
    skipped : list of SkippedSlit
        Slits that produced no spectrum.
    slit_index : list of int
        For every spectrum, the position of its slit in `.io.slits.iter_slits`
        order.
    slits : dict[int, SlitData]
        The slits as read, by that position (with ``keep_slits`` only): the
        diagnostics use them instead of reading the input again.
    """

    spectra: list[SpectrumResult] = field(default_factory=list)
    skipped: list[SkippedSlit] = field(default_factory=list)
    slit_index: list[int] = field(default_factory=list)
    slits: dict[int, SlitData] = field(default_factory=dict)


def extract(model: Any, params: ExtractParams, *, keep_slits: bool = False) -> ExtractionRun:
    """Extract every slit of an opened input model.

    Every slit gives a spectrum or a `SkippedSlit` (logged at WARNING, or at
    ERROR for an unexpected exception); one slit's failure never stops the
    others.

    Parameters
    ----------
    model : datamodel
        ImageModel, SlitModel, MultiSlitModel or ModelContainer (see
        `.io.inputs.open_input`).
    params : ExtractParams
        Run parameters.
    keep_slits : bool
        Keep every slit read in the ``slits`` of the `ExtractionRun` (for the diagnostics).

    Returns
    -------
    ExtractionRun

    Raises
    ------
    ParameterError
        If the extraction region or the kernel slice fits none of the input
        slits (checked before any slit is read).
    ReferenceFileError
        If ``kernel = "psf"`` and the PSF file is missing or bad, or has no
        aperture for a slit (checked before any slit is read).
    InputError
        If no slit of the input can be read.
    OptimalExtractError
        If no slit could be extracted for other reasons.
    """
    psf = psf_reference(params)
    by_file = psf is not None and params.kernel == "psf"
    template = None if by_file else make_template(slice_kernel(params.kernel))
    label = inputs.input_label(model)
    pairs = list(slits.iter_slits(model))
    names = [slits.slit_name(slit, parent) for slit, parent in pairs]
    geometries = [slits.stored_geometry(slit, parent) for slit, parent in pairs]
    unfit = _check_parameters(params, geometries, names=names, label=label)
    if psf is not None:  # a PSF file that does not fit a slit stops the run before any work
        for name, geometry in zip(names, geometries, strict=True):
            if geometry is not None:
                psf.table(name, geometry[1])
    run = ExtractionRun()
    for index, ((slit, parent), name) in enumerate(zip(pairs, names, strict=True)):
        if index in unfit:
            log.warning("Slit %s skipped: %s", name, unfit[index])
            run.skipped.append(SkippedSlit(name, str(unfit[index]), "ParameterError"))
            continue
        _extract_one(
            run,
            index,
            (slit, parent),
            name=name,
            params=params,
            template=template,
            psf=psf,
            keep=keep_slits,
        )
    if not run.spectra:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in run.skipped)
        msg = f"{label}: no slit could be extracted ({reasons})"
        bad_input = all(s.error in ("InputError", "ParameterError") for s in run.skipped)
        raise InputError(msg) if bad_input else OptimalExtractError(msg)
    return run


def _extract_one(
    run: ExtractionRun,
    index: int,
    pair: tuple[Any, Any],
    *,
    name: str,
    params: ExtractParams,
    template: KernelTemplate | None,
    psf: psfref.PSFReference | None,
    keep: bool,
) -> None:
    """Read and extract one slit into ``run``; any failure becomes a `SkippedSlit`."""
    try:
        data = slits.read_slit(
            *pair,
            variance_source=params.variance_source,
            drizzle_scale=params.drizzle_scale,
            input_unit=params.input_unit,
        )
        if keep:
            run.slits[index] = data
        slit_template = template or psf.template(data.name, data.disp_axis, data.wavelength)
        spectra = extract_slit(
            data, params, slit_template, candidates=psf_candidate(params, data, psf)
        )
    except OptimalExtractError as err:
        log.warning("Slit %s skipped: %s", name, err)
        run.skipped.append(SkippedSlit(name, str(err), type(err).__name__))
    except Exception as err:  # one slit's unexpected failure must not stop the others
        log.error(
            "Slit %s skipped: unexpected %s: %s", name, type(err).__name__, err, exc_info=True
        )
        run.skipped.append(
            SkippedSlit(name, f"unexpected {type(err).__name__}: {err}", type(err).__name__)
        )
    else:
        run.spectra.extend(spectra)
        run.slit_index.extend([index] * len(spectra))


def _check_parameters(
    params: ExtractParams,
    geometries: list[tuple[tuple[int, int], int] | None],
    *,
    names: list[str],
    label: str,
) -> dict[int, ParameterError]:
    """Check the region and slice against every slit's stored shape, before any read.

    A parameter that fits none of the slits raises `.ParameterError`. Otherwise
    slits outside the extraction region are returned (by index) to be
    skipped, and slits narrower than the slice are logged: their slice is
    clipped to the slit. Slits with no 2-D data (None) are left to `.read_slit`.
    """
    region_bad: dict[int, ParameterError] = {}
    slice_bad: dict[int, ParameterError] = {}
    n_checked = 0
    for index, (geometry, name) in enumerate(zip(geometries, names, strict=True)):
        if geometry is None:
            continue  # no 2-D data: read_slit reports it
        shape, disp_axis = geometry
        n_checked += 1
        try:
            check_region(params, shape, name)
        except ParameterError as err:
            region_bad[index] = err
            continue
        try:
            check_slice(params, shape, name, disp_axis=disp_axis)
        except ParameterError as err:
            slice_bad[index] = err
    _raise_if_fits_none(region_bad, n_checked, label)
    _raise_if_fits_none(slice_bad, n_checked - len(region_bad), label)
    for index, err in slice_bad.items():
        log.warning("Slit %s: %s; the slice is clipped to the slit", names[index], err)
    return region_bad


def _raise_if_fits_none(bad: dict[int, ParameterError], n_checked: int, label: str) -> None:
    if bad and len(bad) == n_checked:
        first = next(iter(bad.values()))
        msg = f"{first} (it fits none of the {n_checked} slit(s) of {label})"
        raise ParameterError(msg)
