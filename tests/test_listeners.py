"""Several SMTP listeners in one relay: plain port 25 for printers, submission (587) that wants
STARTTLS before anything and AUTH for every message, and implicit TLS (465)."""

from __future__ import annotations

import re
import smtplib
import ssl

import pytest

from conftest import INTERNAL, STAFF, wait_for

PASSWORD = "correct horse battery"
PLAIN_AUTH = "PLAIN " + __import__("base64").b64encode(f"\0kaigo-taro\0{PASSWORD}".encode()).decode()


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def listeners(make_relay, certificate):
    cert, key = certificate
    relay = make_relay(MAILGUARD_TLS_CERT=str(cert), MAILGUARD_TLS_KEY=str(key),
                       MAILGUARD_TRUSTED_NETWORKS="127.0.0.0/8",   # the plain listener relays for them
                       MAILGUARD_SMTP_LISTEN="127.0.0.1:0,127.0.0.1:0/submission,127.0.0.1:0/smtps")
    relay.add_user("kaigo-taro", "staff", STAFF, PASSWORD)
    relay.start()
    ports = dict((mode, int(port)) for port, mode in
                 re.findall(r"mailguard listening on 127\.0\.0\.1:(\d+) \((\w+):", relay.log()))
    assert set(ports) == {"smtp", "submission", "smtps"}
    return relay, ports


def _message(to: str) -> bytes:
    return (f"From: {STAFF}\r\nTo: {to}\r\nSubject: listener test\r\n\r\nhello\r\n").encode()


def test_submission_refuses_everything_before_starttls_and_wants_auth_after(listeners, upstream):
    relay, ports = listeners
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.docmd("AUTH", PLAIN_AUTH)[0] == 530       # RFC 3207 §4: STARTTLS first
        assert client.docmd("MAIL", f"FROM:<{STAFF}>")[0] == 530
        client.starttls(context=_context())
        client.ehlo("client.test")
        client.mail(STAFF)
        code, text = client.rcpt(f"colleague@{INTERNAL}")       # a trusted network, but submission wants AUTH
        assert code == 530 and b"Authentication required" in text
        client.rset()
        assert client.docmd("AUTH", PLAIN_AUTH)[0] == 235
        client.sendmail(STAFF, [f"colleague@{INTERNAL}"], _message(f"colleague@{INTERNAL}"))
    upstream.wait_to(f"colleague@{INTERNAL}")


def test_implicit_tls_accepts_auth_at_once(listeners, upstream):
    relay, ports = listeners
    with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], timeout=10, context=_context()) as client:
        client.ehlo("client.test")
        assert client.has_extn("auth") and not client.has_extn("starttls")   # no STARTTLS inside TLS
        client.mail(STAFF)
        assert client.rcpt(f"colleague2@{INTERNAL}")[0] == 530             # AUTH first, here too
        client.rset()
        assert client.docmd("AUTH", PLAIN_AUTH)[0] == 235
        client.sendmail(STAFF, [f"colleague2@{INTERNAL}"], _message(f"colleague2@{INTERNAL}"))
    [got] = upstream.wait_to(f"colleague2@{INTERNAL}")
    assert "with ESMTPSA" in got.message["Received"]          # RFC 3848: TLS and AUTH, from the first byte


def test_the_plain_listener_still_relays_for_trusted_printers(listeners, upstream):
    relay, ports = listeners
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
        client.sendmail(STAFF, [f"printer@{INTERNAL}"], _message(f"printer@{INTERNAL}"))
    upstream.wait_to(f"printer@{INTERNAL}")
    wait_for(lambda: len([e for e in relay.events() if e.event == "delivery"]) == 1, what="one delivery")


@pytest.mark.parametrize("value, error", [
    ("127.0.0.1:2525/lmtp", "unknown listener mode 'lmtp'"),
    ("127.0.0.1:587", "need MAILGUARD_TLS_CERT"),                     # submission without a certificate
    (",", "expected one or more"),
])
def test_a_listener_setting_that_cannot_work_is_refused(value, error):
    from mailguard.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=re.escape(error)):
        load_settings(smtp_listen=value)


def test_ports_choose_the_mode_unless_named():
    from mailguard.settings import Listener

    assert [Listener.parse(t).mode for t in ("0.0.0.0:25", "0.0.0.0:587", "[::]:465", "0.0.0.0:2587/submission",
                                             "0.0.0.0:587/smtp")] == ["smtp", "submission", "smtps", "submission",
                                                                      "smtp"]
