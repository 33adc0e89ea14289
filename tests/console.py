"""Running the ``rageval`` console script as a user does: in a folder of their project,
with this process's environment (the loopback server's too).

``rageval`` runs the command in this process, through the function the installed entry
point calls (a new Python for each would spend ~3 s importing llama-index, for most of
the suite's time); ``installed`` runs the entry point itself, for the tests of that."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

RAGEVAL = Path(sys.executable).parent / "rageval"


def installed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``rageval`` script, in a process of its own."""
    return subprocess.run(
        [str(RAGEVAL), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def rageval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``rageval *args`` run in ``cwd``, as the entry point runs it: its exit status and
    everything it printed."""
    from pytest_rageval.cli import main

    out, err = io.StringIO(), io.StringIO()
    path = list(sys.path)  # --evaluators puts the user's folders first, as in its own process
    with (
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors, --help
            code = exit_.code if isinstance(exit_.code, int) else 1 if exit_.code else 0
        finally:
            sys.path[:] = path
    return subprocess.CompletedProcess(["rageval", *args], code, out.getvalue(), err.getvalue())
