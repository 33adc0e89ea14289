"""A content-addressed cache of verdicts in SQLite (no pytest here).

The key (:func:`verdict_key`) is a hash of everything that decides a verdict: the
evaluator's class and plain settings, its judge's model and temperature, its prompt
templates, how the plugin reads judge answers, the query, the response, the retrieved
contexts, the reference (and any other evaluator arguments), and the repeat index.
Nothing outside the key can change a cached answer. Only completed verdicts are stored
(passing, failing, invalid), as JSON, never errors; nothing but the key's hash and the
verdict is written (no prompts, no settings, no keys).

Several processes (pytest-xdist workers) share one file: WAL journal and a busy timeout.
A corrupt or foreign file is moved aside with a notice and rebuilt; the cache never
fails a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

SCHEMA = "pytest-rageval verdicts 1"
READER = "strict-1"
"""How ``judges.py`` reads judge answers: change it when the reading changes, and every
cached verdict read the old way misses."""
FILE_NAME = "verdicts.sqlite3"
WRITE_BATCH = 500
"""Rows gathered before they are committed in one transaction."""
MODES = ("on", "off", "refresh", "readonly")
Mode = Literal["on", "off", "refresh", "readonly"]
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
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recording_key(source: str | None, question_id: str, query: str) -> str:
    """Which recorded answer a question replays: its file, its id and its query."""
    text = json.dumps([source, question_id, query], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


class VerdictCache:
    """The verdicts of one cache folder. ``mode``: ``on`` reads and writes, ``refresh``
    writes without reading, ``readonly`` reads without writing, ``off`` does nothing.
    Thread-safe; opened on first use."""

    def __init__(self, folder: Path, mode: Mode = "on") -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.mode = mode
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.recorded = 0
        self.replayed = 0
        self.notices: list[str] = []
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._describe: dict[int, tuple[Any, str]] = {}
        self._pending: dict[str, dict[str, tuple[Any, ...]]] = {"verdicts": {}, "recordings": {}}

    @property
    def reads(self) -> bool:
        return self.mode in ("on", "readonly")

    @property
    def writes(self) -> bool:
        return self.mode in ("on", "refresh")

    def fingerprint(self, evaluator: Any, **reading: Any) -> str:
        """A digest of :func:`describe_evaluator` (and how answers are read: ``reading``),
        worked out once per evaluator object, not once per judgement."""
        found = self._describe.get(id(evaluator))
        if found is None or found[0] is not evaluator:
            described = {**describe_evaluator(evaluator), **reading}
            text = json.dumps(described, sort_keys=True, ensure_ascii=False, default=repr)
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            found = self._describe[id(evaluator)] = (evaluator, digest)
        return found[1]

    def get(self, metric: str, key: str) -> dict[str, Any] | None:
        """The cached verdict, counting a hit or a miss for ``metric``."""
        value = None
        if self.reads:
            pending = self._pending["verdicts"].get(key)
            if pending is not None:
                row = [(pending[1],)]
            else:
                row = self._run("SELECT value FROM verdicts WHERE key = ?", (key,), fetch=True)
            if row:
                with contextlib.suppress(ValueError, TypeError):
                    value = json.loads(row[0][0])
        with self._lock:
            (self.hits if value is not None else self.misses)[metric] += 1
        return value if isinstance(value, dict) else None

    def put(self, metric: str, key: str, value: Mapping[str, Any]) -> None:
        if self.writes:
            self._later("verdicts", key, (metric, json.dumps(value, ensure_ascii=False)))

    def _later(self, table: str, key: str, row: tuple[Any, ...]) -> None:
        """Writes are gathered and committed together (one transaction per
        ``WRITE_BATCH`` rows, and at :meth:`flush`): a commit per verdict would cost a
        10,000-question run more than its lookups."""
        with self._lock:
            self._pending[table][key] = row
            full = sum(len(rows) for rows in self._pending.values()) >= WRITE_BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        """Commit the gathered writes."""
        with self._lock:
            verdicts = [(k, *row, time.time()) for k, row in self._pending["verdicts"].items()]
            recordings = [(k, *row, time.time()) for k, row in self._pending["recordings"].items()]
            self._pending = {"verdicts": {}, "recordings": {}}
        if verdicts:
            self._run(
                "INSERT OR REPLACE INTO verdicts (key, metric, value, created) VALUES (?, ?, ?, ?)",
                verdicts,
                many=True,
            )
        if recordings:
            self._run(
                "INSERT OR REPLACE INTO recordings (key, value, created) VALUES (?, ?, ?)",
                recordings,
                many=True,
            )

    def info(self) -> dict[str, Any]:
        """Where the cache is, its size in bytes and how many verdicts it holds."""
        self.flush()
        rows = (
            self._run("SELECT COUNT(*) FROM verdicts", (), fetch=True) if self.path.exists() else []
        )
        size = sum(p.stat().st_size for p in self.folder.glob(f"{FILE_NAME}*") if p.is_file())
        return {"path": str(self.path), "bytes": size, "verdicts": rows[0][0] if rows else 0}

    def clear(self) -> None:
        """Forget every verdict and every recorded answer."""
        with self._lock:
            self._pending = {"verdicts": {}, "recordings": {}}
        self._run("DELETE FROM verdicts", ())
        self._run("DELETE FROM recordings", ())

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
        self._later("recordings", key, (json.dumps(value, ensure_ascii=False),))
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
            rows = self._run("SELECT value FROM recordings WHERE key = ?", (key,), fetch=True)
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

    # -- SQLite ------------------------------------------------------------------------

    def _run(self, sql: str, args: Any, *, fetch: bool = False, many: bool = False) -> list[Any]:
        with self._lock:
            for attempt in range(2):
                db = self._connection()
                if db is None:
                    return []
                try:
                    if many:
                        db.execute("BEGIN")
                        try:
                            db.executemany(sql, args)
                        except BaseException:
                            db.execute("ROLLBACK")
                            raise
                        db.execute("COMMIT")
                        return []
                    cursor = db.execute(sql, args)
                    return cursor.fetchall() if fetch else []
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) or "busy" in str(exc):
                        self._notice(f"the verdict cache was busy ({exc}); carried on without it")
                        return []
                    self._set_aside(f"it could not be used ({exc})")
                except sqlite3.DatabaseError as exc:
                    if attempt:
                        break
                    self._set_aside(f"it is corrupt ({exc})")
            return []

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            self._set_aside(f"it is not a pytest-rageval verdict cache ({exc})")
            try:
                self._db = self._open()
            except (sqlite3.Error, OSError) as again:
                self._broken = True
                self._notice(f"the verdict cache cannot be used ({again}); carried on without it")
        except OSError as exc:
            self._broken = True
            self._notice(f"the verdict cache folder cannot be used ({exc}); carried on without it")
        return self._db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))
            (schema,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if schema != SCHEMA:
                raise sqlite3.DatabaseError(f"schema {schema!r}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, metric TEXT, "
                "value TEXT NOT NULL, created REAL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS recordings (key TEXT PRIMARY KEY, "
                "value TEXT NOT NULL, created REAL)"
            )
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, why: str) -> None:
        """Move a bad cache file out of the way (kept for a look) and start afresh."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{FILE_NAME}.broken-{int(time.time())}")
        moved = False
        with contextlib.suppress(OSError):
            self.path.replace(aside)
            moved = True
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").unlink()
        where = f"; moved to {aside.name}" if moved else ""
        self._notice(f"the verdict cache {self.path} was set aside: {why}{where}; rebuilt")

    def _notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)
