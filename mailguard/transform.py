"""transform: change what leaves, as the verdict requires (Postfix's cleanup rewriting).

Receives a decided message and its verdict; returns what to store for delivery:

- ``mass_mail_rewritten``: the To: and Cc: headers are replaced by
  ``To: undisclosed-recipients:;`` (RFC 5322 §3.4 group syntax) so recipients
  cannot see each other; the envelope is unchanged, so everyone still gets it.
  The original is kept in the store for review.
- FAX recipients: the address to give the gateway, in its own form
  (``FAX=+81…@gw`` or ``03…@gw``), as ``deliver_to``.

Header surgery works on the raw header block, never re-serialising the message,
so bodies, encodings and MIME structure leave exactly as they came.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .inspect import fax
from .model import QueuedMessage, Verdict
from .policy import Policy

HIDDEN_HEADERS = (b"to", b"cc")


@dataclass(frozen=True)
class Transformed:
    content: bytes | None = None                          # None: unchanged
    deliver_to: dict[str, str] = field(default_factory=dict)   # envelope recipient → RCPT TO address
    notes: tuple[str, ...] = ()


def transform(message: QueuedMessage, verdict: Verdict, policy: Policy) -> Transformed:
    content = None
    notes = []
    if any(f.code == "mass_mail_rewritten" for f in verdict.findings):
        content = hide_recipients(message.content or b"")
        notes.append("To/Cc hidden (undisclosed-recipients)")
    deliver_to = {}
    for rcpt in message.envelope.rcpt_tos:
        target = fax.parse(rcpt, policy)
        if target is not None and target.e164 is not None:
            address = fax.gateway_address(target)
            if address != rcpt:
                deliver_to[rcpt] = address
                notes.append(f"{rcpt} -> {address}")
    return Transformed(content, deliver_to, tuple(notes))


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
