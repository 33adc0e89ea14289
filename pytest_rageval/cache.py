"""A content-addressed cache of verdicts in SQLite (no pytest here).

The key (:func:`verdict_key`) is a hash of everything that decides a verdict: the
evaluator's class and plain settings, its judge's model and temperature, its prompt
templates, how the plugin reads judge answers, the query, the response, the retrieved
contexts, the reference (and any other evaluator arguments), and the repeat index.
Nothing outside the key can change a cached answer. Only completed verdicts are stored
(passing, failing, invalid), as JSON, never errors; nothing but the key's hash and the
verdict is written (no prompts, no settings, no keys).

Several processes (pytest-xdist workers) share one file: WAL journal and a busy timeout.
Only a file that is provably not a verdict cache (not SQLite, corrupt, another schema,
other tables and no schema) is moved aside with a notice and rebuilt. A cache that
cannot be written (a read-only folder or file, a full disk, an I/O error) is read when it
can be, left where it is, and said once; the cache never fails a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_rageval.cache_file import FILE_NAME as FILE_NAME
from pytest_rageval.cache_file import MODES as MODES
from pytest_rageval.cache_file import SCHEMA as SCHEMA
from pytest_rageval.cache_file import CacheFile
from pytest_rageval.cache_file import NotACache as NotACache
from pytest_rageval.text import clip

READER = "strict-1"
"""How ``judges.py`` reads judge answers: change it when the reading changes, and every
cached verdict read the old way misses."""
WRITE_BATCH = 500
"""Rows gathered before they are committed in one transaction."""
COMMIT_EVERY = 2.0
"""Seconds a gathered row may wait for its commit: a killed run loses the verdicts of its
last seconds, not of its last minutes."""
_PLAIN = (str, int, float, bool, type(None))


def describe_evaluator(evaluator: Any) -> dict[str, Any]:
    """The parts of an evaluator that decide its verdicts, as plain data."""
    cls = type(evaluator)
    settings = {
        name: value
        for name, value in sorted(getattr(evaluator, "__dict__", {}).items())
        if isinstance(value, _PLAIN) and not name.startswith("__")
    }
    prompts: dict[str, str] = {}
    get_prompts = getattr(evaluator, "get_prompts", None)
    if callable(get_prompts):
        with contextlib.suppress(Exception):
            for name, prompt in sorted(get_prompts().items()):
                template = getattr(prompt, "get_template", None)
                prompts[name] = template() if callable(template) else type(prompt).__name__
    llm = getattr(evaluator, "_llm", None) or getattr(evaluator, "llm", None)
    judge = None
    if llm is not None:
        model = getattr(llm, "model", None)
        if not isinstance(model, str):
            with contextlib.suppress(Exception):
                model = llm.metadata.model_name
        judge = {
            "class": f"{type(llm).__module__}.{type(llm).__qualname__}",
            "model": model if isinstance(model, str) else None,
            "temperature": getattr(llm, "temperature", None),
            "settings": _llm_settings(llm),
        }
    described = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "settings": settings,
        "prompts": prompts,
        "judge": judge,
        "reader": READER,
    }
    embedder = getattr(evaluator, "_embed_model", None)
    if embedder is not None:  # semantic similarity: its verdict is the embedding model's
        described["embedder"] = {
            "class": f"{type(embedder).__module__}.{type(embedder).__qualname__}",
            "model": getattr(embedder, "model_name", None),
            "settings": _llm_settings(embedder),
        }
    return described


_NOT_VERDICT = ("key", "secret", "token_", "timeout", "retries", "callback", "http", "base")
"""Judge settings that cannot change an answer (or are credentials): left out of the key,
so that a new API key or a longer time-out keeps the cache."""


def _llm_settings(llm: Any) -> dict[str, Any]:
    """The judge LLM's plain settings that can change its answers (max_tokens, top_p,
    seed...)."""
    dump = getattr(llm, "model_dump", None)
    if not callable(dump):
        return {}
    try:
        fields = dump()
    except Exception:
        return {}
    return {
        name: value
        for name, value in sorted(fields.items())
        if isinstance(value, _PLAIN) and not any(part in name for part in _NOT_VERDICT)
    }


def verdict_key(
    evaluator: object,
    *,
    query: str | None,
    response: str | None,
    contexts: Sequence[str] | None,
    arguments: Mapping[str, Any],
    repeat: int = 1,
) -> str:
    """The cache key of one judgement: ``evaluator`` is :func:`describe_evaluator`'s
    answer (or :meth:`VerdictCache.fingerprint`'s digest of it), ``arguments`` the
    evaluator's other keyword arguments (``reference``...)."""
    payload = {
        "evaluator": evaluator,
        "query": query,
        "response": response,
        "contexts": list(contexts) if contexts is not None else None,
        "arguments": dict(arguments),
        "repeat": repeat,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=repr)
    return _digest(text)


def _digest(text: str) -> str:
    # surrogatepass: a lone surrogate (from a broken decoder) gets a key of its own
    # instead of a UnicodeEncodeError; every other text hashes as plain UTF-8
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def recording_key(source: str | None, question_id: str, query: str) -> str:
    """Which recorded answer a question replays: its file, its id and its query."""
    return _digest(json.dumps([source, question_id, query], ensure_ascii=False))


def to_json(evaluation: Any) -> dict[str, Any] | None:
    """A completed verdict as JSON; None for what must not be cached (no verdict)."""
    passing = getattr(evaluation, "passing", None)
    invalid = bool(getattr(evaluation, "invalid_result", False))
    if passing is None and not invalid and getattr(evaluation, "score", None) is None:
        return None
    return {
        "passing": passing,
        "score": getattr(evaluation, "score", None),
        "feedback": getattr(evaluation, "feedback", None),
        "invalid_result": invalid,
        "invalid_reason": getattr(evaluation, "invalid_reason", None),
    }


def from_json(
    value: Mapping[str, Any],
    query: str | None,
    response: str | None,
    contexts: Sequence[str] | None,
) -> Any:
    """The ``EvaluationResult`` a cached verdict stands for."""
    from llama_index.core.evaluation import EvaluationResult

    return EvaluationResult(
        query=query,
        response=response,
        contexts=list(contexts) if contexts is not None else None,
        passing=value.get("passing"),
        score=value.get("score"),
        feedback=value.get("feedback"),
        invalid_result=bool(value.get("invalid_result")),
        invalid_reason=value.get("invalid_reason"),
    )


def _stored(value: Mapping[str, Any]) -> str:
    """A verdict as stored: its long texts clipped (a judge's answer can be megabytes),
    as ASCII JSON (a lone surrogate is kept as ``\\ud83d``, never a UnicodeEncodeError)."""
    clipped = {
        name: clip(text)
        if name in ("feedback", "invalid_reason") and isinstance(text, str)
        else text
        for name, text in value.items()
    }
    return json.dumps(clipped, ensure_ascii=True, default=repr)


def _plain_text(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class VerdictCache(CacheFile):
    """The verdicts of one cache folder. ``mode``: ``on`` reads and writes, ``refresh``
    writes without reading, ``readonly`` reads without writing (and creates nothing),
    ``off`` does nothing. Thread-safe; opened on first use."""

    def __init__(self, folder: Path, mode: str = "on") -> None:
        super().__init__(folder, mode)
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.recorded = 0
        self.replayed = 0
        self._describe: dict[int, tuple[Any, str]] = {}
        self._pending: dict[str, dict[str, tuple[Any, ...]]] = {"verdicts": {}, "recordings": {}}
        self._oldest: float | None = None
        """When the oldest gathered row not yet committed was gathered (monotonic)."""

    def fingerprint(self, evaluator: Any, **reading: Any) -> str:
        """A digest of :func:`describe_evaluator` (and how answers are read: ``reading``),
        worked out once per evaluator object, not once per judgement."""
        found = self._describe.get(id(evaluator))
        if found is None or found[0] is not evaluator:
            described = {**describe_evaluator(evaluator), **reading}
            text = json.dumps(described, sort_keys=True, ensure_ascii=False, default=repr)
            found = self._describe[id(evaluator)] = (evaluator, _digest(text))
        return found[1]

    def get(self, metric: str, key: str) -> dict[str, Any] | None:
        """The cached verdict, counting a hit or a miss for ``metric``."""
        value = None
        if self.reads:
            pending = self._pending["verdicts"].get(key)
            if pending is not None:
                row = [(pending[1],)]
            else:
                row = self._read("SELECT value FROM verdicts WHERE key = ?", (key,))
            if row:
                with contextlib.suppress(ValueError, TypeError):
                    value = json.loads(row[0][0])
        with self._lock:
            (self.hits if value is not None else self.misses)[metric] += 1
        return value if isinstance(value, dict) else None

    def put(self, metric: str, key: str, value: Mapping[str, Any]) -> None:
        """Keep a verdict (its feedback clipped to ``TEXT_LIMIT`` characters)."""
        if self.writes:
            self._later("verdicts", key, (_plain_text(metric), _stored(value)))

    def _later(self, table: str, key: str, row: tuple[Any, ...]) -> None:
        """Writes are gathered and committed together: a commit per verdict would cost a
        10,000-question run more than its lookups. One transaction per ``WRITE_BATCH``
        rows, or once the oldest has waited ``COMMIT_EVERY`` seconds (also checked by
        :meth:`flush_due`), and at :meth:`flush`."""
        with self._lock:
            self._pending[table][key] = row
            now = time.monotonic()
            if self._oldest is None:
                self._oldest = now
            due = now - self._oldest >= COMMIT_EVERY
            full = sum(len(rows) for rows in self._pending.values()) >= WRITE_BATCH
        if full or due:
            self.flush()

    def flush_due(self) -> None:
        """Commit the gathered writes if the oldest has waited ``COMMIT_EVERY`` seconds.
        Cheap: the runner calls it several times a second, on its loop thread, the thread
        that gathers the writes."""
        oldest = self._oldest
        if oldest is not None and time.monotonic() - oldest >= COMMIT_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit the gathered writes."""
        with self._lock:
            created = time.time()
            verdicts = [(k, *row, created) for k, row in self._pending["verdicts"].items()]
            recordings = [(k, *row, created) for k, row in self._pending["recordings"].items()]
            self._pending = {"verdicts": {}, "recordings": {}}
            self._oldest = None
        work = []
        if verdicts:
            work.append(
                (
                    "INSERT OR REPLACE INTO verdicts (key, metric, value, created) "
                    "VALUES (?, ?, ?, ?)",
                    verdicts,
                )
            )
        if recordings:
            work.append(
                (
                    "INSERT OR REPLACE INTO recordings (key, value, created) VALUES (?, ?, ?)",
                    recordings,
                )
            )
        if work:
            self._write(work)

    def info(self) -> dict[str, Any]:
        """Where the cache is, its size in bytes and how many verdicts it holds; with
        ``problem`` saying why not when it cannot be read (``verdicts`` is then None)."""
        self.flush()
        count: int | None = 0
        if self._exists():
            rows = self._read("SELECT COUNT(*) FROM verdicts", ())
            count = rows[0][0] if rows else (None if self.problem else 0)
        size = 0
        with contextlib.suppress(OSError):
            size = sum(p.stat().st_size for p in self.folder.glob(f"{FILE_NAME}*") if p.is_file())
        return {"path": str(self.path), "bytes": size, "verdicts": count, "problem": self.problem}

    def clear(self) -> bool:
        """Forget every verdict and every recorded answer; False (and a notice) when the
        cache could not be cleared."""
        with self._lock:
            self._discard_pending()
        if not self._exists():
            return True
        done = self._write([("DELETE FROM verdicts", [()]), ("DELETE FROM recordings", [()])])
        if not done:
            why = self.problem or f"it cannot be written ({self._unwritable or self.mode})"
            self._notice(f"the verdict cache {self.path} was not cleared: {why}")
        return done

    def record(
        self,
        key: str,
        response: str | None,
        contexts: Sequence[str] | None,
        sources: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Keep what the app answered (for ``--rag-replay``)."""
        if not self.writes:
            return
        value = {
            "response": response,
            "contexts": list(contexts) if contexts is not None else None,
            "sources": [list(ids) for ids in sources] if sources is not None else None,
        }
        self._later("recordings", key, (json.dumps(value, ensure_ascii=True, default=repr),))
        with self._lock:
            self.recorded += 1

    def recall(
        self, key: str
    ) -> tuple[str | None, list[str] | None, list[list[str]] | None] | None:
        """What the app answered last time it was asked this question, if it was."""
        pending = self._pending["recordings"].get(key)
        if pending is not None:
            rows: list[Any] = [pending]
        else:
            rows = self._read("SELECT value FROM recordings WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            value = json.loads(rows[0][0])
            answer = (value["response"], value["contexts"], value.get("sources"))
        except (ValueError, TypeError, KeyError):
            return None
        with self._lock:
            self.replayed += 1
        return answer

    def stats(self) -> dict[str, Any]:
        metrics = sorted(set(self.hits) | set(self.misses))
        return {
            "mode": self.mode,
            "path": str(self.path),
            "metrics": {m: {"hits": self.hits[m], "misses": self.misses[m]} for m in metrics},
            "replayed": self.replayed,
            "recorded": self.recorded,
        }

    def close(self) -> None:
        """Commit what is gathered and close the file."""
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _discard_pending(self) -> None:
        self._pending = {"verdicts": {}, "recordings": {}}
        self._oldest = None
