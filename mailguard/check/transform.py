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

import secrets
from dataclasses import dataclass, field


from .. import findings as F
from ..model import Route, Verdict
from ..policy import Policy
from .content.report import ContentReport
from .encrypt import encrypt_attachments

# Without 0/O, 1/l/I: the sender reads it out on the telephone.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

HIDDEN_HEADERS = (b"to", b"cc")



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
