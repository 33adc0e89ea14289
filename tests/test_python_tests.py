"""Questions in Python: load_questions, rag_question / rag_result, sync and async tests."""

from __future__ import annotations

import pytest

QUESTIONS = """
thresholds: {faithfulness: 0.5}
questions:
  - {id: paris, query: "Where is Paris?", reference: France}
  - {id: atlantis, query: "Where is UNSUPPORTED Atlantis?"}
"""


def test_load_questions_parametrizes_with_question_ids(project: pytest.Pytester) -> None:
    project.mkdir("evals")
    (project.path / "evals" / "questions.yaml").write_text(QUESTIONS)
    project.makepyfile(
        **{
            "evals/test_app": """
            import pytest
            from pytest_rageval import load_questions

            @pytest.mark.parametrize("rag_question", load_questions("questions.yaml"))
            def test_answers(rag_question, rag_result):
                assert rag_result.response == f"Answer: {rag_question.query}"
                assert rag_result.contexts == [f"Context: {rag_question.query}"]
                assert set(rag_result.evaluations) >= {"faithfulness", "relevancy"}
            """
        }
    )
    # run from another directory: the relative path follows the test file, not the cwd
    (project.path / "elsewhere").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project.path / "elsewhere")
        result = project.runpytest("-v", "--rootdir", str(project.path), str(project.path))
    result.stdout.fnmatch_lines(
        [
            "*evals/test_app.py::test_answers[[]paris[]] PASSED*",
            "*evals/test_app.py::test_answers[[]atlantis[]] TOLERATED*",
            # the file's threshold applies to the test's set
            "evals/test_app.py::test_answers  faithfulness  2 * 1 * 0.50 * 0.50 * ok",
        ]
    )
    assert result.parseoutcomes() == {"passed": 1, "tolerated": 1}


def test_gate_runs_after_the_body_and_body_failures_win(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.rag_threshold(faithfulness=0.5, relevancy=0.5)
        @pytest.mark.parametrize("rag_question", ["Where is Paris?", "Where is UNSUPPORTED Atlantis?"])
        def test_answers(rag_question, rag_result):
            assert "Rome" not in rag_result.response

        @pytest.mark.parametrize("rag_question", ["Where is Rome?"])
        def test_extra_asserts(rag_result):
            assert "Rome" not in rag_result.response, "no Rome please"
        """
    )
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "test_app.py::test_answers[[]Where is Paris?[]] PASSED*",
            "test_app.py::test_answers[[]Where is UNSUPPORTED Atlantis?[]] TOLERATED*",
            "test_app.py::test_extra_asserts[[]Where is Rome?[]] FAILED*",
            "E       AssertionError: no Rome please",
        ]
    )
    assert result.parseoutcomes() == {"passed": 1, "tolerated": 1, "failed": 1}


def test_other_parameters_make_separate_sets(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.rag_threshold(faithfulness=0.5, relevancy=0.5)
        @pytest.mark.parametrize("style", ["short", "long"])
        @pytest.mark.parametrize("rag_question", ["Where is Paris?", "Where is UNSUPPORTED Atlantis?"])
        def test_answers(rag_question, style, rag_result):
            pass
        """
    )
    result = project.runpytest()
    assert result.parseoutcomes() == {"passed": 2, "tolerated": 2}
    result.stdout.fnmatch_lines(
        [
            # sets by name: the same order with or without pytest-xdist
            "test_app.py::test_answers[[]style=long[]] * faithfulness  2 * 1 * 0.50 * 0.50 * ok",
            "test_app.py::test_answers[[]style=long[]] * relevancy  *",
            "test_app.py::test_answers[[]style=short[]]  faithfulness  2 * 1 * 0.50 * 0.50 * ok",
        ]
    )


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_async_tests_under_pytest_asyncio(project: pytest.Pytester, mode: str) -> None:
    project.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    project.makepyfile(
        test_app="""
        import asyncio
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.parametrize("rag_question", ["Where is Paris?", "Where is Rome?"])
        async def test_answers(rag_question, rag_result, rag_runner):
            await asyncio.sleep(0)
            assert rag_result.evaluations["faithfulness"].passing
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2)


def test_rag_question_as_fixture_is_a_set_of_one(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import pytest

        @pytest.fixture
        def rag_question():
            return "Where is UNSUPPORTED Atlantis?"

        def test_one(rag_result):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_app.py::test_one: faithfulness pass rate 0/1 = 0.00 < *"])


def test_rag_runner_is_usable_directly(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        from fakes import ScriptedApp

        def test_direct(rag_runner, rag_evaluators):
            results = rag_runner.evaluate(ScriptedApp(), ["Where is Paris?", "WRONG?"], rag_evaluators)
            assert [r.evaluations["relevancy"].passing for r in results] == [True, False]
            assert rag_runner.workers == 3
        """
    )
    project.runpytest("--rag-workers=3").assert_outcomes(passed=1)


def test_sets_with_unprintable_parameters_keep_apart(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.parametrize("cfg", [{"k": 1}, {"k": 2}])
        @pytest.mark.parametrize("rag_question", ["Where is Paris?"])
        def test_answers(rag_question, cfg, rag_result):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "test_app.py::test_answers[[]cfg[]] * faithfulness  1 *",
            "test_app.py::test_answers[[]cfg[]]#2 * faithfulness  1 *",
        ]
    )
