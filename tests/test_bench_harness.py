"""benchmarks/harness.py: a benchmark's pytest run is timed, and a failing one says why."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_harness", Path(__file__).resolve().parent.parent / "benchmarks" / "harness.py"
)
assert _spec is not None and _spec.loader is not None
harness = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
run_pytest = harness.run_pytest


def test_a_failing_run_shows_its_output(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        'def test_x():\n    assert 1 == 2, "the judge server refused the connection"\n'
    )
    with pytest.raises(SystemExit) as raised:
        run_pytest(tmp_path, "-p", "no:rageval")
    message = str(raised.value)
    assert message.startswith(f"pytest -p no:rageval in {tmp_path} failed (exit status 1)")
    assert "AssertionError: the judge server refused the connection" in message
    assert "1 failed in " in message


def test_a_run_without_the_expected_line_shows_its_output(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    with pytest.raises(SystemExit) as raised:
        run_pytest(tmp_path, "-p", "no:rageval", expect="2 passed")
    message = str(raised.value)
    assert "failed (no '2 passed' in its output)" in message
    assert "1 passed in " in message
    done = run_pytest(tmp_path, "-p", "no:rageval", expect="1 passed")
    assert done.wall > 0
    assert done.peak_mb > 1
