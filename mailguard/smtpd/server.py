"""server: the SMTP listener (aiosmtpd on the relay's own event loop, no Controller thread).

``GuardSMTP`` is aiosmtpd's SMTP with AUTH verified off the event loop; the
handler (``handler.RelayHandler``) does relay control and the durable store.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from ..settings import Settings
from .handler import RelayHandler, _peer_ip

log = logging.getLogger("mailguard.smtpd")


def _capture_credentials(server, session, envelope, mechanism, auth_data) -> AuthResult:
    # aiosmtpd calls its authenticator synchronously; Argon2 verification must not
    # run on the event loop, so this only hands the credentials to GuardSMTP._verify.
    return AuthResult(success=True, auth_data=auth_data)


class GuardSMTP(SMTP):
    """aiosmtpd's SMTP with AUTH verified off the event loop."""

    event_handler: "RelayHandler"

    async def auth_PLAIN(self, _, args):
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _, args):
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, result: AuthResult) -> AuthResult:
        if not result.success:
            return result
        creds: LoginPassword = result.auth_data
        login = creds.login.decode("utf-8", "replace")
        user = await self.event_handler.authenticate(login, creds.password.decode("utf-8", "replace"))
        if user is None:
            log.warning("authentication failed for %r from %s", login, _peer_ip(self.session))
            await asyncio.sleep(1.0)
            return AuthResult(success=False, handled=False)
        log.info("authenticated %s from %s", user.username, _peer_ip(self.session))
        return AuthResult(success=True, auth_data=user)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def start_server(settings: Settings, handler: RelayHandler) -> asyncio.AbstractServer:
    """Listen on MAILGUARD_SMTP_LISTEN on the running loop (no Controller thread)."""
    context = tls_context(settings)
    loop = asyncio.get_running_loop()

    def factory() -> GuardSMTP:
        return GuardSMTP(
            handler,
            data_size_limit=settings.message_size_limit,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            ident="mailguard ESMTP",
            tls_context=context,
            timeout=settings.smtp_timeout,
            auth_require_tls=True,
            authenticator=_capture_credentials,
            loop=loop,
        )

    listen = settings.smtp_listen
    return await loop.create_server(factory, host=listen.host, port=listen.port, reuse_address=True)

