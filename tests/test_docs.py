"""The Sphinx site builds without warnings, and its generated tables cover the step."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").exists(), reason="source checkout only")


def _docs_extension():
    spec = importlib.util.spec_from_file_location("optimal_docs", DOCS / "_ext" / "optimal_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(DOCS)]
        + [str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "parameters.html").read_text()
    assert "bkg_order" in page and "save_residual_image" in page


def test_parameter_table_lists_every_spec_parameter():
    pytest.importorskip("sphinx")
    from jwst.stpipe import Step

    from optimal_extract1d import OptimalExtract1dStep

    rows = _docs_extension().spec_rows(OptimalExtract1dStep.spec)
    ours = set(OptimalExtract1dStep.load_spec_file()) - set(Step.load_spec_file())
    assert [r[0] for r in rows] == [n for n in OptimalExtract1dStep.load_spec_file() if n in ours]
    assert all(r[3] for r in rows), "every spec line needs a '# meaning' comment"
