"""pool: content scans in worker processes, bounded in time and memory.

Receives the raw message, its queue id and the roster; hands on the
``ContentReport`` of ``report.scan``, run in a pebble process pool (spawned,
never forked: the parent runs threads), so CPU-bound extraction and detection
never run on the event loop. Bounds:

- time: MAILGUARD_INSPECT_TIMEOUT seconds per scan, plus MAILGUARD_OCR_TIMEOUT when OCR is
  installed and the message may hold a scan (``Limits.hard_seconds``); past it the worker is
  killed and replaced, also when it is stuck inside the OCR engine;
- memory: MAILGUARD_INSPECT_MAX_MEMORY bytes of address space per worker
  (``resource.setrlimit(RLIMIT_AS)``, default 2 GiB, for the OCR engine; 0: none). A warmed worker
  (Sudachi's dictionary loaded) takes about 150 MB of it and 80 MB resident.
  A ``MemoryError`` ends the worker (exit 70) and the pool starts a fresh one;
  so does a scan after which the worker's peak address space came within
  ``NEAR_LIMIT`` of the cap, because some libraries report a failed allocation
  as something else (lxml: "unknown error") and the worker may be left fragmented.

Whatever goes wrong — time, memory, a crashed worker, a pool that broke (pebble
stops a pool whose idle worker died: it is rebuilt) — the message is reported
``unscannable`` as a whole: held for a person, never passed unread and never
lost. Nothing here raises to the caller. Each worker loads the detectors'
dictionaries when it starts (``_start_worker``), so a replacement is warm too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool

from .detect import detect
from .extract import Limits, Unscannable
from .report import ContentReport, scan

log = logging.getLogger("mailguard.check.content")

OUT_OF_MEMORY = 70   # worker exit status after a MemoryError (EX_SOFTWARE): the pool replaces it
NEAR_LIMIT = 0.9     # a worker whose peak address space passed this share of the cap is replaced
TASKS_PER_WORKER = 500


def _start_worker(max_bytes: int) -> None:
    """Worker initialiser: cap this process's address space (Linux RLIMIT_AS), then load
    the dictionaries, so that the first scan a worker takes is not slower than the rest."""
    if max_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    try:
        detect("利用者 山田太郎様")
    except Exception:   # the first scan will say what is wrong
        log.exception("loading the detectors failed")


def _scan_in_worker(raw: bytes, limits: Limits, roster: tuple, max_bytes: int = 0) -> ContentReport:
    try:
        report = scan(raw, limits, roster)
    except MemoryError:
        # Whatever was half-built may stay referenced: end this worker, the pool starts a fresh one.
        os._exit(OUT_OF_MEMORY)
    if max_bytes and peak_address_space() >= NEAR_LIMIT * max_bytes:
        os._exit(OUT_OF_MEMORY)   # some part failed for want of memory and said something else
    return report


def peak_address_space(pid: int | str = "self") -> int:
    """VmPeak of a process in bytes (Linux /proc); 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _ready() -> bool:
    return True


class ContentInspector:
    """Scans in a pool of worker processes, each scan bounded by ``limits.seconds``."""

    def __init__(self, limits: Limits, workers: int, max_memory: int = 0):
        self.limits = limits
        self.workers = workers
        self.max_memory = max_memory
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self):
        import pebble

        return pebble.ProcessPool(max_workers=self.workers, max_tasks=TASKS_PER_WORKER,
                                  context=multiprocessing.get_context("spawn"),
                                  initializer=_start_worker, initargs=(self.max_memory,))

    def _rebuild(self, broken) -> None:
        """A new pool in place of ``broken`` (unless a concurrent scan replaced it already)."""
        if self._closed:
            raise RuntimeError("the content scan pool is closed")
        if self._pool is broken:
            log.error("content scan pool broken (a worker died while idle); starting a new one")
            self._pool = self._new_pool()
            broken.stop()

    async def _run(self, seconds: float, *args) -> ContentReport:
        """Run one scan; a pool that broke (pebble stops a pool whose idle worker died) is
        rebuilt and the scan tried once more in the new one."""
        for attempt in (1, 2):
            pool = self._pool
            try:
                future = pool.schedule(_scan_in_worker, args=args, timeout=seconds)
            except RuntimeError:   # pebble refuses work once its pool broke
                if attempt == 2:
                    raise
                self._rebuild(pool)
                continue
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                if attempt == 2:
                    raise
                self._rebuild(pool)
        raise RuntimeError("content scan pool could not be rebuilt")

    async def scan(self, raw: bytes, queue_id: str = "", roster: tuple = ((), ())) -> ContentReport:
        from pebble import ProcessExpired

        seconds = await asyncio.to_thread(self.limits.hard_seconds, raw)   # a search through the whole message
        try:
            return await self._run(seconds, raw, self.limits, roster, self.max_memory)
        except concurrent.futures.TimeoutError:
            log.warning("%s: content scan exceeded %gs; worker killed", queue_id, seconds)
            reason = f"検査が制限時間 ({seconds:g} 秒) 内に終わりませんでした"
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
        except Exception as exc:   # a crash in a parser, or the pool itself
            log.exception("%s: content scan failed", queue_id)
            reason = f"検査中にエラーが発生しました ({type(exc).__name__})"
        return ContentReport("none", unscannable=(Unscannable("メール全体", reason, None),))

    def warm(self) -> None:
        """Start the workers now (each loads the dictionaries as it starts)."""
        for _ in range(self.workers):
            self._pool.schedule(_ready)

    def close(self) -> None:
        self._closed = True   # a scan still under way must not start a new pool after this
        self._pool.stop()
        self._pool.join()
