"""`OptimalExtract1dStep`: the stpipe shell around `extraction.extract`.

This is the only module (with `spec3`) that knows stpipe. It never asks
CRDS for anything: parameters come from the mode defaults shipped in
``reference_files/`` (lowest layer), then any parameter file, then the
user's values.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, ClassVar

from jwst.stpipe import Step
from stpipe import config_parser

from . import extraction, slits, x1d
from .defaults import load_mode_defaults
from .errors import InputError
from .params import ExtractParams

__all__ = ["OptimalExtract1dStep"]

log = logging.getLogger(__name__)


class OptimalExtract1dStep(Step):
    """Horne (1986) optimal extraction of resampled (s2d) slit spectra.

    Input: an s2d ``ImageModel``, ``SlitModel``, ``MultiSlitModel``, a
    ``ModelContainer`` of those, or a file name. Output: an x1d
    ``MultiSpecModel`` with one spectrum per slit (per source).
    """

    class_alias = "optimal_extract_1d"

    spec = """
    extraction_region = int_list(min=4, max=4, default=None)  # x1, y1, x2, y2 (inclusive, slit pixels); None = whole slit
    slice_width = integer(default=30, min=1)  # columns coadded into the kernel slice
    slice_column = integer(default=None, min=0)  # centre column of the slice; None = column with most signal
    kernel = option("gaussian", "moffat", default="gaussian")  # PSF template
    bkg_order = integer(default=2, min=-1)  # Polynomial1D background degree fitted with the PSF; -1 = none
    variance_source = option("auto", "var", "wht", "err", default="auto")  # auto: VAR_* > 1/(WHT s^4) > ERR^2
    drizzle_scale = float(default=1.0, min=0)  # s in Var = 1/(WHT s^4)
    """  # noqa: E501

    reference_file_types: ClassVar[list[str]] = []

    def process(self, input_data: Any):
        """Extract every slit of ``input_data``; return the x1d ``MultiSpecModel``."""
        model = slits.open_input(input_data)
        try:
            params = ExtractParams.from_object(self)
            run = extraction.extract(model, params)
            record = {
                "parameters": _plain(dataclasses.asdict(params)),
                "skipped_slits": [dataclasses.asdict(s) for s in run.skipped],
            }
            result = x1d.build_x1d(run.spectra, slits.meta_source(model), record)
        finally:
            if isinstance(input_data, (str, os.PathLike)):
                model.close()
        result.meta.cal_step.extract_1d = "COMPLETE"
        return result

    @staticmethod
    def get_stpipe_loggers():
        """Loggers stpipe configures: jwst's, plus this package's."""
        return (*Step.get_stpipe_loggers(), "optimal_extract1d")

    def default_suffix(self) -> str:
        """Outputs are x1d products: ``name_x1d.fits``."""
        return "x1d"

    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """Mode defaults from the package's ``reference_files/``; CRDS is never queried.

        Parameters
        ----------
        dataset : str, datamodel or dict
            The input, or its CRDS parameters (flattened metadata).
        disable : bool, optional
            Ignored: the shipped defaults need no server.
        crds_observatory : str, optional
            Ignored.

        Returns
        -------
        configobj.ConfigObj
            The mode's recommended parameter values.
        """
        if isinstance(dataset, dict):
            meta = dataset
        else:
            try:
                meta, _ = cls._get_crds_parameters(dataset)
            except (OSError, TypeError, ValueError):
                meta = {}
        return cls._get_config_from_parameters(meta, crds_observatory)

    @classmethod
    def _get_crds_parameters(cls, dataset):
        """Metadata for the mode defaults; an unreadable input raises `InputError`.

        stpipe reads the input's metadata before ``process()`` runs and only
        tolerates OSError, TypeError and ValueError; a truncated or foreign
        file can raise anything (e.g. KeyError for a missing ASDF extension).
        As an `InputError` (a ValueError) stpipe carries on without mode
        defaults, and ``process()`` then reports the problem with the file.
        """
        try:
            return super()._get_crds_parameters(dataset)
        except (OSError, TypeError, ValueError):
            raise
        except Exception as err:  # any other reader failure: "cannot read the metadata"
            msg = f"cannot read the metadata of {dataset!r}: {type(err).__name__}: {err}"
            raise InputError(msg) from err

    @classmethod
    def _get_config_from_parameters(cls, crds_parameters, crds_observatory):
        defaults = load_mode_defaults(
            crds_parameters.get("meta.exposure.type"),
            crds_parameters.get("meta.instrument.grating"),
        )
        log.info("Using %s mode defaults from %s", defaults.mode, defaults.path.name)
        config = config_parser.ConfigObj()
        config.update(defaults.parameters)
        return config


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters as ASDF-serializable plain values."""
    return {
        k: (
            list(v)
            if isinstance(v, tuple)
            else v
            if isinstance(v, (int, float, str, bool, type(None)))
            else repr(v)
        )
        for k, v in values.items()
    }
