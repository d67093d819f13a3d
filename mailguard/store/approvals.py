"""approvals: the human side of a hold — when it started, who was told, who approved so far.

Columns on ``messages``: ``held_at`` (when it began to wait for a person), ``escalated``
(0/1: the next level was told), ``reminded_at``, ``approvals`` (JSON list of the user names
who approved, for the two-approver rule). Every notice to approvers is queued, and every
step logged (``approval_requested``, ``escalated``, ``reminded``, ``approval_recorded``), in
the transaction that changes the columns, so the queue manager's sweep does each once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..model import QueuedMessage, State, Submission
from .sendlog import LogEntry
from .aio import reads

COLUMNS = (("held_at", "REAL"), ("escalated", "INTEGER NOT NULL DEFAULT 0"), ("reminded_at", "REAL"),
           ("approvals", "TEXT NOT NULL DEFAULT '[]'"))


@dataclass(frozen=True)
class Waiting:
    """A message waiting for a person, with the facts of its wait."""

    message: QueuedMessage
    held_at: float
    escalated: bool
    reminded_at: float | None
    approvals: tuple[str, ...]


class ApprovalStore:
    """Mixed into ``Store`` (uses ``_write``, ``_read``, ``_insert``, ``_messages``, ``_with_message``)."""

    @reads
    def waiting(self, states: tuple[State, ...] = (State.AWAITING_APPROVAL,)) -> list[Waiting]:
        from .queue import MESSAGE_COLUMNS

        rows = self._read(f"SELECT {MESSAGE_COLUMNS}, held_at, escalated, reminded_at, approvals FROM messages"
                          f" WHERE state IN ({','.join('?' * len(states))})", [str(s) for s in states])
        messages = {m.queue_id: m for m in self._messages(rows)}
        return [Waiting(messages[r["queue_id"]], r["held_at"] or r["received_at"], bool(r["escalated"]),
                        r["reminded_at"], tuple(json.loads(r["approvals"]))) for r in rows]

    @reads
    def approvals_of(self, queue_id: str) -> tuple[str, ...]:
        rows = self._read("SELECT approvals FROM messages WHERE queue_id = ?", (queue_id,))
        return tuple(json.loads(rows[0][0])) if rows else ()

    def note_approval_step(self, queue_id: str, event: str, names: list[str], notices: tuple[Submission, ...],
                           *, lifetime: float, only_if: State = State.AWAITING_APPROVAL) -> bool:
        """``escalated`` or ``reminded`` (or ``approval_requested``): mark it, queue the notices, log who
        was told. False (nothing done) when the message no longer waits."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT state FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
            if row is None or row[0] != only_if:
                return False
            if event == "escalated":
                conn.execute("UPDATE messages SET escalated = 1, reminded_at = ? WHERE queue_id = ?", (now, queue_id))
            else:
                conn.execute("UPDATE messages SET reminded_at = ? WHERE queue_id = ?", (now, queue_id))
            for notice in notices:
                self._insert(conn, notice, lifetime=lifetime, now=now)
            self._append_log(conn, queue_id, LogEntry(event=event, queue_id=queue_id, at=now,
                                                      detail={"notified": names}))
        return True

    def record_approval(self, queue_id: str, username: str, comment: str) -> tuple[str, ...]:
        """One approval towards a two-approver rule; returns every approver so far (distinct)."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT state, approvals FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
            if row is None or row[0] != State.AWAITING_APPROVAL:
                from .queue import TransitionError
                raise TransitionError(queue_id, State(row[0]) if row else None, "approve")
            names = tuple(dict.fromkeys([*json.loads(row[1]), username]))
            conn.execute("UPDATE messages SET approvals = ? WHERE queue_id = ?", (json.dumps(names), queue_id))
            self._append_log(conn, queue_id, LogEntry(event="approval_recorded", queue_id=queue_id,
                                                      actor=f"web:{username}" if ":" not in username else username,
                                                      at=now, detail={"comment": comment} if comment else {}))
        return names

    def _append_log(self, conn, queue_id: str, entry: LogEntry) -> None:
        from . import sendlog

        row = conn.execute("SELECT * FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
        rcpts = tuple(r[0] for r in conn.execute("SELECT address FROM recipients WHERE queue_id = ? ORDER BY position",
                                                  (queue_id,)))
        entry = entry if row is None else \
            LogEntry(**{**entry.__dict__, "message_id": row["message_id"], "mail_from": row["mail_from"],
                        "auth_user": row["auth_user"], "recipients": rcpts, "state": row["state"]})
        sendlog.append(conn, entry)
