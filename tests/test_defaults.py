"""Mode defaults in reference_files/: selection, layering under user values, records."""

import importlib.util
from pathlib import Path

import asdf
import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from optimal_extract1d import OptimalExtract1dStep
from optimal_extract1d.errors import ReferenceFileError
from optimal_extract1d.io.defaults import (
    MODE_STEMS,
    REFERENCE_DIR,
    load_mode_defaults,
    mode_file_name,
    read_mode_file,
)
from optimal_extract1d.sim.models import make_multislit
from optimal_extract1d.sim.simulate import simulate_slit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_mode_defaults.py"


@pytest.fixture
def mos_prism_file(rng, tmp_path):
    """A NIRSpec MOS PRISM s2d (mode nirspec_mos_prism: the spec defaults)."""
    sims = [simulate_slit(rng, n_disp=150, snr=40.0, fwhm=(2.0, 2.0)) for _ in range(2)]
    path = tmp_path / "mos_s2d.fits"
    make_multislit(sims, filename=path.name).save(path)
    return path


@pytest.fixture
def mos_grating_file(rng, tmp_path):
    """A NIRSpec MOS G395M s2d (mode nirspec_mos: slice_width 100, spec default 30)."""
    sims = [simulate_slit(rng, n_disp=150, snr=40.0, fwhm=(2.0, 2.0)) for _ in range(2)]
    path = tmp_path / "mos_s2d.fits"
    model = make_multislit(sims, filename=path.name)
    model.meta.instrument.grating = "G395M"
    model.meta.instrument.filter = "F290LP"
    model.save(path)
    return path


def test_every_mode_file_ships_with_the_package_and_loads():
    # Under .ci/run the package is installed from a wheel, so this checks the wheel's contents.
    for stem in MODE_STEMS:
        defaults = read_mode_file(REFERENCE_DIR / f"{stem}.asdf")
        assert defaults.mode == stem and defaults.parameters


@pytest.mark.skipif(not SCRIPT.exists(), reason="source checkout only")
def test_shipped_files_are_what_the_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_mode_defaults", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.asdf")) == sorted(
        f"{s}.asdf" for s in MODE_STEMS
    )
    for new in tmp_path.glob("*.asdf"):
        with asdf.open(new) as fresh, asdf.open(REFERENCE_DIR / new.name) as shipped:
            for key in ("class", "name", "parameters", "meta"):
                assert fresh[key] == shipped[key], (new.name, key)


def test_generic_mode_equals_the_step_spec_defaults():
    step = OptimalExtract1dStep()
    for name, value in load_mode_defaults(None).parameters.items():
        assert getattr(step, name) == value, name


@pytest.mark.parametrize(
    ("exp_type", "grating", "stem"),
    [
        ("NRS_MSASPEC", "PRISM", "nirspec_mos_prism"),
        ("NRS_MSASPEC", "G395M", "nirspec_mos"),
        ("NRS_FIXEDSLIT", "PRISM", "nirspec_fs_prism"),
        ("NRS_FIXEDSLIT", "G140H", "nirspec_fs"),
        ("MIR_LRS-FIXEDSLIT", None, "miri_lrs"),
        ("MIR_LRS-SLITLESS", None, "generic"),
        ("NRS_BRIGHTOBJ", "PRISM", "generic"),
        (None, None, "generic"),
    ],
)
def test_mode_is_chosen_by_exp_type_and_grating(exp_type, grating, stem):
    assert mode_file_name(exp_type, grating) == stem


def test_bad_mode_files_raise_naming_file_and_key(tmp_path):
    good = dict(asdf.open(REFERENCE_DIR / "generic.asdf").tree)
    cases = {
        "other_class": ({**good, "class": "jwst.extract_1d.Extract1dStep"}, "key 'class'"),
        "unknown": (
            {**good, "parameters": {"bkg_ordr": 1}},
            r"unknown parameter\(s\) \['bkg_ordr'\]",
        ),
        "bad_value": ({**good, "parameters": {"kernel": "lorentz"}}, "invalid value.*lorentz"),
    }
    for name, (tree, match) in cases.items():
        path = tmp_path / f"{name}.asdf"
        asdf.AsdfFile(
            {k: v for k, v in tree.items() if not k.startswith(("asdf", "history"))}
        ).write_to(path)
        with pytest.raises(ReferenceFileError, match=f"{name}.asdf.*{match}"):
            read_mode_file(path)
    (tmp_path / "broken.asdf").write_text("not asdf")
    with pytest.raises(ReferenceFileError, match="cannot read mode defaults .*broken.asdf"):
        read_mode_file(tmp_path / "broken.asdf")


def test_mode_default_applies_and_is_logged_and_recorded(mos_grating_file, caplog):
    caplog.set_level("INFO", logger="optimal_extract1d")
    x1d = OptimalExtract1dStep.call(str(mos_grating_file))
    record = x1d.meta.optimal_extraction
    assert record.mode == "nirspec_mos" and record.mode_file == "nirspec_mos.asdf"
    assert record.parameters.slice_width == 100 == record.mode_parameters.slice_width
    assert record.differs_from_mode == []
    assert x1d.spec[0].meta.optimal_extraction.slice_width == 100
    assert "Using nirspec_mos mode defaults" in caplog.text


def test_mode_defaults_apply_to_a_model_input_too(mos_grating_file):
    with datamodels.open(mos_grating_file) as model:
        x1d = OptimalExtract1dStep.call(model)
    assert x1d.meta.optimal_extraction.parameters.slice_width == 100


def test_user_value_wins_over_mode_default_in_call(mos_grating_file, caplog):
    caplog.set_level("INFO", logger="optimal_extract1d")
    x1d = OptimalExtract1dStep.call(str(mos_grating_file), slice_width=40)
    record = x1d.meta.optimal_extraction
    assert record.parameters.slice_width == 40 and record.mode_parameters.slice_width == 100
    assert record.differs_from_mode == ["slice_width"]
    assert "slice_width=40 (mode 100)" in caplog.text


def test_config_file_wins_over_mode_default(mos_prism_file, tmp_path):
    cfg = tmp_path / "mine.asdf"
    asdf.AsdfFile(
        {
            "class": "optimal_extract1d.step.OptimalExtract1dStep",
            "name": "optimal_extract_1d",
            "parameters": {"bkg_order": 0},
        }
    ).write_to(cfg)
    x1d = OptimalExtract1dStep.call(str(mos_prism_file), config_file=str(cfg))
    assert x1d.meta.optimal_extraction.parameters.bkg_order == 0
    x1d = OptimalExtract1dStep.call(str(mos_prism_file), config_file=str(cfg), bkg_order=1)
    assert x1d.meta.optimal_extraction.parameters.bkg_order == 1  # keyword beats file


def test_strun_with_a_shipped_mode_file_and_a_user_override(mos_prism_file, tmp_path, strun):
    # The grating file on a PRISM input: the file's values beat the PRISM mode defaults
    # (slice_width 100, not 30), and a command-line value beats both (bkg_order 1, where
    # the file and the mode say auto). One run: strun's start-up is most of the cost.
    file = str(REFERENCE_DIR / "nirspec_mos.asdf")
    proc = strun(file, mos_prism_file.name, "--bkg_order=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with datamodels.open(tmp_path / "mos_x1d.fits") as x1d:
        record = x1d.meta.optimal_extraction
        assert record.mode == "nirspec_mos_prism"
        assert record.parameters.slice_width == 100 and record.mode_parameters.slice_width == 30
        assert record.parameters.bkg_order == 1 and record.mode_parameters.bkg_order == "auto"
        assert record.differs_from_mode == ["bkg_order", "slice_width"]
        assert np.isfinite(x1d.spec[0].spec_table["FLUX"]).all()
