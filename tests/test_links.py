"""Link delivery: what leaves carries a link, not the data; the recipient downloads in Chromium;
the sender can take it back; every use is recorded. Real SMTP, real HTTP, Debian's Chromium."""

from __future__ import annotations

from http.client import HTTPConnection, HTTPSConnection
import re
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from conftest import ARTIFACTS, REGISTERED, STAFF, free_port, listening, send, send_raw, wait_for
from documents import XLSX, care_plan_xlsx, message, referral_pdf

AGREED_KEY = "minato-agreed-key-2026"
NO_KEY_PARTNER = "care@hikari-houkan.example.com"
BODY = "山本花子様（被保険者番号1400012345、要介護3）の件です。既往歴に糖尿病があります。\n"
PLANTED = ["佐藤 花子", "佐藤花子", "0123456789", "山本花子", "1400012345", "糖尿病"]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/d/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+)")


def with_links(make_relay, scheme: str = "http", users: tuple = (), **env: str):
    """A started relay whose download pages listen on a free port, named by MAILGUARD_DOWNLOAD_URL."""
    port = free_port()
    relay = make_relay(MAILGUARD_DOWNLOAD_LISTEN=f"127.0.0.1:{port}",
                       MAILGUARD_DOWNLOAD_URL=f"{scheme}://127.0.0.1:{port}", **env)
    for user in users:
        relay.add_user(*user)
    relay.start()
    wait_for(lambda: listening(port), what="download listener")
    relay.download = f"{scheme}://127.0.0.1:{port}"
    return relay


@pytest.fixture
def linking(make_relay):
    return with_links(make_relay)


def request(method: str, url: str, form: dict | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        conn.request(method, parts.path, body, headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    finally:
        conn.close()


def sent_by_link(relay, upstream, rcpt: str = REGISTERED, raw: bytes | None = None) -> tuple[str, bytes, str]:
    """Send a care plan (body with personal data too), approve it, and return the queue id, every
    byte the upstream received for ``rcpt`` and the link in it."""
    raw = raw or message(body=BODY, attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)])
    queue_id = send_raw(relay, [rcpt], raw)
    assert relay.wait_decided(queue_id) == "delayed"      # a registered partner: the hold, then the link
    relay.act(queue_id, "release", actor="test:staff")
    [got] = upstream.wait_to(rcpt)
    text = got.message.get_body(("plain",)).get_content()
    return queue_id, got.content, LINK.search(text).group(1)


def test_care_plan_leaves_as_a_link_and_the_partner_downloads_it_in_chromium(linking, upstream, page):
    plan = care_plan_xlsx()
    raw = message(body=BODY, attachments=[("ケアプラン.xlsx", plan, XLSX)])
    queue_id, wire, link = sent_by_link(linking, upstream, raw=raw)
    decoded = message_from_bytes(wire, policy=default)
    everything = wire.decode("utf-8", "replace") + "".join(
        p.get_content() if p.get_content_maintype() == "text" else "" for p in decoded.walk()
        if not p.is_multipart())
    for planted in PLANTED:
        assert planted not in everything, planted              # no byte of the data, encoded or not
    assert not any(p.get_filename() for p in decoded.iter_attachments())     # no xlsx, no zip
    note = decoded.get_body(("plain",)).get_content()
    assert "ケアプラン.xlsx" in note and "メール本文.txt" in note and "事前に取り決めたパスワード" in note
    assert AGREED_KEY not in note

    page.goto(link)
    assert "ケアプラン.xlsx" in page.inner_text("ul.files")
    page.fill("input[name=passcode]", AGREED_KEY)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "download-page.png"), full_page=True)
    with page.expect_download() as waiting:
        page.click("button:has-text('ケアプラン.xlsx')")
    download = waiting.value
    assert download.suggested_filename == "ケアプラン.xlsx"
    assert Path(download.path()).read_bytes() == plan                      # the original bytes
    page.fill("input[name=passcode]", AGREED_KEY)
    with page.expect_download() as waiting:
        page.click("button:has-text('メール本文.txt')")
    assert "山本花子様" in Path(waiting.value.path()).read_bytes().decode("utf-8-sig")

    [grant] = linking.store.links(queue_id)
    assert grant.status == "開封済み" and grant.downloads == 2
    log = linking.cli("log", "--queue-id", queue_id).stdout
    assert "link_viewed" in log and "link_downloaded" in log and '"client": "127.0.0.1"' in log
    assert "開封済み" in linking.cli("queue", "show", queue_id).stdout


def test_a_get_changes_nothing_and_five_wrong_passcodes_lock_the_link(linking, upstream):
    queue_id, _, link = sent_by_link(linking, upstream)
    for _ in range(2):   # a mail scanner's prefetch, then the recipient
        status, headers, page = request("GET", link)
        assert status == 200 and "ケアプラン.xlsx" in page.decode()
        assert headers["content-security-policy"].startswith("default-src 'none'")
    [grant] = linking.store.links(queue_id)
    assert grant.downloads == 0 and grant.first_download_at is None
    assert [e.event for e in linking.events(queue_id)].count("link_viewed") == 2
    for attempt in range(4):
        status, _, page = request("POST", link, {"file": "0", "passcode": f"wrong-{attempt}"})
        assert status == 403 and f"あと {4 - attempt} 回" in page.decode()
    status, _, page = request("POST", link, {"file": "0", "passcode": "still-wrong"})
    assert status == 410 and "ロック" in page.decode()
    assert request("POST", link, {"file": "0", "passcode": AGREED_KEY})[0] == 410   # locked: even the right key
    assert linking.store.links(queue_id)[0].closed == "locked"
    wait_for(lambda: any("ロック" in str(m.message["Subject"]) for m in upstream.to(STAFF)),
             what="the sender told about the lock")


def test_a_revoked_link_is_gone_with_its_files(linking, upstream):
    queue_id, _, link = sent_by_link(linking, upstream)
    assert linking.store.read_blob(queue_id, 0)   # a file on disk (SQLite), a row (PostgreSQL)
    out = linking.cli("link", "revoke", queue_id).stdout
    assert "1 件を無効" in out
    status, _, page = request("GET", link)
    assert status == 410 and "無効にしました" in page.decode()
    status, headers, page = request("POST", link, {"file": "0", "passcode": AGREED_KEY})
    assert status == 410 and headers["content-type"].startswith("text/html")
    with pytest.raises(FileNotFoundError):
        linking.store.read_blob(queue_id, 0)
    assert not (Path(linking.env["MAILGUARD_DATA_DIR"]) / "links" / queue_id).exists()
    assert "link_revoked" in [e.event for e in linking.events(queue_id)]


def test_an_expired_link_is_gone(make_relay, upstream):
    relay = with_links(make_relay, MAILGUARD_LINK_LIFETIME="1")
    queue_id, _, link = sent_by_link(relay, upstream)
    wait_for(lambda: relay.store.links(queue_id)[0].closed == "expired", timeout=15, what="the link to expire")
    assert request("GET", link)[0] == 410
    assert not (Path(relay.env["MAILGUARD_DATA_DIR"]) / "links" / queue_id).exists()


def test_the_download_listener_answers_no_console_route(linking):
    for path in ("/login", "/", "/admin", "/messages/X", "/api/messages", "/t/x", "/r/x", "/d/x/y"):
        assert request("GET", linking.download + path)[0] == 404, path


def test_a_generated_passcode_goes_to_the_sender_only(linking, upstream):
    plan = care_plan_xlsx()
    raw = message(body=BODY, attachments=[("ケアプラン.xlsx", plan, XLSX)])
    queue_id, wire, link = sent_by_link(linking, upstream, NO_KEY_PARTNER, raw)
    notices = wait_for(lambda: [m for m in upstream.to(STAFF) if "ダウンロードリンク" in str(m.message["Subject"])],
                       what="the sender's link notice")
    passcode = re.search(r"パスコード: (\d{8})", notices[0].message.get_body(("plain",)).get_content()).group(1)
    assert passcode.encode() not in wire                                   # never to the recipient
    [grant] = linking.store.links(queue_id)
    assert grant.passcode == "generated"
    index = [f["name"] for f in grant.files].index("ケアプラン.xlsx")
    status, headers, data = request("POST", link, {"file": str(index), "passcode": passcode})
    assert status == 200 and data == plan
    assert headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    assert headers["content-type"] == "application/octet-stream" and headers["x-content-type-options"] == "nosniff"


def test_personal_data_in_the_subject_is_held_for_the_sender(linking):
    queue_id = send(linking, [REGISTERED], subject="山本花子様 ケアプランの件", body="資料は後ほどお送りします。\n")
    assert linking.wait_decided(queue_id) == "awaiting_approval"
    assert "personal_data_in_subject" in linking.findings(queue_id)


def test_a_referral_pdf_to_a_registered_fax_number_reaches_the_gateway_as_it_is(linking, upstream):
    pdf = referral_pdf()
    fax = "0312345678@fax.sakura-kaigo.example.jp"
    raw = message(body="診療情報提供書を送ります。\n", attachments=[("紹介状.pdf", pdf, "application/pdf")])
    queue_id = send_raw(linking, ["FAX=+81312345678@fax.sakura-kaigo.example.jp"], raw)
    state = linking.wait_decided(queue_id)
    if state != "ready":
        linking.act(queue_id, "approve" if state == "awaiting_approval" else "release", "FAX 番号を確認済み")
    [got] = upstream.wait_to(fax)
    [part] = list(got.message.iter_attachments())
    assert part.get_content_type() == "application/pdf" and part.get_content() == pdf
    assert linking.store.links(queue_id) == []


def test_the_sender_sees_the_download_in_the_console_and_revokes_from_the_notice(make_relay, upstream, page):
    web = free_port()
    relay = with_links(make_relay, users=[("taro", "staff", STAFF, "staff-password-1")],
                       MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
    wait_for(lambda: listening(web), what="console listening")
    console = f"http://127.0.0.1:{web}"
    queue_id, _, link = sent_by_link(relay, upstream)
    notice = wait_for(lambda: [m for m in upstream.to(STAFF) if "ダウンロードリンク" in str(m.message["Subject"])],
                      what="the sender's link notice")[0].message.get_body(("plain",)).get_content()
    revoke = re.search(r"(http://127\.0\.0\.1:\d+/r/\S+)", notice).group(1)
    index = [f["name"] for f in relay.store.links(queue_id)[0].files].index("ケアプラン.xlsx")
    assert request("POST", link, {"file": str(index), "passcode": AGREED_KEY})[0] == 200

    page.goto(console + "/login")
    page.fill("input[name=username]", "taro")
    page.fill("input[name=password]", "staff-password-1")
    page.click("button[type=submit]")
    page.goto(f"{console}/messages/{queue_id}")
    assert "開封済み" in page.inner_text("section.download-links")

    page.goto(revoke)                                     # a GET: shows, revokes nothing
    assert relay.store.links(queue_id)[0].closed is None
    page.click("button:has-text('無効にする')")
    assert "1 件を無効" in page.inner_text("p.done")
    assert relay.store.links(queue_id)[0].closed == "revoked"
    assert request("GET", link)[0] == 410
    page.goto(f"{console}/messages/{queue_id}")
    assert "無効化済み" in page.inner_text("section.download-links")
    [entry] = [e for e in relay.events(queue_id) if e.event == "link_revoked"]
    assert entry.actor == f"link:{STAFF}"


def test_the_download_pages_speak_https_with_hsts_when_a_certificate_is_set(make_relay, certificate):
    import ssl

    cert, key = certificate
    relay = with_links(make_relay, "https", MAILGUARD_TLS_CERT=str(cert), MAILGUARD_TLS_KEY=str(key))
    parts = urlsplit(relay.download)
    conn = HTTPSConnection(parts.hostname, parts.port, timeout=15, context=ssl._create_unverified_context())
    try:
        conn.request("GET", "/d/unknown/link")
        response = conn.getresponse()
        assert response.status == 404 and "このリンクは無効です" in response.read().decode()
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        conn.close()


def test_the_download_listener_refuses_floods_and_large_posts_before_reading_them(make_relay):
    relay = with_links(make_relay, MAILGUARD_DOWNLOAD_RATE_LIMIT="4")
    assert request("POST", relay.download + "/d/x/y", {"passcode": "x" * 10_000})[0] == 413
    statuses = [request("GET", relay.download + "/d/x/y")[0] for _ in range(4)]
    assert statuses == [404, 404, 404, 429]                     # the POST counted: 4 a minute
    assert not [e for e in relay.events() if e.event.startswith("link_")]
