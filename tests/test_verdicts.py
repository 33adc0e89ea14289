"""Strict verdicts: passing / failing / invalid / error, and a gate that never passes
vacuously or disagrees with itself."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from pytest_rageval import judges


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("YES", True),
        ("yes", True),
        ("  Yes, the context supports it.", True),
        ("**YES**", True),
        ("NO", False),
        ("No.", False),
        ("\n no - unsupported", False),
        ("Garbage: eyes closed, cannot judge", None),
        ("The answer is yes", None),
        ("Nope", None),
        ("Yesterday", None),
        ("", None),
        ("Empty Response", None),
    ],
)
def test_yes_no_is_read_only_from_a_clear_leading_word(answer: str, verdict: bool | None) -> None:
    assert judges.read_yes_no(answer) is verdict


@pytest.mark.parametrize(
    ("answer", "score", "reasoning"),
    [
        ("4", 4.0, ""),
        ("4.5\nClose to the reference.", 4.5, "Close to the reference."),
        ("Score: 3\n\nPartly right.", 3.0, "Partly right."),
        ("5/5\nPerfect.", 5.0, "Perfect."),
        ("inf\nBeyond any scale.", None, "Beyond any scale."),
        ("nan", None, ""),
        ("excellent answer\nno number here", None, "no number here"),
        ("", None, ""),
    ],
)
def test_correctness_scores_are_read_strictly(
    answer: str, score: float | None, reasoning: str
) -> None:
    assert judges.read_score(answer) == (score, reasoning)


def one_file(project: pytest.Pytester, body: str) -> None:
    project.makefile(".yaml", rag_set=body)


def test_an_unreadable_yes_no_answer_is_invalid_not_a_pass(project: pytest.Pytester) -> None:
    one_file(
        project,
        """
        evaluators: [faithfulness]
        questions:
          - {id: fine, query: "Where is Paris?"}
          - {id: eyes, query: "Where is EYES Paris?"}
        """,
    )
    result = project.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "rag question failed faithfulness",
            "faithfulness: invalid judgement: the judge answered neither YES nor NO",
            "  judge said: Garbage: eyes closed, cannot judge",
            "rag_set.yaml  faithfulness  2            1         0         1          0         0.50         0.09-0.91  1.00         FAILED",
        ]
    )
    report = json.loads((project.path / "report.json").read_text())
    eyes = report["sets"][0]["questions"][1]["metrics"]["faithfulness"]
    assert eyes["result"] == "invalid"
    assert eyes["feedback"] == "Garbage: eyes closed, cannot judge"  # the raw answer, kept


def test_correctness_scores_alone_pass_and_odd_scores_are_invalid(
    project: pytest.Pytester,
) -> None:
    one_file(
        project,
        """
        evaluators: [correctness]
        thresholds: {correctness: 0.25}
        questions:
          - {id: alone, query: "SCOREONLY capital?", reference: Paris}
          - {id: infinite, query: "INFINITE capital?", reference: Paris}
          - {id: nan, query: "NOTANUMBER capital?", reference: Paris}
          - {id: seven, query: "SEVEN capital?", reference: Paris}
        """,
    )
    result = project.runpytest("-v", "--rag-report=report.json")
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml::alone PASSED*",
            "rag_set.yaml::infinite TOLERATED*",
            "rag_set.yaml::nan TOLERATED*",
            "rag_set.yaml::seven TOLERATED*",
        ]
    )
    text = (project.path / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    questions = {q["id"]: q for q in json.loads(text)["sets"][0]["questions"]}
    assert questions["alone"]["metrics"]["correctness"]["score"] == 4.0
    for qid, raw, reason in (
        ("infinite", "inf\nBeyond any scale.", "the judge's answer has no score on its first line"),
        ("nan", "nan\nCannot say.", "the judge's answer has no score on its first line"),
        ("seven", "7\nBetter than perfect.", "the judge's score 7.0 is outside 1-5"),
    ):
        metric = questions[qid]["metrics"]["correctness"]
        assert (metric["result"], metric["feedback"], metric["reason"], metric["score"]) == (
            "invalid",
            raw,
            reason,
            None,
        )


def test_max_invalid_fails_a_set_whose_judge_is_unreliable(project: pytest.Pytester) -> None:
    body = """
        evaluators: [faithfulness]
        thresholds: {{faithfulness: 0.5}}
        {limit}
        questions:
          - {{id: q1, query: "Where is Paris?"}}
          - {{id: q2, query: "Where is Rome?"}}
          - {{id: q3, query: "Where is UNSUPPORTED Oslo?"}}
          - {{id: q4, query: "Where is EYES Bern?"}}
        """
    one_file(project, body.format(limit="max_invalid: 0.25"))
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(["rag_set.yaml::q3 TOLERATED*", "rag_set.yaml::q4 TOLERATED*"])
    one_file(project, body.format(limit="max_invalid: 0.2"))
    result = project.runpytest("-v")
    # the failing (not invalid) question is still tolerated; the invalid one fails
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml::q3 TOLERATED*",
            "rag_set.yaml::q4 FAILED*",
            "  rag_set.yaml: faithfulness invalid judgements 1/4 > max_invalid 0.20",
            "rag_set.yaml  faithfulness  4 * 2 * 1 * 1 * 0 * 0.50 * 0.50 * FAILED (invalid)",
        ]
    )
    # the marker keyword wins over the file; the ini is the last resort
    project.makepyfile(
        test_marker="""
        import pytest
        from pytest_rageval import load_questions

        @pytest.mark.rag_threshold(faithfulness=0.5, max_invalid=0.1)
        @pytest.mark.parametrize("rag_question", load_questions("rag_set.yaml"))
        def test_it(rag_result):
            pass
        """
    )
    one_file(project, body.format(limit="max_invalid: 0.5"))
    result = project.runpytest("-v", "-o", "rag_max_invalid=0.9", "test_marker.py")
    result.stdout.fnmatch_lines(["*test_it[[]q4[]] FAILED*", "*max_invalid 0.10"])


def test_reask_asks_once_more_when_the_answer_cannot_be_read(project: pytest.Pytester) -> None:
    one_file(project, 'evaluators: [faithfulness]\nquestions: [{id: q, query: "FLAKY one?"}]')
    project.runpytest("--rag-cache=off").assert_outcomes(failed=1)
    project.runpytest("--rag-reask", "--rag-cache=off").assert_outcomes(passed=1)


def test_a_set_with_nothing_judged_fails_saying_why(project: pytest.Pytester) -> None:
    one_file(
        project,
        """
        evaluators: [correctness]
        questions:
          - {id: q1, query: "Capital of France?"}
          - {id: q2, query: "Capital of Spain?"}
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    message = "no metric applied to any question of rag_set.yaml: correctness needs a reference"
    result.stdout.fnmatch_lines(
        [message, "rag_set.yaml  - * 2 * FAILED", f"rag_set.yaml: {message}"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_threshold_for_a_metric_nobody_provides_is_an_error(project: pytest.Pytester) -> None:
    one_file(
        project,
        """
        thresholds: {faithfullness: 0.9}
        questions: [{id: q, query: "Where is Paris?"}]
        """,
    )
    project.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.rag_threshold(contians=0.5)
        @pytest.mark.parametrize("rag_question", ["Where is Paris?"])
        def test_it(rag_result):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml:1 sets a threshold for 'faithfullness', which no evaluator of "
            "rag_set.yaml provides (did you mean 'faithfulness'?); its metrics are: "
            "faithfulness, relevancy, correctness",
            "@pytest.mark.rag_threshold on test_marker.py::test_it[[]Where is Paris?[]] sets a "
            "threshold for 'contians', which no evaluator of test_marker.py::test_it provides; "
            "its metrics are: faithfulness, relevancy, correctness",
        ]
    )


def test_an_ini_threshold_no_set_uses_is_a_warning(project: pytest.Pytester) -> None:
    one_file(project, 'questions: [{id: q, query: "Where is Paris?"}]')
    result = project.runpytest("-o", "rag_thresholds=relevancy=1.0\nfaithfullness=0.9")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "warning: -o rag_thresholds sets a threshold for 'faithfullness', which no "
            "evaluator of this run provides (did you mean 'faithfulness'?)"
        ]
    )


def test_the_table_verdict_agrees_with_the_exit_status(project: pytest.Pytester) -> None:
    one_file(
        project,
        """
        thresholds: {faithfulness: 0.0}
        questions:
          - {id: q1, query: "Where is Paris?"}
          - {id: q2, query: "Where is UNSUPPORTED Oslo?", must_pass: true}
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["rag_set.yaml  faithfulness  * 0.50 * 0.00 * FAILED (must_pass)"])
    # an outage is an error in its own column, never hidden by a threshold of 0
    one_file(
        project,
        """
        thresholds: {faithfulness: 0.0, relevancy: 0.0}
        questions: [{id: q1, query: "Where is BOOM?"}]
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["rag_set.yaml  faithfulness  1 * 0 * 0 * 0 * 1 * ERROR"])


def test_contexts_a_plain_string_a_pair_and_an_empty_retrieval(
    project: pytest.Pytester,
    scripted_judge: Callable[[str], pytest.Pytester],
) -> None:
    scripted_judge(
        """
        from llama_index.core.base.response.schema import Response

        @pytest.fixture(scope="session")
        def plain():
            return lambda query: f"Answer: {query}"

        @pytest.fixture(scope="session")
        def pair():
            return lambda query: (f"Answer: {query}", [f"Context: {query}"])

        @pytest.fixture(scope="session")
        def empty():
            return lambda query: Response(f"Answer: {query}", source_nodes=[])
        """
    )
    for name in ("plain", "pair", "empty"):
        project.makefile(
            ".yaml",
            **{
                f"rag_{name}": f"""
                query_engine: {name}
                evaluators: [faithfulness]
                questions: [{{id: q, query: "Where is Paris?"}}]
                """
            },
        )
    result = project.runpytest("-v", "--rag-report=report.json")
    result.stdout.fnmatch_lines(
        [
            "rag_empty.yaml::q FAILED*",
            "rag_pair.yaml::q PASSED*",
            "rag_plain.yaml::q FAILED*",
            "faithfulness: failed; judge said: no contexts retrieved",
            "faithfulness: invalid judgement: the query engine returned a plain string, so there "
            "are no retrieved contexts to judge faithfulness against; return a llama-index "
            "Response (its source_nodes are the contexts) or an (answer, [context, ...]) pair",
        ]
    )
    report = json.loads((project.path / "report.json").read_text())
    contexts = {s["id"]: s["questions"][0]["contexts"] for s in report["sets"]}
    assert contexts == {
        "rag_empty.yaml": [],
        "rag_pair.yaml": ["Context: Where is Paris?"],
        "rag_plain.yaml": None,
    }


def test_a_response_too_long_for_the_judge_is_invalid(
    project: pytest.Pytester,
    scripted_judge: Callable[[str], pytest.Pytester],
) -> None:
    scripted_judge(
        """
        @pytest.fixture(scope="session")
        def rag_query_engine():
            return lambda query: ("word " * 200_000, ["Paris is in France."])
        """
    )
    one_file(project, 'evaluators: [faithfulness, relevancy]\nquestions: [{id: q, query: "Q?"}]')
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "faithfulness: invalid judgement: response too long for the judge (200001 tokens, "
            "window 3900)",
            "relevancy: invalid judgement: response too long for the judge (200001 tokens, "
            "window 3900)",
        ]
    )


def test_judge_text_is_printed_with_control_characters_escaped(project: pytest.Pytester) -> None:
    one_file(project, 'evaluators: [faithfulness]\nquestions: [{id: q, query: "ESCAPE please?"}]')
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [r"faithfulness: failed; judge said: NO \x1b[[]31mred alert\x1b[[]0m"]
    )
    assert "\x1b[31mred" not in result.stdout.str()


def test_a_failed_question_is_decided_as_soon_as_its_set_is_certain() -> None:
    from pytest_rageval.gate import Tally
    from pytest_rageval.verdicts import MetricResult

    failing, passing = MetricResult(passing=False), MetricResult(passing=True)
    invalid = MetricResult(passing=False, invalid=True)
    # threshold 0.5 over 4: two passes make it certain, three failures make it hopeless
    tally = Tally({"m": 4}, {"m": 0.5})
    tally.add({"m": failing})
    assert tally.decide({"m": failing}) is None
    tally.add({"m": passing})
    assert tally.decide({"m": failing}) is None
    tally.add({"m": passing})
    assert tally.decide({"m": failing}) == "tolerated"
    hopeless = Tally({"m": 4}, {"m": 0.5})
    for _ in range(3):
        hopeless.add({"m": failing})
    assert hopeless.decide({"m": failing}) == "failed"
    # an invalid judgement also waits for max_invalid to be certain
    limited = Tally({"m": 4}, {"m": 0.0}, max_invalid=0.25)
    limited.add({"m": invalid})
    assert limited.decide({"m": invalid}) is None
    limited.add({"m": passing})
    limited.add({"m": passing})
    limited.add({"m": passing})
    assert limited.decide({"m": invalid}) == "tolerated"
    limited.add({"m": invalid})
    assert limited.decide({"m": invalid}) == "failed"
