"""The verdict cache's SQLite file: opening it, checking it is ours, reading and writing
in transactions, setting aside a file that is not a cache, and the notices about it (no
pytest here). :class:`pytest_rageval.cache.VerdictCache` is the verdicts kept in it."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = "pytest-rageval verdicts 1"
FILE_NAME = "verdicts.sqlite3"
MODES = ("on", "off", "refresh", "readonly")
"""``on`` reads and writes, ``refresh`` writes without reading, ``readonly`` reads without
writing (and creates nothing), ``off`` does nothing."""
BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another process's lock before it gives up."""


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


def open_for_writing(folder: Path, path: Path) -> sqlite3.Connection:
    """The cache file opened for writing, made (with its tables) when it is new."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        _wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")  # two xdist workers may make the file at once
        try:
            if not _check(db):
                db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
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


def _wal(db: sqlite3.Connection) -> None:
    """Switch ``db`` to the WAL journal. Two processes switching a new file at once (xdist
    workers starting together) can be told "database is locked" at once: SQLite does not
    wait for a lock it would take while holding another, as that could deadlock. So try
    again, for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def open_for_reading(path: Path) -> sqlite3.Connection | None:
    """The file opened read-only; None when it holds nothing yet. In a folder this
    process may not write, a WAL database can only be opened as immutable."""
    uri = path.absolute().as_uri()
    failed: sqlite3.Error | None = None
    for how in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(
            f"{uri}?{how}",
            uri=True,
            timeout=BUSY_TIMEOUT,
            check_same_thread=False,
            isolation_level=None,
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


MAX_PARAMETERS = 999
"""SQLite's limit on a statement's ``?`` before 3.32 (32,766 since)."""


def _insert(db: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``db.executemany(sql, rows)`` for ``INSERT ... VALUES (?, ...)``, as statements of
    many rows each. ``executemany`` lets go of the GIL for every row and must win it back
    from pytest's main thread to bind the next: with a busy main thread, 10,000 rows took
    64 s that way against 0.7 s here (2 cores, a thread counting in a loop)."""
    head, sep, values = sql.partition(" VALUES ")
    if not sep or not rows:
        db.executemany(sql, rows)
        return
    per = max(1, MAX_PARAMETERS // len(rows[0]))
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        db.execute(
            f"{head} VALUES {', '.join([values] * len(part))}",
            [value for row in part for value in row],
        )


class CacheFile:
    """One cache folder's SQLite file, opened on first use, in a mode of :data:`MODES`.
    Every failure is said once in ``notices``; the file never fails a run."""

    def __init__(self, folder: Path, mode: str = "on") -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.mode = mode
        self.notices: list[str] = []
        self.problem: str | None = None
        """Why the cache cannot be read, when it cannot (``cannot be read (...)``...)."""
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._unwritable: str | None = None
        """Why nothing more is written (None: writes go on)."""

    @property
    def reads(self) -> bool:
        return self.mode in ("on", "readonly")

    @property
    def writes(self) -> bool:
        return self.mode in ("on", "refresh") and self._unwritable is None

    def _discard_pending(self) -> None:
        """Drop writes gathered but not committed (nothing more will be written)."""

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
                        _insert(db, sql, rows)
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
                self._db = open_for_writing(self.folder, self.path)
                return self._db
            except (sqlite3.Error, OSError) as exc:
                if not _not_ours(exc):
                    unwritable = str(exc)
                elif self._set_aside(_what(exc)):
                    try:
                        self._db = open_for_writing(self.folder, self.path)
                        return self._db
                    except (sqlite3.Error, OSError) as again:
                        unwritable = str(again)
                else:
                    self._broken = True
                    return None
        if self.reads and self._exists():
            try:
                self._db = open_for_reading(self.path)
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
        self._discard_pending()
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


def union(folders: Sequence[Path], into: Path) -> dict[str, int]:
    """Copy every verdict and recording of the caches in ``folders`` into the cache in
    ``into`` (made when new): rows are keyed by what was judged, so two caches never
    disagree on a key and the rows already in ``into`` stay. Returns the rows added. Safe
    while nothing writes to ``into``; a folder with no cache, or a file that is not
    one, raises ValueError naming it."""
    target = into / FILE_NAME
    sources = []
    for folder in folders:
        path = folder / FILE_NAME
        if not path.is_file():
            raise ValueError(f"{folder}: no verdict cache in it (no {FILE_NAME})")
        if path.resolve() == target.resolve():
            continue
        try:
            found = open_for_reading(path)
        except sqlite3.Error as exc:
            why = _what(exc) if _not_ours(exc) else f"it cannot be read ({exc})"
            raise ValueError(f"{path}: {why}") from None
        if found is not None:
            found.close()
            sources.append(path)
    db = open_for_writing(into, target)
    added = {"verdicts": 0, "recordings": 0}
    try:
        for path in sources:
            db.execute("ATTACH DATABASE ? AS source", (str(path),))
            try:
                db.execute("BEGIN IMMEDIATE")
                for table, columns in (
                    ("verdicts", "key, metric, value, created"),
                    ("recordings", "key, value, created"),
                ):
                    before = db.total_changes
                    db.execute(
                        f"INSERT OR IGNORE INTO main.{table} ({columns}) "
                        f"SELECT {columns} FROM source.{table}"
                    )
                    added[table] += db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            finally:
                db.execute("DETACH DATABASE source")
    finally:
        db.close()
    return added
