"""The Sphinx site builds without warnings, and its generated tables cover the step.

The build is nitpicky: a docstring or page that names a function, class or
module that does not exist fails it.
"""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
SRC = DOCS.parent / "src" / "optimal_extract1d"

pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").exists(), reason="source checkout only")


def _docs_extension():
    spec = importlib.util.spec_from_file_location("optimal_docs", DOCS / "_ext" / "optimal_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sphinx(source: Path, out: Path, **env) -> subprocess.CompletedProcess:
    """``sphinx -W --keep-going`` of ``source`` with the configuration of docs/."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q"]
        + ["-c", str(DOCS), str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def _readme_docs_commands() -> list[str]:
    """The shell lines of the README's "Documentation" section that build the docs."""
    readme = (DOCS.parent / "README.md").read_text()
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```[a-z]*\n(.*?)```", section, flags=re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_readme_docs_command_installs_the_docs_extra():
    install, build = _readme_docs_commands()
    assert "pip install '.[docs]'" in install
    pyproject = (DOCS.parent / "pyproject.toml").read_text()
    extra = re.search(r"^docs = \[(.*?)\]", pyproject, flags=re.S | re.M).group(1)
    assert '"sphinx' in extra
    assert build.split()[0] == ".venv/bin/sphinx-build"


@pytest.mark.heavy
def test_sphinx_build_has_no_warnings(tmp_path):
    """The README's docs command, as written (output redirected), builds without warnings."""
    pytest.importorskip("sphinx")
    exe = Path(sys.executable).with_name("sphinx-build")  # .venv/bin/sphinx-build
    if not exe.exists():
        pytest.skip("no sphinx-build script next to this Python")
    _, build = _readme_docs_commands()
    args = build.split()[1:]
    assert args[-2:] == ["docs", "docs/_build/html"]
    proc = subprocess.run(
        [str(exe), *args[:-1], str(tmp_path)],
        cwd=DOCS.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "parameters.html").read_text()
    assert "bkg_order" in page and "save_residual_image" in page
    core = (tmp_path / "reference" / "core.html").read_text()
    assert 'id="optimal_extract1d.core.horne.extract_columns"' in core


def test_every_module_is_in_the_api_reference():
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.rst"))
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", pages, flags=re.M))
    modules = {
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in SRC.rglob("*.py")
    }
    assert modules - documented == set(), "add them to a page of docs/reference/"


_STALE_MODULE = '''
    """Docstrings that name the core: two references are stale."""

    __all__ = ["current", "stale"]


    def current(data, weights):
        """Sums as `.horne.extract_columns` makes them (relative name).

        Parameters
        ----------
        data : ndarray of bool, shape (n_cross, n_disp), optional
            Type vocabulary is not a reference; ``data`` is a literal.
        weights : mapping of str to ndarray, shape (n_comp - 1,)
            Also vocabulary.

        Attributes
        ----------
        flux, variance : ndarray, shape (n_disp,)
            One field per name.
        """


    def stale(data):
        """Sums as `optimal_extract1d.core.horne.no_such_function` made them.

        Or as `~.horne.no_longer_here` did.
        """
'''


def test_a_docstring_naming_a_missing_function_fails_the_build(tmp_path):
    pytest.importorskip("sphinx")
    (tmp_path / "stale_docstrings.py").write_text(textwrap.dedent(_STALE_MODULE))
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.rst").write_text(
        "Stale\n=====\n\n"
        ".. automodule:: optimal_extract1d.core.horne\n   :members:\n\n"
        ".. automodule:: stale_docstrings\n   :members:\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    proc = _sphinx(source, tmp_path / "html", PYTHONPATH=path)
    assert proc.returncode != 0
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, proc.stderr
    assert "optimal_extract1d.core.horne.no_such_function" in warnings[0]
    assert "horne.no_longer_here" in warnings[1]
    assert all("stale_docstrings.stale" in w for w in warnings)


def test_parameter_table_lists_every_spec_parameter():
    pytest.importorskip("sphinx")
    from jwst.stpipe import Step

    from optimal_extract1d import OptimalExtract1dStep

    rows = _docs_extension().spec_rows(OptimalExtract1dStep.spec)
    ours = set(OptimalExtract1dStep.load_spec_file()) - set(Step.load_spec_file())
    assert [r[0] for r in rows] == [n for n in OptimalExtract1dStep.load_spec_file() if n in ours]
    assert all(r[3] for r in rows), "every spec line needs a '# meaning' comment"
