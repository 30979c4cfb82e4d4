"""Diagnostic products: profile, scene model and residual images, and summary plots.

Boundary module: it takes the slits as the extraction read them
(``slits`` of `.pipeline.extraction.ExtractionRun`) and builds ``ImageModel``
products, so it may use stdatamodels but not stpipe.
The step passes its ``make_output_path`` so files follow the usual naming,
as jwst's ``extract_1d`` names them: ``<input>_<slit>_profile.fits`` for a
multi-slit input, ``<input>_profile.fits`` for a single slit; likewise
``scene_model``, ``residual`` and ``plot`` (PNG). Every file is written
atomically (`.io.atomic.atomic_path`): a killed run leaves no partial file.

All arrays are handled with the dispersion along axis 1 (as `.SlitData`)
and transposed back to the file's orientation only when an image is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from stdatamodels.jwst import datamodels

from ..results import SpectrumResult
from ..slitdata import SlitDiagnostics
from . import slits
from .atomic import atomic_path

__all__ = [
    "DiagnosticsRequest",
    "SlitDiagnostics",
    "slit_diagnostics",
    "diagnostic_image",
    "save",
    "IMAGE_KINDS",
]

log = logging.getLogger(__name__)

#: Image kinds and their file suffixes (jwst's extract_1d uses the same suffixes).
IMAGE_KINDS = ("profile", "scene_model", "residual")


@dataclass(frozen=True)
class DiagnosticsRequest:
    """Which diagnostic products to write (the step's ``save_*`` parameters)."""

    profile: bool = False
    scene_model: bool = False
    residual: bool = False
    plots: bool = False

    @classmethod
    def from_object(cls, obj: object) -> DiagnosticsRequest:
        """Read ``save_profile``, ``save_scene_model``, ``save_residual_image``, ``save_plots``."""
        return cls(
            profile=bool(obj.save_profile),
            scene_model=bool(obj.save_scene_model),
            residual=bool(obj.save_residual_image),
            plots=bool(obj.save_plots),
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Image kinds requested, in `IMAGE_KINDS` order."""
        flags = (self.profile, self.scene_model, self.residual)
        return tuple(k for k, on in zip(IMAGE_KINDS, flags, strict=True) if on)

    @property
    def any(self) -> bool:
        """True when anything is to be written."""
        return bool(self.kinds) or self.plots


def slit_diagnostics(model: Any, run: Any) -> list[SlitDiagnostics]:
    """Collect, per extracted slit, the data, profile and scene model.

    Parameters
    ----------
    model : datamodel
        The opened input (as given to `.pipeline.extraction.extract`), for the
        slit names.
    run : pipeline.extraction.ExtractionRun
        What the extraction produced, with the slits it read
        (``keep_slits=True``).

    Returns
    -------
    list of SlitDiagnostics
        One per slit that produced a spectrum, in input order.
    """
    labels = _labels(model, list(slits.iter_slits(model)))
    by_slit: dict[int, list[SpectrumResult]] = {}
    for index, spectrum in zip(run.slit_index, run.spectra, strict=True):
        by_slit.setdefault(index, []).append(spectrum)
    out = []
    for index, spectra in by_slit.items():
        data = run.slits[index]
        profile = np.zeros(data.shape)
        scene = np.full(data.shape, np.nan)
        for spectrum in spectra:
            if spectrum.profile is None or spectrum.scene is None:
                log.warning("Spectrum %s carries no profile or scene model", spectrum.name)
                continue
            window = _window(spectrum)
            profile[window] += np.nan_to_num(spectrum.profile)
            scene[window] = spectrum.scene  # every spectrum carries the whole slit's model
        out.append(SlitDiagnostics(index, labels[index], data, tuple(spectra), profile, scene))
    return out


def _window(spectrum: SpectrumResult) -> tuple[slice, slice]:
    """Index of the spectrum's region in the (n_cross, n_disp) slit arrays."""
    x1, y1, x2, y2 = spectrum.region
    cross, disp = ((y1, y2), (x1, x2)) if spectrum.disp_axis == 1 else ((x1, x2), (y1, y2))
    return slice(cross[0], cross[1] + 1), slice(disp[0], disp[1] + 1)


def _labels(model: Any, pairs: Sequence[tuple[Any, Any]]) -> list[str | None]:
    """File-name infix of every slit: None for a single slit, else its name (made unique)."""
    if isinstance(model, (datamodels.ImageModel, datamodels.SlitModel)):
        return [None]
    names = [slits.slit_name(slit, parent).lower().replace(" ", "_") for slit, parent in pairs]
    return [name if names.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(names)]


def diagnostic_image(
    pair: tuple[Any, Any], diag: SlitDiagnostics, kind: str
) -> datamodels.ImageModel:
    """One diagnostic image of a slit, in the slit's orientation as stored in the file.

    Parameters
    ----------
    pair : tuple of datamodel
        The slit and the model it came from (`.io.slits.iter_slits`), for
        its metadata and WCS.
    diag : SlitDiagnostics
        The slit.
    kind : str
        ``"profile"``, ``"scene_model"`` or ``"residual"``.

    Returns
    -------
    ~stdatamodels.jwst.datamodels.ImageModel
        Same shape as the slit's SCI array; primary metadata copied from the input.
    """
    arrays = {"profile": diag.profile, "scene_model": diag.scene, "residual": diag.residual}
    array = arrays[kind]
    if diag.slit.disp_axis == 2:
        array = array.T
    slit, parent = pair
    image = datamodels.ImageModel(np.ascontiguousarray(array, dtype=np.float32))
    image.update(parent, only="PRIMARY")
    image.meta.wcs = getattr(slit.meta, "wcs", None)
    image.meta.wcsinfo.dispersion_direction = diag.slit.disp_axis
    image.name = diag.slit.name
    if kind != "profile":
        image.meta.bunit_data = slit.meta.bunit_data or parent.meta.bunit_data
    return image


def save(
    model: Any,
    run: Any,
    request: DiagnosticsRequest,
    *,
    output_path: Callable[..., str],
) -> list[str]:
    """Write the requested diagnostic images and plots; return the paths written.

    Parameters
    ----------
    model : datamodel
        The opened input.
    run : pipeline.extraction.ExtractionRun
        What the extraction produced, with the slits it read.
    request : DiagnosticsRequest
        What to write.
    output_path : callable
        ``output_path(suffix=..., ext=...)`` -> file path (the step's
        ``make_output_path``).

    Returns
    -------
    list of str
    """
    if not request.any:
        return []
    written = []
    pairs = list(slits.iter_slits(model))
    for diag in slit_diagnostics(model, run):
        infix = f"{diag.label}_" if diag.label else ""
        for kind in request.kinds:
            path = output_path(suffix=f"{infix}{kind}")
            log.info("Saving %s of slit %s: %s", kind, diag.slit.name, path)
            with diagnostic_image(pairs[diag.index], diag, kind) as image, atomic_path(path) as tmp:
                image.save(tmp)
            written.append(path)
        if request.plots:
            from .plotting import plot_slit

            path = output_path(suffix=f"{infix}plot", ext="png")
            log.info("Saving plot of slit %s: %s", diag.slit.name, path)
            with atomic_path(path) as tmp:
                plot_slit(diag, tmp)
            written.append(path)
    return written
