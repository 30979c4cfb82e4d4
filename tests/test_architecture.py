"""The layering of DEVELOPERS.md / STYLE.md: imports point downward only."""

import ast
from pathlib import Path

import optimal_extract1d

PACKAGE = Path(optimal_extract1d.__file__).parent
PURE = {
    "errors",
    "params",
    "kernel",
    "evaluate",
    "profile",
    "coadd",
    "horne",
    "iteration",
    "results",
    "simulate",
    "trace",
    "variance",
    "spatial",
    "empirical",
    "profilefit",
    "lm",
    "assemble",
    "nods",
    "psf",
    "sources",
    "errorscale",
    "outliers",
    "components",
    "pruning",
}
BOUNDARY = {
    "slits",
    "inputvariance",
    "x1d",
    "specwcs",
    "simulate_models",
    "defaults",
    "diagnostics",
    "psfref",
}
STPIPE_MODULES = {"step", "spec3"}
DATAMODEL_PACKAGES = ("stdatamodels", "jwst", "gwcs", "stpipe", "asdf", "matplotlib")


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = node.module or ""
                names.update(f".{base}" if base else f".{a.name}" for a in node.names)
            else:
                names.add(node.module)
    return names


def _modules():
    return {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_pure_modules_import_no_datamodels_and_nothing_above_them():
    for name, imports in _modules().items():
        if name not in PURE:
            continue
        for imp in imports:
            assert not imp.startswith(DATAMODEL_PACKAGES), f"{name} imports {imp}"
            if imp.startswith("."):
                assert imp[1:].split(".")[0] in PURE, f"pure module {name} imports {imp}"


def test_only_the_step_modules_know_stpipe():
    for name, imports in _modules().items():
        uses = any(i.startswith(("stpipe", "jwst.stpipe", "jwst.pipeline")) for i in imports)
        assert not uses or name in STPIPE_MODULES, f"{name} imports stpipe"


def test_boundary_modules_do_not_import_the_coordinator_or_step():
    for name, imports in _modules().items():
        if name in BOUNDARY | PURE:
            local = {i[1:].split(".")[0] for i in imports if i.startswith(".")}
            assert not local & {"extraction", "step", "spec3", "cli", "demo"}, name


def test_every_module_declares_all():
    for path in PACKAGE.glob("*.py"):
        if path.stem in {"__init__"}:
            continue
        assert "__all__" in path.read_text(), f"{path.name} has no __all__"


def test_dq_bits_match_jwst():
    from stdatamodels.jwst.datamodels import dqflags

    from optimal_extract1d import results

    assert results.DQ_DO_NOT_USE == dqflags.pixel["DO_NOT_USE"]
    assert results.DQ_OUTLIER == dqflags.pixel["OUTLIER"]
    assert results.DQ_FLUX_ESTIMATED == dqflags.pixel["FLUX_ESTIMATED"]
    assert results.DQ_FALLBACK == dqflags.pixel["OTHER_BAD_PIXEL"]
