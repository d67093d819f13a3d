"""RFC 3161 timestamps of the send log's checkpoints, from a local ``openssl ts`` TSA.

A checkpoint signed by the operator's own key says when it was made only in the operator's
word; the TSA's token says it independently. The stories: the relay has each checkpoint
stamped, ``mailguard log verify --tsa-ca`` checks every token; a token from another TSA, a
checkpoint re-signed later with an old time, and a TSA that was down are each told apart.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time

import pytest
from conftest import INTERNAL, send, sqlite_only, wait_for
from tsa import LocalTSA


@pytest.fixture
def tsa(tmp_path):
    authority = LocalTSA(tmp_path / "tsa")
    yield authority
    authority.close()


def _verify(relay, data_dir, *extra):
    public = (data_dir / "checkpoint.pub").read_text().strip()
    env = {**relay.env, "MAILGUARD_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "mailguard", "log", "verify", "--public-key", public,
                           "--checkpoints", str(data_dir / "checkpoints.jsonl"), *extra],
                          env=env, capture_output=True, text=True, timeout=60)


def _tamper(database, sql: str) -> None:
    import sqlite3

    conn = sqlite3.connect(database)
    conn.execute(sql)
    conn.commit()
    conn.close()


def _stamped(relay) -> int:
    from mailguard.store import timestamps

    with relay.store._lock:
        return len(timestamps.stored(relay.store._conn))


def test_every_checkpoint_is_stamped_and_verify_checks_each_token(make_relay, upstream, tsa, tmp_path):
    relay = make_relay(MAILGUARD_TSA_URL=tsa.url, MAILGUARD_TSA_CA=str(tsa.ca_pem),
                       MAILGUARD_CHECKPOINT_INTERVAL="0.5").start()
    sqlite_only(relay, "the tampering edits the database file")
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: _stamped(relay) >= 1, what="a stamped checkpoint")
    send(relay, [f"colleague2@{INTERNAL}"])
    wait_for(lambda: len([e for e in relay.events() if e.event == "delivery"]) == 2, what="two deliveries")
    relay.stop()                                            # the checkpoint at stop is stamped too
    data = tmp_path / "var"
    result = _verify(relay, data, "--tsa-ca", str(tsa.ca_pem))
    assert result.returncode == 0, result.stderr
    assert "タイムスタンプ" in result.stdout and "を確認しました" in result.stdout and "注意" not in result.stdout
    lines = [json.loads(line) for line in (data / "checkpoints.jsonl").read_text().splitlines()]
    signed = {line["signature"] for line in lines if "timestamp" not in line}
    assert len(signed) >= 2 and signed == {line["signature"] for line in lines if "timestamp" in line}   # every
    # checkpoint stamped, and each token kept outside the database too

    unverified = _verify(relay, data)                       # no root given: said, not silently passed
    assert unverified.returncode == 0 and "--tsa-ca" in unverified.stdout

    stranger = LocalTSA(tmp_path / "other-tsa")             # a root that did not sign these tokens
    try:
        wrong = _verify(relay, data, "--tsa-ca", str(stranger.ca_pem))
    finally:
        stranger.close()
    assert wrong.returncode == 1 and "タイムスタンプを検証できません" in wrong.stderr

    tokens_deleted = tmp_path / "tokens-deleted"             # whoever re-signs a cut log cannot get old stamps
    shutil.copytree(data, tokens_deleted)
    _tamper(tokens_deleted / "mailguard.sqlite3", "DELETE FROM checkpoint_timestamps")
    journal = tokens_deleted / "checkpoints.jsonl"
    journal.write_text("".join(line + "\n" for line in journal.read_text().splitlines() if '"timestamp"' not in line))
    gone = _verify(relay, tokens_deleted, "--tsa-ca", str(tsa.ca_pem))
    assert gone.returncode == 1 and "有効なタイムスタンプのあるチェックポイントがありません" in gone.stderr


def test_a_checkpoint_re_signed_later_with_an_old_time_is_shown_by_its_timestamp(make_relay, upstream, tsa, tmp_path):
    """Who holds checkpoint.key can sign any statement, but the TSA's time is not theirs to choose."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    from mailguard.store import Store, checkpoints, timestamps

    relay = make_relay().start()
    sqlite_only(relay, "the tampering edits the database file")
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: any(e.event == "delivery" for e in relay.events()), what="a delivery")
    relay.stop()
    data = tmp_path / "var"
    store = Store(data / "mailguard.sqlite3")
    key = checkpoints.signing_key(data)
    size, head = store._conn.execute("SELECT seq, hash FROM send_log ORDER BY seq DESC LIMIT 1").fetchone()
    at = time.time() - 2 * 86400                            # claims to be two days old
    forged = {"size": size, "head": head, "at": at,
              "signature": base64.b64encode(key.sign(checkpoints.statement(size, head, at))).decode()}
    request = TimestampRequestBuilder().data(timestamps.stamped_bytes(forged)).hash_algorithm(
        HashAlgorithm.SHA256).build()
    reply = tsa.reply(request.as_bytes())                   # a genuine token, but of today
    with store._write() as conn:
        conn.execute("DELETE FROM checkpoints")
        conn.execute("INSERT INTO checkpoints (size, head, at, signature) VALUES (:size, :head, :at, :signature)",
                     forged)
        entry = timestamps.save(conn, forged, timestamps.check(reply, timestamps.stamped_bytes(forged), None), reply)
    store.close()
    (data / "checkpoints.jsonl").write_text(json.dumps(forged) + "\n" + json.dumps(entry) + "\n")   # rewritten too
    result = _verify(relay, data, "--tsa-ca", str(tsa.ca_pem))
    assert result.returncode == 1 and "後から署名し直された可能性" in result.stderr, result.stderr


def test_a_tsa_that_is_down_holds_up_nothing_and_is_asked_again(make_relay, upstream, tsa, tmp_path):
    tsa.down = True
    relay = make_relay(MAILGUARD_TSA_URL=tsa.url, MAILGUARD_CHECKPOINT_INTERVAL="0.5").start()
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: any(e.event == "delivery" for e in relay.events()), what="delivery while the TSA is down")
    wait_for(lambda: "did not stamp checkpoint" in relay.log(), what="the TSA failure logged")
    assert _stamped(relay) == 0
    tsa.down = False
    wait_for(lambda: _stamped(relay) >= 1, what="the waiting checkpoint stamped once the TSA is back")
    relay.stop()
    result = _verify(relay, tmp_path / "var", "--tsa-ca", str(tsa.ca_pem))
    assert result.returncode == 0, result.stderr


def test_a_tsa_that_never_answers_holds_up_neither_mail_nor_the_stop(make_relay, upstream, tsa):
    tsa.hang = 60.0
    relay = make_relay(MAILGUARD_TSA_URL=tsa.url, MAILGUARD_CHECKPOINT_INTERVAL="0.5").start()
    for n in range(3):   # delivered while a stamping round waits on the TSA
        send(relay, [f"colleague{n}@{INTERNAL}"])
    wait_for(lambda: len([e for e in relay.events() if e.event == "delivery"]) == 3, what="deliveries")
    started = time.monotonic()
    assert relay.stop() == 0
    assert time.monotonic() - started < 15                  # the round at stop gives up after 5 s
    assert "did not answer within" in relay.log() or "did not stamp" in relay.log()


@pytest.mark.parametrize("reply, expected", [
    (b"", "not a valid time-stamp token"),
    (b"\x30\x03\x02\x01\x02", "not a valid time-stamp token"),        # a bare SEQUENCE { INTEGER 2 }
    (b"\xff" * 100, "not a valid time-stamp token"),
])
def test_a_reply_that_is_not_a_token_is_refused(reply, expected):
    from mailguard.store import timestamps

    with pytest.raises(timestamps.TimestampError, match=expected):
        timestamps.check(reply, b"checkpoint", None)


def test_a_token_for_other_bytes_is_refused(tsa):
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    from mailguard.store import timestamps

    request = TimestampRequestBuilder().data(b"other bytes").hash_algorithm(HashAlgorithm.SHA256).build()
    reply = tsa.reply(request.as_bytes())
    assert timestamps.check(reply, b"other bytes", None, request.nonce)
    for roots, message in ((None, "other bytes"), (timestamps.load_roots(tsa.ca_pem.read_bytes()), "Mismatch")):
        with pytest.raises(timestamps.TimestampError, match=message):
            timestamps.check(reply, b"checkpoint", roots)
    with pytest.raises(timestamps.TimestampError, match="nonce"):
        timestamps.check(reply, b"other bytes", None, request.nonce + 1)
