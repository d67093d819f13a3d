"""deliver: one delivery attempt of one message (Postfix's smtp client).

Receives a claimed message (envelope + content) and returns an ``Attempt``: the
SMTP reply for every pending recipient. It decides nothing about retries or
bounces; the queue manager does (``queue.settle``).

Upstream: MAILGUARD_UPSTREAM with TLS ``none`` / ``starttls`` (RFC 3207) /
``tls`` (implicit, RFC 8314), certificate verification on by default, AUTH
(RFC 4954) when MAILGUARD_UPSTREAM_USERNAME is set. Timeouts: MAILGUARD_UPSTREAM_TIMEOUT
for connect and each command; the reply to the final "." waits
MAILGUARD_UPSTREAM_DATA_TIMEOUT (600 s, RFC 5321 §4.5.3.2.6), because giving up
early makes us send again a message the upstream already took.
Partial refusals come back per recipient (aiosmtplib raises per RCPT).

Extensions: aiosmtplib sends EHLO lazily and forgets the answer after STARTTLS
(RFC 3207 §4.2), so EHLO is made sure of (HELO if EHLO is refused) before the
upstream's extensions are read, on fresh and reused connections alike. MAIL FROM
then carries SIZE= (RFC 1870) and BODY=8BITMIME (RFC 6152; when the client
declared it or the content has 8-bit bytes) where the upstream offers them, and
SMTPUTF8 (RFC 6531 §3.4) when the message was submitted with it. Only an upstream
that lacks SMTPUTF8 for a message that needs it (a non-ASCII envelope address or
header) gives ``550 5.6.7``; a message submitted with SMTPUTF8 that is all ASCII
in envelope and header goes without it, as Postfix downgrades.
Idle connections are cached for reuse, as Postfix does (see ``Deliverer``).
A failure of the whole session (connection, TLS, AUTH, timeout) is reported as
a temporary 4xx for every recipient: a configuration problem must defer, not bounce.

Without an upstream, each message is written to ``<data_dir>/outbox/<queue id>.eml``
(atomically: temporary file, fsync, rename), with Return-Path: and X-Mailguard-Rcpt-To:.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from ..model import QueuedMessage
from ..settings import Settings
from ..store import private_dir

log = logging.getLogger("mailguard.deliver")


@dataclass(frozen=True)
class Attempt:
    """Replies per recipient: ``{address: (code, text)}``; ``remote`` names where we talked to."""

    remote: str
    replies: dict[str, tuple[int, str]]


class _StaleConnection(Exception):
    """A cached connection turned out dead before the upstream accepted anything."""


class Deliverer:
    """Delivery attempts, with a cache of idle upstream connections (Postfix's scache).

    A connection is kept for reuse after a complete transaction, at most
    ``MAILGUARD_DELIVERY_CONCURRENCY`` of them, each for IDLE_LIMIT seconds and
    REUSE_LIMIT transactions. If a reused connection fails before MAIL FROM is
    accepted, the attempt moves to a fresh connection; after that point a failure
    is a temporary error, never a silent resend.
    """

    IDLE_LIMIT = 5.0
    REUSE_LIMIT = 100

    def __init__(self, settings: Settings):
        self.settings = settings
        self._idle: list[tuple[float, int, aiosmtplib.SMTP]] = []   # (idle since, uses, client)

    async def __call__(self, message: QueuedMessage) -> Attempt:
        recipients = message.pending_recipients
        assert message.content is not None, "claim() loads the content"
        if self.settings.upstream is None:
            replies = {}
            for content, group in _by_content(message, recipients):
                copy = next((r.copy for r in message.recipients if r.address == group[0]), None)
                path = await asyncio.to_thread(write_outbox, self.settings.outbox_dir, message, content, group,
                                               f".{copy}" if copy else "")   # a retry never overwrites another
                replies.update({r: (250, f"2.0.0 written to {path}") for r in group})
            return Attempt("outbox", replies)
        return await self._smtp(message, recipients)

    def close(self) -> None:
        for _, _, client in self._idle:
            client.close()
        self._idle.clear()

    async def _smtp(self, message: QueuedMessage, recipients: tuple[str, ...]) -> Attempt:
        """One SMTP transaction per version of the message (link delivery gives some recipients
        a copy of their own), on one connection where it stays usable."""
        replies: dict[str, tuple[int, str]] = {}
        remote = self.settings.upstream.host
        for content, group in _by_content(message, recipients):
            attempt = await self._smtp_one(message, content, group)
            replies.update(attempt.replies)
        return Attempt(remote, replies)

    async def _smtp_one(self, message: QueuedMessage, content: bytes, recipients: tuple[str, ...]) -> Attempt:
        upstream = self.settings.upstream
        cached = self._take_idle()
        client, uses = (cached[2], cached[1]) if cached else (None, 0)
        try:
            if client is not None:
                try:
                    replies = await self._transaction(client, message, content, recipients, reused=True)
                    self._keep(client, uses + 1)
                    return Attempt(upstream.host, {r: (code, reply_text(text)) for r, (code, text) in replies.items()})
                except _StaleConnection:
                    client.close()
            client = await self._connect()
            replies = await self._transaction(client, message, content, recipients, reused=False)
            self._keep(client, 1)
            return Attempt(upstream.host, {r: (code, reply_text(text)) for r, (code, text) in replies.items()})
        except Exception as exc:   # any failure of the session is temporary: defer, never bounce
            if client is not None:
                client.close()   # mid-transaction: never reuse it
            text = f"4.4.1 delivery to {upstream} failed: {type(exc).__name__}: {exc}"
            if isinstance(exc, SMTPResponseException):
                text = f"4.4.1 upstream {upstream} said: {exc.code} {exc.message}"
            if not isinstance(exc, (TimeoutError, SMTPException, OSError)):
                log.exception("%s: unexpected failure in the SMTP session", message.queue_id)
            log.warning("%s: %s", message.queue_id, reply_text(text))
            return Attempt(upstream.host, {r: (451, reply_text(text)) for r in recipients})

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.upstream.host, port=settings.upstream.port,
            local_hostname=settings.hostname,
            timeout=settings.upstream_timeout,
            use_tls=settings.upstream_tls == "tls",
            start_tls=settings.upstream_tls == "starttls",   # required, never opportunistic
            validate_certs=settings.upstream_tls_verify,
            cert_bundle=str(settings.upstream_ca_file) if settings.upstream_ca_file else None,
        )
        try:
            await client.connect()           # STARTTLS here clears what an earlier EHLO told
            await _ensure_ehlo(client)
            if settings.upstream_username:
                password = settings.upstream_password.get_secret_value() if settings.upstream_password else ""
                await client.login(settings.upstream_username, password)
            log.debug("upstream %s offers %s", settings.upstream, " ".join(sorted(client.esmtp_extensions)))
        except BaseException:
            client.close()
            raise
        return client

    async def _transaction(self, client: aiosmtplib.SMTP, message: QueuedMessage, content: bytes,
                           recipients: tuple[str, ...], *, reused: bool) -> dict[str, tuple[int, str]]:
        """MAIL, RCPT per recipient, DATA. Returns the reply per recipient; raises on a
        session failure (``_StaleConnection`` when a reused connection is found dead)."""
        try:
            await _ensure_ehlo(client)
        except (SMTPServerDisconnected, ConnectionError) as exc:
            if reused:
                raise _StaleConnection() from exc
            raise
        options, encoding = _mail_options(message, content, client, recipients)
        if options is None:
            return {r: (550, "5.6.7 upstream does not support SMTPUTF8 (RFC 6531 section 3.2)")
                    for r in recipients}
        try:
            await client.mail(message.envelope.mail_from, options=options, encoding=encoding)
        except SMTPResponseException as exc:
            if reused and exc.code == 421:
                raise _StaleConnection() from exc
            await self._reset(client)
            return {r: (exc.code, exc.message) for r in recipients}
        except (SMTPServerDisconnected, ConnectionError) as exc:
            if reused:
                raise _StaleConnection() from exc
            raise
        replies: dict[str, tuple[int, str]] = {}
        accepted = []
        for rcpt in recipients:
            try:
                await client.rcpt(message.rcpt_to(rcpt), encoding=encoding)
                accepted.append(rcpt)
            except SMTPResponseException as exc:
                replies[rcpt] = (exc.code, exc.message)
        if not accepted:
            await self._reset(client)
            return replies
        try:
            response = await client.data(content, timeout=self.settings.upstream_data_timeout)
            reply = (response.code, response.message)
        except SMTPResponseException as exc:
            reply = (exc.code, exc.message)
        replies.update({r: reply for r in accepted})
        return replies


    @staticmethod
    async def _reset(client: aiosmtplib.SMTP) -> None:
        """RSET after an unfinished transaction, so the connection can be reused (or is closed)."""
        try:
            await client.rset()
        except (TimeoutError, SMTPException, OSError):
            client.close()

    def _take_idle(self) -> tuple[float, int, aiosmtplib.SMTP] | None:
        now = time.monotonic()
        while self._idle:
            since, uses, client = self._idle.pop()
            if now - since <= self.IDLE_LIMIT and client.is_connected:
                return since, uses, client
            client.close()
        return None

    def _keep(self, client: aiosmtplib.SMTP, uses: int) -> None:
        if (client.is_connected and uses < self.REUSE_LIMIT
                and len(self._idle) < self.settings.delivery_concurrency):
            self._idle.append((time.monotonic(), uses, client))
            asyncio.get_running_loop().call_later(self.IDLE_LIMIT + 0.5, self._expire_idle)
        else:
            client.close()

    def _expire_idle(self) -> None:
        now = time.monotonic()
        keep = []
        for since, uses, client in self._idle:
            if now - since <= self.IDLE_LIMIT and client.is_connected:
                keep.append((since, uses, client))
            else:
                client.close()
        self._idle = keep


async def _ensure_ehlo(client: aiosmtplib.SMTP) -> None:
    """EHLO (or HELO) on this connection if none has been answered since connect or STARTTLS."""
    if not client.is_ehlo_or_helo_needed:
        return
    try:
        await client.ehlo()
    except SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _by_content(message: QueuedMessage, recipients: tuple[str, ...]) -> list[tuple[bytes, tuple[str, ...]]]:
    """The pending recipients grouped by the version of the message each gets, main content first."""
    groups: dict[int | None, list[str]] = {}
    copies = {r.address: r.copy for r in message.recipients}
    for rcpt in recipients:
        groups.setdefault(copies.get(rcpt), []).append(rcpt)
    return [(message.content_for(group[0]), tuple(group))
            for _, group in sorted(groups.items(), key=lambda item: (item[0] is not None, item[0] or 0))]


def _mail_options(message: QueuedMessage, content: bytes, client: aiosmtplib.SMTP,
                  recipients: tuple[str, ...]) -> tuple[list[str] | None, str]:
    """MAIL FROM parameters to pass on, read after EHLO. ``None`` when the message cannot go this way."""
    options = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(content)}")
    body = next((o.split("=", 1)[1].upper() for o in message.envelope.mail_options
                 if o.upper().startswith("BODY=")), None)
    if (body == "8BITMIME" or not content.isascii()) and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if message.envelope.smtputf8:
        if client.supports_extension("smtputf8"):
            options.append("SMTPUTF8")
            return options, "utf-8"
        if _needs_smtputf8(message, content, recipients):
            return None, "ascii"
    return options, "ascii"


def _needs_smtputf8(message: QueuedMessage, content: bytes, recipients: tuple[str, ...]) -> bool:
    """Does the message carry UTF-8 where only SMTPUTF8 allows it: envelope or header section?"""
    envelope = [message.envelope.mail_from, *(message.rcpt_to(r) for r in recipients)]
    if not all(address.isascii() for address in envelope):
        return True
    end = content.find(b"\r\n\r\n")
    return not (content if end < 0 else content[:end]).isascii()


def write_outbox(outbox: Path, message: QueuedMessage, content: bytes, recipients: tuple[str, ...],
                 suffix: str = "") -> Path:
    """Write one version of the message as ``<queue id><suffix>.eml`` durably; the same id
    overwrites (retry-safe). The outbox holds what was sent (personal data): directory 0700,
    files 0600."""
    private_dir(outbox)
    final = outbox / f"{message.queue_id}{suffix}.eml"
    temporary = outbox / f".{message.queue_id}{suffix}.tmp"
    header = (f"Return-Path: <{message.envelope.mail_from}>\r\n"
              f"X-Mailguard-Rcpt-To: {', '.join(message.rcpt_to(r) for r in recipients)}\r\n").encode()
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(header + content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, final)
    dir_fd = os.open(outbox, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def reply_text(text: str) -> str:
    """An upstream's reply text as we keep it: aiosmtplib decodes with surrogateescape, and a
    Shift_JIS word in a Japanese server's reply would otherwise break the log and the DSN."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
