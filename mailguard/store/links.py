"""links: download links, their sealed files, the copies they go out in, and every use of them.

Receives from the queue manager (inside ``apply_verdict``'s transaction) the
``vault.Protected`` of a message: sealed files, one grant per recipient, and the
copies some recipients get instead of the main content. Hands on to the download
pages a link by id, its sealed files, and the outcome of each use; to the CLI and
the console the links of a message with their state (未開封 / 開封済み).

- Files live in ``<data_dir>/links/<queue id>/<n>.bin`` (0600 in 0700 directories),
  written and fsync'd before the rows that name them commit; a directory no open
  link names (a crash between the two, or every link closed) is removed by ``sweep``.
  On PostgreSQL (several nodes, any of which may serve the download) they are rows of
  ``link_files``, written in the same transaction.
- A link's life: created with its message; ``sent_at`` and ``expires_at`` (sent +
  MAILGUARD_LINK_LIFETIME) are set when its copy is delivered (``finish``); closed
  as ``revoked`` (sender, manager, CLI), ``expired``, ``locked`` (too many wrong
  passcodes) or ``withdrawn`` (its message ended without sending it). A closed link
  serves nothing, and its files go when no open link of the message needs them.
- Every view, passcode failure, download, lock, revocation and expiry is a
  send-log entry (time, client address, user agent, link id) in the transaction
  that changes the counters: the access record 3-5-1-1 of the PPC guideline asks about.
On failure: methods raise and roll back; a file that cannot be removed is logged
and tried again by the next sweep.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import vault
from .sendlog import LogEntry
from . import sendlog
from .aio import reads

log = logging.getLogger("mailguard.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS links (
    link_id           TEXT PRIMARY KEY,
    queue_id          TEXT NOT NULL,
    recipient         TEXT NOT NULL,
    secret_hash       TEXT NOT NULL,
    wrapped_key       BLOB NOT NULL,
    passcode          TEXT NOT NULL,
    files             TEXT NOT NULL,
    sender            TEXT NOT NULL DEFAULT '',
    organisation      TEXT NOT NULL DEFAULT '',
    created_at        REAL NOT NULL,
    lifetime          REAL NOT NULL,
    max_downloads     INTEGER NOT NULL,
    max_failures      INTEGER NOT NULL,
    sent_at           REAL,
    expires_at        REAL,
    downloads         INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    first_download_at REAL,
    closed            TEXT,
    closed_at         REAL
);
CREATE INDEX IF NOT EXISTS links_queue_id ON links(queue_id);
CREATE TABLE IF NOT EXISTS link_files (
    queue_id  TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    blob      BLOB NOT NULL,
    PRIMARY KEY (queue_id, idx)
);
CREATE TABLE IF NOT EXISTS copies (
    queue_id  TEXT NOT NULL,
    copy      INTEGER NOT NULL,
    content   BLOB NOT NULL,
    PRIMARY KEY (queue_id, copy)
);
"""
CLOSED_LABELS = {"revoked": "無効化済み", "expired": "期限切れ", "locked": "ロック (パスコード誤り)",
                 "withdrawn": "未送信のまま終了"}
FINAL = ("delivered", "bounced", "cancelled", "rejected")


@dataclass(frozen=True)
class Link:
    link_id: str
    queue_id: str
    recipient: str
    secret_hash: str
    wrapped_key: bytes
    passcode: str
    files: tuple[dict, ...]           # {"name", "size", "ctype"}, in blob order
    sender: str
    organisation: str
    created_at: float
    max_downloads: int
    max_failures: int
    sent_at: float | None
    expires_at: float | None
    downloads: int
    failures: int
    first_download_at: float | None
    closed: str | None
    closed_at: float | None

    def usable(self, now: float) -> bool:
        return (self.closed is None and self.sent_at is not None and self.expires_at is not None
                and now < self.expires_at and self.downloads < self.max_downloads)

    @property
    def status(self) -> str:
        """For people: 未送信 / 未開封 / 開封済み, or why it is closed."""
        if self.closed:
            return CLOSED_LABELS.get(self.closed, self.closed)
        if self.sent_at is None:
            return "未送信"
        return "開封済み" if self.first_download_at else "未開封"


def _link(row: sqlite3.Row) -> Link:
    data = dict(row)
    data["files"] = tuple(json.loads(data["files"]))
    data.pop("lifetime", None)
    return Link(**data)


class LinkStore:
    """Links and copies; mixed into ``Store`` (uses ``Database._write`` and ``_read``)."""

    path: Path

    @property
    def links_dir(self) -> Path:
        return self.path.parent / "links"   # SQLite only: PostgreSQL keeps the files in link_files

    def _link_files(self, queue_id: str) -> Path:
        return self.links_dir / queue_id

    def write_protected(self, conn: sqlite3.Connection, queue_id: str, protected: vault.Protected, *,
                        lifetime: float, max_downloads: int, max_failures: int, now: float) -> None:
        """Files first (fsync'd), then the rows, in the caller's transaction."""
        if protected.files and self.shared:
            conn.executemany("INSERT INTO link_files (queue_id, idx, blob) VALUES (?,?,?)",
                             [(queue_id, i, f.blob) for i, f in enumerate(protected.files)])
        elif protected.files:
            self._write_files(queue_id, protected.files)
        listing = json.dumps([{"name": f.name, "size": f.size, "ctype": f.ctype} for f in protected.files],
                             ensure_ascii=False)
        for grant in protected.grants:
            conn.execute(
                "INSERT INTO links (link_id, queue_id, recipient, secret_hash, wrapped_key, passcode, files, sender,"
                " organisation, created_at, lifetime, max_downloads, max_failures) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (grant.link_id, queue_id, grant.recipient, grant.secret_hash, grant.wrapped_key, grant.passcode,
                 listing, protected.sender, protected.organisation, now, lifetime, max_downloads, max_failures))
        for number, copy in enumerate(protected.copies, 1):
            conn.execute("INSERT INTO copies (queue_id, copy, content) VALUES (?,?,?)", (queue_id, number, copy.content))
            for rcpt in copy.recipients:
                updated = conn.execute("UPDATE recipients SET copy = ? WHERE queue_id = ? AND address = ?",
                                       (number, queue_id, rcpt)).rowcount
                if updated != 1:   # never let a recipient fall back to the unprotected main content
                    raise ValueError(f"{queue_id}: copy {number} names {rcpt!r}, which is {updated} recipients")

    def _write_files(self, queue_id: str, files: tuple[vault.SealedFile, ...]) -> None:
        from .db import private_dir

        directory = private_dir(self._link_files(queue_id))
        for index, sealed in enumerate(files):
            fd = os.open(directory / f"{index}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(sealed.blob)
                fh.flush()
                os.fsync(fh.fileno())
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def copies_of(self, conn: sqlite3.Connection, queue_id: str) -> dict[int, bytes]:
        return {row[0]: row[1] for row in conn.execute("SELECT copy, content FROM copies WHERE queue_id = ?",
                                                       (queue_id,))}

    def activate_links(self, conn: sqlite3.Connection, queue_id: str, delivered: list[str], now: float) -> None:
        """Delivered copies start their links' lifetime."""
        for rcpt in delivered:
            conn.execute("UPDATE links SET sent_at = ?, expires_at = ? + lifetime WHERE queue_id = ? AND recipient = ?"
                         " AND sent_at IS NULL AND closed IS NULL", (now, now, queue_id, rcpt))

    def drop_copies(self, conn: sqlite3.Connection, queue_id: str) -> None:
        """A finished message's copies: they carry the links' secrets, which nobody needs any more."""
        conn.execute("DELETE FROM copies WHERE queue_id = ?", (queue_id,))

    # -- the download side ---------------------------------------------------------------

    @reads
    def get_link(self, link_id: str) -> Link | None:
        rows = self._read("SELECT * FROM links WHERE link_id = ?", (link_id,))
        return _link(rows[0]) if rows else None

    @reads
    def links(self, queue_id: str | None = None, limit: int = 1000) -> list[Link]:
        if queue_id:
            rows = self._read("SELECT * FROM links WHERE queue_id = ? ORDER BY created_at, recipient", (queue_id,))
        else:
            rows = self._read("SELECT * FROM links ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_link(r) for r in rows]

    def read_blob(self, queue_id: str, index: int) -> bytes:
        """A sealed file; FileNotFoundError when it is gone (its links closed)."""
        if self.shared:
            rows = self._read("SELECT blob FROM link_files WHERE queue_id = ? AND idx = ?", (queue_id, index))
            if not rows:
                raise FileNotFoundError(f"{queue_id}/{index}")
            return bytes(rows[0][0])
        return (self._link_files(queue_id) / f"{index}.bin").read_bytes()

    def record_use(self, link_id: str, event: str, access: dict[str, Any], *, now: float | None = None) -> Link | None:
        """Log a use of a link and count it, atomically. ``event``: ``link_viewed``,
        ``link_downloaded`` (counted; refused, returning None, past the limit or once closed)
        or ``link_passcode_failed`` (counted; the link locks at its limit: event ``link_locked``)."""
        now = time.time() if now is None else now
        with self._write() as conn:
            row = conn.execute("SELECT * FROM links WHERE link_id = ?", (link_id,)).fetchone()
            if row is None:
                return None
            link = _link(row)
            if event == "link_downloaded":
                if not link.usable(now):
                    return None
                conn.execute("UPDATE links SET downloads = downloads + 1,"
                             " first_download_at = coalesce(first_download_at, ?) WHERE link_id = ?", (now, link_id))
            elif event == "link_passcode_failed":
                conn.execute("UPDATE links SET failures = failures + 1 WHERE link_id = ?", (link_id,))
                if link.closed is None and link.failures + 1 >= link.max_failures:
                    conn.execute("UPDATE links SET closed = 'locked', closed_at = ? WHERE link_id = ?", (now, link_id))
                    event = "link_locked"
            self._log_link(conn, link, event, now, actor=f"download:{access.get('client', '')}", **access)
            return _link(conn.execute("SELECT * FROM links WHERE link_id = ?", (link_id,)).fetchone())

    def revoke_links(self, queue_id: str, actor: str, link_id: str | None = None, comment: str = "") -> int:
        """Close the open links of a message (or one of them) and remove the files no open link needs.
        Returns how many were revoked (0: none was open)."""
        now = time.time()
        with self._write() as conn:
            rows = conn.execute("SELECT * FROM links WHERE queue_id = ? AND closed IS NULL"
                                + (" AND link_id = ?" if link_id else ""),
                                (queue_id, link_id) if link_id else (queue_id,)).fetchall()
            for row in rows:
                conn.execute("UPDATE links SET closed = 'revoked', closed_at = ? WHERE link_id = ?", (now, row["link_id"]))
                self._log_link(conn, _link(row), "link_revoked", now, actor=actor, comment=comment)
        self.sweep_links(now=now)
        return len(rows)

    def sweep_links(self, *, now: float | None = None) -> list[str]:
        """Close expired links and the links of messages that ended without sending them; remove
        the files no open link needs (also those a crash left unnamed). Returns the link ids closed."""
        now = time.time() if now is None else now
        closed = []
        # Under the store's lock throughout: a message being decided writes its files and then its
        # rows under the same lock, so its directory is never taken for an orphan here.
        with self._lock, self._write() as conn:
            expired = conn.execute("SELECT * FROM links WHERE closed IS NULL AND expires_at <= ?", (now,)).fetchall()
            withdrawn = conn.execute(
                "SELECT l.* FROM links l JOIN messages m ON m.queue_id = l.queue_id WHERE l.closed IS NULL"
                f" AND l.sent_at IS NULL AND m.state IN ({','.join('?' * len(FINAL))})", FINAL).fetchall()
            for rows, why in ((expired, "expired"), (withdrawn, "withdrawn")):
                for row in rows:
                    conn.execute("UPDATE links SET closed = ?, closed_at = ? WHERE link_id = ?", (why, now, row["link_id"]))
                    self._log_link(conn, _link(row), f"link_{why}", now)
                    closed.append(row["link_id"])
            if self.shared:
                conn.execute("DELETE FROM link_files WHERE queue_id NOT IN"
                             " (SELECT queue_id FROM links WHERE closed IS NULL)")
            else:
                self._remove_unneeded({r[0] for r in conn.execute("SELECT DISTINCT queue_id FROM links"
                                                                  " WHERE closed IS NULL")})
        return closed

    def _remove_unneeded(self, needed: set[str]) -> None:
        if not self.links_dir.is_dir():
            return
        for directory in self.links_dir.iterdir():
            if directory.name not in needed:
                try:
                    shutil.rmtree(directory)
                except OSError as exc:
                    log.error("could not remove the link files in %s (tried again at the next sweep): %s",
                              directory, exc)

    @staticmethod
    def _log_link(conn: sqlite3.Connection, link: Link, event: str, now: float, *, actor: str = "system",
                  **detail: Any) -> None:
        detail = {k: v for k, v in detail.items() if v not in (None, "")}
        sendlog.append(conn, LogEntry(event=event, queue_id=link.queue_id, actor=actor, at=now,
                                      recipients=(link.recipient,), detail={"link": link.link_id, **detail}))
