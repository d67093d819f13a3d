"""mime: one numbering of a message's MIME parts, shared by inspection and transform.

A part is named by its path, as IMAP numbers body parts (RFC 3501 §6.4.5):
the children of the top-level multipart are ``1``, ``2``, …; their children
``1.1``, ``1.2``, …; a single-part message is ``1``. Inspection reports
attachments by path and transform replaces exactly those paths, so a file name
(which may be missing, repeated, raw UTF-8 or a broken RFC 2047 word) never
decides which part is protected. A forwarded message (``message/rfc822``) is
one part here: its insides belong to it. Walks are iterative: a message nested
thousands deep cannot exhaust the stack.
"""

from __future__ import annotations

import base64
import quopri
import unicodedata
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from typing import Iterator

from ...text import decode_words as header_text



def child_path(parent: str, index: int) -> str:
    return f"{parent}.{index}" if parent else str(index)


def is_container(part: Message) -> bool:
    """A multipart we descend into (a forwarded message is a leaf: it travels whole)."""
    return part.is_multipart() and part.get_content_type() != "message/rfc822"


def containers(msg: Message) -> Iterator[tuple[str, Message]]:
    """Every multipart container with its path (the root is ``""``), parents first."""
    stack = [("", msg)]
    while stack:
        path, part = stack.pop()
        if not is_container(part):
            continue
        yield path, part
        children = part.get_payload()
        for index in range(len(children), 0, -1):
            stack.append((child_path(path, index), children[index - 1]))


def leaves(msg: Message) -> Iterator[tuple[str, Message]]:
    """Every leaf part (and every forwarded message, whole) with its path, in order."""
    if not is_container(msg):
        yield "1", msg
        return
    for path, container in containers(msg):
        for index, child in enumerate(container.get_payload(), 1):
            if not is_container(child):
                yield child_path(path, index), child


def is_body_text(part: Message) -> bool:
    """Body text, not an attachment: text/*, no file name, not ``Content-Disposition: attachment``.
    Inspection reads these as 本文; link delivery moves them as 本文."""
    return (part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment"
            and not attachment_name(part))


def depth(path: str) -> int:
    return path.count(".") + 1 if path else 0


def attachment_name(part: Message) -> str | None:
    """A part's file name, decoded (RFC 2231, and the RFC 2047 words Japanese mailers use),
    with control and bidirectional-override characters removed. None when it has none."""
    name = raw_attachment_name(part)
    return (printable(name) or None) if name else None


def raw_attachment_name(part: Message) -> str | None:
    """The file name as the sender's program wrote it (decoded, nothing removed): for telling
    the recipient when the name had to change."""
    try:
        filename = part.get_filename()
    except Exception:
        return None
    return header_text(filename) if filename else None


def printable(text: str) -> str:
    """``text`` without control characters (C0, C1), format characters (bidirectional
    overrides and marks, zero-width) and line or paragraph separators (Unicode Cc, Cf, Zl, Zp)."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs"))


def forwarded_message(part: Message) -> Message:
    """The forwarded message. One sent in base64 or quoted-printable (RFC 2046 §5.2.1 forbids
    it, mailers do it) was parsed as encoded text: decode it and parse again."""
    payload = part.get_payload()
    if not payload:
        raise ValueError("empty message/rfc822")
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        encoded = payload[0].as_bytes(policy=compat32)
        decoded = base64.b64decode(encoded) if encoding == "base64" else quopri.decodestring(encoded)
        return message_from_bytes(decoded, policy=compat32)
    return payload[0]
