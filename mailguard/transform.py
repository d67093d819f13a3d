"""transform: change what leaves, as the verdict requires (Postfix's cleanup rewriting).

Receives a decided message and its verdict; returns what to store for delivery:

- ``mass_mail_rewritten``: the To: and Cc: headers are replaced by
  ``To: undisclosed-recipients:;`` (RFC 5322 §3.4 group syntax) so recipients
  cannot see each other; the envelope is unchanged, so everyone still gets it.
  The original is kept in the store for review.
- FAX recipients: the address to give the gateway, in its own form
  (``FAX=+81…@gw`` or ``03…@gw``), as ``deliver_to``.
- attachments classified personal or sensitive, when any copy leaves the
  organisation: replaced by one AES-256 zip (pyzipper, WinZip AES, UTF-8 names)
  and a Japanese note in the body saying which tools open it (Windows Explorer
  cannot: error 0x80004005). Password: the key agreed with the recipient in the
  address book when every external recipient shares one; otherwise a generated
  one, sent only to the sender in a separate notice (never to the recipient:
  PPAP was abolished by the government in 2020). The password is never logged.

Header surgery works on the raw header block, never re-serialising the message,
so bodies, encodings and MIME structure leave exactly as they came; encryption
necessarily rebuilds the MIME tree (stdlib ``email``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import io
import secrets
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid
from html import escape

import pyzipper

from .inspect import encryption_targets, fax
from .inspect.extract import attachment_name
from .inspect.content import ContentReport
from .model import Envelope, Origin, QueuedMessage, Submission, Verdict, new_queue_id
from .policy import Policy
from .settings import Settings

# Without 0/O, 1/l/I: the sender reads it out on the telephone.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

NOTE = (
    "【mailguard より】このメールの添付ファイルは、個人情報を含むため、暗号化 (AES-256) した zip ファイル"
    "「{archive}」にまとめました。パスワードは{how}。\n"
    "※ Windows 標準のエクスプローラーでは AES 暗号化された zip を開けません (エラー 0x80004005)。"
    "7-Zip、Lhaplus、CubeICE などの無料ソフトで開いてください。"
)

HIDDEN_HEADERS = (b"to", b"cc")


@dataclass(frozen=True)
class Transformed:
    content: bytes | None = None                          # None: unchanged
    deliver_to: dict[str, str] = field(default_factory=dict)   # envelope recipient → RCPT TO address
    notes: tuple[str, ...] = ()                           # for the send log: never a password
    notice: Submission | None = None                      # the generated password, to the sender


def transform(message: QueuedMessage, verdict: Verdict, policy: Policy,
              content: ContentReport | None = None, settings: Settings | None = None) -> Transformed:
    altered = None                 # the message bytes to deliver, when they change
    notes = []
    notice = None
    targets = encryption_targets(message, policy, content)
    if targets and not any(f.code == "signed_not_encryptable" for f in verdict.findings):
        key = agreed_key(message, policy)
        password = key or generate_password(policy.encryption.password_length)
        altered = encrypt_attachments(message.content or b"", targets, password, policy.encryption.archive_name,
                                      how="事前に取り決めたものです" if key else "送信者から電話など別の方法でお知らせします")
        notes.append(f"attachments encrypted into {policy.encryption.archive_name}: {', '.join(targets)}"
                     f" (password: {'agreed key' if key else 'generated, sent to the sender only'})")
        if not key and settings is not None and message.envelope.mail_from:
            notice = password_notice(message, targets, password, policy, settings)
    if any(f.code == "mass_mail_rewritten" for f in verdict.findings):
        altered = hide_recipients(altered if altered is not None else message.content or b"")
        notes.append("To/Cc hidden (undisclosed-recipients)")
    deliver_to = {}
    for rcpt in message.envelope.rcpt_tos:
        target = fax.parse(rcpt, policy)
        if target is not None and target.e164 is not None:
            address = fax.gateway_address(target)
            if address != rcpt:
                deliver_to[rcpt] = address
                notes.append(f"{rcpt} -> {address}")
    return Transformed(altered, deliver_to, tuple(notes), notice)


def agreed_key(message: QueuedMessage, policy: Policy) -> str | None:
    """The key agreed with the external recipients, if they all share one."""
    keys = set()
    for rcpt in message.envelope.rcpt_tos:
        if policy.is_internal(rcpt) and policy.fax_gateway(rcpt) is None:
            continue
        entry = policy.lookup(rcpt)
        keys.add(entry.key if entry is not None else None)
    return keys.pop() if len(keys) == 1 and None not in keys else None


def generate_password(length: int) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def encrypt_attachments(raw: bytes, names: list[str], password: str, archive_name: str, *, how: str) -> bytes:
    """Replace the named attachments with one AES-256 zip and add the note to the body."""
    msg: EmailMessage = message_from_bytes(raw, policy=default)
    files: list[tuple[str, bytes]] = []
    for part in list(msg.walk()):
        if not part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        kept = []
        for child in part.get_payload():
            name = attachment_name(child)
            if name in names:
                if child.get_content_type() == "message/rfc822":   # a forwarded message, whole
                    data = child.get_payload(0).as_bytes(policy=SMTP)
                    name = name if name.lower().endswith(".eml") else name + ".eml"
                else:
                    data = child.get_payload(decode=True) or b""
                files.append((name, data))
            else:
                kept.append(child)
        part.set_payload(kept)
    found = {n for n, _ in files} | {n.removesuffix(".eml") for n, _ in files}
    missing = set(names) - found
    if missing:
        # Never send in the clear what had to be encrypted: the caller holds the message.
        raise ValueError(f"attachments to encrypt not found: {sorted(missing)}")
    archive = io.BytesIO()
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        used: set[str] = set()
        for name, data in files:
            while name in used:   # two attachments of the same name
                name = "_" + name
            used.add(name)
            zf.writestr(name, data)
    _add_note(msg, NOTE.format(archive=archive_name, how=how))
    msg.add_attachment(archive.getvalue(), maintype="application", subtype="zip", filename=archive_name)
    return msg.as_bytes(policy=SMTP)


def _add_note(msg: EmailMessage, note: str) -> None:
    plain = msg.get_body(preferencelist=("plain",))
    if plain is not None:
        text = plain.get_content().rstrip("\n")
        plain.set_content(f"{text}\n\n{note}\n", charset="utf-8")
    html = msg.get_body(preferencelist=("html",))
    if html is not None:
        markup = html.get_content()
        block = f"<p>{escape(note).replace(chr(10), '<br>')}</p>"
        markup = markup.replace("</body>", block + "</body>") if "</body>" in markup else markup + block
        html.set_content(markup, subtype="html", charset="utf-8")
    if plain is None and html is None:
        msg.add_attachment(note, subtype="plain", charset="utf-8", disposition="inline")


def password_notice(message: QueuedMessage, names: list[str], password: str, policy: Policy,
                    settings: Settings) -> Submission:
    """The generated password, for the sender's eyes only."""
    external = [r for r in message.envelope.rcpt_tos if not policy.is_internal(r) or policy.fax_gateway(r)]
    notice = EmailMessage()
    notice["From"] = f"mailguard <postmaster@{settings.hostname}>"
    notice["To"] = message.envelope.mail_from
    notice["Subject"] = f"【mailguard】暗号化した添付ファイルのパスワード ({message.subject or '件名なし'})"
    notice["Date"] = format_datetime(datetime.now(settings.zone))
    queue_id = new_queue_id()
    notice["Message-ID"] = make_msgid(idstring=queue_id, domain=settings.hostname)
    notice["Auto-Submitted"] = "auto-generated"
    notice.set_content("\n".join([
        "このメールは送信ゲートウェイ mailguard が自動で送信しています。",
        "",
        f"件名「{message.subject}」(受付番号 {message.queue_id}) の添付ファイルに個人情報が含まれていたため、",
        f"暗号化した zip ファイル「{policy.encryption.archive_name}」にまとめて送ります。",
        "",
        f"  宛先:       {', '.join(external)}",
        f"  ファイル:   {', '.join(names)}",
        f"  パスワード: {password}",
        "",
        "パスワードは、電話など、メール以外の方法で相手にお伝えください。",
        "パスワードを別のメールで送ると、誤送信のときに一緒に漏れてしまいます",
        "(パスワード付き zip とパスワードを続けてメールで送る方法 (PPAP) は、2020年に政府が廃止しました)。",
        "よく送る相手とは、パスワードを事前に取り決めてアドレス帳に登録すると、この手間がなくなります。",
    ]) + "\n", charset="utf-8")
    return Submission(queue_id=queue_id, envelope=Envelope("", (message.envelope.mail_from,)),
                      content=notice.as_bytes(policy=SMTP), auth_user=None, client_addr="127.0.0.1",
                      helo=settings.hostname, message_id=notice["Message-ID"], subject=str(notice["Subject"]),
                      origin=Origin.NOTICE)


def hide_recipients(content: bytes) -> bytes:
    """Drop To: and Cc: (with their folded lines) and add ``To: undisclosed-recipients:;``."""
    end = content.find(b"\r\n\r\n")
    head, body = (content[: end + 2], content[end + 2:]) if end >= 0 else (content, b"")
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):      # continuation of the previous header
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = name in HIDDEN_HEADERS
        if not skipping:
            kept.append(line)
    head = b"\r\n".join(kept).rstrip(b"\r\n") + b"\r\nTo: undisclosed-recipients:;\r\n"
    return head + body
