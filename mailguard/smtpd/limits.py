"""limits: per-client connection counts and SMTP AUTH failure throttling.

``ConnectionLimiter`` counts open SMTP connections per client address; past
MAILGUARD_SMTP_MAX_CONNECTIONS_PER_CLIENT a new one is answered ``421 4.7.0``
and closed (Postfix ``smtpd_client_connection_count_limit``; RFC 5321 §3.8
allows 421 at any time).

``AuthThrottle`` counts AUTH failures per user name and per client address in a
sliding window (MAILGUARD_SMTP_AUTH_FAILURE_WINDOW). When one of them reaches
MAILGUARD_SMTP_AUTH_MAX_FAILURES it is locked for MAILGUARD_SMTP_AUTH_LOCKOUT
seconds: every AUTH for that name or from that address is then answered
``454 4.7.0`` (RFC 4954 §6) without checking the password, so a locked-out user
cannot log in even with the right one, and the attempt costs no Argon2 work.
The thresholds are those of the console's login throttle (5 / 15 min / 15 min).

``CheckQueue`` lets at most as many password checks run as the Argon2 pool has
threads and decides who goes next (``AuthThrottle.rank``): first a client
address that logged in successfully within the last day (the office's own
PCs), then the fewest recent failures of the user name and address plus the
checks that address already has waiting, then first come, first served. Under a
flood from one address or a spray from many, a member of staff is checked next
instead of behind every queued guess; a check whose name or address was locked
while it waited is answered without running Argon2.

Connection counts live in each process. AUTH failures are counted in memory, where every check
reads them, and also in the store (``SharedLockouts``): each failure is recorded there, counted with
those of every receiver process and every node, and a lockout any of them sets reaches all of
them within ``SharedLockouts.INTERVAL`` seconds. So N processes or nodes do not give a password
guesser N times the tries (at most a few more while a lockout travels). Keys are lower-cased user
names and client IP addresses; passwords never reach this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator

from ..settings import Settings

log = logging.getLogger("mailguard.smtpd")
GOOD_CLIENT_MEMORY = 86400.0    # seconds an address that logged in keeps its place in CheckQueue


class ConnectionLimiter:
    """Open connections per client address."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = defaultdict(int)

    def open(self, client: str) -> bool:
        """Count a new connection; False (and not counted) when the client is at its limit."""
        if self._open[client] >= self.limit:
            return False
        self._open[client] += 1
        return True

    def close(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def count(self, client: str) -> int:
        return self._open.get(client, 0)

    @property
    def total(self) -> int:
        """Connections open now, all clients together (a stopping receiver waits for 0)."""
        return sum(self._open.values())


class AuthThrottle:
    """AUTH failures per user name and per client address, in a sliding window."""

    def __init__(self, max_failures: int, window: float, lockout: float, clock=time.monotonic):
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._good: dict[str, float] = {}      # client key -> last successful login

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle:
        return cls(settings.smtp_auth_max_failures, settings.smtp_auth_failure_window,
                   settings.smtp_auth_lockout)

    @staticmethod
    def keys(login: str, client: str) -> tuple[str, str]:
        return f"user:{login.strip().lower()}", f"ip:{client}"

    def locked(self, *keys: str) -> float:
        """Seconds until the longest lock among ``keys`` ends; 0 when none is locked."""
        now = self._clock()
        left = 0.0
        for key in keys:
            until = self._locked_until.get(key)
            if until is None:
                continue
            if until <= now:
                del self._locked_until[key]
            else:
                left = max(left, until - now)
        return left

    def failures(self, *keys: str) -> int:
        """Failures recorded for ``keys`` within the window (a lock clears them)."""
        edge = self._clock() - self.window
        return sum(sum(1 for t in self._failures.get(key, ()) if t > edge) for key in keys)

    def failed(self, *keys: str) -> bool:
        """Record one failure for each key; True if this failure locked one of them."""
        now = self._clock()
        locked = False
        for key in keys:
            window = self._failures[key]
            window.append(now)
            while window and window[0] <= now - self.window:
                window.popleft()
            if len(window) >= self.max_failures:
                self._locked_until[key] = now + self.lockout
                del self._failures[key]
                locked = True
        self._forget(now)
        return locked

    def succeeded(self, login_key: str, client_key: str) -> None:
        """A good login clears that user's failures (not the address's: one user's
        success must not reset a brute force against others from the same client)
        and marks the address as one staff log in from."""
        self._failures.pop(login_key, None)
        self._good[client_key] = self._clock()
        if len(self._good) > 10_000:
            for key in sorted(self._good, key=self._good.get)[:5_000]:
                del self._good[key]

    def rank(self, login_key: str, client_key: str) -> tuple[int, int]:
        """Order of a waiting password check: (0 if the address logged in within a day
        else 1, recent failures of the name and the address); smaller goes first."""
        good = self._clock() - self._good.get(client_key, float("-inf")) < GOOD_CLIENT_MEMORY
        return (0 if good else 1, self.failures(login_key, client_key))

    def merge(self, locks: dict[str, float], wall_now: float) -> None:
        """Lockouts set elsewhere ({key: until, POSIX s}; ``Store.auth_locks``), on this throttle's clock."""
        now = self._clock()
        for key, until in locks.items():
            here = now + (until - wall_now)
            if here > self._locked_until.get(key, 0.0):
                self._locked_until[key] = here

    def _forget(self, now: float) -> None:
        # Bound memory under a spray of distinct names: drop windows that have run out.
        if len(self._failures) > 10_000:
            for key in [k for k, w in self._failures.items() if not w or w[-1] <= now - self.window]:
                del self._failures[key]
        if len(self._locked_until) > 10_000:
            for key in [k for k, until in self._locked_until.items() if until <= now]:
                del self._locked_until[key]


class CheckQueue:
    """At most ``width`` checks at once; the others wait, fewest recent failures first."""

    def __init__(self, width: int):
        self.width = width
        self._busy = 0
        self._waiting: list[tuple[tuple[int, int], int, asyncio.Future]] = []
        self._order = itertools.count()
        self._pending: dict[str, int] = defaultdict(int)     # client -> checks waiting or running

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiting if not future.done())

    @contextlib.asynccontextmanager
    async def slot(self, rank: tuple[int, int], client: str) -> AsyncIterator[None]:
        """Wait for a place; ``rank`` from ``AuthThrottle.rank``, worsened by the
        checks ``client`` already has waiting or running."""
        rank = (rank[0], rank[1] + self._pending[client])
        self._pending[client] += 1
        try:
            if self._busy < self.width and not self.waiting:
                self._busy += 1
            else:
                future = asyncio.get_running_loop().create_future()
                heapq.heappush(self._waiting, (rank, next(self._order), future))
                try:
                    await future        # resolved by _release: the place is handed over, still counted
                except asyncio.CancelledError:
                    if future.done() and not future.cancelled():
                        self._release()     # handed over just as this session went away
                    raise
            try:
                yield
            finally:
                self._release()
        finally:
            self._pending[client] -= 1
            if not self._pending[client]:
                del self._pending[client]

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._busy -= 1


class SharedLockouts:
    """The AUTH throttle's failures and lockouts, shared through the store (``Store.auth_failed``,
    ``auth_locks``) with the other processes and nodes. Writes go in the background: an AUTH reply
    never waits for them; a store that fails is logged and the local throttle still holds."""

    INTERVAL = 1.0   # seconds between reads of the lockouts set elsewhere

    def __init__(self, throttle: AuthThrottle, db):
        self.throttle, self.db = throttle, db
        self._tasks: set[asyncio.Task] = set()
        self.reader: asyncio.Task | None = None   # ``run``, started by ``smtpd.server.start_server``

    def failed(self, keys: tuple[str, ...]) -> None:
        self._spawn(self._failed(keys))

    def succeeded(self, login_key: str) -> None:
        self._spawn(self.db.auth_succeeded(login_key))

    async def _failed(self, keys: tuple[str, ...]) -> None:
        t = self.throttle
        locked = await self.db.auth_failed(keys, window=t.window, max_failures=t.max_failures, lockout=t.lockout)
        t.merge(locked, time.time())

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("sharing an AUTH failure through the store failed: %s", task.exception())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            try:
                self.throttle.merge(await self.db.auth_locks(), time.time())
            except Exception as exc:
                log.warning("reading the AUTH lockouts of the other processes failed: %s", exc)
