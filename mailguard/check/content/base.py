"""base: what a detector is, in the style of Microsoft Presidio (the detectors are in ``detect``
and ``names``).

A detector is data plus one small function: patterns with a base score, context words that
raise the score when they stand within ``WINDOW`` characters (or, for tables where the header
is far from the value, anywhere in the same document), negative context that vetoes a match,
and an optional ``validate`` (a checksum, a calendar). A match counts at ``THRESHOLD``.
Text read by OCR (``strict``) is trusted less: a number counts only where its check digit
holds or a context word stands near it, never on the document's context alone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

THRESHOLD = 0.5
WINDOW = 40
NEAR_BOOST = 0.35       # a context word near the match
DOCUMENT_BOOST = 0.35   # a context word elsewhere in the same document (a table header)
VALID_BOOST = 0.2       # the validator confirmed it (a check digit)


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: str
    score: float


@dataclass(frozen=True)
class Detection:
    kind: str           # e.g. "my_number", "care_level", "person_name"
    label: str          # Japanese name of the kind
    sensitive: bool
    identifies: bool
    score: float
    masked: str         # what may be shown and logged: numbers and names masked
    start: int = 0      # span in the normalised text
    end: int = 0
    # The value itself, kept only for the kinds that name a person (本人, for the provision record,
    # 個人情報保護法 第29条); never shown or logged, stored only in the admins' ledger table.
    value: str = field(default="", repr=False, compare=False)


SUBJECT_KINDS = ("person_name", "roster", "care_insured_number")   # what names a data subject (本人)


class Detector:
    kind = ""
    priority = 1000    # where spans overlap, the lower number keeps the span (the more precise detector)
    label = ""
    sensitive = False
    identifies = True
    patterns: tuple[Pattern, ...] = ()
    context: tuple[str, ...] = ()
    negative_context: tuple[str, ...] = ()
    numeric = False    # what it finds is a number: OCR misreads digits, so it is trusted less there

    def validate(self, value: str) -> bool | None:
        """True: confirmed (score up); False: not this kind; None: no opinion."""
        return None

    def mask(self, value: str) -> str:
        return mask_digits(value) if any(c.isdigit() for c in value) else mask_text(value)

    def candidates(self, text: str):
        for pattern in self.patterns:
            for match in re.finditer(pattern.regex, text):
                yield match.start(), match.end(), match.group(0), pattern.score

    def detect(self, text: str, strict: bool = False) -> list[Detection]:
        """Detections in normalised ``text``; ``strict`` for OCR text (numbers need a check digit
        or a context word near them)."""
        found = []
        document_context = any(word in text for word in self.context)
        for start, end, value, score in self.candidates(text):
            verdict = self.validate(value)
            if verdict is False:
                continue
            near = text[max(0, start - WINDOW): end + WINDOW]
            if any(word in near for word in self.negative_context):
                continue
            context_near = any(word in near for word in self.context)
            if strict and self.numeric and not (verdict or context_near):
                continue
            if verdict:
                score += VALID_BOOST
            if context_near:
                score += NEAR_BOOST
            elif document_context and not (strict and self.numeric):
                score += DOCUMENT_BOOST
            if score >= THRESHOLD:
                found.append(Detection(self.kind, self.label, self.sensitive, self.identifies,
                                       round(min(score, 1.0), 2), self.mask(value), start, end,
                                       value if self.kind in SUBJECT_KINDS else ""))
        return found


def mask_digits(value: str) -> str:
    """Every digit but the last two becomes ``*``: ``1234-5678-9012`` → ``****-****-**12``."""
    digits = sum(c.isdigit() for c in value)
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - 2 else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_text(value: str) -> str:
    """The first character and ``＊`` for the rest: ``山田太郎`` → ``山＊＊＊``."""
    return value[:1] + "＊" * (len(value) - 1)




def normalise(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII), so patterns see one form."""
    return unicodedata.normalize("NFKC", text)
