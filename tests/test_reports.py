"""What a run leaves behind: the terminal table, the JSON report, JUnit properties."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest

from pytest_rageval import ContainsEvaluator, ContextRecallEvaluator, TokenF1Evaluator

SET = """
thresholds: {faithfulness: 0.5}
questions:
  - {id: paris, query: "Where is Paris?"}
  - {id: atlantis, query: "Where is UNSUPPORTED Atlantis?"}
  - {id: broken, query: "Where is BOOM?"}
"""


def test_terminal_table(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=SET)
    result = project.runpytest("--rag-retries=0")
    result.stdout.fnmatch_lines(
        [
            "*= rag evaluation =*",
            "set           metric        questions    passed    failed    invalid    errors    pass rate    threshold    verdict",
            "------------  ------------  -----------  --------  --------  ---------  --------  -----------  -----------  ---------",
            "rag_set.yaml  faithfulness  3            1         1         0          1         0.33         0.50         ERROR",
            "rag_set.yaml  relevancy     3            2         0         0          1         0.67         1.00         ERROR",
            "errors by cause:",
            "  1 x query engine raised RuntimeError: the app broke on 'Where is BOOM?'",
        ]
    )


def test_json_report_schema(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=SET.replace("0.5", "0.3"))
    project.makeconftest(
        project.path.joinpath("conftest.py").read_text()
        + """
def pytest_rageval_update_report(config, report):
    report["commit"] = "abc123"
"""
    )
    result = project.runpytest("--rag-retries=0", "--rag-report=out/report.json")
    result.stdout.fnmatch_lines(["rag report written to */out/report.json"])
    report = json.loads((project.path / "out" / "report.json").read_text())
    assert report["version"] == 1 and report["commit"] == "abc123"
    [rag_set] = report["sets"]
    assert rag_set["id"] == "rag_set.yaml"
    assert rag_set["metrics"]["faithfulness"] == {
        "n": 3,
        "passed": 1,
        "failed": 1,
        "invalid": 0,
        "errors": 1,
        "pass_rate": pytest.approx(1 / 3),
        "threshold": 0.3,
        "max_invalid": None,
        # the rate meets its threshold, but an errored question fails the run
        "ok": False,
        "verdict": "ERROR",
    }
    assert report["complete"] is True and report["stopped"] is None
    assert report["errors"] == {
        "query engine raised RuntimeError: the app broke on 'Where is BOOM?'": 1
    }
    questions = {q["id"]: q for q in rag_set["questions"]}
    assert [q["outcome"] for q in questions.values()] == ["passed", "tolerated", "error"]
    assert questions["paris"]["response"] == "Answer: Where is Paris?"
    assert questions["paris"]["contexts"] == ["Context: Where is Paris?"]
    assert questions["atlantis"]["metrics"]["faithfulness"] == {
        "result": "failing",
        "passing": False,
        "score": 0.0,
        "feedback": "NO",
        "invalid": False,
        "reason": None,
        "error": None,
    }
    assert questions["broken"]["metrics"]["relevancy"]["result"] == "error"
    assert questions["broken"]["evaluated"] is True
    assert questions["broken"]["metrics"]["relevancy"]["error"].startswith("RuntimeError: ")


def test_junit_properties(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=SET.replace("0.5", "0.3"))
    project.runpytest("--rag-retries=0", "--junitxml=junit.xml")
    tree = ET.parse(project.path / "junit.xml")
    cases = {case.get("name"): case for case in tree.iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["atlantis"].iter("property")}
    assert properties == {
        "rag.faithfulness.result": "failing",
        "rag.faithfulness.passing": "False",
        "rag.faithfulness.score": "0.0",
        "rag.relevancy.result": "passing",
        "rag.relevancy.passing": "True",
        "rag.relevancy.score": "1.0",
        "rag.outcome": "tolerated",
    }


def evaluate(evaluator: object, **kwargs: object) -> object:
    return asyncio.run(evaluator.aevaluate(**kwargs))  # type: ignore[attr-defined]


def test_offline_evaluators() -> None:
    contains = evaluate(ContainsEvaluator(), response="It is  PARIS, France.", reference="paris")
    assert (contains.passing, contains.score) == (True, 1.0)  # type: ignore[attr-defined]
    keywords = evaluate(ContainsEvaluator(keywords=["paris", "rome"]), response="Paris")
    assert (keywords.passing, keywords.score) == (False, 0.5)  # type: ignore[attr-defined]
    assert keywords.feedback == "the response lacks 'rome'"  # type: ignore[attr-defined]

    f1 = evaluate(TokenF1Evaluator(0.5), response="The capital is Paris", reference="Paris")
    # SQuAD normalisation drops "the": tokens [capital, is, paris] vs [paris]
    assert f1.score == pytest.approx(0.5) and f1.passing  # type: ignore[attr-defined]

    recall = evaluate(
        ContextRecallEvaluator(),
        contexts=["Intro. Paris is the capital of France. More."],
        reference_contexts=["Paris is the capital of France", "Rome is in Italy"],
    )
    assert recall.score == 0.5 and not recall.passing  # type: ignore[attr-defined]
    assert recall.feedback == "1 of 2 reference contexts retrieved; missing: 'Rome is in Italy'"  # type: ignore[attr-defined]
