"""The store: the queue, the users and the send log in one SQLite database.

The store is the only contract between the stages (as Postfix's queue is between
smtpd, cleanup, qmgr and smtp): the SMTP front writes accepted messages, the
queue manager moves them from state to state, the CLI and the console act on
them from other processes. Every state change is one ``BEGIN IMMEDIATE``
transaction that also appends its send-log entry, and a state change is
conditional on the state it leaves, so two actors never both win (a cancel and
a delivery claim, say).

Durability: WAL journal with ``synchronous=FULL``: a transaction is on disk when
``commit`` returns, which is what lets the SMTP front answer ``250`` after
``accept``. ``busy_timeout`` lets the CLI and the server share the file.

Methods are synchronous; the server runs them on one dedicated thread
(``AsyncStore``) so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import record
from .model import (
    Envelope, Finding, Origin, QueuedMessage, Recipient, RecipientStatus, State,
    Submission, Verdict,
)
from .record import LogEntry

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
"""

_MESSAGE_COLUMNS = (
    "queue_id, state, origin, mail_from, mail_options, smtputf8, auth_user, client_addr,"
    " message_id, subject, size, received_at, release_at, next_attempt_at, expires_at,"
    " attempts, findings"
)


class TransitionError(Exception):
    """A state change was refused: the message is unknown or not in a state that allows it."""

    def __init__(self, queue_id: str, state: State | None, wanted: str):
        self.queue_id, self.state = queue_id, state
        where = "見つかりません (not found)" if state is None else f"現在の状態は {state}"
        super().__init__(f"{queue_id}: {wanted} できません — {where}")


class Store:
    """Synchronous access to the database at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._in_batch = False
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA + record.SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added after the first release of the schema."""
        for table, column, kind in (("recipients", "deliver_to", "TEXT"),
                                    ("messages", "original_content", "BLOB")):
            columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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

    # --- the SMTP front -------------------------------------------------------------

    def accept(self, sub: Submission, *, lifetime: float, now: float | None = None) -> str:
        """Store an accepted message durably; returns its queue id. Call before answering 250."""
        now = time.time() if now is None else now
        with self._write() as conn:
            queue_id = self._insert(conn, sub, lifetime=lifetime, now=now)
        return queue_id

    def _insert(self, conn: sqlite3.Connection, sub: Submission, *, lifetime: float, now: float) -> str:
        queue_id = sub.queue_id
        env = sub.envelope
        conn.execute(
            "INSERT INTO messages (queue_id, state, origin, mail_from, mail_options, smtputf8,"
            " auth_user, client_addr, helo, message_id, subject, size, received_at,"
            " expires_at, updated_at, content) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (queue_id, State.INCOMING, sub.origin, env.mail_from, json.dumps(env.mail_options),
             int(env.smtputf8), sub.auth_user, sub.client_addr, sub.helo, sub.message_id,
             sub.subject, len(sub.content), now, now + lifetime, now, sub.content),
        )
        conn.executemany(
            "INSERT INTO recipients (queue_id, position, address, status) VALUES (?,?,?,?)",
            [(queue_id, i, rcpt, RecipientStatus.PENDING) for i, rcpt in enumerate(env.rcpt_tos)],
        )
        record.append(conn, LogEntry(
            event="accepted", queue_id=queue_id, message_id=sub.message_id,
            mail_from=env.mail_from, auth_user=sub.auth_user, recipients=env.rcpt_tos,
            state=State.INCOMING, at=now,
            detail={"client": sub.client_addr, "helo": sub.helo, "size": len(sub.content),
                    "origin": str(sub.origin), "subject": sub.subject},
        ))
        return queue_id

    # --- reading ----------------------------------------------------------------------

    def get(self, queue_id: str, *, content: bool = False) -> QueuedMessage | None:
        cols = _MESSAGE_COLUMNS + (", content" if content else "")
        rows = self._read(f"SELECT {cols} FROM messages WHERE queue_id = ?", (queue_id,))
        return self._messages(rows)[0] if rows else None

    def list(
        self,
        states: Iterable[State] | None = None,
        *,
        sender: str | None = None,
        limit: int = 1000,
    ) -> list[QueuedMessage]:
        """Messages, oldest first, filtered by state and envelope sender / authenticated user."""
        where, args = [], []
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if sender:
            where.append("(lower(mail_from) = lower(?) OR lower(auth_user) = lower(?))")
            args += [sender, sender]
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY queue_id LIMIT ?"
        return self._messages(self._read(sql, [*args, limit]))

    def _messages(self, rows: list[sqlite3.Row]) -> list[QueuedMessage]:
        if not rows:
            return []
        ids = [row["queue_id"] for row in rows]
        rcpts: dict[str, list[Recipient]] = {qid: [] for qid in ids}
        for r in self._read(
            f"SELECT queue_id, address, status, reply, deliver_to FROM recipients WHERE queue_id IN"
            f" ({','.join('?' * len(ids))}) ORDER BY queue_id, position", ids,
        ):
            rcpts[r["queue_id"]].append(_recipient(r))
        return [self._message(row, tuple(rcpts[row["queue_id"]])) for row in rows]

    @staticmethod
    def _message(row: sqlite3.Row, recipients: tuple[Recipient, ...]) -> QueuedMessage:
        return QueuedMessage(
            queue_id=row["queue_id"], state=State(row["state"]), origin=Origin(row["origin"]),
            envelope=Envelope(row["mail_from"], tuple(r.address for r in recipients),
                              tuple(json.loads(row["mail_options"])), bool(row["smtputf8"])),
            recipients=recipients, auth_user=row["auth_user"], client_addr=row["client_addr"],
            message_id=row["message_id"], subject=row["subject"], size=row["size"],
            received_at=row["received_at"], release_at=row["release_at"],
            next_attempt_at=row["next_attempt_at"], expires_at=row["expires_at"],
            attempts=row["attempts"],
            findings=tuple(Finding.from_dict(f) for f in json.loads(row["findings"])),
            content=row["content"] if "content" in row.keys() else None,
        )

    def incoming(self, limit: int = 100) -> list[QueuedMessage]:
        """Accepted messages not yet decided, with content, oldest first."""
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS}, content FROM messages WHERE state = ? ORDER BY queue_id LIMIT ?",
            (State.INCOMING, limit),
        )
        return self._messages(rows)

    def due_ids(self, now: float, limit: int = 1000) -> dict[str, list[str]]:
        """Queue ids with work due at ``now``, oldest first: ``expire`` (held or deferred
        past the lifetime), ``release`` (hold ended), ``deliver`` (ready, or deferred and due)."""
        def ids(where: str, args: tuple) -> list[str]:
            rows = self._read(f"SELECT queue_id FROM messages WHERE {where} ORDER BY queue_id LIMIT ?",
                              (*args, limit))
            return [row[0] for row in rows]

        return {
            "expire": ids("state IN (?,?,?) AND expires_at <= ?",
                          (State.DELAYED, State.AWAITING_APPROVAL, State.DEFERRED, now)),
            "release": ids("state = ? AND release_at <= ? AND expires_at > ?", (State.DELAYED, now, now)),
            "deliver": ids("state = ? OR (state = ? AND next_attempt_at <= ? AND expires_at > ?)",
                           (State.READY, State.DEFERRED, now, now)),
        }

    def delivered_before(self, addresses: Iterable[str]) -> frozenset[str]:
        """Which of ``addresses`` (lower-cased) some earlier message was delivered to."""
        keys = sorted({a.lower() for a in addresses})
        if not keys:
            return frozenset()
        rows = self._read(f"SELECT DISTINCT lower(address) FROM recipients WHERE status = ? AND"
                          f" lower(address) IN ({','.join('?' * len(keys))})", [RecipientStatus.DELIVERED, *keys])
        return frozenset(row[0] for row in rows)

    def correspondents(self, limit: int = 5000) -> frozenset[str]:
        """The most recent ``limit`` distinct addresses mail was delivered to (lower-cased)."""
        rows = self._read("SELECT lower(address) AS a FROM recipients WHERE status = ?"
                          " GROUP BY a ORDER BY max(rowid) DESC LIMIT ?", (RecipientStatus.DELIVERED, limit))
        return frozenset(row[0] for row in rows)

    # --- state changes ----------------------------------------------------------------

    def _state_of(self, conn: sqlite3.Connection, queue_id: str) -> State | None:
        row = conn.execute("SELECT state FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
        return State(row[0]) if row else None

    def _transition(
        self,
        conn: sqlite3.Connection,
        queue_id: str,
        allowed: Iterable[State],
        new_state: State,
        entry: LogEntry,
        wanted: str,
        **columns: Any,
    ) -> QueuedMessage:
        current = self._state_of(conn, queue_id)
        if current is None or current not in set(allowed):
            raise TransitionError(queue_id, current, wanted)
        sets = ", ".join(f"{k} = ?" for k in ("state", "updated_at", *columns))
        conn.execute(f"UPDATE messages SET {sets} WHERE queue_id = ?",
                     (new_state, entry.at, *columns.values(), queue_id))
        row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
        rcpts = tuple(
            _recipient(r)
            for r in conn.execute("SELECT address, status, reply, deliver_to FROM recipients WHERE queue_id = ?"
                                  " ORDER BY position", (queue_id,))
        )
        msg = self._message(row, rcpts)
        record.append(conn, _with_message(entry, msg))
        return msg

    def apply_verdict(self, queue_id: str, verdict: Verdict, new_state: State, *,
                      content: bytes | None = None, deliver_to: dict[str, str] | None = None,
                      notes: tuple[str, ...] = (), notices: tuple[Submission, ...] = (),
                      lifetime: float = 0, now: float | None = None) -> None:
        """incoming → delayed / awaiting_approval / ready / rejected, keeping the findings.

        ``content`` replaces what will be delivered (the original is kept in
        ``original_content``); ``deliver_to`` maps recipients to the RCPT TO address
        to use; ``notices`` to the sender (a rejection DSN, the held notice, a generated
        password) are queued in the same transaction.
        """
        now = time.time() if now is None else now
        findings = [f.to_dict() for f in verdict.findings]
        detail = {"action": str(verdict.action), "release_at": verdict.release_at}
        if notes:
            detail["transformed"] = list(notes)
        with self._write() as conn:
            if content is not None:
                conn.execute("UPDATE messages SET original_content = content, content = ? WHERE queue_id = ?",
                             (content, queue_id))
            for rcpt, address in (deliver_to or {}).items():
                conn.execute("UPDATE recipients SET deliver_to = ? WHERE queue_id = ? AND address = ?",
                             (address, queue_id, rcpt))
            self._transition(
                conn, queue_id, [State.INCOMING], new_state,
                LogEntry(event="decided", queue_id=queue_id, findings=tuple(findings), at=now, detail=detail),
                "decide", release_at=verdict.release_at, findings=json.dumps(findings, ensure_ascii=False),
            )
            for notice in notices:
                self._insert(conn, notice, lifetime=lifetime, now=now)

    def release_due(self, queue_ids: Iterable[str], *, now: float | None = None) -> list[str]:
        """delayed → ready for holds whose time has come. Returns the ids released."""
        now = time.time() if now is None else now
        released = []
        with self._write() as conn:
            for qid in queue_ids:
                if self._state_of(conn, qid) is State.DELAYED:
                    self._transition(conn, qid, [State.DELAYED], State.READY,
                                     LogEntry(event="released", queue_id=qid, at=now,
                                              detail={"reason": "hold delay ended"}), "release")
                    released.append(qid)
        return released

    def act(self, queue_id: str, action: str, actor: str, comment: str = "",
            notice: Submission | None = None, lifetime: float = 0) -> QueuedMessage:
        """A person's decision on a held message.

        action: ``release`` (send now: delayed → ready), ``approve`` (awaiting_approval →
        ready), ``cancel`` (by its sender: any held state → cancelled), ``reject`` (by a
        manager: awaiting_approval or delayed → rejected; ``notice`` tells the sender).
        Raises TransitionError when the message is not in a state that allows it
        (already delivering, already final).
        """
        allowed, new_state, event = {
            "release": ([State.DELAYED], State.READY, "released"),
            "approve": ([State.AWAITING_APPROVAL], State.READY, "approved"),
            "cancel": ([State.INCOMING, State.DELAYED, State.AWAITING_APPROVAL, State.READY, State.DEFERRED],
                       State.CANCELLED, "cancelled"),
            "reject": ([State.DELAYED, State.AWAITING_APPROVAL], State.REJECTED, "rejected"),
        }[action]
        now = time.time()
        with self._write() as conn:
            msg = self._transition(conn, queue_id, allowed, new_state,
                                   LogEntry(event=event, queue_id=queue_id, actor=actor, at=now,
                                            detail={"comment": comment} if comment else {}),
                                   action, next_attempt_at=None)
            if notice is not None:
                self._insert(conn, notice, lifetime=lifetime, now=now)
        return msg

    def claim(self, queue_id: str, *, now: float | None = None) -> QueuedMessage | None:
        """ready/deferred → delivering, with content; None if someone else acted first."""
        now = time.time() if now is None else now
        with self._write() as conn:
            current = self._state_of(conn, queue_id)
            if current not in (State.READY, State.DEFERRED):
                return None
            conn.execute("UPDATE messages SET state = ?, updated_at = ?, attempts = attempts + 1"
                         " WHERE queue_id = ?", (State.DELIVERING, now, queue_id))
        return self.get(queue_id, content=True)

    def finish(
        self,
        queue_id: str,
        new_state: State,
        results: dict[str, tuple[RecipientStatus, str]],
        entry: LogEntry,
        *,
        next_attempt_at: float | None = None,
        dsn: Submission | None = None,
        dsn_lifetime: float = 0,
    ) -> None:
        """Record a delivery attempt (or expiry): per-recipient outcome, the new state,
        and the DSN to the sender, all in one transaction."""
        with self._write() as conn:
            for address, (status, reply) in results.items():
                conn.execute("UPDATE recipients SET status = ?, reply = ? WHERE queue_id = ? AND address = ?",
                             (status, reply, queue_id, address))
            allowed = [State.DELIVERING, State.DELAYED, State.AWAITING_APPROVAL, State.DEFERRED]
            self._transition(conn, queue_id, allowed, new_state, entry, "finish",
                             next_attempt_at=next_attempt_at)
            if dsn is not None:
                self._insert(conn, dsn, lifetime=dsn_lifetime, now=entry.at)

    def defer_after_error(self, queue_id: str, error: str, next_attempt_at: float) -> None:
        """delivering → deferred after an internal fault during an attempt."""
        with self._write() as conn:
            self._transition(conn, queue_id, [State.DELIVERING], State.DEFERRED,
                             LogEntry(event="delivery_error", queue_id=queue_id, reply=error[:1000]),
                             "defer", next_attempt_at=next_attempt_at)

    def recover(self, *, now: float | None = None) -> list[str]:
        """At start: messages caught mid-delivery by a crash go back to ready."""
        now = time.time() if now is None else now
        with self._write() as conn:
            ids = [r[0] for r in conn.execute("SELECT queue_id FROM messages WHERE state = ?", (State.DELIVERING,))]
            for qid in ids:
                self._transition(conn, qid, [State.DELIVERING], State.READY,
                                 LogEntry(event="recovered", queue_id=qid, at=now,
                                          detail={"reason": "delivery interrupted by a stop; retrying"}),
                                 "recover")
        return ids

    def use_token(self, nonce: str) -> bool:
        """Spend a notice link's nonce: True the first time, False ever after."""
        with self._write() as conn:
            return conn.execute("INSERT OR IGNORE INTO used_tokens VALUES (?, ?)",
                                (nonce, time.time())).rowcount == 1

    def record_admin(self, event: str, actor: str, detail: dict) -> None:
        """An administrative change (a policy edit) in the send log; never a secret."""
        with self._write() as conn:
            record.append(conn, LogEntry(event=event, queue_id=None, actor=actor, detail=detail))

    # --- users ------------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: str, addresses: list[str], actor: str) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise ValueError(f"ユーザー {username} は既に存在します (user exists)")
            conn.execute("INSERT INTO users VALUES (?,?,?,?,0,?)",
                         (username, password_hash, role, json.dumps(addresses), time.time()))
            record.append(conn, LogEntry(event="user_added", queue_id=None, actor=actor,
                                         detail={"username": username, "role": role, "addresses": addresses}))

    def update_user(self, username: str, actor: str, **changes: Any) -> None:
        """Change ``password_hash``, ``disabled``, ``role`` or ``addresses``; the hash is never logged."""
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise KeyError(username)
            for column, value in changes.items():
                stored = json.dumps(value) if column == "addresses" else value
                conn.execute(f"UPDATE users SET {column} = ? WHERE username = ?", (stored, username))
            logged = {k: v for k, v in changes.items() if k != "password_hash"}
            if "password_hash" in changes:
                logged["password"] = "changed"
            record.append(conn, LogEntry(event="user_changed", queue_id=None, actor=actor,
                                         detail={"username": username, **logged}))

    def get_user(self, username: str) -> dict | None:
        rows = self._read("SELECT * FROM users WHERE username = ?", (username,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[dict]:
        return [_user(r) for r in self._read("SELECT * FROM users ORDER BY username")]

    # --- send log ---------------------------------------------------------------------

    def log(self, **filters: Any) -> list[tuple[int, LogEntry]]:
        with self._lock:
            return record.query(self._conn, **filters)

    def verify_log(self) -> tuple[int, int | None]:
        with self._lock:
            return record.verify(self._conn)


def _recipient(row: sqlite3.Row) -> Recipient:
    return Recipient(row["address"], RecipientStatus(row["status"]), row["reply"], row["deliver_to"])


def _user(row: sqlite3.Row) -> dict:
    return {"username": row["username"], "password_hash": row["password_hash"], "role": row["role"],
            "addresses": json.loads(row["addresses"]), "disabled": bool(row["disabled"]),
            "created_at": row["created_at"]}


def _with_message(entry: LogEntry, msg: QueuedMessage) -> LogEntry:
    """Fill the log entry's message fields from the stored message."""
    return replace(entry, message_id=msg.message_id, mail_from=msg.envelope.mail_from,
                   auth_user=msg.auth_user, recipients=msg.envelope.rcpt_tos, state=str(msg.state),
                   findings=entry.findings)


class AsyncStore:
    """The same methods, awaited; run on one dedicated thread (never on the event loop).

    Calls that arrive while the thread is busy are run together as one batch
    (``Store.run_batch``): under load, many SMTP sessions' messages share one
    fsync instead of queueing for one each.
    """

    MAX_BATCH = 256

    def __init__(self, store: Store):
        self.store = store
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="store", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._calls.put((method, args, kwargs, loop, future))
            return await future

        return call

    def _work(self) -> None:
        while True:
            first = self._calls.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._calls.put(None)   # stop after this batch
                    break
                batch.append(item)
            outcomes = self.store.run_batch([(fn, args, kwargs) for fn, args, kwargs, _, _ in batch])
            for (_, _, _, loop, future), (ok, value) in zip(batch, outcomes):
                loop.call_soon_threadsafe(_settle, future, ok, value)

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join()
        self.store.close()


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
