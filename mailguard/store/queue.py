"""The queue: messages, their recipients, and every change of state.

Every allowed change of state is one row of ``TRANSITIONS``; every change goes
through ``_transition``, which checks the row inside the same ``BEGIN IMMEDIATE``
transaction that writes the new state and appends the send-log entry. So the
log and the queue never disagree, and two actors never both win (a cancel and a
delivery claim, say): the second finds the state changed and is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any, Iterable

from ..model import (STATE_LABELS, Envelope, Finding, Origin, Provision, QueuedMessage, Recipient, RecipientStatus,
                     State, Submission, Verdict)
from ..vault import Protected
from . import ledger, sendlog
from .sendlog import LogEntry
from .aio import reads

S = State
# transition name → (states it may leave, states it may reach). The life of a message:
TRANSITIONS: dict[str, tuple[frozenset[State], frozenset[State]]] = {
    "decide":  (frozenset({S.INCOMING}), frozenset({S.DELAYED, S.AWAITING_CONFIRMATION, S.AWAITING_APPROVAL,
                                                  S.READY, S.REJECTED})),
    "release": (frozenset({S.DELAYED}), frozenset({S.READY})),                      # hold ended / send now
    "approve": (frozenset({S.AWAITING_APPROVAL}), frozenset({S.READY})),
    "confirm": (frozenset({S.AWAITING_CONFIRMATION}), frozenset({S.READY})),          # by its sender
    "cancel":  (frozenset({S.INCOMING, S.DELAYED, S.AWAITING_CONFIRMATION, S.AWAITING_APPROVAL, S.READY,
                           S.DEFERRED}),
                frozenset({S.CANCELLED})),                                          # by its sender
    "reject":  (frozenset({S.DELAYED, S.AWAITING_CONFIRMATION, S.AWAITING_APPROVAL}),
                frozenset({S.REJECTED})),                                            # by a manager, or timeout
    # nobody decided / the sender never confirmed in time: only from the waiting state itself, so a
    # decision or a confirmation an instant earlier always wins over the sweep
    "approval_timeout": (frozenset({S.AWAITING_APPROVAL}), frozenset({S.REJECTED})),
    "confirm_timeout":  (frozenset({S.AWAITING_CONFIRMATION}), frozenset({S.CANCELLED})),
    "claim":   (frozenset({S.READY, S.DEFERRED}), frozenset({S.DELIVERING})),
    "finish":  (frozenset({S.DELIVERING}), frozenset({S.DELIVERED, S.BOUNCED, S.DEFERRED})),
    "defer":   (frozenset({S.DELIVERING}), frozenset({S.DEFERRED})),               # our own fault
    "expire":  (frozenset({S.INCOMING, S.DELAYED, S.AWAITING_CONFIRMATION, S.AWAITING_APPROVAL, S.DEFERRED}),
                frozenset({S.DELIVERED, S.BOUNCED})),                               # queue lifetime over
    "recover": (frozenset({S.DELIVERING}), frozenset({S.READY})),                   # a crash mid-delivery
}
del S
# A person's actions (console, API, CLI) and the log event each writes.
ACTION_EVENTS = {"release": "released", "approve": "approved", "cancel": "cancelled", "reject": "rejected",
                 "confirm": "confirmed", "approval_timeout": "rejected", "confirm_timeout": "cancelled"}

MESSAGE_COLUMNS = (
    "queue_id, state, origin, mail_from, mail_options, smtputf8, auth_user, client_addr,"
    " message_id, subject, size, received_at, release_at, next_attempt_at, expires_at,"
    " attempts, findings"
)
WITH_CONTENT = ", content FROM messages JOIN message_bodies USING (queue_id)"   # the body is in a table of its own


class TransitionError(Exception):
    """A state change was refused: the message is unknown or not in a state that allows it."""

    WANTED = {"release": "今すぐ送信", "approve": "承認", "confirm": "送信者の確認", "cancel": "取り消し", "reject": "却下",
              "decide": "判定", "claim": "配送", "finish": "配送結果の記録", "defer": "再送待ち",
              "expire": "期限切れの処理", "recover": "再配送", "approval_timeout": "承認期限の処理",
              "confirm_timeout": "確認期限の処理"}

    def __init__(self, queue_id: str, state: State | None, wanted: str):
        self.queue_id, self.state, self.wanted = queue_id, state, wanted
        where = "見つかりません" if state is None else f"現在の状態は「{STATE_LABELS.get(state, state)}」です"
        super().__init__(f"{queue_id}: {self.WANTED.get(wanted, wanted)}できません — {where}")


class LeaseLost(TransitionError):
    """The attempt being recorded is no longer this node's: its lease expired and another node claimed
    the message (a node paused longer than MAILGUARD_LEASE_SECONDS). That node's attempt counts."""

    def __init__(self, queue_id: str, state: State | None, wanted: str):
        super().__init__(queue_id, state, wanted)
        self.args = (f"{queue_id}: 別のノードが配送を引き継いだため、この配送の結果は記録しません",)


class QueueStore:
    """Queue methods of the store (mixed into ``Store`` with ``Database``)."""

    # --- the SMTP front -------------------------------------------------------------

    def accept(self, sub: Submission, *, lifetime: float, now: float | None = None) -> str:
        """Store an accepted message durably; returns its queue id. Call before answering 250."""
        now = time.time() if now is None else now
        with self._write() as conn:
            return self._insert(conn, sub, lifetime=lifetime, now=now)

    def _insert(self, conn: Any, sub: Submission, *, lifetime: float, now: float) -> str:
        env = sub.envelope
        conn.execute(
            "INSERT INTO messages (queue_id, state, origin, mail_from, mail_options, smtputf8,"
            " auth_user, client_addr, helo, message_id, subject, size, received_at,"
            " expires_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (sub.queue_id, State.INCOMING, sub.origin, env.mail_from, json.dumps(env.mail_options),
             int(env.smtputf8), sub.auth_user, sub.client_addr, sub.helo, sub.message_id,
             sub.subject, len(sub.content), now, now + lifetime, now),
        )
        conn.execute("INSERT INTO message_bodies (queue_id, content) VALUES (?,?)", (sub.queue_id, sub.content))
        conn.executemany(
            "INSERT INTO recipients (queue_id, position, address, status) VALUES (?,?,?,?)",
            [(sub.queue_id, i, rcpt, RecipientStatus.PENDING) for i, rcpt in enumerate(env.rcpt_tos)],
        )
        sendlog.append(conn, LogEntry(
            event="accepted", queue_id=sub.queue_id, message_id=sub.message_id,
            mail_from=env.mail_from, auth_user=sub.auth_user, recipients=env.rcpt_tos,
            state=State.INCOMING, at=now,
            detail={"client": sub.client_addr, "helo": sub.helo, "size": len(sub.content),
                    "origin": str(sub.origin), "subject": sub.subject},
        ))
        return sub.queue_id

    # --- reading ----------------------------------------------------------------------

    @reads
    def get(self, queue_id: str, *, content: bool = False) -> QueuedMessage | None:
        rows = self._read(f"SELECT {MESSAGE_COLUMNS}{WITH_CONTENT if content else ' FROM messages'}"
                          " WHERE queue_id = ?", (queue_id,))
        return self._messages(rows)[0] if rows else None

    @reads
    def list(self, states: Iterable[State] | None = None, *, sender: str | None = None,
             limit: int = 1000) -> list[QueuedMessage]:
        """Messages, oldest first, filtered by state and envelope sender / authenticated user."""
        where, args = [], []
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if sender:
            where.append("(lower(mail_from) = lower(?) OR lower(auth_user) = lower(?))")
            args += [sender, sender]
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY queue_id LIMIT ?"
        return self._messages(self._read(sql, [*args, limit]))

    def _messages(self, rows: list, conn: Any = None) -> list[QueuedMessage]:
        """Messages from their rows, with their recipients (read in ``conn``'s transaction when given)."""
        if not rows:
            return []
        ids = [row["queue_id"] for row in rows]
        rcpts: dict[str, list[Recipient]] = {qid: [] for qid in ids}
        sql = (f"SELECT queue_id, address, status, reply, deliver_to, copy FROM recipients WHERE queue_id IN"
               f" ({','.join('?' * len(ids))}) ORDER BY queue_id, position")
        for r in (conn.execute(sql, ids).fetchall() if conn is not None else self._read(sql, ids)):
            rcpts[r["queue_id"]].append(_recipient(r))
        return [_message(row, tuple(rcpts[row["queue_id"]])) for row in rows]

    def incoming(self, limit: int = 100, exclude: Iterable[str] = (), max_bytes: int = 64 * 1024 * 1024,
                 *, lease: float = 600.0, now: float | None = None) -> list[QueuedMessage]:
        """Accepted messages not yet decided, with content, oldest first (``exclude``: ids to skip),
        each leased to this node for ``lease`` seconds so that no other node decides it too; a lease
        that expired (its node died mid-decision) is taken over.

        At most ``limit`` messages and, past the first, at most ``max_bytes`` of content
        together: a backlog of 25 MB messages must not be read into memory at once.
        """
        now = self.clock() if now is None else now
        skip = list(exclude)
        sql = "SELECT queue_id, size FROM messages WHERE state = ? AND (lease_owner IS NULL OR lease_owner = ?" \
              " OR lease_expires < ?)"
        if skip:
            sql += f" AND queue_id NOT IN ({','.join('?' * len(skip))})"
        if not self._read(sql + " LIMIT 1", (State.INCOMING, self.node, now, *skip)):
            return []   # the common case, read without the write lock every node's scan would take
        with self._write() as conn:
            ids, total = [], 0
            for row in conn.execute(sql + " ORDER BY queue_id LIMIT ?",
                                    (State.INCOMING, self.node, now, *skip, limit)).fetchall():
                if ids and total + row["size"] > max_bytes:
                    break
                ids.append(row["queue_id"])
                total += row["size"]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            conn.execute(f"UPDATE messages SET lease_owner = ?, lease_expires = ? WHERE queue_id IN ({marks})",
                         (self.node, now + lease, *ids))
            rows = conn.execute(f"SELECT {MESSAGE_COLUMNS}{WITH_CONTENT} WHERE queue_id IN ({marks})"
                                " ORDER BY queue_id", ids).fetchall()
            return self._messages(rows, conn)

    @reads
    def due_ids(self, now: float, limit: int = 1000) -> dict[str, list[str]]:
        """Queue ids with work due at ``now``, oldest first: ``expire`` (not yet delivered
        past the lifetime), ``release`` (hold ended), ``deliver`` (ready, or deferred and due)."""
        def ids(where: str, args: tuple) -> list[str]:
            rows = self._read(f"SELECT queue_id FROM messages WHERE {where} ORDER BY queue_id LIMIT ?",
                              (*args, limit))
            return [row[0] for row in rows]

        expirable = sorted(TRANSITIONS["expire"][0])
        return {
            "expire": ids(f"state IN ({','.join('?' * len(expirable))}) AND expires_at <= ?", (*expirable, now)),
            "release": ids("state = ? AND release_at <= ? AND expires_at > ?", (State.DELAYED, now, now)),
            "deliver": ids("state = ? OR (state = ? AND next_attempt_at <= ? AND expires_at > ?)",
                           (State.READY, State.DEFERRED, now, now)),
        }

    @reads
    def delivered_before(self, addresses: Iterable[str]) -> frozenset[str]:
        """Which of ``addresses`` (lower-cased) some earlier message was delivered to."""
        keys = sorted({a.lower() for a in addresses})
        if not keys:
            return frozenset()
        rows = self._read(f"SELECT DISTINCT lower(address) FROM recipients WHERE status = ? AND"
                          f" lower(address) IN ({','.join('?' * len(keys))})", [RecipientStatus.DELIVERED, *keys])
        return frozenset(row[0] for row in rows)

    @reads
    def correspondents(self, limit: int = 5000, window: int = 50_000) -> frozenset[str]:
        """The most recent ``limit`` distinct addresses mail was delivered to (lower-cased), among
        the last ``window`` recipient rows: the cost stays bounded after years of mail."""
        rows = self._read("SELECT lower(address) AS a FROM recipients WHERE status = ?"
                          " AND rowid > (SELECT coalesce(max(rowid), 0) FROM recipients) - ?"
                          " GROUP BY a ORDER BY max(rowid) DESC LIMIT ?",
                          (RecipientStatus.DELIVERED, window, limit))
        return frozenset(row[0] for row in rows)

    # --- state changes: every one through _transition ----------------------------------

    def _state_of(self, conn: Any, queue_id: str) -> State | None:
        row = conn.execute("SELECT state FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
        return State(row[0]) if row else None

    def _transition(self, conn: Any, queue_id: str, name: str, new_state: State,
                    entry: LogEntry, *, held_by: str | None = None, **columns: Any) -> QueuedMessage:
        """Apply transition ``name`` (a row of TRANSITIONS) to ``new_state``; raises TransitionError, and
        LeaseLost when ``held_by`` (the node recording its own attempt) no longer holds the lease."""
        leaves, reaches = TRANSITIONS[name]
        assert new_state in reaches, f"{name} cannot reach {new_state}"
        sets = ", ".join(f"{k} = ?" for k in ("state", "updated_at", *columns))
        # the check and the change in one statement; a change of state ends any lease on the message
        owner = " AND lease_owner = ?" if held_by else ""
        row = conn.execute(f"UPDATE messages SET {sets}, lease_owner = NULL, lease_expires = NULL WHERE queue_id = ?"
                           f" AND state IN ({','.join('?' * len(leaves))}){owner} RETURNING {MESSAGE_COLUMNS}",
                           (new_state, entry.at, *columns.values(), queue_id, *sorted(leaves),
                            *((held_by,) if held_by else ()))).fetchone()
        if row is None:
            current = self._state_of(conn, queue_id)
            raise (LeaseLost if held_by and current in leaves else TransitionError)(queue_id, current, name)
        [msg] = self._messages([row], conn)
        sendlog.append(conn, _with_message(entry, msg))
        return msg

    def apply_verdict(self, queue_id: str, verdict: Verdict, new_state: State, *,
                      content: bytes | None = None, deliver_to: dict[str, str] | None = None,
                      notes: tuple[str, ...] = (), notices: tuple[Submission, ...] = (),
                      lifetime: float = 0, now: float | None = None, protected: Protected | None = None,
                      link_limits: tuple[float, int, int] = (7 * 86400, 20, 5),
                      approvers: tuple[str, ...] = (), provision: Provision | None = None,
                      protection: dict[str, str] | None = None) -> None:
        """incoming → delayed / awaiting_approval / ready / rejected, keeping the findings.

        ``content`` replaces what will be delivered (the original is kept in
        ``original_content``); ``deliver_to`` maps recipients to the RCPT TO address
        to use; ``notices`` to the sender (a rejection DSN, the held notice, a generated
        password) are queued in the same transaction; ``protected``: the download links, their
        files and the copies some recipients get instead (``links``), with ``link_limits``
        (lifetime in seconds, downloads, passcode failures).
        """
        now = time.time() if now is None else now
        findings = [f.to_dict() for f in verdict.findings]
        detail: dict[str, Any] = {"action": str(verdict.action), "release_at": verdict.release_at}
        if notes:
            detail["transformed"] = list(notes)
        with self._write() as conn:
            if content is not None:
                conn.execute("UPDATE message_bodies SET original_content = content, content = ? WHERE queue_id = ?",
                             (content, queue_id))
            for rcpt, address in (deliver_to or {}).items():
                conn.execute("UPDATE recipients SET deliver_to = ? WHERE queue_id = ? AND address = ?",
                             (address, queue_id, rcpt))
            for rcpt, how in (protection or {}).items():
                conn.execute("UPDATE recipients SET protection = ? WHERE queue_id = ? AND address = ?",
                             (how, queue_id, rcpt))
            if provision is not None:
                ledger.write_facts(conn, queue_id, provision)
            if protected is not None and new_state is not State.REJECTED:
                link_lifetime, downloads, failures = link_limits
                self.write_protected(conn, queue_id, protected, lifetime=link_lifetime, max_downloads=downloads,
                                     max_failures=failures, now=now)
            if new_state in (State.AWAITING_APPROVAL, State.AWAITING_CONFIRMATION):
                conn.execute("UPDATE messages SET held_at = ?, reminded_at = ? WHERE queue_id = ?", (now, now, queue_id))
            if approvers:
                detail["notified"] = list(approvers)
            self._transition(
                conn, queue_id, "decide", new_state,
                LogEntry(event="decided", queue_id=queue_id, findings=tuple(findings), at=now, detail=detail),
                release_at=verdict.release_at, findings=json.dumps(findings, ensure_ascii=False),
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
                    self._transition(conn, qid, "release", State.READY,
                                     LogEntry(event="released", queue_id=qid, at=now,
                                              detail={"reason": "hold delay ended"}))
                    released.append(qid)
        return released

    def act(self, queue_id: str, action: str, actor: str, comment: str = "",
            notice: Submission | None = None, lifetime: float = 0) -> QueuedMessage:
        """A person's decision on a held message: ``release``, ``approve``, ``cancel``,
        ``reject`` (rows of TRANSITIONS); ``notice`` tells the sender. Raises TransitionError."""
        new_state = next(iter(TRANSITIONS[action][1]))
        now = time.time()
        with self._write() as conn:
            msg = self._transition(conn, queue_id, action, new_state,
                                   LogEntry(event=ACTION_EVENTS[action], queue_id=queue_id, actor=actor, at=now,
                                            detail={"comment": comment} if comment else {}),
                                   next_attempt_at=None)
            if new_state in (State.CANCELLED, State.REJECTED):
                self.drop_copies(conn, queue_id)
            if notice is not None:
                self._insert(conn, notice, lifetime=lifetime, now=now)
            self._backend.wake_others()   # the nodes holding it see the change now, not at their next scan
        return msg

    def claim(self, queue_id: str, *, lease: float = 600.0, now: float | None = None) -> QueuedMessage | None:
        """ready/deferred → delivering, with content, leased to this node for ``lease`` seconds
        (renewed while the attempt lasts: ``renew_leases``); None if someone else acted first.
        Not logged: the attempt's outcome is (``finish``)."""
        now = self.clock() if now is None else now
        with self._write() as conn:
            # a deferred message listed as due, then retried and deferred again meanwhile, is not yet due
            row = conn.execute("UPDATE messages SET state = ?, updated_at = ?, attempts = attempts + 1, lease_owner = ?,"
                               " lease_expires = ? WHERE queue_id = ? AND (state = ? OR (state = ? AND"
                               f" coalesce(next_attempt_at, 0) <= ?)) RETURNING {MESSAGE_COLUMNS}",
                               (State.DELIVERING, now, self.node, now + lease, queue_id, State.READY, State.DEFERRED,
                                now)).fetchone()
            if row is None:
                return None
            body = conn.execute("SELECT content FROM message_bodies WHERE queue_id = ?", (queue_id,)).fetchone()
            [message] = self._messages([row], conn)
            copies = self.copies_of(conn, queue_id) if message.has_copies else {}
        return replace(message, content=body[0] if body else b"", copies=copies)

    def finish(self, queue_id: str, new_state: State, results: dict[str, tuple[RecipientStatus, str]],
               entry: LogEntry, *, transition: str = "finish", next_attempt_at: float | None = None,
               dsn: Submission | None = None, dsn_lifetime: float = 0,
               provisions: dict[str, tuple[str | None, str | None]] | None = None) -> None:
        """Record a delivery attempt (``finish``) or an expiry (``expire``): per-recipient
        outcome, the new state, and the DSN to the sender, all in one transaction."""
        with self._write() as conn:
            conn.executemany("UPDATE recipients SET status = ?, reply = ? WHERE queue_id = ? AND address = ?",
                             [(status, reply, queue_id, address) for address, (status, reply) in results.items()])
            msg = self._transition(conn, queue_id, transition, new_state, entry, next_attempt_at=next_attempt_at,
                                   held_by=self.node if transition == "finish" else None)
            if msg.has_copies:   # no copies, no links: nothing to activate or drop
                self.activate_links(conn, queue_id, [a for a, (s, _) in results.items()
                                                     if s == RecipientStatus.DELIVERED], entry.at)
            delivered = {a: provisions[a] for a, (s, _) in results.items()
                         if s == RecipientStatus.DELIVERED and a in (provisions or {})}
            if delivered:   # the provision record, in the delivery's own transaction (第29条)
                log_seq = conn.execute("SELECT max(seq) FROM send_log").fetchone()[0]
                ledger.record(conn, queue_id, entry.at, delivered, log_seq)
            if msg.has_copies and new_state in (State.DELIVERED, State.BOUNCED):
                self.drop_copies(conn, queue_id)
            if dsn is not None:
                self._insert(conn, dsn, lifetime=dsn_lifetime, now=entry.at)

    def defer_after_error(self, queue_id: str, error: str, next_attempt_at: float) -> None:
        """delivering → deferred after an internal fault during an attempt."""
        with self._write() as conn:
            self._transition(conn, queue_id, "defer", State.DEFERRED,
                             LogEntry(event="delivery_error", queue_id=queue_id, reply=error[:1000]),
                             next_attempt_at=next_attempt_at, held_by=self.node)


def _recipient(row) -> Recipient:
    return Recipient(row["address"], RecipientStatus(row["status"]), row["reply"], row["deliver_to"], row["copy"])


def _message(row, recipients: tuple[Recipient, ...]) -> QueuedMessage:
    return QueuedMessage(
        queue_id=row["queue_id"], state=State(row["state"]), origin=Origin(row["origin"]),
        envelope=Envelope(row["mail_from"], tuple(r.address for r in recipients),
                          tuple(json.loads(row["mail_options"])), bool(row["smtputf8"])),
        recipients=recipients, auth_user=row["auth_user"], client_addr=row["client_addr"],
        message_id=row["message_id"], subject=row["subject"], size=row["size"],
        received_at=row["received_at"], release_at=row["release_at"],
        next_attempt_at=row["next_attempt_at"], expires_at=row["expires_at"], attempts=row["attempts"],
        findings=tuple(Finding.from_dict(f) for f in json.loads(row["findings"])),
        content=row["content"] if "content" in row.keys() else None,
    )


def _with_message(entry: LogEntry, msg: QueuedMessage) -> LogEntry:
    """Fill the log entry's message fields from the stored message."""
    return replace(entry, message_id=msg.message_id, mail_from=msg.envelope.mail_from,
                   auth_user=msg.auth_user, recipients=msg.envelope.rcpt_tos, state=str(msg.state))
