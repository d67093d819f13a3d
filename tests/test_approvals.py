"""Held mail reaches the right person: the group's approvers are told and decide from a phone,
the next level is told when nobody decides, timeouts end the wait, chats hear of it, and the
sender checks medium risks themselves. Real SMTP, real HTTP, Debian's Chromium."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ARTIFACTS, INTERNAL, assert_no_codes, STAFF, UNREGISTERED, free_port, listening, send, wait_for
from mailguard import policy as policy_mod
from mailguard.model import Action, Envelope, Finding, Origin, QueuedMessage, Severity, State, Verdict
from mailguard.qmgr import approvers
from mailguard.users import User

PASSWORD = "approver-password-1"
GROUPS = """
[approval]
escalate_after = {escalate}
approval_timeout = {timeout}
remind_every = 0
confirm_timeout = {confirm}
two_approvers = ["lookalike_domain"]

[[group]]
name = "本館"
members = ["taro", "{staff}"]
approvers = ["boss"]
stand_ins = ["deputy"]
escalate_to = ["director"]

[[group]]
name = "別館"
members = ["hanako"]
approvers = ["annex"]
"""
PEOPLE = {"boss": "manager", "deputy": "manager", "director": "manager", "annex": "manager", "taro": "staff"}


def address(name: str) -> str:
    return STAFF if name == "taro" else f"{name}@{INTERNAL}"


@pytest.fixture
def office(make_relay, request):
    """A relay with a console, two facility groups and their managers."""
    escalate, timeout, confirm = getattr(request, "param", (3600, 86400, 86400))
    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
    with open(relay.policies / "organisation.toml", "a", encoding="utf-8") as fh:
        fh.write(GROUPS.format(escalate=escalate, timeout=timeout, confirm=confirm, staff=STAFF))
    for name, role in PEOPLE.items():
        relay.add_user(name, role, address(name), PASSWORD)
    relay.start()
    wait_for(lambda: listening(web), what="console listening")
    relay.web = f"http://127.0.0.1:{web}"
    return relay


def notices_to(upstream, name: str, subject: str) -> list:
    return [m for m in upstream.to(address(name)) if subject in str(m.message["Subject"])]


def login(page, relay, user: str) -> None:
    page.goto(relay.web + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(relay.web + "/")


def test_the_groups_approver_is_told_and_approves_from_a_phone(office, upstream, page):
    queue_id = send(office, [UNREGISTERED], subject="退院前カンファレンスのご案内")
    assert office.wait_decided(queue_id) == "awaiting_approval"
    [notice] = wait_for(lambda: notices_to(upstream, "boss", "承認依頼"), timeout=2, what="the approver's notice")
    wait_for(lambda: notices_to(upstream, "deputy", "承認依頼"), timeout=2, what="the stand-in's notice")
    assert not notices_to(upstream, "annex", "承認依頼") and not notices_to(upstream, "director", "承認依頼")
    text = notice.message.get_body(("plain",)).get_content()
    assert "アドレス帳に無い宛先" in text and UNREGISTERED in text and STAFF in text
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text)           # reasons in words, no codes
    link = re.search(r"(http://127\.0\.0\.1:\d+/messages/\S+)", text).group(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_content(f"<meta charset='utf-8'><pre style='font-size:14px;white-space:pre-wrap'>"
                     f"Subject: {notice.message['Subject']}\n\n{text}</pre>")
    page.screenshot(path=str(ARTIFACTS / "approver-notice.png"), full_page=True)

    login(page, office, "boss")
    page.goto(link)
    assert "管理者の確認待ちです" in page.inner_text("p.state")
    assert_no_codes(page.inner_text("main"))
    page.screenshot(path=str(ARTIFACTS / "approval-on-a-phone.png"), full_page=True)
    page.fill("form[action$='/approve'] input[name=comment]", "電話で宛先を確認しました")
    page.click("button.approve")
    assert "承認 (boss): 「電話で宛先を確認しました」" in page.inner_text("section.history")
    upstream.wait_to(UNREGISTERED)
    wait_for(lambda: [m for m in upstream.to(STAFF) if "承認されました" in str(m.message["Subject"])],
             what="the sender told")


def test_another_facilitys_manager_neither_sees_nor_decides(office, page):
    queue_id = send(office, [UNREGISTERED], subject="本館のメール")
    office.wait_decided(queue_id)
    login(page, office, "annex")
    assert "本館のメール" not in page.inner_text("main")
    assert page.goto(f"{office.web}/messages/{queue_id}").status == 404


@pytest.mark.parametrize("office", [(1, 4, 86400)], indirect=True)
def test_nobody_deciding_tells_the_next_level_then_rejects(office, upstream):
    queue_id = send(office, [UNREGISTERED], subject="誰も見ていない")
    office.wait_decided(queue_id)
    wait_for(lambda: notices_to(upstream, "director", "承認依頼 (上位)"), timeout=10, what="escalation")
    wait_for(lambda: office.state(queue_id) == "rejected", timeout=10, what="the approval timeout")
    events = [e.event for e in office.events(queue_id)]
    assert events.index("escalated") < events.index("rejected")
    [entry] = [e for e in office.events(queue_id) if e.event == "rejected"]
    assert entry.actor == "system:timeout"
    wait_for(lambda: any("承認の期限" in m.message.as_string() or "承認の期限" in _text(m) for m in upstream.to(STAFF)),
             what="the sender's DSN")


def _text(received) -> str:
    return "\n".join(p.get_content() for p in received.message.walk()
                     if p.get_content_type() == "text/plain")


@pytest.mark.parametrize("office", [(3600, 86400, 2)], indirect=True)
def test_the_sender_confirms_a_medium_risk_and_an_unconfirmed_one_is_cancelled(office, upstream, page):
    confirmed = send(office, ["renkei@minato-hospital.example.jp"], subject="山本花子様 ケアプランの件",
                     body="よろしくお願いします。\n")
    assert office.wait_decided(confirmed) == "awaiting_confirmation"
    assert "personal_data_in_subject" in office.findings(confirmed)
    notice = wait_for(lambda: [m for m in upstream.to(STAFF) if "確認してください" in str(m.message["Subject"])],
                      what="the held notice")[0]
    link = re.search(r"(http://127\.0\.0\.1:\d+/c/\S+)", _text(notice)).group(1)
    page.goto(link)                                            # a GET: shows, confirms nothing
    assert office.state(confirmed) == "awaiting_confirmation"
    assert "件名に個人情報" in page.inner_text("main")
    assert_no_codes(page.inner_text("main"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "self-check.png"), full_page=True)
    page.click("button.approve")
    assert "まもなく送信されます" in page.inner_text("p.done")
    upstream.wait_to("renkei@minato-hospital.example.jp")
    [entry] = [e for e in office.events(confirmed) if e.event == "confirmed"]
    assert entry.actor == f"link:{STAFF}"

    forgotten = send(office, ["renkei@minato-hospital.example.jp"], subject="佐藤一郎様 の件")
    assert office.wait_decided(forgotten) == "awaiting_confirmation"
    wait_for(lambda: office.state(forgotten) == "cancelled", timeout=10, what="the confirm timeout")
    wait_for(lambda: [m for m in upstream.to(STAFF) if "取り消しました" in str(m.message["Subject"])],
             what="the sender told of the cancellation")


class Receiver(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):   # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Receiver.got
    server.shutdown()


def test_a_teams_and_a_generic_webhook_hear_of_held_mail(make_relay, upstream, receiver):
    base, got = receiver
    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
    (relay.policies / "notify.toml").write_text(
        f'[[webhook]]\nurl = "{base}/teams"\nformat = "teams"\n\n[[webhook]]\nurl = "{base}/generic"\n', "utf-8")
    relay.start()
    queue_id = send(relay, [UNREGISTERED], subject="山田太郎様の件")
    relay.wait_decided(queue_id)
    wait_for(lambda: len(got) == 2, what="both webhooks")
    bodies = dict(got)
    assert bodies["/teams"]["@type"] == "MessageCard" and "承認待ち" in bodies["/teams"]["title"]
    assert bodies["/teams"]["potentialAction"][0]["targets"][0]["uri"].endswith(f"/messages/{queue_id}")
    assert bodies["/generic"]["queue_id"] == queue_id and "アドレス帳に無い宛先" in bodies["/generic"]["reasons"]
    assert "山田" not in json.dumps(got, ensure_ascii=False)     # no subject leaves for a chat service
    assert UNREGISTERED not in json.dumps(got)                  # domains only


# -- who decides: a table over the pure rules ------------------------------------------------

def _message(auth_user=None, sender=STAFF, codes=("unregistered_recipient",), origin=Origin.SMTP) -> QueuedMessage:
    return QueuedMessage(
        queue_id="Q", state=State.AWAITING_APPROVAL, origin=origin, envelope=Envelope(sender, ("x@example.com",)),
        recipients=(), auth_user=auth_user, client_addr="127.0.0.1", message_id="<m@x>", subject="", size=1,
        received_at=0.0, release_at=None, next_attempt_at=None, expires_at=1e12, attempts=0,
        findings=tuple(Finding(c, Severity.HIGH, "x", "x") for c in codes))


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    from conftest import HERE
    import shutil

    directory = tmp_path_factory.mktemp("policies")
    shutil.copytree(HERE / "policies", directory, dirs_exist_ok=True)
    with open(directory / "organisation.toml", "a", encoding="utf-8") as fh:
        fh.write(GROUPS.format(escalate=1800, timeout=86400, confirm=86400, staff=STAFF))
    return policy_mod.load(directory)


@pytest.mark.parametrize("user, role, message, decides", [
    ("boss", "manager", _message(auth_user="taro"), True),            # the group's approver
    ("deputy", "manager", _message(sender=STAFF), True),              # its stand-in, by the sender's address
    ("director", "manager", _message(auth_user="taro"), True),        # the next level
    ("annex", "manager", _message(auth_user="taro"), False),          # another facility's manager
    ("annex", "manager", _message(sender=f"nobody@{INTERNAL}"), True),  # no group: every manager
    ("root", "admin", _message(auth_user="taro"), True),
    ("annex", "manager", _message(sender="", origin=Origin.NOTICE), False),   # a notice's one-time links
    ("boss", "manager", _message(sender="", origin=Origin.DSN), False),
    ("taro", "staff", _message(auth_user="taro"), False),
])
def test_who_decides(grouped, user, role, message, decides):
    assert approvers.may_decide(grouped, User(user, role, ()), message) is decides


def test_the_highest_risks_need_two_different_approvers(office, upstream):
    queue_id = send(office, ["renkei@minato-hospitel.example.jp"], subject="似たドメイン")
    assert office.wait_decided(queue_id) == "awaiting_approval"
    assert "lookalike_domain" in office.findings(queue_id)
    rules = {"approvals_required": 2}
    office.act(queue_id, "approve", "確認", user=User("boss", "manager", (address("boss"),)), **rules)
    office.act(queue_id, "approve", "確認", user=User("boss", "manager", (address("boss"),)), **rules)
    assert office.state(queue_id) == "awaiting_approval"          # the same person twice is one approval
    office.act(queue_id, "approve", "私も確認", user=User("director", "manager", (address("director"),)), **rules)
    upstream.wait_to("renkei@minato-hospitel.example.jp")


def test_a_stand_in_approves_while_the_manager_is_away(office, upstream, page):
    queue_id = send(office, [UNREGISTERED], subject="代理で承認")
    office.wait_decided(queue_id)
    login(page, office, "deputy")
    page.goto(f"{office.web}/messages/{queue_id}")
    page.fill("form[action$='/approve'] input[name=comment]", "不在の管理者に代わって確認")
    page.click("button.approve")
    assert "承認 (deputy)" in page.inner_text("section.history")
    upstream.wait_to(UNREGISTERED)


def test_a_two_approver_code_always_waits_for_an_approval(tmp_path):
    from conftest import HERE
    import shutil

    from mailguard.check.decide import decide

    shutil.copytree(HERE / "policies", tmp_path, dirs_exist_ok=True)
    with open(tmp_path / "organisation.toml", "a", encoding="utf-8") as fh:
        fh.write('[approval]\ntwo_approvers = ["personal_data_in_subject"]\n')
    policy = policy_mod.load(tmp_path)
    finding = Finding("personal_data_in_subject", Severity.HIGH, "件名", "x")
    assert decide((finding,), policy, received_at=0.0, hold_delay=300).action is Action.APPROVAL


def test_a_timeout_never_undoes_a_decision_made_an_instant_before(tmp_path):
    from mailguard.model import Submission
    from mailguard.store import Store, TransitionError

    store = Store(tmp_path / "q.sqlite3")
    queue_id = store.accept(Submission("Q1", Envelope(STAFF, ("x@example.com",)), b"Subject: x\r\n\r\nx\r\n",
                                       None, "127.0.0.1", "h", "<m@x>", "x"), lifetime=3600)
    store.apply_verdict(queue_id, Verdict(Action.CONFIRM, None, ()), State.AWAITING_CONFIRMATION)
    store.act(queue_id, "confirm", "link:" + STAFF)                       # the sender, just in time
    with pytest.raises(TransitionError):
        store.act(queue_id, "confirm_timeout", "system:timeout")           # the sweep, an instant later
    assert store.get(queue_id).state is State.READY


@pytest.mark.parametrize("actor, shown", [
    ("web:boss", "boss"), ("cli:root", "root (管理コマンド)"), ("cli", "管理者 (管理コマンド)"),
    ("system:timeout", "自動処理"), ("link:staff@sakura-kaigo.example.jp", "staff@sakura-kaigo.example.jp"),
])
def test_the_sender_is_told_who_approved_without_internal_prefixes(actor, shown):
    from mailguard.notices.compose import actor_name

    assert actor_name(actor) == shown
