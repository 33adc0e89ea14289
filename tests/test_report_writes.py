"""When reports are written and what a run that cannot write one says: a collect-only
step writes nothing, and a report that a full disk refuses fails the run."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest

QUESTIONS = """
evaluators: [contains]
questions:
  - {id: paris, query: "Where is Paris?", reference: "Paris"}
  - {id: rome, query: "Where is Rome?", reference: "Rome"}
"""


def test_collect_only_writes_no_report_and_keeps_the_last_one(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=QUESTIONS)
    ran = project.runpytest("--rag-report=report.json", "--rag-markdown=summary.md")
    ran.assert_outcomes(passed=2)
    written = {name: (project.path / name).read_bytes() for name in ("report.json", "summary.md")}
    collected = project.runpytest(
        "--collect-only", "--rag-report=report.json", "--rag-markdown=summary.md"
    )
    assert collected.ret == pytest.ExitCode.OK
    collected.stdout.fnmatch_lines(["*2 tests collected*"])
    collected.stdout.no_fnmatch_line("*rag evaluation*")
    collected.stdout.no_fnmatch_line("*written to*")
    # the last real run's files, byte for byte: a CI step that only collects cannot
    # replace the baseline with a table of errors
    for name, content in written.items():
        assert (project.path / name).read_bytes() == content, name


def _full_disk() -> None:
    """In the child: no file may grow past 2 KB (the write fails with EFBIG, as on a full
    disk with ENOSPC, instead of the default SIGXFSZ killing the process)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_report_a_full_disk_refuses_fails_the_run(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=QUESTIONS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--rag-cache=off", "--rag-report=report.json"],
        cwd=project.path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_full_disk,
    )
    lines = done.stdout.splitlines()
    # both questions passed, and the run still fails, saying why
    assert "2 passed" in lines[-1], done.stdout[-2000:]
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-2000:]
    refused = [line for line in lines if line.startswith("rag report NOT written to ")]
    assert len(refused) == 1 and refused[0].endswith("File too large"), refused
    assert "the run fails (exit 1): a report it was asked for could not be written" in lines
    # and nothing half written is left where the report belongs
    assert not (project.path / "report.json").exists()


def test_a_report_that_cannot_be_written_leaves_a_failed_run_as_it_is(
    project: pytest.Pytester,
) -> None:
    # a failed run keeps its own status, and the summary does not claim it changed it
    project.makefile(".yaml", rag_set=QUESTIONS.replace('"Rome"}', '"Milan"}'))
    project.makeconftest(
        """
        def pytest_rageval_update_report(config, report):
            report["built_by"] = object()  # not JSON: the report cannot be written
        """
    )
    result = project.runpytest("--rag-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["rag report NOT written to */report.json: TypeError*"])
    result.stdout.no_fnmatch_line("*the run fails (exit 1)*")


def test_report_files_get_the_umask_mode(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=QUESTIONS)
    previous = os.umask(0o027)
    try:
        ran = project.runpytest(
            "--rag-report=report.json", "--rag-markdown=summary.md", "--rag-html=report.html"
        )
    finally:
        os.umask(previous)
    ran.assert_outcomes(passed=2)
    # 0o666 & ~0o027, as open() gives any other new file; not mkstemp's 0o600
    modes = {
        name: oct((project.path / name).stat().st_mode & 0o777)
        for name in ("report.json", "summary.md", "report.html")
    }
    assert modes == {"report.json": "0o640", "summary.md": "0o640", "report.html": "0o640"}
