"""Messages a user can act on: bad values, missing input, effective parameters, one output flag."""

import logging
from pathlib import Path

import numpy as np
import pytest
from stdatamodels.jwst import datamodels
from stpipe.exceptions import ValidationError

from optimal_extract1d import OptimalExtract1dStep, OptimalSpec3Pipeline
from optimal_extract1d.cli.batch import check_parameters
from optimal_extract1d.cli.effective import effective_parameters
from optimal_extract1d.cli.main import _parser, main, split_step_options
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


def test_bad_value_through_calwebb_spec3_optimal_says_what_is_allowed(s2d):
    expected = f"'steps/extract_1d/kernel'.*kernel must be {KERNELS}"
    with pytest.raises(ParameterError, match=expected):
        OptimalSpec3Pipeline.call(str(s2d), steps={"extract_1d": {"kernel": "lorentz"}})


def test_missing_input_fails_before_the_mode_and_parameter_lines(tmp_path, caplog):
    missing = tmp_path / "nothere_s2d.fits"
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError, match="does not exist"):
        OptimalExtract1dStep.call(str(missing), kernel="moffat")
    assert "mode defaults" not in caplog.text and "parameters are" not in caplog.text


def test_strun_says_what_is_allowed_and_misses_the_file_first(s2d, tmp_path, strun):
    proc = strun("optimal_extract_1d", str(s2d), "--kernel=lorentz")
    assert proc.returncode != 0
    assert f"kernel must be {KERNELS}" in proc.stderr
    # strun asks for the mode defaults first of all, and lets only OSError pass there:
    # the InputError (a ValueError) ends it before the mode line and the parameter list
    with pytest.raises(InputError, match="'nothere_s2d.fits' does not exist"):
        OptimalExtract1dStep.get_config_from_reference("nothere_s2d.fits")


def test_params_marks_each_value_user_mode_or_spec_default(s2d, tmp_path, capsys):
    grating = tmp_path / "g395m_s2d.fits"
    with datamodels.open(s2d) as model:
        model.meta.instrument.grating = "G395M"  # the nirspec_mos mode: slice_width 100
        model.save(grating)
    assert main(["params", str(grating), "--bkg_order", "1", "--extraction_region=0,1,50,20"]) == 0
    out = capsys.readouterr().out
    assert "mode nirspec_mos, nirspec_mos.asdf" in out and "GRATING G395M" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:-1]}
    assert rows["bkg_order"] == ["1", "user"]
    assert rows["extraction_region"] == ["0,1,50,20", "user"]
    assert rows["slice_width"] == ["100", "mode"]
    assert rows["kernel"] == ["auto", "mode"]
    assert rows["reject_sigma"] == ["5.0", "spec", "default"]
    assert rows["input_unit"] == ["auto", "spec", "default"]
    assert set(rows) == set(OptimalExtract1dStep.own_parameter_names())
    # the values are the ones a run uses
    effective = effective_parameters(grating, {"bkg_order": "1"})
    x1d = OptimalExtract1dStep.call(str(grating), bkg_order=1)
    used = x1d.meta.optimal_extraction.parameters.instance
    assert len(used) >= 19
    for p in effective.parameters:
        if p.name in used:
            assert used[p.name] == (list(p.value) if isinstance(p.value, tuple) else p.value)
    # errors: the file, a bad value
    assert main(["params", str(tmp_path / "nothere_s2d.fits")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["params", str(grating), "--kernel", "lorentz"]) == 2
    assert f"kernel must be {KERNELS}" in capsys.readouterr().err


def test_one_output_directory_flag_with_aliases(s2d, tmp_path, capsys):
    for flag in ("--output-dir", "--output_dir", "--outdir"):
        batch, options = split_step_options([str(s2d), flag, "x1d", "--bkg_order", "1"])
        assert batch == [str(s2d), flag, "x1d"] and options == {"bkg_order": "1"}
        for command in (["demo"], ["batch", str(s2d)]):
            args = _parser().parse_args([*command, flag, "elsewhere"])
            assert args.output_dir == Path("elsewhere")
    out = tmp_path / "by_strun_spelling"
    assert main(["batch", str(s2d), "--output_dir", str(out)]) == 0
    assert (out / "msg_x1d.fits").exists() and (out / "batch_summary.csv").exists()
    capsys.readouterr()
