"""Running the ``rageval`` console script as a user does: the installed entry point, in a
folder of their project, with this process's environment (the loopback server's too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RAGEVAL = Path(sys.executable).parent / "rageval"


def rageval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAGEVAL), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
