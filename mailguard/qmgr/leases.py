"""leases: this node's claims on the messages it is deciding or delivering, kept alive; the claims of
nodes that died, taken back.

Several nodes on one PostgreSQL share one queue. A node that takes a message to decide or to
deliver holds a lease on it for MAILGUARD_LEASE_SECONDS (``Store.incoming``, ``Store.claim``). Every
third of that, this loop renews the leases on everything still in hand (``Store.renew_leases``),
and puts back to ``ready`` the deliveries whose lease expired (``Store.recover``): their node stopped
renewing, so it died or lost the database. Their messages are then delivered by whichever node
claims them next: at-least-once, as after a crash of a single relay. An undecided message whose
lease expired needs nothing: the next ``incoming`` of any node takes it.

The PostgreSQL ``NOTIFY`` a person's action sends (``Store.act``) wakes every node's scan at once
(``listen``); it is only a hint: each node still scans the store on its own interval.
On failure: logged; the next round tries again (a lease is renewed well before it expires).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Iterable

from ..settings import Settings

log = logging.getLogger("mailguard.qmgr")


class Leases:
    def __init__(self, settings: Settings, db, in_hand: Callable[[], Iterable[str]],
                 recovered: Callable[[list[str]], None], rescan: Callable[[], None]):
        self.settings, self.db, self.in_hand, self.recovered, self.rescan = settings, db, in_hand, recovered, rescan
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    @property
    def shared(self) -> bool:
        return self.db.store.shared

    async def run(self) -> None:
        """Renew, and on a shared database take back expired deliveries, every third of a lease."""
        if self.shared:
            self._listen()
        while not self._stop.is_set():
            await asyncio.sleep(self.settings.lease_seconds / 3)
            await self.round()

    async def round(self) -> None:
        try:
            lost = await self.db.renew_leases(list(self.in_hand()), self.settings.lease_seconds)
            for queue_id in lost:   # paused longer than a lease (a frozen VM): another node has it now
                log.warning("%s: this node's lease expired and another node took the message over", queue_id)
            if self.shared:
                ids = await self.db.recover()
                for queue_id in ids:
                    log.warning("%s: its node stopped renewing its lease mid-delivery; delivering it again",
                                queue_id)
                if ids:
                    self.recovered(ids)
        except Exception:
            log.exception("renewing the leases failed; tried again in %.0f s", self.settings.lease_seconds / 3)

    def _listen(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(self.rescan)

        def listen() -> None:
            while not self._stop.is_set():
                try:
                    self.db.store.listen(wake, self._stop.is_set)
                except Exception as exc:   # the database went away: the scans still poll it
                    log.warning("listening for other nodes' wake-ups failed (%s); retrying in 5 s", exc)
                    self._stop.wait(5)

        self._listener = threading.Thread(target=listen, name="listen", daemon=True)
        self._listener.start()

    def stop(self) -> None:
        self._stop.set()
