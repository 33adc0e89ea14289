"""``--rag-shard I/N``: one slice of the run's questions, gated later by ``rageval merge``.

Registered (as :class:`ShardRun`) only when a shard is asked for. It keeps the questions
whose stable hash falls in this shard and deselects the others; tests that are not
questions run on every shard (``--rag-shard-others all``, the default) or on the first
only (``first``). A shard's questions are judged, but a set's rate belongs to all its
shards: a question whose outcome the rate decides is ``judged``, and only final failures
(``must_pass``, errors) fail the shard. Its ``--rag-report`` is a part
(:mod:`pytest_rageval.parts`); ``--rag-rpm`` is the whole run's, each shard taking 1/N.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_rageval import parts
from pytest_rageval.keys import DEFERRED_KEY
from pytest_rageval.options import ini_where
from pytest_rageval.redaction import redact
from pytest_rageval.reports import document
from pytest_rageval.reports import json as json_report
from pytest_rageval.sets import SET_KEY, RagSet, form_sets
from pytest_rageval.settings import Settings
from pytest_rageval.thresholds import unused_thresholds
from pytest_rageval.totals import own_usage
from pytest_rageval.usage import Meter
from pytest_rageval.wiring import SESSION_KEY

SHARD_HELP = (
    "run shard I of N (e.g. 2/4): only the questions whose hash of set name and question "
    "id falls in it; the set gates are decided by `rageval merge` of every shard's "
    "--rag-report, and --rag-rpm is split evenly between the shards"
)
OTHERS_HELP = (
    "where tests that are not rag questions run with --rag-shard: all (every shard; the "
    "default) or first (shard 1 only)"
)
WORKER_OUTPUT = "rageval_shard"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rageval")
    group.addoption("--rag-shard", dest="rag_shard", default=None, metavar="I/N", help=SHARD_HELP)
    group.addoption("--rag-shard-others", dest="rag_shard_others", default=None, help=OTHERS_HELP)
    parser.addini("rag_shard", SHARD_HELP, default=None)
    parser.addini("rag_shard_others", OTHERS_HELP, default=None)


def _setting(config: pytest.Config, name: str) -> tuple[str, str] | None:
    """A setting's text and where it came from: command line first, then ini."""
    value = config.getoption(name, None)
    if value is not None:
        return str(value), f"--{name.replace('_', '-')}"
    value = config.getini(name)
    if value not in (None, ""):
        return str(value), ini_where(config, name)
    return None


def resolve(config: pytest.Config) -> parts.Shard | None:
    """The shard this run is (None: the whole run); a bad value is a usage error."""
    found = _setting(config, "rag_shard")
    others = _setting(config, "rag_shard_others")
    if found is None:
        return None
    try:
        shard = parts.parse_shard(found[0], found[1])
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if others is not None:
        if others[0].strip().lower() not in parts.OTHERS:
            raise pytest.UsageError(
                f"{others[1]}: {others[0]!r} is not one of {', '.join(parts.OTHERS)}"
            )
        shard = dataclasses.replace(shard, others=others[0].strip().lower())
    return shard


def configure(config: pytest.Config, settings: Settings) -> Settings:
    """The run's settings for this shard (its share of ``--rag-rpm``); registers the
    shard's plugin when the run is one."""
    shard = resolve(config)
    if shard is None:
        return settings
    config.stash[DEFERRED_KEY] = True
    config.pluginmanager.register(ShardRun(config, shard, settings), "rageval-shard")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistShard(config), "rageval-shard-xdist")
    if settings.rpm is None:
        return settings
    return dataclasses.replace(settings, rpm=settings.rpm / shard.count)


class ShardRun:
    """One shard of a run: selects its questions, writes its part."""

    def __init__(self, config: pytest.Config, shard: parts.Shard, settings: Settings) -> None:
        self.config = config
        self.shard = shard
        self.settings = settings
        """The whole run's settings (its ``rpm`` before the split)."""
        self.collected: dict[str, Any] | None = None
        """What the collection found: set sizes, gates, fingerprint, kept positions."""
        self.unrecorded_failures = 0
        """Failed items no failing question record accounts for (other tests, fixtures)."""
        self.written: tuple[Path, str | None] | None = None
        self._started = time.monotonic()

    def pytest_report_header(self, config: pytest.Config) -> str:
        rpm = self.settings.rpm
        share = f", rpm {rpm / self.shard.count:g} of {rpm:g}" if rpm is not None else ""
        return f"rageval shard: {self.shard} (others: {self.shard.others}{share})"

    @pytest.hookimpl(trylast=True)  # after -k, -m and other plugins have deselected theirs
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        sets = form_sets(items, self.settings)  # formed again, of the kept items, later
        for formed in sets:
            if formed.gate.sequential:
                raise pytest.UsageError(
                    f"{formed.name}: sample: sequential cannot run in shards (--rag-shard "
                    f"{self.shard}): its decision reads one random order of the whole set "
                    "and stops early, which no shard can do alone; run it with "
                    "--rag-sample all, or without --rag-shard"
                )
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        positions: list[list[Any]] = []
        files: dict[str, str] = {}
        for position, item in enumerate(items):
            rset: RagSet | None = item.stash.get(SET_KEY, None)
            if rset is None:
                mine = self.shard.others == "all" or self.shard.index == 1
            else:
                question = rset.members[item.nodeid].id
                mine = self.shard.keeps(rset.name, question)
                if mine:
                    positions.append([rset.name, question, position])
                where = str(item.path)
                if where not in files:
                    files[where] = _file_digest(item.path)
            (kept if mine else dropped).append(item)
            if rset is not None:
                del item.stash[SET_KEY]
        root = config.rootpath
        named = {_relative(Path(path), root): digest for path, digest in files.items()}
        sizes = {rset.name: len(rset.members) for rset in sets}
        gates = {rset.name: rset.gate.to_json() for rset in sets}
        self.collected = {
            "sizes": sizes,
            "gates": gates,
            "positions": positions,
            "fingerprint": parts.fingerprint(
                self.settings.to_json(),
                named,
                gates,
                sizes,
                parts.baseline_digest(self.settings.baseline),
                os.environ.get("GITHUB_SHA"),
                document.versions(self.settings.judge.model).get("pytest-rageval"),
            ),
            "deselected": len(dropped),
        }
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "rag", None)
        if report.failed and (record is None or record["outcome"] not in ("failed", "error")):
            self.unrecorded_failures += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or self.config.option.collectonly:
            if hasattr(self.config, "workeroutput") and self.collected is not None:
                self.config.workeroutput[WORKER_OUTPUT] = self.collected
            return
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.deselected_any:
            session.exitstatus = pytest.ExitCode.OK  # every question is another shard's
        path = self.settings.report
        if path is None:
            return
        try:
            json_report.write_json(path, self.part(int(session.exitstatus)))
        except (OSError, ValueError, TypeError) as exc:
            self.written = (path, f"{type(exc).__name__}: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the merge needs it
        else:
            self.written = (path, None)

    @property
    def deselected_any(self) -> bool:
        return bool(self.collected and self.collected["deselected"])

    def part(self, exitstatus: int) -> dict[str, Any]:
        """This shard's ``--rag-report``."""
        session = self.config.stash[SESSION_KEY]
        collected = self.collected or {
            "sizes": {},
            "gates": {},
            "positions": [],
            "fingerprint": "",
            "deselected": 0,
        }
        settings = self.settings
        seen = sorted(session.metrics_seen)
        where = settings.thresholds_where
        unused = {redact(n) for n in unused_thresholds(settings.thresholds, where, seen)}
        runner = session.started_runner
        text = settings.report_text
        return parts.part_document(
            self.shard,
            fingerprint=collected["fingerprint"],
            sizes=collected["sizes"],
            gates={
                **collected["gates"],
                **{n: g.to_json() for n, g in session.end.recorded.gates.items()},
            },
            records=[json_report.limit_text(r, text) for r in session.end.recorded.records],
            positions={(name, qid): at for name, qid, at in collected["positions"]},
            run={
                "settings": settings.to_json(),
                "thresholds_where": settings.thresholds_where,
                "prices": {model: list(price) for model, price in settings.prices.items()},
                "baseline": {
                    "path": settings.baseline.path if settings.baseline is not None else None,
                    "digest": parts.baseline_digest(settings.baseline),
                },
                "versions": document.versions(settings.judge.model),
                "complete": session.end.complete,
                "stopped": session.end.stopped,
                "exitstatus": exitstatus,
                "others_failed": self.unrecorded_failures,
                # the thresholds no evaluator provided are said by the merge, which
                # knows every shard's metrics
                "notices": [n for n in session.end.notices() if n not in unused],
                "metrics": seen,
                "counts": session.end.totals.run_counts(runner),
                "usage": _raw_usage(session.end.totals.usage, own_usage(runner)),
                "cache": session.end.cache_stats(),
                "timing": {"wall_seconds": round(time.monotonic() - self._started, 3)},
                "deselected": collected["deselected"],
            },
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        session = self.config.stash[SESSION_KEY]
        records = session.end.recorded.records
        terminalreporter.write_sep("=", f"rag shard {self.shard}")
        judged = sum(record["outcome"] == "judged" for record in records)
        final = sum(record["outcome"] in ("failed", "error") for record in records)
        terminalreporter.write_line(
            f"{len(records)} questions of this shard ({judged} judged, {final} failed or "
            f"errored on their own); the set gates are decided by rageval merge"
        )
        if self.settings.markdown is not None or self.settings.html is not None:
            terminalreporter.write_line(
                "--rag-markdown and --rag-html are written by rageval merge, not by a shard",
                yellow=True,
            )
        if self.written is None:
            terminalreporter.write_line(
                "no --rag-report: this shard's verdicts cannot be merged", yellow=True
            )
            return
        path, error = self.written
        if error is None:
            terminalreporter.write_line(f"rag shard report written to {path}")
        else:
            terminalreporter.write_line(
                f"rag shard report NOT written to {path}: {error}", red=True
            )

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, Mapping[str, bool]]] | None:
        record = getattr(report, "rag", None)
        if report.when == "call" and report.passed and record and record["outcome"] == "judged":
            return "judged", "J", ("JUDGED", {"cyan": True})
        return None


class _XdistShard:
    """Under pytest-xdist the workers collect: the controller's part takes what they
    found (the same on every worker)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        shard = self.config.pluginmanager.get_plugin("rageval-shard")
        found = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
        if shard is not None and found is not None and shard.collected is None:
            shard.collected = found


def _raw_usage(workers: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The tokens this shard (and its xdist workers) metered, as a worker sends them."""
    raw: dict[str, dict[str, Any]] = {"usage": {}, "saved": {}, "models": {}}
    raw["models"].update(workers.get("models", {}))
    raw["models"].update(own.get("models", {}))
    for kind in ("usage", "saved"):
        meters: dict[str, Meter] = {}
        for source in (workers.get(kind, {}), own.get(kind, {})):
            for name, value in source.items():
                meters.setdefault(name, Meter()).add(value)
        raw[kind] = {name: meter.to_json() for name, meter in meters.items()}
    return raw


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
