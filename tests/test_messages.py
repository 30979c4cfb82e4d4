"""Messages a user can act on: bad values, missing input, effective parameters, one output flag."""

import logging

import numpy as np
import pytest
from stpipe.exceptions import ValidationError

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.cli.batch import check_parameters
from optimal_extract1d.cli.main import main
from optimal_extract1d.errors import InputError, ParameterError
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import simulate_slit

KERNELS = "one of 'auto', 'gaussian', 'moffat', 'empirical', 'psf'"
REGION = "extraction_region must be a list of exactly 4 integers (--extraction_region=1,2,3,4"


@pytest.fixture
def s2d(rng, tmp_path):
    """A one-slit NIRSpec MOS PRISM s2d file."""
    sim = simulate_slit(rng, n_disp=120, snr=30.0, fwhm=(2.0, 2.0), spectrum=np.ones(120))
    path = tmp_path / "msg_s2d.fits"
    make_multislit([sim], filename=path.name).save(path)
    return path


def test_bad_values_name_what_is_allowed_through_call_and_batch(s2d, capsys):
    with pytest.raises(ParameterError, match=f"kernel must be {KERNELS}") as caught:
        OptimalExtract1dStep.call(str(s2d), kernel="lorentz")
    assert isinstance(caught.value, ValidationError)  # still stpipe's kind for its callers
    assert 'the value "lorentz" is unacceptable' in str(caught.value)
    with pytest.raises(ParameterError, match=r"is too short: " + REGION.replace("(", r"\(")):
        OptimalExtract1dStep.call(str(s2d), extraction_region=[1, 2, 3])
    with pytest.raises(ParameterError, match=r"slice_width must be an integer >= 1"):
        OptimalExtract1dStep.call(str(s2d), slice_width=0)
    with pytest.raises(ParameterError, match=r"model_nods must be True or False"):
        OptimalExtract1dStep.call(str(s2d), model_nods="maybe")
    # the batch checks strings from its command line the same way, before any work
    with pytest.raises(ParameterError, match=f"kernel must be {KERNELS}"):
        check_parameters({"kernel": "lorentz"})
    with pytest.raises(ParameterError, match=REGION.replace("(", r"\(")):
        check_parameters({"extraction_region": "1,2,3"})
    out = s2d.parent / "never"
    assert main(["batch", str(s2d), "--output-dir", str(out), "--kernel=lorentz"]) == 2
    assert f"kernel must be {KERNELS}" in capsys.readouterr().err
    assert not out.exists()


def test_missing_input_fails_before_the_mode_and_parameter_lines(tmp_path, caplog):
    missing = tmp_path / "nothere_s2d.fits"
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError, match="does not exist"):
        OptimalExtract1dStep.call(str(missing), kernel="moffat")
    assert "mode defaults" not in caplog.text and "parameters are" not in caplog.text


def test_strun_says_what_is_allowed_and_misses_the_file_first(s2d, tmp_path, strun):
    proc = strun("optimal_extract_1d", str(s2d), "--kernel=lorentz")
    assert proc.returncode != 0
    assert f"kernel must be {KERNELS}" in proc.stderr
    proc = strun("optimal_extract_1d", "nothere_s2d.fits", "--bkg_order=1")
    assert proc.returncode != 0
    assert "InputError: input file 'nothere_s2d.fits' does not exist" in proc.stderr
    assert "mode defaults" not in proc.stderr and "parameters are" not in proc.stderr
