"""The pull-request gate: a run compared with an earlier report (baseline), flips, the
max_drop gate, McNemar labels, and what a set can detect."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

RAGEVAL = str(Path(sys.executable).parent / "rageval")
"""The console script, as installed beside this Python."""

CONFTEST = """
import os

import pytest
from fakes import ScriptedLLM


@pytest.fixture(scope="session")
def rag_judge_llm():
    return ScriptedLLM()


@pytest.fixture(scope="session")
def rag_query_engine():
    # questions named in $WRONG get an answer the judge rejects; in $EYES, one it cannot read
    wrong = set(os.environ.get("WRONG", "").split(","))
    eyes = set(os.environ.get("EYES", "").split(","))

    def app(query):
        qid = query.split()[-1].rstrip("?")
        answer = f"Answer: {query}"
        answer += " WRONG" if qid in wrong else ""
        answer += " EYES" if qid in eyes else ""
        if os.environ.get("NODES"):  # retrieved nodes, with the file each came from
            from llama_index.core.schema import TextNode

            node = TextNode(text=f"Context: {query}", metadata={"file_name": f"doc-{qid}.md"})
            return answer, [node]
        return answer, [f"Context: {query}"]

    return app
"""


def question_file(ids: range | list[int], max_drop: float = 0.1) -> str:
    lines = [
        "evaluators: [faithfulness]",
        "thresholds: {faithfulness: 0.5}",
        f"max_drop: {max_drop}",
        "questions:",
    ]
    lines += [f'  - {{id: q{i}, query: "What about q{i}?"}}' for i in ids]
    return "\n".join(lines) + "\n"


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """Outcome counts, tolerated included (``assert_outcomes`` knows only pytest's)."""
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("seconds", "warnings")}


def wrong(*ids: int) -> str:
    return ",".join(f"q{i}" for i in ids)


@pytest.fixture
def gate(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """20 questions; the baseline run (base.json) fails q18 and q19: a rate of 0.90."""
    project.makeconftest(CONFTEST)
    project.makefile(".yaml", rag_set=question_file(range(20)))
    monkeypatch.setenv("WRONG", wrong(18, 19))
    assert outcomes(project.runpytest("--rag-report=base.json")) == {"passed": 18, "tolerated": 2}
    return project


def test_a_real_regression_fails_the_drop_gate(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 questions that passed now fail, one that failed now passes: 0.90 -> 0.55
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    result = gate.runpytest(
        "--rag-baseline=base.json", "--rag-report=head.json", "--junitxml=junit.xml"
    )
    # above the threshold of 0.5, but 0.35 below the baseline: the 8 flips fail; q19
    # failed in the baseline too and is tolerated as before
    assert outcomes(result) == {"passed": 11, "failed": 8, "tolerated": 1}
    # decided as soon as certain: "at most", while other questions still run
    result.stdout.re_match_lines(
        [
            "rag question failed faithfulness",
            r"  rag_set.yaml: faithfulness pass rate (0.55|at most 0\.\d\d) is 0\.\d\d below the "
            r"baseline's 0.90, more than max_drop 0.10( \(decided with \d+ of 20 questions "
            r"still running\))?; this question passed it in the baseline",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*pass rate    95% CI     threshold    baseline    delta *change *verdict",
            "rag_set.yaml  faithfulness  20 *0.55         0.34-0.74  0.50         0.90        -0.35"
            " (max_drop 0.10)  regression (p=0.039)  FAILED (drop)",
            "against the baseline */base.json:",
            "  rag_set.yaml faithfulness: 8 pass -> fail, 1 fail -> pass (regression, p=0.039)",
            "    pass -> fail: q0: NO",
            "*",
            "    fail -> pass: q18: YES",
        ]
    )
    # 20 questions at 0.90 cannot see a drop of 0.10
    result.stdout.fnmatch_lines(
        [
            "warning: rag_set.yaml has 20 questions: it can only detect drops of 0.21 or more "
            "in faithfulness (max_drop 0.10)"
        ]
    )
    report = json.loads((gate.path / "head.json").read_text())
    [rag_set] = report["sets"]
    change = rag_set["baseline"]["metrics"]["faithfulness"]
    assert change["baseline_pass_rate"] == 0.9
    assert change["delta"] == pytest.approx(-0.35)
    assert change["pass_to_fail"] == [f"q{i}" for i in range(8)]
    assert change["fail_to_pass"] == ["q18"]
    assert change["change"] == "regression" and change["p_value"] == pytest.approx(20 / 512)
    assert rag_set["metrics"]["faithfulness"]["verdict"] == "FAILED (drop)"
    assert rag_set["metrics"]["faithfulness"]["detectable_drop"] == pytest.approx(0.2133, abs=1e-4)
    # every warning the terminal printed, in the report too
    assert report["notices"] == [
        "rag_set.yaml has 20 questions: it can only detect drops of 0.21 or more in "
        "faithfulness (max_drop 0.10)",
        "rag_set.yaml faithfulness: FAILED (drop) because the pass rate fell 0.35 below the "
        "baseline's 0.90, more than max_drop 0.10: a fixed bound, held whatever the p-value; "
        "the change column's p-value only says whether the flips could be judge noise",
    ]
    # and the baseline's answers to the questions that flipped or fail, to read side by side
    assert rag_set["baseline"]["responses"]["q0"] == "Answer: What about q0?"
    assert sorted(rag_set["baseline"]["responses"]) == sorted(
        ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q18", "q19"]
    )
    cases = {case.get("name"): case for case in ET.parse(gate.path / "junit.xml").iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["q0"].iter("property")}
    assert properties["rag.faithfulness.baseline"] == "passing"
    assert properties["rag.faithfulness.flipped"] == "True"
    properties = {p.get("name"): p.get("value") for p in cases["q19"].iter("property")}
    assert properties["rag.faithfulness.flipped"] == "False"


def test_a_noise_sized_change_is_within_noise_and_passes(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG", wrong(0, 18, 19))  # one more failure: 0.90 -> 0.85
    result = gate.runpytest("--rag-baseline=base.json")
    assert outcomes(result) == {"passed": 17, "tolerated": 3}
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml  faithfulness  20 *0.85 *0.90 *-0.05 (max_drop 0.10)  within noise (p=1)  ok",
            "  rag_set.yaml faithfulness: 1 pass -> fail, 0 fail -> pass (within noise, p=1)",
        ]
    )


def test_new_removed_and_unjudged_questions_are_not_flips(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # q19 removed, q20 added (failing), q3 unreadable now
    gate.makefile(".yaml", rag_set=question_file([*range(19), 20], max_drop=0.5))
    monkeypatch.setenv("WRONG", wrong(18, 20))
    monkeypatch.setenv("EYES", wrong(3))
    result = gate.runpytest("--rag-baseline=base.json", "--rag-report=head.json")
    result.stdout.fnmatch_lines(
        [
            "  rag_set.yaml: new: q20",
            "  rag_set.yaml: removed: q19",
            "  rag_set.yaml faithfulness: 0 pass -> fail, 0 fail -> pass (within noise, p=1)",
            "    errored or invalid in either run: q3",
        ]
    )
    change = json.loads((gate.path / "head.json").read_text())["sets"][0]["baseline"]
    assert change["new"] == ["q20"] and change["removed"] == ["q19"]
    assert change["metrics"]["faithfulness"]["apart"] == ["q3"]
    assert change["metrics"]["faithfulness"]["pass_to_fail"] == []


def test_a_set_missing_from_the_baseline_is_gated_on_thresholds(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate.makefile(".yaml", rag_other=question_file(range(4)))
    monkeypatch.setenv("WRONG", wrong(18, 19, 0))
    result = gate.runpytest("--rag-baseline=base.json")
    result.stdout.fnmatch_lines(
        ["rag_other.yaml  faithfulness *none *n/a *n/a *ok", "  no baseline for rag_other.yaml"]
    )
    assert result.ret == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "*--rag-baseline: */nope.json: no such file; give the --rag-report JSON*"),
        ("{not json", "*--rag-baseline: */nope.json:1: not a pytest-rageval report: invalid JSON*"),
        ('{"sets": []}', "*nope.json: not a pytest-rageval report (no 'version')*"),
        (
            '{"version": 99, "sets": []}',
            "*nope.json: report version 99, and this pytest-rageval reads version 1; write "
            "the baseline again with this version",
        ),
        ('{"version": 1, "sets": [{"metrics": {}}]}', "*nope.json: sets?0? has no 'id'"),
    ],
)
def test_a_bad_baseline_is_a_usage_error(
    project: pytest.Pytester, content: str | None, message: str
) -> None:
    project.makefile(".yaml", rag_set=question_file(range(2)))
    if content is not None:
        (project.path / "nope.json").write_text(content)
    result = project.runpytest("--rag-baseline=nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_confidence_gates_on_the_lower_wilson_bound(project: pytest.Pytester) -> None:
    project.makeconftest(CONFTEST)
    # 10 of 10 pass: the rate 1.00 meets 0.8, but its 95% interval's lower bound, 0.72, does not
    project.makefile(".yaml", rag_set=question_file(range(10)).replace("0.5}", "0.8}"))
    assert project.runpytest().ret == pytest.ExitCode.OK
    result = project.runpytest("-o", "rag_confidence=0.95")
    # no question failed, yet the set does: the run fails, and the summary says why
    assert outcomes(result) == {"passed": 10}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml  faithfulness  10 *1.00         0.72-1.00  0.80 *FAILED",
            "FAILED rag_set.yaml: faithfulness pass rate 10/10 = 1.00, lower bound of its 95% "
            "Wilson interval 0.72 < threshold 0.80, and no question failed it: the set fails "
            "the run",
        ]
    )
    # a marker's confidence wins over the ini's; 0.5 puts the bound at 0.91
    project.makeconftest(
        CONFTEST
        + """
def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.rag_threshold(confidence=0.5))
"""
    )
    result = project.runpytest("-o", "rag_confidence=0.95")
    assert result.ret == pytest.ExitCode.OK


def test_bad_gate_options_name_where_they_came_from(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=question_file(range(2), max_drop=1.5))
    result = project.runpytest()
    result.stdout.fnmatch_lines(["rag_set.yaml:2: max_drop must be a fraction in ?0, 1?, got 1.5"])
    result = project.runpytest("-o", "rag_confidence=1", "--ignore=rag_set.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*-o rag_confidence: rag_confidence must be a level strictly between 0 and 1 such as "
            "0.95, got 1.0*"
        ]
    )


def table_and_flips(text: str) -> list[str]:
    """The table and the flips of a terminal section, as lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("set "))
    end = next(
        i
        for i, line in enumerate(lines)
        if i > start
        and (line.startswith(("warning:", "errors by cause", "rag ", "FAILED ")) or "===" in line)
    )
    return lines[start:end]


def test_rageval_diff_matches_the_in_run_comparison(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    in_run = gate.runpytest("--rag-baseline=base.json", "--rag-report=head.json")
    offline = gate.run(RAGEVAL, "diff", "base.json", "head.json")
    assert offline.ret == 1  # a significant regression
    expected = table_and_flips(in_run.stdout.str())
    expected = [line.replace(str(gate.path / "base.json"), "base.json") for line in expected]
    assert table_and_flips(offline.stdout.str() + "\nrag end\n") == expected
    offline.stdout.fnmatch_lines(
        ["FAILED rag_set.yaml faithfulness: significant regression (exact McNemar p=0.039)"]
    )
    with_drop = gate.run(RAGEVAL, "diff", "base.json", "head.json", "--max-drop", "0.4")
    with_drop.stdout.fnmatch_lines(["FAILED*significant regression*"])
    # the same file on both sides: nothing changed
    same = gate.run(RAGEVAL, "diff", "head.json", "head.json", "--max-drop", "0.05")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["  no question changed its verdict"])
    missing = gate.run(RAGEVAL, "diff", "nope.json", "head.json")
    assert missing.ret == 2
    missing.stderr.fnmatch_lines(["rageval: error: nope.json: no such file*"])
    # a saved report rendered again, without running anything
    rendered = gate.run(
        RAGEVAL, "report", "head.json", "--html", "again.html", "--markdown", "a.md"
    )
    assert rendered.ret == 0
    assert (gate.path / "again.html").read_text().startswith("<!DOCTYPE html>")
    assert "| `rag_set.yaml` | `faithfulness` | 0.55 (11/20) |" in (gate.path / "a.md").read_text()
    printed = gate.run(RAGEVAL, "report", "head.json")
    printed.stdout.fnmatch_lines(["### pytest-rageval: FAILED (0 of 1 set metrics ok)"])


def test_markdown_summary_and_github_step_summary(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    step = gate.path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = gate.runpytest(
        "--rag-baseline=base.json", "--rag-markdown=out/summary.md", "--rag-html=out/r.html"
    )
    result.stdout.fnmatch_lines(
        ["rag markdown summary written to */out/summary.md", "rag html report written to */r.html"]
    )
    text = (gate.path / "out" / "summary.md").read_text()
    assert text.startswith("### pytest-rageval: FAILED (0 of 1 set metrics ok)")
    assert (
        "| `rag_set.yaml` | `faithfulness` | 0.55 (11/20) | 0.34-0.74 | 0.50 | 0.90 | "
        "-0.35 (max_drop 0.10) | regression (p=0.039) | 1 | 0 | ❌ FAILED (drop) |"
    ) not in text  # invalid is 0 here: the exact row follows
    assert (
        "| `rag_set.yaml` | `faithfulness` | 0.55 (11/20) | 0.34-0.74 | 0.50 | 0.90 | "
        "-0.35 (max_drop 0.10) | regression (p=0.039) | 0 | 0 | ❌ FAILED (drop) |"
    ) in text
    assert (
        "- `rag_set.yaml` `faithfulness`: 8 pass → fail, 1 fail → pass (regression, p=0.039)"
        in text
    )
    # why each flipped: what was asked, the answer now and the baseline's (the judge's
    # bare NO and YES say nothing more, so they are left out)
    lines = text.splitlines()
    at = lines.index("  - ❌ `q0`")
    assert lines[at : at + 4] == [
        "  - ❌ `q0`",
        "    - asked: `What about q0?`",
        "    - answer now: `Answer: What about q0? WRONG`",
        "    - baseline's answer: `Answer: What about q0?`",
    ]
    at = lines.index("  - ✅ `q18`")
    assert lines[at + 2 : at + 4] == [
        "    - answer now: `Answer: What about q18?`",
        "    - baseline's answer: `Answer: What about q18? WRONG`",
    ]
    # q19 failed before and fails now, tolerated: listed in neither
    assert "q19" not in text.split("**Since the baseline**")[1]
    # the terminal's warnings are in the summary too, and the drop explains itself
    warnings = text.split("**Errors and warnings**")[1]
    assert (
        "- `rag_set.yaml has 20 questions: it can only detect drops of 0.21 or more in "
        "faithfulness (max_drop 0.10)`"
    ) in warnings
    assert (
        "- `rag_set.yaml faithfulness: FAILED (drop) because the pass rate fell 0.35 below the "
        "baseline's 0.90, more than max_drop 0.10: a fixed bound, held whatever the p-value; "
        "the change column's p-value only says whether the flips could be judge noise`"
    ) in warnings
    # no path of the runner's machine: the baseline as the rootdir has it
    assert str(gate.path) not in text and "**Since the baseline** (`base.json`)" in text
    assert step.read_text() == "earlier step\n" + text


def test_the_markdown_lists_failed_questions_with_their_sources(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(CONFTEST)
    project.makefile(
        ".yaml",
        rag_set="evaluators: [faithfulness]\nthresholds: {faithfulness: 0.9}\nquestions:\n"
        '  - {id: q0, query: "What about q0?"}\n  - {id: q1, query: "What about q1?"}\n',
    )
    monkeypatch.setenv("WRONG", "q1")
    monkeypatch.setenv("NODES", "1")
    project.runpytest("--rag-markdown=s.md")
    lines = (project.path / "s.md").read_text().splitlines()
    at = lines.index("**Failed questions**")
    assert lines[at + 1 : at + 6] == [
        "",
        "  - ❌ `rag_set.yaml` `q1` (`faithfulness`)",
        "    - asked: `What about q1?`",
        "    - answer now: `Answer: What about q1? WRONG`",
        "    - sources: `doc-q1.md`",
    ]


def test_a_long_list_of_flips_is_cut_for_a_comment(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate.makefile(".yaml", rag_set=question_file(range(60)))
    monkeypatch.setenv("WRONG", "")
    gate.runpytest("--rag-report=base.json")
    monkeypatch.setenv("WRONG", wrong(*range(30)))
    gate.runpytest("--rag-baseline=base.json", "--rag-markdown=s.md", "--rag-html=r.html")
    text = (gate.path / "s.md").read_text()
    assert text.count("  - ❌") == 20
    assert "- … and 10 more flipped questions (see the HTML report, `r.html`)" in text


# -- the HTML report, rendered by a real browser -----------------------------------------

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)


def rendered(page: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_html_report_is_self_contained_and_escaped(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate.makefile(
        ".yaml",
        rag_set=question_file(range(20))
        + '  - {id: tricky, query: "<script>alert(1)</script> q99?"}\n',
    )
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    gate.runpytest("--rag-baseline=base.json", "--rag-html=r.html")
    page = (gate.path / "r.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    # nothing is fetched: no scripts, styles, images or fonts from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium here: install Debian's chromium package (apt-get install -y chromium)",
)
def test_the_html_report_renders_in_chromium(
    gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    gate.runpytest("--rag-baseline=base.json", "--rag-html=out/r.html")
    page = gate.path / "out" / "r.html"
    dom = rendered(page)
    assert '<span class="status-FAILED" id="status">FAILED</span>' in dom
    # the script ran: it counts the rows it shows
    assert '<span class="muted" id="shown">20 of 20 questions</span>' in dom
    # the chart: the rate, its interval, the threshold line and the baseline marker
    for mark in ('class="rate"', 'class="interval"', 'class="threshold"', 'class="baseline"'):
        assert mark in dom
    assert dom.count('<tr class="question"') == 20
    assert dom.count("pass → fail</span>") == 8 and dom.count("fail → pass</span>") == 1
    assert "regression (p=0.039)" in dom and "FAILED (drop)" in dom
    # filtering, from a link: only the flipped questions, then only the failed ones
    flipped = rendered(page, "#flipped=1")
    assert '<span class="muted" id="shown">9 of 20 questions</span>' in flipped
    failed = rendered(page, "#outcome=failed")
    assert '<span class="muted" id="shown">8 of 20 questions</span>' in failed
    assert (
        'data-id="q18" data-outcome="passed" data-flipped="yes" data-rank="000008" style="display: none;"'
        in failed
    )
    # flipped and failed questions first: q0-q7 (pass -> fail), q18 (fail -> pass), q19
    # (fails as before), then the 10 that pass as before
    order = re.findall(r'<tr class="question" data-set="[^"]*" data-id="(q\d+)"', dom)
    assert order == [*(f"q{i}" for i in range(8)), "q18", "q19", *(f"q{i}" for i in range(8, 18))]
    # the baseline's answer beside the new one; the chart's legend and tooltip
    assert (
        '<span class="label">now</span><span class="response">Answer: What about q0? WRONG</span>'
        '<div class="before"><span class="label">baseline</span>'
        '<span class="baseline-response">Answer: What about q0?</span></div>'
    ) in dom
    assert 'id="legend"' in dom and "baseline's pass rate</span>" in dom
    assert "<title>pass rate 0.55 (dot), 95% CI 0.34-0.74 (grey bar), threshold 0.50" in dom
    # the warnings the terminal printed
    assert (
        '<li class="notice">rag_set.yaml has 20 questions: it can only detect drops of 0.21 or '
        "more in faithfulness (max_drop 0.10)</li>"
    ) in dom
    assert "-0.35 (max_drop 0.10)" in dom


def test_the_drop_gate_under_xdist(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    gate.makefile(".yaml", rag_other=question_file(range(50, 54)))
    monkeypatch.setenv("WRONG", wrong(*range(8), 19))
    result = gate.runpytest_subprocess("-n", "2", "--rag-baseline=base.json")
    assert outcomes(result) == {"passed": 15, "failed": 8, "tolerated": 1}
    result.stdout.fnmatch_lines(
        [
            "rag_other.yaml  faithfulness *none *n/a *n/a *ok",
            "rag_set.yaml    faithfulness  20 *0.55 *0.90 *-0.35 *regression (p=0.039)  FAILED (drop)",
            "  no baseline for rag_other.yaml",
            "  rag_set.yaml faithfulness: 8 pass -> fail, 1 fail -> pass (regression, p=0.039)",
        ]
    )


SLOW_CONFTEST = """
import os
import time

import pytest
from fakes import ScriptedLLM


@pytest.fixture(scope="session")
def rag_judge_llm():
    return ScriptedLLM()


@pytest.fixture(scope="session")
def rag_query_engine():
    # q0 answers at once (WRONG when $WRONG says so); the others a little later, so that
    # q0 is decided while they still run
    def app(query):
        qid = query.split()[-1].rstrip("?")
        if qid != "q0":
            time.sleep(0.4)
        wrong = qid in os.environ.get("WRONG", "").split(",")
        return f"Answer: {query}" + (" WRONG" if wrong else ""), [f"Context: {query}"]

    return app
"""

STATED = re.compile(
    r"pass rate (?P<bound>at most |at least )?(?P<k>\d+)/(?P<n>\d+) = [\d.]+"
    r"(, lower bound of its \d+% Wilson interval (?P<lower>[\d.]+))? (?P<rel><|>=) "
    r"threshold (?P<t>[\d.]+)"
)


def false_statements(text: str) -> list[str]:
    """Lines whose stated comparison of a pass rate with its threshold is false."""
    false = []
    for line in text.splitlines():
        found = STATED.search(line)
        if found is None:
            continue
        value = int(found["k"]) / int(found["n"])
        if found["lower"] is not None:
            value = float(found["lower"])
        holds = value < float(found["t"]) if found["rel"] == "<" else value >= float(found["t"])
        if not holds:
            false.append(line)
    return false


def test_a_drop_failure_states_only_true_bounds_and_the_json_agrees(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the case: one question worse, thresholds met, max_drop 0.05 crossed
    project.makeconftest(SLOW_CONFTEST)
    lines = [
        "evaluators: [faithfulness, relevancy]",
        "thresholds: {faithfulness: 0.9, relevancy: 0.8}",
        "max_drop: 0.05",
        "questions:",
    ]
    lines += [f'  - {{id: q{i}, query: "What about q{i}?"}}' for i in range(10)]
    project.makefile(".yaml", rag_set="\n".join(lines) + "\n")
    assert project.runpytest("--rag-report=base.json", "--rag-workers=10").ret == 0
    monkeypatch.setenv("WRONG", "q0")
    result = project.runpytest(
        "--rag-baseline=base.json", "--rag-report=head.json", "--rag-workers=10"
    )
    assert outcomes(result) == {"passed": 9, "failed": 1}
    assert result.ret == 1
    text = result.stdout.str()
    assert false_statements(text) == []
    # q0 is decided by the drop gate while the other nine still run
    result.stdout.re_match_lines(
        [
            "rag question failed faithfulness, relevancy",
            r"  rag_set.yaml: faithfulness pass rate at most 0.90 is 0.10 below the baseline's "
            r"1.00, more than max_drop 0.05 \(decided with 9 of 10 questions still running\); "
            "this question passed it in the baseline",
        ]
    )
    assert "< threshold" not in text
    report = json.loads((project.path / "head.json").read_text())
    metrics = report["sets"][0]["metrics"]
    for name in ("faithfulness", "relevancy"):
        assert metrics[name]["verdict"] == "FAILED (drop)"
        assert metrics[name]["ok"] is False
        assert report["sets"][0]["baseline"]["metrics"][name]["delta"] == -0.1
    assert report["gate"] == {"passed": False, "exitstatus": 1}
    base = json.loads((project.path / "base.json").read_text())
    assert base["gate"] == {"passed": True, "exitstatus": 0}
    assert all(m["ok"] for m in base["sets"][0]["metrics"].values())


def test_a_threshold_decided_early_says_at_most_and_is_true() -> None:
    # unit check of the wording against hand-worked cases, no pytest run
    from pytest_rageval.gate import MetricRate
    from pytest_rageval.wording import describe_rate

    crossed = MetricRate(n=10, passed=5, threshold=0.9, pending=3)  # at most 8/10 < 0.9
    met = MetricRate(n=10, passed=9, threshold=0.8, pending=1)  # at least 9/10 >= 0.8
    open_ = MetricRate(n=10, passed=5, threshold=0.8, pending=4)  # 0.5 .. 0.9: undecided
    assert describe_rate("s", "m", crossed) == (
        "s: m pass rate at most 8/10 = 0.80 < threshold 0.90 "
        "(decided with 3 of 10 questions still running)"
    )
    assert describe_rate("s", "m", met) == (
        "s: m pass rate at least 9/10 = 0.90 >= threshold 0.80 "
        "(decided with 1 of 10 questions still running)"
    )
    assert describe_rate("s", "m", open_) == (
        "s: m pass rate between 5/10 = 0.50 and 9/10 = 0.90, threshold 0.80 "
        "(not decided yet: 4 of 10 questions still running)"
    )
    for rate in (crossed, met, open_):
        assert false_statements(describe_rate("s", "m", rate)) == []
