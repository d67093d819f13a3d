"""RFC 3161 timestamps of the send log's checkpoints, from a local ``openssl ts`` TSA.

A checkpoint signed by the operator's own key says when it was made only in the operator's
word; the TSA's token says it independently. The stories: the relay has each checkpoint
stamped, ``mailguard log verify --tsa-ca`` checks every token; a token from another TSA, a
checkpoint re-signed later with an old time, and a TSA that was down are each told apart.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest
from conftest import INTERNAL, send, wait_for
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


def _stamped(relay) -> int:
    from mailguard.store import timestamps

    with relay.store._lock:
        return len(timestamps.stored(relay.store._conn))


def test_every_checkpoint_is_stamped_and_verify_checks_each_token(make_relay, upstream, tsa, tmp_path):
    relay = make_relay(MAILGUARD_TSA_URL=tsa.url, MAILGUARD_TSA_CA=str(tsa.ca_pem),
                       MAILGUARD_CHECKPOINT_INTERVAL="0.5").start()
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: _stamped(relay) >= 1, what="a stamped checkpoint")
    send(relay, [f"colleague2@{INTERNAL}"])
    wait_for(lambda: len([e for e in relay.events() if e.event == "delivery"]) == 2, what="two deliveries")
    relay.stop()                                            # the checkpoint at stop is stamped too
    data = tmp_path / "var"
    result = _verify(relay, data, "--tsa-ca", str(tsa.ca_pem))
    assert result.returncode == 0, result.stderr
    assert "タイムスタンプ" in result.stdout and "正常" in result.stdout and "ないチェックポイント" not in result.stdout
    journal = [line for line in (data / "checkpoints.jsonl").read_text().splitlines() if '"timestamp"' in line]
    assert len(journal) == tsa.requests >= 2                # every token also outside the database

    unverified = _verify(relay, data)                       # no root given: said, not silently passed
    assert unverified.returncode == 0 and "--tsa-ca" in unverified.stdout

    stranger = LocalTSA(tmp_path / "other-tsa")             # a root that did not sign these tokens
    try:
        wrong = _verify(relay, data, "--tsa-ca", str(stranger.ca_pem))
    finally:
        stranger.close()
    assert wrong.returncode == 1 and "タイムスタンプが検証できません" in wrong.stderr


def test_a_checkpoint_re_signed_later_with_an_old_time_is_shown_by_its_timestamp(make_relay, upstream, tsa, tmp_path):
    """Who holds checkpoint.key can sign any statement, but the TSA's time is not theirs to choose."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    from mailguard.store import Store, checkpoints, timestamps

    relay = make_relay().start()
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
    assert result.returncode == 1 and "後から作り直された可能性" in result.stderr, result.stderr


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


@pytest.mark.parametrize("reply, expected", [
    (b"", "not a time-stamp response"),
    (b"\x30\x03\x02\x01\x02", "not a time-stamp response"),          # a bare SEQUENCE { INTEGER 2 }
    (b"\xff" * 100, "not a time-stamp response"),
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
    for roots in (None, timestamps.load_roots(tsa.ca_pem.read_bytes())):
        with pytest.raises(timestamps.TimestampError):
            timestamps.check(reply, b"checkpoint", roots)
    with pytest.raises(timestamps.TimestampError, match="nonce"):
        timestamps.check(reply, b"other bytes", None, request.nonce + 1)
