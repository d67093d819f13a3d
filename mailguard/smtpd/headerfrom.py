"""headerfrom: the header From: of an authenticated user's message must be theirs.

MAIL FROM is checked at MAIL (Postfix ``reject_sender_login_mismatch``), but
recipients see the header From: (RFC 5322 §3.6.2). A staff member who writes
``From: 施設長 <manager@…>`` with ``Reply-To: attacker@…`` would impersonate the
manager, so for an authenticated session every From: address must be one the
user owns (``users.User.owns``: their own or a shared office address listed for
them); so must a Sender: the message already has.

What counts as "an address in From:" is read two ways, and both must agree:
- the addresses the RFC 5322 parser finds (all of them: a From: may list
  several mailboxes, or a group); there must be exactly one From: field;
- anything that looks like an address anywhere in the field's text after
  RFC 2047 decoding and NFKC normalisation (so ``＠`` is ``@``): in the display
  name (``"manager@…" <staff@…>``), in a comment, or where parsers disagree
  (``staff@… <manager@…>``). Only ``local@dotted.domain`` counts, so the
  common Japanese display name ``山田＠営業部`` passes. A display name that
  merely is someone else's name cannot be told from a real one and is not judged.

MAILGUARD_HEADER_FROM_CHECK=reject (default) refuses such a message with
``553 5.7.1``; ``sender`` accepts it and puts ``Sender: <MAIL FROM>`` in place
of any Sender: it had (RFC 5322 §3.6.2: the mailbox of the agent responsible for
the transmission), so the recipient's client shows "sent by … on behalf of …".

The reply is ASCII: RFC 5321 §4.2 reply text is read by mail clients that do not
all decode UTF-8 (Outlook, multifunction printers), and an SMTPUTF8 client may
still show it raw. So the reply gives the reason in English and, on a second
line, in romanised Japanese; the log line gives it in Japanese. Mail clients
keep the refused message in the outbox with the error shown, so no separate
notice mail is sent for a message that was never accepted.
Messages without AUTH (trusted networks: printers, FAX gateways) are not checked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.policy import default as default_policy

from ..text import decode_words, one_line
from ..users import User

_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)
_FOLD = re.compile(rb"\r\n(?=[ \t])")
# Something a reader would take for an address: no spaces or delimiters around one "@",
# and a dotted domain ("山田＠営業部", a common display name in Japan, is not one).
_ATOM = r"[^\s<>()\[\]\",;:@\\]+"
_LABEL = r"[^\s<>()\[\]\",;:@\\.]+"
_ADDRESS_LIKE = re.compile(rf"{_ATOM}@(?:{_LABEL}\.)+{_LABEL}")

EXPLANATION_JA = ("差出人 (From) にご自分以外のアドレスは使えません。"
                  "ご自分のアドレスで送り直してください。")
EXPLANATION_ROMAJI = ("Sashidashinin (From) ni jibun igai no adoresu wa tsukaemasen."
                      " Jibun no adoresu de okuri naoshite kudasai.")


@dataclass(frozen=True)
class Mismatch:
    """Why the message's From:/Sender: is not the user's, in English (ASCII) for the reply."""

    field: str
    reason: str

    def reply(self, user: User) -> str:
        return (f"553-5.7.1 Header {self.field}: {self.reason}: not an address of user {_ascii(user.username)}"
                f" (RFC 5322 section 3.6.2)\r\n553 5.7.1 {EXPLANATION_ROMAJI}")


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header section's fields as (lower-case name, unfolded value), in order."""
    end = raw.find(b"\r\n\r\n")
    block = raw if end < 0 else raw[:end]
    fields = []
    for line in _FOLD.sub(b"", block).split(b"\r\n"):
        match = _FIELD.match(line)
        if match:
            fields.append((match.group(1).decode("ascii").lower(),
                           match.group(2).decode("utf-8", "replace").strip()))
    return fields


def check(raw: bytes, user: User) -> Mismatch | None:
    """None if every From: and Sender: address of ``raw`` is the user's."""
    fields = header_fields(raw)
    froms = [value for name, value in fields if name == "from"]
    if len(froms) > 1:
        return Mismatch("From", f"{len(froms)} From: fields (RFC 5322 section 3.6 allows one)")
    for name, value in fields:
        if name in ("from", "sender"):
            problem = _foreign(value, user, single=name == "sender")
            if problem:
                return Mismatch(name.capitalize(), problem)
    return None


def _foreign(value: str, user: User, *, single: bool) -> str | None:
    parsed = default_policy.header_factory("sender" if single else "from", value)
    addresses = [a.addr_spec for a in parsed.addresses]
    if not addresses or any(not a or a == "<>" for a in addresses):
        return "no address could be read"
    for address in addresses:
        if not user.owns(address):
            return f"<{_ascii(address)}>"
    text = unicodedata.normalize("NFKC", decode_words(value))
    for seen in _ADDRESS_LIKE.findall(text):
        if not user.owns(seen):
            return f"<{_ascii(seen)}> appears in the field"
    return None


def with_sender(raw: bytes, address: str) -> bytes:
    """``raw`` with its Sender: fields removed and ``Sender: <address>`` put first."""
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[:end + 2], raw[end + 2:])
    kept, skipping = [], False
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == b"sender"
        if not skipping:
            kept.append(line)
    sender = f"Sender: <{one_line(address, 320)}>".encode()
    return b"\r\n".join([sender, *kept]) + b"\r\n" + body


def _ascii(text: str) -> str:
    """A value from the message made safe for an ASCII reply line."""
    return one_line(text, 120).encode("ascii", "backslashreplace").decode("ascii")
