"""facts: what the checks need from outside the message, gathered before ``assess``.

DNS for the external domains (``recipients.domains``, asyncio, bounded by
MAILGUARD_DNS_TIMEOUT) and the send history from the store: which recipients
got mail before, and the recent correspondents look-alikes are compared with.
Shared by the queue manager and ``mailguard scan``, so both decide on the same facts.
"""

from __future__ import annotations

import time

from ..model import Route
from ..policy import Policy
from ..settings import Settings
from . import route as routing
from .recipients import Facts, lookalike
from .recipients.domains import DomainChecker

CORRESPONDENTS_TTL = 60.0   # s; past recipients change slowly, the query is not free


class FactGatherer:
    """What the checks need from outside the message: DNS for external domains, who got mail before.
    Shared by the queue manager and ``mailguard scan`` so both decide on the same facts."""

    def __init__(self, settings: Settings, db, *, dns: bool = True):
        self.db = db
        self.domain_checker = DomainChecker(settings) if dns else None
        self._correspondents: frozenset[str] = frozenset()
        self._correspondents_until = 0.0

    async def gather(self, routes: list[tuple[Route, ...]], policy: Policy) -> Facts:
        leaving = [r for rs in routes for r in rs if r.leaves]
        if not leaving:
            return Facts()
        now = time.monotonic()
        if now >= self._correspondents_until:
            self._correspondents = await self.db.correspondents()
            self._correspondents_until = now + CORRESPONDENTS_TTL
        domains = set().union(*(routing.external_domains(rs) for rs in routes))
        return Facts(
            delivered_before=await self.db.delivered_before(r.address for r in leaving),
            correspondents=self._correspondents,
            domains=await self.domain_checker.check(domains) if domains and self.domain_checker else {},
            candidates=lookalike.candidates(policy, self._correspondents),
        )
