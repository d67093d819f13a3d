"""No open relay, AUTH only inside TLS, senders are who they say, smuggling and loops refused."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess

import pytest
from conftest import INTERNAL, REGISTERED, STAFF, send

PASSWORD = "correct horse battery"


@pytest.fixture
def tls_relay(make_relay, certificate):
    cert, key = certificate
    # Only 127.0.0.2 is trusted: connections from 127.0.0.1 must authenticate.
    relay = make_relay(MAILGUARD_TLS_CERT=str(cert), MAILGUARD_TLS_KEY=str(key),
                       MAILGUARD_TRUSTED_NETWORKS="127.0.0.2/32")
    relay.add_user("kaigo-taro", "staff", STAFF, PASSWORD)
    return relay.start()


def _client(relay) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", relay.port, timeout=10)
    client.ehlo("client.test")
    return client


def _tls(client: smtplib.SMTP) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client.starttls(context=context)
    client.ehlo("client.test")


def test_unauthenticated_relay_from_outside_the_trusted_networks_is_refused(tls_relay, upstream):
    with _client(tls_relay) as client:
        client.mail(STAFF)
        for rcpt in (f"colleague@{INTERNAL}", REGISTERED, "anyone@example.org"):
            code, text = client.rcpt(rcpt)
            assert code == 554 and b"Relay access denied" in text
    assert "relay denied" in tls_relay.log()


def test_trusted_network_may_relay_without_auth(make_relay, upstream):
    relay = make_relay(MAILGUARD_TRUSTED_NETWORKS="127.0.0.0/8").start()
    send(relay, [f"colleague@{INTERNAL}"])
    upstream.wait_to(f"colleague@{INTERNAL}")


def test_auth_is_neither_offered_nor_accepted_before_starttls(tls_relay):
    with _client(tls_relay) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN " + _plain("kaigo-taro", PASSWORD))
        assert code == 538, (code, text)   # 5.7.11 encryption required (RFC 4954 §6)


def _plain(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_authenticated_user_relays_after_starttls(tls_relay, upstream):
    with _client(tls_relay) as client:
        _tls(client)
        assert "PLAIN" in client.esmtp_features["auth"]
        client.login("kaigo-taro", PASSWORD)
        client.sendmail(STAFF, [f"colleague@{INTERNAL}"], b"Subject: hi\r\n\r\nhello\r\n")
    [got] = upstream.wait_to(f"colleague@{INTERNAL}")
    assert "with ESMTPSA" in got.message["Received"]
    log = tls_relay.cli("log").stdout
    assert "user=kaigo-taro" in log
    assert PASSWORD not in tls_relay.log() + log


def test_swaks_authenticates_with_starttls(tls_relay, upstream):
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{tls_relay.port}", "--tls", "--auth", "LOGIN",
         "--auth-user", "kaigo-taro", "--auth-password", PASSWORD,
         "--from", STAFF, "--to", f"colleague@{INTERNAL}"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    upstream.wait_to(f"colleague@{INTERNAL}")


def test_wrong_password_is_refused(tls_relay):
    with _client(tls_relay) as client:
        _tls(client)
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("kaigo-taro", "wrong password!")
        assert info.value.smtp_code == 535
    assert "wrong password!" not in tls_relay.log()


def test_disabled_user_cannot_log_in(tls_relay):
    tls_relay.cli("user", "disable", "kaigo-taro")
    with _client(tls_relay) as client:
        _tls(client)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("kaigo-taro", PASSWORD)


def test_a_sender_address_that_is_not_the_users_own_is_refused(tls_relay, upstream):
    with _client(tls_relay) as client:
        _tls(client)
        client.login("kaigo-taro", PASSWORD)
        code, text = client.mail(f"director@{INTERNAL}")
        assert code == 553 and b"not owned" in text
        code, _ = client.mail(STAFF.upper())   # the same address in other case is the user's
        assert code == 250


def _raw_session(port: int, lines: list[bytes]) -> list[bytes]:
    """Speak SMTP by hand (smtplib would repair line ends); returns every reply line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = sock.makefile("rb")
    replies = [reader.readline()]
    for line in lines:
        sock.sendall(line)
        while True:
            reply = reader.readline()
            replies.append(reply)
            if reply[3:4] != b"-":
                break
    sock.close()
    return replies


def test_bare_lf_smuggling_is_rejected(relay, upstream):
    smuggled = (b"Subject: visible\r\n\r\nhello\n.\r\nMAIL FROM:<ceo@" + INTERNAL.encode() +
                b">\r\nRCPT TO:<victim@" + INTERNAL.encode() + b">\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
    replies = _raw_session(relay.port, [
        b"EHLO client.test\r\n", f"MAIL FROM:<{STAFF}>\r\n".encode(),
        f"RCPT TO:<colleague@{INTERNAL}>\r\n".encode(), b"DATA\r\n", smuggled, b"QUIT\r\n",
    ])
    assert any(r.startswith(b"550 5.5.2") and b"bare CR or LF" in r for r in replies), replies
    assert "queued as" not in b"".join(replies).decode()
    _only_a_later_message_arrives(relay, upstream)


def _only_a_later_message_arrives(relay, upstream) -> None:
    """Nothing was queued: a message sent afterwards is the only one the upstream gets."""
    send(relay, [f"later@{INTERNAL}"])
    upstream.wait_to(f"later@{INTERNAL}")
    assert [m.rcpt_tos for m in upstream.messages] == [[f"later@{INTERNAL}"]]


def test_bare_cr_is_rejected_too(relay, upstream):
    replies = _raw_session(relay.port, [
        b"EHLO client.test\r\n", f"MAIL FROM:<{STAFF}>\r\n".encode(),
        f"RCPT TO:<colleague@{INTERNAL}>\r\n".encode(), b"DATA\r\n",
        b"Subject: x\r\n\r\nline one\rline two\r\n.\r\n", b"QUIT\r\n",
    ])
    assert any(r.startswith(b"550 5.5.2") for r in replies), replies


def test_a_mail_loop_is_refused_past_the_hop_limit(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOP_LIMIT="5").start()
    hops = "".join(f"Received: from hop{i}.example by hop{i + 1}.example; Sat, 21 Nov 2026 10:00:00 +0900\r\n"
                   for i in range(6))
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client, \
            pytest.raises(smtplib.SMTPDataError) as info:
        client.sendmail(STAFF, [f"colleague@{INTERNAL}"], (hops + "Subject: loop\r\n\r\nx\r\n").encode())
    assert info.value.smtp_code == 554 and b"too many hops" in info.value.smtp_error


def test_oversized_message_is_refused(make_relay, upstream):
    relay = make_relay(MAILGUARD_MESSAGE_SIZE_LIMIT="10000").start()
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        assert client.ehlo()[0] == 250 and client.esmtp_features["size"] == "10000"
        with pytest.raises(smtplib.SMTPException):
            client.sendmail(STAFF, [f"colleague@{INTERNAL}"], b"Subject: big\r\n\r\n" + b"x" * 20000 + b"\r\n")
    _only_a_later_message_arrives(relay, upstream)


def test_bad_setting_fails_at_start_naming_the_variable(make_relay):
    relay = make_relay(MAILGUARD_SMTP_LISTEN="not-an-address", MAILGUARD_UPSTREAM_TLS="sometimes")
    result = relay.cli("serve", check=False)
    assert result.returncode == 2
    assert "MAILGUARD_SMTP_LISTEN" in result.stderr and "MAILGUARD_UPSTREAM_TLS" in result.stderr
    assert "Traceback" not in result.stderr


def test_user_password_must_be_long_enough(relay):
    result = relay.cli("user", "add", "short", "--address", STAFF, "--password-stdin", input="abc\n", check=False)
    assert result.returncode == 1 and "10" in result.stderr
    listed = relay.cli("user", "list").stdout
    assert "short" not in listed


def test_a_relay_that_holds_mail_keeps_serving_other_sessions(relay, upstream):
    """A message held for approval does not block the next client."""
    held = send(relay, ["stranger@elsewhere.example.org"])
    send(relay, [f"colleague@{INTERNAL}"])
    upstream.wait_to(f"colleague@{INTERNAL}")
    assert relay.wait_decided(held) == "awaiting_approval", relay.findings(held)
