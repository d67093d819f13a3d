"""The relay end to end: a client sends through a running mailguard to a real upstream."""

from __future__ import annotations

import subprocess
import time

from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, send, wait_for


def test_internal_mail_arrives_at_once(relay, upstream):
    queue_id = send(relay, [f"colleague@{INTERNAL}"], subject="職員会議の議事録")
    [got] = upstream.wait_to(f"colleague@{INTERNAL}", timeout=1.5)
    assert got.mail_from == STAFF
    assert got.message["Subject"] == "職員会議の議事録"
    assert f"id {queue_id}" in got.message["Received"]
    assert relay.state(queue_id) == "delivered"


def test_external_registered_mail_waits_for_the_delay_swaks(relay, upstream):
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--from", STAFF, "--to", REGISTERED,
         "--h-Subject", "退院調整のご連絡", "--body", "よろしくお願いします。"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    queue_id = next(line for line in result.stdout.splitlines() if "queued as" in line).split()[-1]
    sent_at = time.monotonic()
    time.sleep(1.0)
    assert upstream.to(REGISTERED) == []
    assert relay.state(queue_id) == "delayed"
    upstream.wait_to(REGISTERED, timeout=5)
    assert time.monotonic() - sent_at >= 2.0  # MAILGUARD_HOLD_DELAY=2
    assert relay.state(queue_id) == "delivered"


def test_unregistered_recipient_waits_for_a_manager(relay, upstream):
    queue_id = send(relay, [UNREGISTERED])
    time.sleep(2.5)   # longer than the hold delay
    assert upstream.to(UNREGISTERED) == []
    assert relay.state(queue_id) == "awaiting_approval"
    show = relay.cli("queue", "show", queue_id).stdout
    assert "unregistered_recipient" in show and "アドレス帳に登録されていない" in show
    relay.cli("queue", "approve", queue_id, "--comment", "電話で確認済み")
    upstream.wait_to(UNREGISTERED, timeout=3)
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert "approved by cli:" in log and "電話で確認済み" in log


def test_cancel_stops_a_held_message_for_good(relay, upstream):
    queue_id = send(relay, [REGISTERED])
    relay.cli("queue", "cancel", queue_id)
    time.sleep(3.0)
    assert upstream.to(REGISTERED) == []
    assert relay.state(queue_id) == "cancelled"
    refused = relay.cli("queue", "release", queue_id, check=False)
    assert refused.returncode == 1 and "cancelled" in refused.stderr


def test_send_now_releases_a_held_message(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOLD_DELAY="600").start()
    queue_id = send(relay, [REGISTERED])
    assert relay.wait_decided(queue_id) == "delayed"   # inspected first: only then can it be sent now
    relay.cli("queue", "release", queue_id)
    upstream.wait_to(REGISTERED, timeout=3)


def test_several_recipients_take_the_strongest_action(relay, upstream):
    queue_id = send(relay, [f"colleague@{INTERNAL}", REGISTERED, UNREGISTERED])
    time.sleep(2.5)
    assert upstream.messages == []   # one message, one decision: nobody gets it yet
    assert relay.state(queue_id) == "awaiting_approval"
    relay.cli("queue", "approve", queue_id)
    [got] = upstream.wait_to(UNREGISTERED)
    assert sorted(got.rcpt_tos) == sorted([f"colleague@{INTERNAL}", REGISTERED, UNREGISTERED])


def test_sigkill_after_250_keeps_the_message_and_its_hold(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOLD_DELAY="3").start()
    queue_id = send(relay, [REGISTERED], subject="ケアプラン")
    sent_at = time.monotonic()
    relay.kill()
    assert upstream.to(REGISTERED) == []
    relay.start()
    [got] = upstream.wait_to(REGISTERED, timeout=8)
    assert time.monotonic() - sent_at >= 3.0   # the hold's release time survived the crash
    assert got.message["Subject"] == "ケアプラン"
    time.sleep(0.5)
    assert len(upstream.to(REGISTERED)) == 1
    assert relay.state(queue_id) == "delivered"


def test_sigkill_mid_delivery_is_delivered_after_restart(relay, upstream):
    upstream.hang.set()
    queue_id = send(relay, [f"colleague@{INTERNAL}"])
    assert upstream.data_started.wait(5)
    assert relay.state(queue_id) == "delivering"
    relay.kill()
    upstream.hang.clear()
    relay.start()
    upstream.wait_to(f"colleague@{INTERNAL}", timeout=5)
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    assert "recovered" in relay.cli("log", "--queue-id", queue_id).stdout


def test_upstream_4xx_is_retried_and_then_succeeds(relay, upstream):
    upstream.data_replies.extend(["451 4.3.0 try again later", "421 4.7.0 busy"])
    queue_id = send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: "deferred" in relay.cli("log", "--queue-id", queue_id).stdout, what="deferral")
    upstream.wait_to(f"colleague@{INTERNAL}", timeout=10)
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert log.count(" delivery ") == 3   # two deferrals, then success
    assert "451 4.3.0 try again later" in log
    assert relay.state(queue_id) == "delivered"


def test_upstream_5xx_sends_a_dsn_to_the_sender(relay, upstream):
    rcpt = f"nobody@{INTERNAL}"
    upstream.refuse_rcpt[rcpt] = "550 5.1.1 <nobody>: Recipient address rejected: User unknown"
    queue_id = send(relay, [rcpt], subject="ご案内")
    [dsn] = upstream.wait_to(STAFF)
    assert dsn.mail_from == "<>"      # null reverse-path (aiosmtpd's form): a DSN never bounces
    msg = dsn.message
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, headers = list(msg.iter_parts())
    assert "届けることができませんでした" in text.get_content()
    assert "ご案内" in text.get_content() and rcpt in text.get_content()
    status_text = status.as_string()
    assert f"Final-Recipient: rfc822; {rcpt}" in status_text
    assert "Action: failed" in status_text and "Status: 5.1.1" in status_text
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "本文です" not in dsn.content.decode("utf-8", "replace")   # the body is not returned
    assert relay.state(queue_id) == "bounced"


def test_mixed_result_delivers_the_accepted_and_bounces_the_others(relay, upstream):
    good, bad = f"colleague@{INTERNAL}", f"left-the-office@{INTERNAL}"
    upstream.refuse_rcpt[bad] = "550 5.1.1 User unknown"
    queue_id = send(relay, [good, bad])
    [got] = upstream.wait_to(good)
    assert got.rcpt_tos == [good]
    [dsn] = upstream.wait_to(STAFF)
    assert bad in dsn.message.as_string() and f"Final-Recipient: rfc822; {good}" not in dsn.message.as_string()
    show = relay.cli("queue", "show", queue_id).stdout
    assert relay.state(queue_id) == "delivered"
    assert any(good in line and "delivered" in line for line in show.splitlines())
    assert any(bad in line and "bounced" in line for line in show.splitlines())


def test_manager_rejection_tells_the_sender(relay, upstream):
    queue_id = send(relay, [UNREGISTERED], subject="利用者情報")
    wait_for(lambda: relay.state(queue_id) == "awaiting_approval", what="approval state")
    relay.cli("queue", "reject", queue_id, "--comment", "宛先が違います")
    [notice] = upstream.wait_to(STAFF)
    assert "宛先が違います" in notice.message.get_body(("plain",)).get_content()
    assert upstream.to(UNREGISTERED) == []
    assert relay.state(queue_id) == "rejected"


def test_a_message_never_approved_bounces_when_its_lifetime_ends(make_relay, upstream):
    relay = make_relay(MAILGUARD_QUEUE_LIFETIME="2").start()
    queue_id = send(relay, [UNREGISTERED])
    [notice] = upstream.wait_to(STAFF, timeout=6)
    assert "承認が得られないまま" in notice.message.get_body(("plain",)).get_content()
    assert upstream.to(UNREGISTERED) == []
    assert relay.state(queue_id) == "bounced"


def test_no_upstream_writes_the_outbox(make_relay, upstream):
    relay = make_relay(MAILGUARD_UPSTREAM="").start()
    queue_id = send(relay, [f"colleague@{INTERNAL}"], subject="試用")
    eml = relay.tmp / "var" / "outbox" / f"{queue_id}.eml"
    wait_for(eml.exists, what="outbox file")
    content = eml.read_bytes()
    assert content.startswith(f"Return-Path: <{STAFF}>\r\n".encode())
    assert b"X-Mailguard-Rcpt-To: colleague@" in content


def test_the_send_log_is_a_verifiable_chain(relay, upstream):
    import sqlite3

    send(relay, [f"colleague@{INTERNAL}"])
    upstream.wait_to(f"colleague@{INTERNAL}")
    assert "chain intact" in relay.cli("log", "--verify").stdout
    db = sqlite3.connect(relay.tmp / "var" / "mailguard.sqlite3")
    try:
        db.execute("UPDATE send_log SET mail_from = 'x@evil.example' WHERE seq = 1")
        raise AssertionError("an UPDATE of the send log must be refused")
    except sqlite3.DatabaseError as exc:
        assert "append-only" in str(exc)
    db.execute("DROP TRIGGER send_log_no_update")   # someone with file access goes further
    db.execute("UPDATE send_log SET mail_from = 'x@evil.example' WHERE seq = 1")
    db.commit()
    db.close()
    broken = relay.cli("log", "--verify", check=False)
    assert broken.returncode == 1 and "seq 1" in broken.stderr


def test_log_filters_by_sender(relay, upstream):
    send(relay, [f"a@{INTERNAL}"], sender=f"nurse@{INTERNAL}")
    send(relay, [f"b@{INTERNAL}"], sender=f"clerk@{INTERNAL}")
    upstream.wait_to(f"b@{INTERNAL}")
    out = relay.cli("log", "--sender", f"nurse@{INTERNAL}").stdout
    assert f"nurse@{INTERNAL}" in out and f"clerk@{INTERNAL}" not in out


def test_a_cached_upstream_connection_that_died_is_replaced(relay, upstream):
    send(relay, [f"first@{INTERNAL}"])
    upstream.wait_to(f"first@{INTERNAL}")
    # The upstream restarts while mailguard holds an idle connection to it.
    upstream.restart()
    queue_id = send(relay, [f"second@{INTERNAL}"])
    upstream.wait_to(f"second@{INTERNAL}", timeout=3)
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert log.count(" delivery ") == 1 and "deferred" not in log


def test_a_cached_connection_refused_with_421_is_replaced_before_anything_is_sent(relay, upstream):
    upstream.handler.one_transaction_per_connection = True
    send(relay, [f"first@{INTERNAL}"])
    upstream.wait_to(f"first@{INTERNAL}")
    queue_id = send(relay, [f"second@{INTERNAL}"])
    upstream.wait_to(f"second@{INTERNAL}", timeout=3)
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert log.count(" delivery ") == 1 and "deferred" not in log
    assert len(upstream.messages) == 2
