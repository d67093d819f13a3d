"""retention: what is kept how long. Raw content goes soon; the records stay.

Care plans, referrals and My Numbers in a message are needed only until its end; keeping
them longer is itself a risk (安全管理措置). ``purge_content`` empties the content of
messages that reached a final state (delivered, cancelled, rejected, bounced) more than
MAILGUARD_CONTENT_RETENTION seconds ago: the message as sent, the original, the per-recipient
copies, and any download link still open (closed as ``expired``, its files removed). The
envelope, the findings, the send log and the provision ledger stay (第29条: 3 years).
Each message purged is a send-log entry (``content_purged``) in the transaction that empties it.

``purge_records`` removes send-log and ledger entries older than MAILGUARD_RECORD_RETENTION
(at least 1 year, default 3: 施行規則 第21条), cut at the start of a month so whole periods go.
The chain stays verifiable across the gap: the hash of the last purged entry is kept as a signed
anchor (Ed25519, the checkpoint key) the kept chain starts from, and the purge is logged.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime

from ..model import FINAL_STATES
from .sendlog import LogEntry

COLUMNS = (("content_purged_at", "REAL"),)


class RetentionStore:
    """Mixed into ``Store`` (uses ``_write``, ``_read``, ``_append_log``, ``sweep_links``)."""

    def purgeable(self, before: float, limit: int = 1000) -> list[str]:
        """Queue ids whose content would go: final before ``before`` (POSIX s), not yet purged."""
        finals = [str(s) for s in FINAL_STATES]
        rows = self._read(f"SELECT queue_id FROM messages WHERE state IN ({','.join('?' * len(finals))})"
                          " AND updated_at < ? AND content_purged_at IS NULL ORDER BY updated_at LIMIT ?",
                          (*finals, before, limit))
        return [r[0] for r in rows]

    def purge_content(self, before: float, actor: str = "system", limit: int = 1000) -> list[str]:
        """Empty the content of the messages ``purgeable`` returns. Returns their queue ids."""
        now = time.time()
        done = []
        with self._write() as conn:
            for queue_id in self.purgeable(before, limit):
                conn.execute("UPDATE message_bodies SET content = ?, original_content = NULL WHERE queue_id = ?",
                             (b"", queue_id))
                conn.execute("UPDATE messages SET content_purged_at = ? WHERE queue_id = ?", (now, queue_id))
                conn.execute("DELETE FROM copies WHERE queue_id = ?", (queue_id,))
                # 本人 of a message never provided to anyone (cancelled, rejected, internal) goes with it
                conn.execute("DELETE FROM provision_facts WHERE queue_id = ? AND NOT EXISTS"
                             " (SELECT 1 FROM ledger WHERE ledger.queue_id = ?)", (queue_id, queue_id))
                conn.execute("UPDATE links SET closed = 'expired', closed_at = ? WHERE queue_id = ? AND closed IS NULL",
                             (now, queue_id))
                self._append_log(conn, queue_id, LogEntry(event="content_purged", queue_id=queue_id, actor=actor,
                                                          at=now, detail={"reason": "MAILGUARD_CONTENT_RETENTION"}))
                done.append(queue_id)
        if done:
            self.sweep_links(now=now)   # the files of links closed here
        return done

    def purge_records(self, before: float, key, zone=None, actor: str = "system", now: float | None = None) -> int:
        """Remove log and ledger entries from before the start of the month of ``before``; returns how
        many log entries went. Raises ValueError for ``before`` less than a year before ``now``
        (records are kept at least 1 year: 施行規則 第21条)."""
        if before > (time.time() if now is None else now) - 365 * 86400:
            raise ValueError("送信ログと第三者提供記録は 1 年以上保存します (1 年より新しい記録は削除できません)")
        start = datetime.fromtimestamp(before, zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        cutoff = start.timestamp()
        with self._write() as conn:
            row = conn.execute("SELECT seq, hash FROM send_log WHERE at < ? ORDER BY seq DESC LIMIT 1",
                               (cutoff,)).fetchone()
            if row is None:
                return 0
            through, head = row
            now = time.time()
            statement = f"mailguard send-log anchor v1\n{through}\n{head}\n{now:.6f}\n".encode()   # at: the purge
            conn.execute("INSERT INTO send_log_anchor (through_seq, head, at, signature) VALUES (?,?,?,?)",
                         (through, head, now, base64.b64encode(key.sign(statement)).decode()))
            # the one deliberate deletion, in this transaction
            self._backend.allow_delete("send_log", "send_log_no_delete", True)
            gone = conn.execute("DELETE FROM send_log WHERE seq <= ?", (through,)).rowcount
            self._backend.allow_delete("send_log", "send_log_no_delete", False)
            conn.execute("DELETE FROM ledger WHERE at < ?", (cutoff,))
            conn.execute("DELETE FROM provision_facts WHERE queue_id NOT IN (SELECT queue_id FROM ledger)"
                         " AND queue_id IN (SELECT queue_id FROM messages WHERE content_purged_at IS NOT NULL)")
            self._append_log(conn, None, LogEntry(event="records_purged", queue_id=None, actor=actor, at=now,
                                                  detail={"through_seq": through, "before": cutoff,
                                                          "entries": gone}))
        return gone
