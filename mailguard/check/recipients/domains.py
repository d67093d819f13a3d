"""Does the recipient's domain accept mail at all? (RFC 5321 §5.1, RFC 7505)

MX first; with no MX, an A or AAAA record stands in for it (the implicit MX).
A null MX (one MX of preference 0 with exchange ".") says the domain takes no
mail. NXDOMAIN, or neither MX nor address records, means nobody can receive it:
almost always a typo. A timeout or SERVFAIL proves nothing and never blocks a
decision: it becomes ``domain_unverified`` (information only), after at most
MAILGUARD_DNS_TIMEOUT seconds for all of one message's lookups together.

Results are cached for their TTL (positive answers, at most an hour), 5 minutes
for negative ones and 1 minute when the lookup failed. Resolver: MAILGUARD_DNS_SERVERS,
or the system's. Uses dnspython's asyncio resolver: the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from ... import findings as F
from ...model import Finding
from ...settings import Settings

log = logging.getLogger("mailguard.inspect.domains")

MAX_TTL, NEGATIVE_TTL, FAILURE_TTL = 3600, 300, 60


class DomainStatus(StrEnum):
    EXISTS = "exists"
    NOT_FOUND = "not_found"         # NXDOMAIN
    NO_MAIL_HOST = "no_mail_host"   # neither MX nor A/AAAA
    NULL_MX = "null_mx"             # RFC 7505
    UNKNOWN = "unknown"             # timeout, SERVFAIL: proves nothing


class DomainChecker:
    def __init__(self, settings: Settings):
        self.timeout = settings.dns_timeout
        self.resolver = dns.asyncresolver.Resolver(configure=not settings.dns_servers)
        if settings.dns_servers:
            self.resolver.nameservers = [server.host for server in settings.dns_servers]
            self.resolver.nameserver_ports = {server.host: server.port for server in settings.dns_servers}
        self._cache: dict[str, tuple[float, DomainStatus]] = {}

    async def check(self, domains: set[str]) -> dict[str, DomainStatus]:
        """Status per domain; all lookups together take at most MAILGUARD_DNS_TIMEOUT."""
        now = time.monotonic()
        results = {d: hit[1] for d in domains if (hit := self._cache.get(d)) and hit[0] > now}
        todo = sorted(domains - results.keys())
        if todo:
            outcomes = await asyncio.gather(*(self._bounded(d) for d in todo))
            for domain, (status, ttl) in zip(todo, outcomes):
                self._cache[domain] = (time.monotonic() + ttl, status)
                results[domain] = status
        return results

    async def _bounded(self, domain: str) -> tuple[DomainStatus, float]:
        try:
            return await asyncio.wait_for(self._lookup(domain), self.timeout)
        except asyncio.TimeoutError:
            log.warning("DNS lookup for %s timed out after %.1fs", domain, self.timeout)
            return DomainStatus.UNKNOWN, FAILURE_TTL

    async def _lookup(self, domain: str) -> tuple[DomainStatus, float]:
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False, lifetime=self.timeout)
        except dns.resolver.NXDOMAIN:
            return DomainStatus.NOT_FOUND, NEGATIVE_TTL
        except dns.resolver.NoAnswer:
            return await self._implicit_mx(domain)
        except dns.exception.DNSException as exc:
            log.warning("DNS lookup for %s failed: %s", domain, exc)
            return DomainStatus.UNKNOWN, FAILURE_TTL
        ttl = min(answer.rrset.ttl, MAX_TTL)
        records = list(answer)
        if len(records) == 1 and records[0].preference == 0 and records[0].exchange == dns.name.root:
            return DomainStatus.NULL_MX, ttl
        return DomainStatus.EXISTS, ttl

    async def _implicit_mx(self, domain: str) -> tuple[DomainStatus, float]:
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(domain, rdtype, search=False, lifetime=self.timeout)
                return DomainStatus.EXISTS, min(answer.rrset.ttl, MAX_TTL)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException:
                return DomainStatus.UNKNOWN, FAILURE_TTL
        return DomainStatus.NO_MAIL_HOST, NEGATIVE_TTL


def domain_findings(recipient: str, domain: str, status: DomainStatus | None) -> list[Finding]:
    if status in (DomainStatus.NOT_FOUND, DomainStatus.NO_MAIL_HOST):
        return [F.DOMAIN_NOT_FOUND.finding(recipient,
                        f"ドメイン {domain} は存在しないか、メールを受け取るサーバーがありません。"
                        "アドレスの打ち間違いではありませんか。")]
    if status is DomainStatus.NULL_MX:
        return [F.DOMAIN_NULL_MX.finding(recipient,
                        f"ドメイン {domain} はメールを受け取らないと宣言しています (null MX, RFC 7505)。"
                        "宛先を確認してください。")]
    if status is DomainStatus.UNKNOWN:
        return [F.DOMAIN_UNVERIFIED.finding(recipient,
                        f"ドメイン {domain} を DNS で確認できませんでした (応答なし)。"
                        "判定はほかの検査結果に従います。")]
    return []
