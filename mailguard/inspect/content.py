"""content: classify a message and each attachment as none / personal / sensitive.

``scan`` (run in a worker process) extracts every part's text (``extract``),
runs the detectors (``detect``) and classifies each top-level part — the body,
each attachment — and the message as a whole:

- ``sensitive``: 要配慮個人情報 about an identifiable person: a sensitive fact
  (病名, 障害, 服薬, 要介護度 …) together with something that identifies someone
  (氏名, 生年月日, 被保険者番号 …) in the same part, or a My Number (特定個人情報);
- ``personal``: something that identifies a person, without sensitive facts;
- ``none``: neither. Sensitive words alone (a training schedule on 認知症ケア)
  identify nobody and are not personal data.

Findings: ``sensitive_data`` / ``personal_data`` per part, naming the kinds found
with masked examples (full numbers never leave this module), and
``unscannable_content`` per part that could not be read, with the reason.

``ContentInspector`` runs ``scan`` in a pebble process pool: CPU-bound work never
stalls the SMTP sessions on the event loop, and a worker past the time limit is
killed and replaced (the message is then ``unscannable``, never lost).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections import Counter
from dataclasses import dataclass, field

from ..model import Finding, Severity
from .detect import Detection, detect, detectors_for
from .extract import Extraction, Limits, Unscannable, extract_message

log = logging.getLogger("mailguard.inspect.content")

LEVELS = ("none", "personal", "sensitive")
BODY = "本文"


def classify(detections: list[Detection]) -> str:
    if any(d.sensitive and d.identifies for d in detections):
        return "sensitive"
    identifies = any(d.identifies for d in detections)
    if identifies and any(d.sensitive for d in detections):
        return "sensitive"
    return "personal" if identifies else "none"


@dataclass(frozen=True)
class PartReport:
    name: str                        # BODY or the attachment's file name
    level: str
    detections: tuple[Detection, ...]
    places: tuple[str, ...] = ()     # where inside it: "2ページ", "シート 計画", "› 中の.docx"


@dataclass(frozen=True)
class ContentReport:
    level: str
    parts: tuple[PartReport, ...] = ()
    unscannable: tuple[Unscannable, ...] = ()
    attachments: tuple[str, ...] = field(default=())

    def level_of(self, attachment: str) -> str:
        return next((p.level for p in self.parts if p.name == attachment), "none")

    def findings(self) -> list[Finding]:
        findings = []
        for part in self.parts:
            if part.level == "none":
                continue
            sensitive = part.level == "sensitive"
            what = "要配慮個人情報" if sensitive else "個人情報"
            findings.append(Finding(
                "sensitive_data" if sensitive else "personal_data",
                Severity.HIGH if sensitive else Severity.MEDIUM, part.name,
                f"{'本文' if part.name == BODY else '添付ファイル ' + part.name} に{what}が含まれています: "
                f"{summary(part.detections)}" + (f" (場所: {'、'.join(part.places[:5])})" if part.places else ""),
            ))
        for item in self.unscannable:
            findings.append(Finding(
                "unscannable_content", Severity.HIGH, item.attachment or item.where,
                f"{item.where} を検査できませんでした: {item.reason}。内容を人が確認する必要があります。",
            ))
        return findings


def summary(detections: tuple[Detection, ...]) -> str:
    """``氏名 1件 (山＊＊＊)、病名・病状 2件 (認知症) …``: masked, never a full number."""
    counts = Counter(d.label for d in detections)
    example = {}
    for d in sorted(detections, key=lambda d: -d.score):
        example.setdefault(d.label, d.masked)
    return "、".join(f"{label} {n}件 ({example[label]})" for label, n in counts.most_common())


def scan(raw: bytes, limits: Limits = Limits(), roster: tuple = ((), ())) -> ContentReport:
    """Extract, detect and classify. Pure and CPU-bound: run it in a worker process.

    ``roster``: (names, insured numbers) from policies/roster.csv, found exactly.
    """
    extraction: Extraction = extract_message(raw, limits)
    detectors = detectors_for(roster)
    groups: dict[str, list[Detection]] = {}
    places: dict[str, list[str]] = {}
    for part in extraction.parts:
        name = part.attachment or BODY
        found = detect(part.text, detectors)
        groups.setdefault(name, []).extend(found)
        place = _place(part.where, name)
        if found and place and place not in places.setdefault(name, []):
            places[name].append(place)
    parts = tuple(PartReport(name, classify(found), tuple(found), tuple(places.get(name, ())))
                  for name, found in groups.items())
    everything = [d for found in groups.values() for d in found]
    return ContentReport(classify(everything), parts, tuple(extraction.unscannable), tuple(extraction.attachments))


def _place(where: str, name: str) -> str:
    """The part of ``where`` below the attachment: "添付 a.xlsx シート 計画" → "シート 計画"."""
    head = f"添付 {name}"
    return where.split(head, 1)[1].strip() if head in where else ""


def _warm() -> bool:
    """Load the detectors' dictionaries in a fresh worker."""
    detect("利用者 山田太郎様")
    return True


class ContentInspector:
    """Scans in a pool of worker processes, each scan bounded by ``limits.seconds``."""

    def __init__(self, limits: Limits, workers: int):
        import pebble

        self.limits = limits
        # spawn: forking a process that runs threads (the store's) is unsafe.
        self._pool = pebble.ProcessPool(max_workers=workers, max_tasks=500,
                                        context=multiprocessing.get_context("spawn"))

    async def scan(self, raw: bytes, queue_id: str = "", roster: tuple = ((), ())) -> ContentReport:
        future = self._pool.schedule(scan, args=(raw, self.limits, roster), timeout=self.limits.seconds)
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            log.warning("%s: content scan exceeded %gs; worker killed", queue_id, self.limits.seconds)
            reason = f"検査が制限時間 ({self.limits.seconds:g} 秒) 内に終わりませんでした"
        except Exception as exc:   # the worker died (memory, a crash in a parser)
            log.exception("%s: content scan failed", queue_id)
            reason = f"検査中にエラーが発生しました ({type(exc).__name__})"
        return ContentReport("none", unscannable=(Unscannable("メール全体", reason, None),))

    def warm(self) -> None:
        for _ in range(2):
            self._pool.schedule(_warm)

    def close(self) -> None:
        self._pool.stop()
        self._pool.join()
