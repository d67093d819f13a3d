"""The DNS check against a real DNS server on loopback (RFC 5321 §5.1 implicit MX, RFC 7505 null MX)."""

from __future__ import annotations

import time

import pytest

from mailguard.check.recipients.domains import DomainChecker, DomainStatus
from mailguard.settings import load_settings


@pytest.fixture
def checker(dns_server):
    dns_server.nxdomain.add("no-such-partner.example.org")
    dns_server.null_mx.add("no-mail.example.org")
    dns_server.address_only.add("small-office.example.org")
    dns_server.silent.add("down.example.org")
    return DomainChecker(load_settings(dns_servers=f"127.0.0.1:{dns_server.port}", dns_timeout=1, web_listen=""))


@pytest.mark.parametrize("domain, status", [
    ("minato-hospital.example.jp", DomainStatus.EXISTS),          # an MX
    ("small-office.example.org", DomainStatus.EXISTS),            # no MX, but an A record: the implicit MX
    ("no-such-partner.example.org", DomainStatus.NOT_FOUND),      # NXDOMAIN
    ("no-mail.example.org", DomainStatus.NULL_MX),                # MX 0 .
    ("down.example.org", DomainStatus.UNKNOWN),                   # no answer: proves nothing
])
async def test_domain_status_from_a_loopback_dns_server(checker, domain, status):
    assert (await checker.check({domain}))[domain] is status


async def test_all_lookups_of_a_message_together_are_bounded_by_the_timeout(checker):
    started = time.monotonic()
    found = await checker.check({"down.example.org", "minato-hospital.example.jp", "no-mail.example.org"})
    assert time.monotonic() - started < 3          # MAILGUARD_DNS_TIMEOUT=1, concurrently, not one after another
    assert found["down.example.org"] is DomainStatus.UNKNOWN and found["no-mail.example.org"] is DomainStatus.NULL_MX


async def test_answers_are_cached(checker, dns_server):
    await checker.check({"minato-hospital.example.jp"})
    asked = len(dns_server.queries)
    await checker.check({"minato-hospital.example.jp"})
    assert len(dns_server.queries) == asked
