"""serve: one asyncio process running every stage (``mailguard serve``).

Start: open the store and put back to ``ready`` whatever a crash left mid-delivery;
load the policies (a broken policy at start is fatal: there is no last good one);
listen for SMTP; run the queue manager and the policy watcher.
Stop (SIGTERM, SIGINT): stop listening, let deliveries under way finish for up
to 30 s, close the store. Nothing accepted is lost at any point: what was
answered 250 is in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3

import uvicorn

from .policy import PolicyWatcher
from .qmgr.manager import QueueManager
from .settings import HostPort, Settings
from .smtpd import RelayHandler, start_server
from .store import AsyncStore, Store

log = logging.getLogger("mailguard")


async def _watch_policies(policies: PolicyWatcher, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(policies.refresh)
        except Exception:
            log.exception("policy watcher failed; previous policy stays in force")


class _ConsoleServer(uvicorn.Server):
    """uvicorn on our loop; it must not take over SIGTERM/SIGINT, which ``serve`` owns."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def _start_web(app, listen: HostPort, settings: Settings, what: str, variable: str,
                     proxies: list[str] | None = None):
    """uvicorn for ``app`` on ``listen`` (HTTPS with MAILGUARD_TLS_CERT), on our loop. Returns the
    server and the port it really listens on (``listen`` may ask for :0)."""
    config = uvicorn.Config(
        app, host=listen.host, port=listen.port,
        log_level="warning", access_log=False, lifespan="off",
        # the client address in the access record: X-Forwarded-For only from the proxies named
        proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) if proxies else None,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )
    server = _ConsoleServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():   # it could not start (port in use): fail loudly like the SMTP listener
            try:
                task.result()
            except (SystemExit, Exception):   # uvicorn exits the process on a bind error
                pass
            raise OSError(f"{what} could not listen on {listen} ({variable})")
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    log.info("%s on http%s://%s/", what, "s" if settings.tls_cert else "", HostPort(listen.host, port))
    return server, port


async def _start_console(settings: Settings, store: Store, db: AsyncStore, policies: PolicyWatcher, servers,
                         others=lambda: []):
    """The review console on MAILGUARD_WEB_LISTEN (with /metrics and /healthz); None when unset.
    ``others``: () -> [(name, up)] of more parts /healthz reports (the receivers)."""
    if settings.web_listen is None:
        return None
    from .console.app import create_app

    def listeners():
        return [(f"{HostPort(*server.sockets[0].getsockname()[:2])}/{listener.mode}" if server.sockets
                 else str(listener), server.is_serving())
                for listener, server in zip(settings.smtp_listen, servers)] + others()

    server, _ = await _start_web(create_app(settings, store, policies, db, listeners), settings.web_listen, settings,
                                 "console", "MAILGUARD_WEB_LISTEN")
    return server


async def _start_download(settings: Settings, db: AsyncStore):
    """The download pages on MAILGUARD_DOWNLOAD_LISTEN; None when link delivery is off."""
    if settings.download_listen is None:
        return None
    if settings.download_base is None:
        log.warning("MAILGUARD_DOWNLOAD_URL is not set: no link delivery; personal data to partners leaves "
                    "in AES zips instead (set it to the address partners reach, e.g. https://dl.example.jp)")
        return None
    from .download.app import create_download_app

    server, _ = await _start_web(create_download_app(settings, db), settings.download_listen, settings,
                                 "download pages", "MAILGUARD_DOWNLOAD_LISTEN",
                                 proxies=settings.download_proxies)
    log.info("download links name %s", settings.download_base)
    return server


class StartupError(Exception):
    """Something outside mailguard stops it from starting; ``str()`` is one Japanese line."""


def lock_data_dir(settings: Settings) -> int:
    """Hold ``<data_dir>/serve.lock`` (flock) for the life of this process: two servers on one
    SQLite data dir would each run a queue manager and deliver the same mail twice. Returns the
    open descriptor (kept open; the kernel drops the lock when the process ends, even on kill -9).

    Raises:
        StartupError: another process holds it (its PID named), or the data dir is not writable.
    """
    import fcntl
    import os

    from .store.db import private_dir

    path = settings.data_dir / "serve.lock"
    try:
        private_dir(settings.data_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StartupError(f"データディレクトリ {settings.data_dir.resolve()} に書き込めません ({exc.strerror})。"
                           "MAILGUARD_DATA_DIR と、その持ち主・権限を確認してください。") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartupError(f"別の mailguard serve (PID {other}) がデータディレクトリ {settings.data_dir.resolve()} を"
                           "使っています。同じデータディレクトリで 2 つ目のサーバーは起動できません。") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_store(settings: Settings) -> Store:
    from .store.db import SchemaTooNew

    try:
        return Store(settings.database)
    except SchemaTooNew as exc:
        raise StartupError(str(exc)) from None
    except Exception as exc:
        if settings.database_url and type(exc).__module__.startswith("psycopg"):
            raise StartupError(f"PostgreSQL ({settings.database_label}) に接続できません: {str(exc).strip()[:300]}\n"
                               "MAILGUARD_DATABASE_URL、サーバーの起動、ユーザーの権限を確認してください。") from None
        if not isinstance(exc, (OSError, sqlite3.Error)):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupError(f"データディレクトリ {settings.data_dir.resolve()} に書き込めません ({reason})。"
                           "MAILGUARD_DATA_DIR と、その持ち主・権限を確認してください。") from None


def _announce(settings: Settings) -> None:
    """What an admin must know at start: who may relay without AUTH, where notices come from."""
    from .settings import config_file

    log.info("settings from the environment and %s", config_file() or "no file (MAILGUARD_CONFIG, "
             "/etc/mailguard/mailguard.env and ./.env are absent)")
    log.info("trusted networks (relay without AUTH): %s (MAILGUARD_TRUSTED_NETWORKS)",
             ", ".join(str(n) for n in settings.trusted_networks) or "none")
    name = settings.hostname.lower().rstrip(".")
    if "." not in name or name.endswith((".localdomain", ".local", ".internal")) or name.startswith("localhost"):
        log.warning("MAILGUARD_HOSTNAME is %r, not a real name: notices and DSNs come from postmaster@%s and "
                    "may be refused or unreadable. Set MAILGUARD_HOSTNAME (e.g. mailguard.sakura-kaigo.jp)",
                    settings.hostname, settings.hostname)
    from .store import checkpoints

    public = checkpoints.public_text(checkpoints.signing_key(settings.data_dir).public_key())
    log.info("send-log checkpoint public key (keep a copy away from this machine; 'mailguard log verify "
             "--public-key ...' checks the log against it): %s", public)
    if settings.tsa_url:
        log.info("send-log checkpoints are time-stamped by %s (RFC 3161)%s", settings.tsa_url,
                 "" if settings.tsa_ca else "; set MAILGUARD_TSA_CA to verify each token as it arrives")
    if not settings.dns_checks:
        log.warning("DNS checks are off (MAILGUARD_DNS_CHECKS=false): domains that do not exist are not caught")


async def serve(settings: Settings) -> None:
    lock_data_dir(settings)
    store = open_store(settings)
    _announce(settings)
    for queue_id in store.recover():
        log.warning("%s: was being delivered when the last run stopped; will be tried again", queue_id)
    policies = PolicyWatcher(settings.policies_dir)
    db = AsyncStore(store)
    download = await _start_download(settings, db)
    qmgr = QueueManager(settings, db, policies)
    qmgr.content.warm()   # load the detectors' dictionaries before the first message needs them
    handler = RelayHandler(settings, db, qmgr.wake)
    servers = await start_server(settings, handler, reuse_port=settings.processes > 1)
    for server, listener in zip(servers, settings.smtp_listen):
        host, port = server.sockets[0].getsockname()[:2]   # the real port when MAILGUARD_SMTP_LISTEN asks for :0
        tls = {"smtp": "STARTTLS " + ("on" if settings.tls_cert else "off"), "submission": "STARTTLS required, AUTH "
               "required", "smtps": "implicit TLS, AUTH required"}[listener.mode]
        log.info("mailguard listening on %s (%s: %s); delivering to %s; data in %s", HostPort(host, port),
                 listener.mode, tls, settings.upstream or f"outbox {settings.outbox_dir}", settings.data_dir)

    receivers = None
    if settings.processes > 1:
        from .receivers import Receivers, listen_value

        receivers = Receivers(settings.processes - 1, listen_value(settings, servers), qmgr.wake)
        receivers.start()
    console = await _start_console(settings, store, db, policies, servers,
                                   receivers.health if receivers is not None else (lambda: []))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(qmgr.run()),
             asyncio.create_task(_watch_policies(policies, settings.policy_scan_interval))]
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        for server in servers:
            server.close()
        if receivers is not None:
            await receivers.stop()
        for web in (console, download):
            if web is not None:
                web.should_exit = True
        await qmgr.stop()
        handler.verifier.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        db.close()
        log.info("stopped")
