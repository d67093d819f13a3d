"""The review console in a real headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import time

import pytest

from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, free_port, listening, send, send_raw, wait_for

from conftest import ARTIFACTS, assert_no_codes
OTHER_STAFF = f"hanako@{INTERNAL}"
PASSWORDS = {"boss": "manager-password-1", "taro": "staff-password-1", "hanako": "staff-password-2"}


@pytest.fixture
def console(make_relay):
    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}", MAILGUARD_HOLD_DELAY="600")
    for name, role, address in (("boss", "manager", f"boss@{INTERNAL}"), ("taro", "staff", STAFF),
                                ("hanako", "staff", OTHER_STAFF)):
        relay.add_user(name, role, address, PASSWORDS[name])
    relay.start()
    wait_for(lambda: listening(web), what="console listening")
    relay.web = f"http://127.0.0.1:{web}"
    return relay


def login(page, relay, user: str) -> None:
    page.goto(relay.web + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(relay.web + "/")


def test_manager_approves_a_held_message_and_it_arrives(console, upstream, page):
    queue_id = send(console, [UNREGISTERED], subject="退院前カンファレンスのご案内")
    assert console.wait_decided(queue_id) == "awaiting_approval"
    login(page, console, "boss")
    page.click("text=退院前カンファレンスのご案内")
    assert "管理者の確認待ちです" in page.inner_text("p.state")
    assert "アドレス帳に登録されていない" in page.inner_text("section.findings")
    assert_no_codes(page.inner_text("main"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "approval-page.png"), full_page=True)
    page.fill("form[action$='/approve'] input[name=comment]", "電話で宛先を確認しました")
    page.click("button.approve")
    assert "承認しました" in page.inner_text("p.done")
    assert "承認 (boss): 「電話で宛先を確認しました」" in page.inner_text("section.history")   # who and why
    assert "送信を取り消す" not in page.inner_text("main")                               # on its way now
    upstream.wait_to(UNREGISTERED, timeout=5)
    log = console.cli("log", "--queue-id", queue_id).stdout
    assert "承認 (approved) by web:boss" in log and "電話で宛先を確認しました" in log
    wait_for(lambda: any("承認されました" in str(m.message["Subject"]) and "電話で宛先を確認しました"
                         in m.message.get_body(("plain",)).get_content() for m in upstream.to(STAFF)),
             what="the sender told of the approval")


def test_a_manager_opening_admin_gets_a_japanese_page(console, page):
    login(page, console, "boss")
    response = page.goto(console.web + "/admin")
    assert response.status == 403 and "権限がありません" in page.inner_text("main")
    assert "detail" not in page.content()


def test_manager_must_give_a_reason_to_reject(console, upstream, page):
    queue_id = send(console, [UNREGISTERED], subject="要確認")
    console.wait_decided(queue_id)
    login(page, console, "boss")
    page.goto(f"{console.web}/messages/{queue_id}")
    page.fill("form[action$='/reject'] input[name=comment]", "宛先が違います")
    page.click("button.reject")
    assert "却下しました" in page.inner_text("p.done")
    notice = wait_for(lambda: next((m for m in upstream.to(STAFF) if "宛先が違います" in
                                    m.message.get_body(("plain",)).get_content()), None), what="rejection notice")
    assert notice.mail_from == "<>"


def test_staff_cancels_their_own_message_and_cannot_touch_anothers(console, upstream, page):
    mine = send(console, [REGISTERED], subject="自分のメール")
    theirs = send(console, [REGISTERED], sender=OTHER_STAFF, subject="同僚のメール")
    console.wait_decided(mine), console.wait_decided(theirs)
    login(page, console, "taro")
    listing = page.inner_text("ul.messages")
    assert "自分のメール" in listing and "同僚のメール" not in listing
    assert "あと約" in listing                                   # remaining delay shown
    page.click("text=自分のメール")
    page.click("button.cancel")
    assert "送信を取り消しました" in page.inner_text("p.done")
    assert console.state(mine) == "cancelled"
    # Another's message: not visible, not actionable, as if it did not exist.
    assert page.goto(f"{console.web}/messages/{theirs}").status == 404
    page.goto(console.web + "/")
    token = page.input_value("form[action='/logout'] input[name=csrf_token]")
    response = page.request.post(f"{console.web}/messages/{theirs}/cancel", form={"csrf_token": token})
    assert response.status == 404
    assert console.state(theirs) == "delayed"
    time.sleep(0.5)
    assert upstream.to(REGISTERED) == []          # only the held notices went out, to the senders


def test_message_content_is_shown_inert(console, upstream, page):
    raw = (
        "From: staff@sakura-kaigo.example.jp\r\n"
        f"To: {UNREGISTERED}\r\n"
        "Subject: <script>alert('subject')</script>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>本文</p><img src=x onerror=alert('body')><script>alert('script')</script>"
        "<a href=\"javascript:alert('link')\">click</a>\r\n"
        "--b\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename=\"\\\"><svg onload=alert('file')>.pdf\"\r\n\r\n"
        "%PDF-1.4 broken\r\n--b--\r\n"
    ).encode()
    queue_id = send_raw(console, [UNREGISTERED], raw)
    console.wait_decided(queue_id)
    login(page, console, "boss")
    page.goto(f"{console.web}/messages/{queue_id}")
    page.wait_for_timeout(500)
    assert page.dialogs == []                                     # nothing ran
    assert "<script>alert('subject')</script>" in page.inner_text("h1.subject")
    assert page.locator("img").count() == 0 and page.locator("svg").count() == 0
    assert page.locator("main a[href^='javascript']").count() == 0
    assert "本文" in page.inner_text("section.body pre")
    assert "onload=alert('file')" in page.inner_text("section.attachments")
    headers = page.request.get(f"{console.web}/messages/{queue_id}").headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_a_post_without_the_csrf_token_is_refused(console, upstream, page):
    queue_id = send(console, [UNREGISTERED])
    console.wait_decided(queue_id)
    login(page, console, "boss")
    response = page.request.post(f"{console.web}/messages/{queue_id}/approve", form={"comment": "x"})
    assert response.status == 403
    wrong = page.request.post(f"{console.web}/messages/{queue_id}/approve",
                              form={"comment": "x", "csrf_token": "forged"})
    assert wrong.status == 403
    assert console.state(queue_id) == "awaiting_approval"


def test_repeated_wrong_passwords_lock_the_login(console, page):
    page.goto(console.web + "/login")
    for _ in range(5):
        page.fill("input[name=username]", "boss")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", PASSWORDS["boss"])   # even the right one, for now
    page.click("button[type=submit]")
    assert "しばらくログインできません" in page.inner_text("p.error")
    assert "wrong password" not in console.log()


@pytest.fixture
def admin_console(console):
    console.add_user("kanri", "admin", f"kanri@{INTERNAL}", "admin-password-1")
    PASSWORDS["kanri"] = "admin-password-1"
    return console


def test_admin_adds_a_fax_number_through_the_form_and_the_policy_file_changes(admin_console, upstream, page):
    relay = admin_console
    book = relay.policies / "address_book.toml"
    before = book.read_text(encoding="utf-8")
    login(page, relay, "kanri")
    page.goto(relay.web + "/admin")
    page.fill("#add-fax input[name=number]", "０６－６１２３－４５６７")      # as staff type it
    page.fill("#add-fax input[name=organisation]", "北地域包括支援センター")
    page.click("#add-fax button[type=submit]")
    assert "FAXを登録しました" in page.inner_text("p.done")
    assert "06-6123-4567 — 北地域包括支援センター" in page.inner_text("#fax-entries")
    after = book.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n")[:200]) and 'organisation = "北地域包括支援センター"' in after
    assert "(policy_changed) by web:kanri" in relay.cli("log").stdout
    # In force at once: a FAX to the new number is a registered one (only the hold applies).
    queue_id = send(relay, ["0661234567@fax.sakura-kaigo.example.jp"])
    assert relay.wait_decided(queue_id) == "delayed"


def test_admin_form_errors_name_the_problem_and_change_nothing(admin_console, page):
    relay = admin_console
    book = relay.policies / "address_book.toml"
    before = book.read_text(encoding="utf-8")
    login(page, relay, "kanri")
    page.goto(relay.web + "/admin")
    page.fill("#add-fax input[name=number]", "12")
    page.fill("#add-fax input[name=organisation]", "どこか")
    page.click("#add-fax button[type=submit]")
    assert "number" in page.inner_text("pre.error") and "address_book.toml" in page.inner_text("pre.error")
    assert book.read_text(encoding="utf-8") == before


def test_staff_cannot_reach_the_admin_pages(console, page):
    login(page, console, "taro")
    assert page.goto(console.web + "/admin").status == 403


def test_a_crafted_link_cannot_put_text_on_the_admin_page(admin_console, page):
    login(page, admin_console, "kanri")
    page.goto(admin_console.web + "/admin?done=お知らせ:+パスワードを再入力してください&error=x")
    assert page.locator("p.done").count() == 0 and page.locator("pre.error").count() == 0


def test_outlook_csv_in_cp932_is_imported_and_exported(admin_console, page, tmp_path):
    relay = admin_console
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_bytes("姓,名,電子メール アドレス,会社\r\n鈴木,次郎,suzuki@kita-houkatsu.example.jp,北地域包括支援センター\r\n"
                         .encode("cp932"))
    login(page, relay, "kanri")
    page.goto(relay.web + "/admin")
    page.set_input_files("input[type=file]", str(csv_file))
    page.click("form[action='/admin/address-book/import'] button[type=submit]")
    assert "追加 1 件、更新 0 件、変更なし 0 件" in page.inner_text("p.done")
    assert "suzuki@kita-houkatsu.example.jp — 北地域包括支援センター (鈴木 次郎)" in page.inner_text("#email-entries")
    again = tmp_path / "again.csv"   # the same contact, renamed office and another case; and a new one
    again.write_bytes("姓,名,電子メール アドレス,会社\r\n鈴木,次郎,Suzuki@Kita-Houkatsu.example.jp,北部地域包括支援センター\r\n"
                      "佐々木,ハル,sasaki@minami-clinic.example.jp,南クリニック\r\n".encode("cp932"))
    page.set_input_files("input[type=file]", str(again))
    page.click("form[action='/admin/address-book/import'] button[type=submit]")
    assert "追加 1 件、更新 1 件、変更なし 0 件" in page.inner_text("p.done")
    assert page.inner_text("#email-entries").count("suzuki@kita-houkatsu.example.jp") == 1
    assert "北部地域包括支援センター" in page.inner_text("#email-entries")
    exported = page.request.get(relay.web + "/admin/address-book.csv?encoding=cp932").body().decode("cp932")
    assert "鈴木 次郎,suzuki@kita-houkatsu.example.jp,北部地域包括支援センター" in exported


def _held_notice(upstream, subject: str):
    def held(m) -> bool:
        title = str(m.message["Subject"])
        return subject in title and ("送信保留" in title or "承認待ち" in title)

    return wait_for(lambda: next((m for m in upstream.to(STAFF) if held(m)), None), what="held notice")


def test_the_held_notice_link_cancels_without_login_once(console, upstream, page):
    queue_id = send(console, [REGISTERED], subject="利用者の状況報告")
    assert console.wait_decided(queue_id) == "delayed"
    notice = _held_notice(upstream, "利用者の状況報告")
    text = notice.message.get_body(("plain",)).get_content()
    assert REGISTERED in text and "送信されます" in text and "社外の宛先です" in text
    link = next(line.strip() for line in text.splitlines() if "/t/" in line)
    assert link.startswith(console.web + "/t/") and f"{console.web}/messages/{queue_id}" in text
    page.goto(link)                                              # not logged in
    assert "利用者の状況報告" in page.inner_text("dd.subject")
    assert console.state(queue_id) == "delayed"                  # opening the link changed nothing
    page.click("button.cancel")
    assert "送信を取り消しました" in page.inner_text("p.done")
    assert console.state(queue_id) == "cancelled"
    assert "(cancelled) by link:" in console.cli("log", "--queue-id", queue_id).stdout
    page.goto(link)
    token = page.input_value("input[name=csrf_token]") if page.locator("input[name=csrf_token]").count() else ""
    again = page.request.post(link, form={"csrf_token": token or "x"})
    assert again.status in (403, 410)
    assert page.goto(link[:-3] + "xyz").status == 404             # a tampered token


def test_the_link_cannot_send_anything(console, upstream, page):
    queue_id = send(console, [UNREGISTERED], subject="承認待ちのメール")
    console.wait_decided(queue_id)
    notice = _held_notice(upstream, "承認待ちのメール")
    link = next(line.strip() for line in notice.message.get_body(("plain",)).get_content().splitlines()
                if "/t/" in line)
    page.goto(link)
    assert page.locator("button.approve").count() == 0 and page.locator("form[action$='release']").count() == 0
    assert page.goto(f"{console.web}/messages/{queue_id}").url.endswith("/login")   # send now needs a login


def test_the_json_api_approves_with_csrf_and_is_described_by_openapi(console, upstream, page):
    queue_id = send(console, [UNREGISTERED], subject="API で承認")
    console.wait_decided(queue_id)
    login(page, console, "boss")
    spec = page.request.get(console.web + "/api/openapi.json").json()
    assert "/api/v1/messages/{queue_id}/{action}" in spec["paths"] and "/login" not in spec["paths"]
    session = page.request.get(console.web + "/api/v1/session").json()
    assert session["role"] == "manager"
    held = page.request.get(console.web + "/api/v1/messages?reason=unregistered_recipient").json()
    assert [m["queue_id"] for m in held] == [queue_id]
    assert held[0]["findings"][0]["code"] == "unregistered_recipient"
    refused = page.request.post(f"{console.web}/api/v1/messages/{queue_id}/approve", data={"comment": "ok"})
    assert refused.status == 403
    done = page.request.post(f"{console.web}/api/v1/messages/{queue_id}/approve", data={"comment": "確認済み"},
                             headers={"X-CSRF-Token": session["csrf_token"]})
    assert done.status == 200 and done.json()["state"] == "ready"
    upstream.wait_to(UNREGISTERED, timeout=5)


def test_the_json_api_keeps_staff_to_their_own(console, page):
    theirs = send(console, [REGISTERED], sender=OTHER_STAFF, subject="他人のメール")
    console.wait_decided(theirs)
    login(page, console, "taro")
    assert page.request.get(console.web + "/api/v1/messages").json() == []
    assert page.request.get(f"{console.web}/api/v1/messages/{theirs}").status == 404
    token = page.request.get(console.web + "/api/v1/session").json()["csrf_token"]
    assert page.request.post(f"{console.web}/api/v1/messages/{theirs}/approve", data={"comment": "x"},
                             headers={"X-CSRF-Token": token}).status == 404


def test_admin_edits_an_entry_sets_an_agreed_key_and_manages_users(admin_console, page):
    relay = admin_console
    login(page, relay, "kanri")
    page.goto(relay.web + "/admin")
    entry = page.locator("#email-entries li", has_text=REGISTERED)
    entry.locator("summary").click()
    entry.locator("input[name=note]").fill("退院調整の窓口")
    entry.locator("input[name=key]").fill("new-agreed-key-2027")
    entry.locator("button", has_text="変更を保存").click()
    assert "変更しました" in page.inner_text("p.done")
    book = (relay.policies / "address_book.toml").read_text(encoding="utf-8")
    assert 'note = "退院調整の窓口"' in book and 'key = "new-agreed-key-2027"' in book
    assert "new-agreed-key-2027" not in page.content() + relay.cli("log").stdout   # write-only, never logged
    page.fill("#add-user input[name=username]", "jimu")
    page.fill("#add-user input[name=addresses]", f"jimu@{INTERNAL}")
    page.fill("#add-user input[name=password]", "jimu-password-1")
    page.click("#add-user button[type=submit]")
    assert "利用者 jimu を追加しました" in page.inner_text("p.done")
    page.locator("#users li", has_text="jimu").locator("button").click()
    assert "jimu を無効にしました" in page.inner_text("p.done")
    assert "jimu" in relay.cli("user", "list").stdout and "無効" in relay.cli("user", "list").stdout
    assert "fax_number_mistyped" in page.inner_text("#policy")
