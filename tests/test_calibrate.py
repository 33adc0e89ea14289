"""``rageval calibrate``: agreement of the judge with hand labels, through the console
script, offline and against the loopback OpenAI-compatible server."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import console
import pytest
from openai_server import FakeOpenAI

from pytest_rageval.calibrate import cohen_kappa

REPO = Path(__file__).parent.parent
EXAMPLE = REPO / "examples" / "offline" / "calibration_labels.yaml"


def rageval(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return console.rageval("calibrate", *args, cwd=cwd)


def test_cohen_kappa_against_worked_examples() -> None:
    # Wikipedia's worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: po 0.7, pe 0.5
    assert cohen_kappa(20, 5, 10, 15) == pytest.approx(0.4)
    # perfect agreement on both classes
    assert cohen_kappa(3, 0, 0, 2) == pytest.approx(1.0)
    # agreement no better than chance: each says yes half the time, independently
    assert cohen_kappa(1, 1, 1, 1) == pytest.approx(0.0)
    # systematic disagreement
    assert cohen_kappa(0, 2, 2, 0) == pytest.approx(-1.0)
    # every label and verdict the same: chance agreement is 1, kappa undefined
    assert cohen_kappa(5, 0, 0, 0) is None
    assert cohen_kappa(0, 0, 0, 0) is None


def test_the_offline_example_calibrates_token_f1_without_a_judge() -> None:
    done = rageval(str(EXAMPLE.relative_to(REPO)), "--evaluators", "keyword_rag:evaluators")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 3 pass/pass, 1 pass/fail, 2 fail/pass, 2 fail/fail: po 5/8, pe 1/2, kappa 0.25
    assert lines[2].split() == ["f1", "8", "0.62", "0.25", "3", "1", "2", "2", "0", "0"]
    assert "not judged: no evaluator provides 'faithfulness'" in lines
    assert (
        "examples/offline/calibration_labels.yaml:29: f1: labelled failing, judged passing: "
        "token F1 0.94 against the reference (passes at 0.3) "
        "('What is magma called once it reaches the surface?')"
    ) in lines
    strict = rageval(
        str(EXAMPLE.relative_to(REPO)),
        "--evaluators",
        "keyword_rag:evaluators",
        "--min-kappa",
        "0.6",
    )
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[-1] == "FAILED f1: kappa 0.25 is below --min-kappa 0.6"


LABELS = """
cases:
  - query: What is the capital of France?
    response: Paris is the capital of France.
    contexts: [Paris is the capital of France.]
    labels: {faithfulness: true, relevancy: true}
  - query: What is the capital of France?
    response: UNSUPPORTED claim that it is Lyon.
    contexts: [Paris is the capital of France.]
    labels: {faithfulness: false, relevancy: true}
  - query: What is the capital of Italy?
    response: Rome, OFFTOPIC aside.
    contexts: [Rome is the capital of Italy.]
    labels: {faithfulness: true, relevancy: true}
  - query: What is the capital of Spain?
    response: Madrid, I think.
    contexts: [Madrid is the capital of Spain.]
    labels: {faithfulness: false}
  - query: What do EYES see?
    response: EYES see light.
    contexts: [Eyes see light.]
    labels: {faithfulness: true}
"""


def test_the_default_judges_against_the_loopback_server(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    (tmp_path / "labels.yaml").write_text(textwrap.dedent(LABELS))
    done = rageval("labels.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # faithfulness: judged YES, NO, YES, YES, invalid ("Garbage: eyes closed")
    # labels        pass,  fail, pass, fail, pass -> 2 pass/pass, 1 pass/fail (invalid),
    # 1 fail/pass, 1 fail/fail: po 3/5, pe = 3/5*3/5 + 2/5*2/5 = 13/25, kappa 1/6
    assert lines[2].split() == ["faithfulness", "5", "0.60", "0.17", "2", "1", "1", "1", "1", "0"]
    # relevancy: YES, YES, NO against pass, pass, pass: po 2/3 = pe, kappa 0
    assert lines[3].split() == ["relevancy", "3", "0.67", "0.00", "2", "1", "0", "0", "0", "0"]
    assert openai_server.chat_requests == 8  # labelled pairs only: correctness is unlabelled
    assert set(openai_server.models) == {"gpt-4o-mini"}
    assert lines[5:8] == [  # then q1, q0 and the next labels (test_corrected_gate.py)
        "labels.yaml:15: faithfulness: labelled failing, judged passing: YES ('What is the capital of Spain?')",
        "labels.yaml:19: faithfulness: labelled passing, judged invalid (the judge answered "
        "neither YES nor NO) ('What do EYES see?')",
        "labels.yaml:11: relevancy: labelled passing, judged failing: NO ('What is the capital of Italy?')",
    ]
    gated = rageval("labels.yaml", "--min-kappa", "0.1", cwd=tmp_path)
    assert gated.returncode == 1
    assert gated.stdout.splitlines()[-1] == "FAILED relevancy: kappa 0.00 is below --min-kappa 0.1"
    # only passing labels, all judged passing: agreement no measure can tell from chance
    (tmp_path / "easy.yaml").write_text(
        textwrap.dedent(LABELS).split(
            "  - query: What is the capital of France?\n    response: UNSUPPORTED"
        )[0]
    )
    easy = rageval("easy.yaml", "--min-kappa", "0.1", cwd=tmp_path)
    assert easy.returncode == 1
    assert easy.stdout.splitlines()[2].split()[:4] == ["faithfulness", "1", "1.00", "n/a"]
    assert easy.stdout.splitlines()[-2:] == [
        "FAILED faithfulness: kappa is undefined (every label and verdict is the same); label "
        "cases that should fail as well as cases that should pass",
        "FAILED relevancy: kappa is undefined (every label and verdict is the same); label "
        "cases that should fail as well as cases that should pass",
    ]


def test_evaluators_from_a_callable_given_the_judge(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    (tmp_path / "labels.yaml").write_text(textwrap.dedent(LABELS))
    (tmp_path / "my_metrics.py").write_text(
        textwrap.dedent(
            """
            from llama_index.core.evaluation import FaithfulnessEvaluator

            def evaluators(judge):
                return {"faithfulness": FaithfulnessEvaluator(llm=judge)}
            """
        )
    )
    done = rageval(
        "labels.yaml",
        "--evaluators",
        "my_metrics:evaluators",
        f"--judge=openai-like:local-judge@{openai_server.url}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].split()[:4] == ["faithfulness", "5", "0.60", "0.17"]
    assert "not judged: no evaluator provides 'relevancy'" in done.stdout
    assert set(openai_server.models) == {"local-judge"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cases: []\n", "labels.yaml: expected a mapping with a non-empty 'cases' list: *"),
        (
            "cases:\n  - query: Q\n    response: R\n",
            "labels.yaml:2: 'labels' must map metric names to true (passes) or false, *",
        ),
        (
            "cases:\n  - query: Q\n    response: R\n    labels: {faithfulness: yes please}\n",
            "labels.yaml:2: the label of 'faithfulness' must be true or false, got 'yes please'",
        ),
        (
            "cases:\n  - query: Q\n    answer: R\n    labels: {f1: true}\n",
            "labels.yaml:2: unknown key 'answer'; allowed keys: query, response, contexts, reference, labels",
        ),
        ("cases:\n  - query: [unclosed\n", "labels.yaml:3: not valid YAML: *"),
    ],
)
def test_a_bad_labels_file_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "labels.yaml").write_text(content)
    done = rageval("labels.yaml", "--evaluators", "keyword_rag:evaluators", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    import fnmatch

    assert fnmatch.fnmatch(done.stderr.strip(), f"rageval: error: {message}"), done.stderr


def test_without_a_key_the_default_judge_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "labels.yaml").write_text(textwrap.dedent(LABELS))
    done = rageval("labels.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("rageval: error: no judge: OPENAI_API_KEY is not set.")


def test_a_rate_limit_is_waited_out_and_a_lasting_failure_is_the_cases_error(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    from openai_server import Fault

    (tmp_path / "labels.yaml").write_text(textwrap.dedent(LABELS))
    openai_server.fail_next = [Fault(status=429, retry_after="0.2"), 503]
    done = rageval("labels.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].split()[:4] == ["faithfulness", "5", "0.60", "0.17"]
    assert openai_server.chat_requests == 10  # 8 judgements, 2 of them twice
    openai_server.fail_always = Fault(status=401)
    failing = rageval("labels.yaml", cwd=tmp_path)
    assert failing.returncode == 0
    lines = failing.stdout.splitlines()
    assert lines[2].split() == ["faithfulness", "5", "n/a", "n/a", "0", "0", "0", "0", "0", "5"]
    assert any(
        line.startswith(
            "labels.yaml:3: faithfulness: labelled passing, judged error: AuthenticationError: "
        )
        for line in lines
    )
