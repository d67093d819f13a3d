"""route: where each envelope recipient goes — internal, external e-mail, or FAX.

Worked out once per message (``routes``) and read by every later stage: which
domains need DNS, whether content matters (only copies that leave), which
recipients share an agreed key, the RCPT TO a FAX gateway wants, and the
organisation named in the provision record. A FAX recipient leaves the
organisation whatever domain its gateway has (often an internal one).
Sources: RFC 3192 (``FAX=+81…@gateway``), 手引き 事例6.
"""

from __future__ import annotations

from ..address import address_key
from ..model import Route, RouteKind
from ..policy import Policy
from .recipients import fax


def route(address: str, policy: Policy) -> Route:
    """The route of one envelope recipient under ``policy``."""
    domain = address_key(address).rpartition("@")[2]
    target = fax.parse(address, policy)
    if target is not None:
        deliver_to = fax.gateway_address(target) if target.e164 else None
        return Route(address, RouteKind.FAX, domain, target.e164, target.written,
                     deliver_to if deliver_to != address else None)
    kind = RouteKind.INTERNAL if policy.is_internal(address) else RouteKind.EXTERNAL
    return Route(address, kind, domain)


def routes(rcpt_tos: tuple[str, ...], policy: Policy) -> tuple[Route, ...]:
    return tuple(route(r, policy) for r in rcpt_tos)


def leaves(routes: tuple[Route, ...]) -> bool:
    """Whether any copy leaves the organisation: only then does content matter."""
    return any(r.leaves for r in routes)


def external_domains(routes: tuple[Route, ...]) -> set[str]:
    """Domains whose DNS the checks want: external e-mail recipients (not FAX gateways)."""
    return {r.domain for r in routes if r.kind is RouteKind.EXTERNAL}


def organisation(r: Route, policy: Policy) -> str | None:
    """Who received this copy, for the provision record (個人情報保護法 第29条)."""
    if r.kind is RouteKind.FAX:
        entry = policy.fax_entry(r.fax_e164) if r.fax_e164 else None
        return entry.organisation if entry else None
    if r.kind is RouteKind.INTERNAL:
        return policy.organisation.name
    entry = policy.lookup(r.address)
    return entry.organisation if entry else None
