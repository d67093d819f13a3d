"""server: the SMTP listener (aiosmtpd on the relay's own event loop, no Controller thread).

``GuardSMTP`` is aiosmtpd's SMTP with three guards of its own; the handler
(``handler.RelayHandler``) does relay control and the durable store.

- AUTH PLAIN / LOGIN (RFC 4954) are verified off the event loop on the
  handler's own Argon2 pool (``users.Verifier``, 2 threads), so a flood of
  attempts queues there and cannot take the threads the console or the store
  use; ``limits.CheckQueue`` decides who is checked next (an address staff
  logged in from first, the most failures last).
- AUTH failures are throttled per user name and per client address
  (``limits.AuthThrottle``: MAILGUARD_SMTP_AUTH_MAX_FAILURES within
  MAILGUARD_SMTP_AUTH_FAILURE_WINDOW lock both for MAILGUARD_SMTP_AUTH_LOCKOUT).
  A wrong password is answered ``535 5.7.8``; a locked name or address gets
  ``454 4.7.0`` (RFC 4954 §6) without its password being checked, right or
  wrong; the third failure in one session is answered ``421 4.7.0`` and the
  connection closed. Every failure waits ERROR_DELAY (1 s) before its answer.
  Failures are logged with the user name and client address, never the password.
- At most MAILGUARD_SMTP_MAX_CONNECTIONS_PER_CLIENT connections at once per
  client address (``limits.ConnectionLimiter``); one more is answered
  ``421 4.7.0`` after ERROR_DELAY, instead of the greeting, and closed.
- One server per listener of MAILGUARD_SMTP_LISTEN (``settings.Listener``): ``smtp`` offers
  STARTTLS; ``submission`` requires it before any other command (aiosmtpd ``require_starttls``,
  RFC 3207 §4: 530 5.7.0); ``smtps`` is TLS from the first byte (RFC 8314 §3.3). On both of
  the latter a message needs AUTH (the handler reads ``GuardSMTP.listener``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from ..settings import Listener, Settings
from .handler import RelayHandler, _peer_ip
from .limits import AuthThrottle, CheckQueue, ConnectionLimiter, SharedLockouts

log = logging.getLogger("mailguard.smtpd")

# AUTH failures (wrong password or locked out) in one session before it is closed.
SESSION_AUTH_FAILURES = 3
# Seconds before a failed AUTH or a refused connection is answered (Postfix smtpd_error_sleep_time).
ERROR_DELAY = 1.0


def _capture_credentials(server, session, envelope, mechanism, auth_data) -> AuthResult:
    # aiosmtpd calls its authenticator synchronously; Argon2 verification must not
    # run on the event loop, so this only hands the credentials to GuardSMTP._verify.
    # (session.auth_data is only trusted once it is a users.User, see handler._user.)
    return AuthResult(success=True, auth_data=auth_data)


class GuardSMTP(SMTP):
    """aiosmtpd's SMTP with AUTH verified off the loop and throttled, and connections capped."""

    event_handler: RelayHandler

    def __init__(self, handler: RelayHandler, *, connections: ConnectionLimiter,
                 throttle: AuthThrottle, checks: CheckQueue, listener: Listener = Listener.parse("127.0.0.1:0"),
                 **kwargs):
        super().__init__(handler, **kwargs)
        self.listener = listener
        self.connections = connections
        self.throttle = throttle
        self.checks = checks
        self._client: str | None = None      # counted in ``connections`` while set
        self._refused: asyncio.TimerHandle | None = None
        self._auth_failures = 0

    # --- connections per client ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again with the TLS transport after STARTTLS: count once.
        if self.transport is None and self._client is None:
            peer = transport.get_extra_info("peername")
            client = peer[0] if isinstance(peer, tuple) else str(peer)
            if not self.connections.open(client):
                log.warning("connection from %s refused: %d connections open (limit %d,"
                            " MAILGUARD_SMTP_MAX_CONNECTIONS_PER_CLIENT)",
                            client, self.connections.count(client), self.connections.limit)
                # Answered after ERROR_DELAY, as Postfix's smtpd_error_sleep_time: a client
                # that reconnects at once must not turn the refusal into a busy loop for us.
                transport.pause_reading()
                self._refused = asyncio.get_running_loop().call_later(ERROR_DELAY, _refuse, transport)
                return
            self._client = client
        super().connection_made(transport)
        if self.listener.mode == "smtps" and self.session is not None and self.session.ssl is None:
            self.session.ssl = transport.get_extra_info("ssl_object")   # TLS from the first byte: ESMTPSA

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            self._refused.cancel()
            return      # aiosmtpd never started on this connection
        if self._client is not None:
            self.connections.close(self._client)
            self._client = None
        super().connection_lost(error)

    # --- AUTH ---------------------------------------------------------------------

    async def auth_PLAIN(self, _, args):
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _, args):
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, result: AuthResult) -> AuthResult:
        if not result.success:      # aborted with "*" or bad base64: aiosmtpd has answered
            return result
        creds: LoginPassword = result.auth_data
        login, password = creds.login.decode("utf-8", "replace"), creds.password.decode("utf-8", "replace")
        client = _peer_ip(self.session)
        keys = AuthThrottle.keys(login, client)
        user = None
        if not self.throttle.locked(*keys):
            async with self.checks.slot(self.throttle.rank(*keys), client):
                if not self.throttle.locked(*keys):     # it may have been locked while this waited
                    user = await self.event_handler.authenticate(login, password)
        if self.throttle.locked(*keys):     # before, while waiting or while checked: right or wrong
            log.warning("AUTH for %r from %s refused: locked out after repeated failures", login, client)
            return await self._failed("454 4.7.0 Too many authentication failures, try again later")
        if user is None:
            locked = self.throttle.failed(*keys)
            self.event_handler.lockouts.failed(keys)   # counted with the other processes' and nodes' too
            log.warning("authentication failed for %r from %s%s", login, client,
                        f" (locked out for {self.throttle.lockout:.0f}s)" if locked else "")
            await asyncio.sleep(ERROR_DELAY)
            return await self._failed("535 5.7.8 Authentication credentials invalid")
        self.throttle.succeeded(*keys)
        self.event_handler.lockouts.succeeded(keys[0])
        log.info("authenticated %s from %s", user.username, client)
        return AuthResult(success=True, auth_data=user)

    async def _failed(self, reply: str) -> AuthResult:
        """Answer a failed AUTH (after ERROR_DELAY); the third in one session closes the connection."""
        self._auth_failures += 1
        if reply.startswith("454"):
            await asyncio.sleep(ERROR_DELAY)      # a wrong password has slept already
        if self._auth_failures < SESSION_AUTH_FAILURES:
            return AuthResult(success=False, handled=False, message=reply)
        log.warning("closing connection from %s after %d failed AUTH attempts",
                    _peer_ip(self.session), self._auth_failures)
        await self.push("421 4.7.0 Too many authentication failures, closing connection")
        if self.transport is not None:
            self.transport.close()
        return AuthResult(success=False, handled=True)


def _refuse(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.write(b"421 4.7.0 Error: too many connections from your address, try again later\r\n")
        transport.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def start_server(settings: Settings, handler: RelayHandler,
                       reuse_port: bool = False) -> list[asyncio.AbstractServer]:
    """One server per listener of MAILGUARD_SMTP_LISTEN, on the running loop (no Controller thread).
    The connection cap and the AUTH throttle are shared: a client gets no more tries by changing port;
    AUTH failures and lockouts also with the other processes and nodes, through the store."""
    context = tls_context(settings)
    loop = asyncio.get_running_loop()
    connections = ConnectionLimiter(settings.smtp_max_connections_per_client)
    handler.connections = connections   # who stops listening can wait for the sessions under way
    throttle = AuthThrottle.from_settings(settings)
    handler.lockouts = SharedLockouts(throttle, handler.db)
    handler.lockouts.reader = asyncio.ensure_future(handler.lockouts.run())   # ends with the loop
    checks = CheckQueue(handler.verifier.threads)

    def factory(listener: Listener) -> GuardSMTP:
        implicit = listener.mode == "smtps"
        return GuardSMTP(
            handler,
            connections=connections,
            throttle=throttle,
            checks=checks,
            listener=listener,
            data_size_limit=settings.message_size_limit,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            ident="mailguard ESMTP",
            tls_context=None if implicit else context,   # no STARTTLS inside TLS
            require_starttls=listener.mode == "submission",
            timeout=settings.smtp_timeout,
            auth_require_tls=not implicit,               # an smtps connection is TLS from its first byte
            authenticator=_capture_credentials,
            loop=loop,
        )

    servers = []
    try:
        for listener in settings.smtp_listen:
            servers.append(await loop.create_server(
                lambda listener=listener: factory(listener), host=listener.address.host,
                port=listener.address.port, reuse_address=True, reuse_port=reuse_port or None,
                ssl=context if listener.mode == "smtps" else None))
    except OSError:
        for server in servers:
            server.close()
        raise
    return servers
