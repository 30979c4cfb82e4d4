"""The layering of DEVELOPERS.md / STYLE.md, per subpackage: imports point downward only."""

import ast
from pathlib import Path

import pytest

import optimal_extract1d

PACKAGE = Path(optimal_extract1d.__file__).parent
VOCABULARY = {"errors", "params", "results", "slitdata"}
SHELL = {"step", "spec3", "_integration"}
# What each layer may import from the package (besides itself and the vocabulary).
ALLOWED = {
    "vocabulary": set(),
    "core": set(),
    "psf": {"core"},
    "scene": {"core", "psf"},
    "io": {"core", "psf", "scene"},
    "sim": {"psf"},
    "pipeline": {"core", "psf", "scene", "io"},
    "shell": {"pipeline", "io", "shell"},
    "cli": {"shell", "pipeline", "io", "sim", "core", "psf", "scene"},
}
PURE_LAYERS = {"vocabulary", "core", "psf", "scene"}
DATAMODEL_PACKAGES = ("stdatamodels", "jwst", "gwcs", "stpipe", "asdf", "matplotlib")


def _layer(module: str) -> str:
    """Layer of a package-relative dotted module name (``core.horne``, ``step``)."""
    head = module.split(".")[0]
    if head in VOCABULARY:
        return "vocabulary"
    if head in SHELL:
        return "shell"
    return head


def _imports(path: Path, module: str) -> tuple[set[str], set[str]]:
    """(package modules imported, as package-relative names; external modules imported)."""
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    local, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("optimal_extract1d."):
                    local.add(alias.name.removeprefix("optimal_extract1d."))
                else:
                    external.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = [*base, *(node.module.split(".") if node.module else [])]
                if node.module:
                    local.add(".".join(stem))
                else:
                    local.update(".".join([*stem, a.name]) for a in node.names)
            elif node.module.startswith("optimal_extract1d"):
                local.add(node.module.removeprefix("optimal_extract1d").lstrip("."))
            else:
                external.add(node.module)
    return {m for m in local if m}, external


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, module


MODULES = list(_modules())


def test_every_module_belongs_to_a_known_layer():
    for _, module in MODULES:
        assert _layer(module) in ALLOWED, f"{module} is in no layer of tests/test_architecture.py"


@pytest.mark.parametrize("path, module", MODULES, ids=[m for _, m in MODULES])
def test_imports_point_downward(path, module):
    layer = _layer(module)
    local, external = _imports(path, module)
    for imported in local:
        target = _layer(imported)
        assert target in {layer, "vocabulary"} | ALLOWED[layer], (
            f"{module} ({layer}) imports {imported} ({target})"
        )
    if layer in PURE_LAYERS:
        for imp in external:
            assert not imp.startswith(DATAMODEL_PACKAGES), f"pure {module} imports {imp}"


def test_only_the_shell_knows_stpipe():
    for path, module in MODULES:
        _, external = _imports(path, module)
        uses = any(i.startswith(("stpipe", "jwst.stpipe", "jwst.pipeline")) for i in external)
        assert not uses or _layer(module) == "shell", f"{module} imports stpipe"


def test_vocabulary_imports_only_the_vocabulary():
    for path, module in MODULES:
        if _layer(module) == "vocabulary":
            local, _ = _imports(path, module)
            assert all(_layer(m) == "vocabulary" for m in local), module


def test_every_subpackage_says_what_it_owns_and_may_import():
    for sub in sorted(p.parent for p in PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((sub / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{sub.name}/__init__.py lacks its contract"


def test_every_module_declares_all():
    for path, _ in MODULES:
        if path.name == "__init__.py":
            continue
        assert "__all__" in path.read_text(), f"{path.name} has no __all__"


def test_dq_bits_match_jwst():
    from stdatamodels.jwst.datamodels import dqflags

    from optimal_extract1d import results

    assert results.DQ_DO_NOT_USE == dqflags.pixel["DO_NOT_USE"]
    assert results.DQ_OUTLIER == dqflags.pixel["OUTLIER"]
    assert results.DQ_FLUX_ESTIMATED == dqflags.pixel["FLUX_ESTIMATED"]
    assert results.DQ_FALLBACK == dqflags.pixel["OTHER_BAD_PIXEL"]


def test_no_import_cycles():
    """Lazy imports included: a module never reaches itself through the package's imports."""
    graph = {}
    names = {module for _, module in MODULES}
    for path, module in MODULES:
        local, _ = _imports(path, module)
        # `from .io import slits` names a module; `from .results import X` names its module
        graph[module] = {m if m in names else m.rsplit(".", 1)[0] for m in local} & names
    for start in graph:
        stack, seen = list(graph[start]), set()
        while stack:
            node = stack.pop()
            assert node != start, f"import cycle through {start}"
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))


def test_the_pure_layers_catch_none_of_the_package_errors():
    """A fit that fails is an error for the pipeline to handle (fallbacks), or a returned value."""
    from optimal_extract1d import errors

    ours = {name for name in errors.__all__} | {"Exception", "BaseException"}
    for path, module in MODULES:
        if _layer(module) not in PURE_LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                names = {getattr(c, "id", getattr(c, "attr", None)) for c in caught if c}
                assert node.type is not None and not names & ours, (
                    f"{module} line {node.lineno} catches {names or 'everything'}"
                )
