"""recipients: the checks on who a message goes to (手引き チェックリスト3-3 3) 4), 事例6).

Receives the message's routes (``check.route``), the (display name, address)
pairs visible in To:/Cc:, the policy, and ``Facts`` gathered beforehand by the
caller (the I/O: DNS, the send log). Returns findings (``model.Finding``, codes
from ``findings``). Pure: decides nothing, changes nothing, no I/O.

- this module: ``external_recipient``, ``unregistered_recipient``, ``first_time_recipient``;
- ``lookalike``: look-alike domains, a registered local part elsewhere, display names;
- ``domains``: NXDOMAIN, no mail host, null MX (DNS, RFC 5321 §5.1, RFC 7505);
- ``fax``: FAX numbers at e-mail-to-FAX gateways (RFC 3192);
- ``exposure``: many parties visible to each other in To:/Cc:.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses

from ... import findings as F
from ...model import Finding, Route, RouteKind
from ...policy import Policy
from . import exposure, fax, lookalike
from .domains import DomainStatus, domain_findings


@dataclass(frozen=True)
class Facts:
    """What the checks need from outside the message (lower-cased addresses)."""

    delivered_before: frozenset[str] = frozenset()   # recipients of this message delivered to before
    correspondents: frozenset[str] = frozenset()     # past recipients, for look-alike comparison
    domains: dict[str, DomainStatus] = field(default_factory=dict)
    # lookalike.candidates(policy, correspondents), built once per batch; None: build it here
    candidates: tuple | None = None


def check_recipients(routes: tuple[Route, ...], visible: list[tuple[str, str]], policy: Policy,
                     facts: Facts = Facts()) -> list[Finding]:
    """All recipient findings: each envelope recipient in order, then what To:/Cc: show."""
    pool = facts.candidates if facts.candidates is not None else lookalike.candidates(policy, facts.correspondents)
    found: list[Finding] = []
    for r in routes:
        found += recipient_findings(r, policy, facts, pool)
    found += lookalike.display_name_findings(visible, policy)
    found += exposure.exposure_findings(visible, policy)
    return found


def recipient_findings(r: Route, policy: Policy, facts: Facts,
                       pool: "tuple[lookalike.Candidate, ...]") -> list[Finding]:
    if r.kind is RouteKind.FAX:
        return [_external(r.address)] + fax.fax_findings(r, policy)
    if r.kind is RouteKind.INTERNAL:
        return []
    rcpt = r.address
    found = [_external(rcpt)]
    known = rcpt.lower() in facts.delivered_before
    registered = policy.lookup(rcpt) is not None
    if not registered:
        found.append(F.UNREGISTERED_RECIPIENT.finding(
            rcpt, f"アドレス帳に登録されていない社外の宛先です: {rcpt}。宛先に誤りがないか、管理者の確認が必要です。"))
    if not known and not registered:   # registration is the verification: a registered partner is no stranger
        found.append(F.FIRST_TIME_RECIPIENT.finding(rcpt, f"この宛先に送るのは初めてです: {rcpt}。"))
    if not registered and not known:
        found += lookalike.recipient_lookalikes(rcpt, pool)
    found += domain_findings(rcpt, r.domain, facts.domains.get(r.domain))
    return found


def _external(rcpt: str) -> Finding:
    return F.EXTERNAL_RECIPIENT.finding(rcpt, f"社外の宛先です: {rcpt}。送信前に一定時間保留します。")


def visible_recipients(headers) -> list[tuple[str, str]]:
    """(display name, address) in To: and Cc: of a parsed header block, names decoded
    from RFC 2047 (an undecodable name is still a name)."""
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name) or []]
    result = []
    for name, address in getaddresses(values):
        try:
            name = str(make_header(decode_header(name))) if name else ""
        except Exception:
            pass
        result.append((name, address))
    return result
