"""checkpoints: signed statements of the send log's size and head, that hold against the operator.

The hash chain (``sendlog``) shows an edit, but someone who can write the database can
recompute the whole chain, or cut its last entries. A checkpoint states "the log had N
entries and its head was H at time T", signed with Ed25519 (RFC 8032, ``cryptography``) by a
key kept outside the database (``<data_dir>/checkpoint.key``, 0600, made on first use; its
public key in ``checkpoint.pub`` and in the start-up log, for the admin to keep elsewhere).
Each checkpoint is stored in the database *and* appended to ``<data_dir>/checkpoints.jsonl``.
``verify`` walks the chain and checks every checkpoint it is given against a public key: a
bad signature, a head that differs from the chain at that size (a recomputed chain) or a log
shorter than a checkpointed size (truncation) is reported with its place.
Settings: MAILGUARD_CHECKPOINT_INTERVAL (the queue manager makes one that often, and at stop).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import sendlog

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    size      INTEGER NOT NULL,
    head      TEXT NOT NULL,
    at        REAL NOT NULL,
    signature TEXT NOT NULL
);
"""


def statement(size: int, head: str, at: float) -> bytes:
    return f"mailguard send-log checkpoint v1\n{size}\n{head}\n{at:.6f}\n".encode()


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The installation's checkpoint key, made once (0600) with its public half beside it."""
    from .db import private_dir

    private_dir(data_dir)
    path = data_dir / "checkpoint.key"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
        except FileExistsError:
            pass   # another process made it first: use theirs
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    public = data_dir / "checkpoint.pub"   # 0600 like everything in the data dir; copy it away to use it
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(public_text(key.public_key()) + "\n")
    return key


def public_text(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def load_public(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip()))


def make(conn: sqlite3.Connection, key: Ed25519PrivateKey, journal: Path | None = None) -> dict | None:
    """Sign the log as it stands (in the caller's transaction); None for an empty log or no change."""
    # "size": the sequence number of the last entry (never reused), so checkpoints stay true after a purge
    size, head = conn.execute("SELECT seq, hash FROM send_log ORDER BY seq DESC LIMIT 1").fetchone() or (0, None)
    last = conn.execute("SELECT size FROM checkpoints ORDER BY rowid DESC LIMIT 1").fetchone()
    if not size or (last and last[0] == size):
        return None
    at = time.time()
    signature = base64.b64encode(key.sign(statement(size, head, at))).decode()
    conn.execute("INSERT INTO checkpoints (size, head, at, signature) VALUES (?,?,?,?)", (size, head, at, signature))
    checkpoint = {"size": size, "head": head, "at": at, "signature": signature}
    if journal is not None:   # a second copy outside the database
        with open(journal, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(checkpoint) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(journal, 0o600)
    return checkpoint


def last_signed_by(conn, public: Ed25519PublicKey) -> bool | None:
    """True/False: the newest checkpoint verifies with ``public`` or not; None when there is none."""
    row = conn.execute("SELECT size, head, at, signature FROM checkpoints ORDER BY rowid DESC LIMIT 1").fetchone()
    if row is None:
        return None
    try:
        public.verify(base64.b64decode(row[3]), statement(row[0], row[1], row[2]))
        return True
    except (InvalidSignature, ValueError):
        return False


def stored(conn: sqlite3.Connection) -> list[dict]:
    return [dict(zip(("size", "head", "at", "signature"), row))
            for row in conn.execute("SELECT size, head, at, signature FROM checkpoints ORDER BY rowid")]


def verify(conn: sqlite3.Connection, public: Ed25519PublicKey, checkpoints: list[dict]) -> list[str]:
    """Problems found (Japanese, one per line); empty when the chain and every checkpoint hold."""
    problems = []
    count, broken = sendlog.verify(conn)
    if broken is not None:
        problems.append(f"送信ログのチェーンが記録番号 {broken} で一致しません (書き換え)")
    for through, head, at, signature in conn.execute("SELECT through_seq, head, at, signature FROM send_log_anchor"):
        try:   # where a retention purge cut the log: the chain must start at a signed point
            public.verify(base64.b64decode(signature), f"mailguard send-log anchor v1\n{through}\n{head}\n{at:.6f}\n"
                          .encode())
        except (InvalidSignature, ValueError):
            problems.append(f"記録番号 {through} までを削除した記録の署名が公開鍵と合いません")
    heads = dict(conn.execute("SELECT seq, hash FROM send_log"))
    last = max(heads, default=0)
    if heads and not checkpoints:
        problems.append("署名つきチェックポイントが 1 つもありません (最初の送信から 30 秒以内と停止時に作られます。"
                        "それより後なら、削除された可能性があります)")
    purged = sendlog.purged_through(conn)
    for cp in checkpoints:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cp["at"]))
        try:
            public.verify(base64.b64decode(cp["signature"]), statement(cp["size"], cp["head"], cp["at"]))
        except (InvalidSignature, ValueError):
            problems.append(f"{when} のチェックポイントの署名が公開鍵と合いません")
            continue
        if cp["size"] > last:
            problems.append(f"{when} には記録番号 {cp['size']} まであった送信ログが {last} までしかありません (末尾の削除)")
        elif cp["size"] <= purged:
            continue   # a period purged after its retention: the purge's own signed anchor covers it
        elif heads.get(cp["size"]) != cp["head"]:
            problems.append(f"{when} の記録番号 {cp['size']} の内容が署名された時と違います (チェーンの作り直し)")
    return problems
