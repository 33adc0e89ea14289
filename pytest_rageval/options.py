"""Command-line options, ini settings and markers, resolved once into :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_rageval.thresholds import ThresholdError, parse_ini_thresholds

DEFAULT_FILES = "rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv"
DEFAULT_WORKERS = 8
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
DEFAULT_JUDGE_MODEL = "gpt-4o-mini"

WORKERS_HELP = (
    "most LLM-bound tasks (queries and evaluations together) in flight at once "
    f"in this process (default {DEFAULT_WORKERS})"
)
TIMEOUT_HELP = f"seconds one query or evaluation attempt may take (default {DEFAULT_TIMEOUT:g})"
RETRIES_HELP = (
    "further attempts after a transient error such as a time-out, 429 or dropped "
    f"connection (default {DEFAULT_RETRIES})"
)
REPORT_HELP = "write a JSON report of every rag set and question to this path"
THRESHOLD_MARKER = (
    "rag_threshold(**metrics): minimum pass rate per metric for the rag questions of this "
    "test, class or module, e.g. rag_threshold(faithfulness=0.9, relevancy=0.8)"
)


@dataclass(frozen=True)
class Settings:
    """Every pytest-rageval setting of a run, after validation."""

    workers: int = DEFAULT_WORKERS
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    report: Path | None = None
    judge_model: str = DEFAULT_JUDGE_MODEL
    thresholds: dict[str, float] = field(default_factory=dict)
    files: tuple[str, ...] = tuple(DEFAULT_FILES.split())


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rageval", "RAG evaluation (pytest-rageval)")
    group.addoption("--rag-workers", dest="rag_workers", default=None, help=WORKERS_HELP)
    group.addoption("--rag-timeout", dest="rag_timeout", default=None, help=TIMEOUT_HELP)
    group.addoption("--rag-retries", dest="rag_retries", default=None, help=RETRIES_HELP)
    group.addoption(
        "--rag-report", dest="rag_report", default=None, metavar="PATH", help=REPORT_HELP
    )
    parser.addini("rag_workers", WORKERS_HELP, default=None)
    parser.addini("rag_timeout", TIMEOUT_HELP, default=None)
    parser.addini("rag_retries", RETRIES_HELP, default=None)
    parser.addini("rag_report", REPORT_HELP, default=None)
    parser.addini(
        "rag_files",
        f"glob patterns of question set files to collect (default: {DEFAULT_FILES})",
        type="args",
        default=DEFAULT_FILES.split(),
    )
    parser.addini(
        "rag_thresholds",
        "repository-wide minimum pass rates, one 'metric=rate' per line (default 1.0)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "rag_judge_model",
        f"OpenAI model of the default rag_judge_llm fixture (default {DEFAULT_JUDGE_MODEL})",
        default=DEFAULT_JUDGE_MODEL,
    )


def add_markers(config: pytest.Config) -> None:
    config.addinivalue_line("markers", THRESHOLD_MARKER)


def _raw(config: pytest.Config, name: str) -> tuple[object, str] | None:
    """The value of a setting and where it came from: command line first, then ini."""
    value = config.getoption(name)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    value = config.getini(name)
    if value not in (None, ""):
        return value, f"{name} in {config.inipath or 'the ini file'}"
    return None


def _number(config: pytest.Config, name: str, kind: type, minimum: float, default: float) -> float:
    found = _raw(config, name)
    if found is None:
        return default
    value, where = found
    try:
        number = kind(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < minimum:
        what = "a whole number" if kind is int else "a number"
        raise pytest.UsageError(f"{where} must be {what} >= {minimum:g}, got {value!r}")
    return float(number)


def resolve_settings(config: pytest.Config) -> Settings:
    """Validate every setting once; a bad value is a usage error naming where it came from."""
    report = None
    found = _raw(config, "rag_report")
    if found is not None:
        # a path on the command line is relative to where pytest runs; in the ini, to the ini
        if found[1].startswith("--"):
            base = config.invocation_params.dir
        else:
            base = config.inipath.parent if config.inipath else config.rootpath
        report = base / str(found[0])
    where = f"rag_thresholds in {config.inipath or 'the ini file'}"
    try:
        thresholds = parse_ini_thresholds(config.getini("rag_thresholds"), where)
    except ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None
    return Settings(
        workers=int(_number(config, "rag_workers", int, 1, DEFAULT_WORKERS)),
        timeout=_number(config, "rag_timeout", float, 0.001, DEFAULT_TIMEOUT),
        retries=int(_number(config, "rag_retries", int, 0, DEFAULT_RETRIES)),
        report=report,
        judge_model=str(config.getini("rag_judge_model") or DEFAULT_JUDGE_MODEL),
        thresholds=thresholds,
        files=tuple(config.getini("rag_files")),
    )
