"""Each recipient check on its own: tables of cases for the pure functions
(look-alikes, FAX numbers, exposure, DNS outcomes, display names), as Presidio
tests each recognizer. The end-to-end stories are in test_recipients.py."""

from __future__ import annotations

import pytest

from conftest import HERE, INTERNAL, REGISTERED
from mailguard import policy
from mailguard.check import route
from mailguard.check.pipeline import inspect
from mailguard.check.recipients import Facts, check_recipients, exposure, lookalike
from mailguard.check.recipients.domains import DomainStatus

POLICY = policy.load(HERE / "policies")
GATEWAY = "fax.sakura-kaigo.example.jp"


def codes(rcpt: str, facts: Facts = Facts(), visible=None) -> list[str]:
    routes = route.routes((rcpt,), POLICY)
    return [f.code for f in check_recipients(routes, visible if visible is not None else [("", rcpt)], POLICY, facts)]


def findings(rcpt: str, facts: Facts = Facts()):
    return check_recipients(route.routes((rcpt,), POLICY), [], POLICY, facts)


@pytest.mark.parametrize("domain, registered, reason", [
    ("minato-hospitel.example.jp", "minato-hospital.example.jp", "1文字違います"),
    ("minato-hospita.example.jp", "minato-hospital.example.jp", "1文字違います"),         # deletion
    ("mniato-hospital.example.jp", "minato-hospital.example.jp", "1文字違います"),        # transposition
    ("minato-hospital.co.jp", "minato-hospital.ne.jp", "末尾が違います"),                 # another public suffix
    ("xn--minto-hospital-xtl.example.jp", "minato-hospital.example.jp", "見た目の似た文字"),  # Cyrillic а (IDN)
    ("rninato-hospital.example.jp", "minato-hospital.example.jp", "見た目の似た文字"),    # rn for m
])
def test_lookalike_domains_are_recognised(domain, registered, reason):
    assert reason in (lookalike.domain_likeness(domain, registered) or "")


@pytest.mark.parametrize("domain, registered", [
    ("minato-hospital.example.jp", "minato-hospital.example.jp"),        # the same
    ("mail.minato-hospital.example.jp", "minato-hospital.example.jp"),   # its own subdomain
    ("kita-clinic.example.jp", "minato-hospital.example.jp"),            # simply another organisation
    ("minato.example.jp", "minato-hospital.example.jp"),                 # more than one edit
])
def test_unrelated_or_own_domains_are_not_lookalikes(domain, registered):
    assert lookalike.domain_likeness(domain, registered) is None


def test_lookalike_names_the_registered_recipient_it_probably_meant():
    [found] = [f for f in findings("renkei@minato-hospitel.example.jp") if f.code == "lookalike_domain"]
    assert found.suggestion == REGISTERED and found.severity == "critical"


@pytest.mark.parametrize("rcpt, expected", [
    (f"colleague@{INTERNAL}", []),
    (f"colleague@mail.{INTERNAL}", []),                                       # internal subdomain
    (REGISTERED, ["external_recipient"]),                                 # registered: never "first time"
    ("someone@unknown-partner.example.com", ["external_recipient", "unregistered_recipient", "first_time_recipient"]),
    ("tanaka@freemail.example.net", ["external_recipient", "unregistered_recipient", "first_time_recipient",
                                     "same_local_part_other_domain"]),
    ("info@freemail.example.net", ["external_recipient", "unregistered_recipient", "first_time_recipient"]),  # generic
])
def test_recipient_findings_by_address(rcpt, expected):
    assert codes(rcpt, visible=[]) == expected


def test_a_known_recipient_is_not_first_time_nor_compared_for_lookalikes():
    known = Facts(delivered_before=frozenset({"renkei@minato-hospitel.example.jp"}))
    assert "lookalike_domain" not in codes("renkei@minato-hospitel.example.jp", known, visible=[])
    assert "first_time_recipient" not in codes("renkei@minato-hospitel.example.jp", known, visible=[])


@pytest.mark.parametrize("status, code", [
    (DomainStatus.NOT_FOUND, "domain_not_found"),
    (DomainStatus.NO_MAIL_HOST, "domain_not_found"),
    (DomainStatus.NULL_MX, "domain_null_mx"),
    (DomainStatus.UNKNOWN, "domain_unverified"),
    (DomainStatus.EXISTS, None),
])
def test_dns_outcomes_become_findings(status, code):
    found = codes("soudan@partner.example.org", Facts(domains={"partner.example.org": status}), visible=[])
    domain_codes = [c for c in found if c.startswith("domain_")]
    assert domain_codes == ([code] if code else [])


@pytest.mark.parametrize("written, expected, suggestion", [
    (f"FAX=+81312345678@{GATEWAY}", [], ""),
    (f"03-1234-5678@{GATEWAY}", [], ""),
    (f"0312345679@{GATEWAY}", ["fax_number_mistyped"], "03-1234-5678 (みなと総合病院 地域医療連携室)"),   # one digit off
    (f"0312345687@{GATEWAY}", ["fax_number_mistyped"], "03-1234-5678 (みなと総合病院 地域医療連携室)"),   # swapped
    (f"0669876543@{GATEWAY}", ["unregistered_fax"], ""),
    (f"FAX=hello@{GATEWAY}", ["fax_number_invalid"], ""),
])
def test_fax_numbers(written, expected, suggestion):
    found = findings(written)
    assert [f.code for f in found] == ["external_recipient", *expected]
    assert (found[-1].suggestion if expected else "") == suggestion


def test_swapped_fax_digits_are_described_as_swapped():
    [mistyped] = [f for f in findings(f"0312345687@{GATEWAY}") if f.code == "fax_number_mistyped"]
    assert "9桁目と10桁目が入れ替わっています (登録は「78」、入力は「87」)" in mistyped.text
    [off] = [f for f in findings(f"0312345679@{GATEWAY}") if f.code == "fax_number_mistyped"]
    assert "10桁目だけが違います (登録は「8」、入力は「9」)" in off.text


FAMILIES = [f"family{i}@{d}" for i, d in enumerate(
    ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "softbank.ne.jp"] * 2)]


@pytest.mark.parametrize("visible, code", [
    ([("", a) for a in FAMILIES], "mass_mail_exposure"),                                 # 12 families
    ([("", "a@gmail.com"), ("", "b@gmail.com")], "mass_mail_exposure"),                  # two people at free mail
    ([("", "a@partner.example.org"), ("", "b@partner.example.org")], None),              # one organisation
    ([("", REGISTERED), ("", "care@hikari-houkan.example.com"), ("", "tanaka@kita-clinic.example.jp")], None),
    ([("", f"a{i}@{INTERNAL}") for i in range(20)], None),                              # all internal
])
def test_exposure_counts_parties_visible_in_to_and_cc(visible, code):
    found = [f.code for f in exposure.exposure_findings(visible, POLICY)]
    assert found == ([code] if code else [])


@pytest.mark.parametrize("name, address, expected", [
    ("田中 一郎", "ichiro.t@freemail.example.net", ["display_name_mismatch"]),
    ("北クリニック", "someone@freemail.example.net", ["display_name_mismatch"]),
    ("田中 一郎", "tanaka@kita-clinic.example.jp", []),       # the registered address itself
    ("山田 花子", "hanako@freemail.example.net", []),         # a name nobody registered
])
def test_display_names_naming_a_registered_person(name, address, expected):
    assert [f.code for f in lookalike.display_name_findings([(name, address)], POLICY)] == expected


def test_signed_mail_needs_no_encryption_finding_without_personal_data():
    raw = b"From: a@x\r\nTo: renkei@minato-hospital.example.jp\r\nContent-Type: multipart/signed; boundary=b\r\n\r\n"
    assert "signed_not_encryptable" not in [f.code for f in inspect(raw, route.routes((REGISTERED,), POLICY),
                                                                     POLICY, Facts(), None)]
