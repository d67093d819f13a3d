"""leases: which node works on what, when several nodes share one queue (PostgreSQL).

A message being decided or delivered is leased to the node doing it (``lease_owner``,
``lease_expires`` on its row; ``incoming`` and ``claim`` take them, ``_transition`` ends them). The
node renews its leases while it works (``renew_leases``); when it dies they expire, and
``recover`` gives its deliveries back to ``ready`` for another node (at-least-once: the upstream may
see a message twice, never zero times). Jobs that must run once across the cluster (the sweeps:
reminders, timeouts, purges, checkpoints) hold a named lease in ``job_leases`` (``take_job``).
All of it runs in write transactions, which the backend serialises cluster-wide, so a check and
the claim that follows it are one atomic step.
"""

from __future__ import annotations

from typing import Iterable

from ..model import State
from .sendlog import LogEntry


class LeaseStore:
    """Mixed into ``Store`` (uses ``_write``, ``_transition``, ``node``, ``shared``)."""

    def release_leases(self) -> int:
        """At stop: give up this node's job leases, and its leases on messages it had not decided
        (returns how many messages)."""
        with self._write() as conn:
            conn.execute("DELETE FROM job_leases WHERE owner = ?", (self.node,))
            return conn.execute("UPDATE messages SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?"
                                " AND state = ?", (self.node, State.INCOMING)).rowcount

    def renew_leases(self, queue_ids: Iterable[str], lease: float, *, now: float | None = None) -> list[str]:
        """Extend this node's leases on ``queue_ids`` (being decided or delivered) by ``lease`` seconds
        from ``now``. Returns the ids whose lease another node has taken meanwhile."""
        ids = list(queue_ids)
        if not ids:
            return []
        now = self.clock() if now is None else now
        marks = ",".join("?" * len(ids))
        with self._write() as conn:
            conn.execute(f"UPDATE messages SET lease_expires = ? WHERE lease_owner = ? AND queue_id IN ({marks})",
                         (now + lease, self.node, *ids))
            held = {r[0] for r in conn.execute(f"SELECT queue_id FROM messages WHERE lease_owner = ? AND queue_id IN"
                                               f" ({marks})", (self.node, *ids))}
        return [q for q in ids if q not in held]

    def recover(self, *, now: float | None = None) -> list[str]:
        """Messages caught mid-delivery by a crash go back to ready. One node (SQLite): at start,
        all of them. Several nodes: those whose lease has expired (its node stopped renewing it),
        checked by every node's scan; a live node's attempts are left alone."""
        now = self.clock() if now is None else now
        sql = "SELECT queue_id FROM messages WHERE state = ?"
        if self.shared:
            sql += " AND (lease_expires IS NULL OR lease_expires < ?)"
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(sql, (State.DELIVERING, now) if self.shared else (State.DELIVERING,))]
            for qid in ids:
                self._transition(conn, qid, "recover", State.READY,
                                 LogEntry(event="recovered", queue_id=qid, at=now,
                                          detail={"reason": "delivery interrupted by a stop; retrying"}))
            if not self.shared:   # one node: every lease left is a previous run's (a decision cut short)
                conn.execute("UPDATE messages SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner IS NOT NULL")
        return ids

    def take_job(self, name: str, seconds: float, *, now: float | None = None) -> bool:
        """A cluster-wide job lease (``sweeps``): True while this node holds ``name``, taken when free
        or expired and renewed by the holder for ``seconds``; what it guards then runs on one node."""
        now = self.clock() if now is None else now
        with self._write() as conn:
            return conn.execute("INSERT INTO job_leases (name, owner, expires) VALUES (?,?,?)"
                                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
                                " WHERE job_leases.owner = excluded.owner OR job_leases.expires < ?",
                                (name, self.node, now + seconds, now)).rowcount == 1
