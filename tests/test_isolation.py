"""One bad message never stops the others (issue: harden the spine).

Hostile headers, charsets and file names over real SMTP: each message ends held
or delivered as its verdict says, and an ordinary internal message sent right
after it is delivered within 2 s. Faults injected into one stage hold that one
message with a finding that names the stage; the scan goes on.
"""

from __future__ import annotations

import base64
import io
import time

import pytest
import pyzipper

from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, send, send_raw, wait_for
from documents import VALID_MY_NUMBER

AGREED_KEY = b"minato-agreed-key-2026"   # tests/policies/address_book.toml


def encoded_word(text: str) -> str:
    return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="


def internal_arrives_quickly(relay, upstream, tag: str) -> float:
    started = time.monotonic()
    send(relay, [f"{tag}@{INTERNAL}"])
    upstream.wait_to(f"{tag}@{INTERNAL}", timeout=2.0)
    return time.monotonic() - started


def raw_message(rcpt: str, headers: dict[str, str], body: str = "よろしくお願いします。\r\n") -> bytes:
    lines = [f"From: {STAFF}", f"To: {rcpt}", *(f"{k}: {v}" for k, v in headers.items()),
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize("headers", [
    {"Subject": encoded_word("halt\r\nX-Injected: yes")},
    {"Subject": encoded_word("改ページ\x0cと\x00制御文字")},
    {"Subject": "通常の件名", "Message-ID": "<folded-in-the\r\n middle@example.jp>"},
], ids=["crlf-in-subject", "form-feed-in-subject", "folded-message-id"])
def test_hostile_headers_are_held_and_the_queue_keeps_moving(make_relay, upstream, headers):
    relay = make_relay(MAILGUARD_WEB_URL="http://mailguard.test:8025").start()   # notices carry links
    queue_id = send_raw(relay, [UNREGISTERED], raw_message(UNREGISTERED, headers))
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert relay.findings(queue_id)[0] == "unregistered_recipient"    # its own verdict, not a failure
    assert internal_arrives_quickly(relay, upstream, "after") < 2.0
    [notice] = wait_for(lambda: [m for m in upstream.to(STAFF) if "承認待ち" in str(m.message["Subject"])],
                        what="held notice")
    assert "X-Injected" not in notice.message.keys()                  # no header was injected
    head = notice.content.split(b"\r\n\r\n", 1)[0]
    assert b"\x0c" not in head and b"\x00" not in head and b"\r\n\r\n" not in head


def attachment_message(rcpt: str, filename_header: str, charset: str = "utf-8") -> bytes:
    """A CSV of residents with a My Number, attached under a raw Content-Disposition."""
    csv = f"氏名,個人番号,要介護度\r\n山田 太郎,{VALID_MY_NUMBER},要介護3\r\n".encode()
    return (f"From: {STAFF}\r\nTo: {rcpt}\r\nSubject: =?UTF-8?B?5ZCN57C/?=\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            f"--b1\r\nContent-Type: text/plain; charset=\"{charset}\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "利用者名簿を送ります。\r\n"
            "--b1\r\nContent-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; {filename_header}\r\n\r\n"
            + base64.encodebytes(csv).decode().replace("\n", "\r\n") + "--b1--\r\n").encode("utf-8")


@pytest.mark.parametrize("filename_header, charset", [
    ('filename="meibo.csv"', "x-unknown"),                    # a charset nobody knows
    ('filename="利用者名簿.csv"', "utf-8"),                   # raw UTF-8 in the header (SMTPUTF8-style)
    ('filename="=?UTF-8?B?broken"', "utf-8"),                 # a broken RFC 2047 word
    ('filename="../../../etc/passwd.csv"', "utf-8"),          # a path, as an attacker would send it
], ids=["unknown-charset", "raw-utf8-name", "broken-rfc2047-name", "path-traversal"])
def test_odd_attachments_still_leave_protected(relay, upstream, filename_header, charset):
    queue_id = send_raw(relay, [REGISTERED], attachment_message(REGISTERED, filename_header, charset))
    # a registered partner: held for the delay, protected; nothing failed
    assert relay.wait_decided(queue_id, timeout=20) == "delayed"
    assert set(relay.findings(queue_id)) == {"sensitive_data", "external_recipient"}
    relay.act(queue_id, "release", actor="test:staff")
    [got] = upstream.wait_to(REGISTERED)
    assert VALID_MY_NUMBER.encode() not in got.content                  # never in the clear
    [archive] = [p for p in got.message.iter_attachments() if p.get_content_type() == "application/zip"]
    with pyzipper.AESZipFile(io.BytesIO(archive.get_content())) as zf:
        zf.setpassword(AGREED_KEY)
        [name] = zf.namelist()
        assert "/" not in name and "\\" not in name and ".." not in name.split(".")[0]
        assert VALID_MY_NUMBER.encode() in zf.read(name)


async def test_a_fault_in_one_message_leaves_the_others_decided(tmp_path, monkeypatch):
    """inspect raises for one message only: it waits for a manager, its neighbour is delivered."""
    from conftest import HERE
    from mailguard import policy
    from mailguard.check import pipeline
    from mailguard.model import Envelope, Submission
    from mailguard.qmgr.manager import QueueManager
    from mailguard.settings import load_settings
    from mailguard.smtp import Attempt
    from mailguard.store import AsyncStore, Store

    real = pipeline.inspect

    def sometimes(raw, *args, **kwargs):
        if b"poison" in raw:
            raise ValueError("Header values may not contain linefeed or carriage return characters")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(pipeline, "inspect", sometimes)

    class Watcher:
        current = policy.load(HERE / "policies")

    delivered = []

    async def deliverer(message):
        delivered.append(message.queue_id)
        return Attempt("test", {r: (250, "2.0.0 ok") for r in message.pending_recipients})

    db = AsyncStore(Store(tmp_path / "db.sqlite3"))
    manager = QueueManager(load_settings(data_dir=tmp_path, inspect_workers=1, web_listen=""), db, Watcher(),
                           deliverer=deliverer)
    try:
        for qid, subject in (("Q1", "poison"), ("Q2", "ordinary")):
            await db.accept(Submission(qid, Envelope("s@" + INTERNAL, (f"a@{INTERNAL}",)),
                                       f"Subject: {subject}\r\n\r\nx\r\n".encode(), None, "127.0.0.1", "h",
                                       f"<{qid}@x>", subject), lifetime=10000)
        await manager.scan()
        await manager.decisions_done()
        import asyncio

        await asyncio.gather(*manager._active.values())
        held, ok = await db.get("Q1"), await db.get("Q2")
        assert held.state == "awaiting_approval" and [f.code for f in held.findings] == ["inspection_failed"]
        assert "エラー" in held.findings[0].text and "linefeed" not in held.findings[0].text   # no internals
        assert ok.state == "delivered" and delivered == ["Q2"]
    finally:
        await manager.stop()
        db.close()


async def test_a_verdict_that_cannot_be_stored_is_retried_and_never_blocks_the_rest(tmp_path, monkeypatch,
                                                                                   dns_server):
    from conftest import HERE
    from mailguard import policy
    from mailguard.model import Envelope, Submission
    from mailguard.qmgr import manager as manager_mod
    from mailguard.settings import load_settings
    from mailguard.store import AsyncStore, Store

    class Watcher:
        current = policy.load(HERE / "policies")

    store = Store(tmp_path / "db.sqlite3")
    real_apply = store.apply_verdict

    def flaky(queue_id, *args, **kwargs):
        if queue_id == "Q1":
            raise OSError("disk I/O error")
        return real_apply(queue_id, *args, **kwargs)

    monkeypatch.setattr(store, "apply_verdict", flaky)
    db = AsyncStore(store)
    settings = load_settings(data_dir=tmp_path, inspect_workers=1, web_listen="", queue_lifetime=1,
                             dns_servers=f"127.0.0.1:{dns_server.port}")
    manager = manager_mod.QueueManager(settings, db, Watcher(),
                                       deliverer=lambda m: None)
    try:
        for qid in ("Q1", "Q2"):
            await db.accept(Submission(qid, Envelope("s@" + INTERNAL, (REGISTERED,)),
                                       b"Subject: x\r\n\r\nx\r\n", None, "127.0.0.1", "h", f"<{qid}@x>", "x"),
                            lifetime=1)
        await manager.scan()
        await manager.decisions_done()
        q2 = await db.get("Q2")
        assert (await db.get("Q1")).state == "incoming" and q2.state == "delayed", q2.findings
        assert "Q1" in manager._failed_decisions      # not retried on every scan
        # incoming is subject to the queue lifetime like every other state: it ends with a DSN
        await manager._expire("Q1", time.time() + 5)
        expired = await db.get("Q1")
        assert expired.state == "bounced"
        dsn = [m for m in await db.list() if m.origin == "dsn"]
        assert dsn and dsn[0].envelope.rcpt_tos == ("s@" + INTERNAL,)
    finally:
        await manager.stop()
        db.close()


async def test_a_reply_that_cannot_be_recorded_never_sends_the_message_again(tmp_path):
    """A Japanese server's 250 with Shift_JIS bytes (aiosmtplib hands them on as surrogates):
    the delivery is recorded all the same, and the message is not delivered a second time."""
    import asyncio

    from conftest import HERE
    from mailguard import policy
    from mailguard.model import Envelope, Submission
    from mailguard.qmgr.manager import QueueManager
    from mailguard.settings import load_settings
    from mailguard.smtp import Attempt
    from mailguard.store import AsyncStore, Store

    class Watcher:
        current = policy.load(HERE / "policies")

    attempts = []

    async def deliverer(message):
        attempts.append(message.queue_id)
        return Attempt("mx.test", {f"a@{INTERNAL}": (250, "2.0.0 Ok: queued \udc8e\udcf3"),
                                   f"b@{INTERNAL}": (550, "5.1.1 宛先不明 \udc82\udca0")})

    db = AsyncStore(Store(tmp_path / "db.sqlite3"))
    settings = load_settings(data_dir=tmp_path, inspect_workers=1, web_listen="", retry_min_backoff=1)
    manager = QueueManager(settings, db, Watcher(), deliverer=deliverer)
    try:
        await db.accept(Submission("Q1", Envelope("s@" + INTERNAL, (f"a@{INTERNAL}", f"b@{INTERNAL}")),
                                   b"Subject: x\r\n\r\nx\r\n", None, "127.0.0.1", "h", "<Q1@x>", "x"),
                        lifetime=10000)
        for _ in range(3):
            await manager.scan()
            await manager.decisions_done()
            await asyncio.gather(*manager._active.values())
        message = await db.get("Q1")
        assert message.state == "delivered" and attempts.count("Q1") == 1     # never a second time
        dsn = [m for m in await db.list(None) if m.origin == "dsn"]
        assert len(dsn) == 1 and dsn[0].envelope.rcpt_tos == ("s@" + INTERNAL,)   # the bounce is still told
        assert {r.address: str(r.status) for r in message.recipients} == {f"a@{INTERNAL}": "delivered",
                                                                          f"b@{INTERNAL}": "bounced"}
        assert (await db.verify_log())[1] is None          # the chain is intact
    finally:
        await manager.stop()
        db.close()


def test_a_generated_password_is_never_mailed_outside_the_office(relay, upstream):
    """A printer on the trusted network sends as an ISP mailbox: the zip's generated password
    must not go there (that would be PPAP); the message waits for a manager instead."""
    partner = "care@hikari-houkan.example.com"          # registered, no agreed key
    outside = "scanner@isp-mail.example.net"
    queue_id = send_raw(relay, [partner], attachment_message(partner, 'filename="meibo.csv"'), sender=outside)
    assert relay.wait_decided(queue_id, timeout=20) == "awaiting_approval"
    first = relay.message(queue_id).findings[0]
    assert first.code == "processing_failed" and "パスワード" in first.text and "暗号化されずに" in first.text
    send(relay, [f"after@{INTERNAL}"])
    upstream.wait_to(f"after@{INTERNAL}")
    assert upstream.to(outside) == []


async def test_a_slow_content_scan_keeps_nobody_else_waiting(tmp_path, dns_server):
    """One external message whose scan takes long; an internal one accepted after it leaves at once."""
    import asyncio

    from conftest import HERE
    from mailguard import policy
    from mailguard.check.content.report import ContentReport
    from mailguard.model import Envelope, Submission
    from mailguard.qmgr.manager import QueueManager
    from mailguard.settings import load_settings
    from mailguard.smtp import Attempt
    from mailguard.store import AsyncStore, Store

    class Watcher:
        current = policy.load(HERE / "policies")

    release = asyncio.Event()

    async def slow_scan(raw, queue_id="", roster=()):
        await release.wait()                     # as long as the test wants: a 30 s scan, say
        return ContentReport("none")

    async def deliverer(message):
        return Attempt("mx.test", {r: (250, "2.0.0 ok") for r in message.pending_recipients})

    db = AsyncStore(Store(tmp_path / "db.sqlite3"))
    settings = load_settings(data_dir=tmp_path, inspect_workers=1, web_listen="", queue_scan_interval=0.1,
                             dns_servers=f"127.0.0.1:{dns_server.port}")
    manager = QueueManager(settings, db, Watcher(), deliverer=deliverer)
    manager.content.scan = slow_scan
    runner = asyncio.create_task(manager.run())
    try:
        await db.accept(Submission("Q1", Envelope("s@" + INTERNAL, (REGISTERED,)), b"Subject: x\r\n\r\nx\r\n",
                                   None, "127.0.0.1", "h", "<Q1@x>", "x"), lifetime=10000)
        await asyncio.sleep(0)   # let the scan pick it up first
        manager.wake()
        await db.accept(Submission("Q2", Envelope("s@" + INTERNAL, (f"a@{INTERNAL}",)), b"Subject: y\r\n\r\ny\r\n",
                                   None, "127.0.0.1", "h", "<Q2@x>", "y"), lifetime=10000)
        manager.wake()
        deadline = time.monotonic() + 2
        while (await db.get("Q2")).state != "delivered":
            assert time.monotonic() < deadline, "the internal message waited for the slow scan"
            await asyncio.sleep(0.02)
        assert (await db.get("Q1")).state == "incoming"      # still being scanned
        release.set()
        await manager.decisions_done()
        assert (await db.get("Q1")).state == "delayed"
    finally:
        release.set()
        await manager.stop()
        runner.cancel()
        db.close()


def test_raw_utf8_headers_are_read_and_an_endless_header_is_refused(relay, upstream):
    import smtplib

    raw = ("From: staff@sakura-kaigo.example.jp\r\nTo: a@sakura-kaigo.example.jp\r\n"
           "Subject: ケアプラン送付 =?UTF-8?B?44Gu44GK55+l44KJ44Gb?=\r\nMessage-ID: <送付@example.jp>\r\n\r\n"
           "本文\r\n").encode()
    queue_id = send_raw(relay, [f"a@{INTERNAL}"], raw)        # a 250, never a 500
    stored = relay.message(queue_id)
    assert stored.subject == "ケアプラン送付 のお知らせ" and stored.message_id == "<送付@example.jp>"
    endless = b"From: staff@sakura-kaigo.example.jp\r\n" + b"X-Filler: " + b"x" * 70 + b"\r\n" * 1
    endless = endless + (b"X-Filler: " + b"x" * 70 + b"\r\n") * 4000          # ~320 KB of header, no body
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail(STAFF)
        client.rcpt(f"a@{INTERNAL}")
        code, text = client.data(endless)
    assert code == 552 and b"5.3.4" in text
