"""What a run leaves behind: the terminal table, the JSON report, JUnit properties."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

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
            "set           metric        questions    passed    failed    invalid    errors    pass rate    95% CI     threshold    verdict",
            "------------  ------------  -----------  --------  --------  ---------  --------  -----------  ---------  -----------  ---------",
            "rag_set.yaml  faithfulness  3            1         1         0          1         0.33         0.06-0.79  0.50         ERROR",
            "rag_set.yaml  relevancy     3            2         0         0          1         0.67         0.21-0.94  1.00         ERROR",
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
        # the 95% Wilson interval of 1/3 (Newcombe's method 3)
        "interval": [pytest.approx(0.0615, abs=1e-4), pytest.approx(0.7923, abs=1e-4)],
        "confidence": None,
        "max_drop": None,
        # 3 questions at a threshold of 0.3: even 0 passes is not rare enough to tell
        "detectable_drop": None,
        # the rate meets its threshold, but an errored question fails the run
        "ok": False,
        "verdict": "ERROR",
    }
    assert report["baseline"] is None and "baseline" not in rag_set
    assert report["complete"] is True and report["stopped"] is None
    assert report["errors"] == {
        "query engine raised RuntimeError: the app broke on 'Where is BOOM?'": 1
    }
    # the terminal's "errors by cause:" lines are among the report's notices
    assert report["notices"] == [
        "errors by cause: 1 x query engine raised RuntimeError: the app broke on 'Where is BOOM?'"
    ]
    questions = {q["id"]: q for q in rag_set["questions"]}
    assert [q["outcome"] for q in questions.values()] == ["passed", "tolerated", "error"]
    assert questions["paris"]["response"] == "Answer: Where is Paris?"
    assert questions["paris"]["contexts"] == ["Context: Where is Paris?"]
    # one retrieved node, with neither a ref_doc_id nor a file_name to name it by
    assert questions["paris"]["sources"] == [[]]
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


def test_a_report_that_cannot_be_written_loses_nothing_else(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=SET.replace("0.5", "0.3"))
    # the path was fine at startup, and is a directory by the time the run ends
    project.makeconftest(
        project.path.joinpath("conftest.py").read_text()
        + """
def pytest_rageval_update_report(config, report):
    import os
    os.makedirs("report.json")
"""
    )
    result = project.runpytest(
        "--rag-retries=0", "--rag-report=report.json", "--junitxml=junit.xml"
    )
    assert result.parseoutcomes() == {"passed": 1, "tolerated": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        ["*= rag evaluation =*", "rag report NOT written to */report.json: IsADirectoryError: *"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert ET.parse(project.path / "junit.xml").getroot() is not None
    assert not list(project.path.glob(".report.json.*"))  # no temporary file left behind


@pytest.mark.parametrize(("mode", "kept"), [("full", 5000), ("truncate", 2000), ("none", None)])
def test_report_text_limits_what_the_report_keeps(
    project: pytest.Pytester,
    scripted_judge: Callable[[str], pytest.Pytester],
    mode: str,
    kept: int | None,
) -> None:
    scripted_judge(
        """
        @pytest.fixture(scope="session")
        def rag_query_engine():
            return lambda query: ("a" * 5000, ["c" * 5000])
        """
    )
    project.makefile(
        ".yaml", rag_set='evaluators: [faithfulness]\nquestions: [{id: q, query: "Q?"}]'
    )
    project.runpytest("-o", f"rag_report_text={mode}", "--rag-report=report.json")
    question = json.loads((project.path / "report.json").read_text())["sets"][0]["questions"][0]
    if kept is None:
        assert question["response"] is None and question["contexts"] is None
        return
    assert question["response"].split(" [...")[0] == "a" * kept
    assert question["contexts"][0].split(" [...")[0] == "c" * kept
    if mode == "truncate":
        assert question["response"].endswith(" [... 3000 more characters]")


def test_keys_and_tokens_never_reach_reports_or_the_terminal(
    project: pytest.Pytester,
    scripted_judge: Callable[[str], pytest.Pytester],
) -> None:
    scripted_judge(
        """
        @pytest.fixture(scope="session")
        def rag_query_engine():
            def leaky(query):
                raise RuntimeError("auth failed with Bearer abcdefghijklmnop and sk-proj-SECRETSECRET123")
            return leaky
        """
    )
    project.makefile(".yaml", rag_set='questions: [{id: q, query: "Q?"}]')
    result = project.runpytest("--rag-report=report.json", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    report = (project.path / "report.json").read_text()
    assert "Bearer ***" in report and "sk-proj-***" in report
    assert "SECRETSECRET" not in report and "abcdefghijklmnop" not in report
    # what the plugin writes on the terminal: its note on the failure, and the summary
    result.stdout.fnmatch_lines(
        [
            "E   *rag question errored: query engine raised RuntimeError: auth failed with "
            "Bearer *** and sk-proj-***",
        ]
    )
    # The app's own exception message is the app's text, shown by pytest as it would be for any
    # test (in full on CI, where pytest does not shorten the short summary): only our section counts.
    summary = result.stdout.str().split("rag evaluation", 1)[1].split("short test summary", 1)[0]
    assert "SECRETSECRET" not in summary and "sk-proj-***" in summary
    properties = [p.get("value") for p in ET.parse(project.path / "junit.xml").iter("property")]
    assert properties and not any("SECRET" in str(value) for value in properties)


def test_default_judge_repr_hides_its_key(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdefghijklmnopqrstuvwxyz")
    project.makeconftest("")
    project.makepyfile(
        test_show="""
        def test_show(rag_judge_llm):
            assert False, "look at the locals"
        """
    )
    # -vv: pytest prints locals in full (at -v and below it cuts their middle out)
    result = project.runpytest("-l", "-vv", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["rag_judge_llm = RedactedOpenAI(*api_key='***'*"])
    assert "abcdefghijklmnop" not in result.stdout.str()
    assert "abcdefghijklmnop" not in (project.path / "junit.xml").read_text()


def test_a_non_question_file_matching_rag_files_says_how_to_exclude_it(
    project: pytest.Pytester,
) -> None:
    project.makefile(".json", rag_config='{"model": "gpt-4o", "temperature": 0}')
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "rag_config.json: unknown top-level key 'model'; allowed keys: *; if rag_config.json "
            "is not a question file, narrow the ini option rag_files (default: *) so that it does "
            "not match it, e.g. rag_files = rag_questions*.yaml"
        ]
    )


def test_the_report_text_is_json_dumps_text_streamed(tmp_path: Path) -> None:
    """The report's own encoder (json's C encoder cannot indent) writes what
    ``json.dumps(indent=2, ensure_ascii=False)`` writes, in pieces, never the whole
    text at once; non-finite floats are null, a lone surrogate U+FFFD."""
    from pytest_rageval.reports import json as json_report

    records = [
        {"id": f"q{i}", "score": i / 7, "tags": [], "metrics": {"m": {"passing": i % 2 == 0}}}
        for i in range(3000)
    ]
    document = {
        "version": 1,
        "text": 'quote " backslash \\ tab \t nul \x00 é 中 😀 \u2028',
        "empty": {},
        "nested": [[], [1, -2, 10**20, 2.5, -0.0, 1e300, True, False, None]],
        2: ("a", "tuple"),
        "records": records,
    }
    expected = (
        json.dumps(
            {
                "version": 1,
                "text": document["text"],
                "empty": {},
                "nested": document["nested"],
                "2": ["a", "tuple"],
                "records": records,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    assert json_report.dumps(document) == expected
    pieces: list[str] = []
    json_report.encode(document, pieces.append)
    assert len(pieces) > 1 and max(map(len, pieces)) < len(expected) / 2
    assert "".join(pieces) + "\n" == expected
    json_report.write_json(tmp_path / "report.json", document)
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == expected

    odd = {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "lone": "a\ud83db"}
    assert json_report.dumps(odd) == (
        '{\n  "nan": null,\n  "inf": [\n    null,\n    null\n  ],\n  "lone": "a\ufffdb"\n}\n'
    )
