"""The relay end to end: a client sends through a running mailguard to a real upstream.

Holds are long (MAILGUARD_HOLD_DELAY=3600 in the fixture) and released explicitly,
so no test races a timer; state is read from the store, never through the CLI
(the CLI has its own tests at the end).
"""

from __future__ import annotations

import subprocess

from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, send, wait_for


def test_internal_mail_arrives_at_once(relay, upstream):
    queue_id = send(relay, [f"colleague@{INTERNAL}"], subject="職員会議の議事録")
    [got] = upstream.wait_to(f"colleague@{INTERNAL}")
    assert got.mail_from == STAFF
    assert got.message["Subject"] == "職員会議の議事録"
    assert f"id {queue_id}" in got.message["Received"]
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")


def test_external_registered_mail_waits_for_the_delay_then_leaves(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOLD_DELAY="1").start()
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--from", STAFF, "--to", REGISTERED,
         "--h-Subject", "退院調整のご連絡", "--body", "よろしくお願いします。"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    queue_id = next(line for line in result.stdout.splitlines() if "queued as" in line).split()[-1]
    upstream.wait_to(REGISTERED, timeout=10)
    decided = next(e for e in relay.events(queue_id) if e.event == "decided")
    released = next(e for e in relay.events(queue_id) if e.event == "released")
    assert decided.state == "delayed" and decided.detail["release_at"] is not None
    assert released.at >= decided.detail["release_at"]          # never before its time
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")


def test_unregistered_recipient_waits_for_a_manager(relay, upstream):
    queue_id = send(relay, [UNREGISTERED])
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert relay.findings(queue_id)[0] == "unregistered_recipient"
    assert "アドレス帳に登録されていない" in relay.message(queue_id).findings[0].text
    relay.act(queue_id, "approve", "電話で確認済み")
    upstream.wait_to(UNREGISTERED)
    approved = next(e for e in relay.events(queue_id) if e.event == "approved")
    assert approved.actor == "test:manager" and approved.detail["comment"] == "電話で確認済み"


def test_cancel_stops_a_held_message_for_good(relay, upstream):
    queue_id = send(relay, [REGISTERED])
    relay.act(queue_id, "cancel")
    assert relay.state(queue_id) == "cancelled"
    # Anything sent after it is delivered first: the cancelled one never followed.
    send(relay, [f"after@{INTERNAL}"])
    upstream.wait_to(f"after@{INTERNAL}")
    assert upstream.to(REGISTERED) == []


def test_send_now_releases_a_held_message(relay, upstream):
    queue_id = send(relay, [REGISTERED])
    assert relay.wait_decided(queue_id) == "delayed"   # inspected first: only then can it be sent now
    relay.act(queue_id, "release", actor="test:staff")
    upstream.wait_to(REGISTERED)


def test_several_recipients_take_the_strongest_action(relay, upstream):
    queue_id = send(relay, [f"colleague@{INTERNAL}", REGISTERED, UNREGISTERED])
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert upstream.messages == []   # one message, one decision: nobody gets it yet
    relay.act(queue_id, "approve", "確認済み")
    [got] = upstream.wait_to(UNREGISTERED)
    assert sorted(got.rcpt_tos) == sorted([f"colleague@{INTERNAL}", REGISTERED, UNREGISTERED])


def test_sigkill_after_250_keeps_the_message_and_its_hold(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOLD_DELAY="2").start()
    queue_id = send(relay, [REGISTERED], subject="ケアプラン")
    relay.kill()
    assert upstream.to(REGISTERED) == []
    relay.start()
    [got] = upstream.wait_to(REGISTERED, timeout=10)
    assert got.message["Subject"] == "ケアプラン"
    decided = next(e for e in relay.events(queue_id) if e.event == "decided")
    released = next(e for e in relay.events(queue_id) if e.event == "released")
    assert released.at >= decided.detail["release_at"]   # the hold's release time survived the crash
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    assert len(upstream.to(REGISTERED)) == 1


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
    assert "recovered" in [e.event for e in relay.events(queue_id)]


def test_upstream_4xx_is_retried_and_then_succeeds(relay, upstream):
    upstream.data_replies.extend(["451 4.3.0 try again later", "421 4.7.0 busy"])
    queue_id = send(relay, [f"colleague@{INTERNAL}"])
    upstream.wait_to(f"colleague@{INTERNAL}", timeout=10)
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    deliveries = [e for e in relay.events(queue_id) if e.event == "delivery"]
    assert [e.state for e in deliveries] == ["deferred", "deferred", "delivered"]
    assert "451 4.3.0 try again later" in deliveries[0].reply


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
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    status = {r.address: str(r.status) for r in relay.message(queue_id).recipients}
    assert status == {good: "delivered", bad: "bounced"}


def test_manager_rejection_tells_the_sender(relay, upstream):
    queue_id = send(relay, [UNREGISTERED], subject="利用者情報")
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    relay.act(queue_id, "reject", "宛先が違います")
    notices = wait_for(lambda: [m for m in upstream.to(STAFF) if "宛先が違います" in m.content.decode("utf-8", "replace")
                                or m.message.get_content_type() == "multipart/report"], what="rejection DSN")
    assert "宛先が違います" in notices[0].message.get_body(("plain",)).get_content()
    assert upstream.to(UNREGISTERED) == []
    assert relay.state(queue_id) == "rejected"


def test_approving_or_rejecting_needs_a_comment(relay, upstream):
    from mailguard.qmgr.actions import ActionRefused
    import pytest

    queue_id = send(relay, [UNREGISTERED])
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    for action in ("approve", "reject"):
        with pytest.raises(ActionRefused, match="コメント"):
            relay.act(queue_id, action, "  ")
    assert relay.state(queue_id) == "awaiting_approval"


def test_a_message_never_approved_bounces_when_its_lifetime_ends(make_relay, upstream):
    relay = make_relay(MAILGUARD_QUEUE_LIFETIME="2").start()
    queue_id = send(relay, [UNREGISTERED])
    notice = wait_for(lambda: [m for m in upstream.to(STAFF) if "承認が得られないまま"
                               in m.message.get_body(("plain",)).get_content()], timeout=8, what="expiry DSN")
    assert notice and upstream.to(UNREGISTERED) == []
    assert relay.state(queue_id) == "bounced"


def test_no_upstream_writes_the_outbox(make_relay, upstream):
    relay = make_relay(MAILGUARD_UPSTREAM="").start()
    queue_id = send(relay, [f"colleague@{INTERNAL}"], subject="試用")
    eml = relay.tmp / "var" / "outbox" / f"{queue_id}.eml"
    wait_for(eml.exists, what="outbox file")
    content = eml.read_bytes()
    assert oct(eml.stat().st_mode & 0o777) == "0o600" and oct(eml.parent.stat().st_mode & 0o777) == "0o700"
    assert content.startswith(f"Return-Path: <{STAFF}>\r\n".encode())
    assert b"X-Mailguard-Rcpt-To: colleague@" in content


def test_a_cached_upstream_connection_that_died_is_replaced(relay, upstream):
    send(relay, [f"first@{INTERNAL}"])
    upstream.wait_to(f"first@{INTERNAL}")
    upstream.restart()   # the upstream restarts while mailguard holds an idle connection to it
    queue_id = send(relay, [f"second@{INTERNAL}"])
    upstream.wait_to(f"second@{INTERNAL}", timeout=5)
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    assert [e.state for e in relay.events(queue_id) if e.event == "delivery"] == ["delivered"]


def test_a_cached_connection_refused_with_421_is_replaced_before_anything_is_sent(relay, upstream):
    upstream.handler.one_transaction_per_connection = True
    send(relay, [f"first@{INTERNAL}"])
    upstream.wait_to(f"first@{INTERNAL}")
    queue_id = send(relay, [f"second@{INTERNAL}"])
    upstream.wait_to(f"second@{INTERNAL}", timeout=5)
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    assert [e.state for e in relay.events(queue_id) if e.event == "delivery"] == ["delivered"]
    assert len(upstream.messages) == 2


# --- the CLI itself: a few stories through the real command -------------------------------

def test_cli_shows_approves_and_verifies_the_log(relay, upstream):
    import sqlite3

    queue_id = send(relay, [UNREGISTERED], sender=f"nurse@{INTERNAL}")
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    show = relay.cli("queue", "show", queue_id).stdout
    assert "承認待ち" in show and "アドレス帳に登録されていない" in show
    refused = relay.cli("queue", "approve", queue_id, check=False)
    assert refused.returncode == 2 and "--comment" in refused.stderr     # a comment is required
    relay.cli("queue", "approve", queue_id, "--comment", "電話で確認済み")
    upstream.wait_to(UNREGISTERED)
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert "(approved) by cli:" in log and "電話で確認済み" in log
    assert f"nurse@{INTERNAL}" in relay.cli("log", "--sender", f"nurse@{INTERNAL}").stdout
    assert relay.cli("log", "--sender", f"clerk@{INTERNAL}").stdout == ""
    assert "chain intact" in relay.cli("log", "--verify").stdout
    if relay.env.get("MAILGUARD_DATABASE_URL"):
        return   # tampering with the SQLite file; on PostgreSQL: test_cluster.py
    relay.stop()
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


def test_cli_refuses_an_action_the_state_does_not_allow(relay, upstream):
    queue_id = send(relay, [REGISTERED])
    relay.act(queue_id, "cancel")
    refused = relay.cli("queue", "release", queue_id, check=False)
    assert refused.returncode == 1 and "取り消し済み" in refused.stderr
