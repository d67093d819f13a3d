"""receivers: more SMTP-receiving processes beside ``serve``, so every core takes mail (MAILGUARD_PROCESSES).

``serve`` stays the one process that decides, delivers, runs the console and signs the log;
with MAILGUARD_PROCESSES = N it starts N − 1 receivers (``python -m mailguard receive``). Each
binds the same SMTP listeners with SO_REUSEPORT (the kernel spreads new connections over the
processes), runs the same guards and commits each message to the shared store before its
``250`` — what a receiver accepted is as durable as what ``serve`` accepted.

The pipes are the whole protocol, so nothing outlives its parent:
- the receiver writes one byte to its stdout for each message it commits: ``serve`` wakes its
  queue manager (a hint only: the manager also scans the store every
  MAILGUARD_QUEUE_SCAN_INTERVAL);
- the receiver's stdin is ``serve``'s pipe: at EOF (``serve`` stopped or was killed -9) the
  receiver stops listening, finishes the sessions under way for up to ``GRACE`` seconds, exits;
- a receiver that dies is started again after ``RESTART_DELAY``.
Ports asked as :0 are bound by ``serve`` first and handed to receivers by number.
Settings: MAILGUARD_PROCESSES (default: the number of cores), and all of ``serve``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys

from . import metrics
from .settings import HostPort, Listener, Settings
from .smtpd import RelayHandler, start_server
from .store import AsyncStore, Store

log = logging.getLogger("mailguard.receivers")
GRACE = 10.0          # seconds a stopping receiver gives its sessions under way
RESTART_DELAY = 1.0   # seconds before a receiver that died is started again


def listen_value(settings: Settings, servers) -> str:
    """MAILGUARD_SMTP_LISTEN with the ports ``serve`` really bound (for :0)."""
    parts = []
    for listener, server in zip(settings.smtp_listen, servers):
        host, port = server.sockets[0].getsockname()[:2]
        parts.append(f"{Listener(HostPort(listener.address.host, port), listener.mode)}")
    return ",".join(parts)


class Receivers:
    """``count`` receiver processes, each restarted when it dies, stopped with ``serve``."""

    def __init__(self, count: int, listen: str, wake):
        self.count, self.listen, self.wake = count, listen, wake
        self._tasks: list[asyncio.Task] = []
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(slot)) for slot in range(self.count)]

    def health(self) -> list[tuple[str, bool]]:
        """(name, running) of each receiver, for ``/healthz``."""
        return [(f"receiver {slot + 1}", slot in self._procs and self._procs[slot].returncode is None)
                for slot in range(self.count)]

    async def _keep(self, slot: int) -> None:
        env = {**os.environ, "MAILGUARD_SMTP_LISTEN": self.listen, "MAILGUARD_RECEIVER_SLOT": str(slot + 1)}
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailguard", "receive", env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self._procs[slot] = proc
            if self._stopping:   # stop() began while it was starting: it gets its EOF now
                proc.stdin.close()
            log.info("SMTP receiver %d started (pid %d)", slot + 1, proc.pid)
            while chunk := await proc.stdout.read(4096):   # one byte per message committed
                metrics.ACCEPTED.labels(metrics.NODE).inc(len(chunk))
                self.wake()
            code = await proc.wait()
            if not self._stopping:
                log.error("SMTP receiver %d (pid %d) exited %s; starting it again", slot + 1, proc.pid, code)
                await asyncio.sleep(RESTART_DELAY)

    async def stop(self) -> None:
        self._stopping = True
        for proc in self._procs.values():
            if proc.returncode is None and proc.stdin is not None:
                proc.stdin.close()   # EOF: finish the sessions under way and exit
        waits = [asyncio.ensure_future(proc.wait()) for proc in self._procs.values() if proc.returncode is None]
        if waits:
            await asyncio.wait(waits, timeout=GRACE + 5)
        for proc in self._procs.values():
            if proc.returncode is None:
                log.error("SMTP receiver pid %d did not stop within %gs; killed", proc.pid, GRACE + 5)
                proc.kill()
        _, stuck = await asyncio.wait(self._tasks, timeout=5) if self._tasks else ((), ())
        for task in stuck:
            task.cancel()


async def receive(settings: Settings) -> None:
    """One receiver process (``python -m mailguard receive``): SMTP in, commit, tell ``serve``."""
    store = Store(settings.database)
    db = AsyncStore(store)
    out = sys.stdout.fileno()
    os.set_blocking(out, False)   # a serve that stops reading must never freeze this loop before a 250

    def accepted() -> None:
        try:
            os.write(out, b"!")
        except OSError:   # a full pipe or serve gone: the byte is only a wake-up hint
            pass

    handler = RelayHandler(settings, db, accepted)
    servers = await start_server(settings, handler, reuse_port=True)
    log.info("SMTP receiver %s (pid %d) listening on %s", os.environ.get("MAILGUARD_RECEIVER_SLOT", "?"),
             os.getpid(), settings.smtp_listen and ",".join(str(listener) for listener in settings.smtp_listen))
    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()
    stdin = sys.stdin.fileno()
    watching = stat.S_ISFIFO(os.fstat(stdin).st_mode)   # started by serve: its pipe; by hand: signals only
    if watching:
        loop.add_reader(stdin, lambda: parent_gone.set() if not os.read(stdin, 1) else None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, parent_gone.set)
    try:
        await parent_gone.wait()
    finally:
        if watching:
            loop.remove_reader(stdin)
        for server in servers:
            server.close()
        await _sessions_done(handler, GRACE)
        handler.verifier.close()
        db.close()


async def _sessions_done(handler: RelayHandler, seconds: float) -> None:
    """Wait until no session is open (each has had its 250 or gone), at most ``seconds``. Python
    3.11's ``Server.wait_closed`` does not wait for the connections of a closed server."""
    deadline = asyncio.get_running_loop().time() + seconds
    while handler.connections.total and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if handler.connections.total:
        log.warning("receiver stopping with %d session(s) still open after %gs", handler.connections.total, seconds)
