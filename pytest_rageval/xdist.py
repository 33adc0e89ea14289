"""pytest-xdist: each set on one worker, one ``--rag-workers`` budget, one summary.

Registered only when pytest-xdist is present. A rag set is gated on all its questions
and submitted as a whole when its first item runs, so all the items of a set must run
on one worker: otherwise every worker that touches a set would ask and judge all of it.
The controller does not collect, so it cannot tell from a node id which set a test
belongs to; each worker writes its node id -> set map into a folder the controller
names in ``workerinput``, before it reports its collection. The scheduler, xdist's own
``LoadScopeScheduling`` through the public ``pytest_xdist_make_scheduler`` hook, then
uses the set as the scope of a rag item, and the chosen ``--dist`` mode's scope for
every other test (``--dist each`` and ``no`` are left alone).

The controller splits ``--rag-workers`` over the workers (each gets at least one slot)
and, through ``workeroutput``, gets back what only a worker knows: results of items that
never ran (Ctrl-C, ``-x``), its warnings, and why it stopped.

Cancelled (Ctrl-C or SIGTERM to the controller alone, or to the whole process group),
the controller passes the signal on to its workers, whose pids they write into the same
folder: each stops its runner at once and sends back every result it holds. The
controller's loop is gone by then, so before xdist tears the workers down it waits a
bounded while for each worker's output and merges it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_rageval.keys import SETTINGS_KEY
from pytest_rageval.totals import WorkerOutput

SETS_DIR = "rageval_sets_dir"
WORKERS = "rageval_workers"
OUTPUT = "rageval"
SCOPE_PREFIX = "rageval set "
PLUGIN_NAME = "rageval-xdist"
OUTPUT_WAIT_SECONDS = 5.0
"""How long a cancelled controller waits for its workers' results (CI kills at 7.5 s)."""


class _Guard(Protocol):
    dispatches: bool
    listeners: list[Callable[[int], None]]


class Session(Protocol):
    """What the controller's hooks need of the run's session (``RagSession``)."""

    @property
    def interrupts(self) -> _Guard: ...

    @property
    def stopped(self) -> str | None: ...

    def merge_worker(self, output: WorkerOutput) -> None: ...


def register(config: pytest.Config, session: Session) -> None:
    """Register the controller's hooks when this process is an xdist controller."""
    if (
        config.pluginmanager.hasplugin("xdist")
        and not hasattr(config, "workerinput")
        and (config.getoption("numprocesses", None) or config.getoption("dist", "no") != "no")
    ):
        config.pluginmanager.register(RagXdist(config, session), PLUGIN_NAME)


def send(config: pytest.Config, output: WorkerOutput) -> bool:
    """On a worker: hand ``output`` to the controller; False on the controller (or
    without xdist), where there is nobody to send it to."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is None:
        return False
    workeroutput[OUTPUT] = output
    return True


def worker_share(workers: int, index: int, count: int) -> int:
    """Slots of worker ``index`` of ``count`` out of a budget of ``workers`` (at least 1)."""
    return max(1, workers // count + (1 if index < workers % count else 0))


def write_sets(config: pytest.Config, sets: dict[str, str]) -> None:
    """On a worker: this worker's node id -> set name map, for the controller's scheduler."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or SETS_DIR not in workerinput:
        return
    folder = Path(workerinput[SETS_DIR])
    target = folder / f"{workerinput['workerid']}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(sets), encoding="utf-8")
    tmp.replace(target)


def announce_pid(config: pytest.Config) -> None:
    """On a worker: its pid, so that a cancelled controller can pass the signal on."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or SETS_DIR not in workerinput:
        return
    folder = Path(workerinput[SETS_DIR])
    (folder / f"{workerinput['workerid']}.pid").write_text(str(os.getpid()), encoding="ascii")


def _fallback(dist: str) -> Callable[[Any, str], str] | None:
    """The scope of a non-rag test under ``--dist <dist>``, from xdist's own schedulers."""
    from xdist.scheduler import LoadFileScheduling, LoadGroupScheduling, LoadScopeScheduling

    if dist in ("load", "worksteal"):
        return lambda _self, nodeid: nodeid
    if dist == "loadscope":
        return LoadScopeScheduling._split_scope  # type: ignore[no-any-return]
    if dist == "loadfile":
        return LoadFileScheduling._split_scope  # type: ignore[no-any-return]
    if dist == "loadgroup":
        return LoadGroupScheduling._split_scope  # type: ignore[no-any-return]
    return None


def make_scheduling(config: pytest.Config, log: Any, folder: Path) -> Any:
    """xdist's scope scheduling with each rag set as one scope; None for --dist each/no."""
    from xdist.scheduler import LoadScopeScheduling

    found = _fallback(str(config.getoption("dist")))
    if found is None:
        return None
    fallback: Callable[[Any, str], str] = found

    class RagSetScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """Every item of a rag set to one worker; other tests as ``--dist`` says."""

        _sets: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._sets is None:  # all workers wrote their map before their collection
                self._sets = {}
                for path in sorted(folder.glob("*.json")):
                    self._sets.update(json.loads(path.read_text(encoding="utf-8")))
            name = self._sets.get(nodeid)
            return SCOPE_PREFIX + name if name is not None else fallback(self, nodeid)

    return RagSetScheduling(config, log)


class RagXdist:
    """Controller-side hooks, registered only with pytest-xdist."""

    def __init__(self, config: pytest.Config, session: Session) -> None:
        self.config = config
        self.session = session
        self.folder = Path(tempfile.mkdtemp(prefix="rageval-xdist-"))
        self._nodes: list[Any] = []
        self._merged: set[str] = set()
        session.interrupts.dispatches = True
        session.interrupts.listeners.append(self.forward)

    def pytest_configure_node(self, node: Any) -> None:
        settings = self.config.stash[SETTINGS_KEY]
        index = int(str(node.gateway.id).removeprefix("gw") or 0)
        count = int(node.workerinput.get("workercount", 1))
        node.workerinput[SETS_DIR] = str(self.folder)
        node.workerinput[WORKERS] = worker_share(settings.workers, index, count)
        self._nodes.append(node)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return make_scheduling(config, log, self.folder)

    def forward(self, signum: int) -> None:
        """Pass a cancel on to every worker (in the controller's signal handler)."""
        for path in self.folder.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):  # gone, or half written
                os.kill(int(path.read_text(encoding="ascii")), signum)

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        self._merge(node)

    def _merge(self, node: Any) -> bool:
        """Merge a worker's output once; False while it has not sent one."""
        workerid = str(node.gateway.id)
        if workerid in self._merged:
            return True
        workeroutput = getattr(node, "workeroutput", None)
        if workeroutput is None:
            return False
        self._merged.add(workerid)
        output: WorkerOutput | None = workeroutput.get(OUTPUT)
        if output:
            self.session.merge_worker(output)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Any:
        # before the session reports, and before xdist tears the workers down (up to
        # 10 s): a cancelled run's loop is gone, so nothing else merges
        # what the workers sent, or are sending, back
        if self.session.stopped is not None or session.exitstatus == pytest.ExitCode.INTERRUPTED:
            ends = time.monotonic() + OUTPUT_WAIT_SECONDS
            waiting = list(self._nodes)
            while waiting:
                waiting = [node for node in waiting if not self._merge(node)]
                if not waiting or time.monotonic() >= ends:
                    break
                time.sleep(0.02)
        return (yield)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def worker_workers(config: pytest.Config) -> int | None:
    """On a worker: its share of ``--rag-workers``, decided by the controller."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput and WORKERS in workerinput:
        return int(workerinput[WORKERS])
    return None
