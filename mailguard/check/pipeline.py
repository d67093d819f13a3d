"""pipeline: one message through inspect → decide → transform → notices, the same everywhere.

``assess`` is the only place the stages are put together: the queue manager
runs it for every accepted message and ``mailguard scan`` runs it for a file,
so the same message with the same facts gets the same verdict in both.

Receives the stored message, its routes (``route``), the policy in force, the
``Facts`` gathered beforehand (DNS, past recipients) and the content report
(from the worker pool; None when no copy leaves). Hands on an ``Assessment``:
findings and verdict, the state to store, the transformed message, and the
notices to queue with it.

Fault isolation (as Postfix's qmgr isolates a bad queue file): whatever one
stage raises for this message makes it wait for a manager with a finding that
says what failed (``inspection_failed`` / ``processing_failed``), unchanged; a
notice that cannot be built never blocks the message's own decision. Nothing
here raises for a bad message. CPU grows with the message: run it off the loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from email.policy import compat32

from .. import findings as F
from ..model import (Action, Finding, Origin, Provision, QueuedMessage, Route, RouteKind, State, Submission,
                     Verdict)
from ..notices import compose
from ..policy import Policy
from ..settings import Settings
from ..text import decode_words, one_line
from .content.report import ContentReport
from .decide import STATE_FOR, decide
from .recipients import Facts, check_recipients, visible_recipients
from .link import LinkContext
from .transform import Transformed, protection_needed, transform

log = logging.getLogger("mailguard.check")

HELD = (State.DELAYED, State.AWAITING_CONFIRMATION, State.AWAITING_APPROVAL)
STAGE_LABELS = {"inspect": "検査", "decide": "判定", "transform": "送信前の変換 (添付ファイルの暗号化など)",
                "notice": "送信者への通知の作成", "store": "判定結果の保存",
                "password": "暗号化した添付ファイルのパスワードやダウンロードのパスコードの通知"}
# After these, the message is held unchanged: approving it sends what the sender sent, as it is.
UNPROTECTED_IF_APPROVED = ("transform", "password", "store")


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    state: State
    transformed: Transformed = field(default_factory=Transformed)
    notices: tuple[Submission, ...] = ()
    failures: tuple[str, ...] = ()        # "stage: ExceptionType: text", for the log
    provision: Provision | None = None    # for the provision record of each external delivery

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.verdict.findings


def failure_finding(stage: str, subject: str, why: str = "") -> Finding:
    """What a person sees when a stage failed for this message (never the exception text)."""
    code = F.INSPECTION_FAILED if stage == "inspect" else F.PROCESSING_FAILED
    text = why or f"{STAGE_LABELS.get(stage, stage)}の途中でエラーが発生したため、自動では送信しません。"
    text += "管理者が内容を確認してください。"
    if stage in UNPROTECTED_IF_APPROVED:
        text += "承認すると、添付ファイルは暗号化されずに、送信者が送ったとおりに送信されます。"
    return code.finding(subject, text)


def held_for_failure(message: QueuedMessage, stage: str, findings: tuple[Finding, ...] = (),
                     failures: tuple[str, ...] = (), why: str = "") -> Assessment:
    """The safe outcome for a message a stage failed on: unchanged, waiting for a manager."""
    verdict = Verdict(Action.APPROVAL, None, (failure_finding(stage, message.queue_id, why), *findings))
    return Assessment(verdict, State.AWAITING_APPROVAL, failures=failures)


def assess(message: QueuedMessage, routes: tuple[Route, ...], policy: Policy, facts: Facts,
           content: ContentReport | None, settings: Settings) -> Assessment:
    """The whole decision on one message, with what its external deliveries will provide
    (``provision``: kept even when the message is held for a failure, for it may be approved).
    Never raises for a bad message."""
    assessment = _assess(message, routes, policy, facts, content, settings)
    try:
        provision = content.provision() if content is not None else None
    except Exception as exc:
        _failed(message, "provision", exc)
        provision = None
    return replace(assessment, provision=provision) if provision else assessment


def _assess(message: QueuedMessage, routes: tuple[Route, ...], policy: Policy, facts: Facts,
            content: ContentReport | None, settings: Settings) -> Assessment:
    if message.origin is not Origin.SMTP:   # our own DSNs and notices go straight out
        return Assessment(Verdict(Action.DELIVER, None, ()), State.READY)
    failures: list[str] = []
    raw = message.content or b""
    try:
        found = tuple(inspect(raw, routes, policy, facts, content, links_on=settings.download_base is not None))
    except Exception as exc:
        failures.append(_failed(message, "inspect", exc))
        return held_for_failure(message, "inspect", failures=tuple(failures))
    try:
        verdict = decide(found, policy, received_at=message.received_at, hold_delay=settings.hold_delay)
    except Exception as exc:
        failures.append(_failed(message, "decide", exc))
        return held_for_failure(message, "decide", found, tuple(failures))
    try:
        transformed = transform(raw, routes, verdict, policy, content, link_context(message, raw, policy, settings))
    except Exception as exc:
        failures.append(_failed(message, "transform", exc))
        return held_for_failure(message, "transform", verdict.findings, tuple(failures))
    state = STATE_FOR[verdict.action]
    if state is State.AWAITING_CONFIRMATION and not (message.envelope.mail_from and settings.console_url
                                                     and policy.hold.notify_sender):
        state = State.AWAITING_APPROVAL   # a sender who cannot be asked cannot confirm: a manager looks instead
    notices: list[Submission] = []
    secret = transformed.password or transformed.passcode
    if secret is not None and state is not State.REJECTED:
        if not password_recipient_ok(message, policy):
            return held_for_failure(message, "password", verdict.findings, tuple(failures), why=(
                "添付ファイルを暗号化しましたが、生成したパスワードを安全に知らせる相手がいません "
                "(送信者のアドレスが空か、組織外のアドレスで認証もされていません)。"))
        try:
            if transformed.password:
                notices.append(compose.password(message, [r.address for r in routes if r.leaves],
                                                list(transformed.encrypted), transformed.password,
                                                policy.encryption.archive_name, settings))
            if transformed.passcode:
                notices.append(compose.linked(message, transformed.link_recipients, transformed.linked,
                                              transformed.passcode, settings))
        except Exception as exc:
            # Without its password the recipient could not open the zip or the link: hold instead.
            failures.append(_failed(message, "password", exc))
            return held_for_failure(message, "password", verdict.findings, tuple(failures))
        notices = [n for n in notices if n is not None]
    if transformed.link_recipients and not transformed.passcode and state is not State.REJECTED:
        notices += _linked_notice(message, transformed, settings, failures)   # the sender's way to revoke
    notices += _state_notices(message, verdict, state, policy, settings, failures)
    return Assessment(verdict, state, transformed, tuple(notices), tuple(failures))


def link_context(message: QueuedMessage, raw: bytes, policy: Policy, settings: Settings) -> LinkContext | None:
    """What the recipients' notes need; None when link delivery is off (no download listener)."""
    if settings.download_base is None:
        return None
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    sender = one_line(decode_words(headers.get("From", "")), 200) or message.envelope.mail_from or "(不明)"
    return LinkContext(settings.download_base, message.queue_id, sender, policy.organisation.name,
                       max(1, round(settings.link_lifetime / 86400)))


def _linked_notice(message: QueuedMessage, transformed: Transformed, settings: Settings,
                   failures: list[str]) -> list[Submission]:
    try:
        notice = compose.linked(message, transformed.link_recipients, transformed.linked, None, settings)
    except Exception as exc:   # the links work without it; the sender revokes from the console
        failures.append(_failed(message, "notice", exc))
        return []
    return [notice] if notice is not None else []


def password_recipient_ok(message: QueuedMessage, policy: Policy) -> bool:
    """Whether a generated password may go to the envelope sender: an address of the office's
    own, or the authenticated user's own (smtpd checked it). Never outside: that would be PPAP."""
    sender = message.envelope.mail_from
    return bool(sender) and (message.auth_user is not None or policy.is_internal(sender))


def inspect(raw: bytes, routes: tuple[Route, ...], policy: Policy, facts: Facts,
            content: ContentReport | None, *, links_on: bool = False) -> list[Finding]:
    """Every finding: recipients (envelope, then what To:/Cc: show), then content."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    found = check_recipients(routes, visible_recipients(headers), policy, facts)
    if content is not None:
        found += _link_unscannable(content, routes, policy, links_on)
        if protection_needed(routes, policy, content) and is_signed(headers):
            found.append(F.SIGNED_NOT_ENCRYPTABLE.finding(
                "署名付きメール", "電子署名付きのメールのため、個人情報を含む添付ファイルを暗号化すると署名が壊れます。"
                                "変更せずに保留しました。管理者が確認してください。"))
    return found


def _link_unscannable(content: ContentReport, routes: tuple[Route, ...], policy: Policy,
                      links_on: bool) -> list[Finding]:
    """The content findings, where ``[protection] unscannable = "link"`` lets attachments that could
    not be inspected leave behind a link: only when every copy that leaves goes by e-mail to a
    registered partner and each such item is an attachment (not the whole message)."""
    found = content.findings()
    if not (links_on and policy.protection.unscannable == "link" and content.unscannable
            and all(u.attachment for u in content.unscannable)):
        return found
    leaving = [r for r in routes if r.leaves]
    if not leaving or any(r.kind is not RouteKind.EXTERNAL or policy.lookup(r.address) is None for r in leaving):
        return found
    return [F.UNSCANNABLE_LINKED.finding(f.subject, f.text.replace(
                "内容を人が確認する必要があります。", "登録済みの宛先なので、ダウンロードリンクで保護して送ります。"))
            if f.code == F.UNSCANNABLE_CONTENT else f for f in found]


def is_signed(headers) -> bool:
    """S/MIME or PGP/MIME signed or enveloped (RFC 8551, RFC 3156): altering it breaks the signature."""
    ctype = str(headers.get("Content-Type", "")).lower()
    return ctype.startswith("multipart/signed") or "pkcs7-mime" in ctype or "multipart/encrypted" in ctype


def _state_notices(message: QueuedMessage, verdict: Verdict, state: State, policy: Policy,
                   settings: Settings, failures: list[str]) -> list[Submission]:
    """The held notice or the rejection DSN; one that cannot be built is logged and left out."""
    try:
        if state is State.REJECTED:
            notice = compose.rejected(message, "送信ポリシーにより送信を中止しました", settings)
        elif state in HELD and policy.hold.notify_sender:
            notice = compose.held(message, verdict, settings)
        else:
            notice = None
    except Exception as exc:
        failures.append(_failed(message, "notice", exc))
        return []
    return [notice] if notice is not None else []


def _failed(message: QueuedMessage, stage: str, exc: Exception) -> str:
    log.error("%s: %s failed; the message waits for a manager: %s: %s",
              message.queue_id, stage, type(exc).__name__, exc, exc_info=exc)
    return f"{stage}: {type(exc).__name__}: {str(exc)[:300]}"
