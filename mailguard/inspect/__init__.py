"""inspect: find the facts about a message that matter for misdelivery.

Receives a stored message, the policy in force and ``Facts`` gathered beforehand
(the queue manager does the I/O: DNS, the send log), and returns findings
(model.Finding): a code the decision table knows, a severity, the recipient or
part it is about, a Japanese explanation and, for near misses, the registered
recipient it probably meant. It decides nothing and changes nothing.

Checks (手引き チェックリスト3-3 3) 4), 事例6):
- recipients: ``external_recipient``, ``unregistered_recipient``, ``first_time_recipient``;
- ``lookalike``: look-alike domains, a registered local part elsewhere, display names;
- ``domains``: NXDOMAIN, no mail host, null MX (DNS);
- ``fax``: FAX numbers at e-mail-to-FAX gateways;
- ``exposure``: many parties visible in To:/Cc:;
- ``content`` (with ``extract`` and ``detect``): personal and sensitive data in
  bodies and attachments, and parts that could not be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from ..model import Finding, QueuedMessage, Severity
from ..policy import Policy, address_key
from . import exposure, fax, lookalike
from .content import ContentReport
from .domains import DomainStatus, domain_findings


@dataclass(frozen=True)
class Facts:
    """What inspection needs from outside the message (lower-cased addresses)."""

    delivered_before: frozenset[str] = frozenset()   # recipients of this message delivered to before
    correspondents: frozenset[str] = frozenset()     # past recipients, for look-alike comparison
    domains: dict[str, DomainStatus] = field(default_factory=dict)
    # lookalike.candidates(policy, correspondents), built once per batch; None: build it here
    candidates: tuple | None = None


def inspect(message: QueuedMessage, policy: Policy, facts: Facts = Facts(),
            content: ContentReport | None = None) -> tuple[Finding, ...]:
    """All findings for ``message`` under ``policy``: recipients in order, then content
    (``content`` comes from ``ContentInspector.scan``, which runs in a worker process)."""
    visible = visible_recipients(message.content or b"")
    pool = facts.candidates if facts.candidates is not None else lookalike.candidates(policy, facts.correspondents)
    findings: list[Finding] = []
    for rcpt in message.envelope.rcpt_tos:
        findings += recipient_findings(rcpt, policy, facts, pool)
    findings += lookalike.display_name_findings(visible, policy)
    findings += exposure.exposure_findings(visible, policy)
    if content is not None:
        findings += content.findings()
        if encryption_targets(message, policy, content) and is_signed(message.content or b""):
            findings.append(Finding(
                "signed_not_encryptable", Severity.HIGH, "署名付きメール",
                "電子署名付きのメールのため、個人情報を含む添付ファイルを暗号化すると署名が壊れます。"
                "変更せずに保留しました。管理者が確認してください。"))
    return tuple(findings)


def encryption_targets(message: QueuedMessage, policy: Policy, content: ContentReport | None) -> list[str]:
    """Top-level attachments that must leave encrypted: personal or sensitive (per policy),
    in a message with at least one recipient outside the organisation."""
    if content is None or not policy.encryption.enabled or not goes_outside(message, policy):
        return []
    return [name for name in content.attachments if content.level_of(name) in policy.encryption.levels]


def is_signed(content: bytes) -> bool:
    """S/MIME or PGP/MIME signed or enveloped (RFC 8551, RFC 3156): altering it breaks the signature."""
    ctype = str(BytesHeaderParser(policy=compat32).parsebytes(content).get("Content-Type", "")).lower()
    return ctype.startswith("multipart/signed") or "pkcs7-mime" in ctype or "multipart/encrypted" in ctype


def goes_outside(message: QueuedMessage, policy: Policy) -> bool:
    """Whether any copy leaves the organisation (by mail or by FAX): only then does content matter."""
    return any(not policy.is_internal(r) or policy.fax_gateway(r) is not None for r in message.envelope.rcpt_tos)


def recipient_findings(rcpt: str, policy: Policy, facts: Facts,
                       pool: "tuple[lookalike.Candidate, ...]") -> list[Finding]:
    # A FAX goes outside whatever domain its gateway has (often an internal one).
    facsimile = fax.parse(rcpt, policy)
    if facsimile is not None:
        return [_external(rcpt)] + fax.fax_findings(facsimile, policy)
    if policy.is_internal(rcpt):
        return []
    findings = [_external(rcpt)]
    known = rcpt.lower() in facts.delivered_before
    registered = policy.lookup(rcpt) is not None
    if not registered:
        findings.append(Finding(
            "unregistered_recipient", Severity.HIGH, rcpt,
            f"アドレス帳に登録されていない社外の宛先です: {rcpt}。宛先に誤りがないか、管理者の確認が必要です。",
        ))
    if not known:
        findings.append(Finding(
            "first_time_recipient", Severity.MEDIUM, rcpt,
            f"この宛先に送るのは初めてです: {rcpt}。",
        ))
    if not registered and not known:
        findings += lookalike.recipient_lookalikes(rcpt, pool)
    domain = address_key(rcpt).rpartition("@")[2]
    findings += domain_findings(rcpt, domain, facts.domains.get(domain))
    return findings


def _external(rcpt: str) -> Finding:
    return Finding("external_recipient", Severity.LOW, rcpt, f"社外の宛先です: {rcpt}。送信前に一定時間保留します。")


def external_domains(message: QueuedMessage, policy: Policy) -> set[str]:
    """Domains whose DNS the checks want: external e-mail recipients, not FAX gateways."""
    return {address_key(r).rpartition("@")[2] for r in message.envelope.rcpt_tos
            if not policy.is_internal(r) and policy.fax_gateway(r) is None}


def visible_recipients(content: bytes) -> list[tuple[str, str]]:
    """(display name, address) in To: and Cc:, names decoded from RFC 2047."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(content)
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name) or []]
    result = []
    for name, address in getaddresses(values):
        try:
            name = str(make_header(decode_header(name))) if name else ""
        except Exception:   # an undecodable name is still a name
            pass
        result.append((name, address))
    return result
