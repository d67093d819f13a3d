"""AsyncStore: the store's methods, awaited, run on one dedicated thread.

The event loop never waits on the disk. Calls that arrive while the thread is
busy are run together as one batch (``Database.run_batch``): under load, many
SMTP sessions' messages share one fsync instead of queueing for one each. Methods marked
``@reads`` run outside that transaction, after it commits: they never take the write lock.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


def reads(method: Callable) -> Callable:
    """Marks a store method that only reads: the store's thread (``AsyncStore``) runs it outside the batch's
    write transaction, so it never waits for, nor holds, the write lock every node's writes share."""
    method.reads_only = True
    return method


class AsyncStore:
    """The same methods, awaited; run on one dedicated thread (never on the event loop).

    Calls that arrive while the thread is busy are run together as one batch
    (``Store.run_batch``): under load, many SMTP sessions' messages share one
    fsync instead of queueing for one each.
    """

    MAX_BATCH = 256

    def __init__(self, store):
        self.store = store
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="store", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._calls.put((method, args, kwargs, loop, future))
            return await future

        return call

    def _work(self) -> None:
        while True:
            first = self._calls.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._calls.put(None)   # stop after this batch
                    break
                batch.append(item)
            writes = [item for item in batch if not getattr(item[0], "reads_only", False)]
            try:
                outcomes = self.store.run_batch([(fn, args, kwargs) for fn, args, kwargs, _, _ in writes]) \
                    if writes else []
            except BaseException as exc:   # this thread must outlive any failure: every caller waits on it
                outcomes = [(False, exc)] * len(writes)
            for (_, _, _, loop, future), (ok, value) in zip(writes, outcomes):
                loop.call_soon_threadsafe(_settle, future, ok, value)
            for fn, args, kwargs, loop, future in batch:   # reads, after the writes before them committed
                if getattr(fn, "reads_only", False):
                    loop.call_soon_threadsafe(_settle, future, *_call(fn, args, kwargs))

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join()
        self.store.close()


def _call(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:
        return False, exc


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)

