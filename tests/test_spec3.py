"""`OptimalSpec3Pipeline`: jwst's calwebb_spec3 with our extract_1d."""

import numpy as np
import pytest
from ceers import CEERS_LINES_UM, requires_ceers, spec3_association
from jwst.extract_1d import Extract1dStep
from jwst.pipeline import Spec3Pipeline
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep, OptimalSpec3Pipeline
from optimal_extract1d._integration import get_steps


def test_only_extract_1d_is_replaced_and_jwst_is_untouched():
    ours, theirs = OptimalSpec3Pipeline.step_defs, Spec3Pipeline.step_defs
    assert ours["extract_1d"] is OptimalExtract1dStep
    assert theirs["extract_1d"] is Extract1dStep
    assert {k: v for k, v in ours.items() if k != "extract_1d"} == {
        k: v for k, v in theirs.items() if k != "extract_1d"
    }
    assert ("optimal_extract1d.spec3.OptimalSpec3Pipeline", "calwebb_spec3_optimal", True) in (
        get_steps()
    )


def test_mode_defaults_reach_extract_1d_when_crds_parameters_are_disabled():
    parameters = {"meta.exposure.type": "NRS_MSASPEC", "meta.instrument.grating": "G395M"}
    config = OptimalSpec3Pipeline.get_config_from_reference(
        parameters, disable=True, crds_observatory="jwst"
    )
    assert config["steps"]["extract_1d"]["slice_width"] == 100  # nirspec_mos, not 30
    assert set(config["steps"]) == {"extract_1d"}


@pytest.mark.heavy
@requires_ceers
def test_strun_spec3_offline_on_real_ceers_association(tmp_path, strun):
    asn = spec3_association(tmp_path)
    proc = strun(
        "calwebb_spec3_optimal", asn.name, "--steps.extract_1d.slice_width=40", timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CRDS is not available" in proc.stderr
    assert "Not prefetching reference files of cube_build, photom, spectral_leak" in proc.stderr
    x1d_path = tmp_path / "jw01345-o062_s000000933_nirspec_clear-prism_x1d.fits"
    assert (tmp_path / "jw01345-o062_s000000933_nirspec_clear-prism_s2d.fits").exists()
    with datamodels.open(x1d_path) as x1d:
        assert x1d.meta.cal_step.extract_1d == "COMPLETE"
        assert x1d.meta.optimal_extraction.mode == "nirspec_mos_prism"
        assert x1d.meta.optimal_extraction.parameters.slice_width == 40  # the user's value
        (spec,) = x1d.spec
        assert spec.source_id == 933
        assert spec.meta.optimal_extraction.status == "fit"
        t = spec.spec_table
        for line in CEERS_LINES_UM:
            near = np.abs(t["WAVELENGTH"] - line) < 0.02
            peak = np.nanargmax(t["FLUX"][near])
            assert t["FLUX"][near][peak] > 10 * t["FLUX_ERROR"][near][peak] > 0, line
