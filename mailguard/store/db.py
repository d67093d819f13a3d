"""The database: one SQLite file, its schema, durable transactions and group commit.

Durability: WAL journal with ``synchronous=FULL``: a transaction is on disk when
``commit`` returns, which is what lets the SMTP front answer ``250`` after
``accept``. ``busy_timeout`` lets the CLI and the server share the file.
Security: the data directory is made 0700 and the database 0600 whatever the
umask (it holds every message, password hashes and generated zip passwords);
SQLite gives its -wal and -shm files the database's mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import approvals, checkpoints, ledger, links, retention, sendlog, timestamps

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id        TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    origin          TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    mail_options    TEXT NOT NULL,
    smtputf8        INTEGER NOT NULL,
    auth_user       TEXT,
    client_addr     TEXT NOT NULL,
    helo            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    size            INTEGER NOT NULL,
    received_at     REAL NOT NULL,
    release_at      REAL,
    next_attempt_at REAL,
    expires_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    findings        TEXT NOT NULL DEFAULT '[]',
    updated_at      REAL NOT NULL,
    content         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
CREATE TABLE IF NOT EXISTS recipients (
    queue_id  TEXT NOT NULL REFERENCES messages(queue_id),
    position  INTEGER NOT NULL,
    address   TEXT NOT NULL,
    status    TEXT NOT NULL,
    reply     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (queue_id, position)
);
CREATE INDEX IF NOT EXISTS recipients_address ON recipients(lower(address), status);
CREATE TABLE IF NOT EXISTS used_tokens (
    nonce   TEXT PRIMARY KEY,
    used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    addresses     TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_sessions (
    session_id  TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions(username);
"""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700: only the relay's user may enter."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` if missing, and make it 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


SCHEMA_VERSION = 2   # PRAGMA user_version this code writes; 1: the columns added up to 2026-11, 2: TSA tokens


class SchemaTooNew(Exception):
    """The database was written by a newer mailguard; ``str()`` says so in Japanese, with both versions."""


class Database:
    """Synchronous access to the database at ``path`` (created on first use).

    Versioned schema (``PRAGMA user_version``): opening applies the migrations this code knows
    (``migrate``) and refuses a database whose version is newer than ``SCHEMA_VERSION``
    (``SchemaTooNew``): an older mailguard must not write tables it does not understand.
    """

    def __init__(self, path: Path, *, readonly: bool = False):
        """``readonly``: open an existing database for reading only (``mailguard scan``):
        no file is created, no mode changed, no schema touched."""
        self.path = path
        self._lock = threading.RLock()
        self._in_batch = False
        if readonly:
            self._conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30,
                                         isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            return
        private_dir(path.parent)
        private_file(path)
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # deleted rows (copies carrying link secrets, finished content) are overwritten, not left in free pages
        self._conn.execute("PRAGMA secure_delete=ON")
        self.migrated = self.migrate()   # (version found, version now)

    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to ``SCHEMA_VERSION``: (version before, version after). Every step is
        idempotent (CREATE IF NOT EXISTS, a column added only when missing), so a database of any
        earlier version, or one a crash left half migrated, ends the same.

        Raises:
            SchemaTooNew: the database's version is newer than this code's.
        """
        with self._lock:
            before = self.schema_version()
            if before > SCHEMA_VERSION:
                raise SchemaTooNew(f"データベース {self.path} は新しい mailguard (スキーマ {before}) で作られています。"
                                   f"この mailguard はスキーマ {SCHEMA_VERSION} までしか扱えません。mailguard を"
                                   "更新してください (データベースには何も書いていません)。")
            self._conn.executescript(SCHEMA + sendlog.SCHEMA + links.SCHEMA + ledger.SCHEMA + checkpoints.SCHEMA
                                     + timestamps.SCHEMA)
            self._add_columns()
            if before != SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return before, SCHEMA_VERSION

    def _add_columns(self) -> None:
        """Columns added after the first release of the schema."""
        for table, column, kind in (("recipients", "deliver_to", "TEXT"),
                                    ("messages", "original_content", "BLOB"),
                                    ("recipients", "copy", "INTEGER"),
                                    ("recipients", "protection", "TEXT"),
                                    *(("messages", c, k) for c, k in approvals.COLUMNS + retention.COLUMNS)):
            columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if column == "held_at":   # mail held before the upgrade starts its approval clock now
                    self._conn.execute("UPDATE messages SET held_at = ? WHERE state IN"
                                       " ('awaiting_approval', 'awaiting_confirmation')", (time.time(),))

        # finished messages whose content still waits for its retention: the purge's every-30-s query
        self._conn.execute("CREATE INDEX IF NOT EXISTS messages_unpurged ON messages(updated_at)"
                           " WHERE content_purged_at IS NULL")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction; rolled back on any exception.

        Inside ``run_batch`` the batch's transaction is used instead, and the
        caller's savepoint undoes this call's writes alone if it fails.
        """
        with self._lock:
            if self._in_batch:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def run_batch(self, calls: list[tuple[Callable[..., Any], tuple, dict]]) -> list[tuple[bool, Any]]:
        """Group commit: run several calls in one transaction, one fsync for all.

        Each call runs inside its own savepoint, so a call that raises (a refused
        transition, say) leaves no writes and does not disturb the others. Returns
        ``(ok, result or exception)`` per call; nothing is reported ok before COMMIT
        has returned, so a caller may still answer 250 only once its data is on disk.
        """
        outcomes: list[tuple[bool, Any]] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_batch = True
            try:
                for fn, args, kwargs in calls:
                    self._conn.execute("SAVEPOINT call")
                    try:
                        outcomes.append((True, fn(*args, **kwargs)))
                    except Exception as exc:
                        self._conn.execute("ROLLBACK TO call")
                        outcomes.append((False, exc))
                    self._conn.execute("RELEASE call")
                self._in_batch = False
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._in_batch = False
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                return [(False, exc)] * len(calls)
        return outcomes

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def state_counts(self) -> dict[str, int]:
        """{state: number of messages} (for ``/metrics``; the index on state serves it)."""
        return {row[0]: row[1] for row in self._read("SELECT state, count(*) FROM messages GROUP BY state")}

    def ping(self) -> bool:
        """The database answers a query (``/healthz``); raises when it does not."""
        return self._read("SELECT 1")[0][0] == 1
