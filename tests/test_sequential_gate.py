"""``sample: sequential`` as users meet it: a set judged in a random order until its
verdict is certain, the questions never asked skipped with the reason, and the same
decision in every report."""

from __future__ import annotations

import json
import random

import llama_index.core  # noqa: F401  (numpy once per process: see conftest)
import pytest

COUNTING_APP = """
import pytest
from llama_index.core.base.response.schema import Response

ASKED = []

class App:
    def query(self, q):
        ASKED.append(q)
        if "BOOM" in q:
            raise RuntimeError("the app broke")
        return Response(response="yes" if q.startswith("pass") else "no", source_nodes=[])

@pytest.fixture(scope="session")
def rag_query_engine():
    return App()

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"app calls: {len(ASKED)}")
"""


def question_file(n: int, rate: float, *, seed: int = 0, head: str = "") -> str:
    rng = random.Random(seed)
    lines = ["evaluators: [contains]", *head.splitlines(), "questions:"]
    for i in range(n):
        word = "pass" if rng.random() < rate else "fail"
        lines.append(f"  - {{id: q{i}, query: '{word} {i}', reference: 'yes'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def counted(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(COUNTING_APP)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def app_calls(result: pytest.RunResult) -> int:
    (line,) = [line for line in result.outlines if line.startswith("app calls: ")]
    return int(line.split(": ")[1])


def test_a_failing_set_stops_early_and_skips_what_it_never_asked(
    counted: pytest.Pytester,
) -> None:
    head = "sample: sequential\nthresholds: {contains: 0.9}"
    counted.makefile(".yaml", rag_big=question_file(1000, 0.7, head=head))
    result = counted.runpytest("-rs", "--rag-report=report.json", "--rag-markdown=summary.md")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((counted.path / "report.json").read_text())
    (entry,) = report["sets"]
    sample = entry["sample"]
    assert sample["decision"] == "failed" and sample["reason"] == "contains < 0.90 at 95%"
    assert sample["population"] == 1000 and sample["level"] == 0.95
    assert sample["decided_after"] <= sample["visited"] < 200
    # questions never visited are never asked: the app's calls are the visited ones
    assert app_calls(result) == sample["visited"]
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] == 1000 - sample["visited"]
    assert outcomes["failed"] + outcomes.get("passed", 0) == sample["visited"]
    result.stdout.fnmatch_lines(
        [
            "*rag_big.yaml: contains pass rate */* judged = *; the whole set's rate < "
            "threshold 0.90 at 95% (sequential test, decided after * of 1,000 questions in "
            "random order)",
            "set *metric*judged*questions*",
            f"rag_big.yaml*contains*{sample['visited']}/1,000*FAILED",
            f"SKIPPED [[]{1000 - sample['visited']}[]] rag_big.yaml: not sampled: rag_big.yaml "
            f"decided FAILED (contains < 0.90 at 95%) on the first {sample['decided_after']} of "
            "its 1,000 questions in random order",
        ]
    )
    metric = entry["metrics"]["contains"]
    assert metric["verdict"] == "FAILED" and metric["n"] == sample["visited"]
    assert metric["sampled"]["rate"] == "fail"
    _, high = metric["interval"]
    assert high < 0.9  # the anytime-valid interval of the whole set's rate excludes 0.9
    markdown = (counted.path / "summary.md").read_text()
    assert f"/{sample['visited']} of 1,000)" in markdown
    assert f"after {sample['decided_after']} of 1,000 questions in random order" in markdown
    # the full run agrees
    full = counted.runpytest("--rag-sample=all", "--rag-report=full.json")
    assert app_calls(full) == 1000
    everything = json.loads((counted.path / "full.json").read_text())
    assert everything["sets"][0]["metrics"]["contains"]["verdict"] == "FAILED"


def test_a_passing_set_tolerates_its_failures_and_asks_must_pass_questions(
    counted: pytest.Pytester,
) -> None:
    body = question_file(600, 0.97, seed=4, head="sample: sequential\nthresholds: {contains: 0.8}")
    body += "  - {id: vital, query: 'pass vital', reference: 'yes', must_pass: true}\n"
    counted.makefile(".yaml", rag_big=body)
    result = counted.runpytest("-v", "--rag-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    sample = json.loads((counted.path / "report.json").read_text())["sets"][0]["sample"]
    assert sample["decision"] == "passed" and sample["visited"] < 100
    result.stdout.fnmatch_lines(["rag_big.yaml::vital PASSED*"])
    assert app_calls(result) == sample["visited"]


def test_an_error_ends_the_set_with_its_error(counted: pytest.Pytester) -> None:
    # every tenth question breaks the app: the first one asked ends the set
    body = question_file(300, 1.0, head="sample: sequential\nthresholds: {contains: 0.5}")
    for i in range(0, 300, 10):
        body = body.replace(f"'pass {i}'", f"'pass {i} BOOM'")
    counted.makefile(".yaml", rag_big=body)
    result = counted.runpytest("--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    entry = json.loads((counted.path / "report.json").read_text())["sets"][0]
    assert entry["sample"]["decision"] == "error"
    assert entry["sample"]["reason"].endswith("' errored")
    assert entry["metrics"]["contains"]["verdict"] == "ERROR"
    assert app_calls(result) == entry["sample"]["visited"] < 100
    result.stdout.fnmatch_lines(["*RuntimeError: the app broke*"])


def test_the_seed_fixes_the_order_and_goes_into_the_report(counted: pytest.Pytester) -> None:
    counted.makefile(".yaml", rag_big=question_file(500, 0.75, head="thresholds: {contains: 0.9}"))

    def asked(*args: str) -> tuple[int, list[str]]:
        counted.runpytest("--rag-sample=sequential", "--rag-report=report.json", *args)
        entry = json.loads((counted.path / "report.json").read_text())["sets"][0]
        ids = [q["id"] for q in entry["questions"] if q["outcome"] != "skipped"]
        return entry["sample"]["seed"], sorted(ids)

    seed, first = asked()
    assert asked() == (seed, first)  # the default is stable: runs repeat
    other_seed, other = asked("--rag-seed=7")
    assert other_seed == 7 and other != first


@pytest.mark.parametrize(
    ("ini", "file", "marker", "cli", "expected"),
    [
        ("sequential", "", "", "", "sequential"),
        ("sequential", "all", "", "", "all"),  # the data file beats the ini
        ("all", "", "", "sequential", "sequential"),  # the command line beats the ini
        ("", "all", "", "sequential", "all"),  # the data file beats the command line
        ("sequential", "sequential", "", "all", "all"),  # --rag-sample all forces
    ],
)
def test_sample_precedence(
    counted: pytest.Pytester, ini: str, file: str, marker: str, cli: str, expected: str
) -> None:
    head = "thresholds: {contains: 0.9}" + (f"\nsample: {file}" if file else "")
    counted.makefile(".yaml", rag_big=question_file(300, 0.6, head=head))
    if ini:
        counted.makeini(
            f"[pytest]\nasyncio_default_fixture_loop_scope = function\nrag_sample = {ini}\n"
        )
    args = [f"--rag-sample={cli}"] if cli else []
    result = counted.runpytest("--rag-report=report.json", *args)
    entry = json.loads((counted.path / "report.json").read_text())["sets"][0]
    assert ("sample" in entry) == (expected == "sequential")
    assert (app_calls(result) < 300) == (expected == "sequential")


def test_a_marker_beats_the_data_file_for_python_tests(counted: pytest.Pytester) -> None:
    counted.makepyfile(
        test_app="""
        import pytest
        from pytest_rageval import ContainsEvaluator, Question

        QS = [Question(("pass " if i % 10 else "fail ") + str(i), id=f"p{i}", reference="yes")
              for i in range(300)]

        @pytest.fixture(scope="session")
        def rag_evaluators():
            return {"contains": ContainsEvaluator()}

        @pytest.mark.rag_threshold(contains=0.7, sample="sequential")
        @pytest.mark.parametrize("rag_question", QS)
        def test_app(rag_result):
            assert rag_result.response is not None
        """
    )
    result = counted.runpytest("-rs")
    assert result.ret == pytest.ExitCode.OK
    assert app_calls(result) < 100
    result.stdout.fnmatch_lines(
        ["SKIPPED [[]*[]] test_app.py: not sampled: test_app.py::test_app decided PASSED*"]
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("ini", "ERROR: rag_sample in */tox.ini*must be 'all' or 'sequential'*got 'some'"),
        ("file", "*rag_big.yaml*sample must be 'all' or 'sequential'*got 'some'"),
        ("seed", "ERROR: --rag-seed must be a whole number*got 'x'"),
    ],
)
def test_a_bad_sample_is_a_usage_error_naming_where(
    counted: pytest.Pytester, where: str, expected: str
) -> None:
    head = "sample: some" if where == "file" else ""
    counted.makefile(".yaml", rag_big=question_file(5, 1.0, head=head))
    if where == "ini":
        counted.makeini("[pytest]\nrag_sample = some\n")
    args = ["--rag-seed=x"] if where == "seed" else []
    result = counted.runpytest(*args)
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED)
    (result.stderr if where != "file" else result.stdout).fnmatch_lines([expected])


def test_sequential_sets_run_under_xdist(counted: pytest.Pytester) -> None:
    head = "sample: sequential\nthresholds: {contains: 0.9}"
    counted.makefile(".yaml", rag_big=question_file(400, 0.7, head=head))
    counted.makefile(".yaml", rag_two=question_file(400, 0.99, seed=2, head=head))
    result = counted.runpytest_subprocess("-n", "2", "--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((counted.path / "report.json").read_text())
    decided = {entry["id"]: entry["sample"]["decision"] for entry in report["sets"]}
    assert decided == {"rag_big.yaml": "failed", "rag_two.yaml": "passed"}
    for entry in report["sets"]:
        assert len(entry["questions"]) == 400
        asked = sum(q["outcome"] != "skipped" for q in entry["questions"])
        assert asked == entry["sample"]["visited"] < 200


def test_the_drop_gate_is_one_more_bound_and_only_asked_questions_are_compared(
    counted: pytest.Pytester,
) -> None:
    head = "sample: sequential\nthresholds: {contains: 0.5}\nmax_drop: 0.05"
    counted.makefile(".yaml", rag_big=question_file(800, 0.97, head=head))
    counted.runpytest("--rag-sample=all", "--rag-report=base.json")
    # the app got worse: 0.75, more than 0.05 below the baseline's rate
    counted.makefile(".yaml", rag_big=question_file(800, 0.75, seed=9, head=head))
    result = counted.runpytest("--rag-baseline=base.json", "--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    entry = json.loads((counted.path / "report.json").read_text())["sets"][0]
    assert entry["sample"]["decision"] == "failed"
    assert "more than max_drop below the baseline" in entry["sample"]["reason"]
    assert entry["metrics"]["contains"]["verdict"] == "FAILED (drop)"
    assert entry["sample"]["visited"] < 400
    result.stdout.fnmatch_lines(
        [f"  rag_big.yaml: sequential: only the {entry['sample']['visited']} questions it asked*"]
    )
