"""report: classify a message and each attachment as none / personal / sensitive.

``scan`` (run in a worker process, see ``pool``) extracts every part's text
(``extract``), runs the detectors (``detect``) and classifies each top-level
part — the body, each attachment, known by its MIME part path — and the
message as a whole:

- ``sensitive``: 要配慮個人情報 about an identifiable person: a sensitive fact
  (病名, 障害, 服薬, 要介護度 …) together with something that identifies someone
  (氏名, 生年月日, 被保険者番号 …) in the same part, or a My Number (特定個人情報);
- ``personal``: something that identifies a person, without sensitive facts;
- ``none``: neither. Sensitive words alone (a training schedule on 認知症ケア)
  identify nobody and are not personal data.

Where two readings of the same bytes are plausible (``charsets``: damaged UTF-8
or a CP932 guess), each is inspected and the one with the higher level counts.

Findings: ``sensitive_data`` / ``personal_data`` per part, naming the kinds found
with masked examples (full numbers never leave this module), and
``unscannable_content`` per part that could not be read, with the reason. Past
``MAX_FINDINGS`` of one code, the rest are summed up in one finding, so a message
with 10,000 attachments does not flood the store and the console. Everything
here is linear in the number of parts (looked up by path in dicts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from ... import findings as F
from ...model import Finding, Provision
from .detect import Detection, detect, detectors_for, normalise
from .signature import own_data
from .extract import SUBJECT, Extraction, Limits, Unscannable, extract_message

LEVELS = ("none", "personal", "sensitive")
BODY = "本文"
MAX_FINDINGS = 50   # per code; the rest become one summary finding


def classify(detections: list[Detection]) -> str:
    if any(d.sensitive and d.identifies for d in detections):
        return "sensitive"
    identifies = any(d.identifies for d in detections)
    if identifies and any(d.sensitive for d in detections):
        return "sensitive"
    return "personal" if identifies else "none"


@dataclass(frozen=True)
class PartReport:
    name: str                        # BODY or the attachment's file name (for people)
    level: str
    detections: tuple[Detection, ...]
    places: tuple[str, ...] = ()     # where inside it: "2ページ", "シート 計画", "› 中の.docx"
    path: str | None = None          # MIME part path of the attachment; None for the body, SUBJECT


@dataclass(frozen=True)
class ContentReport:
    level: str
    parts: tuple[PartReport, ...] = ()
    unscannable: tuple[Unscannable, ...] = ()
    # top-level attachments, in order: (MIME part path, file name)
    attachments: tuple[tuple[str, str], ...] = field(default=())

    def level_of(self, path: str) -> str:
        """The level of the attachment at MIME part ``path``, or of the body text for ``BODY``
        ("none" if nothing was found)."""
        return self._levels.get(None if path == BODY else path, "none")

    def name_of(self, path: str) -> str:
        return self._names.get(path, path)

    @cached_property
    def _levels(self) -> dict[str | None, str]:
        return {p.path: p.level for p in self.parts}

    @cached_property
    def _names(self) -> dict[str, str]:
        return dict(self.attachments)

    def provision(self) -> Provision | None:
        """What the provision record (第三者提供記録, 個人情報保護法 第29条) needs of this content:
        the level, the data items (the detectors' Japanese labels) and the persons it is about
        (names and insured numbers found; those from the roster marked). None without personal data."""
        if self.level == "none":
            return None
        found = [d for part in self.parts for d in part.detections]
        items = tuple(dict.fromkeys(d.label for d in found if d.kind != "roster"))
        persons = tuple(dict.fromkeys((_person(d.value), d.kind) for d in found if d.value))
        return Provision(self.level, items or ("氏名",), tuple({"value": v, "kind": k} for v, k in persons))

    def findings(self) -> list[Finding]:
        data: dict[str, list[Finding]] = {F.SENSITIVE_DATA: [], F.PERSONAL_DATA: []}
        subject: list[Finding] = []
        for part in self.parts:
            if part.level == "none":
                continue
            if part.path == SUBJECT:   # no link or zip can protect a subject: the sender rewrites it
                subject.append(F.PERSONAL_DATA_IN_SUBJECT.finding(
                    "件名", f"件名に{'要配慮個人情報' if part.level == 'sensitive' else '個人情報'}が含まれています: "
                          f"{summary(part.detections)}。件名は暗号化もリンク化もできないため、氏名などを件名から除いて"
                          "送り直してください (本文や添付ファイルに書けば保護して送ります)。"))
                continue
            sensitive = part.level == "sensitive"
            what = "要配慮個人情報" if sensitive else "個人情報"
            code = F.SENSITIVE_DATA if sensitive else F.PERSONAL_DATA
            data[code].append(code.finding(
                part.name,
                f"{'本文' if part.path is None else '添付ファイル ' + part.name} に{what}が含まれています: "
                f"{summary(part.detections)}" + (f" (場所: {'、'.join(part.places[:5])})" if part.places else ""),
            ))
        unscannable = [F.UNSCANNABLE_CONTENT.finding(
            self.name_of(item.attachment) if item.attachment else item.where,
            f"{item.where} を検査できませんでした: {item.reason}。内容を人が確認する必要があります。",
        ) for item in self.unscannable]
        return (subject + _at_most(F.SENSITIVE_DATA, data[F.SENSITIVE_DATA], "要配慮個人情報を含む")
                + _at_most(F.PERSONAL_DATA, data[F.PERSONAL_DATA], "個人情報を含む")
                + _at_most(F.UNSCANNABLE_CONTENT, unscannable, "検査できなかった"))


HONORIFICS = ("様", "さま", "さん", "殿", "氏")


def _person(value: str) -> str:
    """A name or number as the ledger keeps it: no spaces, no honorific (山田 太郎 様 → 山田太郎)."""
    value = value.replace(" ", "").replace("\u3000", "")
    for honorific in HONORIFICS:
        if value.endswith(honorific) and len(value) > len(honorific):
            return value[: -len(honorific)]
    return value


def _at_most(code: F.Code, findings: list[Finding], what: str) -> list[Finding]:
    """The first MAX_FINDINGS - 1 findings and one that sums up the rest."""
    if len(findings) <= MAX_FINDINGS:
        return findings
    kept, rest = findings[: MAX_FINDINGS - 1], findings[MAX_FINDINGS - 1:]
    names = "、".join(f.subject for f in rest[:10])
    return kept + [code.finding(
        f"ほか {len(rest):,} 件",
        f"ほかにも{what}部分が {len(rest):,} 件あります (例: {names} …)。内容を人が確認する必要があります。")]


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
    names = dict(extraction.attachments)
    groups: dict[str | None, list[Detection]] = {}
    places: dict[str | None, dict[str, None]] = {}
    for part in extraction.parts:
        key = part.attachment
        found = _worst(_own(detect(text, detectors, part.ocr), normalise(text), key is None, extraction.sender_name)
                       for text in (part.text, *part.alternatives))
        groups.setdefault(key, []).extend(found)
        place = _place(part.where, names.get(key, "")) if key else ""
        if found and place:
            places.setdefault(key, {})[place] = None
    parts = tuple(PartReport("件名" if key == SUBJECT else names.get(key, BODY) if key else BODY,
                             classify(found), tuple(found),
                             tuple(places.get(key, ())), key)
                  for key, found in groups.items())
    everything = [d for found in groups.values() for d in found]
    return ContentReport(classify(everything), parts, tuple(extraction.unscannable), tuple(extraction.attachments))


def _own(found: list[Detection], text: str, body: bool, sender: str) -> list[Detection]:
    """Without the sender's own name and, in a body, the office signature (``signature``)."""
    return own_data(found, text if body else "", sender)


def _worst(readings) -> list[Detection]:
    """Of the detections in each reading of one text, those of the reading with the highest
    level (then the most detections): the right charset is the one where the data shows."""
    return max(readings, key=lambda found: (LEVELS.index(classify(found)), len(found)))


def _place(where: str, name: str) -> str:
    """The part of ``where`` below the attachment: "添付 a.xlsx シート 計画" → "シート 計画"."""
    head = f"添付 {name}"
    return where.split(head, 1)[1].strip() if head in where else ""
