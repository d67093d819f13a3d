"""transform: change what leaves, as the verdict requires (Postfix's cleanup rewriting).

Receives the message bytes, its routes, the verdict and the content report;
returns ``Transformed``: the bytes to deliver (None: unchanged), the RCPT TO per
recipient where a FAX gateway wants its own form, notes for the send log, and
the generated password (for the sender's notice; never logged).

- ``mass_mail_rewritten``: To: and Cc: are replaced by ``To: undisclosed-recipients:;``
  (RFC 5322 §3.4 group syntax); the envelope is unchanged, so everyone still gets it.
- FAX recipients: ``deliver_to`` from the route (``FAX=+81…@gw`` or ``03…@gw``).
- attachments classified personal or sensitive, when any copy leaves: replaced by
  one AES-256 zip (pyzipper, WinZip AES, UTF-8 names) and a Japanese note saying
  which tools open it (Windows Explorer cannot: error 0x80004005). Attachments are
  the MIME part paths inspection reported, never looked up by file name. Names in
  the zip are made safe for the recipient's PC: base name only, no control or
  bidirectional characters, no reserved Windows names (the note lists changes).
  Password: the key agreed with the recipients in the address book when they all
  share one; otherwise a generated one (PPAP abolished by the government in 2020).

Header surgery works on the raw header block, never re-serialising the message;
encryption necessarily rebuilds the MIME tree (stdlib ``email``). CPU grows with
the number of parts: the caller runs this off the event loop.
On failure: raises; the pipeline holds the message unchanged for a person.
"""

from __future__ import annotations

import io
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from html import escape

import pyzipper

from .. import findings as F
from ..model import Route, Verdict
from ..policy import Policy
from .content import mime
from .content.report import ContentReport

# Without 0/O, 1/l/I: the sender reads it out on the telephone.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

NOTE = (
    "【mailguard より】このメールの添付ファイルは、個人情報を含むため、暗号化 (AES-256) した zip ファイル"
    "「{archive}」にまとめました。パスワードは{how}。\n"
    "※ Windows 標準のエクスプローラーでは AES 暗号化された zip を開けません (エラー 0x80004005)。"
    "7-Zip、Lhaplus、CubeICE などの無料ソフトで開いてください。"
)
HIDDEN_HEADERS = (b"to", b"cc")
_UNSAFE = re.compile(r'[<>:"/\\|?*]')   # not allowed in a Windows file name
_RESERVED = re.compile(r"^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])\s*(\..*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Transformed:
    content: bytes | None = None                              # None: unchanged
    deliver_to: dict[str, str] = field(default_factory=dict)  # envelope recipient → RCPT TO address
    notes: tuple[str, ...] = ()                               # for the send log: never a password
    password: str | None = None                               # generated: to the sender only
    encrypted: tuple[str, ...] = ()                           # names of the attachments put in the zip


def encryption_targets(routes: tuple[Route, ...], policy: Policy, content: ContentReport | None) -> list[str]:
    """MIME part paths of the top-level attachments that must leave encrypted: personal or
    sensitive (per policy), in a message with at least one copy leaving the organisation."""
    if content is None or not policy.encryption.enabled or not any(r.leaves for r in routes):
        return []
    levels = {p.path: p.level for p in content.parts}   # one pass: a message may have 10,000 parts
    return [path for path, _ in content.attachments if levels.get(path, "none") in policy.encryption.levels]


def transform(raw: bytes, routes: tuple[Route, ...], verdict: Verdict, policy: Policy,
              content: ContentReport | None = None) -> Transformed:
    altered = None
    notes: list[str] = []
    password = None
    names: tuple[str, ...] = ()
    targets = encryption_targets(routes, policy, content)
    if targets and not any(f.code == F.SIGNED_NOT_ENCRYPTABLE for f in verdict.findings):
        key = agreed_key(routes, policy)
        password = None if key else generate_password(policy.encryption.password_length)
        altered, names = encrypt_attachments(
            raw, targets, key or password, policy.encryption.archive_name,
            how="事前に取り決めたものです" if key else "送信者から電話など別の方法でお知らせします")
        notes.append(f"attachments encrypted into {policy.encryption.archive_name}: {', '.join(names)}"
                     f" (password: {'agreed key' if key else 'generated, sent to the sender only'})")
    if any(f.code == F.MASS_MAIL_REWRITTEN for f in verdict.findings):
        altered = hide_recipients(altered if altered is not None else raw)
        notes.append("To/Cc hidden (undisclosed-recipients)")
    deliver_to = {r.address: r.deliver_to for r in routes if r.deliver_to}
    notes += [f"{rcpt} -> {address}" for rcpt, address in deliver_to.items()]
    return Transformed(altered, deliver_to, tuple(notes), password, names)


def agreed_key(routes: tuple[Route, ...], policy: Policy) -> str | None:
    """The key agreed with the recipients whose copies leave, if they all share one."""
    keys = set()
    for r in routes:
        if r.leaves:
            entry = policy.lookup(r.address)
            keys.add(getattr(entry, "key", None))
    return keys.pop() if len(keys) == 1 and None not in keys else None


def generate_password(length: int) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def safe_name(name: str, fallback: str = "添付ファイル") -> str:
    """A file name that cannot escape or deceive on the recipient's PC: base name only
    (``/`` and ``\\``), no control, bidirectional or reserved characters, no reserved
    Windows device name (CON, NUL, COM1 …), no leading dots, at most 150 characters."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    base = "".join(ch if mime.printable(ch) else "_" for ch in base)   # controls, bidi, zero-width
    base = _UNSAFE.sub("_", base).strip(" .")
    if _RESERVED.match(base):
        base = "_" + base
    if len(base) > 150:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 150 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else base[:150]
    return base or fallback


def encrypt_attachments(raw: bytes, paths: list[str], password: str, archive_name: str, *,
                        how: str) -> tuple[bytes, tuple[str, ...]]:
    """Replace the attachments at MIME part ``paths`` with one AES-256 zip and add the note.
    Returns the new bytes and the names used inside the zip. Raises ValueError when a
    path is not in the message (never send in the clear what had to be encrypted)."""
    msg: EmailMessage = message_from_bytes(raw, policy=default)
    wanted = set(paths)
    files: list[tuple[str, str, bytes]] = []    # (name as sent, name in zip, data)
    for path, container in list(mime.containers(msg)):
        children = container.get_payload()
        kept = []
        for index, child in enumerate(children, 1):
            if mime.child_path(path, index) in wanted:
                files.append(_member(child, mime.child_path(path, index)))
            else:
                kept.append(child)
        if len(kept) != len(children):
            container.set_payload(kept)
    if len(files) != len(wanted):
        raise ValueError(f"attachments to encrypt not found at parts: {sorted(wanted)}")
    used: set[str] = set()
    renamed = []
    archive = io.BytesIO()
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for original, name, data in files:
            stem, dot, ext = name.rpartition(".")
            unique, n = name, 1
            while unique.lower() in used:   # two attachments of the same name
                n += 1
                unique = f"{stem}({n}).{ext}" if dot else f"{name}({n})"
            used.add(unique.lower())
            if unique != original:
                renamed.append(f"「{_shown(original)}」→「{unique}」")
            zf.writestr(unique, data)
    note = NOTE.format(archive=archive_name, how=how)
    if renamed:
        note += "\n安全のため、次のファイル名を変えて zip に入れました: " + "、".join(renamed[:20])
    _add_note(msg, note)
    msg.add_attachment(archive.getvalue(), maintype="application", subtype="zip", filename=archive_name)
    return msg.as_bytes(policy=SMTP), tuple(name for _, name, _ in files)


def _shown(name: str) -> str:
    """An original name as the note may show it: its hidden characters made visible (U+202E …)."""
    return "".join(ch if mime.printable(ch) else f"<U+{ord(ch):04X}>" for ch in name[:100])


def _member(part, path: str) -> tuple[str, str, bytes]:
    original = mime.raw_attachment_name(part) or f"添付ファイル{path}"
    if part.get_content_type() == "message/rfc822":   # a forwarded message, whole
        payload = part.get_payload()
        data = payload[0].as_bytes(policy=SMTP) if isinstance(payload, list) and payload else b""
        name = original if original.lower().endswith(".eml") else original + ".eml"
    else:
        data = part.get_payload(decode=True) or b""
        name = original
    return original, safe_name(name), data


def _add_note(msg: EmailMessage, note: str) -> None:
    """The note at the end of the text body (and the HTML one), or as its own part."""
    plain = _body(msg, "plain")
    if plain is not None:
        text = plain.get_content().rstrip("\n")
        plain.set_content(f"{text}\n\n{note}\n", charset="utf-8")
    html = _body(msg, "html")
    if html is not None:
        markup = html.get_content()
        block = f"<p>{escape(note).replace(chr(10), '<br>')}</p>"
        markup = markup.replace("</body>", block + "</body>") if "</body>" in markup else markup + block
        html.set_content(markup, subtype="html", charset="utf-8")
    if plain is None and html is None:
        if not msg.is_multipart():
            msg.make_mixed()
        msg.attach(_note_part(note))


def _body(msg: EmailMessage, subtype: str):
    """The body part of ``subtype`` whose text can be read; a body in an unknown or lying
    charset is left as it is (the note then goes in a part of its own)."""
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        part.get_content()
    except (LookupError, UnicodeError, KeyError):
        return None
    return part


def _note_part(note: str) -> EmailMessage:
    part = EmailMessage()
    part.set_content(note, charset="utf-8", disposition="inline")
    return part


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
