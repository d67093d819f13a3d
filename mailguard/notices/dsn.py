"""dsn: tell a sender that their message did not reach some recipients (Postfix's bounce).

Builds a delivery status notification (RFC 3464, ``multipart/report;
report-type=delivery-status``, RFC 6522) as a new message to the envelope
sender, with the null reverse-path (RFC 5321 §4.5.5) so it can never bounce
back in a loop. Parts:

1. ``text/plain`` in Japanese first, then English: what, to whom, why;
2. ``message/delivery-status``: Reporting-MTA, Arrival-Date, and per recipient
   Final-Recipient, Action, Status (RFC 3463), Remote-MTA, Diagnostic-Code;
3. ``text/rfc822-headers``: the original headers only. The body is not returned:
   care-office mail carries 要配慮個人情報, and a bounce should not copy it again.

No DSN is made for a message whose sender is ``<>`` or for a DSN itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from ..model import Envelope, Origin, QueuedMessage, Submission, new_queue_id
from ..text import one_line

# compat32 is the policy of the email.mime classes; only the line ends change.
SMTP_POLICY = compat32.clone(linesep="\r\n")
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def needs_dsn(message: QueuedMessage) -> bool:
    return bool(message.envelope.mail_from) and message.origin is not Origin.DSN


def status_code(code: int, reply: str) -> str:
    """The RFC 3463 status of a reply: its enhanced code, or one derived from the basic code."""
    match = _ENHANCED.match(reply)
    if match:
        return match.group(1)
    return "5.0.0" if code >= 500 else "4.0.0"


def build(
    message: QueuedMessage,
    failed: dict[str, tuple[int, str]],
    *,
    reason_ja: str,
    remote: str | None,
    hostname: str,
    zone: ZoneInfo,
) -> Submission:
    """A DSN for ``failed`` recipients of ``message``: ``{address: (code, reply text)}``.

    ``reason_ja`` says in one Japanese sentence why (e.g. that the recipient's server refused).
    """
    received = datetime.fromtimestamp(message.received_at, zone)
    report = MIMEMultipart("report", report_type="delivery-status")
    report.attach(MIMEText(_human_text(message, failed, reason_ja, received, hostname), "plain", "utf-8"))
    report.attach(_delivery_status(message, failed, remote, received, hostname))
    report.attach(_original_headers(message))

    queue_id = new_queue_id()
    message_id = make_msgid(idstring=queue_id, domain=hostname)
    subject = "配送できなかったメールのお知らせ (Undelivered Mail Returned to Sender)"
    report["From"] = f"mailguard <MAILER-DAEMON@{hostname}>"
    report["To"] = one_line(message.envelope.mail_from, 320)
    report["Subject"] = Header(subject, "utf-8")
    report["Date"] = format_datetime(datetime.now(zone))
    report["Message-ID"] = message_id
    report["Auto-Submitted"] = "auto-replied"   # RFC 3834: no auto-reply to this
    content = report.as_bytes(policy=SMTP_POLICY)
    return Submission(
        queue_id=queue_id,
        # a sender with a UTF-8 address can only be reached with SMTPUTF8 (RFC 6531)
        envelope=Envelope(mail_from="", rcpt_tos=(message.envelope.mail_from,),
                          smtputf8=not message.envelope.mail_from.isascii()),
        content=content,
        auth_user=None,
        client_addr="127.0.0.1",
        helo=hostname,
        message_id=message_id,
        subject=subject,
        origin=Origin.DSN,
    )


def _human_text(message, failed, reason_ja, received, hostname) -> str:
    lines = [
        "このメールは送信ゲートウェイ mailguard が自動で送信しています。",
        "",
        "お送りいただいた次のメールは、下記の宛先に届けることができませんでした。",
        *reason_ja.splitlines(),
        "",
        f"  件名:     {one_line(message.subject) or '(件名なし)'}",
        f"  受付日時: {received:%Y-%m-%d %H:%M} ({received.tzname()})",
        f"  受付番号: {message.queue_id}",
        "",
        "届かなかった宛先:",
    ]
    for address, (code, reply) in failed.items():
        lines.append(f"  {one_line(address, 320)}")
        lines.append(f"    応答: {code} {one_line(reply, 900)}")
    lines += [
        "",
        "宛先のアドレスに誤りがないか確認してください。",
        "同じ内容を送り直す場合は、宛先を確かめてから新しく送信してください。",
        "",
        "-- ",
        f"This is the mail gateway at {hostname}. Your message {message.queue_id}",
        "could not be delivered to the recipients listed above.",
        "The delivery status report and the original headers are attached;",
        "the original body is not returned.",
    ]
    return "\n".join(lines) + "\n"


def _delivery_status(message, failed, remote, received, hostname) -> Message:
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {hostname}"
    per_message["X-Mailguard-Queue-ID"] = message.queue_id
    per_message["Arrival-Date"] = format_datetime(received)
    blocks = [per_message]
    for address, (code, reply) in failed.items():
        block = Message()
        block["Final-Recipient"] = f"rfc822; {one_line(address, 320)}"
        block["Action"] = "failed"
        block["Status"] = status_code(code, reply)
        if remote and remote != "outbox":
            block["Remote-MTA"] = f"dns; {remote}"
        block["Diagnostic-Code"] = one_line(f"smtp; {code} {reply}", 900)
        blocks.append(block)
    part = Message()
    part.set_type("message/delivery-status")
    part.set_payload(blocks)
    return part


def _original_headers(message: QueuedMessage) -> MIMEText:
    raw = message.content or b""
    end = raw.find(b"\r\n\r\n")
    headers = raw[: end + 2] if end >= 0 else raw
    text = headers.decode("utf-8", "replace").replace("\r\n", "\n")
    return MIMEText(text, "rfc822-headers", "utf-8")
