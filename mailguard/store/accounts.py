"""Accounts in the store: users, console sessions, spent link nonces, admin events.

Password hashes are stored, never logged (the log says ``password: changed``).
Console sessions live here, not only in the cookie, so that logout, a password
change or disabling a user ends them at once (OWASP session management).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from . import checkpoints, sendlog, timestamps
from .sendlog import LogEntry
from .aio import reads


class AccountStore:
    """Account methods of the store (mixed into ``Store`` with ``Database``)."""

    def add_user(self, username: str, password_hash: str, role: str, addresses: list[str], actor: str) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise ValueError(f"ユーザー {username} は既に存在します")
            conn.execute("INSERT INTO users VALUES (?,?,?,?,0,?)",
                         (username, password_hash, role, json.dumps(addresses), time.time()))
            sendlog.append(conn, LogEntry(event="user_added", queue_id=None, actor=actor,
                                          detail={"username": username, "role": role, "addresses": addresses}))

    def update_user(self, username: str, actor: str, **changes: Any) -> None:
        """Change ``password_hash``, ``disabled``, ``role`` or ``addresses``; the hash is never logged.
        A new password or disabling ends the user's console sessions. Raises KeyError."""
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise KeyError(username)
            for column, value in changes.items():
                if column not in ("password_hash", "disabled", "role", "addresses"):
                    raise ValueError(f"unknown user field {column!r}")
                stored = json.dumps(value) if column == "addresses" else value
                conn.execute(f"UPDATE users SET {column} = ? WHERE username = ?", (stored, username))
            if "password_hash" in changes or changes.get("disabled") or "role" in changes:
                conn.execute("DELETE FROM console_sessions WHERE username = ?", (username,))
            logged = {k: v for k, v in changes.items() if k != "password_hash"}
            if "password_hash" in changes:
                logged["password"] = "changed"
            sendlog.append(conn, LogEntry(event="user_changed", queue_id=None, actor=actor,
                                          detail={"username": username, **logged}))

    def rehash_password(self, username: str, password_hash: str) -> None:
        """The same password under stronger hash parameters: no session ends, nothing to log."""
        with self._write() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username))

    @reads
    def get_user(self, username: str) -> dict | None:
        rows = self._read("SELECT * FROM users WHERE username = ?", (username,))
        return _user(rows[0]) if rows else None

    @reads
    def list_users(self) -> list[dict]:
        return [_user(r) for r in self._read("SELECT * FROM users ORDER BY username")]

    # --- console sessions -------------------------------------------------------------

    def open_session(self, username: str, seconds: float) -> str:
        """A new console session for ``username``; returns its id (random, 256 bits)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._write() as conn:
            conn.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO console_sessions VALUES (?,?,?,?)", (session_id, username, now, now + seconds))
        return session_id

    def session_user(self, session_id: str) -> str | None:
        """The user of a live session, or None (ended, expired, unknown)."""
        rows = self._read("SELECT username FROM console_sessions WHERE session_id = ? AND expires_at > ?",
                          (session_id, time.time()))
        return rows[0][0] if rows else None

    def close_session(self, session_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM console_sessions WHERE session_id = ?", (session_id,))

    # --- SMTP AUTH failures, counted across processes and nodes ------------------------

    def auth_failed(self, keys: tuple[str, ...], *, window: float, max_failures: int, lockout: float,
                    now: float | None = None) -> dict[str, float]:
        """One AUTH failure for each of ``keys`` (``user:<name>``, ``ip:<address>``), counted with every
        process's and node's failures in the last ``window`` seconds; at ``max_failures`` the key is
        locked for ``lockout`` seconds. Returns {key: locked until (POSIX s)} for keys locked now."""
        now = time.time() if now is None else now
        locked = {}
        with self._write() as conn:
            conn.execute("DELETE FROM auth_failures WHERE at <= ?", (now - window,))
            conn.execute("DELETE FROM auth_locks WHERE until <= ?", (now,))
            for key in keys:
                conn.execute("INSERT INTO auth_failures (key, at) VALUES (?, ?)", (key, now))
                count = conn.execute("SELECT count(*) FROM auth_failures WHERE key = ?", (key,)).fetchone()[0]
                if count >= max_failures:
                    conn.execute("INSERT INTO auth_locks (key, until) VALUES (?, ?) ON CONFLICT (key)"
                                 " DO UPDATE SET until = excluded.until", (key, now + lockout))
                    conn.execute("DELETE FROM auth_failures WHERE key = ?", (key,))
                    locked[key] = now + lockout
        return locked

    def auth_succeeded(self, login_key: str) -> None:
        """A good login clears that user's failures (not its address's: see ``AuthThrottle.succeeded``)."""
        with self._write() as conn:
            conn.execute("DELETE FROM auth_failures WHERE key = ?", (login_key,))

    @reads
    def auth_locks(self, now: float | None = None) -> dict[str, float]:
        """{key: until (POSIX s)} of the lockouts in force, whichever process or node set them."""
        now = time.time() if now is None else now
        return {r[0]: r[1] for r in self._read("SELECT key, until FROM auth_locks WHERE until > ?", (now,))}

    # --- notice links, admin events, the send log -------------------------------------

    def use_token(self, nonce: str) -> bool:
        """Spend a notice link's nonce: True the first time, False ever after."""
        with self._write() as conn:
            return conn.execute("INSERT INTO used_tokens (nonce, used_at) VALUES (?, ?)"
                                " ON CONFLICT (nonce) DO NOTHING",
                                (nonce, time.time())).rowcount == 1

    def record_admin(self, event: str, actor: str, detail: dict) -> None:
        """An administrative change (a policy edit) in the send log; never a secret."""
        with self._write() as conn:
            sendlog.append(conn, LogEntry(event=event, queue_id=None, actor=actor, detail=detail))

    def log(self, **filters: Any) -> list[tuple[int, LogEntry]]:
        with self._lock:
            return sendlog.query(self._conn, **filters)

    def verify_log(self) -> tuple[int, int | None]:
        with self._lock:
            return sendlog.verify(self._conn)

    def log_purged_through(self) -> int:
        with self._lock:
            return sendlog.purged_through(self._conn)

    def checkpoint(self, key, journal=None) -> dict | None:
        """Sign the send log as it stands (``checkpoints.make``)."""
        with self._write() as conn:
            return checkpoints.make(conn, key, journal)

    def last_checkpoint_signed_by(self, public) -> bool | None:
        """Whether the newest checkpoint verifies with ``public`` (None: there is none yet). Several
        nodes must sign with one key: a node with a key of its own makes checkpoints nobody can check."""
        with self._lock:
            return checkpoints.last_signed_by(self._conn, public)

    def verify_with_key(self, public, extra: list[dict] = (), roots=None) -> tuple[int, list[str], list[str]]:
        """(entries, problems, notes) of the chain, of every checkpoint and of every RFC 3161 token
        (the database's and ``extra``: journal lines, checkpoints and tokens); ``roots`` the TSA's."""
        with self._lock:
            seen = {c["signature"]: c for c in [*checkpoints.stored(self._conn), *extra] if "timestamp" not in c}
            tokens = {**timestamps.stored(self._conn), **{c["signature"]: c["timestamp"] for c in extra
                                                          if "timestamp" in c}}
            count = self._conn.execute("SELECT count(*) FROM send_log").fetchone()[0]
            problems = checkpoints.verify(self._conn, public, list(seen.values()))
            stamped, notes = timestamps.verify(self._conn, list(seen.values()), tokens, roots)
        return count, problems + stamped, notes

    def unstamped_checkpoints(self) -> list[dict]:
        """Checkpoints young enough to be stamped that have no RFC 3161 token yet (``timestamps.pending``)."""
        with self._lock:
            return timestamps.pending(self._conn)

    def save_timestamp(self, checkpoint: dict, response, der: bytes, journal=None) -> dict:
        with self._write() as conn:
            return timestamps.save(conn, checkpoint, response, der, journal)

def _user(row: sqlite3.Row) -> dict:
    return {"username": row["username"], "password_hash": row["password_hash"], "role": row["role"],
            "addresses": json.loads(row["addresses"]), "disabled": bool(row["disabled"]),
            "created_at": row["created_at"]}
