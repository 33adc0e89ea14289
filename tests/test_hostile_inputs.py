"""Input files that are wrong on purpose or by accident: numbers that are not numbers in
a baseline, YAML alias bombs, nesting deeper than Python recurses, huge CSV fields,
duplicate keys, and ids that would fool a reader. Each ends in bounded time with a short
message naming the file (and line), never a traceback or a hang."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import console
import pytest
from llama_index.core.evaluation import EvaluationResult

from pytest_rageval.gate import Gate, MetricRate, Tally
from pytest_rageval.questions import Question, QuestionFileError, load_file
from pytest_rageval.runner import QuestionResult
from pytest_rageval.sets import RagSet
from pytest_rageval.verdicts import MetricResult

GATED = """\
evaluators: [faithfulness]
thresholds: {faithfulness: 0.5}
max_drop: 0.1
questions:
  - {id: q0, query: "What about q0?"}
  - {id: q1, query: "What about WRONG q1?"}
  - {id: q2, query: "What about q2?"}
  - {id: q3, query: "What about q3?"}
"""
"""Four questions; q1's answer is judged wrong (the scripted judge says NO to WRONG)."""


def baseline(pass_rate: str = "1.0", version: str = "1", rate_key: str = "pass_rate") -> str:
    """A report whose questions all passed, as the literal JSON text a file would hold
    (NaN and Infinity are what Python's json module writes for those floats)."""
    passing = '{"faithfulness": {"result": "passing"}}'
    questions = ", ".join(f'{{"id": "q{i}", "metrics": {passing}}}' for i in range(4))
    return (
        f'{{"version": {version}, "sets": [{{"id": "rag_set.yaml", "metrics": '
        f'{{"faithfulness": {{"{rate_key}": {pass_rate}, "threshold": 0.5}}}}, '
        f'"questions": [{questions}]}}]}}'
    )


# -- item 3: a baseline whose numbers are not pass rates ----------------------------------

RATE = "sets[[]0[]].metrics[[]'faithfulness'[]]"
FRACTION = "must be a number from 0 to 1 (or null); write the report again with pytest --rag-report"


def test_a_nan_pass_rate_in_the_baseline_is_a_usage_error_not_a_hang(
    project: pytest.Pytester,
) -> None:
    # before: q1 newly fails, the drop gate compares with NaN and waits forever
    project.makefile(".yaml", rag_set=GATED)
    (project.path / "base.json").write_text(baseline("NaN"))
    started = time.monotonic()
    result = project.runpytest_subprocess("--rag-baseline=base.json", timeout=60)
    assert time.monotonic() - started < 30
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --rag-baseline: */base.json: {RATE}.pass_rate is nan, and it {FRACTION}"]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (baseline("Infinity"), f"{RATE}.pass_rate is inf, and it {FRACTION}"),
        (baseline("-Infinity"), f"{RATE}.pass_rate is -inf, and it {FRACTION}"),
        (baseline("5.0"), f"{RATE}.pass_rate is 5.0, and it {FRACTION}"),
        (baseline("-3"), f"{RATE}.pass_rate is -3, and it {FRACTION}"),
        (baseline('"0.9"'), f"{RATE}.pass_rate is '0.9', and it {FRACTION}"),
        (
            baseline("2.5", rate_key="n"),
            f"{RATE}.n is 2.5, and it must be a whole number >= 0 (or null); write the report "
            "again with pytest --rag-report",
        ),
        (
            baseline(version="true"),
            "report version True, and this pytest-rageval reads version 1; write the baseline "
            "again with this version",
        ),
    ],
)
def test_baseline_numbers_out_of_their_range_are_a_usage_error(
    project: pytest.Pytester, text: str, message: str
) -> None:
    project.makefile(".yaml", rag_set=GATED)
    (project.path / "base.json").write_text(text)
    result = project.runpytest("--rag-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --rag-baseline: */base.json: {message}"])


def test_the_drop_gate_decides_once_every_result_is_in_whatever_the_baseline() -> None:
    # the loader refuses a NaN baseline now; the wait must end even if one got through:
    # q1 fails, newly, against a NaN floor that no comparison can settle early
    rset = RagSet("rag_set.yaml", Gate({"faithfulness": 0.5}))
    rset.members = {f"rag_set.yaml::q{i}": Question(f"Q{i}", id=f"q{i}") for i in range(2)}
    rset.tally = Tally(
        {"faithfulness": 2},
        {"faithfulness": 0.5},
        baselines={"faithfulness": float("nan")},
        max_drop=0.1,
    )
    for (nodeid, question), passing in zip(rset.members.items(), [True, False], strict=True):
        judged = EvaluationResult(passing=passing, score=float(passing), feedback="")
        rset.finished(
            nodeid,
            QuestionResult(
                question, evaluations={"faithfulness": judged}, applicable=("faithfulness",)
            ),
        )
    failing = {"faithfulness": MetricResult(passing=False, score=0.0)}
    decided: list[tuple[str, dict[str, MetricRate]]] = []
    waiter = threading.Thread(
        target=lambda: decided.append(rset.decide(failing, frozenset({"faithfulness"}))),
        daemon=True,
    )
    waiter.start()
    waiter.join(timeout=5)
    assert not waiter.is_alive(), "decide() still waiting with every result in"
    [(outcome, rates)] = decided
    # 1 of 2 passed: 0.50 meets the threshold 0.5, and there is no finite floor to fall below
    assert outcome == "tolerated"
    assert (rates["faithfulness"].passed, rates["faithfulness"].n) == (1, 2)


# -- item 9: alias bombs, deep nesting, huge CSV fields, duplicate keys -------------------

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "questions: [{query: Where is Paris?, id: *i}]",
        "",
    ]
)
"""A question file of under 500 bytes whose ``id`` is 9**9 (387 million) strings."""


def test_a_yaml_alias_bomb_is_refused_at_once_in_a_short_message(
    project: pytest.Pytester,
) -> None:
    assert len(BOMB.encode()) < 500
    path = project.makefile(".yaml", rag_bomb=BOMB)
    # the loader alone: it took 39-62 s and 5.5 GB before, expanding the id into its message
    started = time.monotonic()
    with pytest.raises(QuestionFileError) as refused:
        load_file(path, "rag_bomb.yaml")
    assert time.monotonic() - started < 0.5
    assert len(str(refused.value)) < 2000
    # and as a user sees it (the time here is mostly pytest's own start)
    started = time.monotonic()
    result = project.runpytest("--collect-only")
    assert time.monotonic() - started < 10
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting rag_bomb.yaml*",
            "rag_bomb.yaml:7: this value, its YAML aliases (*name) written out, is longer than "
            "10,000,4?? characters: refused as an alias bomb; write the values out, or repeat "
            "them less",
        ]
    )
    assert len(result.stdout.str()) < 2000


def test_an_alias_inside_the_value_it_names_is_refused(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_loop="questions: &q\n  - {query: Q, tags: *q}\n")
    result = project.runpytest("--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "rag_loop.yaml:1: a YAML alias (*name) refers to this value from inside it, which "
            "makes it endless; write the value out"
        ]
    )


def test_values_in_messages_are_quoted_short(project: pytest.Pytester) -> None:
    # no alias: a 100,000-character engine name is quoted in its first 200 characters
    project.makefile(
        ".yaml", rag_long=f"query_engine: {'x-' * 50_000}\nquestions: [{{query: Q}}]\n"
    )
    result = project.runpytest("--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["rag_long.yaml: 'query_engine' must be the name of a fixture (an identifier), got 'x-x-*"]
    )
    [line] = [line for line in result.stdout.lines if line.startswith("rag_long.yaml:")]
    assert len(line) < 400


def test_an_alias_under_the_limit_is_quoted_short_in_an_evaluator_option(
    project: pytest.Pytester,
) -> None:
    # 9**6 strings (2 million characters written out): under the alias limit, so it
    # loads, and the built-in evaluator quotes it; that was 13 MB of output
    anchors = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [
        f"&{name} [{', '.join([f'*{prev}'] * 9)}]"
        for prev, name in zip("abcde", "bcdef", strict=True)
    ]
    project.makefile(
        ".yaml",
        rag_set=(
            f"evaluators: [{{recall_at_k: {{k: [{', '.join(anchors)}]}}}}]\n"
            "questions: [{query: Where is Paris?, id: q, expected_sources: [a.txt]}]\n"
        ),
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # the failure's own line (the short summary is cut to the terminal's width)
            "rag_set.yaml: the options of evaluator "
            "'recall_at_k' are not valid: k must be a whole number >= 1 (or None for all), "
            "got [[][[]'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', ...], *'lol'...; "
            "it takes k, threshold"
        ]
    )
    assert len(result.stdout.str()) < 5000


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "rag_deep.json",
            '{"questions": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "rag_deep.json: lists or objects are nested too deeply to read (hundreds of levels "
            "inside each other); a question file needs a few",
        ),
        (
            "rag_deep.jsonl",
            '{"query": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
            "rag_deep.jsonl:2: lists or objects are nested too deeply to read*",
        ),
        (
            "rag_deep.yaml",
            "questions: [" + "{a: " * 300 + "1" + "}" * 300 + "]\n",
            "rag_deep.yaml: lists or mappings are nested too deeply to read*",
        ),
        (
            "rag_big.csv",
            "id,query\nfine,Where is Paris?\nbig," + "x" * 140_000 + "\n",
            "rag_big.csv:3: a value is longer than the CSV reader takes (131,072 characters); "
            "shorten it, or write this set as YAML or JSONL",
        ),
        (
            "rag_twice.yaml",
            "questions:\n  - id: a\n    query: Where is Paris?\n    query: Where is Rome?\n",
            "rag_twice.yaml:4: the key 'query' is given twice in one mapping (first at line 3), "
            "and YAML would keep only the last value; remove or rename one of them",
        ),
        (
            "rag_twice.csv",
            "id,query,query\na,Where is Paris?,Where is Rome?\n",
            "rag_twice.csv:1: the column 'query' is given twice in the header row, and only "
            "its last value would be kept; remove or rename one of them",
        ),
        (
            "rag_twice.jsonl",
            '{"query": "fine"}\n{"query": "Where is Paris?", "query": "Where is Rome?"}\n',
            "rag_twice.jsonl:2: the key 'query' is given twice in one object, and JSON would "
            "keep only the last value; remove or rename one of them",
        ),
    ],
)
def test_hostile_files_are_clean_errors(
    project: pytest.Pytester, name: str, content: str, message: str
) -> None:
    (project.path / name).write_text(content)
    result = project.runpytest("--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*ERROR collecting {name}*", message])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*RecursionError*")
    result.stdout.no_fnmatch_line("*_csv.Error*")


def test_keys_merged_with_an_alias_may_be_overridden(project: pytest.Pytester) -> None:
    # YAML's merge key: overriding what it brings in is its purpose, not a duplicate
    project.makefile(
        ".yaml",
        rag_merge="questions:\n  - &base {id: a, query: Where is Paris?}\n  - {<<: *base, id: b}\n",
    )
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["rag_merge.yaml::a PASSED*", "rag_merge.yaml::b PASSED*"])


def test_a_deeply_nested_baseline_is_a_usage_error_and_rc_2_in_rageval_diff(
    project: pytest.Pytester,
) -> None:
    project.makefile(".yaml", rag_set=GATED)
    (project.path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (project.path / "head.json").write_text(baseline())
    message = (
        "*deep.json: not a pytest-rageval report: lists or objects nested too deeply to read "
        "(hundreds of levels inside each other); a baseline is the JSON that --rag-report writes"
    )
    result = project.runpytest("--rag-baseline=deep.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --rag-baseline: " + message])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    for args in (("deep.json", "head.json"), ("head.json", "deep.json")):
        diff = console.rageval("diff", *args, cwd=project.path)
        assert diff.returncode == 2  # not 1, which says "regression"
        assert diff.stderr == f"rageval: error: {message.lstrip('*')}\n"


def test_rageval_report_on_a_report_with_strings_for_numbers(tmp_path: Path) -> None:
    document = json.loads(baseline())
    document["sets"][0]["metrics"]["faithfulness"].update(n="4", passed="3", pass_rate="0.75")
    (tmp_path / "hand.json").write_text(json.dumps(document))
    done = console.rageval("report", "hand.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "rageval: error: hand.json: sets[0].metrics['faithfulness'].n is '4', and it must be "
        "a whole number >= 0 (or null); write the report again with pytest --rag-report\n"
    )
    # numbers right, but a key every report has is gone: still no traceback
    document = json.loads(baseline())
    (tmp_path / "cut.json").write_text(json.dumps(document))
    done = console.rageval("report", "cut.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "rageval: error: cut.json: not a complete pytest-rageval report (no 'verdict'); write "
        "it again with pytest --rag-report\n"
    )


# -- ids and queries as a reader sees them ----------------------------------------------


def test_a_control_character_in_an_id_is_refused_at_its_line(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_ids='questions:\n  - {id: fine, query: "Q one"}\n  - {id: "a\\e[8mb", query: "Q two"}\n',
    )
    result = project.runpytest("--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "rag_ids.yaml:3: 'id' 'a\\x1b[[]8mb' contains the control character U+001B, which "
            "a terminal would act on or hide (the id is printed in the test id and in "
            "messages); remove it"
        ]
    )
    assert "\x1b" not in result.stdout.str()


def test_bidi_and_zero_width_characters_are_escaped_where_they_are_printed(
    project: pytest.Pytester,
) -> None:
    # U+202E reverses what follows it on screen: "q1\u202e2q" reads "q1q2"
    project.makefile(
        ".yaml",
        rag_set=(
            "evaluators: [faithfulness]\n"
            "questions:\n"
            '  - {id: "q1\\u202e2q", query: "WRONG \\u200bWhere\\u2066 is Paris?"}\n'
        ),
    )
    # it passed in the baseline, so the flip lists name it too
    (project.path / "base.json").write_text(
        '{"version": 1, "sets": [{"id": "rag_set.yaml", "metrics": {"faithfulness": '
        '{"pass_rate": 1.0}}, "questions": [{"id": "q1\\u202e2q", "metrics": '
        '{"faithfulness": {"result": "passing"}}}]}]}'
    )
    result = project.runpytest(
        "-v", "-rf", "--rag-baseline=base.json", "--rag-markdown=summary.md", "--rag-html=r.html"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml::q1\\u202e2q FAILED*",
            "query:    WRONG \\u200bWhere\\u2066 is Paris?",
            "    pass -> fail: q1\\u202e2q: NO",
            "FAILED rag_set.yaml::q1\\u202e2q - Failed: rag question failed faithfulness",
        ]
    )
    summary = (project.path / "summary.md").read_text()
    page = (project.path / "r.html").read_text()
    assert "  - ❌ `q1\\u202e2q`" in summary.splitlines()  # NO says nothing more
    assert '<td class="text">WRONG \\u200bWhere\\u2066 is Paris?</td>' in page
    assert ">q1\\u202e2q<" in page
    for text in (result.stdout.str(), summary, page):
        for hidden in ("\u202e", "\u200b", "\u2066"):
            assert hidden not in text
