"""Outcomes and pass-rate gates, as a user reads them in pytest's output."""

from __future__ import annotations

import pytest


def four_questions(project: pytest.Pytester, thresholds: str = "", extra: str = "") -> None:
    """A set of four where q3 fails faithfulness only (3/4 = 0.75 faithfulness)."""
    project.makefile(
        ".yaml",
        rag_set=f"""
        {thresholds}
        questions:
          - {{id: q1, query: "Where is Paris?"}}
          - {{id: q2, query: "Where is Rome?"}}
          - {{id: q3, query: "Where is UNSUPPORTED Atlantis?"}}
          - {{id: q4, query: "Where is Oslo?"}}
        {extra}
        """,
    )


def test_failed_metric_within_threshold_is_tolerated(project: pytest.Pytester) -> None:
    four_questions(project, "thresholds: {faithfulness: 0.75}")
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(["rag_set.yaml::q3 TOLERATED*", "*3 passed, 1 tolerated in*"])
    assert result.parseoutcomes() == {"passed": 3, "tolerated": 1}
    assert result.ret == 0


def test_pass_rate_exactly_at_threshold_is_ok_and_just_below_fails(
    project: pytest.Pytester,
) -> None:
    four_questions(project, "thresholds: {faithfulness: 0.75}")
    assert project.runpytest().ret == 0
    four_questions(project, "thresholds: {faithfulness: 0.76}")
    result = project.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ q3 _*",
            "rag question failed faithfulness",
            "query:    Where is UNSUPPORTED Atlantis?",
            "response: Answer: Where is UNSUPPORTED Atlantis?",
            "faithfulness: failed; judge said: NO",
            "  rag_set.yaml: faithfulness pass rate 3/4 = 0.75 < threshold 0.76",
        ]
    )


def test_default_threshold_is_every_question(project: pytest.Pytester) -> None:
    four_questions(project)
    result = project.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*faithfulness pass rate 3/4 = 0.75 < threshold 1.00"])


def test_must_pass_question_fails_even_within_threshold(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_set="""
        thresholds: {faithfulness: 0.5}
        questions:
          - {id: q1, query: "Where is Paris?"}
          - {id: q2, query: "Where is UNSUPPORTED Atlantis?", must_pass: true}
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["  must_pass: this question may not fail any metric"])


def test_deselecting_with_k_shrinks_the_set(project: pytest.Pytester) -> None:
    four_questions(project, "thresholds: {faithfulness: 0.75}")
    # without q1 the set is 2 of 3 = 0.67 < 0.75: q3 now fails
    result = project.runpytest("-k", "not q1")
    result.assert_outcomes(passed=2, failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*faithfulness pass rate 2/3 = 0.67 < threshold 0.75"])


def test_error_in_one_question_leaves_the_others(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_set="""
        thresholds: {faithfulness: 0.5, relevancy: 0.5}
        questions:
          - {id: ok1, query: "Where is Paris?"}
          - {id: broken, query: "Where is BOOM?"}
          - {id: ok2, query: "Where is Rome?"}
        """,
    )
    result = project.runpytest("-v", "--rag-retries=0")
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml::ok1 PASSED*",
            "rag_set.yaml::broken FAILED*",
            "rag_set.yaml::ok2 PASSED*",
            # the app's own traceback, then what it means for the gate
            '>               raise RuntimeError(f"the app broke on {query!r}")',
            "E               RuntimeError: the app broke on 'Where is BOOM?'",
            "E               rag question errored: query engine raised RuntimeError: the app "
            "broke on 'Where is BOOM?'",
        ]
    )
    # the error counts as not passing, in its own column, and the row says so
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml  faithfulness  3            2         0         0          1         0.67         0.21-0.94  0.50         ERROR",
            "errors by cause:",
            "  1 x query engine raised RuntimeError: the app broke on 'Where is BOOM?'",
        ]
    )


def test_invalid_judgement_counts_as_not_passing(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_set="""
        evaluators: [correctness]
        questions:
          - {id: fine, query: "Capital of France?", reference: Paris}
          - {id: garbled, query: "GARBLED capital?", reference: Paris}
          - {id: no-reference, query: "Capital of Spain?"}
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "correctness: invalid judgement: the judge's answer has no score on its first line",
            "  judge said: excellent answer no number here",
            "  rag_set.yaml: correctness pass rate 1/2 = 0.50 < threshold 1.00",
        ]
    )


def test_marker_file_and_ini_precedence(project: pytest.Pytester) -> None:
    project.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        rag_thresholds =
            faithfulness = 0.1
            relevancy = 0.2
            correctness = 0.3
        """
    )
    # the same questions as a collected set and, under another name, loaded in Python
    project.makefile(
        ".yaml", rag_thresholds="thresholds: {relevancy: 0.25}\nquestions: [{query: Q}]\n"
    )
    project.makefile(
        ".yaml", thresholds_questions="thresholds: {relevancy: 0.25}\nquestions: [{query: Q}]\n"
    )
    project.makepyfile(
        test_precedence="""
        import pytest
        from pytest_rageval import load_questions

        pytestmark = pytest.mark.rag_threshold(faithfulness=0.5, relevancy=0.6)

        class TestMarkers:
            pytestmark = pytest.mark.rag_threshold(faithfulness=0.7)

            @pytest.mark.rag_threshold(relevancy=0.9)
            @pytest.mark.parametrize("rag_question", load_questions("thresholds_questions.yaml"))
            def test_answers(self, rag_result):
                pass

        @pytest.mark.parametrize("rag_question", load_questions("thresholds_questions.yaml"))
        def test_module_level(rag_result):
            pass
        """
    )
    result = project.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=3)
    import json

    sets = {s["id"]: s for s in json.loads((project.path / "report.json").read_text())["sets"]}

    def thresholds(name: str) -> dict[str, float]:
        return {m: v["threshold"] for m, v in sets[name]["metrics"].items()}

    # function marker > class marker > module marker > data file > ini > 1.0
    assert thresholds("test_precedence.py::TestMarkers::test_answers") == {
        "faithfulness": 0.7,
        "relevancy": 0.9,
    }
    assert thresholds("test_precedence.py::test_module_level") == {
        "faithfulness": 0.5,
        "relevancy": 0.6,
    }
    assert thresholds("rag_thresholds.yaml") == {"faithfulness": 0.1, "relevancy": 0.25}


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--rag-workers=0"], "", "ERROR: --rag-workers must be a whole number >= 1, got '0'"),
        (
            [],
            "rag_timeout = soon",
            "ERROR: rag_timeout in */tox.ini must be a finite number >= 0.001*",
        ),
        (
            [],
            "rag_thresholds = faithfulness=1.5",
            "ERROR: rag_thresholds in */tox.ini: threshold for 'faithfulness' must be in [[]0, 1[]]*",
        ),
        (
            ["-o", "rag_thresholds=faithfulness=2"],
            "",
            "ERROR: -o rag_thresholds: threshold for 'faithfulness' must be in [[]0, 1[]]*",
        ),
        (
            ["--rag-timeout=nan"],
            "",
            "ERROR: --rag-timeout must be a finite number >= 0.001, got 'nan'",
        ),
        (
            ["--rag-timeout=inf"],
            "",
            "ERROR: --rag-timeout must be a finite number >= 0.001, got 'inf'",
        ),
        (["--rag-deadline=nan"], "", "ERROR: --rag-deadline must be a finite number >= 0.001*"),
        (["--rag-rpm=inf"], "", "ERROR: --rag-rpm must be a finite number >= 0.001*"),
        (["--rag-max-backoff=-1"], "", "ERROR: --rag-max-backoff must be a finite number >= 0*"),
        (
            ["--rag-query-retries=1.5"],
            "",
            "ERROR: --rag-query-retries must be a whole number >= 0*",
        ),
        (
            [],
            "rag_max_invalid = lots",
            "ERROR: rag_max_invalid in */tox.ini: rag_max_invalid must be a fraction in [[]0, 1[]], got 'lots'",
        ),
        (
            [],
            "rag_report_text = some",
            "ERROR: rag_report_text in */tox.ini must be one of full, truncate, none, got 'some'",
        ),
        (["--rag-report="], "", "ERROR: --rag-report needs a file path, e.g. rag.json"),
        (
            ["--rag-report=."],
            "",
            "ERROR: --rag-report: * is a directory; give a file path, e.g. rag.json",
        ),
        (
            ["--rag-report=tox.ini/report.json"],
            "",
            "ERROR: --rag-report: cannot write */tox.ini/report.json: */tox.ini is not a writable directory*",
        ),
    ],
)
def test_bad_settings_are_usage_errors(
    project: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    project.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_marker_is_a_usage_error_naming_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.rag_threshold(faithfulness="high")
        @pytest.mark.parametrize("rag_question", ["Q"])
        def test_it(rag_result):
            pass
        """
    )
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: @pytest.mark.rag_threshold on test_marker.py::test_it[[]Q[]]: threshold for "
            "'faithfulness' must be a number in [[]0, 1[]]*got 'high'"
        ]
    )


def test_missing_query_engine_fails_before_judge_problems(project: pytest.Pytester) -> None:
    project.makeconftest("")  # no engine, no judge, no OPENAI_API_KEY
    project.makefile(".yaml", rag_set="questions: [{id: q, query: Q}]")
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "no query engine: define a fixture named 'rag_query_engine' in your conftest.py "
            "that returns your llama-index query engine (or a callable taking the query string)"
        ]
    )
    result.stdout.no_fnmatch_line("*OPENAI_API_KEY*")


def test_missing_api_key_fails_with_how_to_fix(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest
        from fakes import ScriptedApp

        @pytest.fixture(scope="session")
        def rag_query_engine():
            return ScriptedApp()
        """
    )
    project.makefile(".yaml", rag_set="questions: [{id: q, query: Q}]")
    project.makepyfile(
        test_py="""
        import pytest

        @pytest.mark.parametrize("rag_question", ["Q"])
        def test_it(rag_result):
            raise AssertionError("the body must not run without a judge")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["no judge: OPENAI_API_KEY is not set. Set it*"] * 2)
    result.stdout.no_fnmatch_line("*the body must not run*")


def test_data_file_names_a_missing_engine_fixture_or_evaluator(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_a="query_engine: my_engine\nquestions: [{query: Q}]")
    project.makefile(".yaml", rag_b="evaluators: [faithfulness, tone]\nquestions: [{query: Q}]")
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "no fixture named 'my_engine', which rag_a.yaml uses as its query engine; define it "
            "in a conftest.py next to that file*",
            "rag_b.yaml asks for evaluator 'tone', which neither rag_evaluators provides nor is "
            "built in (known: faithfulness, relevancy, correctness, contains, token_f1, *",
        ]
    )


def test_a_skipped_case_leaves_the_run_complete(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_skip="""
        import pytest

        @pytest.mark.parametrize(
            "rag_question",
            ["Where is Paris?", pytest.param("Where is Rome?", marks=pytest.mark.skip("later"))],
        )
        def test_it(rag_result):
            pass
        """
    )
    result = project.runpytest("--rag-report=r.json")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.no_fnmatch_line("incomplete:*")
    import json

    assert json.loads((project.path / "r.json").read_text())["complete"] is True


@pytest.mark.parametrize("letters", ["-rA", "-rT"])
def test_r_lists_tolerated_questions_with_the_metric_they_failed(
    project: pytest.Pytester, letters: str
) -> None:
    four_questions(project, "thresholds: {faithfulness: 0.75}")
    result = project.runpytest(letters)
    assert result.parseoutcomes() == {"passed": 3, "tolerated": 1}
    lines = result.stdout.lines
    section = lines.index(next(line for line in lines if " tolerated questions " in line))
    assert lines[section + 1 : section + 2] == ["TOLERATED rag_set.yaml::q3 - faithfulness failing"]


def test_tolerated_questions_are_not_listed_without_r(project: pytest.Pytester) -> None:
    four_questions(project, "thresholds: {faithfulness: 0.75}")
    result = project.runpytest("-ra")
    result.stdout.no_fnmatch_line("*TOLERATED rag_set.yaml::q3*")
