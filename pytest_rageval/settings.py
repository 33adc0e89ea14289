"""Every setting of a run, resolved once (by :mod:`pytest_rageval.options`) into a frozen
:class:`Settings`: the layers below the wiring read settings from here, never from the
options module (no pytest here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_rageval.baseline import Baseline
from pytest_rageval.judges import JudgeSpec

DEFAULT_FILES = "rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv"
DEFAULT_WORKERS = 8
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
DEFAULT_QUERY_RETRIES = 0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_JUDGE_MODEL = "gpt-4o-mini"
REPORT_TEXT_CHOICES = ("full", "truncate", "none")
DEFAULT_CACHE_DIR = ".rageval_cache"


@dataclass(frozen=True)
class Settings:
    """Every pytest-rageval setting of a run, after validation."""

    workers: int = DEFAULT_WORKERS
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    query_retries: int = DEFAULT_QUERY_RETRIES
    max_backoff: float = DEFAULT_MAX_BACKOFF
    rpm: float | None = None
    deadline: float | None = None
    reask: bool = False
    max_invalid: float | None = None
    max_drop: float | None = None
    confidence: float | None = None
    baseline: Baseline | None = None
    repeat: int = 1
    sample: str | None = None
    """``all`` or ``sequential`` from the command line or the ini (None: neither)."""
    sample_forced: bool = False
    """``--rag-sample all``: every set is judged in full, whatever its marker or file say."""
    seed: int | None = None
    calibration: Path | None = None
    """The ini's ``rag_calibration`` labels file (relative to the ini file's folder)."""
    calibration_where: str = "rag_calibration"
    replay: bool = False
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    cache: str = "on"
    """One of :data:`pytest_rageval.cache.MODES`."""
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    report_text: Literal["full", "truncate", "none"] = "truncate"
    report: Path | None = None
    markdown: Path | None = None
    html: Path | None = None
    judge: JudgeSpec = field(default_factory=lambda: JudgeSpec("openai", DEFAULT_JUDGE_MODEL))
    thresholds: dict[str, float] = field(default_factory=dict)
    thresholds_where: str = "rag_thresholds"
    files: tuple[str, ...] = tuple(DEFAULT_FILES.split())

    def to_json(self) -> dict[str, Any]:
        """The settings a report records (paths as given, the baseline by its path)."""
        return {
            "workers": self.workers,
            "timeout": self.timeout,
            "retries": self.retries,
            "query_retries": self.query_retries,
            "max_backoff": self.max_backoff,
            "rpm": self.rpm,
            "deadline": self.deadline,
            "reask": self.reask,
            "max_invalid": self.max_invalid,
            "max_drop": self.max_drop,
            "confidence": self.confidence,
            "thresholds": dict(self.thresholds),
            "judge": str(self.judge),
            "judge_model": self.judge.model,
            "report_text": self.report_text,
            "baseline": self.baseline.path if self.baseline is not None else None,
            "cache": self.cache,
            "repeat": self.repeat,
            "sample": self.sample,
            "seed": self.seed,
        }

    def runner_options(self, elapsed: float = 0.0) -> dict[str, Any]:
        """The keywords of ``Runner`` these settings give, ``elapsed`` seconds into the run
        (the deadline counts from its start)."""
        deadline = None if self.deadline is None else max(0.0, self.deadline - elapsed)
        return {
            "workers": self.workers,
            "timeout": self.timeout,
            "retries": self.retries,
            "query_retries": self.query_retries,
            "max_backoff": self.max_backoff,
            "rpm": self.rpm,
            "deadline": deadline,
            "reask": self.reask,
            "replay": self.replay,
        }
