"""pool: content scans in worker processes, bounded in time and memory.

CPU-bound extraction and detection never run on the event loop: ``scan`` runs
in a pebble process pool (spawned, never forked: the parent runs threads). Each
scan is bounded by MAILGUARD_INSPECT_TIMEOUT seconds (the worker is killed and
replaced) and each worker by MAILGUARD_INSPECT_MAX_MEMORY bytes of address space
(``resource.setrlimit(RLIMIT_AS)``): a document that inflates to gigabytes makes
that one worker fail, never the machine. Either way the message is reported
``unscannable`` — held for a person, never passed unread and never lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os

from .detect import detect
from .extract import Limits, Unscannable
from .report import ContentReport, scan

log = logging.getLogger("mailguard.check.content")

OUT_OF_MEMORY = 70   # worker exit status after a MemoryError (EX_SOFTWARE): the pool replaces it


def _limit_memory(max_bytes: int) -> None:
    """Worker initialiser: cap this process's address space (Linux RLIMIT_AS)."""
    if max_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _scan_in_worker(raw: bytes, limits: Limits, roster: tuple) -> ContentReport:
    try:
        return scan(raw, limits, roster)
    except MemoryError:
        # Whatever was half-built may stay referenced: end this worker, the pool starts a fresh one.
        os._exit(OUT_OF_MEMORY)


def _warm() -> bool:
    """Load the detectors' dictionaries in a fresh worker."""
    detect("利用者 山田太郎様")
    return True


class ContentInspector:
    """Scans in a pool of worker processes, each scan bounded by ``limits.seconds``."""

    def __init__(self, limits: Limits, workers: int, max_memory: int = 0):
        import pebble

        self.limits = limits
        self._pool = pebble.ProcessPool(max_workers=workers, max_tasks=500,
                                        context=multiprocessing.get_context("spawn"),
                                        initializer=_limit_memory, initargs=(max_memory,))

    async def scan(self, raw: bytes, queue_id: str = "", roster: tuple = ((), ())) -> ContentReport:
        from pebble import ProcessExpired

        future = self._pool.schedule(_scan_in_worker, args=(raw, self.limits, roster), timeout=self.limits.seconds)
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            log.warning("%s: content scan exceeded %gs; worker killed", queue_id, self.limits.seconds)
            reason = f"検査が制限時間 ({self.limits.seconds:g} 秒) 内に終わりませんでした"
        except ProcessExpired as exc:
            if exc.exitcode == OUT_OF_MEMORY:
                log.warning("%s: content scan ran out of memory; worker replaced", queue_id)
                reason = "検査に使えるメモリの上限を超えました (展開すると非常に大きくなるファイルの可能性)"
            else:
                log.error("%s: content scan worker died (exit %s); worker replaced", queue_id, exc.exitcode)
                reason = f"検査の処理が異常終了しました (終了コード {exc.exitcode})"
        except MemoryError:
            log.warning("%s: content scan ran out of memory", queue_id)
            reason = "検査に使えるメモリの上限を超えました"
        except Exception as exc:   # a crash in a parser
            log.exception("%s: content scan failed", queue_id)
            reason = f"検査中にエラーが発生しました ({type(exc).__name__})"
        return ContentReport("none", unscannable=(Unscannable("メール全体", reason, None),))

    def warm(self) -> None:
        for _ in range(2):
            self._pool.schedule(_warm)

    def close(self) -> None:
        self._pool.stop()
        self._pool.join()
