"""Catch the wrong recipient: every rule through a real SMTP flow
(client → running relay → loopback upstream, DNS answered on loopback)."""

from __future__ import annotations

import time

import pytest

from conftest import INTERNAL, REGISTERED, send, wait_for

GATEWAY = "fax.sakura-kaigo.example.jp"


def held_for(relay, rcpt: str, **kwargs) -> tuple[str, list[str], str]:
    queue_id = send(relay, [rcpt], **kwargs)
    relay.wait_decided(queue_id)
    return queue_id, relay.findings(queue_id), relay.cli("queue", "show", queue_id).stdout


@pytest.mark.parametrize("rcpt, reason", [
    ("renkei@minato-hospitel.example.jp", "1文字違います"),
    ("renkei@minato-hospital.example.com", "末尾が違います"),
    ("renkei@xn--minto-hospital-xtl.example.jp", "国際化ドメイン (IDN) の見た目の似た文字"),  # Cyrillic а
    ("renkei@rninato-hospital.example.jp", "見た目の似た文字"),                              # rn for m
])
def test_lookalike_domain_is_held_and_names_the_registered_recipient(relay, upstream, rcpt, reason):
    queue_id, codes, show = held_for(relay, rcpt)
    assert relay.state(queue_id) == "awaiting_approval"
    assert codes[0] == "lookalike_domain"         # the reason is shown first
    assert reason in show
    assert f"→ {REGISTERED}" in show               # "probably meant"
    time.sleep(2.5)
    assert upstream.messages == []


def test_lookalike_cannot_be_sent_now_by_the_sender(relay, upstream):
    queue_id, _, _ = held_for(relay, "renkei@minato-hospitel.example.jp")
    refused = relay.cli("queue", "release", queue_id, check=False)
    assert refused.returncode == 1 and "awaiting_approval" in refused.stderr


def test_registered_local_part_at_another_domain(relay, upstream):
    queue_id, codes, show = held_for(relay, "tanaka@freemail.example.net")
    assert "same_local_part_other_domain" in codes and "→ tanaka@kita-clinic.example.jp" in show


def test_display_name_of_a_registered_person_on_another_address(relay, upstream):
    queue_id = send(relay, ["ichiro.t@freemail.example.net"],
                    headers={"To": "田中 一郎 <ichiro.t@freemail.example.net>"})
    relay.wait_decided(queue_id)
    show = relay.cli("queue", "show", queue_id).stdout
    assert "display_name_mismatch" in relay.findings(queue_id)
    assert "表示名「田中 一郎」" in show and "→ tanaka@kita-clinic.example.jp" in show


def test_nxdomain_is_held(relay, upstream, dns_server):
    dns_server.nxdomain.add("no-such-partner.example.org")
    queue_id, codes, show = held_for(relay, "soudan@no-such-partner.example.org")
    assert relay.state(queue_id) == "awaiting_approval"
    assert "domain_not_found" in codes and "存在しないか" in show


def test_null_mx_is_held(relay, upstream, dns_server):
    dns_server.null_mx.add("no-mail.example.org")
    queue_id, codes, show = held_for(relay, "info@no-mail.example.org")
    assert "domain_null_mx" in codes and "RFC 7505" in show


def test_a_domain_with_an_address_but_no_mx_is_fine(relay, upstream, dns_server):
    dns_server.address_only.add("small-office.example.org")
    queue_id, codes, _ = held_for(relay, "care@small-office.example.org")
    assert "domain_not_found" not in codes and "domain_unverified" not in codes


def test_a_dns_timeout_does_not_hold_the_decision_forever(make_relay, upstream, dns_server):
    relay = make_relay(MAILGUARD_DNS_TIMEOUT="1").start()
    dns_server.silent.add("minato-hospital.example.jp")   # the registered partner's DNS is down
    queue_id = send(relay, [REGISTERED])
    started = time.monotonic()
    assert relay.wait_decided(queue_id, timeout=15) == "delayed"   # not held for approval
    assert time.monotonic() - started < 10                          # bounded, not forever
    assert "DNS lookup for minato-hospital.example.jp timed out after 1.0s" in relay.log()
    assert "domain_unverified" in relay.findings(queue_id)
    upstream.wait_to(REGISTERED, timeout=6)   # and it leaves after the usual hold


def test_first_time_recipient_is_noted_only_the_first_time(make_relay, upstream):
    relay = make_relay(MAILGUARD_HOLD_DELAY="600").start()
    first = send(relay, [REGISTERED])
    relay.wait_decided(first)
    assert "first_time_recipient" in relay.findings(first)
    relay.cli("queue", "release", first)
    upstream.wait_to(REGISTERED)
    wait_for(lambda: relay.state(first) == "delivered", what="delivered")
    second = send(relay, [REGISTERED])
    relay.wait_decided(second)
    assert "first_time_recipient" not in relay.findings(second)


FAMILIES = [f"family{i}@{domain}" for i, domain in enumerate(
    ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "softbank.ne.jp"] * 2)]


def test_twelve_families_in_to_are_held_as_mass_mail(relay, upstream):
    queue_id = send(relay, FAMILIES, subject="家族会のお知らせ")
    relay.wait_decided(queue_id)
    codes = relay.findings(queue_id)
    assert "mass_mail_exposure" in codes
    assert "社外の宛先 12 件 (12 者)" in relay.cli("queue", "show", queue_id).stdout


def test_mass_mail_can_be_rewritten_to_hide_the_recipients(relay, upstream):
    decision = relay.policies / "decision.toml"
    decision.write_text(decision.read_text(encoding="utf-8") + '\n[exposure]\nhandling = "bcc"\n', encoding="utf-8")
    wait_for(lambda: "policy reloaded" in relay.log(), what="reload")
    queue_id = send(relay, FAMILIES, subject="家族会のお知らせ", headers={"Cc": f"office@{INTERNAL}"})
    relay.wait_decided(queue_id)
    assert "mass_mail_rewritten" in relay.findings(queue_id)
    relay.cli("queue", "approve", queue_id)   # the families are not in the address book
    [got] = upstream.wait_to(FAMILIES[0])
    assert sorted(got.rcpt_tos) == sorted(FAMILIES)        # everyone still gets it
    headers = got.content.split(b"\r\n\r\n", 1)[0].decode()
    assert "To: undisclosed-recipients:;" in headers
    assert not any(f in headers for f in FAMILIES) and "Cc:" not in headers
    assert got.message["Subject"] == "家族会のお知らせ"
    assert "To/Cc hidden" in relay.cli("log", "--queue-id", queue_id).stdout


def test_registered_partners_may_see_each_other(relay, upstream):
    partners = [REGISTERED, "care@hikari-houkan.example.com", "tanaka@kita-clinic.example.jp"]
    queue_id = send(relay, partners, subject="担当者会議の日程")
    relay.wait_decided(queue_id)
    assert "mass_mail_exposure" not in relay.findings(queue_id)


def test_registered_fax_is_delivered_in_the_gateways_form(relay, upstream):
    queue_id = send(relay, [f"FAX=+81312345678@{GATEWAY}"], subject="居宅サービス計画書")
    assert relay.wait_decided(queue_id) == "delayed"
    [got] = upstream.wait_to(f"0312345678@{GATEWAY}", timeout=6)
    assert got.message["Subject"] == "居宅サービス計画書"
    log = relay.cli("log", "--queue-id", queue_id).stdout
    assert "みなと総合病院 地域医療連携室" in log        # the provision record names the organisation


@pytest.mark.parametrize("number, why", [("0312345679", "one digit off"), ("0312345687", "two digits swapped")])
def test_mistyped_fax_number_is_held_naming_the_registered_number(relay, upstream, number, why):
    queue_id, codes, show = held_for(relay, f"{number}@{GATEWAY}")
    assert relay.state(queue_id) == "awaiting_approval", why
    assert codes[0] == "fax_number_mistyped"
    assert "→ 03-1234-5678 (みなと総合病院 地域医療連携室)" in show
    time.sleep(2.5)
    assert upstream.messages == []


def test_unregistered_fax_number_waits_for_approval(relay, upstream):
    queue_id, codes, _ = held_for(relay, f"0669876543@{GATEWAY}")
    assert relay.state(queue_id) == "awaiting_approval" and "unregistered_fax" in codes


def test_a_mistyped_fax_can_never_be_set_to_leave_by_itself(relay):
    decision = relay.policies / "decision.toml"
    decision.write_text(decision.read_text(encoding="utf-8").replace(
        'unregistered_recipient = "approval"', 'unregistered_recipient = "approval"\nfax_number_mistyped = "delay"'),
        encoding="utf-8")
    check = relay.cli("policy", "check", check=False)
    assert check.returncode == 1
    assert "actions.fax_number_mistyped" in check.stderr and "never released without a manager" in check.stderr
