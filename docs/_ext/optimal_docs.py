"""Sphinx directives that build tables from the code, so the docs cannot drift.

``.. step-parameters::`` renders ``OptimalExtract1dStep.spec`` (name, type,
default, the spec comment); ``.. mode-defaults::`` renders the parameter
files shipped in ``reference_files/`` (one column per mode).

Two docstring fixes keep the nitpicky build about real references:
``a, b : type`` entries of an Attributes section become one field per name
(napoleon writes ``:ivar a, b:``, which Sphinx reads as type ``a`` of ``b``),
and the words of a numpy type description (``ndarray, shape (n_cross,
n_disp)``), listed in ``optimal_type_words``, stay text instead of becoming
references that would be reported missing or linked to a same-named attribute.
"""

from __future__ import annotations

import builtins
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

_SPEC_LINE = re.compile(r"^\s*(\w+)\s*=\s*(\w+)\((.*)\)\s*$")
_DEFAULT = re.compile(r"default\s*=\s*(\"[^\"]*\"|'[^']*'|[^,]+)")
_MULTI_FIELD = re.compile(r"^:(ivar|vartype) (\w+(?:, \w+)+):(.*)$")


def spec_rows(spec: str) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for every line of a step spec."""
    rows = []
    for line in spec.splitlines():
        value, _, comment = line.partition("#")  # spec values hold no '#'
        match = _SPEC_LINE.match(value)
        if not match:
            continue
        name, kind, args = match.groups()
        default = _DEFAULT.search(args)
        choices = re.findall(r"\"([^\"]*)\"", args.split("default")[0]) if kind == "option" else []
        type_text = f"option: {', '.join(choices)}" if choices else kind
        bounds = [b for b in re.findall(r"\b(min|max)\s*=\s*([^,)]+)", args) if kind != "int_list"]
        if bounds:
            type_text += " (" + ", ".join(f"{k} {v.strip()}" for k, v in bounds) + ")"
        rows.append(
            (
                name,
                type_text,
                default.group(1).strip().strip("\"'") if default else "",
                comment.strip(),
            )
        )
    return rows


def _escape(text: str) -> str:
    """Text shown literally in reST (no emphasis, references or substitutions)."""
    return re.sub(r"([\\*_`|])", r"\\\1", text)


def _list_table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return lines


class _TableDirective(SphinxDirective):
    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(self.lines(), source="<generated>"), 0, container)
        return container.children


class StepParameters(_TableDirective):
    """The step's parameters, read from its spec."""

    def lines(self) -> list[str]:
        """The reST list-table of the spec."""
        from optimal_extract1d.step import OptimalExtract1dStep

        rows = [
            [f"``{n}``", _escape(t), f"``{d}``" if d else "", _escape(c)]
            for n, t, d, c in spec_rows(OptimalExtract1dStep.spec)
        ]
        return _list_table(["parameter", "type", "default", "meaning"], rows, "22 22 12 44")


class ModeDefaults(_TableDirective):
    """The shipped mode files, one column per mode."""

    def lines(self) -> list[str]:
        """The reST list-table of the mode files."""
        from optimal_extract1d.io.defaults import MODE_STEMS, REFERENCE_DIR, read_mode_file

        modes = [read_mode_file(REFERENCE_DIR / f"{stem}.asdf") for stem in MODE_STEMS]
        names = sorted({name for m in modes for name in m.parameters})
        rows = [
            [f"``{name}``", *(f"``{m.parameters.get(name, '')}``" for m in modes)] for name in names
        ]
        widths = " ".join(["20"] + ["13"] * len(modes))
        return _list_table(["parameter", *(f"``{m.mode}``" for m in modes)], rows, widths)


def split_attribute_fields(app, what, name, obj, options, lines):
    """One ``:ivar:``/``:vartype:`` field per name where napoleon wrote ``:ivar a, b:``."""
    out, i = [], 0
    while i < len(lines):
        match = _MULTI_FIELD.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].startswith(" "):
            end += 1
        kind, names, rest = match.groups()
        for field_name in names.split(", "):
            out.extend([f":{kind} {field_name}:{rest}", *lines[i + 1 : end]])
        i = end
    lines[:] = out


def is_type_description(target: str, words) -> bool:
    """Whether a type-field target is prose (``n_comp - 1``, ``str to ndarray``), not a name."""
    parts = target.replace("-", " - ").replace("+", " + ").split()
    return bool(parts) and all(
        p in words or p in "+-" or p.isdigit() or isinstance(getattr(builtins, p, None), type)
        for p in parts
    )


def unlink_type_words(app, doctree):
    """Type-field references made only of type vocabulary become plain text."""
    words = set(app.config.optimal_type_words)
    for node in list(doctree.findall(addnodes.pending_xref)):
        if (
            node.get("refdomain") == "py"
            and node.get("reftype") == "class"
            and is_type_description(node.get("reftarget", ""), words)
        ):
            node.replace_self(node.children)


def setup(app):
    """Register the directives and the docstring fixes."""
    app.add_directive("step-parameters", StepParameters)
    app.add_directive("mode-defaults", ModeDefaults)
    app.add_config_value("optimal_type_words", (), "env")
    app.connect("autodoc-process-docstring", split_attribute_fields, priority=600)
    app.connect("doctree-read", unlink_type_words)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
