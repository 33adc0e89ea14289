"""--rag-shard I/N and rageval merge: any number of shards, merged, say exactly what one
machine running the whole suite says; parts that are not one complete run are refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import llama_index.core  # noqa: F401  (numpy once per process: see conftest)
import pytest
from shard_project import CONFTEST, PLAIN_TEST, files

from pytest_rageval import cli
from pytest_rageval.cache import VerdictCache
from pytest_rageval.parts import PartError, Shard, assemble, part_document, shard_of

RUN = ("-p", "no:cacheprovider", "--rag-cache=off")


def make_project(pytester: pytest.Pytester, passing: bool = False) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain=PLAIN_TEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for name, body in files(passing).items():
        pytester.makefile(".yaml", **{name: body})


def with_baseline(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RAG_BEFORE", "1")
    pytester.runpytest(*RUN, "--rag-report=base.json")
    monkeypatch.delenv("RAG_BEFORE")
    return f"--rag-baseline={pytester.path / 'base.json'}"


def merge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = cli.main(["merge", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def table(lines: list[str]) -> list[str]:
    """The rag evaluation section, up to the files it wrote."""
    start = next(i for i, line in enumerate(lines) if " rag evaluation " in line) + 1
    end = next(i for i, line in enumerate(lines) if "written to" in line and i > start)
    return lines[start:end]


def comparable(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    document.pop("timing")
    document.pop("shards", None)
    return document


def junit_properties(path: Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    found = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
        if props:
            found[(case.get("classname", "").split(".")[0], case.get("name", ""))] = props
    return found


@pytest.mark.parametrize("passing", [False, True], ids=["failing", "passing"])
def test_shards_merged_say_what_one_machine_says(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    passing: bool,
) -> None:
    make_project(pytester, passing)
    baseline = with_baseline(pytester, monkeypatch)
    outputs = ["--rag-report=full.json", "--rag-markdown=full.md", "--junitxml=full.xml"]
    single = pytester.runpytest(*RUN, baseline, *outputs)
    expected_exit = 0 if passing else 1
    assert single.ret == expected_exit
    full = comparable(pytester.path / "full.json")
    verdicts = {s["id"]: s["metrics"]["vote"]["verdict"] for s in full["sets"]}
    counts = {s["id"]: s["metrics"]["vote"]["passed"] for s in full["sets"]}
    if passing:
        assert verdicts == dict.fromkeys(
            ["rag_drop.yaml", "rag_gated.yaml", "rag_repeat.yaml", "rag_tiny.yaml"], "ok"
        )
    else:  # worked out by hand from the project's scripts
        assert verdicts == {
            "rag_drop.yaml": "FAILED (drop)",
            "rag_failing.yaml": "ERROR",
            "rag_gated.yaml": "ok",
            "rag_invalid.yaml": "FAILED (invalid)",
            "rag_repeat.yaml": "ok",
            "rag_tiny.yaml": "ok",
            "rag_vital.yaml": "FAILED (must_pass)",
        }
        assert counts == {
            "rag_drop.yaml": 24,
            "rag_failing.yaml": 14,
            "rag_gated.yaml": 32,
            "rag_invalid.yaml": 16,
            "rag_repeat.yaml": 9,
            "rag_tiny.yaml": 2,
            "rag_vital.yaml": 9,
        }
    shard_counts = (3,) if passing else (1, 2, 3, 7)
    for count in shard_counts:
        parts = []
        for index in range(1, count + 1):
            part = f"part{count}-{index}.json"
            shard = pytester.runpytest(
                *RUN, baseline, f"--rag-shard={index}/{count}", f"--rag-report={part}"
            )
            # a shard fails only on final failures: must_pass and errors
            finals = sum(
                r["record"]["outcome"] in ("failed", "error")
                for r in json.loads((pytester.path / part).read_text())["records"]
            )
            assert shard.ret == (1 if finals else 0), shard.outlines[-3:]
            parts.append(str(pytester.path / part))
        merged = [f"--out=m{count}.json", f"--markdown=m{count}.md", f"--junitxml=m{count}.xml"]
        code, lines, err = merge(capsys, *parts, *merged)
        assert (code, err) == (expected_exit, "")
        assert comparable(pytester.path / f"m{count}.json") == full, count
        assert (pytester.path / f"m{count}.md").read_text() == (
            pytester.path / "full.md"
        ).read_text()
        assert table(lines) == table(single.outlines)
        assert junit_properties(pytester.path / f"m{count}.xml") == junit_properties(
            pytester.path / "full.xml"
        )


def test_a_shard_reports_judged_questions_and_runs_other_tests_where_asked(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester)
    result = pytester.runpytest(*RUN, "--rag-shard=2/3", "--rag-report=p.json", "--rag-rpm=60000")
    part = json.loads((pytester.path / "p.json").read_text())
    judged = sum(r["record"]["outcome"] == "judged" for r in part["records"])
    assert judged > 0
    outcomes = result.parseoutcomes()
    assert outcomes["judged"] == judged
    assert outcomes["deselected"] == 134 - len(part["records"])
    assert part["shard"] == {"index": 2, "count": 3, "others": "all"}
    assert part["sizes"] == {
        "rag_drop.yaml": 30,
        "rag_failing.yaml": 20,
        "rag_gated.yaml": 40,
        "rag_invalid.yaml": 20,
        "rag_repeat.yaml": 12,
        "rag_tiny.yaml": 2,
        "rag_vital.yaml": 10,
    }
    # each shard takes a third of the run's --rag-rpm
    result.stdout.fnmatch_lines(
        [
            "rageval: *rpm=20000,*",
            "rageval shard: 2/3 (others: all, rpm 20000 of 60000)",
            "*rag shard 2/3*",
        ]
    )
    assert (
        "test_plain.py::test_plain PASSED"
        in pytester.runpytest(*RUN, "--rag-shard=2/3", "-v").stdout.str()
    )
    first_only = pytester.runpytest(*RUN, "--rag-shard=2/3", "--rag-shard-others=first", "-v")
    assert "test_plain" not in first_only.stdout.str()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--rag-shard=4/3"],
            "ERROR: --rag-shard: '4/3' is not a shard; give I/N with 1 <= I <= N*",
        ),
        (["--rag-shard=two"], "ERROR: --rag-shard: 'two' is not a shard*"),
        (
            ["--rag-shard=1/2", "--rag-shard-others=some"],
            "ERROR: --rag-shard-others: 'some' is not one of all, first",
        ),
    ],
)
def test_a_bad_shard_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    make_project(pytester)
    result = pytester.runpytest(*RUN, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_sequential_sets_are_refused_in_shards(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(
        ".yaml",
        rag_seq="evaluators: [vote]\nsample: sequential\nquestions:\n  - {id: a, query: 'P a'}\n",
    )
    result = pytester.runpytest(*RUN, "--rag-shard=1/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: rag_seq.yaml: sample: sequential cannot run in shards (--rag-shard 1/2)*--rag-sample all*"
        ]
    )
    assert pytester.runpytest(*RUN, "--rag-shard=1/2", "--rag-sample=all").ret in (0, 1)


def test_the_merge_refuses_parts_that_are_not_one_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(pytester, passing=True)
    parts = []
    for index in (1, 2, 3):
        pytester.runpytest(*RUN, f"--rag-shard={index}/3", f"--rag-report=p{index}.json")
        parts.append(str(pytester.path / f"p{index}.json"))
    p1, p2, p3 = parts
    assert merge(capsys, p1, p2, p3)[0] == 0
    code, _, err = merge(capsys, p1, p3)
    assert code == 2 and f"shard 2/3 missing: 2 of 3 parts given ({p1}, {p3})" in err
    code, _, err = merge(capsys, p1, p2, p2, p3)
    assert code == 2 and f"{p2}: shard 2/3 twice (also {p2})" in err
    # a part of a run with another threshold
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nrag_thresholds = vote=0.1\n"
    )
    pytester.runpytest(*RUN, "--rag-shard=2/3", "--rag-report=other.json")
    other = str(pytester.path / "other.json")
    code, _, err = merge(capsys, p1, other, p3)
    assert code == 2 and f"{other}: from another run than {p1}" in err
    cut = pytester.path / "cut.json"
    cut.write_text(Path(p2).read_text()[:500])
    code, _, err = merge(capsys, p1, str(cut), p3)
    assert code == 2 and f"{cut}:" in err and "not a complete shard report (invalid JSON" in err
    code, _, err = merge(capsys, p1, str(pytester.path / "base.json"), p3)
    assert code == 2 and "no such file" in err


def test_every_question_lands_in_exactly_one_of_seven_shards() -> None:
    # the reference: SHA-256 of "set\0id", as an integer, modulo the count
    for set_name, qid in [("rag_a.yaml", "q0"), ("rag_a.yaml", "q7"), ("s", "x")]:
        digest = int(hashlib.sha256(f"{set_name}\x00{qid}".encode()).hexdigest(), 16)
        assert shard_of(set_name, qid, 7) == digest % 7 + 1
    assert [shard_of("rag_a.yaml", f"q{i}", 7) for i in range(8)] == [1, 5, 5, 3, 3, 6, 5, 3]
    sets = [f"rag_{n}.yaml" for n in range(5)]
    questions = [(s, f"q{i}") for s in sets for i in range(4000)]  # 20,000
    positions = {q: i for i, q in enumerate(questions)}
    parts = []
    for index in range(1, 8):
        shard = Shard(index, 7)
        mine = [
            {"set": s, "id": q, "outcome": "passed", "metrics": {}}
            for s, q in questions
            if shard.keeps(s, q)
        ]
        doc = part_document(
            shard,
            fingerprint="f",
            sizes=dict.fromkeys(sets, 4000),
            gates={},
            records=mine,
            positions=positions,
            run={},
        )
        parts.append(read_part_from(doc, f"p{index}"))
    sizes = [len(p.document["records"]) for p in parts]
    assert sum(sizes) == 20_000 and min(sizes) > 2500
    run = assemble(parts)
    assert [(r["set"], r["id"]) for r in run.records] == questions
    twice = parts[1].document["records"][0]  # shard 2's first question, also in shard 3
    assert twice["record"]["id"] == "q5" and twice["record"]["set"] == "rag_0.yaml"
    moved = read_part_from(json.loads(json.dumps(parts[2].document)), "p3")
    moved.document["records"].append(twice)
    with pytest.raises(PartError, match=r"p3: question 'q5' of rag_0\.yaml is also in p2"):
        assemble([*parts[:2], moved, *parts[3:]])
    lost = read_part_from(json.loads(json.dumps(parts[4].document)), "p5")
    del lost.document["records"][10]
    with pytest.raises(
        PartError, match=r"rag_\d\.yaml: 3999 of its 4000 questions are in the parts"
    ):
        assemble([*parts[:4], lost, *parts[5:]])


def read_part_from(document: dict[str, Any], name: str) -> Any:
    from pytest_rageval.parts import Part

    return Part(name, document)


def test_cache_merge_unions_the_shards_caches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder, keys in (("c1", ["a", "b"]), ("c2", ["b", "c", "d"])):
        cache = VerdictCache(tmp_path / folder, "on")
        for key in keys:
            cache.put("vote", key, {"passing": True, "score": 1.0, "feedback": key})
        cache.close()
    into = tmp_path / "all"
    code = cli.main(
        ["cache", "merge", str(tmp_path / "c1"), str(tmp_path / "c2"), "--into", str(into)]
    )
    assert code == 0
    assert "4 verdicts and 0 recordings added from 2 caches" in capsys.readouterr().out
    with sqlite3.connect(into / "verdicts.sqlite3") as db:
        assert sorted(k for (k,) in db.execute("SELECT key FROM verdicts")) == ["a", "b", "c", "d"]
    # merging again adds nothing
    assert cli.main(["cache", "merge", str(tmp_path / "c2"), "--into", str(into)]) == 0
    assert "0 verdicts" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "verdicts.sqlite3").write_text("not sqlite at all, just text " * 100)
    assert cli.main(["cache", "merge", str(tmp_path / "bad"), "--into", str(into)]) == 2
    assert (
        f"{tmp_path / 'bad' / 'verdicts.sqlite3'}: it is not a pytest-rageval verdict cache"
        in capsys.readouterr().err
    )
    assert cli.main(["cache", "merge", str(tmp_path / "none"), "--into", str(into)]) == 2
    assert f"{tmp_path / 'none'}: no verdict cache in it" in capsys.readouterr().err
