"""timestamps: RFC 3161 time-stamp tokens over the signed checkpoints, and their verification.

A checkpoint's own time is the operator's word: whoever holds ``checkpoint.key`` can sign a
shortened log with old times. A time-stamping authority (TSA, RFC 3161; Japan has accredited
ones under the 認定タイムスタンプ scheme) signs "these bytes existed at time T" with a key the
operator does not hold. The stamped bytes are the checkpoint's signed statement and its
signature (``stamped_bytes``). A checkpoint is stamped within ``MAX_AGE`` of being signed or
never, so at verify a token whose TSA time is far from the checkpoint's own time shows a
checkpoint made later than it claims.
Tokens are kept whole (the DER TimeStampResp, RFC 3161 §2.4.2) in ``checkpoint_timestamps``
and in ``checkpoints.jsonl``; they are parsed and verified with ``rfc3161-client``: status
granted, the signature chains to the root given at verify (``--tsa-ca``), the signer holds the
critical id-kp-timeStamping EKU (§2.3), and the message imprint is the checkpoint's.
Settings: MAILGUARD_TSA_URL, MAILGUARD_TSA_CA (read by ``qmgr.sweeps``; nothing here is networked).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint_timestamps (
    signature TEXT PRIMARY KEY,   -- the checkpoint's signature: one token per checkpoint
    response  TEXT NOT NULL,      -- base64 DER TimeStampResp
    gen_time  REAL NOT NULL       -- the TSA's time (epoch seconds)
);
"""
MAX_AGE = 3600.0   # seconds after signing that a checkpoint may still be stamped
SKEW = 600.0       # seconds the TSA's clock and ours may disagree


class TimestampError(Exception):
    """A time-stamp response that is not a valid token for the bytes asked for (message in English, for logs)."""


def stamped_bytes(checkpoint: dict) -> bytes:
    """The bytes a TSA stamps for a checkpoint: its signed statement and its signature."""
    from .checkpoints import statement

    return statement(checkpoint["size"], checkpoint["head"], checkpoint["at"]) + \
        f"signature {checkpoint['signature']}\n".encode()


def load_roots(pem: bytes) -> list[x509.Certificate]:
    """The TSA root certificates of a PEM file, each once; ValueError when it holds none."""
    return list(dict.fromkeys(x509.load_pem_x509_certificates(pem)))


def check(response_der: bytes, data: bytes, roots: list[x509.Certificate] | None,
          nonce: int | None = None) -> TimeStampResponse:
    """Decode and check one TimeStampResp for ``data`` (SHA-256/384/512 imprint).

    With ``roots``: the full verification (chain, EKU, imprint, nonce). Without: status,
    imprint and nonce only, as on arrival when MAILGUARD_TSA_CA is unset. Raises TimestampError.
    """
    try:
        response = decode_timestamp_response(response_der)
        if PKIStatus(response.status) != PKIStatus.GRANTED:   # what RFC 3161 verifiers accept (rfc3161-client)
            raise TimestampError(f"the TSA did not grant the request (PKIStatus {response.status})")
        if nonce is not None and response.tst_info.nonce != nonce:
            raise TimestampError("nonce differs from the request's")
        if roots:
            builder = VerifierBuilder(nonce=nonce)
            for root in roots:
                builder = builder.add_root_certificate(root)
            builder.build().verify_message(response, data)
            return response
        imprint = response.tst_info.message_imprint
        digest = _DIGESTS.get(imprint.hash_algorithm.dotted_string)
    except TimestampError:
        raise
    except (VerificationError, ValueError) as exc:   # undecodable, or a signature or chain that does not hold
        raise TimestampError(f"not a valid time-stamp token: {exc}") from None
    if digest is None or digest(data).digest() != imprint.message:
        raise TimestampError("the token stamps other bytes than the checkpoint's")
    return response


_DIGESTS = {"2.16.840.1.101.3.4.2.1": hashlib.sha256, "2.16.840.1.101.3.4.2.2": hashlib.sha384,
            "2.16.840.1.101.3.4.2.3": hashlib.sha512}


def pending(conn: sqlite3.Connection, now: float | None = None) -> list[dict]:
    """Checkpoints signed less than MAX_AGE ago that have no token yet, oldest first."""
    since = (now if now is not None else time.time()) - MAX_AGE
    rows = conn.execute("SELECT size, head, at, c.signature FROM checkpoints c LEFT JOIN checkpoint_timestamps t"
                        " ON t.signature = c.signature WHERE t.signature IS NULL AND c.at > ? ORDER BY c.rowid",
                        (since,))
    return [dict(zip(("size", "head", "at", "signature"), row)) for row in rows]


def save(conn: sqlite3.Connection, checkpoint: dict, response: TimeStampResponse, der: bytes,
         journal: Path | None = None) -> dict:
    """Keep a checked token in the database and, as a second copy, in the journal."""
    gen_time = response.tst_info.gen_time.timestamp()
    encoded = base64.b64encode(der).decode()
    conn.execute("INSERT INTO checkpoint_timestamps (signature, response, gen_time) VALUES (?,?,?)"
                 " ON CONFLICT (signature) DO NOTHING",
                 (checkpoint["signature"], encoded, gen_time))
    entry = {"size": checkpoint["size"], "signature": checkpoint["signature"], "timestamp": encoded}
    if journal is not None:
        with open(journal, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(journal, 0o600)
    return {**entry, "gen_time": gen_time}


def stored(conn: sqlite3.Connection) -> dict[str, str]:
    """{checkpoint signature: base64 DER TimeStampResp} of the database."""
    return dict(conn.execute("SELECT signature, response FROM checkpoint_timestamps"))


def verify(conn: sqlite3.Connection, checkpoints: list[dict], tokens: dict[str, str],
           roots: list[x509.Certificate] | None) -> tuple[list[str], list[str]]:
    """(problems, notes), Japanese, for the tokens of the checkpoints (already signature-checked).

    A stamped checkpoint pins the chain up to its size at the TSA's time, so what the tokens
    attest is the log up to the last stamped checkpoint; what came after is said to be
    unattested. Problems: a token that does not verify; a TSA time more than MAX_AGE + SKEW after
    (or SKEW before) the checkpoint's own time (signed later than it claims); an entry after a
    stamped checkpoint dated before that checkpoint's TSA time (slipped in later); with roots
    given, no valid token at all.
    """
    stamped = [cp for cp in checkpoints if cp["signature"] in tokens]
    if not roots:
        return [], ([f"タイムスタンプ {len(stamped)} 件は未検証です: TSA のルート証明書を --tsa-ca で指定してください"]
                    if stamped else [])
    problems, attested = [], []
    for cp in sorted(stamped, key=lambda c: c["size"]):
        when = _local(cp["at"])
        try:
            gen_time = check(base64.b64decode(tokens[cp["signature"]]), stamped_bytes(cp),
                             roots).tst_info.gen_time.timestamp()
        except (TimestampError, ValueError) as exc:
            problems.append(f"{when} のチェックポイントのタイムスタンプを検証できません ({exc})")
            continue
        if gen_time - cp["at"] > MAX_AGE + SKEW or cp["at"] - gen_time > SKEW:
            problems.append(f"{when} とされるチェックポイントのタイムスタンプは {_local(gen_time)} のものです"
                            " (後から署名し直された可能性)")
            continue
        early = conn.execute("SELECT seq, at FROM send_log WHERE seq > ? AND at < ? ORDER BY seq LIMIT 1",
                             (cp["size"], gen_time - SKEW)).fetchone()
        if early:
            problems.append(f"記録番号 {early[0]} の時刻 {_local(early[1])} は、それより前の記録番号 {cp['size']} までが"
                            f" TSA に確認された {_local(gen_time)} より前です (後から差し込まれた可能性)")
        attested.append((cp, gen_time))
    if not attested:
        return problems + ["有効なタイムスタンプのあるチェックポイントがありません (削除された可能性)"], []
    return problems, _notes(conn, attested)


def _notes(conn: sqlite3.Connection, attested: list) -> list[str]:
    last, gen_time = attested[-1]
    notes = [f"タイムスタンプ {len(attested)} 件を確認しました。記録番号 {last['size']} までの記録は遅くとも"
             f" {_local(gen_time)} (TSA の時刻) に存在していました"]
    after = conn.execute("SELECT count(*) FROM send_log WHERE seq > ?", (last["size"],)).fetchone()[0]
    if after:
        notes.append(f"注意: それより後の {after} 件はタイムスタンプで確かめられていません (末尾の削除や差し替えは、"
                     "サーバーの外に控えたチェックポイントがなければ分かりません)")
    return notes


def _local(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
