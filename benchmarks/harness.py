"""What the benchmarks that run pytest share: one pytest process, timed, with its peak
memory, and its output shown when it fails (a number measured on a failing run means
nothing, and the reason is in what pytest printed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SHOWN = 4000
"""Characters of a failing run's output shown (its end: the summary and the error)."""


@dataclass(frozen=True)
class Run:
    wall: float
    """Seconds, pytest's start and collection included."""
    peak_mb: float
    """The process's peak resident memory."""
    output: str
    """What pytest printed (stdout and stderr, interleaved)."""


def run_pytest(
    folder: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    expect: str | None = None,
    codes: tuple[int, ...] = (0,),
) -> Run:
    """``python -m pytest -q -p no:cacheprovider *args`` in ``folder``. Exits the benchmark
    with the run's output when pytest exits other than ``codes`` or its output lacks
    ``expect``."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    # a file, not a pipe: nobody reads a pipe while we wait, and a long output would fill it
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=None if env is None else dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)  # wait4: this process's own peak RSS
        wall = time.perf_counter() - start
        process.returncode = code = os.waitstatus_to_exitcode(status)  # reaped already
        out.seek(0)
        output = out.read().decode(errors="replace")
    if code not in codes or (expect is not None and expect not in output):
        why = f"exit status {code}" if code not in codes else f"no {expect!r} in its output"
        raise SystemExit(
            f"{' '.join(['pytest', *args])} in {folder} failed ({why}); its output ends:\n"
            f"{output[-SHOWN:]}"
        )
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Run(wall, peak, output)
