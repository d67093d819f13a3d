"""queue: the queue manager (Postfix's qmgr). Moves every message to its end.

On every accepted message: ``incoming`` → inspect → decide → transform → delayed /
awaiting_approval / ready / rejected; a ready message waits in memory for a
delivery slot (at most MAILGUARD_DELIVERY_CONCURRENCY at once, oldest first).
Every MAILGUARD_QUEUE_SCAN_INTERVAL seconds the store is searched for what time
or another process made due (this is how CLI and console actions are seen):

1. held or deferred past the queue lifetime (MAILGUARD_QUEUE_LIFETIME) → bounced, DSN;
2. ``delayed`` whose hold has ended → ready;
3. ``ready``, and ``deferred`` whose retry time has come → waiting for a slot.

After an attempt, ``settle`` decides per recipient: 2xx delivered, 5xx bounced
(a DSN to the sender), 4xx or no answer stays pending and the message is
deferred, retried after MAILGUARD_RETRY_MIN_BACKOFF doubling up to
MAILGUARD_RETRY_MAX_BACKOFF (RFC 5321 §4.5.4.1; Postfix's schedule), and bounced
when the lifetime is over. A stop or crash mid-delivery leaves ``delivering``;
``Store.recover`` makes it ``ready`` at the next start (at-least-once: the
upstream may see such a message twice, never zero times).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from . import dsn, notify
from .decide import STATE_FOR, decide
from .deliver import Attempt, Deliverer
from .inspect import Facts, external_domains, goes_outside, inspect
from .inspect.content import ContentInspector
from .inspect import fax, lookalike
from .inspect.domains import DomainChecker
from .model import (Action, Finding, Origin, QueuedMessage, RecipientStatus, Severity, State,
                    Submission, Verdict)
from .policy import Policy, PolicyWatcher
from .record import LogEntry
from .settings import Settings
from .store import AsyncStore, Store
from .transform import Transformed, transform

log = logging.getLogger("mailguard.queue")

CORRESPONDENTS_TTL = 60.0   # s; past recipients change slowly, the query is not free
INCOMING_BATCH = 100   # messages decided per scan, so dispatching is never starved
DeliverFunction = Callable[[QueuedMessage], Awaitable[Attempt]]


@dataclass(frozen=True)
class Settlement:
    """What one attempt means for the message: new state, per-recipient status, retry time, bounces."""

    state: State
    results: dict[str, tuple[RecipientStatus, str]]
    next_attempt_at: float | None
    bounced: dict[str, tuple[int, str]]


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds until the next try after ``attempts`` failed tries: 300, 600, 1200, … capped at 4000."""
    return float(min(settings.retry_max_backoff, settings.retry_min_backoff * 2 ** max(0, attempts - 1)))


def settle(message: QueuedMessage, attempt: Attempt, now: float, settings: Settings) -> Settlement:
    """Pure: the outcome of ``attempt`` for ``message`` (which was claimed, so attempts ≥ 1)."""
    results: dict[str, tuple[RecipientStatus, str]] = {}
    bounced: dict[str, tuple[int, str]] = {}
    pending = []
    expired = now >= message.expires_at
    for rcpt in message.pending_recipients:
        code, text = attempt.replies.get(rcpt, (451, "4.3.0 no reply recorded for this recipient"))
        reply = f"{code} {text}"
        if 200 <= code < 300:
            results[rcpt] = (RecipientStatus.DELIVERED, reply)
        elif code >= 500 or expired:
            results[rcpt] = (RecipientStatus.BOUNCED, reply)
            bounced[rcpt] = (code, text if code >= 500 else f"4.4.7 queue lifetime expired; last reply: {reply}")
        else:
            results[rcpt] = (RecipientStatus.PENDING, reply)
            pending.append(rcpt)
    if pending:
        return Settlement(State.DEFERRED, results, now + backoff(message.attempts, settings), bounced)
    delivered_before = any(r.status is RecipientStatus.DELIVERED for r in message.recipients)
    delivered_now = any(s is RecipientStatus.DELIVERED for s, _ in results.values())
    state = State.DELIVERED if delivered_before or delivered_now else State.BOUNCED
    return Settlement(state, results, None, bounced)


def rejection_notice(message: QueuedMessage, comment: str, settings: Settings) -> Submission | None:
    """The DSN that tells a sender a manager (or the policy) refused their message."""
    if not dsn.needs_dsn(message):
        return None
    reply = "5.7.1 delivery not authorised" + (f": {comment}" if comment else "")
    reason = "管理者の判断により、このメールは送信されませんでした。" + (f"\n理由: {comment}" if comment else "")
    return dsn.build(message, {r: (550, reply) for r in message.pending_recipients},
                     reason_ja=reason, remote=None, hostname=settings.hostname, zone=settings.zone)


def act(store: Store, settings: Settings, queue_id: str, action: str, actor: str, comment: str = "") -> QueuedMessage:
    """A person's action on a message (``release``, ``approve``, ``cancel``, ``reject``).

    ``reject`` and ``approve`` also queue a notice to the sender. Raises store.TransitionError.
    """
    notice = None
    if action in ("reject", "approve"):
        message = store.get(queue_id, content=True)
        if message is not None and message.state in (State.DELAYED, State.AWAITING_APPROVAL):
            notice = rejection_notice(message, comment, settings) if action == "reject" \
                else notify.approved(message, actor, comment, settings)
    return store.act(queue_id, action, actor, comment, notice=notice, lifetime=settings.queue_lifetime)


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
        self.domain_checker = DomainChecker(settings)
        self.content = ContentInspector(settings.inspect_limits, settings.inspect_workers)
        self._correspondents: frozenset[str] = frozenset()
        self._correspondents_until = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.scan()
            except Exception:   # one bad scan must not stop the queue manager
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
        if self._active:
            _, still = await asyncio.wait(list(self._active.values()), timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if isinstance(self.deliverer, Deliverer):
            self.deliverer.close()
        self.content.close()

    async def scan(self) -> None:
        """Decide what arrived, then dispatch deliveries. The store is searched for
        time-driven work (holds ending, retries due, expiry, and changes made by the
        CLI or console) once per scan interval, not on every wake-up."""
        policy = self.policies.current
        batch = await self.db.incoming(limit=INCOMING_BATCH)
        facts = await self._facts(batch, policy)
        # Concurrently, so that the store commits the whole batch's verdicts at once.
        states = await asyncio.gather(*(self._decide(message, policy, facts) for message in batch))
        for message, state in zip(batch, states):
            if state is State.READY:
                self._queue_for_delivery(message.queue_id)
        if len(batch) == INCOMING_BATCH:
            self.wake()   # more are waiting: come straight back
        now = time.time()
        if now >= self._next_full_scan:
            self._next_full_scan = now + self.settings.queue_scan_interval
            due = await self.db.due_ids(now)
            for queue_id in due["expire"]:
                await self._expire(queue_id, now)
            if due["release"]:
                for queue_id in await self.db.release_due(due["release"], now=now):
                    log.info("%s: hold ended, released", queue_id)
                    self._queue_for_delivery(queue_id)
            for queue_id in due["deliver"]:
                self._queue_for_delivery(queue_id)
        self._dispatch()

    def _queue_for_delivery(self, queue_id: str) -> None:
        if queue_id not in self._waiting and queue_id not in self._active:
            self._waiting[queue_id] = None

    def _dispatch(self) -> None:
        """Start attempts, oldest first, up to MAILGUARD_DELIVERY_CONCURRENCY."""
        while self._waiting and not self._stopping and len(self._active) < self.settings.delivery_concurrency:
            queue_id = next(iter(self._waiting))
            del self._waiting[queue_id]
            self._active[queue_id] = asyncio.create_task(self._deliver(queue_id))

    async def _facts(self, batch: list[QueuedMessage], policy: Policy) -> Facts:
        """What inspection needs from outside: DNS for external domains, who got mail before."""
        checked = [m for m in batch if m.origin is Origin.SMTP]
        external = [r for m in checked for r in m.envelope.rcpt_tos
                    if not policy.is_internal(r) or policy.fax_gateway(r) is not None]
        if not external:
            return Facts()
        domains: set[str] = set().union(*(external_domains(m, policy) for m in checked))
        now = time.monotonic()
        if now >= self._correspondents_until:
            self._correspondents = await self.db.correspondents()
            self._correspondents_until = now + CORRESPONDENTS_TTL
        return Facts(
            delivered_before=await self.db.delivered_before(external),
            correspondents=self._correspondents,
            domains=await self.domain_checker.check(domains) if domains else {},
            candidates=lookalike.candidates(policy, self._correspondents),
        )

    async def _decide(self, message: QueuedMessage, policy: Policy, facts: Facts) -> State:
        transformed = Transformed()
        if message.origin is not Origin.SMTP:   # our own DSNs and notices go straight out
            verdict = Verdict(Action.DELIVER, None, ())
        else:
            roster = (policy.roster.names, policy.roster.insured_numbers)
            content = await self.content.scan(message.content, message.queue_id, roster) \
                if goes_outside(message, policy) else None
            try:
                findings = inspect(message, policy, facts, content)
            except Exception:
                # A message we cannot inspect is held for a person, never passed or dropped.
                log.exception("%s: inspection failed; holding for approval", message.queue_id)
                findings = (Finding("inspection_failed", Severity.HIGH, message.queue_id,
                                    "このメールの検査中にエラーが発生したため、自動では送信しません。"
                                    "管理者が内容を確認してください。"),)
            verdict = decide(findings, policy, received_at=message.received_at,
                             hold_delay=self.settings.hold_delay)
            try:
                transformed = transform(message, verdict, policy, content, self.settings)
            except Exception:
                # Never send unaltered what had to be altered: hold it, unchanged, for a person.
                log.exception("%s: transform failed; holding for approval", message.queue_id)
                failed = Finding("inspection_failed", Severity.HIGH, message.queue_id,
                                 "送信前の変換 (添付ファイルの暗号化など) に失敗したため、自動では送信しません。"
                                 "管理者が確認してください。")
                verdict = Verdict(Action.APPROVAL, None, (failed, *verdict.findings))
        state = STATE_FOR[verdict.action]
        if state is State.REJECTED:
            notices = [rejection_notice(message, "送信ポリシーにより送信を中止しました", self.settings)]
        else:
            notices = [transformed.notice]
            if state in (State.DELAYED, State.AWAITING_APPROVAL) and policy.hold.notify_sender:
                notices.append(notify.held(message, verdict, self.settings))
        await self.db.apply_verdict(message.queue_id, verdict, state, content=transformed.content,
                                    deliver_to=transformed.deliver_to, notes=transformed.notes,
                                    notices=tuple(n for n in notices if n is not None),
                                    lifetime=self.settings.queue_lifetime)
        if any(notices):
            self.wake()   # the notices are incoming now
        log.info("%s: %s (%s)", message.queue_id, state,
                 ", ".join(f"{f.code}:{f.subject}" for f in verdict.findings) or "no findings")
        return state

    async def _expire(self, queue_id: str, now: float) -> None:
        message = await self.db.get(queue_id, content=True)
        if message is None:
            return
        if message.state is State.AWAITING_APPROVAL:
            reply, reason = "4.7.0 not approved within the queue lifetime", \
                "管理者の承認が得られないまま保管期限を過ぎたため、送信を中止しました。"
        else:
            reason = "保管期限を過ぎても配送できなかったため、送信を中止しました。"
            reply = "4.4.7 queue lifetime expired"
        failed = {}
        for rcpt in message.recipients:
            if rcpt.status is RecipientStatus.PENDING:
                failed[rcpt.address] = (450, f"{reply}; last reply: {rcpt.reply}" if rcpt.reply else reply)
        notice = dsn.build(message, failed, reason_ja=reason, remote=None, hostname=self.settings.hostname,
                           zone=self.settings.zone) if dsn.needs_dsn(message) else None
        results = {r: (RecipientStatus.BOUNCED, f"{c} {t}") for r, (c, t) in failed.items()}
        delivered = any(r.status is RecipientStatus.DELIVERED for r in message.recipients)
        entry = LogEntry(event="expired", queue_id=queue_id, at=now, reply=reply,
                         detail={"results": {r: {"status": str(s), "reply": t} for r, (s, t) in results.items()}})
        await self.db.finish(queue_id, State.DELIVERED if delivered else State.BOUNCED, results, entry,
                             dsn=notice, dsn_lifetime=self.settings.queue_lifetime)
        log.warning("%s: expired in state %s; bounced %d recipient(s)", queue_id, message.state, len(failed))

    async def _deliver(self, queue_id: str) -> None:
        try:
            message = await self.db.claim(queue_id)
            if message is None:
                return
            attempt = await self.deliverer(message)
            await self._record(message, attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not an SMTP outcome but a fault of ours: retry later like a 4xx, loudly.
            log.exception("%s: delivery attempt failed unexpectedly; deferring", queue_id)
            try:
                await self.db.defer_after_error(queue_id, f"{type(exc).__name__}: {exc}",
                                                time.time() + self.settings.retry_min_backoff)
            except Exception:
                log.exception("%s: could not defer; it stays delivering until the next start", queue_id)
        finally:
            self._active.pop(queue_id, None)
            self._dispatch()   # a slot is free: start the next waiting message

    async def _record(self, message: QueuedMessage, attempt: Attempt) -> None:
        now = time.time()
        outcome = settle(message, attempt, now, self.settings)
        notice = None
        if outcome.bounced and dsn.needs_dsn(message):
            notice = dsn.build(message, outcome.bounced,
                               reason_ja="宛先のメールサーバーが受け取りを拒否しました。",
                               remote=attempt.remote, hostname=self.settings.hostname, zone=self.settings.zone)
        policy = self.policies.current
        entry = LogEntry(
            event="delivery", queue_id=message.queue_id, at=now,
            reply="; ".join(sorted({t for _, t in outcome.results.values()}))[:1000],
            detail={
                "attempt": message.attempts,
                "remote": attempt.remote,
                "results": {r: {"status": str(s), "reply": t} for r, (s, t) in outcome.results.items()},
                # provision record (個人情報保護法 第29条): to which organisation each copy went
                "organisations": {r: _organisation(r, policy) for r in outcome.results},
                "next_attempt_at": outcome.next_attempt_at,
            },
        )
        await self.db.finish(message.queue_id, outcome.state, outcome.results, entry,
                             next_attempt_at=outcome.next_attempt_at, dsn=notice,
                             dsn_lifetime=self.settings.queue_lifetime)
        log.info("%s: %s via %s (%s)", message.queue_id, outcome.state, attempt.remote, entry.reply)
        if notice is not None:
            self.wake()


def _organisation(address: str, policy: Policy) -> str | None:
    """Who received this copy, for the provision record: a FAX number's or an address's owner."""
    target = fax.parse(address, policy)
    if target is not None:
        entry = policy.fax_entry(target.e164) if target.e164 else None
        return entry.organisation if entry else None
    if policy.is_internal(address):
        return policy.organisation.name
    entry = policy.lookup(address)
    return entry.organisation if entry else None
