"""The bad-input corpus: what a user gets from `OptimalExtract1dStep.call` for each kind.

Every row of `CORPUS` is one kind of bad input. Model-level kinds spoil the
middle slit (``bad_slit``) of a three-slit MultiSlitModel; the two good slits
must still come out right (flux within 2 % of the truth, DQ 0, status
``fit``). The expectation says what the user gets for the bad slit:

* `Extracted`: a spectrum, with its status, DQ bits, the log lines at WARNING
  naming the slit, and whatever the kind makes checkable (flux, NaN columns);
* `Skipped`: no spectrum, a WARNING (or ERROR) naming the slit and the reason,
  and the record in ``meta.optimal_extraction.skipped_slits``;
* `Raises`: one clear error of the package's own type naming the file or the
  parameter and the problem (stpipe's own ValidationError for spec bounds);
* `Custom`: kind-specific checks of the whole result.

`CORPUS` keeps the kinds countable (``test_corpus_has_at_least_20_kinds``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.modeling import models
from conftest import median_ratio_tolerance
from gwcs import WCS
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.errors import InputError, ParameterError
from optimal_extract1d.io import x1d
from optimal_extract1d.pipeline import extraction
from optimal_extract1d.results import (
    DQ_DO_NOT_USE,
    DQ_FALLBACK,
    DQ_FLUX_ESTIMATED,
    FluxUnits,
    SpectrumResult,
)
from optimal_extract1d.sim.models import make_lrs_image, make_multislit, slit_wcs
from optimal_extract1d.sim.simulate import PIXEL_AREA_SR, simulate_slit

N_CROSS, N_DISP, CENTER = 25, 80, 12
SIM = dict(n_cross=N_CROSS, n_disp=N_DISP, snr=50.0, fwhm=(2.0, 2.0))
BAD = "bad_slit"
JY = PIXEL_AREA_SR * 1e6  # MJy/sr x pixel -> Jy
_ARRAYS = ("data", "err", "wht", "var_poisson", "var_rnoise", "var_flat")


def _sim(rng, **kwargs):
    return simulate_slit(rng, spectrum=np.ones(N_DISP), **{**SIM, **kwargs})


@dataclass
class Built:
    """The step input and the truth behind it."""

    input: Any
    sims: dict[str, Any] = field(default_factory=dict)  # slit name -> SimulatedSlit


def three_slits(rng, **bad_kwargs) -> tuple[Built, Any]:
    """Three simulated slits; the middle one is named ``bad_slit``."""
    sims = [_sim(rng), _sim(rng, **bad_kwargs), _sim(rng)]
    model = make_multislit(sims, filename="corpus_s2d.fits")
    model.slits[1].name = BAD
    return Built(model, {"1": sims[0], BAD: sims[1], "3": sims[2]}), model.slits[1]


def _crop(slit, rows=slice(None), cols=slice(None)) -> None:
    for name in _ARRAYS:
        setattr(slit, name, np.ascontiguousarray(getattr(slit, name)[rows, cols]))


# --------------------------------------------------------------------------------------
# Expectations


def _bad_slit_lines(caplog, level=logging.WARNING) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("optimal_extract1d")
        and r.levelno >= level
        and (f"Slit {BAD}" in r.getMessage() or f"slit {BAD!r}" in r.getMessage())
    ]


def _assert_logged(caplog, texts, level=logging.WARNING) -> None:
    lines = _bad_slit_lines(caplog, level)
    for text in texts:
        assert any(text in line for line in lines), f"no log line with {text!r} in {lines}"


def _check_good_slits(result, built: Built) -> None:
    for spec in result.spec:
        if spec.name == BAD:
            continue
        sim = built.sims[spec.name]
        t = spec.spec_table
        assert spec.meta.optimal_extraction.status == "fit"
        assert np.all(t["DQ"] == 0)
        _assert_flux_right(spec, sim, JY)


def _assert_flux_right(spec, sim, scale) -> None:
    """Median FLUX / truth within 5 standard errors of a clean slit's (0.015 here, not 2 %)."""
    ratio = spec.spec_table["FLUX"] / (sim.flux * scale)
    tol = median_ratio_tolerance(sim, bkg_order=spec.meta.optimal_extraction.bkg_order)
    assert abs(np.median(ratio) - 1) < tol, (np.median(ratio), tol)


@dataclass(frozen=True)
class Extracted:
    """The bad slit gives a spectrum.

    Attributes
    ----------
    status : str
        ``meta.optimal_extraction.status`` of the spectrum.
    logged : tuple of str
        Texts of log lines at WARNING that name the slit.
    dq_all : int
        DQ bits set in every row.
    nan_rows : slice or None
        Rows whose FLUX must be NaN with DO_NOT_USE; every other row is finite.
    check_flux : bool
        The median FLUX must match the injected truth within ``flux_tol``.
    flux_tol : float
        Relative tolerance of that check.
    extra : callable, optional
        ``extra(spec, built)`` for kind-specific checks.
    """

    status: str = "fit"
    logged: tuple[str, ...] = ()
    dq_all: int = 0
    nan_rows: slice | None = None
    check_flux: bool = True
    flux_tol: float = 0.02
    extra: Callable[[Any, Built], None] | None = None

    def check(self, result, built: Built, caplog) -> None:
        assert [s.name for s in result.spec] == ["1", BAD, "3"]
        assert result.meta.optimal_extraction.skipped_slits == []
        _check_good_slits(result, built)
        spec = result.spec[1]
        t = spec.spec_table
        assert spec.meta.optimal_extraction.status == self.status
        assert np.all((t["DQ"] & self.dq_all) == self.dq_all), np.unique(t["DQ"])
        assert not np.any(np.isinf(t["FLUX"])) and not np.any(np.isinf(t["FLUX_ERROR"]))
        for column in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT"):
            assert not np.any(t[column] < 0), column
        nan = np.zeros(len(t), bool)
        if self.nan_rows is not None:
            nan[self.nan_rows] = True
        np.testing.assert_array_equal(np.isnan(t["FLUX"]), nan)
        assert np.all(t["DQ"][nan] & DQ_DO_NOT_USE)
        if self.check_flux:
            sim = built.sims[BAD]
            ratio = t["FLUX"] / (sim.flux * JY)
            assert abs(np.nanmedian(ratio) - 1) < self.flux_tol, np.nanmedian(ratio)
        _assert_logged(caplog, self.logged)
        if self.extra is not None:
            self.extra(spec, built)


@dataclass(frozen=True)
class Skipped:
    """The bad slit gives no spectrum: a log line naming it and a skipped-slit record."""

    reason: str
    error: str = "InputError"
    level: int = logging.WARNING

    def check(self, result, built: Built, caplog) -> None:
        assert [s.name for s in result.spec] == ["1", "3"]
        _check_good_slits(result, built)
        (record,) = result.meta.optimal_extraction.skipped_slits
        assert record.name == BAD and record.error == self.error
        assert self.reason in record.reason
        _assert_logged(caplog, [self.reason], self.level)


@dataclass(frozen=True)
class Custom:
    """Kind-specific checks of the whole result: ``check(result, built, caplog)``."""

    check: Callable[[Any, Built, Any], None]


@dataclass(frozen=True)
class Raises:
    """The whole input is unusable: one clear error of the package's own type."""

    error: type[Exception]
    match: str


# --------------------------------------------------------------------------------------
# The kinds: each builder returns the step input (a model or a file) and the truth.


def nan_columns(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.data[:, 30:40] = np.nan
    return built


def nan_rows_off_trace(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.data[3:6] = np.nan
    return built


def _npixels_lose_three_rows(spec, built):
    assert np.all(spec.spec_table["NPIXELS"] == N_CROSS - 2 - 3)  # NaN borders, NaN rows


def nan_rows_through_core(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.data[CENTER - 1 : CENTER + 2] = np.nan
    return built


# NaN edge rows (issue 12): NIRSpec fixed-slit s2d products hold many all-NaN rows at one
# edge of the slit (S200A1: 47 of 91), which used to raise LinAlgError in the kernel fit.
# (slit name, NaN side, share of the slit's rows, where the source sits: in the middle of
# the rows with data, as in a real product, or at the slit center, where the NaN rows
# cut its trace or hide it). The 0 % case is the good slits around them.
NAN_EDGE = (
    ("bottom_20", "bottom", 0.2, "data"),
    ("top_30", "top", 0.3, "data"),
    ("bottom_52", "bottom", 0.52, "data"),  # the S200A1 share
    ("top_60", "top", 0.6, "data"),
    ("top_48_cuts_the_trace", "top", 0.48, "center"),
    ("bottom_60_hides_the_source", "bottom", 0.6, "center"),
)


def _nan_edge_rows(side: str, share: float) -> slice:
    n = round(share * N_CROSS)
    return slice(0, n) if side == "bottom" else slice(N_CROSS - n, N_CROSS)


def nan_edge_rows(rng, tmp_path):
    sims, names = [_sim(rng)], ["1"]
    for name, side, share, place in NAN_EDGE:
        rows = _nan_edge_rows(side, share)
        first, last = (rows.stop, N_CROSS - 2) if side == "bottom" else (1, rows.start - 1)
        center = 0.5 * (first + last) if place == "data" else None
        sims.append(_sim(rng, center=center))
        names.append(name)
    sims.append(_sim(rng))
    names.append("3")
    model = make_multislit(sims, filename="corpus_s2d.fits")
    for slit, name, spec in zip(model.slits, names, (None, *NAN_EDGE, None), strict=True):
        slit.name = name
        if spec is not None:
            rows = _nan_edge_rows(spec[1], spec[2])
            for array in ("data", "err", "wht", "var_poisson", "var_rnoise", "var_flat"):
                getattr(slit, array)[rows] = np.nan
    return Built(model, dict(zip(names, sims, strict=True)))


def _check_nan_edge_rows(result, built, caplog):
    """Source in the rows with data: recovered and clean; trace cut or hidden: flagged."""
    assert [s.name for s in result.spec] == ["1", *(row[0] for row in NAN_EDGE), "3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    n_nan = {name: round(share * N_CROSS) for name, _, share, _ in NAN_EDGE}
    for spec in result.spec:
        sim, t = built.sims[spec.name], spec.spec_table
        said = [line for line in warnings if f"Slit {spec.name}:" in line]
        ratio = t["FLUX"] / (sim.flux * JY)
        if spec.name in ("1", "3") or spec.name.endswith(("_20", "_30", "_52", "_60")):
            assert spec.meta.optimal_extraction.status == "fit", spec.name
            assert np.all(t["DQ"] == 0) and not said, (spec.name, said)
            _assert_flux_right(spec, sim, JY)
            # the NaN rows take in the simulation's NaN border row on their side
            assert np.all(t["NPIXELS"] == N_CROSS - max(n_nan.get(spec.name, 1), 1) - 1)
        elif spec.name == "top_48_cuts_the_trace":  # half the trace masked: estimated
            assert spec.meta.optimal_extraction.status == "fit"
            assert np.mean(t["DQ"] & DQ_FLUX_ESTIMATED > 0) > 0.9
            assert any("FLUX_ESTIMATED" in line for line in said), said
            assert abs(np.median(ratio) - 1) < 0.05
        else:  # no significant source left: the fallback, flagged, invents none
            assert spec.meta.optimal_extraction.status == "fixed_kernel"
            assert np.all(t["DQ"] & DQ_FALLBACK)
            # the catalogue position (the simulator writes the true one) lies on the
            # NaN rows, where the kernel would measure nothing: not used
            origin = spec.meta.optimal_extraction.fallback_position.origin
            assert origin == "center of the rows holding data"
            assert any(origin in line for line in said), said
            assert abs(np.median(ratio)) < 0.05


def all_nan_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.data[:] = np.nan
    return built


def zero_size_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    _crop(slit, rows=slice(0, 0))
    return built


def one_row_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    _crop(slit, rows=slice(CENTER, CENTER + 1))
    return built


def _flux_is_the_pixel_value(spec, built):
    # A one-row profile is 1: the optimal flux is the pixel itself (Horne eq. 8).
    sim = built.sims[BAD]
    np.testing.assert_allclose(spec.spec_table["FLUX"], sim.data[CENTER] * JY, rtol=1e-5)


def two_row_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    _crop(slit, rows=slice(CENTER, CENTER + 2))
    return built


def _flux_is_twice_the_weighted_mean(spec, built):
    # Fixed kernel centered between the two rows: P = (1/2, 1/2), so Horne's
    # F = sum(P D / V) / sum(P^2 / V) is twice the inverse-variance mean.
    sim = built.sims[BAD]
    d = sim.data[CENTER : CENTER + 2].astype(np.float32).astype(float)
    v = sum(
        a[CENTER : CENTER + 2].astype(np.float32).astype(float)
        for a in (sim.var_poisson, sim.var_rnoise, sim.var_flat)
    )
    expected = 2 * np.sum(d / v, axis=0) / np.sum(1 / v, axis=0)
    np.testing.assert_allclose(spec.spec_table["FLUX"], expected * JY, rtol=1e-4)


def zero_wht(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.wht[:] = 0.0
    return built


def _variance_from(source):
    def check(spec, built):
        assert spec.meta.optimal_extraction.variance_source == source

    return check


def negative_wht(rng, tmp_path):
    built, slit = three_slits(rng)
    del slit.var_poisson, slit.var_rnoise, slit.var_flat
    slit.wht[3:6] = -1.0
    return built


def _wht_variance_without_negative_rows(spec, built):
    t = spec.spec_table
    assert spec.meta.optimal_extraction.variance_source == "wht"
    assert np.all(t["NPIXELS"] == N_CROSS - 2 - 3)
    assert np.all(t["FLUX_VAR_POISSON"] == 0) and np.all(t["FLUX_VAR_RNOISE"] > 0)


def negative_variance(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.var_poisson[:, 50:55] = -1.0
    return built


def zero_variance(rng, tmp_path):
    built, slit = three_slits(rng)
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        getattr(slit, name)[:] = 0.0
    return built


def nan_variance(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.var_rnoise[:] = np.nan
    return built


def infinite_variance(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.var_rnoise[:, 50:55] = np.inf
    return built


def all_do_not_use(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.dq = np.full(slit.data.shape, 1, np.uint32)
    return built


def saturated_flagged(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.dq = np.zeros(slit.data.shape, np.uint32)
    slit.dq[CENTER, 20:30] = 1 | 2  # DO_NOT_USE | SATURATED
    slit.data[CENTER, 20:30] = np.finfo(np.float32).max
    return built


def _saturated_columns_estimated(spec, built):
    dq = spec.spec_table["DQ"]
    assert np.all(dq[20:30] & DQ_FLUX_ESTIMATED) and not np.any(np.delete(dq, range(20, 30)))
    sim = built.sims[BAD]
    ratio = spec.spec_table["FLUX"][20:30] / (sim.flux[20:30] * JY)
    assert np.all(np.abs(ratio - 1) < 0.1)  # the profile carries the missing core pixel


def huge_values(rng, tmp_path):
    # The whole slit 1e15 times brighter (variance 1e30 times, near the float32
    # limit of the file): nothing overflows, the flux scales.
    built, slit = three_slits(rng, peak_flux=1e15)
    return built


def cosmic_ray(rng, tmp_path):
    built, slit = three_slits(rng)
    sim = built.sims[BAD]
    slit.data[CENTER, 40] += 1e6 * sim.flux[40]
    return built


def _cosmic_ray_rejected(spec, built):
    sim = built.sims[BAD]
    ratio = spec.spec_table["FLUX"] / (sim.flux * JY)
    assert np.all(np.abs(np.delete(ratio, 40) - 1) < 0.1)
    assert spec.spec_table["DQ"][40] & 16  # OUTLIER
    assert abs(ratio[40] - 1) < 0.1


def pure_noise(rng, tmp_path):
    built, slit = three_slits(rng)
    sim = built.sims[BAD]
    slit.data = (sim.data - sim.flux * sim.true_profile).astype(np.float32)
    return built


def _noise_scatters_around_zero(spec, built):
    t = spec.spec_table
    pulls = t["FLUX"] / t["FLUX_ERROR"]
    assert abs(np.mean(pulls)) < 0.5 and 0.7 < np.std(pulls) < 1.3


def source_at_slit_edge(rng, tmp_path):
    built, slit = three_slits(rng, center=1.0)
    return built


def wrong_units(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.meta.bunit_data = "furlongs"
    return built


def _flux_left_in_input_units(spec, built):
    sim = built.sims[BAD]
    assert spec.spec_table.columns["FLUX"].unit == "furlongs"
    _assert_flux_right(spec, sim, 1.0)


def missing_units(rng, tmp_path):
    built, slit = three_slits(rng)
    built.input.meta.bunit_data = None
    for s in built.input.slits:
        s.meta.bunit_data = None
    built.input.slits[0].meta.bunit_data = "MJy/sr"
    built.input.slits[2].meta.bunit_data = "MJy/sr"
    return built


def _flux_labelled_dn_per_s(spec, built):
    sim = built.sims[BAD]
    assert spec.spec_table.columns["FLUX"].unit == "DN/s"
    _assert_flux_right(spec, sim, 1.0)


def missing_var_arrays(rng, tmp_path):
    built, slit = three_slits(rng)
    del slit.var_poisson, slit.var_rnoise, slit.var_flat
    return built


def missing_var_and_wht(rng, tmp_path):
    built, slit = three_slits(rng)
    del slit.var_poisson, slit.var_rnoise, slit.var_flat, slit.wht
    return built


def missing_all_noise_arrays(rng, tmp_path):
    built, slit = three_slits(rng)
    del slit.var_poisson, slit.var_rnoise, slit.var_flat, slit.wht, slit.err
    return built


def var_array_of_wrong_shape(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.var_rnoise = np.ones((5, 5), np.float32)
    return built


def dq_of_wrong_shape(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.dq = np.ones((5, 5), np.uint32)
    return built


def missing_wcs(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.meta.wcs = None
    return built


def broken_wcs_with_wavelength_array(rng, tmp_path):
    built, slit = three_slits(rng)
    sim = built.sims[BAD]
    short = models.Tabular1D(
        points=np.arange(10.0), lookup_table=np.arange(10.0), bounds_error=True
    )
    slit.meta.wcs = WCS(
        forward_transform=models.Mapping((0,), n_inputs=2) | short,
        input_frame="detector",
        output_frame="world",
    )  # raises ValueError beyond x = 9
    slit.wavelength = np.broadcast_to(sim.wavelength, slit.data.shape).astype(np.float32)
    return built


def _wavelengths_from_the_array(spec, built):
    sim = built.sims[BAD]
    np.testing.assert_allclose(spec.spec_table["WAVELENGTH"], sim.wavelength, rtol=1e-6)


def wavelength_nan_at_edges(rng, tmp_path):
    built, slit = three_slits(rng)
    lam = built.sims[BAD].wavelength.copy()
    lam[:6] = np.nan
    lam[-6:] = np.nan
    slit.meta.wcs = slit_wcs(lam, N_CROSS)
    return built


def _only_columns_with_a_wavelength(spec, built):
    t = spec.spec_table
    lam = built.sims[BAD].wavelength
    assert 0 < len(t) <= N_DISP - 12 and np.all(np.isfinite(t["WAVELENGTH"]))
    assert np.all(np.isin(np.round(t["WAVELENGTH"], 6), np.round(lam[6:-6], 6)))


def dispersion_direction_unset(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.meta.wcsinfo.dispersion_direction = None
    return built


def dispersion_along_y_unset(rng, tmp_path):
    # MIRI LRS (dispersion along y) without DISPAXIS: guessed from EXP_TYPE, with a warning.
    sim = simulate_slit(rng, n_cross=41, n_disp=120, spectrum=np.ones(120), fwhm=(2.5, 2.5))
    image = make_lrs_image(sim, filename="lrs_s2d.fits")
    image.meta.wcsinfo.dispersion_direction = None
    image.data[:, 30:33] = np.nan  # NaN rows of the image = cross-dispersion columns
    return Built(image, {"MIR_LRS-FIXEDSLIT": sim})


def internal_failure_in_one_slit(rng, tmp_path, monkeypatch):
    built, _ = three_slits(rng)
    real = extraction.extract_slit

    def fails_on_bad(slit, params, template=None, **kwargs):
        if slit.name == BAD:
            raise ZeroDivisionError("simulated bug")
        return real(slit, params, template, **kwargs)

    monkeypatch.setattr(extraction, "extract_slit", fails_on_bad)
    return built


def failure_writing_one_spectrum(rng, tmp_path, monkeypatch):
    built, _ = three_slits(rng)
    real = x1d.build_spec

    def fails_on_bad(result):
        if result.name == BAD:
            raise KeyError("simulated bug")
        return real(result)

    monkeypatch.setattr(x1d, "build_spec", fails_on_bad)
    return built


def region_outside_one_short_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    _crop(slit, rows=slice(0, 15))
    return built


def slice_wider_than_one_short_slit(rng, tmp_path):
    built, slit = three_slits(rng)
    _crop(slit, cols=slice(0, 20))
    built.sims[BAD] = _truncated_sim(built.sims[BAD], 20)
    return built


def _truncated_sim(sim, n):
    return dataclasses.replace(sim, flux=sim.flux[:n], wavelength=sim.wavelength[:n])


def _slice_clipped_to_the_slit(spec, built):
    assert len(spec.spec_table) == 20
    assert spec.meta.optimal_extraction.slice_width == 20


def three_good_slits(rng, tmp_path):
    return three_slits(rng)[0]


def multislit_with_zero_slits(rng, tmp_path):
    model = datamodels.MultiSlitModel()
    model.meta.filename = "empty_s2d.fits"
    return Built(model)


def every_slit_without_wcs(rng, tmp_path):
    built, _ = three_slits(rng)
    for slit in built.input.slits:
        slit.meta.wcs = None
    return built


def not_a_datamodel_file(rng, tmp_path):
    path = tmp_path / "junk_s2d.fits"
    path.write_bytes(b"this is not a FITS file\n" * 100)
    return Built(str(path))


def not_a_spectral_model_file(rng, tmp_path):
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((10, 10))).writeto(path)
    return Built(str(path))


def truncated_file(rng, tmp_path):
    built, _ = three_slits(rng)
    path = tmp_path / "cut_s2d.fits"
    built.input.save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2 + 1000])
    return Built(str(path))


def _check_lrs_unset(result, built, caplog):
    (spec,) = result.spec
    sim = built.sims[spec.name]
    t = spec.spec_table
    assert spec.dispersion_direction == 2
    assert abs(np.median(t["FLUX"] / (sim.flux * JY)) - 1) < 0.02
    assert np.all(t["NPIXELS"] == sim.data.shape[0] - 2 - 3)
    assert "Slit MIR_LRS-FIXEDSLIT: dispersion_direction is not set; assuming y" in caplog.text


NAN_COLS = slice(30, 40)
BAD_VAR_COLS = slice(50, 55)
CORPUS = [
    # (kind, builder, step parameters, expectation)
    ("nan_columns", nan_columns, {}, Extracted(dq_all=0, nan_rows=NAN_COLS)),
    (
        "nan_rows_off_trace",
        nan_rows_off_trace,
        {},
        Extracted(extra=_npixels_lose_three_rows),
    ),
    (
        "nan_rows_through_the_trace_core",
        nan_rows_through_core,
        {},
        Extracted(dq_all=DQ_FLUX_ESTIMATED, flux_tol=0.1),
    ),
    ("nan_edge_rows_0_to_60_percent", nan_edge_rows, {}, Custom(_check_nan_edge_rows)),
    (
        "all_nan_slit",
        all_nan_slit,
        {},
        Extracted(
            status="box",
            logged=("no usable pixel",),
            dq_all=DQ_DO_NOT_USE | DQ_FALLBACK,
            nan_rows=slice(None),
            check_flux=False,
        ),
    ),
    ("zero_size_slit", zero_size_slit, {}, Skipped("no 2-D science data")),
    (
        "one_row_slit",
        one_row_slit,
        {},
        Extracted(
            status="fixed_kernel",
            logged=("kernel fit failed",),
            dq_all=DQ_FALLBACK,
            check_flux=False,
            extra=_flux_is_the_pixel_value,
        ),
    ),
    (
        "two_row_slit",
        two_row_slit,
        {},
        Extracted(
            status="fixed_kernel",
            logged=("kernel fit failed",),
            dq_all=DQ_FALLBACK,
            check_flux=False,
            extra=_flux_is_twice_the_weighted_mean,
        ),
    ),
    (
        "zero_wht_requested",
        zero_wht,
        {"variance_source": "wht"},
        Extracted(
            logged=("1 / (WHT s^4) has no finite positive value", "'wht' is not available"),
            extra=_variance_from("var"),
        ),
    ),
    (
        "negative_wht",
        negative_wht,
        {},
        Extracted(extra=_wht_variance_without_negative_rows),
    ),
    (
        "negative_variance",
        negative_variance,
        {},
        Extracted(nan_rows=BAD_VAR_COLS, extra=_variance_from("var")),
    ),
    (
        "zero_variance",
        zero_variance,
        {},
        Extracted(
            logged=("VAR_POISSON + VAR_RNOISE + VAR_FLAT has no finite positive value",),
            extra=_variance_from("wht"),
        ),
    ),
    (
        "nan_variance",
        nan_variance,
        {},
        Extracted(
            logged=("VAR_POISSON + VAR_RNOISE + VAR_FLAT has no finite positive value",),
            extra=_variance_from("wht"),
        ),
    ),
    (
        "infinite_variance",
        infinite_variance,
        {},
        Extracted(nan_rows=BAD_VAR_COLS, extra=_variance_from("var")),
    ),
    (
        "all_pixels_do_not_use",
        all_do_not_use,
        {},
        Extracted(
            status="box",
            logged=("no usable pixel",),
            dq_all=DQ_DO_NOT_USE | DQ_FALLBACK,
            nan_rows=slice(None),
            check_flux=False,
        ),
    ),
    (
        "saturated_pixels_flagged",
        saturated_flagged,
        {},
        Extracted(check_flux=False, extra=_saturated_columns_estimated),
    ),
    ("huge_values", huge_values, {}, Extracted(extra=_variance_from("var"))),
    (
        "cosmic_ray_1e6",
        cosmic_ray,
        {},
        Extracted(check_flux=False, extra=_cosmic_ray_rejected),
    ),
    (
        "pure_noise_no_source",
        pure_noise,
        {},
        Extracted(
            status="fixed_kernel",
            logged=("no significant source", "falling back to a fixed"),
            dq_all=DQ_FALLBACK,
            check_flux=False,
            extra=_noise_scatters_around_zero,
        ),
    ),
    (
        "source_at_slit_edge",
        source_at_slit_edge,
        {},
        Extracted(dq_all=DQ_FLUX_ESTIMATED, flux_tol=0.05),
    ),
    (
        "wrong_units",
        wrong_units,
        {},
        Extracted(
            logged=("'furlongs' is not MJy/sr or MJy",),
            check_flux=False,
            extra=_flux_left_in_input_units,
        ),
    ),
    (
        "missing_units",
        missing_units,
        {},
        Extracted(
            logged=("input unit (BUNIT) is not set",),
            check_flux=False,
            extra=_flux_labelled_dn_per_s,
        ),
    ),
    ("missing_var_arrays", missing_var_arrays, {}, Extracted(extra=_variance_from("wht"))),
    ("missing_var_and_wht", missing_var_and_wht, {}, Extracted(extra=_variance_from("err"))),
    (
        "missing_every_noise_array",
        missing_all_noise_arrays,
        {},
        Extracted(logged=("robust scatter of the data",), extra=_variance_from("data")),
    ),
    (
        "var_array_of_wrong_shape",
        var_array_of_wrong_shape,
        {},
        Extracted(
            logged=("VAR_RNOISE has shape (5, 5)", "VAR_RNOISE missing or unreadable"),
            extra=_variance_from("wht"),
        ),
    ),
    (
        "dq_of_wrong_shape",
        dq_of_wrong_shape,
        {},
        Extracted(logged=("DQ has shape (5, 5) but SCI has (25, 80); DQ is ignored",)),
    ),
    (
        "missing_wcs",
        missing_wcs,
        {},
        Skipped("has neither a usable WCS nor a WAVELENGTH array"),
    ),
    (
        "broken_wcs_with_wavelength_array",
        broken_wcs_with_wavelength_array,
        {},
        Extracted(
            logged=("WCS evaluation failed", "wavelengths from the WAVELENGTH array"),
            extra=_wavelengths_from_the_array,
        ),
    ),
    (
        "wavelength_nan_at_edges",
        wavelength_nan_at_edges,
        {},
        Extracted(check_flux=False, extra=_only_columns_with_a_wavelength),
    ),
    (
        "dispersion_direction_unset",
        dispersion_direction_unset,
        {},
        Extracted(logged=("dispersion_direction is not set; assuming x",)),
    ),
    ("dispersion_along_y_unset", dispersion_along_y_unset, {}, Custom(_check_lrs_unset)),
    (
        "internal_failure_in_one_slit",
        internal_failure_in_one_slit,
        {},
        Skipped("unexpected ZeroDivisionError: simulated bug", "ZeroDivisionError", logging.ERROR),
    ),
    (
        "failure_writing_one_spectrum",
        failure_writing_one_spectrum,
        {},
        Skipped("unexpected KeyError while writing the spectrum", "KeyError", logging.ERROR),
    ),
    (
        "region_outside_one_short_slit",
        region_outside_one_short_slit,
        {"extraction_region": [0, 0, N_DISP - 1, 20]},
        Skipped("lies outside slit 'bad_slit' of 80 x 15 pixels", "ParameterError"),
    ),
    (
        "slice_wider_than_one_short_slit",
        slice_wider_than_one_short_slit,
        {"slice_width": 40},
        Extracted(
            logged=("slice_width 40 is wider than slit 'bad_slit'", "clipped to the slit"),
            extra=_slice_clipped_to_the_slit,
        ),
    ),
    (
        "region_outside_every_slit",
        three_good_slits,
        {"extraction_region": [0, 0, 500, 10]},
        Raises(ParameterError, r"extraction_region .* lies outside .*fits none of the 3 slit"),
    ),
    (
        "slice_wider_than_every_slit",
        three_good_slits,
        {"slice_width": 500},
        Raises(ParameterError, r"slice_width 500 is wider than slit '1'.*corpus_s2d\.fits"),
    ),
    (
        "slice_column_outside_every_slit",
        three_good_slits,
        {"slice_column": 80},
        Raises(ParameterError, r"slice_column 80 is outside slit '1'.*pixels 0\.\.79"),
    ),
    (
        "negative_background_order",
        three_good_slits,
        {"bkg_order": -2},
        Raises(ParameterError, r"bkg_order must be 'auto' or >= -1 \(-1 = no background\), got -2"),
    ),
    (
        "multislit_with_zero_slits",
        multislit_with_zero_slits,
        {},
        Raises(InputError, r"empty_s2d\.fits: the MultiSlitModel contains no slits"),
    ),
    (
        "every_slit_without_wcs",
        every_slit_without_wcs,
        {},
        Raises(InputError, r"corpus_s2d\.fits: no slit could be extracted .*neither a usable WCS"),
    ),
    (
        "not_a_datamodel_file",
        not_a_datamodel_file,
        {},
        Raises(InputError, r"cannot read '.*junk_s2d\.fits' as a JWST datamodel"),
    ),
    (
        "not_a_spectral_model_file",
        not_a_spectral_model_file,
        {},
        Raises(InputError, r"image\.fits: a JwstDataModel is not a spectral slit model"),
    ),
    (
        "truncated_file",
        truncated_file,
        {},
        Raises(InputError, r"'.*cut_s2d\.fits' is truncated or corrupted"),
    ),
]


def _kind(row) -> str:
    return row.id if hasattr(row, "id") else row[0]


TABLE = [row if hasattr(row, "id") else pytest.param(*row, id=row[0]) for row in CORPUS]


@pytest.mark.parametrize(("kind", "builder", "params", "expect"), TABLE)
def test_bad_input(kind, builder, params, expect, rng, tmp_path, caplog, monkeypatch):
    patches = builder in (internal_failure_in_one_slit, failure_writing_one_spectrum)
    args = (rng, tmp_path, monkeypatch) if patches else (rng, tmp_path)
    built = builder(*args)
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match):
            OptimalExtract1dStep.call(built.input, **params)
        return
    with caplog.at_level(logging.WARNING, logger="optimal_extract1d"):
        result = OptimalExtract1dStep.call(built.input, **params)
    expect.check(result, built, caplog)


def test_corpus_has_at_least_20_kinds():
    assert len(CORPUS) >= 20 and len({_kind(r) for r in CORPUS}) == len(CORPUS)


def test_the_input_is_never_modified(rng):
    built, slit = three_slits(rng)
    slit.data[:, 30:40] = np.nan
    before = {name: getattr(slit, name).copy() for name in _ARRAYS}
    OptimalExtract1dStep.call(built.input)
    for name, values in before.items():
        np.testing.assert_array_equal(getattr(slit, name), values)


def test_skipped_slit_record_survives_a_round_trip_to_disk(rng, tmp_path):
    built, slit = three_slits(rng)
    slit.meta.wcs = None
    result = OptimalExtract1dStep.call(built.input)
    path = Path(tmp_path) / "out_x1d.fits"
    result.save(path)
    with datamodels.open(path) as saved:
        (record,) = saved.meta.optimal_extraction.skipped_slits
        assert record.name == BAD and "WCS" in record.reason
        assert [s.name for s in saved.spec] == ["1", "3"]


def test_x1d_never_writes_inf_when_the_unit_conversion_overflows():
    n = 4
    flux = np.array([1.0, 1e305, np.nan, 2.0])
    var = np.array([1.0, 1e300, np.nan, 1.0])
    zeros = np.zeros(n)
    result = SpectrumResult(
        name="huge",
        flux=flux,
        var_poisson=var,
        var_rnoise=zeros,
        var_flat=zeros,
        background=zeros,
        bkg_var_poisson=zeros,
        bkg_var_rnoise=zeros,
        bkg_var_flat=zeros,
        npixels=np.full(n, 5.0),
        dq=np.array([0, 0, DQ_DO_NOT_USE, 0], np.uint32),
        wavelength=np.linspace(1.0, 2.0, n),
        ra=zeros,
        dec=zeros,
        region=(0, 0, n - 1, 4),
        units=FluxUnits(1e6, "Jy", 0.0, 1.0, "MJy/sr"),  # MJy -> Jy
        disp_axis=1,
    )
    t = x1d.build_spec(result)["spec_table"]
    for name in t.dtype.names:
        if t.dtype[name].kind == "f":
            assert not np.any(np.isinf(t[name])), name
    assert np.isnan(t["FLUX"][1]) and t["DQ"][1] & DQ_DO_NOT_USE
    assert t["FLUX"][0] == 1e6 and t["DQ"][0] == 0 and t["DQ"][3] == 0
