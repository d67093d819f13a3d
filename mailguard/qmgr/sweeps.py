"""sweeps: the queue manager's slower rounds, each at most every 30 s (10 scan intervals in tests).

- holds: reminders, escalations and timeouts of mail waiting for a person (``holds.sweep``),
  each escalation and reminder also told to the chat webhooks (``webhooks``);
- links: download links past MAILGUARD_LINK_LIFETIME, or whose message ended unsent, closed
  and their files removed (``Store.sweep_links``, on a thread of its own, never the store's
  batch thread: files go only once the rows are committed);
- retention: the content of messages that ended more than MAILGUARD_CONTENT_RETENTION ago;
- checkpoints: every MAILGUARD_CHECKPOINT_INTERVAL, the send log's size and head signed
  (``store.checkpoints``), in the database and in ``<data_dir>/checkpoints.jsonl``, then
  stamped by the time-stamping authority of MAILGUARD_TSA_URL when there is one (``tsa``).
Several nodes (PostgreSQL): one node at a time runs them, the holder of the ``sweeps`` job lease.
On failure: logged; the next round tries again. Nothing here stops the scan.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..policy import PolicyWatcher
from ..settings import Settings
from ..store import checkpoints
from . import holds, tsa, webhooks

log = logging.getLogger("mailguard.qmgr")
INTERVAL = 30.0


class Sweeps:
    def __init__(self, settings: Settings, db, policies: PolicyWatcher, spawn: Callable, wake: Callable):
        """Checkpoints: every round until the first one is made (a new install), then every
        MAILGUARD_CHECKPOINT_INTERVAL."""
        self.settings, self.db, self.policies, self.spawn, self.wake = settings, db, policies, spawn, wake
        self._next = 0.0
        self._next_checkpoint = 0.0
        self._key_checked = False
        self._first_made = False   # until the first checkpoint: tried every round, not every interval
        self._stamping: asyncio.Task | None = None
        self.key = checkpoints.signing_key(settings.data_dir)

    async def checkpoint(self, final: bool = False) -> None:
        """Sign the send log's size and head (MAILGUARD_CHECKPOINT_INTERVAL, and at stop), then have
        it stamped: in the background, one round at a time, so a slow TSA never holds up the queue;
        at stop, a last round of at most ``tsa.FINAL`` seconds. Several nodes: the one running the
        sweeps signs."""
        if final and not await self._ours():
            return
        if self.db.store.shared and not self._key_checked:
            self._key_checked = True
            if await asyncio.to_thread(self.db.store.last_checkpoint_signed_by, self.key.public_key()) is False:
                log.error("the send log's last checkpoint was signed by another node's key: every node must sign "
                          "with the same key. Copy <data_dir>/checkpoint.key (0600) from the first node to this "
                          "one and restart it; until then 'mailguard log verify --public-key' fails on the "
                          "checkpoints this node signs")
        try:
            made = await asyncio.to_thread(self.db.store.checkpoint, self.key,
                                           self.settings.data_dir / "checkpoints.jsonl")
            if made:
                self._first_made = True
                log.info("send log checkpoint: %d entries, head %s, signed", made["size"], made["head"])
        except Exception:
            log.exception("signing a send-log checkpoint failed; tried again at the next interval")
        if not self.settings.tsa_url:
            return
        if final:
            if self._stamping is not None and not self._stamping.done():
                self._stamping.cancel()
                await asyncio.gather(self._stamping, return_exceptions=True)
            await self._stamp(tsa.FINAL)
        elif self._stamping is None or self._stamping.done():
            self._stamping = asyncio.create_task(self._stamp(tsa.ROUND))

    async def _stamp(self, seconds: float) -> None:
        try:
            await tsa.stamp_pending(self.settings, self.db.store, seconds)
        except Exception:
            log.exception("time-stamping the send-log checkpoints failed; tried again at the next interval")

    async def _ours(self) -> bool:
        """Several nodes: the sweeps run on one of them at a time (a job lease in the store), so each
        reminder, escalation, timeout and checkpoint happens once. One node: always."""
        if not self.db.store.shared:
            return True
        try:
            return await self.db.take_job("sweeps", 3 * min(INTERVAL, 10 * self.settings.queue_scan_interval))
        except Exception:
            log.exception("taking the sweeps' lease failed; tried again at the next scan")
            return False

    async def maybe_run(self, now: float) -> None:
        if (now >= self._next_checkpoint or now >= self._next) and not await self._ours():
            return
        if now >= self._next_checkpoint:
            await self.checkpoint()
            # a fresh install signs its log at the first sweep that has entries, not 10 minutes later
            self._next_checkpoint = now + (self.settings.checkpoint_interval if self._first_made
                                           else min(self.settings.checkpoint_interval, INTERVAL,
                                                    10 * self.settings.queue_scan_interval))
        if now < self._next:
            return
        self._next = now + min(INTERVAL, 10 * self.settings.queue_scan_interval)
        await self.holds()
        await self.links()
        await self.purge(now)

    async def holds(self) -> None:
        policy = self.policies.current
        try:
            for what in await holds.sweep(self.db, policy, self.settings, on_step=lambda step, m: self.spawn(
                    webhooks.notify(policy.webhooks, step, m, self.settings))):
                log.info("%s", what)
            self.wake()
        except Exception:
            log.exception("the approval sweep failed; tried again at the next sweep")

    async def purge(self, now: float) -> None:
        """Raw content past MAILGUARD_CONTENT_RETENTION (``Store.purge_content``), off the store's batch thread."""
        try:
            purged = await asyncio.to_thread(self.db.store.purge_content, now - self.settings.content_retention)
            records = await asyncio.to_thread(self.db.store.purge_records, now - self.settings.record_retention,
                                              self.key, self.settings.zone)
            if records:
                log.info("%d send-log entries past MAILGUARD_RECORD_RETENTION purged; the chain starts at a signed "
                         "anchor", records)
            if purged:
                log.info("content of %d finished message(s) purged (MAILGUARD_CONTENT_RETENTION): %s",
                         len(purged), ", ".join(purged[:20]))
        except Exception:
            log.exception("purging old content failed; tried again at the next sweep")

    async def links(self) -> None:
        try:
            for link_id in await asyncio.to_thread(self.db.store.sweep_links):
                log.info("download link %s closed (expired, or its message ended unsent); files removed", link_id)
        except Exception:
            log.exception("sweeping download links failed; tried again at the next sweep")
