"""The judge-corrected gate as users meet it: a set with a labels file (``calibration``)
is gated on the judge's pass rate corrected for the judge's errors on the labelled cases
(Rogan-Gladen, Lee et al.'s interval), and every report shows both rates.

The judge is the deterministic ``contains`` evaluator (the answer contains the reference),
and the labels disagree with it on purpose: of 20 cases people pass it passes 18
(q1 = 0.9), of 20 they fail it fails 15 (q0 = 0.75). The expected values are worked out
by hand from the formulas (docs/guide/calibration.md):

- corrected = (p + q0 - 1) / (q0 + q1 - 1); with p = 70/100: 0.45 / 0.65 = 0.692307692...
- Lee et al.'s 95% interval (z = 1.959964), smoothed p~ = (70 + z^2/2) / (100 + z^2),
  q0~ = 16/22, q1~ = 19/22: 0.473558842095 to 0.965902025884.
"""

from __future__ import annotations

import json
from pathlib import Path

import llama_index.core  # noqa: F401  (numpy once per process: see conftest)
import pytest
from qfiles import PREFIX_APP


def labels_file(
    passed: int = 20, judge_passed: int = 18, failed: int = 20, judge_failed: int = 15
) -> str:
    """A labels file on which ``contains`` passes ``judge_passed`` of the ``passed`` cases
    people pass, and fails ``judge_failed`` of the ``failed`` they fail; every case also
    labels faithfulness, which the sets here do not gate."""
    lines = ["cases:"]
    for i in range(passed):
        answer = "yes" if i < judge_passed else "no"
        lines.append(
            f"  - {{query: 'p{i}', response: '{answer}', reference: 'yes', "
            "labels: {contains: true, faithfulness: true}}"
        )
    for i in range(failed):
        answer = "no" if i < judge_failed else "yes"
        lines.append(
            f"  - {{query: 'f{i}', response: '{answer}', reference: 'yes', "
            "labels: {contains: false}}"
        )
    return "\n".join(lines) + "\n"


def question_file(n: int, passing: int, head: str = "") -> str:
    lines = ["evaluators: [contains]", *head.splitlines(), "questions:"]
    for i in range(n):
        word = "pass" if i < passing else "fail"
        lines.append(f"  - {{id: q{i}, query: '{word} {i}', reference: 'yes'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def labelled(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PREFIX_APP)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (pytester.path / "labels.yaml").write_text(labels_file())
    return pytester


def corrected_of(path: Path, metric: str = "contains") -> dict[str, object]:
    report = json.loads(path.read_text())
    return {entry["id"]: entry["metrics"][metric] for entry in report["sets"]}


def test_the_gate_compares_the_corrected_rate_and_every_report_shows_both(
    labelled: pytest.Pytester,
) -> None:
    # the judge passes 70 of 100; corrected for its leniency the rate is 0.6923 >= 0.69
    head = "calibration: labels.yaml\nthresholds: {contains: 0.69}"
    labelled.makefile(".yaml", rag_set=question_file(100, 70, head))
    result = labelled.runpytest(
        "--rag-report=report.json", "--rag-markdown=summary.md", "--rag-html=report.html"
    )
    assert result.parseoutcomes() == {"passed": 70, "tolerated": 30}
    metric = corrected_of(labelled.path / "report.json")["rag_set.yaml"]
    assert metric["verdict"] == "ok" and metric["pass_rate"] == 0.7
    corrected = metric["corrected"]
    assert isinstance(corrected, dict)
    assert corrected["estimate"] == pytest.approx(0.692307692308, abs=1e-9)
    assert corrected["interval"] == pytest.approx([0.473558842095, 0.965902025884], abs=1e-9)
    assert (corrected["q1"], corrected["q0"]) == (0.9, 0.75)
    keys = ("people_passed", "judge_passed", "people_failed", "judge_failed")
    assert [corrected[k] for k in keys] == [20, 18, 20, 15]
    assert corrected["labels_file"] == "labels.yaml" and corrected["labels_date"]
    # Wilson 95% of q1 = 18/20 and q0 = 15/20 (statsmodels proportion_confint, wilson)
    assert corrected["q1_interval"] == pytest.approx([0.698966354772, 0.972133518786], abs=1e-9)
    assert corrected["q0_interval"] == pytest.approx([0.531299122381, 0.888138298592], abs=1e-9)
    result.stdout.fnmatch_lines(
        [
            "corrected for the judge's errors on labelled cases (n: labels):",
            "  rag_set.yaml contains  judge 0.70  corrected 0.69 (0.47-0.97)  q1 0.90 q0 0.75 "
            "(n=40)  labels labels.yaml of *",
            "warning: labels.yaml labels 'faithfulness', which rag_set.yaml does not gate: "
            "those labels are unused",
        ]
    )
    markdown = (labelled.path / "summary.md").read_text()
    assert (
        "- `rag_set.yaml` `contains`: judge 0.70  corrected 0.69 (0.47-0.97)  q1 0.90 q0 0.75 "
        "(n=40), labels `labels.yaml of " in markdown
    )
    html = (labelled.path / "report.html").read_text()
    assert "corrected for the judge: contains: judge 0.70  corrected 0.69 (0.47-0.97)" in html

    # at 0.70 the judge's own rate would pass; the corrected one (0.692) fails the set
    labelled.makefile(".yaml", rag_set=question_file(100, 70, head.replace("0.69", "0.70")))
    result = labelled.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=70, failed=30)
    assert corrected_of(labelled.path / "report.json")["rag_set.yaml"]["verdict"] == "FAILED"
    result.stdout.fnmatch_lines(
        [
            "*rag_set.yaml: contains pass rate 70/100 = 0.70 by the judge, corrected with "
            "labels.yaml to 0.69 < threshold 0.70"
        ]
    )


def test_with_confidence_the_gate_compares_the_corrected_lower_bound(
    labelled: pytest.Pytester,
) -> None:
    # every answer passes the judge: no question fails, but the corrected interval's
    # lower bound (Lee et al., 95%, p = 30/30) lies below 0.9: the set fails the run
    head = "calibration: labels.yaml\nconfidence: 0.95\nthresholds: {contains: 0.9}"
    labelled.makefile(".yaml", rag_set=question_file(30, 30, head))
    result = labelled.runpytest("--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=30)
    corrected = corrected_of(labelled.path / "report.json")["rag_set.yaml"]["corrected"]
    assert isinstance(corrected, dict)
    assert corrected["estimate"] == 1.0
    assert corrected["interval"] == pytest.approx([0.882444043425, 1.0], abs=1e-9)
    result.stdout.fnmatch_lines(
        [
            "FAILED rag_set.yaml: contains pass rate 30/30 = 1.00 by the judge, corrected "
            "with labels.yaml to 1.00, lower bound of its 95% interval 0.88 < threshold 0.90, "
            "and no question failed it: the set fails the run"
        ]
    )


def test_a_judge_no_better_than_chance_errors_the_set(labelled: pytest.Pytester) -> None:
    # q1 = 12/20, q0 = 10/20: J = 0.10 < 0.2, the correction would be noise
    (labelled.path / "labels.yaml").write_text(labels_file(20, 12, 20, 10))
    labelled.makefile(".yaml", rag_set=question_file(10, 9, "calibration: labels.yaml"))
    result = labelled.runpytest("--rag-report=report.json")
    result.assert_outcomes(failed=10)
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml: contains cannot be corrected with "
            "labels.yaml: the judge barely agrees with people: it passes 60% of the 20 "
            "labelled answers people pass (q1) and fails 50% of the 20 they fail (q0), so "
            "J = q0 + q1 - 1 = 0.10, below 0.2*",
        ]
    )
    report = json.loads((labelled.path / "report.json").read_text())
    outcomes = {q["outcome"] for q in report["sets"][0]["questions"]}
    assert outcomes == {"error"}  # never gated on the judge's raw rate


def test_too_few_labels_error_the_set_saying_what_to_label(labelled: pytest.Pytester) -> None:
    (labelled.path / "labels.yaml").write_text(labels_file(20, 18, 7, 6))
    labelled.makefile(".yaml", rag_set=question_file(10, 9, "calibration: labels.yaml"))
    result = labelled.runpytest()
    result.assert_outcomes(failed=10)
    result.stdout.fnmatch_lines(
        [
            "*contains cannot be corrected with labels.yaml: too few labels to correct the "
            "judge: 20 answers people pass and 7 they fail are labelled, and the correction "
            "needs at least 10 of each; label at least 3 more answers that people fail*"
        ]
    )


def test_the_closest_layer_names_the_labels_file(labelled: pytest.Pytester) -> None:
    # marker > data file (relative to that file) > ini (relative to the ini file)
    (labelled.path / "data" / "sub").mkdir(parents=True)
    (labelled.path / "data" / "sub" / "file_labels.yaml").write_text(labels_file(21, 19))
    (labelled.path / "marker_labels.yaml").write_text(labels_file(22, 20))
    labelled.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nrag_calibration = labels.yaml\n"
    )
    (labelled.path / "data" / "rag_file.yaml").write_text(
        question_file(5, 5, "calibration: sub/file_labels.yaml\nthresholds: {contains: 0}")
    )
    labelled.makefile(".yaml", rag_ini=question_file(5, 5, "thresholds: {contains: 0}"))
    labelled.makefile(".yaml", questions=question_file(5, 5))
    labelled.makepyfile(
        test_marked="""
        import pytest
        from pytest_rageval import load_questions

        @pytest.mark.rag_threshold(contains=0, calibration="marker_labels.yaml")
        @pytest.mark.parametrize("rag_question", load_questions("questions.yaml"))
        def test_answers(rag_result):
            pass
        """
    )
    result = labelled.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=15)
    found = {
        name: (metric["corrected"]["labels_file"], metric["corrected"]["people_passed"])
        for name, metric in corrected_of(labelled.path / "report.json").items()
    }
    assert found == {
        "data/rag_file.yaml": ("data/sub/file_labels.yaml", 21),
        "rag_ini.yaml": ("labels.yaml", 20),
        "test_marked.py::test_answers": ("marker_labels.yaml", 22),
    }


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            None,
            "*rag_set.yaml: rag_set.yaml names calibration file missing.yaml, which does not "
            "exist; write the cases people labelled there*",
        ),
        (
            "cases:\n  - {query: q, response: r, labels: {contains: maybe}}\n",
            "*rag_set.yaml: missing.yaml:2: the label of 'contains' must be true or false, "
            "got 'maybe' (the calibration file rag_set.yaml names)",
        ),
    ],
)
def test_a_missing_or_bad_labels_file_is_a_usage_error_naming_it(
    labelled: pytest.Pytester, labels: str | None, expected: str
) -> None:
    if labels is not None:
        (labelled.path / "missing.yaml").write_text(labels)
    labelled.makefile(".yaml", rag_set=question_file(3, 3, "calibration: missing.yaml"))
    result = labelled.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected.lstrip('*')}"])


def test_calibration_with_the_sequential_gate_is_refused(labelled: pytest.Pytester) -> None:
    head = "calibration: labels.yaml\nsample: sequential"
    labelled.makefile(".yaml", rag_set=question_file(3, 3, head))
    result = labelled.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: rag_set.yaml: calibration cannot be combined with sample: sequential: the "
            "sequential test bounds the judge's pass rate of the whole set, while a corrected "
            "rate also carries the uncertainty of q1 and q0*"
        ]
    )
    # --rag-sample all judges every set in full: then the labels correct it
    result = labelled.runpytest("--rag-sample=all")
    result.assert_outcomes(passed=3)


def test_a_run_unlike_the_labelled_cases_is_warned_of(labelled: pytest.Pytester) -> None:
    # the judge passes 23 of the 40 labelled cases (0.575) and 2 of 60 of this run's
    # answers (0.03): their 95% Wilson intervals lie apart
    labelled.makefile(
        ".yaml",
        rag_set=question_file(60, 2, "calibration: labels.yaml\nthresholds: {contains: 0}"),
    )
    result = labelled.runpytest()
    result.stdout.fnmatch_lines(
        [
            "warning: rag_set.yaml contains: the judge passes 3% of this run's answers and "
            "57% of the labelled cases in labels.yaml (their 95% intervals do not overlap)*"
        ]
    )


def test_calibrate_prints_q1_q0_and_suggests_the_next_labels(labelled: pytest.Pytester) -> None:
    import console
    import yaml

    labelled.makefile(
        ".yaml",
        rag_set=question_file(100, 70, "calibration: labels.yaml\nthresholds: {contains: 0}"),
    )
    labelled.runpytest("--rag-report=report.json").assert_outcomes(passed=70)
    labelled.makepyfile(
        calib_suggest_evaluators="""
        from pytest_rageval.evaluators import ContainsEvaluator

        def evaluators():
            return {"contains": ContainsEvaluator()}
        """
    )
    done = console.rageval(
        "calibrate",
        "labels.yaml",
        "--evaluators",
        "calib_suggest_evaluators:evaluators",
        "--suggest",
        "30",
        "--report",
        "report.json",
        cwd=labelled.path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Wilson 95% of 18/20 and 15/20; Lee et al.'s allocation of 70 labels at p = 0.7 with
    # kappa = ((20 * 0.25 + 1) / 22) / ((20 * 0.1 + 1) / 22) = 2:
    # m1 = 70 / (1 + (1 / 0.7 - 1) * sqrt(2)) = 43.58 -> 44, so 24 more pass and 6 more fail
    assert (
        "contains: q1 0.90 (0.70-0.97, of 20 people pass), q0 0.75 (0.53-0.89, of 20 they "
        "fail), J 0.65"
    ) in lines
    assert (
        "  next 30 labels: 24 answers people pass and 6 they fail (narrowest corrected "
        "interval at this run's judge pass rate)"
    ) in lines
    assert (
        "30 answers to label (24 the judge passed, 6 it failed) written to labels.next.yaml"
        in lines
    )
    template = yaml.safe_load((labelled.path / "labels.next.yaml").read_text())
    cases = template["cases"]
    assert [case["response"] for case in cases] == ["yes"] * 24 + ["no"] * 6
    assert cases[0] == {
        "query": "pass 0",
        "response": "yes",
        "reference": "yes",
        "labels": {"contains": None},
    }
    assert cases[-1]["query"] == "fail 75"


def test_a_saved_report_keeps_its_corrected_verdict(labelled: pytest.Pytester) -> None:
    import console

    # raw 0.70 meets 0.70, corrected 0.692 does not: rageval diff re-gates the saved
    # report with the labels' counts it carries
    head = "calibration: labels.yaml\nthresholds: {contains: 0.7}"
    labelled.makefile(".yaml", rag_set=question_file(100, 70, head))
    labelled.runpytest("--rag-report=report.json").assert_outcomes(passed=70, failed=30)
    done = console.rageval("diff", "report.json", "report.json", cwd=labelled.path)
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("rag_set.yaml")]
    assert rows and rows[0][1] == "contains" and rows[0][-1] == "FAILED", done.stdout
