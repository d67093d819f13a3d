"""sqlite: the store's connection to its embedded SQLite file (the default: one machine, one node).

Durability: WAL journal with ``synchronous=FULL``: a transaction is on disk when ``COMMIT``
returns, which is what lets the SMTP front answer ``250`` after ``accept``. ``busy_timeout``
lets the CLI and the server share the file. ``BEGIN IMMEDIATE`` serialises writers: every
check-then-write in the store is atomic. Schema version: ``PRAGMA user_version``.
Security: the data directory is made 0700 and the database 0600 whatever the umask (it holds
every message, password hashes and generated zip passwords); SQLite gives its -wal and -shm
files the database's mode. Deleted rows are overwritten (``secure_delete``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


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


class Connection:
    """``sqlite3.Connection`` with ``log_head``: the send log's head while a write transaction is open."""

    __slots__ = ("raw", "log_head")

    def __init__(self, raw: sqlite3.Connection):
        self.raw, self.log_head = raw, None

    def execute(self, sql: str, args=()):
        return self.raw.execute(sql, args)

    def executemany(self, sql: str, seq):
        return self.raw.executemany(sql, seq)

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()


class Backend:
    """What differs between the databases, for ``db.Database`` (SQLite side)."""

    shared = False         # one node: no other process claims its work
    clock_offset = 0.0     # one machine, one clock
    begin = ("BEGIN IMMEDIATE",)

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        if readonly:   # ``mailguard scan``: no file created, no mode changed, no schema touched
            raw = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30,
                                  isolation_level=None, check_same_thread=False)
            raw.row_factory = sqlite3.Row
            self.conn = Connection(raw)
            return
        private_dir(path.parent)
        private_file(path)
        raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        raw.row_factory = sqlite3.Row
        self.conn = Connection(raw)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON"):   # deleted copies carrying link secrets are overwritten
            self.conn.execute(f"PRAGMA {pragma}")

    @property
    def name(self) -> str:
        return str(self.path)

    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def script(self, sql: str) -> None:
        self.conn.raw.executescript(sql)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def migrating(self):
        return contextlib.nullcontext()   # the data dir's lock already keeps a second server out

    def allow_delete(self, table: str, trigger: str, allowed: bool) -> None:
        """Drop (re-create) an append-only trigger inside the caller's transaction."""
        if allowed:
            self.conn.execute(f"DROP TRIGGER {trigger}")
        else:
            self.conn.execute(f"CREATE TRIGGER {trigger} BEFORE DELETE ON {table}"
                              " BEGIN SELECT RAISE(ABORT, 'send log is append-only'); END")

    def run(self, *statements: str) -> None:
        """Statements without parameters (BEGIN, SAVEPOINT, COMMIT …), one after the other."""
        for statement in statements:
            self.conn.raw.execute(statement)

    def ensure(self) -> None:
        """A file does not drop its connection."""

    def wake_others(self) -> None:
        """One node: the CLI's actions are seen by the next scan (MAILGUARD_QUEUE_SCAN_INTERVAL)."""

    def close(self) -> None:
        self.conn.close()
