"""retention: what is kept how long. Raw content goes soon; the records stay.

Care plans, referrals and My Numbers in a message are needed only until its end; keeping
them longer is itself a risk (安全管理措置). ``purge_content`` empties the content of
messages that reached a final state (delivered, cancelled, rejected, bounced) more than
MAILGUARD_CONTENT_RETENTION seconds ago: the message as sent, the original, the per-recipient
copies, and any download link still open (closed as ``expired``, its files removed). The
envelope, the findings, the send log and the provision ledger stay (第29条: 3 years).
Each message purged is a send-log entry (``content_purged``) in the transaction that empties it.
"""

from __future__ import annotations

import time

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
                conn.execute("UPDATE messages SET content = x'', original_content = NULL, content_purged_at = ?"
                             " WHERE queue_id = ?", (now, queue_id))
                conn.execute("DELETE FROM copies WHERE queue_id = ?", (queue_id,))
                conn.execute("UPDATE links SET closed = 'expired', closed_at = ? WHERE queue_id = ? AND closed IS NULL",
                             (now, queue_id))
                self._append_log(conn, queue_id, LogEntry(event="content_purged", queue_id=queue_id, actor=actor,
                                                          at=now, detail={"reason": "MAILGUARD_CONTENT_RETENTION"}))
                done.append(queue_id)
        if done:
            self.sweep_links(now=now)   # the files of links closed here
        return done
