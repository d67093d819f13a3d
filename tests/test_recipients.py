"""Catch the wrong recipient: the stories a sender and a manager see, over real SMTP
(client → running relay → loopback upstream, DNS answered on loopback). Each rule's
cases are tabled in test_recipient_checks.py."""

from __future__ import annotations

import time

import pytest

from conftest import UNREGISTERED, INTERNAL, REGISTERED, send, wait_for

GATEWAY = "fax.sakura-kaigo.example.jp"


def test_lookalike_domain_is_held_naming_the_registered_recipient(relay, upstream):
    queue_id = send(relay, ["renkei@minato-hospitel.example.jp"])
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    first = relay.message(queue_id).findings[0]
    assert first.code == "lookalike_domain" and "1文字違います" in first.text   # the reason comes first
    assert first.suggestion == REGISTERED                                        # "probably meant"
    with pytest.raises(Exception, match="今すぐ送信できません"):                  # no "send now" for this
        relay.act(queue_id, "release", actor="test:staff")
    assert upstream.messages == []


def test_nxdomain_and_null_mx_are_held(relay, upstream, dns_server):
    dns_server.nxdomain.add("no-such-partner.example.org")
    dns_server.null_mx.add("no-mail.example.org")
    gone = send(relay, ["soudan@no-such-partner.example.org"])
    null = send(relay, ["info@no-mail.example.org"])
    assert relay.wait_decided(gone) == "awaiting_approval" and "domain_not_found" in relay.findings(gone)
    assert relay.wait_decided(null) == "awaiting_approval" and "domain_null_mx" in relay.findings(null)


def test_a_dns_timeout_does_not_hold_the_decision_forever(relay, upstream, dns_server):
    dns_server.silent.add("minato-hospital.example.jp")   # the registered partner's DNS is down
    queue_id = send(relay, [REGISTERED])
    started = time.monotonic()
    assert relay.wait_decided(queue_id, timeout=15) == "delayed"   # not held for approval
    assert time.monotonic() - started < 10                          # bounded (MAILGUARD_DNS_TIMEOUT=1)
    assert "DNS lookup for minato-hospital.example.jp timed out after 1.0s" in relay.log()
    assert "domain_unverified" in relay.findings(queue_id)


def test_first_time_recipient_is_noted_only_the_first_time(relay, upstream):
    first = send(relay, [UNREGISTERED])
    relay.wait_decided(first)
    assert "first_time_recipient" in relay.findings(first)
    relay.act(first, "approve", "電話で確認済み")
    upstream.wait_to(UNREGISTERED)
    wait_for(lambda: relay.state(first) == "delivered", what="delivered")
    second = send(relay, [UNREGISTERED])
    relay.wait_decided(second)
    assert "first_time_recipient" not in relay.findings(second)


FAMILIES = [f"family{i}@{domain}" for i, domain in enumerate(
    ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "softbank.ne.jp"] * 2)]


def test_mass_mail_in_to_is_held_or_rewritten_to_hide_the_recipients(relay, upstream):
    held = send(relay, FAMILIES, subject="家族会のお知らせ")
    relay.wait_decided(held)
    assert "mass_mail_exposure" in relay.findings(held)
    assert "社外の宛先 12 件 (12 者)" in next(f.text for f in relay.message(held).findings
                                          if f.code == "mass_mail_exposure")
    decision = relay.policies / "decision.toml"
    decision.write_text(decision.read_text(encoding="utf-8") + '\n[exposure]\nhandling = "bcc"\n', encoding="utf-8")
    wait_for(lambda: "policy reloaded" in relay.log(), what="reload")
    queue_id = send(relay, FAMILIES, subject="家族会のお知らせ", headers={"Cc": f"office@{INTERNAL}"})
    relay.wait_decided(queue_id)
    assert "mass_mail_rewritten" in relay.findings(queue_id)
    relay.act(queue_id, "approve", "家族会の案内として確認")   # the families are not in the address book
    [got] = upstream.wait_to(FAMILIES[0])
    assert sorted(got.rcpt_tos) == sorted(FAMILIES)        # everyone still gets it
    headers = got.content.split(b"\r\n\r\n", 1)[0].decode()
    assert "To: undisclosed-recipients:;" in headers
    assert not any(f in headers for f in FAMILIES) and "Cc:" not in headers
    assert got.message["Subject"] == "家族会のお知らせ"
    decided = next(e for e in relay.events(queue_id) if e.event == "decided")
    assert "To/Cc hidden (undisclosed-recipients)" in decided.detail["transformed"]


def test_registered_fax_is_delivered_in_the_gateways_form(relay, upstream):
    queue_id = send(relay, [f"FAX=+81312345678@{GATEWAY}"], subject="居宅サービス計画書")
    assert relay.wait_decided(queue_id) == "delayed"
    relay.act(queue_id, "release", actor="test:staff")
    [got] = upstream.wait_to(f"0312345678@{GATEWAY}")
    assert got.message["Subject"] == "居宅サービス計画書"
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered")
    delivery = next(e for e in relay.events(queue_id) if e.event == "delivery")
    # the provision record names the organisation the copy went to
    assert delivery.detail["organisations"] == {f"FAX=+81312345678@{GATEWAY}": "みなと総合病院 地域医療連携室"}


def test_mistyped_fax_number_is_held_naming_the_registered_number(relay, upstream):
    queue_id = send(relay, [f"0312345687@{GATEWAY}"])
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    first = relay.message(queue_id).findings[0]
    assert first.code == "fax_number_mistyped"
    assert first.suggestion == "03-1234-5678 (みなと総合病院 地域医療連携室)"
    assert upstream.messages == []


def test_a_mistyped_fax_can_never_be_set_to_leave_by_itself(relay):
    decision = relay.policies / "decision.toml"
    decision.write_text(decision.read_text(encoding="utf-8").replace(
        'unregistered_recipient = "approval"', 'unregistered_recipient = "approval"\nfax_number_mistyped = "delay"'),
        encoding="utf-8")
    check = relay.cli("policy", "check", check=False)
    assert check.returncode == 1
    assert "actions.fax_number_mistyped" in check.stderr and "管理者の確認なしには送らない事項です" in check.stderr
