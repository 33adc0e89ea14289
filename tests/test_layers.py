"""The layer contract: imports point down the table below, and no modules import each
other in a circle. Every ``import`` counts, those under ``if TYPE_CHECKING:`` and inside
functions too, since a type-only arrow is still an arrow a reader has to follow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "pytest_rageval"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Highest first. A module may import from its own layer (when that makes no circle) and
# from any layer below it, never from one above. A name stands for the module and, for a
# package, everything in it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "entry points",
        ("cli", PACKAGE, "api", "generate", "calibrate", "scaffold", "toyjudge", "merge"),
    ),
    (
        "wiring",
        (
            "plugin",
            "options",
            "hookspecs",
            "collect",
            "fixtures",
            "wiring",
            "hints",
            "judgeline",
            "tolerated",
            "shards",
        ),
    ),
    ("the session, hooks that delegate", ("session",)),
    (
        "set work",
        ("ending", "sets", "submit", "callphase", "interrupts", "calibration", "recorded"),
    ),
    ("reports: build, write, render", ("reports", "parts")),
    ("the xdist protocol", ("xdist",)),
    ("what the run counted", ("totals",)),
    ("stash keys and settings", ("keys", "settings")),
    ("the runner", ("runner",)),
    (
        "judges and evaluators",
        ("judges", "judge_llms", "lean", "prompt_fit", "answers", "evaluators"),
    ),
    ("wording", ("wording",)),
    ("the gate", ("gate",)),
    ("verdicts and records", ("verdicts",)),
    ("results", ("results",)),
    ("questions", ("questions",)),
    (
        "foundations",
        (
            "sequential",
            "ppi",
            "correction",
            "stats",
            "baseline",
            "cache",
            "cache_file",
            "usage",
            "retry",
            "text",
            "thresholds",
            "redaction",
            "gcpause",
        ),
    ),
]

# Upward imports that are still there, each with how it goes away (none left: keep it
# that way, or say here why one has to stay)
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or PACKAGE


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, wherever in the file the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".") if package != PACKAGE else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            short = target.removeprefix(PACKAGE + ".") if target != PACKAGE else PACKAGE
            if short in modules:
                found.add(short)
                if isinstance(node, ast.ImportFrom):
                    break  # from x import submodule: the submodule, not also x
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports(path, modules) for path in paths}


def layer_of(module: str) -> int | None:
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return index
    return None


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a layer above the importer's."""
    found = []
    for module, targets in graph.items():
        for target in sorted(targets):
            mine, theirs = layer_of(module), layer_of(target)
            if mine is not None and theirs is not None and theirs < mine:
                found.append((module, target))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle of imports once, as the modules on it (Tarjan's strongly connected
    components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in ALLOWED} for m, targets in graph.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert unplaced == [], f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_no_module_imports_from_a_layer_above_it() -> None:
    found = [edge for edge in upward(import_graph()) if edge not in ALLOWED]
    assert found == [], "\n".join(
        f"{a} ({LAYERS[layer_of(a) or 0][0]}) imports {b} ({LAYERS[layer_of(b) or 0][0]})"
        for a, b in found
    )


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert cycles(without_allowed(import_graph())) == []


def test_the_allowed_list_holds_only_imports_that_are_still_there() -> None:
    graph = import_graph()
    gone = sorted(edge for edge in ALLOWED if edge[1] not in graph.get(edge[0], set()))
    assert gone == [], f"remove these from ALLOWED, they are fixed: {gone}"


def test_the_checks_catch_an_upward_import_a_circle_and_a_type_only_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / PACKAGE
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "text.py").write_text("from pytest_rageval import session\n")
    (fake / "session.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pytest_rageval.sets import RagSet\n"
    )
    (fake / "sets.py").write_text("def f():\n    import pytest_rageval.session\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    graph = import_graph()
    assert graph == {
        PACKAGE: set(),
        "text": {"session"},
        "session": {"sets"},
        "sets": {"session"},
    }
    assert upward(graph) == [("sets", "session"), ("text", "session")]
    assert cycles(graph) == [["session", "sets"]]
