"""`OptimalSpec3Pipeline`: jwst's ``calwebb_spec3`` with our step as ``extract_1d``.

Everything but ``extract_1d`` is jwst's own ``Spec3Pipeline``; parameters
reach our step as ``--steps.extract_1d.<param>=...``. Two things differ,
both so that the pipeline runs on slit data without a CRDS server, and both
logged when they apply:

* reference files are not prefetched for steps that never run for the
  input's EXP_TYPE (``cube_build`` outside IFU modes, ``photom`` outside
  NIRISS SOSS, ``spectral_leak`` outside MIRI MRS), exactly the steps
  ``Spec3Pipeline.process`` leaves out for that EXP_TYPE;
* when CRDS can be reached neither as a server nor through a cached
  configuration, the CRDS step-parameter files (``pars-*``) are not looked
  up (a WARNING says so) instead of CRDS ending the process; the jwst
  steps then use their built-in defaults, as with
  ``STPIPE_DISABLE_CRDS_STEPPARS=True``.

Our step's mode defaults (``reference_files/``) never come from CRDS, so
they apply in every case.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jwst.pipeline import Spec3Pipeline
from jwst.pipeline.calwebb_spec3 import IFU_EXPTYPES
from stpipe.step import get_disable_crds_steppars

from .step import OptimalExtract1dStep, spec_errors_explained

__all__ = ["OptimalSpec3Pipeline", "crds_unavailable_reason"]

log = logging.getLogger(__name__)

# Spec3 steps with reference files that Spec3Pipeline.process runs only for
# these EXP_TYPEs (jwst 3.0 calwebb_spec3.py); for any other EXP_TYPE their
# reference files are never used.
_RUNS_ONLY_FOR = {
    "cube_build": tuple(IFU_EXPTYPES),
    "photom": ("NIS_SOSS",),
    "spectral_leak": ("MIR_MRS",),
}


class OptimalSpec3Pipeline(Spec3Pipeline):
    """``calwebb_spec3`` with `.OptimalExtract1dStep` as its ``extract_1d`` step.

    Run it as jwst's pipeline: ``strun calwebb_spec3_optimal asn.json
    --steps.extract_1d.bkg_order=1``. See the module docstring for what it
    does when no CRDS server is reachable.
    """

    class_alias = "calwebb_spec3_optimal"

    step_defs = {**Spec3Pipeline.step_defs, "extract_1d": OptimalExtract1dStep}

    spec = (
        Spec3Pipeline.spec
        + """
    extract_from_cal = boolean(default=False)  # extract from the cal exposures (no resample_spec, no combine_1d): one spectrum per source from the native pixels
    """  # noqa: E501
    )

    def process(self, input_data: Any):
        """Run jwst's Spec3 process; with ``extract_from_cal`` the cal exposures go to extract_1d.

        ``resample_spec`` and ``combine_1d`` are skipped: the step combines
        the exposures itself (`.pipeline.calpath`), and gets the source's
        exposures after outlier detection.
        """
        if self.extract_from_cal:
            log.info(
                "extract_from_cal: resample_spec and combine_1d are skipped; extract_1d "
                "combines the cal exposures of every source"
            )
            self.resample_spec.skip = True
            self.combine_1d.skip = True
            self.extract_1d.input_level = "cal"
        return super().process(input_data)

    @staticmethod
    def get_stpipe_loggers():
        """Loggers stpipe configures: jwst's, plus this package's."""
        return (*Spec3Pipeline.get_stpipe_loggers(), "optimal_extract1d")

    @classmethod
    def from_config_section(cls, config, parent=None, name=None, config_file=None):
        """Build the pipeline; a bad ``steps.extract_1d`` value says what it accepts.

        As `.OptimalExtract1dStep.from_config_section`: stpipe's validation
        error becomes a `.SpecValueError` naming the allowed values or form.
        """
        with spec_errors_explained(OptimalExtract1dStep.explain_invalid):
            return super().from_config_section(
                config, parent=parent, name=name, config_file=config_file
            )

    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """CRDS step parameters when CRDS is usable; always our step's mode defaults.

        Parameters
        ----------
        dataset : str, datamodel or dict
            The input (association, model) or its CRDS parameters.
        disable : bool, optional
            Do not query CRDS; None reads ``STPIPE_DISABLE_CRDS_STEPPARS``.
        crds_observatory : str, optional
            Observatory name, needed when ``dataset`` is a dict.

        Returns
        -------
        configobj.ConfigObj
            Parameters per step, under ``steps``.
        """
        if disable is None:
            disable = get_disable_crds_steppars()
        if not disable:
            reason = crds_unavailable_reason(crds_observatory or "jwst")
            if not reason:
                return super().get_config_from_reference(dataset, False, crds_observatory)
            log.warning(
                "CRDS is not available (%s): step parameter files (pars-*) are not used; "
                "the jwst steps run with their built-in defaults. Set "
                "STPIPE_DISABLE_CRDS_STEPPARS=True to choose this explicitly.",
                reason,
            )
        config = cls._empty_config()
        config["steps"]["extract_1d"] = OptimalExtract1dStep.get_config_from_reference(
            dataset, crds_observatory=crds_observatory
        )
        return config

    def prefetch(self, *args: Any) -> None:
        """Prefetch reference files of the steps that run for this input's EXP_TYPE."""
        if args:
            self._no_prefetch_for_idle_steps(args[0])
        super().prefetch(*args)

    def _no_prefetch_for_idle_steps(self, input_data: Any) -> None:
        try:
            parameters, _ = self._get_crds_parameters(input_data)
        except (OSError, TypeError, ValueError):
            return  # stpipe logs that the input is not a model, and fetches nothing
        exp_type = parameters.get("meta.exposure.type")
        idle = []
        for name, exp_types in _RUNS_ONLY_FOR.items():
            step = getattr(self, name)
            if exp_type not in exp_types and not step.skip and step.prefetch_references:
                step.prefetch_references = False
                idle.append(name)
        if idle:
            log.info(
                "Not prefetching reference files of %s: they do not run for EXP_TYPE %s",
                ", ".join(idle),
                exp_type,
            )


def crds_unavailable_reason(observatory: str = "jwst") -> str:
    """Why CRDS cannot answer, or ``""`` when it can.

    CRDS works when its server answers or when a previous connection left
    the server configuration in the cache (``CRDS_PATH``); otherwise every
    CRDS call ends the process.

    Parameters
    ----------
    observatory : str
        CRDS observatory.

    Returns
    -------
    str
        Empty when CRDS is usable, else the reason.
    """
    from crds.client import api
    from crds.core import config as crds_config
    from crds.core.exceptions import CrdsError

    try:
        api.get_server_info()
    except CrdsError as err:
        cached = crds_config.locate_config("server_config", observatory)
        if os.path.exists(cached):
            return ""
        return (
            f"server {api.get_crds_server()} did not answer ({type(err).__name__}) and "
            f"the cache {crds_config.get_crds_path()} holds no server configuration"
        )
    return ""
