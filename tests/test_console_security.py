"""Console and file security over real sockets (issue 8, item 7), with a plain HTTP client.

A copied session cookie is worthless after logout, ``user passwd`` and ``user disable``;
a manager cannot approve their own message; CSV export neutralises formula cells; a bad
comment is never a 500; HSTS over TLS only; file modes under umask 022; hostile
attachment names are made safe inside the generated zip.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import ssl
import stat
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, free_port, listening, send_raw, wait_for
from documents import VALID_MY_NUMBER

PASSWORDS = {"boss": "manager-password-1", "nishi": "manager-password-2", "taro": "staff-password-1",
             "kanri": "admin-password-1"}
USERS = {"boss": ("manager", f"boss@{INTERNAL}"), "nishi": ("manager", f"nishi@{INTERNAL}"),
         "taro": ("staff", STAFF), "kanri": ("admin", f"kanri@{INTERNAL}")}
HSTS = "Strict-Transport-Security"


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # the test's self-signed certificate
    return context


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class Client:
    """An HTTP client that keeps the session cookie by hand, so a test can copy and replay it."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.https, self.host, self.port = parts.scheme == "https", parts.hostname, parts.port
        self.cookie: str | None = None

    def request(self, method: str, path: str, *, form: dict | None = None, body: dict | None = None,
                headers: dict | None = None) -> Reply:
        conn = (http.client.HTTPSConnection(self.host, self.port, timeout=15, context=_unverified()) if self.https
                else http.client.HTTPConnection(self.host, self.port, timeout=15))
        sent = dict(headers or {})
        data = None
        if form is not None:
            data, sent["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
        if body is not None:
            data, sent["Content-Type"] = json.dumps(body).encode(), "application/json"
        if self.cookie:
            sent["Cookie"] = f"mailguard_session={self.cookie}"
        try:
            conn.request(method, path, data, sent)
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
        for value in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            if name == "mailguard_session":
                cookie = rest.split(";", 1)[0]
                self.cookie = None if "1970" in value or cookie in ("", "null") else cookie
        return reply

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return self.request("POST", path, **kw)

    def login(self, user: str, password: str | None = None) -> str:
        """Log in as ``user``; returns the CSRF token of the new session."""
        form = self.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        done = self.post("/login", form={"username": user, "password": password or PASSWORDS[user],
                                         "csrf_token": token})
        assert done.status == 303 and done.headers["Location"] == "/", (done.status, done.text)
        return self.get("/api/v1/session").json()["csrf_token"]


def _start_console(relay, web: int, https: bool = False, **env: str):
    existing = {u["username"] for u in relay.store.list_users()}
    for name, (role, address) in USERS.items():
        if name not in existing:
            relay.add_user(name, role, address, PASSWORDS[name])
    relay.start(**env)
    wait_for(lambda: listening(web), what="console listening")
    relay.web = f"http{'s' if https else ''}://127.0.0.1:{web}"
    return relay


@pytest.fixture
def console(make_relay):
    web = free_port()
    return _start_console(make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}", MAILGUARD_HOLD_DELAY="600"), web)


@pytest.fixture
def tls_env(certificate):
    cert, key = certificate
    return {"MAILGUARD_TLS_CERT": str(cert), "MAILGUARD_TLS_KEY": str(key)}


def send(relay, rcpts: list[str], *, subject: str, sender: str = STAFF, login: str | None = None) -> str:
    """One message over SMTP (with STARTTLS and AUTH as ``login`` if given); the queue id."""
    raw = (f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "ご確認ください。\r\n").encode()
    return send_raw(relay, rcpts, raw, sender=sender, login=(login, PASSWORDS[login]) if login else None)


def test_a_copied_session_cookie_is_refused_after_logout_password_change_and_disable(console):
    queue_id = send(console, [REGISTERED], subject="職員のメール")
    assert console.wait_decided(queue_id) == "delayed"
    password = PASSWORDS["taro"]
    for ending in ("logout", "passwd", "disable"):
        client = Client(console.web)
        token = client.login("taro", password)
        copied = client.cookie
        assert client.get("/").status == 200 and client.get(f"/messages/{queue_id}").status == 200
        if ending == "logout":
            assert client.post("/logout", form={"csrf_token": token}).status == 303
        elif ending == "passwd":
            password = "staff-password-new"
            console.cli("user", "passwd", "taro", "--password-stdin", input=password + "\n")
        else:
            console.cli("user", "disable", "taro")
        replay = Client(console.web)
        replay.cookie = copied
        page = replay.get("/")
        assert (page.status, page.headers["Location"]) == (303, "/login"), ending
        replay.cookie = copied
        assert replay.get("/api/v1/messages").status == 401, ending
        replay.cookie = copied
        assert replay.post(f"/api/v1/messages/{queue_id}/cancel", body={},
                           headers={"X-CSRF-Token": token}).status == 401, ending
        replay.cookie = copied
        assert replay.post(f"/messages/{queue_id}/cancel", form={"csrf_token": token}).status == 401, ending
        assert console.state(queue_id) == "delayed", ending


def test_a_manager_cannot_approve_their_own_message_and_another_manager_can(make_relay, tls_env, upstream):
    web = free_port()
    relay = _start_console(make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}", MAILGUARD_HOLD_DELAY="600",
                                      MAILGUARD_TRUSTED_NETWORKS="127.0.0.2/32", **tls_env), web, https=True)
    queue_id = send(relay, [UNREGISTERED], subject="管理者自身のメール", sender=f"boss@{INTERNAL}", login="boss")
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert relay.message(queue_id).auth_user == "boss"
    own = Client(relay.web)
    token = own.login("boss")
    shown = own.get(f"/messages/{queue_id}")
    assert shown.status == 200 and "自分が送ったメールは承認できません" in shown.text
    assert f"/messages/{queue_id}/approve" not in shown.text                  # no approve button
    refused = own.post(f"/messages/{queue_id}/approve", form={"comment": "確認しました", "csrf_token": token})
    assert refused.status == 400 and "自分が送ったメールは承認できません" in refused.text
    by_api = own.post(f"/api/v1/messages/{queue_id}/approve", body={"comment": "確認しました"},
                      headers={"X-CSRF-Token": token})
    assert by_api.status == 422 and "自分が送ったメールは承認できません" in by_api.json()["detail"]
    assert relay.state(queue_id) == "awaiting_approval"
    other = Client(relay.web)
    token = other.login("nishi")
    assert f"/messages/{queue_id}/approve" in other.get(f"/messages/{queue_id}").text
    done = other.post(f"/messages/{queue_id}/approve", form={"comment": "電話で宛先を確認", "csrf_token": token})
    assert done.status == 303
    upstream.wait_to(UNREGISTERED)
    assert "(approved) by web:nishi" in relay.cli("log", "--queue-id", queue_id).stdout


def test_csv_export_neutralises_formula_cells(console):
    client = Client(console.web)
    token = client.login("kanri")
    hostile = {"name": '=HYPERLINK("http://evil.example/","開く")', "organisation": "+1+1",
               "note": "@SUM(1+1)*cmd|' /C calc'!A0"}
    added = client.post("/admin/address-book/add", form={
        "kind": "email", "address": "danger@kita-partner.example.jp", "csrf_token": token, **hostile})
    assert added.status == 303
    added = client.post("/admin/address-book/add", form={
        "kind": "fax", "number": "03-1234-9876", "organisation": "-2+3", "name": "-ハイフン", "csrf_token": token})
    assert added.status == 303
    for encoding, codec in (("utf-8", "utf-8-sig"), ("cp932", "cp932")):
        exported = client.get(f"/admin/address-book.csv?encoding={encoding}")
        assert exported.status == 200
        rows = list(csv.reader(io.StringIO(exported.body.decode(codec))))
        cells = [cell for row in rows for cell in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
        danger = next(row for row in rows if row[1] == "danger@kita-partner.example.jp")
        assert danger[0] == "'" + hostile["name"] and danger[2] == "'+1+1" and danger[4] == "'" + hostile["note"]
        assert any(row[2] == "'-2+3" and row[0] == "'-ハイフン" for row in rows)
        assert any(c.startswith("'@") for c in cells)      # a domain entry, "@minato-…"


def test_import_takes_the_apostrophe_off_again():
    from mailguard.console.admin import parse_contacts

    data = ("名前,電子メール アドレス,会社\r\n'=1+1,a@kita.example.jp,'+会社\r\n,'@minami.example.jp,南\r\n"
            "普通,b@kita.example.jp,'普通の会社\r\n").encode()
    assert parse_contacts(data) == [
        ("email", {"address": "a@kita.example.jp", "organisation": "+会社", "name": "=1+1"}),
        ("domain", {"domain": "minami.example.jp", "organisation": "南"}),
        ("email", {"address": "b@kita.example.jp", "organisation": "'普通の会社", "name": "普通"}),
    ]


def test_an_import_without_a_company_column_never_renames_an_entry_in_the_book():
    import tomlkit

    from mailguard.console.admin import merge_contacts, parse_contacts

    book = tomlkit.parse('[[email]]\naddress = "renkei@hosp.example.jp"\norganisation = "さくら病院 地域連携室"\n'
                         '[[fax]]\nnumber = "03-1234-5678"\norganisation = "さくら病院"\n')
    rows = parse_contacts("電子メール アドレス,会社 FAX\r\nRenkei@hosp.example.jp,03-1234-5678\r\n"
                          "new@other.example.jp,\r\n".encode())
    assert merge_contacts(book, rows) == {"added": 1, "updated": 0, "skipped": 2}
    assert book["email"][0]["organisation"] == "さくら病院 地域連携室" and book["fax"][0]["organisation"] == "さくら病院"
    assert book["email"][1]["organisation"] == "other.example.jp"          # a new entry takes the stand-in
    assert "__placeholders__" not in tomlkit.dumps(book)


def test_a_bad_comment_is_a_japanese_400_never_a_500(console):
    first = send(console, [UNREGISTERED], subject="却下するメール1")
    second = send(console, [UNREGISTERED], subject="却下するメール2")
    assert console.wait_decided(first) == console.wait_decided(second) == "awaiting_approval"
    client = Client(console.web)
    token = client.login("boss")
    too_long = client.post(f"/messages/{first}/reject", form={"comment": "あ" * 2001, "csrf_token": token})
    assert too_long.status == 400 and "コメントが長すぎます" in too_long.text
    by_api = client.post(f"/api/v1/messages/{first}/reject", body={"comment": "あ" * 2001},
                         headers={"X-CSRF-Token": token})
    assert by_api.status == 422 and "コメントが長すぎます" in by_api.json()["detail"]
    surrogate = client.post(f"/api/v1/messages/{first}/reject", body={"comment": "宛先\ud800違い"},
                            headers={"X-CSRF-Token": token})
    assert surrogate.status == 422 and "使えない文字" in surrogate.json()["detail"]
    only_controls = client.post(f"/messages/{first}/reject", form={"comment": "\r\x00\x1b", "csrf_token": token})
    assert only_controls.status == 400 and "コメント" in only_controls.text
    assert console.state(first) == "awaiting_approval"
    # A bare CR is no reason for an error: the comment is kept, as a line break.
    done = client.post(f"/messages/{first}/reject", form={"comment": "宛先が\r違います", "csrf_token": token})
    assert done.status == 303
    done = client.post(f"/api/v1/messages/{second}/reject", body={"comment": "宛先が\r違います\x07"},
                       headers={"X-CSRF-Token": token})
    assert done.status == 200 and done.json()["state"] == "rejected"
    for queue_id in (first, second):
        [(_, entry)] = [e for e in console.store.log(queue_id=queue_id) if e[1].event == "rejected"]
        assert entry.detail["comment"] == "宛先が\n違います"


def test_hsts_over_tls_and_never_over_plain_http(make_relay, tls_env):
    web = free_port()
    relay = _start_console(make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}"), web)
    assert HSTS not in Client(relay.web).get("/login").headers
    relay.stop()
    _start_console(relay, web, https=True, **tls_env)
    client = Client(relay.web)
    assert client.get("/login").headers[HSTS] == "max-age=31536000"
    client.login("taro")
    assert client.get("/").headers[HSTS] == "max-age=31536000"
    assert "secure" in Client(relay.web).get("/login").headers["Set-Cookie"].lower().split("; ")


def test_data_and_policy_file_modes_under_umask_022(make_relay):
    previous = os.umask(0o022)     # the relay and the CLI inherit it
    try:
        web = free_port()
        relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
        book = relay.policies / "address_book.toml"
        book.chmod(0o600)
        relay.start()            # the relay makes the data directory, the database and console.key
        wait_for(lambda: listening(web), what="console listening")
        relay.add_user("kanri", "admin", f"kanri@{INTERNAL}", PASSWORDS["kanri"])
        client = Client(f"http://127.0.0.1:{web}")
        token = client.login("kanri")
        for mode, number in ((0o600, "03-1111-2222"), (0o640, "03-1111-3333")):
            book.chmod(mode)
            before = book.read_text(encoding="utf-8")
            added = client.post("/admin/address-book/add", form={
                "kind": "fax", "number": number, "organisation": "テスト", "csrf_token": token})
            assert added.status == 303 and book.read_text(encoding="utf-8") != before
            assert stat.S_IMODE(book.stat().st_mode) == mode
        data = Path(relay.env["MAILGUARD_DATA_DIR"])
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        if not relay.env.get("MAILGUARD_DATABASE_URL"):
            assert stat.S_IMODE((data / "mailguard.sqlite3").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "console.key").stat().st_mode) == 0o600
        loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in data.iterdir()
                 if stat.S_IMODE(p.stat().st_mode) & 0o077}
        assert loose == {}
        assert not [p for p in relay.policies.iterdir() if p.name.startswith(".")]   # no scratch files left
    finally:
        os.umask(previous)


SAFE_NAMES = [
    ("../../../etc/passwd.csv", "passwd.csv"),
    ("..\\..\\Windows\\win.ini.csv", "win.ini.csv"),
    ("/etc/shadow", "shadow"),
    ("C:\\Users\\Public\\a.csv", "a.csv"),
    ("C:evil.csv", "C_evil.csv"),
    ("report.csv:stream", "report.csv_stream"),
    ("ケア\x00プラン\x07\x1b.csv", "ケア_プラン__.csv"),
    ("tab\tname\r\n.csv", "tab_name__.csv"),
    ("請求書\u202Evsc.exe", "請求書_vsc.exe"),
    ("\u2066a\u2069\u200e\u200f\ufeffb.csv", "_a____b.csv"),
    ("CON.csv", "_CON.csv"),
    ("con", "_con"),
    ("NUL.tar.gz", "_NUL.tar.gz"),
    ("lpt1.txt", "_lpt1.txt"),
    ("COM¹.csv", "_COM¹.csv"),
    ("CON.csv. . ", "_CON.csv"),
    ("AUX\u202E.csv", "AUX_.csv"),
    (".bashrc", "bashrc"),
    ("..", "添付ファイル"),
    ("", "添付ファイル"),
    ("ケアプラン.xlsx", "ケアプラン.xlsx"),
    ("ｹｱﾌﾟﾗﾝ.csv", "ｹｱﾌﾟﾗﾝ.csv"),       # NFC: half-width kana are kept as sent
    ("a\x85b\x9b.csv", "a_b_.csv"),      # C1 control characters (NEL, CSI)
    ("x\u061cy.csv", "x_y.csv"),          # ARABIC LETTER MARK, a bidi control
    ("CON .csv", "_CON .csv"),           # older Windows still opens the device
    ("CONIN$.txt", "_CONIN$.txt"),
]


@pytest.mark.parametrize("name,expected", SAFE_NAMES)
def test_safe_name(name, expected):
    from mailguard.check.surgery import safe_name

    assert safe_name(name) == expected


def test_hostile_attachment_names_are_made_safe_in_the_zip(relay, upstream):
    import pyzipper

    # name as sent → name in the zip (hidden characters become "_", and the note shows them as U+…)
    hostile = {"../../../etc/passwd.csv": "passwd.csv", "..\\..\\Windows\\win.ini.csv": "win.ini.csv",
               "CON.csv": "_CON.csv", "ケア\x07プラン\x1b.csv": "ケア_プラン_.csv",
               "請求書\u202Evsc.exe.csv": "請求書_vsc.exe.csv"}
    parts = ["--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
             + "ケアプランをお送りします。\r\n"]
    for i, name in enumerate(hostile):
        table = f"氏名,個人番号,要介護度\r\n佐藤 花子{i},{VALID_MY_NUMBER},要介護3\r\n"
        parts.append(f"--b\r\nContent-Type: text/csv; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
                     f"Content-Disposition: attachment; filename*=UTF-8''{quote(name, safe='')}\r\n\r\n{table}")
    raw = (f"From: {STAFF}\r\nTo: {REGISTERED}\r\nSubject: ケアプラン\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + "".join(parts) + "--b--\r\n").encode()
    queue_id = send_raw(relay, [REGISTERED], raw)
    state = relay.wait_decided(queue_id)
    assert state in ("delayed", "awaiting_approval"), (state, relay.findings(queue_id))
    relay.store.act(queue_id, "release" if state == "delayed" else "approve", "test", "確認済み")
    [got] = upstream.wait_to(REGISTERED)
    [archive] = list(got.message.iter_attachments())                 # nothing left in the clear
    assert archive.get_content_type() == "application/zip" and VALID_MY_NUMBER.encode() not in got.content
    with pyzipper.AESZipFile(io.BytesIO(archive.get_payload(decode=True))) as zf:
        zf.setpassword(b"minato-agreed-key-2026")
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    assert sorted(members) == sorted(hostile.values())
    assert not [n for n in members if re.search(r"[/\\\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]", n)]
    assert all(VALID_MY_NUMBER.encode() in data for data in members.values())
    note = got.message.get_body(("plain",)).get_content()
    assert "次のファイル名を変えて" in note
    for sent, safe in list(hostile.items())[:3]:
        assert f"「{sent}」→「{safe}」" in note
    assert "「請求書<U+202E>vsc.exe.csv」→「請求書_vsc.exe.csv」" in note   # the trick is shown, not performed
