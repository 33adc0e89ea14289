"""Command-line options, ini settings and markers, resolved once into :class:`Settings`."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from pytest_rageval import cache
from pytest_rageval.baseline import Baseline, BaselineError
from pytest_rageval.baseline import load as load_baseline
from pytest_rageval.judges import JudgeSpec, api_base_problem, parse_judge
from pytest_rageval.settings import (
    DEFAULT_CACHE_DIR,
    DEFAULT_FILES,
    DEFAULT_JUDGE_MODEL,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_QUERY_RETRIES,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    REPORT_TEXT_CHOICES,
    Settings,
)
from pytest_rageval.text import TEXT_LIMIT
from pytest_rageval.thresholds import (
    SAMPLES,
    ThresholdError,
    check_fraction,
    check_sample,
    parse_ini_thresholds,
)
from pytest_rageval.usage import PriceError, parse_prices
from pytest_rageval.xdist import worker_workers

__all__ = ["Settings", "add_markers", "add_options", "cache_dir", "ini_where", "resolve_settings"]


WORKERS_HELP = (
    "most LLM-bound tasks (queries and evaluations together) in flight at once "
    f"in this process (default {DEFAULT_WORKERS})"
)
TIMEOUT_HELP = f"seconds one query or evaluation attempt may take (default {DEFAULT_TIMEOUT:g})"
RETRIES_HELP = (
    "further attempts of an evaluation after a transient error (time-out, 429, 5xx, "
    f"refused or dropped connection; default {DEFAULT_RETRIES})"
)
QUERY_RETRIES_HELP = (
    "further attempts of the app's query after a transient error (default "
    f"{DEFAULT_QUERY_RETRIES}: the app's own retry policy is part of the app under test)"
)
MAX_BACKOFF_HELP = (
    f"most seconds to wait before a retry (default {DEFAULT_MAX_BACKOFF:g}); a server "
    "asking for a longer Retry-After is not retried"
)
RPM_HELP = "start at most this many evaluation requests per minute (default: no limit)"
DEADLINE_HELP = (
    "seconds the whole run may take; questions unfinished then fail as "
    "'not evaluated: deadline' (default: none)"
)
REASK_HELP = "ask a judge once more when its answer cannot be read"
MAX_INVALID_HELP = (
    "most invalid (unreadable) judgements a set's metric may have, as a fraction of its "
    "questions (default: no limit)"
)
REPORT_TEXT_HELP = (
    "how much of each response and context the JSON report keeps: full, truncate (the "
    f"first {TEXT_LIMIT} characters; the default) or none"
)
REPORT_HELP = "write a JSON report of every rag set and question to this path"
REPEAT_HELP = (
    "judge each answer up to K times with each evaluator; the verdict is the majority (a "
    "tie fails; voting stops once the rest cannot change it), questions whose votes "
    "disagree are flagged unstable"
)
SAMPLE_HELP = (
    "all (judge every question; the default) or sequential (judge questions in a random "
    "order until each set's verdict is certain at its confidence, default 0.95); the "
    "command line wins over the ini, rag_threshold(sample=...) and a data file's sample "
    "win over both, and --rag-sample all forces full runs"
)
SEED_HELP = (
    "the seed of the random order sequential sets are judged in (default: stable per set "
    "name, so runs repeat and the verdict cache hits); a whole number"
)
CACHE_HELP = (
    "the verdict cache: on (read and write; the default), off, refresh (judge again and "
    "write) or readonly"
)
MARKDOWN_HELP = (
    "write a Markdown summary (table, flips, warnings) to this path; it is also appended to "
    "$GITHUB_STEP_SUMMARY when that is set"
)
JUDGE_HELP = (
    "the LLM of the default rag_judge_llm fixture: openai:<model> (OPENAI_API_KEY, "
    "OPENAI_API_BASE) or openai-like:<model>@<base_url> for any OpenAI-compatible server "
    "(vLLM, llama.cpp, Ollama; sends RAG_JUDGE_API_KEY if set; needs "
    "pytest-rageval[openai-like]); default openai:<rag_judge_model>"
)
HTML_HELP = "write a self-contained HTML report (charts, a sortable question table) to this path"
BASELINE_HELP = (
    "compare this run with an earlier --rag-report JSON (e.g. the main branch's): baseline "
    "rates, deltas, flipped questions, McNemar tests; the max_drop gate needs it"
)
MAX_DROP_HELP = (
    "fail a set when a metric's pass rate is more than this fraction below the baseline's "
    "(default: no drop gate); rag_threshold(max_drop=...) and a data file's max_drop win"
)
CONFIDENCE_HELP = (
    "gate thresholds on the lower bound of the pass rate's Wilson interval at this level "
    "(e.g. 0.95) instead of the rate itself; rag_threshold(confidence=...) and a data "
    "file's confidence win"
)
THRESHOLD_MARKER = (
    "rag_threshold(**metrics, max_invalid=None, max_drop=None, confidence=None): minimum "
    "pass rate per metric for the rag questions of this test, class or module, e.g. "
    "rag_threshold(faithfulness=0.9, relevancy=0.8); max_invalid: most invalid judgements "
    "per metric, as a fraction; max_drop: most a pass rate may fall below the baseline's; "
    "confidence: gate on the lower bound of the rate's Wilson interval at this level"
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rageval", "RAG evaluation (pytest-rageval)")
    group.addoption("--rag-workers", dest="rag_workers", default=None, help=WORKERS_HELP)
    group.addoption("--rag-timeout", dest="rag_timeout", default=None, help=TIMEOUT_HELP)
    group.addoption("--rag-retries", dest="rag_retries", default=None, help=RETRIES_HELP)
    group.addoption(
        "--rag-query-retries", dest="rag_query_retries", default=None, help=QUERY_RETRIES_HELP
    )
    group.addoption(
        "--rag-max-backoff", dest="rag_max_backoff", default=None, help=MAX_BACKOFF_HELP
    )
    group.addoption("--rag-rpm", dest="rag_rpm", default=None, help=RPM_HELP)
    group.addoption(
        "--rag-deadline", dest="rag_deadline", default=None, metavar="SECONDS", help=DEADLINE_HELP
    )
    group.addoption(
        "--rag-reask", dest="rag_reask", action="store_true", default=None, help=REASK_HELP
    )
    group.addoption(
        "--rag-report", dest="rag_report", default=None, metavar="PATH", help=REPORT_HELP
    )
    group.addoption(
        "--rag-markdown", dest="rag_markdown", default=None, metavar="PATH", help=MARKDOWN_HELP
    )
    group.addoption("--rag-html", dest="rag_html", default=None, metavar="PATH", help=HTML_HELP)
    group.addoption("--rag-judge", dest="rag_judge", default=None, metavar="SPEC", help=JUDGE_HELP)
    group.addoption("--rag-repeat", dest="rag_repeat", default=None, metavar="K", help=REPEAT_HELP)
    group.addoption(
        "--rag-sample", dest="rag_sample", default=None, choices=SAMPLES, help=SAMPLE_HELP
    )
    group.addoption("--rag-seed", dest="rag_seed", default=None, metavar="N", help=SEED_HELP)
    group.addoption(
        "--rag-cache",
        dest="rag_cache",
        default=None,
        choices=cache.MODES,
        help=CACHE_HELP,
    )
    group.addoption(
        "--rag-replay",
        dest="rag_replay",
        action="store_true",
        default=False,
        help=(
            "reuse the app's answers (and contexts) recorded by the last run that called "
            "it, to tune thresholds and evaluators without calling the app; a question "
            "with no recording calls the app"
        ),
    )
    group.addoption(
        "--rag-cache-clear",
        dest="rag_cache_clear",
        action="store_true",
        default=False,
        help="empty the verdict cache before the run",
    )
    group.addoption(
        "--rag-cache-info",
        dest="rag_cache_info",
        action="store_true",
        default=False,
        help="print the verdict cache's folder, size and number of verdicts, and exit",
    )
    group.addoption(
        "--rag-baseline", dest="rag_baseline", default=None, metavar="PATH", help=BASELINE_HELP
    )
    parser.addini("rag_workers", WORKERS_HELP, default=None)
    parser.addini("rag_timeout", TIMEOUT_HELP, default=None)
    parser.addini("rag_retries", RETRIES_HELP, default=None)
    parser.addini("rag_query_retries", QUERY_RETRIES_HELP, default=None)
    parser.addini("rag_max_backoff", MAX_BACKOFF_HELP, default=None)
    parser.addini("rag_rpm", RPM_HELP, default=None)
    parser.addini("rag_deadline", DEADLINE_HELP, default=None)
    parser.addini("rag_reask", REASK_HELP, type="bool", default=False)
    parser.addini("rag_max_invalid", MAX_INVALID_HELP, default=None)
    parser.addini("rag_report_text", REPORT_TEXT_HELP, default=None)
    parser.addini("rag_report", REPORT_HELP, default=None)
    parser.addini("rag_baseline", BASELINE_HELP, default=None)
    parser.addini("rag_cache", CACHE_HELP, default=None)
    parser.addini("rag_repeat", REPEAT_HELP, default=None)
    parser.addini("rag_sample", SAMPLE_HELP, default=None)
    parser.addini("rag_seed", SEED_HELP, default=None)
    parser.addini(
        "rag_calibration",
        "a labels file (the cases rageval calibrate reads) that corrects the judge's pass "
        "rates of every set; rag_threshold(calibration=...) and a data file's calibration "
        "key win over it",
        default=None,
    )
    parser.addini(
        "rag_prices",
        "USD per million tokens, one 'model = input_per_1M output_per_1M' per line, e.g. "
        "'gpt-4o-mini = 0.15 0.60': the summary then shows what the run cost",
        type="linelist",
        default=[],
    )
    parser.addini(
        "rag_cache_dir",
        f"folder of the verdict cache, relative to the rootdir (default {DEFAULT_CACHE_DIR})",
        default=None,
    )
    parser.addini("rag_markdown", MARKDOWN_HELP, default=None)
    parser.addini("rag_html", HTML_HELP, default=None)
    parser.addini("rag_max_drop", MAX_DROP_HELP, default=None)
    parser.addini("rag_confidence", CONFIDENCE_HELP, default=None)
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
    parser.addini("rag_judge", JUDGE_HELP, default=None)
    parser.addini(
        "rag_judge_model",
        f"OpenAI model of the default rag_judge_llm fixture (default {DEFAULT_JUDGE_MODEL}); "
        "the same as rag_judge = openai:<model>",
        default=DEFAULT_JUDGE_MODEL,
    )


def add_markers(config: pytest.Config) -> None:
    config.addinivalue_line("markers", THRESHOLD_MARKER)


def ini_where(config: pytest.Config, name: str) -> str:
    """Where an ini value came from: ``-o name=...`` or the ini file."""
    overrides = config.getoption("override_ini", None) or []
    if any(str(entry).split("=", 1)[0].strip() == name for entry in overrides):
        return f"-o {name}"
    return f"{name} in {config.inipath or 'the ini file'}"


def _raw(config: pytest.Config, name: str) -> tuple[object, str] | None:
    """The value of a setting and where it came from: command line first, then ini."""
    value = config.getoption(name, None)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    value = config.getini(name)
    if value not in (None, ""):
        return value, ini_where(config, name)
    return None


def _number(
    config: pytest.Config, name: str, kind: type, minimum: float, default: float | None
) -> float | None:
    found = _raw(config, name)
    if found is None:
        return default
    value, where = found
    try:
        number = kind(str(value).strip())
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < minimum:
        what = "a whole number" if kind is int else "a finite number"
        raise pytest.UsageError(f"{where} must be {what} >= {minimum:g}, got {value!r}")
    return float(number)


def _path(config: pytest.Config, name: str) -> tuple[Path, str, str] | None:
    """A path setting, where it came from, and the text as given: on the command line
    relative to where pytest runs, in the ini relative to the ini file."""
    found = _raw(config, name)
    if found is None:
        return None
    value, where = found
    text = str(value).strip()
    if not text:
        raise pytest.UsageError(f"{where} needs a file path, e.g. rag.json")
    if where.startswith("--"):
        base = config.invocation_params.dir
    else:
        base = config.inipath.parent if config.inipath else config.rootpath
    return base / text, where, text


def _baseline(config: pytest.Config) -> Baseline | None:
    """The baseline report, read and checked now: a bad one is a usage error, never a
    silent pass."""
    found = _path(config, "rag_baseline")
    if found is None:
        return None
    path, where, _ = found
    try:
        return load_baseline(path, display=str(path))
    except BaselineError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None


def _output_path(config: pytest.Config, name: str) -> Path | None:
    """A report's path, checked now: a bad one would otherwise only fail after the whole
    (paid) run."""
    found = _path(config, name)
    if found is None:
        return None
    path, where, text = found
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise pytest.UsageError(f"{where}: {path} is a directory; give a file path, e.g. rag.json")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise pytest.UsageError(
            f"{where}: cannot write {path}: {folder} is not a writable directory; "
            "choose a path in a folder you can write to"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise pytest.UsageError(f"{where}: cannot write {path}: the file is read-only")
    return path


def _prices(config: pytest.Config) -> dict[str, tuple[float, float]]:
    try:
        return parse_prices(config.getini("rag_prices"), ini_where(config, "rag_prices"))
    except PriceError as exc:
        raise pytest.UsageError(str(exc)) from None


def _cache_mode(config: pytest.Config) -> str:
    found = _raw(config, "rag_cache")
    if found is None:
        return "on"
    mode = str(found[0]).strip().lower()
    if mode not in cache.MODES:
        raise pytest.UsageError(
            f"{found[1]} must be one of {', '.join(cache.MODES)}, got {found[0]!r}"
        )
    return mode


def _judge(config: pytest.Config) -> JudgeSpec:
    problem = api_base_problem()  # the judge, embeddings and most apps read it
    if problem is not None:
        raise pytest.UsageError(problem)
    found = _raw(config, "rag_judge")
    if found is None:
        return JudgeSpec("openai", str(config.getini("rag_judge_model") or DEFAULT_JUDGE_MODEL))
    value, where = found
    try:
        spec = parse_judge(str(value))
    except ValueError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None
    if (
        spec.kind == "openai-like"
        and importlib.util.find_spec("llama_index.llms.openai_like") is None
    ):
        raise pytest.UsageError(
            f"{where} names an openai-like judge, which needs llama-index-llms-openai-like: "
            'pip install "pytest-rageval[openai-like]"'
        )
    return spec


def cache_dir(config: pytest.Config) -> Path:
    """The verdict cache's folder: ini ``rag_cache_dir``, relative to the rootdir."""
    value = str(config.getini("rag_cache_dir") or "").strip() or DEFAULT_CACHE_DIR
    return config.rootpath / value


def _seed(config: pytest.Config) -> int | None:
    found = _raw(config, "rag_seed")
    if found is None:
        return None
    try:
        return int(str(found[0]).strip())
    except ValueError:
        raise pytest.UsageError(
            f"{found[1]} must be a whole number (the seed of the sequential order), got "
            f"{found[0]!r}"
        ) from None


def _calibration(config: pytest.Config) -> Path | None:
    """The ini's labels file, relative to the ini file's folder."""
    value = str(config.getini("rag_calibration") or "").strip()
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return base / value


def _fraction(config: pytest.Config, name: str) -> float | None:
    found = _raw(config, name)
    if found is None:
        return None
    try:
        raw: object = float(str(found[0]).strip())
    except ValueError:
        raw = found[0]
    return check_fraction(name, raw, found[1])


def resolve_settings(config: pytest.Config) -> Settings:
    """Validate every setting once; a bad value is a usage error naming where it came from."""
    where = ini_where(config, "rag_thresholds")
    try:
        thresholds = parse_ini_thresholds(config.getini("rag_thresholds"), where)
        max_invalid = _fraction(config, "rag_max_invalid")
        max_drop = _fraction(config, "rag_max_drop")
        confidence = _fraction(config, "rag_confidence")
        found = _raw(config, "rag_sample")
        sample = check_sample(str(found[0]).strip(), found[1]) if found else None
    except ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None
    report_text = "truncate"
    found = _raw(config, "rag_report_text")
    if found is not None:
        report_text = str(found[0]).strip().lower()
        if report_text not in REPORT_TEXT_CHOICES:
            raise pytest.UsageError(
                f"{found[1]} must be one of {', '.join(REPORT_TEXT_CHOICES)}, got {found[0]!r}"
            )
    reask = config.getoption("rag_reask") or bool(config.getini("rag_reask"))
    workers = int(_number(config, "rag_workers", int, 1, DEFAULT_WORKERS) or DEFAULT_WORKERS)
    workers = worker_workers(config) or workers  # an xdist worker's share of the budget
    return Settings(
        workers=workers,
        timeout=_number(config, "rag_timeout", float, 0.001, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
        retries=int(_number(config, "rag_retries", int, 0, DEFAULT_RETRIES) or 0),
        query_retries=int(_number(config, "rag_query_retries", int, 0, DEFAULT_QUERY_RETRIES) or 0),
        max_backoff=_number(config, "rag_max_backoff", float, 0, DEFAULT_MAX_BACKOFF) or 0.0,
        rpm=_number(config, "rag_rpm", float, 0.001, None),
        deadline=_number(config, "rag_deadline", float, 0.001, None),
        reask=bool(reask),
        max_invalid=max_invalid,
        max_drop=max_drop,
        confidence=confidence,
        baseline=_baseline(config),
        cache=_cache_mode(config),
        repeat=int(_number(config, "rag_repeat", int, 1, 1) or 1),
        sample=sample,
        sample_forced=config.getoption("rag_sample", None) == "all",
        seed=_seed(config),
        calibration=_calibration(config),
        calibration_where=ini_where(config, "rag_calibration"),
        replay=bool(config.getoption("rag_replay", False)),
        prices=_prices(config),
        cache_dir=cache_dir(config),
        report_text=report_text,  # type: ignore[arg-type]
        report=_output_path(config, "rag_report"),
        markdown=_output_path(config, "rag_markdown"),
        html=_output_path(config, "rag_html"),
        judge=_judge(config),
        thresholds=thresholds,
        thresholds_where=where,
        files=tuple(config.getini("rag_files")),
    )
