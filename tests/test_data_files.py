"""Question set files as users write them: every format, ids, and bad input."""

from __future__ import annotations

import json
import textwrap

import pytest


def test_yaml_questions_become_items_with_ids(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_capitals="""
        questions:
          - id: france
            query: What is the capital of France?
          - query: What is the capital of Italy?
          - query: What is the capital of Italy?
        """,
    )
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "rag_capitals.yaml::france PASSED*",
            "rag_capitals.yaml::what-is-the-capital-of-italy PASSED*",
            "rag_capitals.yaml::what-is-the-capital-of-italy-2 PASSED*",
        ]
    )
    result.assert_outcomes(passed=3)


def test_json_jsonl_and_csv_files(project: pytest.Pytester) -> None:
    project.makefile(
        ".json",
        rag_one=json.dumps({"questions": [{"id": "a", "query": "Q one", "reference": "R"}]}),
    )
    project.makefile(
        ".jsonl",
        rag_two='{"id": "b", "query": "Q two"}\n\n{"query": "Q three", "tags": ["x"]}\n',
    )
    project.makefile(
        ".csv",
        rag_three='id,query,reference\nc,"Q four, with a comma",R four\n,Q five,\n',
    )
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "rag_one.json::a PASSED*",
            "rag_three.csv::c PASSED*",
            "rag_three.csv::q-five PASSED*",
            "rag_two.jsonl::b PASSED*",
            "rag_two.jsonl::q-three PASSED*",
        ]
    )
    result.assert_outcomes(passed=5)


def test_labelled_rag_dataset_is_loaded_as_saved(project: pytest.Pytester) -> None:
    # the layout LabelledRagDataset.save_json writes (llama_dataset left llama-index-core)
    by = {"model_name": "gpt-4", "type": "ai"}
    examples = [
        {
            "query": "What does the WRONG paper say?",
            "query_by": by,
            "reference_contexts": ["The paper says it."],
            "reference_answer": "It says it.",
            "reference_answer_by": by,
        },
        {
            "query": "Who wrote the paper?",
            "query_by": by,
            "reference_contexts": ["Ada wrote the paper."],
            "reference_answer": "Ada.",
            "reference_answer_by": by,
        },
    ]
    (project.path / "rag_dataset.json").write_text(json.dumps({"examples": examples}, indent=4))
    project.makeconftest(
        """
        import pytest
        from fakes import ScriptedApp
        from pytest_rageval import ContainsEvaluator, ContextRecallEvaluator

        @pytest.fixture(scope="session")
        def rag_query_engine():
            return ScriptedApp()

        @pytest.fixture(scope="session")
        def rag_evaluators():
            return {"contains": ContainsEvaluator(), "recall": ContextRecallEvaluator()}
        """
    )
    result = project.runpytest("-v", "--rag-report=report.json")
    # the app answers "Answer: <query>": neither reference is in it; contexts differ too
    result.assert_outcomes(failed=2)
    report = json.loads((project.path / "report.json").read_text())
    questions = report["sets"][0]["questions"]
    assert [q["id"] for q in questions] == [
        "what-does-the-wrong-paper-say",
        "who-wrote-the-paper",
    ]
    assert questions[1]["reference"] == "Ada."
    assert questions[1]["metrics"]["recall"]["feedback"].startswith(
        "0 of 1 reference contexts retrieved; missing: 'Ada wrote the paper.'"
    )


def test_rag_files_ini_chooses_what_is_collected(project: pytest.Pytester) -> None:
    project.makefile(".yaml", evalset="questions: [{query: Q}]")
    project.makefile(".yaml", rag_other="questions: [{query: Q}]")
    project.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        rag_files = evalset.yaml
        """
    )
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(["evalset.yaml::q PASSED*"])
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "rag_bad.yaml",
            "questions:\n  - query: fine\n  - query: [unclosed\n",
            "rag_bad.yaml:4: not valid YAML: *; fix the syntax at that line",
        ),
        (
            "rag_bad.yaml",
            "questions:\n  - query: fine\n  - refrence: typo\n    query: Q\n",
            "rag_bad.yaml:3: unknown key 'refrence'; allowed keys: id, query, reference, "
            "contexts, expected_sources, pattern, must_pass, tags, labels, "
            "labelled_response_sha256; did you mean 'reference'?",
        ),
        (
            "rag_bad.yaml",
            "questions:\n  - question: How long do refunds take?\n",
            "rag_bad.yaml:2: unknown key 'question'; allowed keys: id, query, reference, "
            "contexts, expected_sources, pattern, must_pass, tags, labels, "
            "labelled_response_sha256; did you mean 'query'?",
        ),
        (
            "rag_bad.yaml",
            "questions:\n  - query: Refunds: how long do they take?\n",
            "rag_bad.yaml:2: not valid YAML: mapping values are not allowed *; fix the "
            "syntax at that line (a value that contains ': ' must be quoted, e.g. query: "
            '"Refunds: how long do they take?")',
        ),
        (
            "rag_bad.csv",
            "query,refrence\nQ,A\n",
            "rag_bad.csv:1: unknown column 'refrence'; allowed columns: id, query, reference, "
            "expected_sources, pattern, must_pass, tags; did you mean 'reference'?",
        ),
        (
            "rag_bad.yaml",
            "questions:\n  - id: a\n    query: one\n  - id: a\n    query: two\n",
            "rag_bad.yaml:4: duplicate question id 'a' (first used at rag_bad.yaml:2); "
            "ids must be unique within rag_bad.yaml",
        ),
        (
            "rag_bad.yaml",
            "thresholds: {faithfulness: 90}\nquestions: [{query: Q}]\n",
            "rag_bad.yaml:1: threshold for 'faithfulness' must be in [0, 1] (a fraction: 0.9 "
            "means 90% of questions must pass), got 90",
        ),
        (
            "rag_bad.yaml",
            "questions:\n  - reference: no query\n",
            "rag_bad.yaml:2: 'query' is required and must be a non-empty string",
        ),
        (
            "rag_bad.json",
            '{"questions": [\n  {"query": "Q",}\n]}',
            "rag_bad.json:2: not valid JSON: *; fix the syntax at that line",
        ),
        (
            "rag_bad.jsonl",
            '{"query": "one"}\n{"query": "two"\n',
            "rag_bad.jsonl:2: not valid JSON: *; each line must be one JSON object",
        ),
        (
            "rag_bad.csv",
            "question,reference\nQ,R\n",
            "rag_bad.csv:1: the header row must have a 'query' column*",
        ),
        (
            "rag_bad.yaml",
            "- query: a list is not the object form\n",
            "rag_bad.yaml: expected a mapping with a 'questions' list at the top level*",
        ),
    ],
)
def test_bad_files_name_file_line_and_fix(
    project: pytest.Pytester, name: str, content: str, message: str
) -> None:
    (project.path / name).write_text(content)
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*ERROR collecting {name}*", message])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*pytest_rageval/*")


def test_yaml_is_parsed_with_the_c_loader_when_pyyaml_has_it() -> None:
    import yaml

    from pytest_rageval.questions import _line_loader

    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    assert issubclass(_line_loader(), yaml.CSafeLoader)
    # still a safe loader: python tags are refused
    with pytest.raises(yaml.YAMLError):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=_line_loader())


# -- many small sets: the next sets start while earlier ones are still being judged -------

SMALL_SETS_CONFTEST = """
import json
import textwrap
from collections import Counter

import pytest
from fakes import ScriptedApp, ScriptedLLM

APP = ScriptedApp(delay=0.2)
ASKED = Counter()


class CountingApp:
    async def aquery(self, query):
        ASKED[query] += 1
        return await APP.aquery(query)


@pytest.fixture(scope="session")
def rag_judge_llm():
    return ScriptedLLM()


@pytest.fixture(scope={scope!r})
def rag_query_engine():
    return CountingApp()


def pytest_sessionfinish(session):
    with open("app.json", "w") as out:
        json.dump({{"peak": APP.peak, "asked": ASKED}}, out)
"""


def small_sets(project: pytest.Pytester, count: int, scope: str) -> None:
    project.makeconftest(SMALL_SETS_CONFTEST.format(scope=scope))
    for n in range(count):
        project.makefile(
            ".yaml",
            **{f"rag_set{n}": f'questions: [{{query: "Set {n} one?"}}, {{query: "Set {n} two?"}}]'},
        )


def test_small_sets_share_the_pool_and_are_asked_once(project: pytest.Pytester) -> None:
    small_sets(project, 6, "session")
    result = project.runpytest("--rag-workers=8")
    result.assert_outcomes(passed=12)
    app = json.loads((project.path / "app.json").read_text())
    # sets of 2 questions, one at a time, would never have more than 2 queries in flight
    assert app["peak"] > 2
    assert len(app["asked"]) == 12 and set(app["asked"].values()) == {1}


def test_sets_with_per_test_engines_wait_for_their_own_items(project: pytest.Pytester) -> None:
    # a function-scoped engine may differ from item to item: no set runs before its items
    small_sets(project, 4, "function")
    result = project.runpytest("--rag-workers=8")
    result.assert_outcomes(passed=8)
    app = json.loads((project.path / "app.json").read_text())
    assert app["peak"] == 2 and len(app["asked"]) == 8


def test_skipped_and_deselected_sets_are_never_asked(project: pytest.Pytester) -> None:
    small_sets(project, 4, "session")
    (project.path / "conftest.py").write_text(
        (project.path / "conftest.py").read_text()
        + textwrap.dedent(
            """
            def pytest_collection_modifyitems(items):
                for item in items:
                    if "rag_set1" in item.nodeid:
                        item.add_marker(pytest.mark.skip(reason="not today"))
            """
        )
    )
    result = project.runpytest("--rag-workers=8", "--deselect=rag_set2.yaml")
    result.assert_outcomes(passed=4, skipped=2, deselected=2)
    app = json.loads((project.path / "app.json").read_text())
    assert sorted(app["asked"]) == ["Set 0 one?", "Set 0 two?", "Set 3 one?", "Set 3 two?"]


def test_a_question_file_rag_files_does_not_match_gets_a_hint(project: pytest.Pytester) -> None:
    project.makefile(".yaml", questions="questions:\n  - query: Where is Paris?\n")
    project.makefile(".yaml", config="retries: 3\n")
    (project.path / "data").mkdir()
    (project.path / "data" / "cases.json").write_text('{"questions": [{"query": "Q"}]}')
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert [line for line in result.stdout.lines if line.startswith("rageval: ")][1:] == [
        "rageval: questions.yaml has a 'questions:' list, but its name does not match "
        "rag_files (rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv), so it was not "
        "collected: rename it rag_questions.yaml, or add questions.yaml to the ini option "
        "rag_files",
        "rageval: data/cases.json has a 'questions:' list, but its name does not match "
        "rag_files (rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv), so it was not "
        "collected: rename it rag_cases.json, or add cases.json to the ini option rag_files",
    ]
    # a run that collects something says nothing of them
    project.makefile(".yaml", rag_set="questions:\n  - query: Where is Rome?\n")
    ran = project.runpytest()
    ran.assert_outcomes(passed=1)
    ran.stdout.no_fnmatch_line("*has a 'questions:' list*")
