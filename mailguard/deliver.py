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
A failure of the whole session (connection, TLS, AUTH, timeout) is reported as
a temporary 4xx for every recipient: a configuration problem must defer, not bounce.

Without an upstream, each message is written to ``<data_dir>/outbox/<queue id>.eml``
(atomically: temporary file, fsync, rename), with Return-Path: and X-Mailguard-Rcpt-To:.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from aiosmtplib import SMTPException, SMTPResponseException

from .model import QueuedMessage
from .settings import Settings

log = logging.getLogger("mailguard.deliver")


@dataclass(frozen=True)
class Attempt:
    """Replies per recipient: ``{address: (code, text)}``; ``remote`` names where we talked to."""

    remote: str
    replies: dict[str, tuple[int, str]]


async def deliver(message: QueuedMessage, settings: Settings) -> Attempt:
    recipients = message.pending_recipients
    assert message.content is not None, "claim() loads the content"
    if settings.upstream is None:
        path = await asyncio.to_thread(write_outbox, settings.outbox_dir, message)
        return Attempt("outbox", {r: (250, f"2.0.0 written to {path}") for r in recipients})
    return await _smtp(message, recipients, settings)


async def _smtp(message: QueuedMessage, recipients: tuple[str, ...], settings: Settings) -> Attempt:
    upstream = settings.upstream
    replies: dict[str, tuple[int, str]] = {}
    client = aiosmtplib.SMTP(
        hostname=upstream.host, port=upstream.port,
        local_hostname=settings.hostname,
        timeout=settings.upstream_timeout,
        use_tls=settings.upstream_tls == "tls",
        start_tls=settings.upstream_tls == "starttls",   # required, never opportunistic
        validate_certs=settings.upstream_tls_verify,
        cert_bundle=str(settings.upstream_ca_file) if settings.upstream_ca_file else None,
    )
    try:
        await client.connect()
        if settings.upstream_username:
            password = settings.upstream_password.get_secret_value() if settings.upstream_password else ""
            await client.login(settings.upstream_username, password)
        options, encoding = _mail_options(message, client)
        if options is None:
            return Attempt(upstream.host, {r: (550, "5.6.7 upstream does not support SMTPUTF8 (RFC 6531 3.2)")
                                           for r in recipients})
        try:
            await client.mail(message.envelope.mail_from, options=options, encoding=encoding)
        except SMTPResponseException as exc:
            return Attempt(upstream.host, {r: (exc.code, exc.message) for r in recipients})
        accepted = []
        for rcpt in recipients:
            try:
                await client.rcpt(rcpt, encoding=encoding)
                accepted.append(rcpt)
            except SMTPResponseException as exc:
                replies[rcpt] = (exc.code, exc.message)
        if accepted:
            try:
                response = await client.data(message.content, timeout=settings.upstream_data_timeout)
                reply = (response.code, response.message)
            except SMTPResponseException as exc:
                reply = (exc.code, exc.message)
            replies.update({r: reply for r in accepted})
        try:
            await client.quit()
        except (SMTPException, OSError, asyncio.TimeoutError):
            pass    # the outcome is already known
    except (SMTPException, OSError, asyncio.TimeoutError) as exc:
        text = f"4.4.1 delivery to {upstream} failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, SMTPResponseException):
            text = f"4.4.1 upstream {upstream} said: {exc.code} {exc.message}"
        log.warning("%s: %s", message.queue_id, text)
        for rcpt in recipients:
            replies.setdefault(rcpt, (451, text))
    finally:
        client.close()
    return Attempt(upstream.host, replies)


def _mail_options(message: QueuedMessage, client: aiosmtplib.SMTP) -> tuple[list[str] | None, str]:
    """MAIL FROM parameters to pass on. ``None`` when the message cannot go this way."""
    options = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(message.content or b'')}")
    body = next((o.split("=", 1)[1].upper() for o in message.envelope.mail_options
                 if o.upper().startswith("BODY=")), None)
    if body == "8BITMIME" and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if message.envelope.smtputf8:
        if not client.supports_extension("smtputf8"):
            return None, "ascii"
        options.append("SMTPUTF8")
        return options, "utf-8"
    return options, "ascii"


def write_outbox(outbox: Path, message: QueuedMessage) -> Path:
    """Write the message as ``<queue id>.eml`` durably; the same id overwrites (retry-safe)."""
    outbox.mkdir(parents=True, exist_ok=True)
    final = outbox / f"{message.queue_id}.eml"
    temporary = outbox / f".{message.queue_id}.tmp"
    header = (f"Return-Path: <{message.envelope.mail_from}>\r\n"
              f"X-Mailguard-Rcpt-To: {', '.join(message.pending_recipients)}\r\n").encode("utf-8")
    with open(temporary, "wb") as fh:
        fh.write(header + (message.content or b""))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, final)
    dir_fd = os.open(outbox, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final
