"""inspect: find the facts about a message that matter for misdelivery.

Receives a stored message (envelope, content) and the policy in force; returns a
tuple of findings (model.Finding), each with a code the decision table knows, a
severity, the recipient or part it is about, and a Japanese explanation. It
decides nothing and changes nothing.

Checks (手引き チェックリスト3-3 3) 4)):
- ``external_recipient``: a recipient outside the organisation's domains;
- ``unregistered_recipient``: an external recipient not in the address book.
"""

from __future__ import annotations

from .model import Finding, QueuedMessage, Severity
from .policy import Policy


def inspect(message: QueuedMessage, policy: Policy) -> tuple[Finding, ...]:
    """All findings for ``message`` under ``policy``, in recipient order."""
    return recipient_findings(message.envelope.rcpt_tos, policy)


def recipient_findings(recipients: tuple[str, ...], policy: Policy) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    for rcpt in recipients:
        if policy.is_internal(rcpt):
            continue
        findings.append(Finding(
            "external_recipient", Severity.LOW, rcpt,
            f"社外の宛先です: {rcpt}。送信前に一定時間保留します。",
        ))
        entry = policy.lookup(rcpt)
        if entry is None:
            findings.append(Finding(
                "unregistered_recipient", Severity.HIGH, rcpt,
                f"アドレス帳に登録されていない社外の宛先です: {rcpt}。"
                "宛先に誤りがないか、管理者の確認が必要です。",
            ))
    return tuple(findings)
