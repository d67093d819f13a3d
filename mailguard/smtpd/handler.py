"""handler: relay control at MAIL/RCPT and the durable store at DATA (Postfix's smtpd + cleanup).

Accepts mail from staff clients, multifunction printers and FAX gateways, and
stores it durably before answering ``250``; it inspects nothing itself (the idle
timeout of aiosmtpd covers ``handle_DATA``, so that stays short).

Protocol: ESMTP (RFC 5321) with SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8
(RFC 6531), STARTTLS (RFC 3207) when MAILGUARD_TLS_CERT is set, and AUTH PLAIN /
LOGIN (RFC 4954) offered only inside TLS.

Security:
- no open relay: a client must be authenticated or come from
  MAILGUARD_TRUSTED_NETWORKS, or every RCPT gets ``554 5.7.1 Relay access denied``;
- an authenticated user may only use their own addresses as MAIL FROM
  (Postfix ``reject_sender_login_mismatch``) and in the header From:/Sender:
  (``headerfrom``: ``553 5.7.1``, or ``Sender:`` added when
  MAILGUARD_HEADER_FROM_CHECK=sender); trusted networks without AUTH are not checked
  and may use the null reverse-path ``<>`` (DSNs, read receipts), a user may not;
- a non-ASCII MAIL FROM or RCPT TO without the SMTPUTF8 parameter is refused
  with ``553 5.6.7`` at that command (RFC 6531 §3.4), an address that is not
  valid UTF-8 with ``501 5.1.7``;
- bare CR or LF inside DATA is refused (SMTP smuggling; RFC 5321 §2.3.8,
  Postfix ``smtpd_forbid_bare_newline``);
- more Received: headers than MAILGUARD_HOP_LIMIT is a loop (§6.3);
- AUTH failures and connections per client are limited in ``server``/``limits``.
Adds a Received: header (§4.4) and a Message-ID: when the message has none.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import formatdate, make_msgid

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from ..address import address_key
from ..model import Envelope, Submission, new_queue_id
from .. import metrics
from ..settings import Settings
from ..store import AsyncStore
from ..text import decode_words, one_line, subject_of
from ..users import User, Verifier
from . import headerfrom

log = logging.getLogger("mailguard.smtpd")



def has_bare_cr_or_lf(data: bytes) -> bool:
    """True if a CR or LF stands anywhere but in a CRLF pair (RFC 5321 §2.3.8).

    Each CRLF holds one CR and one LF, so the data is clean exactly when the
    three counts agree; bytes.count runs in C, a regex over 20 KB does not.
    """
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return peer[0] if isinstance(peer, tuple) else str(peer)


def _user(session: Session) -> User | None:
    return session.auth_data if session.authenticated and isinstance(session.auth_data, User) else None


class RelayHandler:
    """aiosmtpd handler hooks: relay control at MAIL/RCPT, durable store at DATA."""

    def __init__(self, settings: Settings, db: AsyncStore, on_accepted: Callable[[], None]):
        self.settings = settings
        self.db = db
        self.on_accepted = on_accepted
        self.connections = None   # the listeners' ConnectionLimiter, set by start_server
        self.lockouts = None      # the AUTH lockouts shared through the store (SharedLockouts), likewise
        self.verifier = Verifier(threads=2, name="smtp-auth")

    async def authenticate(self, login: str, password: str) -> User | None:
        return await self.verifier.authenticate(self.db.store, login, password)

    def _trusted(self, session: Session) -> bool:
        try:
            ip = ipaddress.ip_address(_peer_ip(session))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.settings.trusted_networks)

    async def handle_MAIL(self, server, session: Session, envelope: SMTPEnvelope, address: str, mail_options):
        # aiosmtpd gives the null reverse-path (RFC 5321 §4.5.5) as "<>" and keeps it so in
        # its envelope: an empty mail_from would make it answer RCPT with "503 need MAIL".
        null = address == "<>"
        refusal = _encoding_refusal(address, envelope.smtp_utf8)
        if refusal:
            log.warning("MAIL FROM refused from %s: %s", _peer_ip(session), refusal)
            return refusal
        user = _user(session)
        if user is not None and (null or not user.owns(address)):
            log.warning("sender %r refused for user %s", address, user.username)
            return (f"553 5.7.1 <{'' if null else address}>: Sender address rejected:"
                    f" not owned by user {user.username}")
        envelope.mail_from = "<>" if null else address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session: Session, envelope: SMTPEnvelope, address: str, rcpt_options):
        listener = getattr(server, "listener", None)
        if _user(session) is None and listener is not None and listener.auth_required:
            log.warning("RCPT without AUTH refused on the %s listener from %s", listener.mode, _peer_ip(session))
            return "530 5.7.0 Authentication required"   # RFC 4954 §6; submission needs AUTH (RFC 6409 §4.3)
        if _user(session) is None and not self._trusted(session):
            log.warning("relay denied: %s -> %s", _peer_ip(session), address)
            return f"554 5.7.1 <{address}>: Relay access denied"
        refusal = _encoding_refusal(address, envelope.smtp_utf8)
        if refusal:
            log.warning("RCPT TO refused from %s: %s", _peer_ip(session), refusal)
            return refusal
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return f"501 5.1.3 <{address}>: Bad recipient address syntax"
        seen = envelope.__dict__.setdefault("mailguard_rcpt_keys", set())   # reset with each envelope
        key = address_key(address)
        if key in seen:
            return "250 2.1.5 Ok"   # duplicate: delivered once, as Postfix does
        if len(envelope.rcpt_tos) >= self.settings.recipient_limit:
            return "452 4.5.3 Error: too many recipients"
        seen.add(key)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SMTPEnvelope) -> str:
        raw: bytes = envelope.original_content or b""
        if has_bare_cr_or_lf(raw):
            log.warning("bare CR or LF in DATA from %s refused", _peer_ip(session))
            return "550 5.5.2 Error: bare CR or LF in message data (RFC 5321 section 2.3.8)"
        end = raw.find(b"\r\n\r\n")
        if (end if end >= 0 else len(raw)) > MAX_HEADER_BYTES:
            log.warning("header section over %d bytes from %s refused", MAX_HEADER_BYTES, _peer_ip(session))
            return f"552 5.3.4 Error: message header exceeds {MAX_HEADER_BYTES} bytes"
        head = raw if end < 0 else raw[: end + 4]   # found once: the body may be 25 MB, this is the loop
        headers = _parse_headers(head)
        hops = len(headers.get_all("Received") or [])
        if hops > self.settings.hop_limit:
            return f"554 5.4.6 Error: too many hops ({hops} Received: headers), mail loop?"
        user = _user(session)
        if user is not None:
            mismatch = headerfrom.check(head, user)
            if mismatch is not None and self.settings.header_from_check == "reject":
                log.warning("header %s of user %s from %s refused: %s (%s)", mismatch.field, user.username,
                            _peer_ip(session), mismatch.reason, headerfrom.EXPLANATION_JA)
                return mismatch.reply(user)
            if mismatch is not None:
                log.info("header %s of user %s is %s: Sender: <%s> added", mismatch.field, user.username,
                         mismatch.reason, _reverse_path(envelope))
                raw = headerfrom.with_sender(raw, _reverse_path(envelope))

        queue_id = new_queue_id()
        message_id = one_line(decode_words(headers.get("Message-ID") or ""), 900)   # raw 8-bit: a Header object
        prefix = self._received(server, session, envelope, queue_id)
        if not message_id:
            message_id = make_msgid(idstring=queue_id, domain=self.settings.hostname)
            prefix += f"Message-ID: {message_id}\r\n".encode()
        sub = Submission(
            queue_id=queue_id,
            envelope=Envelope(
                mail_from=_reverse_path(envelope),
                rcpt_tos=tuple(envelope.rcpt_tos),
                mail_options=tuple(o for o in envelope.mail_options if not o.upper().startswith("SIZE=")),
                smtputf8=envelope.smtp_utf8,
            ),
            content=prefix + raw,
            auth_user=user.username if user else None,
            client_addr=_peer_ip(session),
            helo=session.host_name or "",
            message_id=message_id,
            subject=subject_of(headers),
        )
        try:
            await self.db.accept(sub, lifetime=self.settings.queue_lifetime)
        except Exception:
            log.exception("queue write failed; message from %s not accepted", sub.client_addr)
            return "451 4.3.0 Error: queue file write error, try again later"
        log.info("%s: accepted from=<%s> nrcpt=%d size=%d client=%s user=%s",
                 queue_id, sub.envelope.mail_from, len(sub.envelope.rcpt_tos), len(sub.content),
                 sub.client_addr, sub.auth_user or "-")
        self.on_accepted()
        metrics.accepted()
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _received(self, server: SMTP, session: Session, envelope: SMTPEnvelope, queue_id: str) -> bytes:
        """The Received: trace header (RFC 5321 §4.4), with RFC 3848 protocol names."""
        protocol = "UTF8SMTP" if envelope.smtp_utf8 else ("ESMTP" if session.extended_smtp else "SMTP")
        if session.ssl:
            protocol += "S"
        if _user(session):
            protocol += "A"
        helo = _clean(session.host_name or "unknown")
        line = f"Received: from {helo} ([{_peer_ip(session)}])\r\n\tby {_clean(self.settings.hostname)}" \
               f" (mailguard) with {protocol} id {queue_id}"
        if len(envelope.rcpt_tos) == 1:
            line += f"\r\n\tfor <{_clean(envelope.rcpt_tos[0])}>"
        line += f"; {formatdate(localtime=True)}\r\n"
        return line.encode("utf-8")


def _reverse_path(envelope: SMTPEnvelope) -> str:
    """MAIL FROM as the store keeps it: "" for the null reverse-path."""
    return "" if envelope.mail_from in (None, "<>") else envelope.mail_from


def _encoding_refusal(address: str, smtputf8: bool) -> str | None:
    """The reply refusing an address the transaction may not carry, or None (RFC 6531 §3.4)."""
    if address.isascii():
        return None
    try:
        address.encode("utf-8")     # aiosmtpd keeps bytes that are not UTF-8 as surrogates
    except UnicodeEncodeError:
        return "501 5.1.7 Error: address is not valid UTF-8 (RFC 6531 section 3.3)"
    if not smtputf8:
        return ("553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter on MAIL FROM"
                " (RFC 6531 section 3.4)")
    return None


def _clean(text: str) -> str:
    """Keep client-supplied words from breaking a header we write."""
    return re.sub(r"[\x00-\x20()<>;\\\x7f]", "?", text)[:255]


MAX_HEADER_BYTES = 256 * 1024   # Postfix's header_size_limit is 100 KB; a header larger than this is not mail


def _parse_headers(head: bytes):
    """The header block (never the body: this runs on the event loop). compat32 reads headers
    as stored, without the modern policy's costly parsing; we need a count and a few values."""
    return BytesHeaderParser(policy=compat32).parsebytes(head)
