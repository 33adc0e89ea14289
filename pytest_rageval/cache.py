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
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pytest_rageval.text import clip

SCHEMA = "pytest-rageval verdicts 1"
READER = "strict-1"
"""How ``judges.py`` reads judge answers: change it when the reading changes, and every
cached verdict read the old way misses."""
FILE_NAME = "verdicts.sqlite3"
WRITE_BATCH = 500
"""Rows gathered before they are committed in one transaction."""
COMMIT_EVERY = 2.0
"""Seconds a gathered row may wait for its commit: a killed run loses the verdicts of its
last seconds, not of its last minutes."""
Mode = Literal["on", "off", "refresh", "readonly"]
MODES: tuple[Mode, ...] = get_args(Mode)
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


class NotACache(sqlite3.DatabaseError):
    """The file is SQLite, but not a pytest-rageval verdict cache."""


def _not_ours(exc: BaseException) -> bool:
    """Whether ``exc`` proves the file is not a verdict cache (not SQLite, corrupt, someone
    else's). A file that cannot be opened, written or read (permissions, a full disk, an
    I/O error, a lock) may hold good verdicts: never this."""
    if isinstance(exc, NotACache):
        return True
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if isinstance(name, str):
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text
    )


def _what(exc: BaseException) -> str:
    """Why a file that is not ours is not: ``it is corrupt (...)`` or ``it is not a
    pytest-rageval verdict cache (...)``."""
    if "malformed" in str(exc) or str(getattr(exc, "sqlite_errorname", "")).startswith(
        "SQLITE_CORRUPT"
    ):
        return f"it is corrupt ({exc})"
    return f"it is not a pytest-rageval verdict cache ({exc})"


def _busy(exc: BaseException) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _check(db: sqlite3.Connection) -> bool:
    """True when ``db`` is a verdict cache, False when it is empty (nothing in it yet);
    raises :class:`NotACache` for any other database."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    schema = None
    readable = "meta" in tables and {"name", "value"} <= {
        row[1] for row in db.execute("PRAGMA table_info(meta)")
    }
    if readable:
        row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        schema = row[0] if row else None
    if schema == SCHEMA:
        return True
    if schema is not None:
        raise NotACache(f"schema {schema!r}")
    others = sorted(tables - {"meta"} if readable else tables)
    if others:
        raise NotACache(f"tables {', '.join(others)} and no schema")
    return False


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


class VerdictCache:
    """The verdicts of one cache folder. ``mode``: ``on`` reads and writes, ``refresh``
    writes without reading, ``readonly`` reads without writing (and creates nothing),
    ``off`` does nothing. Thread-safe; opened on first use."""

    def __init__(self, folder: Path, mode: Mode = "on") -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.mode = mode
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.recorded = 0
        self.replayed = 0
        self.notices: list[str] = []
        self.problem: str | None = None
        """Why the cache cannot be read, when it cannot (``cannot be read (...)``...)."""
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._unwritable: str | None = None
        """Why nothing more is written (None: writes go on)."""
        self._describe: dict[int, tuple[Any, str]] = {}
        self._pending: dict[str, dict[str, tuple[Any, ...]]] = {"verdicts": {}, "recordings": {}}
        self._oldest: float | None = None
        """When the oldest gathered row not yet committed was gathered (monotonic)."""

    @property
    def reads(self) -> bool:
        return self.mode in ("on", "readonly")

    @property
    def writes(self) -> bool:
        return self.mode in ("on", "refresh") and self._unwritable is None

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
            self._pending = {"verdicts": {}, "recordings": {}}
            self._oldest = None
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

    # -- SQLite ------------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """The rows of a query; none when the cache cannot be read (said once)."""
        with self._lock:
            for attempt in range(2):
                db = self._connection()
                if db is None:
                    return []
                try:
                    return db.execute(sql, args).fetchall()
                except sqlite3.Error as exc:
                    if not self._failed(exc, "read", retry=attempt == 0):
                        return []
            return []

    def _write(self, work: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> bool:
        """Run ``work`` (statements and their rows) in one transaction; False when it was
        not written (said once)."""
        with self._lock:
            for attempt in range(2):
                db = self._connection()
                if db is None or not self.writes:
                    return False
                try:
                    db.execute("BEGIN")
                    for sql, rows in work:
                        db.executemany(sql, rows)
                    db.execute("COMMIT")
                    return True
                except (sqlite3.Error, ValueError) as exc:  # ValueError: text SQLite refuses
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    if not self._failed(exc, "written", retry=attempt == 0):
                        return False
            return False

    def _failed(self, exc: BaseException, doing: str, *, retry: bool) -> bool:
        """Deal with an error of a statement; True when it is worth running again (the
        file was not ours and a fresh one replaced it)."""
        if _busy(exc):
            self._notice(f"the verdict cache was busy ({exc}); carried on without it")
            return False
        if _not_ours(exc) and self._unwritable is None and self.mode != "readonly":
            moved = self._set_aside(_what(exc))
            return moved and retry
        if _not_ours(exc):
            self._close()
            self._broken = True
            self._given_up(f"{_what(exc)[3:]}; left as it is")
        elif doing == "written":
            self._cannot_write(str(exc))
        else:
            self._notice(f"the verdict cache {self.path} could not be read ({exc})")
        return False

    def _connection(self) -> sqlite3.Connection | None:
        """The open database: for writing when this mode writes and the file can be
        written, else for reading when this mode reads; None when neither can be."""
        if self._db is not None or self._broken:
            return self._db
        unwritable = None
        if self.writes:
            try:
                self._db = self._open_for_writing()
                return self._db
            except (sqlite3.Error, OSError) as exc:
                if not _not_ours(exc):
                    unwritable = str(exc)
                elif self._set_aside(_what(exc)):
                    try:
                        self._db = self._open_for_writing()
                        return self._db
                    except (sqlite3.Error, OSError) as again:
                        unwritable = str(again)
                else:
                    self._broken = True
                    return None
        if self.reads and self._exists():
            try:
                self._db = self._open_for_reading()
            except (sqlite3.Error, OSError) as exc:
                if _not_ours(exc):
                    self._given_up(f"{_what(exc)[3:]}; left as it is")
                else:
                    self._given_up(f"cannot be read ({exc})")
                self._broken = True
                return None
        if unwritable is not None:
            self._cannot_write(unwritable)
        self._broken = self._db is None
        return self._db

    def _open_for_writing(self) -> sqlite3.Connection:
        self.folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")  # two xdist workers may make the file at once
            try:
                if not _check(db):
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)"
                    )
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, "
                        "metric TEXT, value TEXT NOT NULL, created REAL)"
                    )
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS recordings (key TEXT PRIMARY KEY, "
                        "value TEXT NOT NULL, created REAL)"
                    )
                # a write even when all is there: a file this process may not write
                # (SQLite opens it read-only without a word) is found out now
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except BaseException:
            db.close()
            raise
        return db

    def _open_for_reading(self) -> sqlite3.Connection | None:
        """The file opened read-only; None when it holds nothing yet. In a folder this
        process may not write, a WAL database can only be opened as immutable."""
        uri = self.path.absolute().as_uri()
        failed: sqlite3.Error | None = None
        for how in ("mode=ro", "immutable=1"):
            db = sqlite3.connect(
                f"{uri}?{how}", uri=True, timeout=30, check_same_thread=False, isolation_level=None
            )
            try:
                if _check(db):
                    return db
                db.close()
                return None
            except sqlite3.Error as exc:
                db.close()
                if _not_ours(exc):
                    raise
                failed = exc
        assert failed is not None
        raise failed

    def _exists(self) -> bool:
        try:
            return self.path.is_file()
        except OSError:  # cannot even look: opening it will say why
            return True

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _set_aside(self, why: str) -> bool:
        """Move a file that is not a verdict cache out of the way (kept for a look) and
        start afresh; False (and a notice) when it cannot be moved."""
        self._close()
        aside = self.path.with_name(f"{FILE_NAME}.broken-{int(time.time())}")
        try:
            self.path.replace(aside)
        except OSError as exc:
            self._given_up(f"{why[3:]}; it could not be moved aside ({exc})")
            self._broken = True
            return False
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").unlink()
        self._notice(
            f"the verdict cache {self.path} was set aside: {why}; moved to {aside.name}; rebuilt"
        )
        return True

    def _cannot_write(self, why: str) -> None:
        """Nothing more is written: with a notice saying whether verdicts are still read.
        Called with the lock held."""
        self._unwritable = why
        self._pending = {"verdicts": {}, "recordings": {}}
        self._oldest = None
        then = (
            "verdicts are read from it, new ones are not stored"
            if self.reads and self._db is not None
            else "carried on without it"
        )
        self._notice(f"the verdict cache {self.path} cannot be written ({why}); {then}")

    def _given_up(self, problem: str) -> None:
        self.problem = problem
        self._notice(f"the verdict cache {self.path} {problem}; carried on without it")

    def _notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)
