"""The provision ledger (第三者提供記録, 個人情報保護法 第29条): one row per delivery of personal data
to a third party, with the organisation, 本人, the items, 要配慮 and the legal basis."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import INTERNAL, REGISTERED, send, send_raw, sqlite_only, wait_for
from documents import XLSX, care_plan_xlsx, message, referral_pdf

ENTRUSTED = "care@hikari-houkan.example.com"


def ledger_relay(make_relay):
    relay = make_relay()
    (relay.policies / "roster.csv").write_text("氏名,被保険者番号\n佐藤 花子,0123456789\n鈴木 一郎,\n", "utf-8")
    book = relay.policies / "address_book.toml"
    book.write_text(book.read_text("utf-8").replace(
        'organisation = "ひかり訪問看護ステーション"', 'organisation = "ひかり訪問看護ステーション"\nbasis = "entrustment"'),
        "utf-8")
    return relay.start()


def delivered(relay, queue_id):
    assert relay.wait_decided(queue_id) == "delayed"
    relay.act(queue_id, "release", actor="test:staff")
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered")


def test_each_provision_of_personal_data_is_one_ledger_row(make_relay, upstream):
    relay = ledger_relay(make_relay)
    plan = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    referral = send_raw(relay, [ENTRUSTED], message(attachments=[("紹介状.pdf", referral_pdf(), "application/pdf")]))
    internal = send_raw(relay, [f"colleague@{INTERNAL}"],
                        message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    plain = send(relay, [REGISTERED], subject="会議の日程", body="会議は15時からです。\n")
    for queue_id in (plan, referral, plain):
        delivered(relay, queue_id)
    wait_for(lambda: relay.state(internal) == "delivered", what="internal delivered")

    rows = {r["queue_id"]: r for r in relay.store.ledger()}
    assert set(rows) == {plan, referral}                      # internal and no-personal-data: no row
    first = rows[plan]
    assert first["organisation"] == "みなと総合病院 地域医療連携室" and first["recipient"] == REGISTERED
    assert {"value": "佐藤花子", "kind": "roster"} in first["persons"]
    assert "要介護度" in first["items"] and first["level"] == "sensitive" and first["record_required"]
    assert first["protection"] == "zip" and first["log_seq"]
    assert any(e.event == "delivery" for e in relay.events(plan))
    second = rows[referral]
    assert second["basis"] == "entrustment" and not second["record_required"]   # 委託: kept, marked
    assert any(p["value"] == "鈴木一郎" for p in second["persons"])

    out = relay.cli("ledger", "export").stdout
    assert out.startswith("\ufeff提供日時,")                  # a BOM: Excel opens it as UTF-8
    table = list(csv.reader(io.StringIO(out.lstrip("\ufeff"))))
    assert len(table) == 3 and "不要 (第27条第1項・第5項)" in table[2] and "委託" in table[2]
    mine = [json.loads(line) for line in relay.cli("ledger", "export", "--person", "佐藤 花子", "--format",
                                                   "json").stdout.splitlines()]
    assert [r["queue_id"] for r in mine] == [plan]             # a disclosure request: that person only
    for entry in relay.events():                               # 本人 never in the operational log
        assert "佐藤花子" not in json.dumps(entry.__dict__, ensure_ascii=False)


def test_the_ledger_is_for_admins_only_in_the_console(make_relay, upstream):
    from conftest import free_port, listening
    from test_console_security import Client

    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
    relay.add_user("kanri", "admin", f"kanri@{INTERNAL}", "admin-password-1")
    relay.add_user("boss", "manager", f"boss@{INTERNAL}", "manager-password-1")
    relay.start()
    wait_for(lambda: listening(web), what="console")
    queue_id = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    delivered(relay, queue_id)
    boss = Client(f"http://127.0.0.1:{web}")
    boss.login("boss", "manager-password-1")
    assert boss.get("/admin/ledger.csv").status == 403
    admin = Client(f"http://127.0.0.1:{web}")
    admin.login("kanri", "admin-password-1")
    got = admin.get("/admin/ledger.csv")
    assert got.status == 200 and queue_id in got.body.decode("utf-8-sig")
    token = admin.login("kanri", "admin-password-1")
    mine = admin.post("/admin/ledger", form={"person": "佐藤 花子", "csrf_token": token})
    assert mine.status == 200 and queue_id in mine.text and "佐藤花子" in mine.text
    assert admin.post("/admin/ledger", form={"person": "誰か", "csrf_token": token}).text.count(queue_id) == 0
    assert boss.post("/admin/ledger", form={"person": "x", "csrf_token": boss.login("boss", "manager-password-1")}
                     ).status == 403


def test_content_goes_after_its_retention_and_the_records_stay(make_relay, upstream):
    relay = make_relay(MAILGUARD_CONTENT_RETENTION="1", MAILGUARD_LINK_LIFETIME="1").start()
    queue_id = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    delivered(relay, queue_id)
    wait_for(lambda: relay.store.get(queue_id, content=True).content == b"", timeout=15, what="the purge")
    assert [r["queue_id"] for r in relay.store.ledger()] == [queue_id]          # the ledger stays
    events = [e.event for e in relay.events(queue_id)]
    assert events[-1] == "content_purged" and "delivery" in events
    assert relay.store.verify_log()[1] is None                                   # the chain still verifies
    assert "0 通" in relay.cli("purge", "--dry-run").stdout


def test_the_leak_report_draft_for_a_misdelivered_sensitive_message(make_relay, upstream):
    from test_links import with_links

    relay = with_links(make_relay)
    queue_id = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    delivered(relay, queue_id)
    out = relay.cli("incident", "report", queue_id, "--discovered", "2026-11-22T10:00").stdout
    assert "要介護度" in out and "本人の数: 1 人" in out
    assert "1 人でも個人情報保護委員会への報告" in out                       # 要配慮: report required
    assert "リンクは一度も開かれていません" in out                          # a link never opened
    assert "速報 2026-11-27 ごろまで" in out and "確報 2026-12-22 まで" in out
    assert "原因: 【要記入】" in out
    assert "incident_recorded" in [e.event for e in relay.events(queue_id)]
    report = json.loads(relay.cli("incident", "report", queue_id, "--format", "json").stdout)
    assert report["report_required"] and report["links"][0]["status"] == "未開封"


def _verify(relay, data_dir, *extra):
    import subprocess
    import sys

    env = {**relay.env, "MAILGUARD_DATA_DIR": str(data_dir)}
    public = (data_dir / "checkpoint.pub").read_text().strip()
    return subprocess.run([sys.executable, "-m", "mailguard", "log", "--verify", "--public-key", public, *extra],
                          env=env, capture_output=True, text=True, timeout=60)


def _tamper(path, sql_steps):
    import sqlite3

    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    for step in sql_steps:
        step(conn)
    conn.commit()
    conn.close()


def _recompute_chain(conn):
    from mailguard.store import sendlog

    prev = sendlog.GENESIS
    for row in conn.execute("SELECT * FROM send_log ORDER BY seq").fetchall():
        entry = sendlog._entry_from_row(row)
        digest = sendlog.entry_hash(entry, prev)
        conn.execute("UPDATE send_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row["seq"]))
        prev = digest


def test_signed_checkpoints_catch_an_edit_a_recomputed_chain_and_a_truncation(make_relay, upstream, tmp_path):
    import shutil

    relay = make_relay().start()
    sqlite_only(relay, "the tampering edits the database file")
    for n in range(3):
        send(relay, [f"colleague{n}@{INTERNAL}"])
    wait_for(lambda: len([e for e in relay.events() if e.event == "delivery"]) == 3, what="deliveries")
    relay.stop()                                               # a checkpoint at stop
    data = tmp_path / "var"
    journal = data / "checkpoints.jsonl"
    assert journal.exists() and oct(journal.stat().st_mode & 0o777) == "0o600"
    ok = _verify(relay, data, "--checkpoints", str(journal))
    assert ok.returncode == 0 and "署名つきチェックポイントは正常" in ok.stdout

    cases = {
        "edit": ([lambda c: c.execute("DROP TRIGGER send_log_no_update"),
                  lambda c: c.execute("UPDATE send_log SET actor = 'someone-else' WHERE seq = 2")], "書き換え"),
        "recompute": ([lambda c: c.execute("DROP TRIGGER send_log_no_update"),
                       lambda c: c.execute("UPDATE send_log SET actor = 'someone-else' WHERE seq = 2"),
                       _recompute_chain], "チェーンの作り直し"),
        "truncate": ([lambda c: c.execute("DROP TRIGGER send_log_no_delete"),
                      lambda c: c.execute("DELETE FROM send_log WHERE seq > (SELECT max(seq) - 2 FROM send_log)"),
                      lambda c: c.execute("DELETE FROM checkpoints")], "末尾の削除"),   # its own checkpoints too
        "remove-one": ([lambda c: c.execute("DROP TRIGGER send_log_no_delete"),
                        lambda c: c.execute("DROP TRIGGER send_log_no_update"),
                        lambda c: c.execute("DELETE FROM send_log WHERE seq = 2"), _recompute_chain,
                        lambda c: c.execute("DELETE FROM checkpoints")], "書き換え"),   # a gap in the numbers
    }
    for name, (steps, expected) in cases.items():
        copy = tmp_path / name
        shutil.copytree(data, copy)
        _tamper(copy / "mailguard.sqlite3", steps)
        result = _verify(relay, copy, "--checkpoints", str(copy / "checkpoints.jsonl"))
        assert result.returncode == 1 and expected in result.stderr, (name, result.stderr)


def test_a_new_install_signs_its_log_soon_after_the_first_mail(make_relay, upstream):
    """Not 10 minutes later: 'log verify --public-key' must work on the day the office starts."""
    relay = make_relay().start()                               # MAILGUARD_CHECKPOINT_INTERVAL: 600 s
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: relay.store._conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] >= 1,
             what="a checkpoint while running")
    result = _verify(relay, relay.tmp / "var", "--checkpoints", str(relay.tmp / "var" / "checkpoints.jsonl"))
    assert result.returncode == 0, result.stderr


def test_records_past_their_retention_go_and_the_chain_still_verifies_across_the_gap(make_relay, upstream, tmp_path):
    import time

    from mailguard.store import checkpoints

    relay = make_relay().start()
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: any(e.event == "delivery" for e in relay.events()), what="a delivery")
    relay.stop()
    data = tmp_path / "var"
    from mailguard.store import Store

    store = Store(relay.env.get("MAILGUARD_DATABASE_URL") or data / "mailguard.sqlite3")
    key = checkpoints.signing_key(data)
    later = time.time() + 400 * 86400                               # as if 400 days had passed
    with pytest.raises(ValueError, match="1 年以上"):
        store.purge_records(later - 300 * 86400, key, now=later)   # records are kept at least a year
    gone = store.purge_records(later - 365 * 86400, key, now=later)
    assert gone >= 3 and [e.event for _, e in store.log()] == ["records_purged"]
    store.close()
    result = _verify(relay, data, "--checkpoints", str(data / "checkpoints.jsonl"))
    assert result.returncode == 0, result.stderr
    relay.start()                                                  # the chain goes on from the anchor
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: [e for e in relay.events() if e.event == "delivery"], what="a new delivery")
    relay.stop()
    assert _verify(relay, data, "--checkpoints", str(data / "checkpoints.jsonl")).returncode == 0


def test_a_manager_drafts_the_leak_report_from_the_message_page(make_relay, upstream, page):
    from conftest import free_port, listening

    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}")
    relay.add_user("boss", "manager", f"boss@{INTERNAL}", "manager-password-1")
    relay.start()
    wait_for(lambda: listening(web), what="console")
    queue_id = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]))
    delivered(relay, queue_id)
    page.goto(f"http://127.0.0.1:{web}/login")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "manager-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"http://127.0.0.1:{web}/")
    page.goto(f"http://127.0.0.1:{web}/messages/{queue_id}")
    page.click("section.incident button")
    page.wait_for_load_state()
    assert page.locator("pre.incident-draft").count() == 1, page.inner_text("main")
    draft = page.inner_text("pre.incident-draft")
    assert "個人データの項目" in draft and "要介護度" in draft and "確報" in draft
    assert [e.actor for e in relay.events(queue_id) if e.event == "incident_recorded"] == ["web:boss"]


@pytest.mark.parametrize("found, kept", [("山田 太郎 様", "山田太郎"), ("佐藤　花子さん", "佐藤花子"), ("高橋殿", "高橋"),
                                         ("0123456789", "0123456789"), ("様", "様")])
def test_a_person_is_kept_without_spaces_or_honorific(found, kept):
    from mailguard.check.content.report import _person

    assert _person(found) == kept
