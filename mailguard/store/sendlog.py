"""Send log: the tamper-evident record of every step of every message.

Each entry is appended in the same SQLite transaction as the state change it
describes, so the log and the queue never disagree. Entries are never updated or
deleted (SQLite triggers refuse it), and each carries ``hash = SHA-256(prev_hash
|| canonical JSON of the entry)``, so removing, reordering or editing a past entry
breaks the chain from that point (``mailguard log verify``).

Delivery entries name the recipients and their organisations from the address
book: together with the message's Message-ID, sender and time they form the
provision record (第三者提供記録) that 個人情報保護法 第29条 requires for
personal data given to a third party, kept at least 3 years (施行規則 第21条).
Secrets (passwords, AUTH data) and message bodies never enter the log.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field

GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS send_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         REAL NOT NULL,
    event      TEXT NOT NULL,
    queue_id   TEXT,
    message_id TEXT,
    actor      TEXT NOT NULL,
    mail_from  TEXT,
    auth_user  TEXT,
    recipients TEXT NOT NULL,
    state      TEXT,
    findings   TEXT NOT NULL,
    reply      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS send_log_queue_id ON send_log(queue_id);
CREATE INDEX IF NOT EXISTS send_log_at ON send_log(at);
CREATE TRIGGER IF NOT EXISTS send_log_no_update BEFORE UPDATE ON send_log
BEGIN SELECT RAISE(ABORT, 'send log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS send_log_no_delete BEFORE DELETE ON send_log
BEGIN SELECT RAISE(ABORT, 'send log is append-only'); END;
CREATE TABLE IF NOT EXISTS send_log_anchor (
    through_seq INTEGER NOT NULL,
    head        TEXT NOT NULL,
    at          REAL NOT NULL,
    signature   TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class LogEntry:
    """One step. ``actor`` is ``system`` or the user who acted (``cli:<unix user>`` from the CLI)."""

    event: str
    queue_id: str | None
    actor: str = "system"
    message_id: str | None = None
    mail_from: str | None = None
    auth_user: str | None = None
    recipients: tuple[str, ...] = ()
    state: str | None = None
    findings: tuple[dict, ...] = ()
    reply: str = ""
    detail: dict = field(default_factory=dict)
    at: float = field(default_factory=time.time)


_FIELDS = tuple(LogEntry.__dataclass_fields__)


def _canonical(entry: LogEntry, prev_hash: str) -> bytes:
    # the same JSON as dataclasses.asdict gives (its fields hold only JSON values), without its deep copy
    data = {name: getattr(entry, name) for name in _FIELDS}
    data["prev_hash"] = prev_hash
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: LogEntry, prev_hash: str) -> str:
    return hashlib.sha256(_canonical(entry, prev_hash)).hexdigest()


def append(conn: sqlite3.Connection, entry: LogEntry) -> None:
    """Append one entry inside the caller's (write) transaction. The head of the chain is read once
    per transaction (``conn.log_head``, reset by the store at BEGIN and at every rollback): while a
    write transaction is open no other writer appends (BEGIN IMMEDIATE; PostgreSQL's write lock)."""
    prev_hash = conn.log_head
    if prev_hash is None:
        row = conn.execute("SELECT hash FROM send_log ORDER BY seq DESC LIMIT 1").fetchone()
        prev_hash = row[0] if row else _anchor(conn)[1]
    digest = entry_hash(entry, prev_hash)
    conn.execute(
        "INSERT INTO send_log (at, event, queue_id, message_id, actor, mail_from, auth_user,"
        " recipients, state, findings, reply, detail, prev_hash, hash)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            entry.at, entry.event, entry.queue_id, entry.message_id, entry.actor,
            entry.mail_from, entry.auth_user,
            json.dumps(list(entry.recipients), ensure_ascii=False), entry.state,
            json.dumps(list(entry.findings), ensure_ascii=False), entry.reply,
            json.dumps(entry.detail, ensure_ascii=False, sort_keys=True),
            prev_hash, digest,
        ),
    )
    conn.log_head = digest


def _entry_from_row(row: sqlite3.Row) -> LogEntry:
    return LogEntry(
        event=row["event"], queue_id=row["queue_id"], actor=row["actor"],
        message_id=row["message_id"], mail_from=row["mail_from"], auth_user=row["auth_user"],
        recipients=tuple(json.loads(row["recipients"])), state=row["state"],
        findings=tuple(json.loads(row["findings"])), reply=row["reply"],
        detail=json.loads(row["detail"]), at=row["at"],
    )


def query(
    conn: sqlite3.Connection,
    *,
    queue_id: str | None = None,
    sender: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[tuple[int, LogEntry]]:
    """Entries matching every given filter, oldest first, as (seq, entry).

    ``sender`` matches the envelope sender or the authenticated user, case-insensitively.
    ``since``/``until`` are POSIX seconds, ``until`` exclusive.
    """
    where, args = [], []
    if queue_id:
        where.append("queue_id = ?")
        args.append(queue_id)
    if sender:
        where.append("(lower(mail_from) = lower(?) OR lower(auth_user) = lower(?))")
        args += [sender, sender]
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if until is not None:
        where.append("at < ?")
        args.append(until)
    sql = "SELECT * FROM send_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq"
    if limit:
        sql = f"SELECT * FROM ({sql.replace(' ORDER BY seq', ' ORDER BY seq DESC')} LIMIT {int(limit)}) ORDER BY seq"
    return [(row["seq"], _entry_from_row(row)) for row in conn.execute(sql, args)]


def _anchor(conn: sqlite3.Connection) -> tuple[int, str]:
    """(last purged seq, its hash): where the kept chain starts after a retention purge."""
    row = conn.execute("SELECT through_seq, head FROM send_log_anchor ORDER BY rowid DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def purged_through(conn: sqlite3.Connection) -> int:
    return _anchor(conn)[0]


def verify(conn: sqlite3.Connection) -> tuple[int, int | None]:
    """Walk the whole chain (from the purge anchor, if records were purged). Returns (entries
    checked, seq of the first broken entry or None). Sequence numbers must run without a gap
    from the anchor: an entry removed and the chain recomputed around it still shows."""
    through, prev_hash = _anchor(conn)
    expected = through + 1
    count = 0
    for row in conn.execute("SELECT * FROM send_log ORDER BY seq"):
        count += 1
        if (row["seq"] != expected or row["prev_hash"] != prev_hash
                or entry_hash(_entry_from_row(row), prev_hash) != row["hash"]):
            return count, row["seq"]
        prev_hash = row["hash"]
        expected += 1
    return count, None
