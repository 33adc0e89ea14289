"""The PPI++ gate as users meet it: where a set's own questions carry a person's labels
(``labels`` and ``labelled_response_sha256`` in the data file) of the answers the app
still gives, the set's rate is PPI++'s (cross-fitted lambda, 2 folds).

The judge is the deterministic ``contains`` evaluator (the answer contains "yes"); the app
answers "yes" to queries starting with "pass", else "no". Of 100 questions the judge
passes 70. 40 are labelled: of the 30 the judge passes people pass 27, of the 10 it fails
people pass 2. The expected values are ``ppi_rate`` on those verdicts written out as
literal lists, labelled questions ordered by (person, judge) as the gate orders them:
estimate 0.687295454545, 95% interval 0.567653624176 to 0.806937284915.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import llama_index.core  # noqa: F401  (numpy once per process: see conftest)
import pytest
from qfiles import PREFIX_APP

from pytest_rageval.ppi import ppi_rate

YES = hashlib.sha256(b"yes").hexdigest()
NO = hashlib.sha256(b"no").hexdigest()
OLD = hashlib.sha256(b"an answer of an older version").hexdigest()

# (person, judge) of the 40 labelled questions in (person, judge) order, then the 60
# unlabelled ones' judge verdicts: 40 pass, 20 fail
JUDGE = [0] * 8 + [1] * 3 + [0] * 2 + [1] * 27 + [1] * 40 + [0] * 20
HUMAN = [0] * 8 + [0] * 3 + [1] * 2 + [1] * 27 + [None] * 60


def question_file(head: str = "", labelled: int = 40, stale: tuple[int, ...] = ()) -> str:
    """q0-q69 the judge passes, q70-q99 it fails; people label q0-q29 (failing q0-q2)
    and q70-q79 (passing q70, q71), the first ``labelled`` of those; ``stale``: questions
    whose label is of an answer the app no longer gives."""
    lines = ["evaluators: [contains]", *head.splitlines(), "questions:"]
    labels = {i: i >= 3 for i in range(30)} | {i: i < 72 for i in range(70, 80)}
    chosen = dict(list(labels.items())[:labelled])
    for i in range(100):
        word = "pass" if i < 70 else "fail"
        entry = f"id: q{i}, query: '{word} {i}', reference: 'yes'"
        if i in chosen:
            digest = (YES if i < 70 else NO) if i not in stale else OLD
            label = "true" if chosen[i] else "false"
            entry += f", labels: {{contains: {label}}}, labelled_response_sha256: {digest}"
        lines.append(f"  - {{{entry}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PREFIX_APP)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def metric_of(path: Path) -> dict[str, object]:
    report = json.loads(path.read_text())
    metric: dict[str, object] = report["sets"][0]["metrics"]["contains"]
    return metric


def test_the_reference_values() -> None:
    rate = ppi_rate(JUDGE, HUMAN)
    assert (rate.estimate, rate.lower, rate.upper) == pytest.approx(
        (0.687295454545, 0.567653624176, 0.806937284915), abs=1e-9
    )


def test_the_gate_compares_the_ppi_rate(project: pytest.Pytester) -> None:
    # the judge's 0.70 would meet 0.69; PPI++ says 0.687 and the set fails
    project.makefile(".yaml", rag_set=question_file("thresholds: {contains: 0.69}"))
    result = project.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=70, failed=30)
    metric = metric_of(project.path / "report.json")
    assert metric["verdict"] == "FAILED" and metric["pass_rate"] == 0.7
    corrected = metric["corrected"]
    assert isinstance(corrected, dict)
    assert corrected["method"] == "ppi++"
    assert (corrected["labelled"], corrected["unlabelled"], corrected["stale_labels"]) == (
        40,
        60,
        0,
    )
    assert corrected["estimate"] == pytest.approx(0.687295454545, abs=1e-9)
    assert corrected["interval"] == pytest.approx([0.567653624176, 0.806937284915], abs=1e-9)
    result.stdout.fnmatch_lines(
        [
            "*rag_set.yaml: contains pass rate 70/100 = 0.70 by the judge, PPI++ with 40 "
            "labels: 0.69 < threshold 0.69*"
        ]
    )

    project.makefile(".yaml", rag_set=question_file("thresholds: {contains: 0.68}"))
    result = project.runpytest("--rag-report=report.json")
    assert result.parseoutcomes() == {"passed": 70, "tolerated": 30}
    assert metric_of(project.path / "report.json")["verdict"] == "ok"


def test_with_confidence_the_gate_compares_the_lower_bound(project: pytest.Pytester) -> None:
    # 90%: lower bound 0.586888865358 (ppi_rate(JUDGE, HUMAN, confidence=0.9))
    assert ppi_rate(JUDGE, HUMAN, confidence=0.9).lower == pytest.approx(0.586888865358, abs=1e-9)
    head = "confidence: 0.9\nthresholds: {contains: 0.58}"
    project.makefile(".yaml", rag_set=question_file(head))
    result = project.runpytest("--rag-report=report.json")
    assert result.parseoutcomes() == {"passed": 70, "tolerated": 30}
    corrected = metric_of(project.path / "report.json")["corrected"]
    assert isinstance(corrected, dict)
    assert corrected["interval"] == pytest.approx([0.586888865358, 0.787702043733], abs=1e-9)
    project.makefile(".yaml", rag_set=question_file(head.replace("0.58", "0.59")))
    result = project.runpytest("--rag-report=report.json")
    assert metric_of(project.path / "report.json")["verdict"] == "FAILED"


def test_a_label_of_a_changed_answer_is_ignored_and_said(project: pytest.Pytester) -> None:
    # q29's label is of another answer: it drops out, q29 counts as unlabelled
    judge = [0] * 8 + [1] * 3 + [0] * 2 + [1] * 26 + [1] * 41 + [0] * 20
    human = [0] * 8 + [0] * 3 + [1] * 2 + [1] * 26 + [None] * 61
    rate = ppi_rate(judge, human)
    assert (rate.estimate, rate.lower) == pytest.approx((0.684440647072, 0.562552726877), abs=1e-9)
    project.makefile(".yaml", rag_set=question_file(stale=(29,)))
    result = project.runpytest("--rag-report=report.json")
    corrected = metric_of(project.path / "report.json")["corrected"]
    assert isinstance(corrected, dict)
    assert (corrected["labelled"], corrected["unlabelled"], corrected["stale_labels"]) == (
        39,
        61,
        1,
    )
    assert corrected["estimate"] == pytest.approx(0.684440647072, abs=1e-9)
    result.stdout.fnmatch_lines(
        [
            "*rag_set.yaml contains: 1 of its questions' labels ignored: the app's answer "
            "changed since the labelling*"
        ]
    )


def test_fewer_than_30_labels_error_the_set_saying_so(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=question_file(labelled=29, stale=(28,)))
    result = project.runpytest("--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    metric = metric_of(project.path / "report.json")
    assert metric["verdict"] == "ERROR"
    result.stdout.fnmatch_lines(
        [
            "*rag_set.yaml contains: too few labelled questions for prediction-powered "
            "inference: 28 of 100 carry a person's label, and it needs at least 30; label at "
            "least 2 more questions, chosen at random (1 label ignored: the app's answer "
            "changed since the labelling)*"
        ]
    )


def test_a_label_without_the_answer_hash_names_the_fix(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_set="evaluators: [contains]\nquestions:\n"
        "  - {query: 'pass', reference: 'yes', labels: {contains: true}}\n",
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*rag_set.yaml:3: 'labels' need 'labelled_response_sha256': the SHA-256 (64 hex "
            "digits) of the UTF-8 answer the labels judge, got None*"
        ]
    )
