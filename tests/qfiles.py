"""Question files for throwaway projects: one way to write a numbered set of questions."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

Text = str | Callable[[int], str]

PREFIX_APP = """
import pytest
from llama_index.core.base.response.schema import Response
from pytest_rageval.evaluators import ContainsEvaluator

class App:
    def query(self, q):
        return Response(response="yes" if q.startswith("pass") else "no", source_nodes=[])

@pytest.fixture(scope="session")
def rag_query_engine():
    return App()

@pytest.fixture(scope="session")
def rag_evaluators():
    return {"contains": ContainsEvaluator()}
"""
"""A conftest whose app answers "yes" to a query starting with "pass" and "no" to any other,
judged by ``contains`` (the local metric): a question passes when its reference is in the
answer."""


def _text(value: Text, i: int) -> str:
    return value(i) if callable(value) else value.format(i=i)


def question_list(n: int, query: Text = "Where is town {i}?", id: Text = "q{i}") -> str:
    """``n`` entries of a YAML ``questions:`` list, one flow mapping a line, each line
    ending in a newline. ``{i}`` in ``query`` and ``id`` is the question's number (from 0);
    either may also be a function of it."""
    return "".join(f'  - {{id: {_text(id, i)}, query: "{_text(query, i)}"}}\n' for i in range(n))


def question_set(
    n: int,
    *,
    evaluators: str = "faithfulness",
    head: str = "",
    query: Text = "Where is town {i}?",
    id: Text = "q{i}",
) -> str:
    """A whole question file: ``evaluators: [<evaluators>]``, the top-level lines in
    ``head`` (each ending in a newline), and :func:`question_list`."""
    return f"evaluators: [{evaluators}]\n{head}questions:\n{question_list(n, query, id)}"


def write_set(project: pytest.Pytester, n: int, name: str = "rag_set", **options: object) -> Path:
    """Write :func:`question_set` (``options`` are its keywords) as ``<name>.yaml``."""
    return project.makefile(".yaml", **{name: question_set(n, **options)})  # type: ignore[arg-type]


def session_fixtures(imports: str = "", **fixtures: str) -> str:
    """A throwaway conftest.py: ``import pytest``, the ``imports`` lines, then for each
    keyword a session-scoped fixture of that name returning the expression given, e.g.
    ``session_fixtures("from fakes import ScriptedApp", rag_query_engine="ScriptedApp()")``."""
    lines = ["import pytest", *textwrap.dedent(imports).strip().splitlines()]
    for name, expression in fixtures.items():
        lines += ["", "", '@pytest.fixture(scope="session")', f"def {name}():"]
        lines.append(f"    return {expression}")
    return "\n".join(lines) + "\n"
