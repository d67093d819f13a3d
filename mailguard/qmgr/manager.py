"""manager: the queue manager (Postfix's qmgr). Moves every message to its end.

On every accepted message: routes → facts (DNS, past recipients) → content scan
(worker pool) → ``check.pipeline.assess`` (in a thread) → delayed /
awaiting_approval / ready / rejected, stored with its notices in one transaction.
A ready message waits in memory for a delivery slot (at most
MAILGUARD_DELIVERY_CONCURRENCY at once, oldest first). Every
MAILGUARD_QUEUE_SCAN_INTERVAL seconds the store is searched for what time or
another process made due (this is how CLI and console actions are seen):

1. not delivered within the queue lifetime (MAILGUARD_QUEUE_LIFETIME) → bounced, DSN;
2. ``delayed`` whose hold has ended → ready;
3. ``ready``, and ``deferred`` whose retry time has come → waiting for a slot;
4. every 30 s at most: download links past MAILGUARD_LINK_LIFETIME, or whose message
   ended unsent, are closed and their files removed (``Store.sweep_links``); approvers are
   reminded, escalated to, and undecided or unconfirmed holds time out (``holds``).

Isolation: whatever fails for one message (its assessment, storing its verdict,
its expiry) is logged with its queue id and that message alone is held or
retried later; the scan goes on with every other message. A stop or crash
mid-delivery leaves ``delivering``; ``Store.recover`` makes it ``ready`` at the
next start (at-least-once: the upstream may see it twice, never zero times).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Awaitable, Callable

from .. import metrics
from ..check import route as routing
from ..check.content.extract import Limits
from ..check.content.report import ContentReport
from ..check.content.pool import ContentInspector
from ..check.pipeline import Assessment, assess, held_for_failure
from ..check.facts import FactGatherer
from ..check.recipients import Facts
from ..model import Origin, QueuedMessage, RecipientStatus, Route, State
from ..notices import dsn
from ..policy import Policy, PolicyWatcher
from ..settings import Settings
from ..smtp import Attempt, Deliverer
from ..store import AsyncStore, LeaseLost, LogEntry, TransitionError
from . import holds, webhooks
from .leases import Leases
from .sweeps import Sweeps
from .settle import parties, settle

log = logging.getLogger("mailguard.qmgr")

INCOMING_BATCH = 100        # messages decided per scan, so dispatching is never starved
RETRY_FAILED_DECISION = 60.0   # s before a message whose verdict could not be stored is tried again
MAX_DECIDING = 2 * INCOMING_BATCH   # messages being decided at once (content scans queue in the pool)
MAX_DECIDING_BYTES = 128 * 1024 * 1024   # and their content in memory together (past the first message)
DeliverFunction = Callable[[QueuedMessage], Awaitable[Attempt]]


class QueueManager:
    def __init__(self, settings: Settings, db: AsyncStore, policies: PolicyWatcher,
                 deliverer: DeliverFunction | None = None):
        self.settings = settings
        self.db = db
        self.policies = policies
        self.deliverer = deliverer or Deliverer(settings)
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: dict[str, asyncio.Task] = {}
        # Ready to go, not yet started (insertion-ordered: oldest first). A message
        # cancelled meanwhile is simply not claimed.
        self._waiting: dict[str, None] = {}
        self._next_full_scan = 0.0
        self._background: set[asyncio.Task] = set()
        self._failed_decisions: dict[str, float] = {}   # queue id → when to try storing again
        self._deciding: dict[str, int] = {}              # queue id → size, for decisions under way
        self._decisions: set[asyncio.Task] = set()
        # attempts whose outcome could not be stored yet: the message stays delivering meanwhile
        self._unrecorded: dict[str, tuple[QueuedMessage, Attempt]] = {}
        self.sweeps = Sweeps(settings, db, policies, self._spawn, self.wake)
        # renewed: what is being decided, delivered, or delivered with its outcome not yet stored
        self.leases = Leases(settings, db, lambda: [*self._deciding, *self._active, *self._unrecorded],
                             self._recovered, self.rescan)
        self.facts = FactGatherer(settings, db, dns=settings.dns_checks)
        self.content = ContentInspector(Limits.from_settings(settings), settings.inspect_workers,
                                        settings.inspect_max_memory)
        # assess (transform grows with the parts) runs on its own threads, never on the loop,
        # and never takes the default pool's threads the console and the store's callers use.
        self._assess_pool = ThreadPoolExecutor(max_workers=settings.inspect_workers, thread_name_prefix="assess")

    def wake(self) -> None:
        self._wake.set()

    def rescan(self) -> None:
        """Search the store now, not at the next interval (another node's action, a lease taken back)."""
        self._next_full_scan = 0.0
        self.wake()

    def _recovered(self, queue_ids: list[str]) -> None:
        for queue_id in queue_ids:
            self._queue_for_delivery(queue_id)
        self._dispatch()

    async def run(self) -> None:
        self._spawn(self.leases.run())
        while not self._stopping:
            try:
                await self.scan()
            except Exception:   # a store outage, not a message: retry after the interval
                log.exception("queue scan failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.queue_scan_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop scanning; let attempts under way finish for ``grace`` seconds, then cancel them
        (their messages stay ``delivering`` and are retried at the next start)."""
        self._stopping = True
        self.wake()
        while self._decisions:   # undecided messages stay incoming: decided at the next start
            for task in list(self._decisions):
                task.cancel()
            await asyncio.gather(*list(self._decisions), return_exceptions=True)
        if self._active:
            _, still = await asyncio.wait(list(self._active.values()), timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        for message, attempt in list(self._unrecorded.values()):   # a last try: else delivered again after restart
            await self._record_safely(message, attempt)
        self.leases.stop()
        for task in list(self._background):
            task.cancel()
        await self.sweeps.checkpoint(final=True)   # the log as it stands at stop, signed (and stamped)
        try:   # what this node did not get to decide, and its sweeps, are the other nodes' now
            await self.db.release_leases()
        except Exception:
            log.exception("releasing this node's leases failed; they expire in %.0f s", self.settings.lease_seconds)
        if isinstance(self.deliverer, Deliverer):
            self.deliverer.close()
        self.content.close()
        self._assess_pool.shutdown(wait=False, cancel_futures=True)

    async def scan(self) -> None:
        """Decide what arrived, then dispatch deliveries. The store is searched for
        time-driven work (holds ending, retries due, expiry, and changes made by the
        CLI or console) once per scan interval, not on every wake-up."""
        now = time.time()
        self._failed_decisions = {q: t for q, t in self._failed_decisions.items() if t > now}
        await self._start_decisions()
        now = time.time()
        if now >= self._next_full_scan:
            self._next_full_scan = now + self.settings.queue_scan_interval
            for message, attempt in list(self._unrecorded.values()):
                await self._record_safely(message, attempt)
            due = await self.db.due_ids(now)
            for queue_id in due["expire"]:
                if queue_id not in self._deciding:
                    await self._expire(queue_id, now)
            if due["release"]:
                for queue_id in await self.db.release_due(due["release"], now=now):
                    log.info("%s: hold ended, released", queue_id)
                    self._queue_for_delivery(queue_id)
            for queue_id in due["deliver"]:
                self._queue_for_delivery(queue_id)
            await self.sweeps.maybe_run(now)
        self._dispatch()

    def _spawn(self, coroutine) -> None:
        """Work nobody waits for (webhooks): kept referenced until done, cancelled at stop."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_decisions(self) -> None:
        """Take the next batch of incoming messages and decide it in the background: a slow
        content scan never keeps the scan from releasing, expiring or dispatching others."""
        room = MAX_DECIDING_BYTES - sum(self._deciding.values())
        if self._stopping or len(self._deciding) >= MAX_DECIDING or (self._deciding and room <= 0):
            return
        batch = await self.db.incoming(limit=INCOMING_BATCH, max_bytes=max(room, 1),
                                       exclude=[*self._failed_decisions, *self._deciding],
                                       lease=self.settings.lease_seconds)
        if not batch or self._stopping:
            return
        self._deciding.update({m.queue_id: m.size for m in batch})
        task = asyncio.create_task(self._decide_batch(batch))
        self._decisions.add(task)
        task.add_done_callback(self._decisions.discard)
        self.wake()   # there may be more (the batch is bounded in count and bytes): come straight back

    async def decisions_done(self) -> None:
        """Wait until every decision started so far is stored (tests, and a clean stop)."""
        while self._decisions:
            await asyncio.gather(*list(self._decisions), return_exceptions=True)

    async def _decide_batch(self, batch: list[QueuedMessage]) -> None:
        try:
            await self._decide_all(batch)
        finally:
            for m in batch:
                self._deciding.pop(m.queue_id, None)
            self.wake()

    async def _decide_all(self, batch: list[QueuedMessage]) -> None:
        policy = self.policies.current
        routes = [routing.routes(m.envelope.rcpt_tos, policy) for m in batch]
        checked = [rs for m, rs in zip(batch, routes) if m.origin is Origin.SMTP]
        try:
            facts = await self.facts.gather(checked, policy)
        except Exception:   # DNS or the store: decide without them (nothing is "known" then)
            log.exception("gathering facts failed; deciding without past recipients and DNS")
            facts = Facts()
        # Concurrently: each goes its way as soon as it is decided, and the store commits
        # the verdicts that arrive together in one transaction.
        await asyncio.gather(*(self._decide(m, rs, policy, facts) for m, rs in zip(batch, routes)))

    async def _decide(self, message: QueuedMessage, routes: tuple[Route, ...], policy: Policy,
                      facts: Facts) -> State | None:
        try:
            content = await self._content(message, routes, policy)
            assessment = await asyncio.get_running_loop().run_in_executor(
                self._assess_pool, assess, message, routes, policy, facts, content, self.settings)
        except Exception as exc:   # a bug in a stage: this message waits, the others go on
            log.exception("%s: assessment failed; holding for a manager", message.queue_id)
            assessment = held_for_failure(message, "decide", failures=(f"decide: {type(exc).__name__}",))
        if not await self._store(message, assessment):
            held = held_for_failure(message, "store", assessment.findings)
            if not await self._store(message, held):
                self._failed_decisions[message.queue_id] = time.time() + RETRY_FAILED_DECISION
                return None
            assessment = held
        log.info("%s: %s (%s)", message.queue_id, assessment.state,
                 ", ".join(f"{f.code}:{f.subject}" for f in assessment.findings[:20]) or "no findings")
        if assessment.state is State.READY:
            self._queue_for_delivery(message.queue_id)
            self._dispatch()
        return assessment.state

    async def _content(self, message: QueuedMessage, routes: tuple[Route, ...],
                       policy: Policy) -> ContentReport | None:
        if message.origin is not Origin.SMTP or not routing.leaves(routes):
            return None
        roster = (policy.roster.names, policy.roster.insured_numbers)
        started = time.monotonic()
        report = await self.content.scan(message.content or b"", message.queue_id, roster)
        metrics.scanned(time.monotonic() - started)
        return report

    async def _store(self, message: QueuedMessage, a: Assessment) -> bool:
        try:
            told, to_approvers = (), ()
            if a.state is State.AWAITING_APPROVAL and message.origin is Origin.SMTP:
                try:   # the approvers are told with the verdict, in its transaction
                    users = holds.users_by_name(await self.db.list_users())
                    told, to_approvers = holds.request_notices(message, a.findings, self.policies.current, users,
                                                               self.settings)
                except Exception:   # the hold itself must not fail for it: the sweep reminds them
                    log.exception("%s: the approvers' notices could not be made", message.queue_id)
            await self.db.apply_verdict(message.queue_id, a.verdict, a.state, content=a.transformed.content,
                                        deliver_to=a.transformed.deliver_to, notes=a.transformed.notes,
                                        notices=a.notices + tuple(to_approvers), approvers=tuple(told),
                                        provision=a.provision, protection=a.transformed.protection,
                                        lifetime=self.settings.queue_lifetime,
                                        protected=a.transformed.protected,
                                        link_limits=(self.settings.link_lifetime, self.settings.link_max_downloads,
                                                     self.settings.link_max_passcode_failures))
        except Exception:
            log.exception("%s: storing the verdict failed", message.queue_id)
            return False
        if a.notices or to_approvers:
            self.wake()   # the notices are incoming now
        if a.state is State.AWAITING_APPROVAL and message.origin is Origin.SMTP:
            self._spawn(webhooks.notify(self.policies.current.webhooks, "approval_requested",
                                        replace(message, findings=a.findings), self.settings))
        return True

    def _queue_for_delivery(self, queue_id: str) -> None:
        if queue_id not in self._waiting and queue_id not in self._active:
            self._waiting[queue_id] = None

    def _dispatch(self) -> None:
        """Start attempts, oldest first, up to MAILGUARD_DELIVERY_CONCURRENCY."""
        while self._waiting and not self._stopping and len(self._active) < self.settings.delivery_concurrency:
            queue_id = next(iter(self._waiting))
            del self._waiting[queue_id]
            self._active[queue_id] = asyncio.create_task(self._deliver(queue_id))

    async def _expire(self, queue_id: str, now: float) -> None:
        try:
            await self._expire_one(queue_id, now)
        except TransitionError as exc:   # another node (or a person) ended it first
            log.info("%s: not expired here: %s", queue_id, exc)
        except Exception:
            log.exception("%s: expiring failed; tried again at the next scan", queue_id)

    async def _expire_one(self, queue_id: str, now: float) -> None:
        message = await self.db.get(queue_id, content=True)
        if message is None:
            return
        if message.state is State.AWAITING_APPROVAL:
            reply, reason = "4.7.0 not approved within the queue lifetime", \
                "管理者の承認が得られないまま保管期限を過ぎたため、送信を中止しました。"
        elif message.state is State.AWAITING_CONFIRMATION:
            reply, reason = "4.7.0 not confirmed by the sender within the queue lifetime", \
                "送信者の確認が得られないまま保管期限を過ぎたため、送信を中止しました。"
        else:
            reason = "保管期限を過ぎても配送できなかったため、送信を中止しました。"
            reply = "4.4.7 queue lifetime expired"
        failed = {}
        for rcpt in message.recipients:
            if rcpt.status is RecipientStatus.PENDING:
                failed[rcpt.address] = (450, f"{reply}; last reply: {rcpt.reply}" if rcpt.reply else reply)
        notice = self._dsn(message, failed, reason, remote=None)
        results = {r: (RecipientStatus.BOUNCED, f"{c} {t}") for r, (c, t) in failed.items()}
        delivered = any(r.status is RecipientStatus.DELIVERED for r in message.recipients)
        entry = LogEntry(event="expired", queue_id=queue_id, at=now, reply=reply,
                         detail={"results": {r: {"status": str(s), "reply": t} for r, (s, t) in results.items()}})
        await self.db.finish(queue_id, State.DELIVERED if delivered else State.BOUNCED, results, entry,
                             transition="expire", dsn=notice, dsn_lifetime=self.settings.queue_lifetime)
        log.warning("%s: expired in state %s; bounced %d recipient(s)", queue_id, message.state, len(failed))
        if notice is not None:
            self.wake()

    async def _deliver(self, queue_id: str) -> None:
        try:
            message = await self.db.claim(queue_id, lease=self.settings.lease_seconds)
            if message is None:
                return
            try:
                started = time.monotonic()
                attempt = await self.deliverer(message)
                metrics.delivered(time.monotonic() - started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not an SMTP outcome but a fault of ours before any reply: retry later like a 4xx.
                log.exception("%s: delivery attempt failed unexpectedly; deferring", queue_id)
                await self.db.defer_after_error(queue_id, f"{type(exc).__name__}: {exc}",
                                                time.time() + self.settings.retry_min_backoff)
                return
            await self._record_safely(message, attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: could not move on after the attempt; it stays delivering until the next start",
                          queue_id)
        finally:
            self._active.pop(queue_id, None)
            self._dispatch()   # a slot is free: start the next waiting message

    async def _record_safely(self, message: QueuedMessage, attempt: Attempt) -> None:
        """Record an attempt whose replies we have. Never retry the delivery instead: the
        upstream may have accepted it. A record that fails in full is tried plain (no DSN
        details), then kept in memory and tried again at every scan."""
        for plain in (False, True):
            try:
                await self._record(message, attempt, plain=plain)
                self._unrecorded.pop(message.queue_id, None)
                return
            except LeaseLost as exc:   # another node's attempt is the one the records keep
                log.error("%s: %s; this attempt via %s: %s", message.queue_id, exc, attempt.remote, attempt.replies)
                self._unrecorded.pop(message.queue_id, None)
                return
            except Exception:
                log.exception("%s: recording the attempt failed%s", message.queue_id,
                              "" if plain else "; trying a plain record")
        self._unrecorded[message.queue_id] = (message, attempt)

    async def _record(self, message: QueuedMessage, attempt: Attempt, *, plain: bool = False) -> None:
        """Store an attempt's outcome. ``plain``: without the reply texts (what made the full
        record fail is in them), but still with the organisations and a DSN for bounces."""
        now = time.time()
        outcome = settle(message, attempt, now, self.settings)
        if not plain:   # counted once: a plain record only follows a full one that failed
            metrics.recipient_results(outcome.results)
        if plain:
            outcome = replace(outcome, results={r: (s, "") for r, (s, _) in outcome.results.items()},
                              bounced={r: (code, f"{code}") for r, (code, _) in outcome.bounced.items()})
        notice = self._bounce(message, outcome, attempt)
        who = parties(outcome.results, self.policies.current)
        detail = {
            "attempt": message.attempts,
            "remote": attempt.remote,
            "results": {r: {"status": str(s), "reply": t} for r, (s, t) in outcome.results.items()},
            # provision record (個人情報保護法 第29条): to which organisation each copy went
            "organisations": {r: organisation for r, (organisation, _, _) in who.items()},
            "next_attempt_at": outcome.next_attempt_at,
        }
        entry = LogEntry(event="delivery", queue_id=message.queue_id, at=now, detail=detail,
                         reply="; ".join(sorted({t for _, t in outcome.results.values()}))[:1000])
        await self.db.finish(message.queue_id, outcome.state, outcome.results, entry,
                             next_attempt_at=outcome.next_attempt_at, dsn=notice,
                             dsn_lifetime=self.settings.queue_lifetime,
                             provisions={r: (org, basis) for r, (org, basis, third) in who.items() if third})
        log.info("%s: %s via %s (%s)", message.queue_id, outcome.state, attempt.remote, entry.reply)
        if notice is not None:
            self.wake()

    def _bounce(self, message: QueuedMessage, outcome, attempt: Attempt):
        """The DSN for the recipients this attempt bounced, if any."""
        if not outcome.bounced:
            return None
        return self._dsn(message, outcome.bounced, "宛先のメールサーバーが受け取りを拒否しました。", attempt.remote)

    def _dsn(self, message: QueuedMessage, failed: dict[str, tuple[int, str]], reason: str, remote: str | None):
        """The DSN for ``failed`` recipients; None when none is due (null sender, a DSN itself) or
        it cannot be built (logged: recording the message's end must not wait for it)."""
        if not dsn.needs_dsn(message):
            return None
        try:
            return dsn.build(message, failed, reason_ja=reason, remote=remote,
                             hostname=self.settings.hostname, zone=self.settings.zone)
        except Exception:
            log.exception("%s: the DSN could not be built; the message ends without it", message.queue_id)
            return None
