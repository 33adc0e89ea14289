"""The verdict cache under process faults: a folder or file it may not write, a full
disk, a killed run, a judge answer of megabytes, a lone surrogate. It never destroys a
cache it cannot write, and never fails a run.

The faults are real: pytest (or a small Python program using the cache) runs in its own
process, without the right to write (as root, without the capabilities that override
file permissions), with a file size limit of 0 bytes (the write fails as on a full disk),
or killed with SIGKILL.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI, Fault
from qfiles import write_set
from verdict_file import QUESTIONS, verdict_count

from pytest_rageval.cache import COMMIT_EVERY, VerdictCache

ONE_MORE = '  - {id: oslo, query: "Where is Oslo?"}\n'

DROP_PRIVILEGES = [
    "setpriv",
    "--inh-caps=-all",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
]
"""As root, file permissions bind only a process without these capabilities (and the
interpreter may live where the user ``nobody`` cannot reach, e.g. under /root)."""


@functools.cache
def _unprivileged() -> list[str] | None:
    """The command prefix that makes a process bound by file permissions (None: none)."""
    if os.geteuid() != 0:
        return []  # an ordinary user already is
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run([*DROP_PRIVILEGES, "true"], capture_output=True)
    return DROP_PRIVILEGES if probe.returncode == 0 else None


def unprivileged(folder: Path) -> list[str]:
    """The prefix, after checking that it cannot write into ``folder`` (read-only by then);
    skips the test when this machine cannot take the right away."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv able to drop CAP_DAC_OVERRIDE")
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
    if probe.returncode == 0:
        (folder / "probe").unlink()
        pytest.skip(f"this user can write into the read-only folder {folder}")
    return prefix


def run(
    cwd: Path,
    *args: str,
    prefix: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """pytest in its own process (pipes for its output: a file limit must not cut it)."""
    command = [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn
    )


def full_disk() -> None:
    """In the child: no file may grow (writes fail with EFBIG, as with a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.stat().st_size}


@pytest.fixture
def filled(project: pytest.Pytester) -> Path:
    """The project with a cache of 6 verdicts (3 questions x 2 metrics); its folder."""
    project.makefile(".yaml", rag_set=QUESTIONS)
    project.runpytest().assert_outcomes(passed=3)
    folder = project.path / ".rageval_cache"
    assert verdict_count(folder / "verdicts.sqlite3") == 6
    return folder


# -- a cache that cannot be written is read, and left where it is -------------------------


NOT_WRITABLE = (
    "warning: the verdict cache */.rageval_cache/verdicts.sqlite3 cannot be written "
    "(attempt to write a readonly database); verdicts are read from it, new ones are not stored"
)
HITS = "faithfulness 3 hits, 1 misses; relevancy 3 hits, 1 misses"


@pytest.mark.parametrize(
    ("case", "option", "expected"),
    [
        ("read-only folder", "--rag-cache=on", [NOT_WRITABLE, f"verdict cache (on): {HITS}"]),
        ("read-only file", "--rag-cache=readonly", [f"verdict cache (readonly): {HITS}"]),
        (
            "read-only folder",
            "--rag-cache-clear",
            [
                NOT_WRITABLE,
                "warning: the verdict cache */.rageval_cache/verdicts.sqlite3 was not cleared: "
                "it cannot be written (attempt to write a readonly database)",
                f"verdict cache (on): {HITS}",
            ],
        ),
    ],
)
def test_a_cache_the_user_cannot_write_is_read_and_left_alone(
    project: pytest.Pytester, filled: Path, case: str, option: str, expected: list[str]
) -> None:
    (filled / "verdicts.sqlite3").chmod(0o444)
    if case == "read-only folder":
        filled.chmod(0o555)
    try:
        prefix = unprivileged(filled) if case == "read-only folder" else _unprivileged()
        if prefix is None:
            pytest.skip("running as root without setpriv able to drop CAP_DAC_OVERRIDE")
        before = files_of(filled)
        project.makefile(".yaml", rag_set=QUESTIONS + ONE_MORE)
        result = run(project.path, option, prefix=prefix)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert "4 passed" in lines[-1]
        for line in expected:
            assert any(pytest_fnmatch(got, line) for got in lines), (line, result.stdout)
        assert "set aside" not in result.stdout and "rebuilt" not in result.stdout
        # nothing moved, nothing written to the cache file
        assert files_of(filled)["verdicts.sqlite3"] == before["verdicts.sqlite3"]
        assert not list(filled.glob("*.broken-*"))
    finally:
        filled.chmod(0o755)
        (filled / "verdicts.sqlite3").chmod(0o644)
    assert verdict_count(filled / "verdicts.sqlite3") == 6


def pytest_fnmatch(text: str, pattern: str) -> bool:
    from fnmatch import fnmatch

    return fnmatch(text, pattern)


USE_THE_CACHE = """
import json, sys
from pathlib import Path
from pytest_rageval.cache import VerdictCache

store = VerdictCache(Path(sys.argv[1]), sys.argv[2])
action, out = sys.argv[3], {}
if action == "run":
    out["old"] = store.get("faithfulness", "old")
    store.put("faithfulness", "new", {"passing": True})
    store.close()
elif action == "clear":
    out["cleared"] = store.clear()
elif action == "info":
    out["info"] = {k: v for k, v in store.info().items() if k != "bytes"}
out["notices"] = store.notices
print(json.dumps(out))
"""

OLD = {"passing": True, "score": 1.0, "feedback": "YES"}
READ_ONLY = "attempt to write a readonly database"
READ_NOT_WRITTEN = (
    f"the verdict cache {{path}} cannot be written ({READ_ONLY}); verdicts are read from it, "
    "new ones are not stored"
)
NOT_WRITTEN = f"the verdict cache {{path}} cannot be written ({READ_ONLY}); carried on without it"
NOT_CLEARED = f"the verdict cache {{path}} was not cleared: it cannot be written ({READ_ONLY})"
UNREADABLE = "cannot be read (unable to open database file)"


@pytest.mark.parametrize(
    ("case", "mode", "action", "expected"),
    [
        ("folder", "on", "run", {"old": OLD, "notices": [READ_NOT_WRITTEN]}),
        ("folder", "readonly", "run", {"old": OLD, "notices": []}),
        ("folder", "refresh", "run", {"old": None, "notices": [NOT_WRITTEN]}),
        ("folder", "on", "clear", {"cleared": False, "notices": [READ_NOT_WRITTEN, NOT_CLEARED]}),
        ("file", "on", "run", {"old": OLD, "notices": [READ_NOT_WRITTEN]}),
        ("file", "readonly", "run", {"old": OLD, "notices": []}),
        ("file", "refresh", "run", {"old": None, "notices": [NOT_WRITTEN]}),
        ("file", "on", "clear", {"cleared": False, "notices": [READ_NOT_WRITTEN, NOT_CLEARED]}),
        (
            "unreadable",
            "on",
            "run",
            {
                "old": None,
                "notices": [f"the verdict cache {{path}} {UNREADABLE}; carried on without it"],
            },
        ),
        (
            "unreadable",
            "readonly",
            "info",
            {
                "info": {"path": "{path}", "verdicts": None, "problem": UNREADABLE},
                "notices": [f"the verdict cache {{path}} {UNREADABLE}; carried on without it"],
            },
        ),
    ],
)
def test_every_mode_says_what_it_could_not_do_and_moves_nothing(
    tmp_path: Path, case: str, mode: str, action: str, expected: dict[str, Any]
) -> None:
    folder = tmp_path / "cache"
    store = VerdictCache(folder)
    store.put("faithfulness", "old", OLD)
    store.close()
    path = folder / "verdicts.sqlite3"
    before = path.read_bytes()
    path.chmod(0o000 if case == "unreadable" else 0o444)
    if case == "folder":
        folder.chmod(0o555)
    try:
        prefix = unprivileged(folder) if case == "folder" else _unprivileged()
        if prefix is None:
            pytest.skip("running as root without setpriv able to drop CAP_DAC_OVERRIDE")
        child = subprocess.run(
            [*prefix, sys.executable, "-c", USE_THE_CACHE, str(folder), mode, action],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == json.loads(json.dumps(expected).replace("{path}", str(path)))
    # nothing moved, nothing written
    assert path.read_bytes() == before
    assert not list(folder.glob("*.broken-*"))
    assert VerdictCache(folder).get("faithfulness", "old") == OLD


def test_cache_info_says_when_it_cannot_read_the_cache(project: pytest.Pytester) -> None:
    folder = project.path / ".rageval_cache"
    folder.mkdir()
    damage = b"this is not a database at all, just text" * 100
    (folder / "verdicts.sqlite3").write_bytes(damage)
    result = project.runpytest("--rag-cache-info")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "rag verdict cache: */.rageval_cache/verdicts.sqlite3 is not a pytest-rageval "
            "verdict cache (file is not a database); left as it is"
        ]
    )
    # looking is not touching
    assert [p.name for p in folder.iterdir()] == ["verdicts.sqlite3"]
    assert (folder / "verdicts.sqlite3").read_bytes() == damage


def test_readonly_mode_never_moves_a_corrupt_cache(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    store = VerdictCache(tmp_path, "readonly")
    assert store.get("faithfulness", "k") is None
    assert store.notices == [
        f"the verdict cache {path} is not a pytest-rageval verdict cache (file is not a "
        "database); left as it is; carried on without it"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["verdicts.sqlite3"]


def test_readonly_mode_creates_nothing(tmp_path: Path) -> None:
    store = VerdictCache(tmp_path / "cache", "readonly")
    assert store.get("faithfulness", "k") is None
    store.close()
    assert not (tmp_path / "cache").exists()
    assert store.notices == []


def test_a_database_with_other_tables_and_no_schema_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ada')")
    db.close()
    store = VerdictCache(tmp_path)
    store.put("faithfulness", "k", {"passing": True})
    store.close()
    (aside,) = tmp_path.glob("verdicts.sqlite3.broken-*")
    assert store.notices == [
        f"the verdict cache {path} was set aside: it is not a pytest-rageval verdict cache "
        f"(tables users and no schema); moved to {aside.name}; rebuilt"
    ]
    with sqlite3.connect(aside) as db:  # the user's database, untouched
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
        assert tables == ["users"]
        assert db.execute("SELECT name FROM users").fetchall() == [("ada",)]
    db.close()
    assert verdict_count(path) == 1


# -- a full disk --------------------------------------------------------------------------


def test_a_full_disk_keeps_the_cache_for_the_next_run(
    project: pytest.Pytester, filled: Path
) -> None:
    before = files_of(filled)
    project.makefile(".yaml", rag_set=QUESTIONS + ONE_MORE)
    # fd capture would need temporary files: none can be written either
    result = run(project.path, "--capture=sys", preexec_fn=full_disk)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "4 passed" in lines[-1]
    assert "verdict cache (on): faithfulness 3 hits, 1 misses; relevancy 3 hits, 1 misses" in lines
    assert any(
        pytest_fnmatch(
            line,
            "warning: the verdict cache */verdicts.sqlite3 cannot be written "
            "(disk I/O error); verdicts are read from it, new ones are not stored",
        )
        for line in lines
    ), result.stdout
    assert not list(filled.glob("*.broken-*"))
    assert files_of(filled)["verdicts.sqlite3"] == before["verdicts.sqlite3"]
    # with room again: the 6 verdicts are still there, only the new question is judged
    again = project.runpytest()
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(
        ["verdict cache (on): faithfulness 3 hits, 1 misses; relevancy 3 hits, 1 misses"]
    )
    assert verdict_count(filled / "verdicts.sqlite3") == 8


FILL_UP = """
import json, resource, signal, sys
from pathlib import Path
from pytest_rageval.cache import VerdictCache

store = VerdictCache(Path(sys.argv[1]))
out = {"before": store.get("faithfulness", "old")}
# the disk fills up while the run goes on: no file may grow beyond 40 KB from here
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
for i in range(100):
    store.put("faithfulness", f"new{i}", {"passing": True, "feedback": "x" * 1500})
store.flush()
out["old"] = store.get("faithfulness", "old")
store.close()
out["notices"] = store.notices
print(json.dumps(out))
"""


def test_a_disk_that_fills_up_during_the_run_keeps_the_cache(tmp_path: Path) -> None:
    store = VerdictCache(tmp_path)
    store.put("faithfulness", "old", OLD)
    store.close()
    child = subprocess.run(
        [sys.executable, "-c", FILL_UP, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["before"] == out["old"] == OLD
    assert out["notices"] == [
        f"the verdict cache {tmp_path / 'verdicts.sqlite3'} cannot be written (disk I/O "
        "error); verdicts are read from it, new ones are not stored"
    ]
    assert not list(tmp_path.glob("*.broken-*"))
    assert VerdictCache(tmp_path).get("faithfulness", "old") == OLD


# -- a killed run ---------------------------------------------------------------------------


def test_a_killed_run_keeps_the_verdicts_of_all_but_its_last_seconds(
    http_project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    write_set(http_project, 12, evaluators="faithfulness, relevancy")
    # the loopback judge answers 20 of the 24 judgements; the last 4 never come back
    openai_server.fail_next = [Fault()] * 20 + [Fault(delay=120)] * 100
    path = http_project.path / ".rageval_cache/verdicts.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=http_project.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(openai_server.answered) < 20:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        # 20 judgements made (and paid for); the run is stuck on the other 4
        paid = time.monotonic()
        while verdict_count(path) < 20 and time.monotonic() < paid + COMMIT_EVERY + 2:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert len(openai_server.answered) == 20
    assert verdict_count(path) == 20


# -- what a judge can answer ----------------------------------------------------------------

HUGE = r"""
import pytest
from fakes import ScriptedApp, ScriptedLLM
from llama_index.core.llms import CompletionResponse


class Verbose(ScriptedLLM):
    def _answer(self, prompt):
        super()._answer(prompt)
        return CompletionResponse(text="YES " + "x" * 3_000_000)


@pytest.fixture(scope="session")
def rag_judge_llm():
    return Verbose()


@pytest.fixture(scope="session")
def rag_query_engine():
    return ScriptedApp()
"""


def test_a_judge_answer_of_megabytes_is_clipped_in_every_artefact(
    project: pytest.Pytester,
) -> None:
    project.makeconftest(HUGE)
    project.makefile(".yaml", rag_set=QUESTIONS)
    clipped = "YES " + "x" * 1996 + " [... 2998004 more characters]"
    folder = project.path / ".rageval_cache"
    # rag_report_text = full keeps responses and contexts whole, never a judge's megabytes
    for run_, hits in (("first", 0), ("again", 3)):
        result = project.runpytest(
            "-o", "rag_report_text=full", f"--rag-report={run_}.json", f"--rag-html={run_}.html"
        )
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(
            [f"verdict cache (on): faithfulness {hits} hits, {3 - hits} misses; *"]
        )
        report = json.loads((project.path / f"{run_}.json").read_text())
        feedback = [
            metric["feedback"]
            for question in report["sets"][0]["questions"]
            for metric in question["metrics"].values()
        ]
        assert feedback == [clipped] * 6  # the cached verdicts read the same
        # 6 judge answers of 3 MB each: 18 MB before, in each file
        assert (project.path / f"{run_}.json").stat().st_size < 40_000
        assert (project.path / f"{run_}.html").stat().st_size < 60_000
        assert sum(p.stat().st_size for p in folder.iterdir()) < 200_000
    with sqlite3.connect(folder / "verdicts.sqlite3") as db:
        stored = [
            json.loads(value)["feedback"] for (value,) in db.execute("SELECT value FROM verdicts")
        ]
    db.close()
    assert stored == [clipped] * 6


SURROGATE = r"""
import pytest
from fakes import ScriptedLLM
from llama_index.core.llms import CompletionResponse


class Broken(ScriptedLLM):
    def _answer(self, prompt):
        super()._answer(prompt)
        return CompletionResponse(text="YES \ud83d")


@pytest.fixture(scope="session")
def rag_judge_llm():
    return Broken()


@pytest.fixture(scope="session")
def rag_query_engine():
    return lambda query: (f"Answer \ud83d {query}", ["Context \udc00"])
"""


def test_a_lone_surrogate_never_breaks_the_cache(project: pytest.Pytester) -> None:
    project.makeconftest(SURROGATE)
    project.makefile(".yaml", rag_set=QUESTIONS)
    first = run(project.path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verdict cache (on): faithfulness 0 hits, 3 misses; relevancy 0 hits, 3 misses" in (
        first.stdout.splitlines()
    )
    assert verdict_count(project.path / ".rageval_cache/verdicts.sqlite3") == 6
    second = project.runpytest("--rag-replay")
    second.assert_outcomes(passed=3)
    second.stdout.fnmatch_lines(
        [
            "verdict cache (on): faithfulness 3 hits, 0 misses; relevancy 3 hits, 0 misses; "
            "3 app answers replayed (--rag-replay)"
        ]
    )
    # kept as it entered: half an emoji is U+FFFD from the judge's answer on
    with sqlite3.connect(project.path / ".rageval_cache/verdicts.sqlite3") as db:
        values = [json.loads(value) for (value,) in db.execute("SELECT value FROM verdicts")]
    db.close()
    assert [value["feedback"] for value in values] == ["YES \ufffd"] * 6


def _open_when_told(path: str, start: Any, errors: Any) -> None:
    """In a process of its own: open the cache for writing once ``start`` lets it go."""
    from pytest_rageval import cache_file

    start.wait()
    try:
        cache_file.open_for_writing(Path(path).parent, Path(path)).close()
    except sqlite3.Error as exc:
        errors.put(str(exc))


def test_processes_making_a_new_cache_at_once_all_get_it(tmp_path: Path) -> None:
    """xdist workers start together and each opens the new cache file. Switching it to
    the WAL journal can be refused at once ("database is locked": SQLite does not wait
    for that lock); measured before the fix, 29 of 450 such opens failed, and the run
    then stored no verdicts from that worker."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for attempt in range(40):
        path = tmp_path / str(attempt) / ".rageval_cache" / "verdicts.sqlite3"
        start = context.Barrier(3)
        processes = [
            context.Process(target=_open_when_told, args=(str(path), start, errors))
            for _ in range(3)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert VerdictCache(path.parent).info()["verdicts"] == 0  # a good, empty cache
