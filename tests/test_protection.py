"""Who gets what (``check.transform``): a table of recipients, policies and contents, checked directly.

Internal recipients and FAX numbers get the message as sent; external e-mail recipients get
a link, a zip or the original as [protection] and the partner's own choice say; what could not
be inspected never leaves in the clear. The cryptography round-trips (``vault``).
"""

from __future__ import annotations

import shutil
from email import message_from_bytes
from email.policy import default

import pytest

from conftest import HERE, INTERNAL, REGISTERED
from documents import XLSX, care_plan_xlsx, message
from mailguard import policy, vault
from mailguard.check import route
from mailguard.check.content.report import scan
from mailguard.check.link import LinkContext
from mailguard.check.pipeline import inspect
from mailguard.check.recipients import Facts
from mailguard.check.transform import transform
from mailguard.model import Action, Verdict

NO_KEY = "care@hikari-houkan.example.com"
STRANGER = "someone@unknown-partner.example.com"
FAX = "FAX=+81312345678@fax.sakura-kaigo.example.jp"
COLLEAGUE = f"colleague@{INTERNAL}"
CONTEXT = LinkContext("https://dl.example.jp", "Q1", "staff", "さくら介護", 7)
PLAN = care_plan_xlsx()
CARE_PLAN = message(attachments=[("ケアプラン.xlsx", PLAN, XLSX)])
BODY_ONLY = message(body="山本花子様（被保険者番号1400012345、要介護3）。既往歴に糖尿病があります。\n")
PLAIN = message(body="会議は15時からです。\n", attachments=[("日程.txt", "会議室A".encode(), "text/plain")])
IMAGE = message(attachments=[("scan.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "image/jpeg")])


def policy_with(tmp_path, decision: str = "", book: str = ""):
    directory = tmp_path / "policies"
    shutil.copytree(HERE / "policies", directory)
    if decision:
        (directory / "decision.toml").write_text((HERE / "policies" / "decision.toml").read_text() + decision)
    if book:
        (directory / "address_book.toml").write_text((HERE / "policies" / "address_book.toml").read_text() + book)
    return policy.load(directory)


def outcome(raw: bytes, rcpts: list[str], pol, links: bool = True):
    """(what each recipient gets: "original" / "link" / "zip", the Transformed)."""
    routes = route.routes(tuple(rcpts), pol)
    content = scan(raw)
    found = tuple(inspect(raw, routes, pol, Facts(), content, links_on=links))
    result = transform(raw, routes, Verdict(Action.DELIVER, None, found), pol, content, CONTEXT if links else None)
    copies = {r: c.content for c in (result.protected.copies if result.protected else ()) for r in c.recipients}
    kinds = {}
    for rcpt in rcpts:
        got = copies.get(rcpt, result.content if result.content is not None else raw)
        parsed = message_from_bytes(got, policy=default)
        names = [p.get_filename() for p in parsed.iter_attachments()]
        kinds[rcpt] = ("zip" if "添付ファイル（暗号化）.zip" in names else
                       "link" if "/d/" in parsed.get_body(("plain",)).get_content() else "original")
    return kinds, result


CASES = [
    # (message, recipients, extra decision.toml, extra address book, expected kinds)
    (CARE_PLAN, [COLLEAGUE, REGISTERED, FAX], "", "", {COLLEAGUE: "original", REGISTERED: "link", FAX: "original"}),
    (CARE_PLAN, [NO_KEY], "", "", {NO_KEY: "link"}),
    (CARE_PLAN, [REGISTERED], "\n[protection]\nsensitive = \"zip\"\n", "", {REGISTERED: "zip"}),
    (CARE_PLAN, [REGISTERED], "\n[protection]\nsensitive = \"none\"\n", "", {REGISTERED: "original"}),
    (CARE_PLAN, [NO_KEY, "x@partner-zip.example.jp"], "",
     '\n[[domain]]\ndomain = "partner-zip.example.jp"\norganisation = "zip 派"\nkey = "zip-agreed-key-1"\n'
     'protection = "zip"\n', {NO_KEY: "link", "x@partner-zip.example.jp": "zip"}),
    (BODY_ONLY, [REGISTERED], "", "", {REGISTERED: "link"}),
    (BODY_ONLY, [REGISTERED], "\n[protection]\nbody = false\n", "", {REGISTERED: "original"}),
    (PLAIN, [REGISTERED], "", "", {REGISTERED: "original"}),
    (IMAGE, [REGISTERED], "\n[protection]\nunscannable = \"link\"\n", "", {REGISTERED: "link"}),
    (IMAGE, [REGISTERED], "", "", {REGISTERED: "original"}),        # held for a manager instead (below)
]


@pytest.mark.parametrize("raw, rcpts, decision, book, expected", CASES)
def test_who_gets_what(tmp_path, raw, rcpts, decision, book, expected):
    kinds, _ = outcome(raw, rcpts, policy_with(tmp_path, decision, book))
    assert kinds == expected


def test_without_a_download_listener_a_link_becomes_a_zip(tmp_path):
    kinds, result = outcome(CARE_PLAN, [REGISTERED], policy_with(tmp_path), links=False)
    assert kinds == {REGISTERED: "zip"} and result.protected.grants == ()


@pytest.mark.parametrize("rcpts, finding", [([REGISTERED], "unscannable_linked"),
                                            ([STRANGER], "unscannable_content"),      # unregistered: held
                                            ([REGISTERED, FAX], "unscannable_content")])  # a FAX cannot link
def test_uninspected_attachments_go_by_link_only_to_registered_partners(tmp_path, rcpts, finding):
    pol = policy_with(tmp_path, "\n[protection]\nunscannable = \"link\"\n")
    routes = route.routes(tuple(rcpts), pol)
    codes = [f.code for f in inspect(IMAGE, routes, pol, Facts(), scan(IMAGE), links_on=True)]
    assert finding in codes and ({"unscannable_linked", "unscannable_content"} - {finding}).isdisjoint(codes)


def test_each_link_opens_with_its_own_passcode_and_nothing_else(tmp_path):
    _, result = outcome(CARE_PLAN, [REGISTERED, NO_KEY], policy_with(tmp_path))
    grants = {g.recipient: g for g in result.protected.grants}
    assert grants[REGISTERED].passcode == "agreed" and grants[NO_KEY].passcode == "generated"
    assert len(result.passcode) == 8 and result.passcode.isdigit()
    files = result.protected.files
    index = [f.name for f in files].index("ケアプラン.xlsx")
    for copy in result.protected.copies:
        [rcpt] = copy.recipients
        note = message_from_bytes(copy.content, policy=default).get_body(("plain",)).get_content()
        link_id, secret = note.split("/d/")[1].split()[0].split("/")
        assert vault.secret_matches(secret, grants[rcpt].secret_hash)
        passcode = "minato-agreed-key-2026" if rcpt == REGISTERED else result.passcode
        key = vault.unwrap(grants[rcpt].wrapped_key, link_id, secret, passcode)
        assert vault.unseal(key, files[index].blob, vault.file_aad("Q1", index)) == PLAN
        for wrong in ("", "0" * 8, passcode + "x"):
            with pytest.raises(vault.Unopenable):
                vault.unwrap(grants[rcpt].wrapped_key, link_id, secret, wrong)
        with pytest.raises(vault.Unopenable):   # a blob moved to another place does not open
            vault.unseal(key, files[index].blob, vault.file_aad("Q2", index))


def test_a_passcode_typed_in_full_width_digits_still_opens():
    data_key, (link_id, secret) = vault.new_key(), vault.new_link()
    wrapped = vault.wrap(data_key, link_id, secret, "12345678")
    assert vault.unwrap(wrapped, link_id, secret, "１２３４５６７８ ") == data_key
    assert len(link_id) >= 22 and len(secret) >= 43            # 128 and 256 bits, base64url


def test_the_subject_is_inspected_on_its_own():
    report = scan(message(body="資料です。\n").replace(b"Subject: =?utf-8?b?6YCB5LuY?=",
                                                       "Subject: 山本花子様 ケアプラン".encode()))
    codes = [f.code for f in report.findings()]
    assert codes == ["personal_data_in_subject"]


def _alternative(html: str) -> bytes:
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "staff@" + INTERNAL, REGISTERED, "送付"
    msg.set_content("資料を送ります。\n")
    msg.add_alternative(html, subtype="html")
    msg.add_attachment(PLAN, maintype="application", subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       filename="ケアプラン.xlsx")
    return msg.as_bytes(policy=SMTP)


@pytest.mark.parametrize("html, rewritten", [
    ("<html><body><p>資料を送ります。</p></body></html>", True),
    # Outlook's HTML names its own charset: left exactly as it is, the note goes beside it
    ("<html><head><meta http-equiv=Content-Type content='text/html; charset=utf-8'></head>"
     "<body><p>資料を送ります。</p></body></html>", False),
])
def test_whatever_part_a_mail_program_shows_carries_the_link(tmp_path, html, rewritten):
    raw = _alternative(html)
    _, result = outcome(raw, [REGISTERED], policy_with(tmp_path))
    [copy] = result.protected.copies
    parsed = message_from_bytes(copy.content, policy=default)
    html_part = parsed.get_body(("html",))
    assert ("/d/" in html_part.get_content()) is rewritten
    texts = [p.get_content() for p in parsed.walk() if p.get_content_type() == "text/plain"]
    assert any("/d/" in t for t in texts)
    if not rewritten:   # a note of its own beside the untouched alternative
        assert any("/d/" in t and "資料を送ります" not in t for t in texts)


@pytest.mark.parametrize("raw", [BODY_ONLY, _alternative("<p>山本花子様（被保険者番号1400012345、要介護3）糖尿病</p>")
                                 .replace("資料を送ります。".encode(), b"")])
def test_a_message_whose_body_all_moves_leaves_no_empty_part(tmp_path, raw):
    _, result = outcome(raw, [REGISTERED], policy_with(tmp_path))
    [copy] = result.protected.copies
    parsed = message_from_bytes(copy.content, policy=default)
    for part in parsed.walk():
        if part.is_multipart():
            assert part.get_payload(), "an empty multipart"
        else:
            assert part.get_payload(), f"an empty {part.get_content_type()} part"
    assert parsed.get_body(("plain",)).get_content().startswith("【mailguard より】")


@pytest.mark.parametrize("url, ok", [("https://dl.example.jp", True), ("http://127.0.0.1:8026", True),
                                     ("http://dl.example.jp", False), ("dl.example.jp", False), ("", True)])
def test_download_links_are_https_outside_a_try_out(url, ok):
    from mailguard.settings import SettingsError, load_settings

    if ok:
        assert load_settings(download_url=url).download_base == (url or None)
    else:
        with pytest.raises(SettingsError, match="MAILGUARD_DOWNLOAD_URL"):
            load_settings(download_url=url)
