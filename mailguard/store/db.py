"""The database: its schema, its versions, durable transactions and group commit.

Two databases behind one interface: the embedded SQLite file (``sqlite``, the default) and
PostgreSQL (``postgres``, MAILGUARD_DATABASE_URL) for several nodes sharing one queue. The store
modules write their SQL once; the backend says what differs (placeholders, types, locking).
Durability: a transaction is on disk when ``commit`` returns (SQLite: WAL, ``synchronous=FULL``;
PostgreSQL: ``synchronous_commit``), which is what lets the SMTP front answer ``250`` after ``accept``.
Raw bodies live in ``message_bodies``, apart from the ``messages`` row whose state changes: a
state change never rewrites a body.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import approvals, checkpoints, ledger, links, retention, sendlog, timestamps
from .aio import reads
from .sqlite import private_dir, private_file  # noqa: F401  (re-exported: store.private_dir)

log = logging.getLogger("mailguard.store")

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
    lease_owner     TEXT,
    lease_expires   REAL
);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
CREATE TABLE IF NOT EXISTS message_bodies (
    queue_id         TEXT PRIMARY KEY,
    content          BLOB NOT NULL,
    original_content BLOB
);
CREATE TABLE IF NOT EXISTS job_leases (
    name    TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    queue_id  TEXT NOT NULL REFERENCES messages(queue_id),
    position  INTEGER NOT NULL,
    address   TEXT NOT NULL,
    status    TEXT NOT NULL,
    reply     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (queue_id, position)
);
CREATE INDEX IF NOT EXISTS recipients_address ON recipients(lower(address), status);
CREATE TABLE IF NOT EXISTS auth_failures (
    key TEXT NOT NULL,
    at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_failures_key ON auth_failures(key, at);
CREATE TABLE IF NOT EXISTS auth_locks (
    key   TEXT PRIMARY KEY,
    until REAL NOT NULL
);
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


# The version this code writes (SQLite: PRAGMA user_version; PostgreSQL: mailguard_schema).
# 1: the columns added up to 2026-11; 2: TSA tokens; 3: bodies in message_bodies, leases, shared AUTH lockouts.
SCHEMA_VERSION = 3


class SchemaTooNew(Exception):
    """The database was written by a newer mailguard; ``str()`` says so in Japanese, with both versions."""


class Database:
    """Synchronous access to the database at ``target``: a ``Path`` (SQLite, created on first use)
    or a ``postgresql://`` URL (MAILGUARD_DATABASE_URL).

    ``node``: who holds the leases this process takes (``host/pid/random``: unique per run).
    Versioned schema: opening applies the migrations this code knows (``migrate``) and refuses a
    database whose version is newer than ``SCHEMA_VERSION`` (``SchemaTooNew``): an older
    mailguard must not write tables it does not understand.
    """

    def __init__(self, target: Path | str, *, readonly: bool = False, node: str = ""):
        """``readonly``: open an existing database for reading only (``mailguard scan``):
        no file is created, no mode changed, no schema touched."""
        self.node = node or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self._lock = threading.RLock()
        self._in_batch = False
        if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
            from .postgres import Backend

            self.path: Path | None = None
            self._backend = Backend(target, readonly=readonly)
        else:
            from .sqlite import Backend

            self.path = Path(target)
            self._backend = Backend(self.path, readonly=readonly)
        self.shared = self._backend.shared
        if not readonly:
            self.migrated = self.migrate()   # (version found, version now)

    def clock(self) -> float:
        """Now (POSIX s) on the database's clock: leases are set by one node and judged by another, so
        they are measured on one clock (PostgreSQL's, by an offset taken at each connect)."""
        return time.time() + self._backend.clock_offset

    @property
    def _conn(self):
        return self._backend.conn

    def schema_version(self) -> int:
        return self._backend.version()

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to ``SCHEMA_VERSION``: (version before, version after). Every step is
        idempotent (CREATE IF NOT EXISTS, a column added only when missing), so a database of any
        earlier version, or one a crash left half migrated, ends the same. Nodes that start
        together migrate one after the other.

        Raises:
            SchemaTooNew: the database's version is newer than this code's.
        """
        with self._lock, self._backend.migrating():
            before = self.schema_version()
            if before > SCHEMA_VERSION:
                raise SchemaTooNew(f"データベース {self._backend.name} は新しい mailguard (スキーマ {before}) で作られて"
                                   f"います。この mailguard はスキーマ {SCHEMA_VERSION} までしか扱えません。mailguard を"
                                   "更新してください (データベースには何も書いていません)。")
            if before == SCHEMA_VERSION and self.shared:
                return before, before   # nothing to do: no DDL locks against the running nodes' writes
            self._backend.script(SCHEMA + sendlog.SCHEMA + links.SCHEMA + ledger.SCHEMA + checkpoints.SCHEMA
                                 + timestamps.SCHEMA)
            self._add_columns()
            self._move_bodies()
            if before != SCHEMA_VERSION:
                self._backend.set_version(SCHEMA_VERSION)
            return before, SCHEMA_VERSION

    def _add_columns(self) -> None:
        """Columns added after the first release of the schema."""
        for table, column, kind in (("recipients", "deliver_to", "TEXT"),
                                    ("recipients", "copy", "INTEGER"),
                                    ("recipients", "protection", "TEXT"),
                                    ("messages", "lease_owner", "TEXT"), ("messages", "lease_expires", "REAL"),
                                    *(("messages", c, k) for c, k in approvals.COLUMNS + retention.COLUMNS)):
            if column not in self._backend.columns(table):
                self._backend.script(f"ALTER TABLE {table} ADD COLUMN {column} {kind};")
                if column == "held_at":   # mail held before the upgrade starts its approval clock now
                    self._conn.execute("UPDATE messages SET held_at = ? WHERE state IN"
                                       " ('awaiting_approval', 'awaiting_confirmation')", (time.time(),))

        # finished messages whose content still waits for its retention: the purge's every-30-s query
        self._conn.execute("CREATE INDEX IF NOT EXISTS messages_unpurged ON messages(updated_at)"
                           " WHERE content_purged_at IS NULL")

    def _move_bodies(self) -> None:
        """Version 3: bodies out of ``messages`` (an older database kept them in its rows)."""
        columns = self._backend.columns("messages")
        if "content" not in columns:
            return
        original = "original_content" if "original_content" in columns else "NULL"
        # one transaction (PostgreSQL: the migration's own; SQLite: this one): copied and dropped together
        with contextlib.nullcontext() if self.shared else self._write():
            # "WHERE true": without it SQLite reads the upsert's ON as a join's
            self._conn.execute("INSERT INTO message_bodies (queue_id, content, original_content)"
                               f" SELECT queue_id, content, {original} FROM messages WHERE true"
                               " ON CONFLICT (queue_id) DO NOTHING")
            for column in ("content", "original_content"):
                if column in columns:
                    self._conn.execute(f"ALTER TABLE messages DROP COLUMN {column}")

    def close(self) -> None:
        self._backend.close()

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One durable write transaction; rolled back on any exception.

        Inside ``run_batch`` the batch's transaction is used instead, and the
        caller's savepoint undoes this call's writes alone if it fails.
        """
        with self._lock:
            if self._in_batch:
                yield self._conn
                return
            self._begin()
            try:
                yield self._conn
                self._commit()
            except BaseException:
                self._rollback()   # also when COMMIT itself failed: no transaction is left open
                raise

    def _begin(self, *then: str) -> None:
        """BEGIN (and the write lock), then ``then`` (a first savepoint): one round trip on PostgreSQL."""
        self._backend.ensure()
        self._conn.log_head = None
        try:
            self._backend.run(*self._backend.begin, *then)
        except BaseException:
            self._rollback()
            raise

    def _commit(self, *first: str) -> None:
        self._backend.run(*first, "COMMIT")
        self._conn.log_head = None   # other writers may append once the lock is released

    def _rollback(self) -> None:
        """Undo the open transaction; never raises (a connection the server dropped has no transaction
        left to undo, and the caller is already handling the error that broke it)."""
        self._conn.log_head = None
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except Exception as exc:
            log.warning("rollback failed (%s); the connection is opened again before the next use", exc)

    def run_batch(self, calls: list[tuple[Callable[..., Any], tuple, dict]]) -> list[tuple[bool, Any]]:
        """Group commit: run several calls in one transaction, one fsync for all.

        Each call runs inside its own savepoint, so a call that raises (a refused
        transition, say) leaves no writes and does not disturb the others (a batch of one
        needs none: its failure rolls back the transaction). Returns
        ``(ok, result or exception)`` per call; nothing is reported ok before COMMIT
        has returned, so a caller may still answer 250 only once its data is on disk.
        """
        outcomes: list[tuple[bool, Any]] = []
        with self._lock:
            savepoints = ("SAVEPOINT call",) if len(calls) > 1 else ()
            try:
                self._begin(*savepoints)
                self._in_batch = True
                for n, (fn, args, kwargs) in enumerate(calls):
                    if n:
                        self._backend.run("RELEASE call", "SAVEPOINT call")
                    try:
                        outcomes.append((True, fn(*args, **kwargs)))
                    except Exception as exc:
                        if not savepoints:
                            raise
                        self._conn.execute("ROLLBACK TO call")
                        self._conn.log_head = None
                        outcomes.append((False, exc))
                self._in_batch = False
                self._commit(*(("RELEASE call",) if savepoints else ()))
            except BaseException as exc:
                self._in_batch = False
                self._rollback()
                return [(False, exc)] * len(calls)
        return outcomes

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list:
        with self._lock:
            self._backend.ensure()
            return self._conn.execute(sql, tuple(args)).fetchall()

    @reads
    def state_counts(self) -> dict[str, int]:
        """{state: number of messages} (for ``/metrics``; the index on state serves it)."""
        return {row[0]: row[1] for row in self._read("SELECT state, count(*) FROM messages GROUP BY state")}

    @reads
    def ping(self) -> bool:
        """The database answers a query (``/healthz``); raises when it does not."""
        return self._read("SELECT 1")[0][0] == 1

    def listen(self, on_wake: Callable[[], None], stop: Callable[[], bool]) -> None:
        """Blocking, on a thread of its own: ``on_wake()`` whenever another node's action asks every
        node to look at the queue now (PostgreSQL ``LISTEN``), until ``stop()``. SQLite: returns."""
        if self.shared:
            from .postgres import listen

            listen(self._backend.url, on_wake, stop)
