"""detect: personal data in text, in the style of Microsoft Presidio.

A detector is data plus one small function: patterns with a base score, context
words that raise the score when they stand within ``WINDOW`` characters (or, for
tables where the header is far from the value, anywhere in the same document),
negative context that vetoes a match, and an optional ``validate`` (a checksum,
a calendar). A match counts at ``THRESHOLD``. Text is NFKC-normalised first
(full-width digits ０-９ become 0-9) and numbers are delimited with
``(?<!\\d)…(?!\\d)``, because CJK characters are ``\\w`` and ``\\b`` never falls
between 日本語 and a digit.

Each detector says whether it *identifies* a person (a name, a number, a birth
date, an address) and whether what it finds is ``sensitive`` (要配慮個人情報: 病歴,
病状, 障害, 治療, 診療情報, and 特定個人情報 = マイナンバー) or ``personal``.
Sources: 個人情報保護法 第2条第3項 (要配慮), 手引き 2-1 (the care-office list),
行政手続における特定の個人を識別するための番号の利用等に関する法律施行令 /
総務省令第85号 第5条 (the My Number check digit).
"""

from __future__ import annotations

import bisect
import functools
import re
import time
import unicodedata
from importlib import resources

import phonenumbers

from .base import (DOCUMENT_BOOST, NEAR_BOOST, THRESHOLD, VALID_BOOST, WINDOW, Detection, Detector,  # noqa: F401
                   Pattern, mask_digits, mask_text, normalise)
from .names import PersonName, RosterMatch, TableName

def my_number_check_digit(digits: str) -> int:
    """The check digit of an 11-digit My Number body (総務省令第85号 第5条)."""
    weights = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    remainder = sum(int(d) * w for d, w in zip(digits, weights)) % 11
    return 0 if remainder <= 1 else 11 - remainder


class MyNumber(Detector):
    """個人番号: 12 digits whose last is the check digit; about 1 in 11 random numbers
    pass, so context words are required. A corporate number (法人番号, 13 digits) is
    not personal data: ``(?!\\d)`` and the negative context keep it out."""

    kind, label, sensitive = "my_number", "マイナンバー (個人番号)", True
    priority = 10
    numeric = True
    patterns = (Pattern("12 digits", r"(?<!\d)\d{4}[ -]?\d{4}[ -]?\d{4}(?!\d)", 0.1),)
    context = ("個人番号", "マイナンバー", "番号カード")
    negative_context = ("法人番号",)

    def validate(self, value: str) -> bool:
        digits = re.sub(r"\D", "", value)
        return my_number_check_digit(digits[:11]) == int(digits[11])


class CareInsuredNumber(Detector):
    kind, label = "care_insured_number", "介護保険被保険者番号"
    priority = 20
    numeric = True
    patterns = (Pattern("10 digits", r"(?<!\d)\d{10}(?!\d)", 0.15),)
    context = ("被保険者番号", "被保番号", "介護保険証")


class HealthInsurance(Detector):
    kind, label = "health_insurance_number", "健康保険の記号・番号"
    priority = 30
    numeric = True
    patterns = (
        Pattern("記号・番号", r"記号[\s:：]*[0-9A-Za-z\-]{1,8}[\s・、,/]*番号[\s:：]*\d{1,10}(?!\d)", 0.8),
        Pattern("保険者番号", r"(?<!被)保険者番号[\s:：]*\d{6,8}(?!\d)", 0.8),
    )


class PensionNumber(Detector):
    kind, label = "pension_number", "基礎年金番号"
    priority = 40
    numeric = True
    patterns = (Pattern("4-6 digits", r"(?<!\d)\d{4}-?\d{6}(?!\d)", 0.15),)
    context = ("基礎年金番号", "年金番号", "年金手帳")


PERSONAL_CONTACT = ("自宅", "携帯", "緊急連絡先", "家族", "長男", "長女", "次男", "次女", "妻", "夫",
                    "本人", "利用者", "住所", "連絡先")


class Phone(Detector):
    """Telephone numbers (phonenumbers, region JP). An office number in a signature is not
    personal data, so only a personal context (自宅, 携帯, 家族 …) makes it count."""

    kind, label = "phone", "電話番号"
    priority = 50
    numeric = True
    context = PERSONAL_CONTACT
    negative_context = ("FAX", "ＦＡＸ", "代表")

    def candidates(self, text: str):
        for match in phonenumbers.PhoneNumberMatcher(text, "JP"):
            yield match.start, match.end, match.raw_string, 0.2


class Email(Detector):
    kind, label = "email", "メールアドレス"
    priority = 60
    patterns = (Pattern("address", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", 0.2),)
    context = PERSONAL_CONTACT

    def mask(self, value: str) -> str:
        local, _, domain = value.partition("@")
        return mask_text(local) + "@" + domain


class PostalAddress(Detector):
    kind, label = "address", "住所"
    priority = 70
    patterns = (
        Pattern("〒", r"〒\s?\d{3}-?\d{4}", 0.3),
        Pattern("street", r"(?:北海道|東京都|大阪府|京都府|[^\s\d、。,:：]{2,3}県)[^\s、。,]{1,12}?[市区町村郡]"
                          r"[^\s、。,]{0,20}?\d+(?:[-－丁目番地号の]\d*)*", 0.3),
    )
    context = ("住所", "自宅", "現住所", "居住地", "お住まい")


class BirthDate(Detector):
    """生年月日 in 和暦 (元年 included) or 西暦. A date is a birth date only with birth context:
    a word near it (生年月日, 生まれ, 歳, 誕生日 — not 天皇誕生日), a 生年月日 column in the same
    document (a table), or a person's name beside it. Calendars, schedules and holiday lists
    have dates and nobody's birth."""

    kind, label = "birth_date", "生年月日"
    priority = 80
    ERAS = {"明治": 45, "大正": 15, "昭和": 64, "平成": 31, "令和": 99}
    patterns = (
        Pattern("和暦 (old)", r"(?:明治|大正|昭和)\s*(?:元|\d{1,2})\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日", 0.45),
        Pattern("和暦", r"(?:平成|令和)\s*(?:元|\d{1,2})\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日", 0.2),
        Pattern("西暦", r"(?<!\d)(?:19|20)\d{2}\s*[年/.\-]\s*\d{1,2}\s*[月/.\-]\s*\d{1,2}\s*日?(?!\d)", 0.15),
        Pattern("和暦 (略)", r"(?<![A-Za-z])[MTSHR]\s?\d{1,2}[./]\d{1,2}[./]\d{1,2}(?!\d)", 0.2),   # S20.6.28
        Pattern("和暦 (漢数字)", r"(?:明治|大正|昭和|平成|令和)(?:元|[一二三四五六七八九十]{1,3})年"
                                r"[一二三四五六七八九十]{1,3}月[一二三四五六七八九十]{1,3}日", 0.45),   # 昭和七年七月十八日
    )
    LETTERS = {"M": "明治", "T": "大正", "S": "昭和", "H": "平成", "R": "令和"}
    ERA_START = {"明治": 1868, "大正": 1912, "昭和": 1926, "平成": 1989, "令和": 2019}
    context = ("生年月日", "生まれ", "歳", "誕生日", "(生)", "生)", "日生")
    COLUMN = ("生年月日", "生年", "誕生日")   # a table's column header: the only context that counts from afar
    NOT_BIRTH = re.compile(r"天皇誕生日|誕生日会|お誕生会")

    def detect(self, text: str, strict: bool = False) -> list[Detection]:
        cleaned = self.NOT_BIRTH.sub("", text)
        column = any(word in cleaned for word in self.COLUMN)
        found = []
        for start, end, value, score in self.candidates(text):
            if self.validate(value) is False:
                continue
            near = self.NOT_BIRTH.sub("", text[max(0, start - WINDOW): end + WINDOW])
            if any(word in near for word in self.context):
                score += NEAR_BOOST
            elif column or _person_beside(text, start, end):
                score += DOCUMENT_BOOST
            if score >= THRESHOLD:
                found.append(Detection(self.kind, self.label, self.sensitive, self.identifies,
                                       round(min(score, 1.0), 2), self.mask(value), start, end))
        return found

    def validate(self, value: str) -> bool | None:
        numbers = [int(n) for n in re.findall(r"\d+", _kanji_numerals(value.replace("元", "1")))]
        era = next((e for e in self.ERAS if value.startswith(e)), self.LETTERS.get(value[:1]))
        year, month, day = (numbers[0], numbers[1], numbers[2]) if len(numbers) >= 3 else (0, 0, 0)
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return False
        if era and not 1 <= year <= self.ERAS[era]:
            return False
        western = year + self.ERA_START[era] - 1 if era else year
        if western >= time.localtime().tm_year - 1:
            return False   # this year's or next year's date: an event, nobody's birth in a care record
        return None


def _kanji_numerals(text: str) -> str:
    """七 → 7, 十八 → 18, 二十 → 20 (as dates write them: at most 99)."""
    digits = dict(zip("一二三四五六七八九", "123456789"))

    def number(match: re.Match) -> str:
        tens, _, ones = match.group(0).partition("十")
        if "十" not in match.group(0):
            return digits.get(tens, tens)
        return str(int(digits.get(tens, "1") if tens else "1") * 10 + (int(digits[ones]) if ones else 0))

    return re.sub(r"[一二三四五六七八九]?十?[一二三四五六七八九]?", lambda m: number(m) if m.group(0) else "", text)


def _person_beside(text: str, start: int, end: int) -> bool:
    """A name within 20 characters of a date: 山田 太郎 様 (昭和8年11月20日) is someone's birth date."""
    piece = text[max(0, start - 20): end + 20]
    return any(True for _ in PersonName().candidates(piece))


class CareLevel(Detector):
    """要介護度 (the person's physical and mental condition)."""

    kind, label, sensitive, identifies = "care_level", "要介護度", True, False
    priority = 90
    patterns = (Pattern("要介護/要支援", r"要介護\s*[1-5一二三四五]|要支援\s*[12一二]", 0.8),)


class Vocabulary(Detector):
    """Words from a data file (one per line, ``#`` comments), matched literally."""

    sensitive, identifies = True, False
    file = ""
    score = 0.6

    def mask(self, value: str) -> str:
        return value   # a disease name alone identifies nobody

    @functools.cached_property
    def _regex(self) -> re.Pattern:
        words = load_words(self.file)
        return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))

    def candidates(self, text: str):
        for match in self._regex.finditer(text):
            yield match.start(), match.end(), match.group(0), self.score


class Disease(Vocabulary):
    kind, label, file = "disease", "病名・病状", "diseases.txt"
    priority = 100


class Disability(Vocabulary):
    kind, label, file = "disability", "障害", "disabilities.txt"
    priority = 110


class Medication(Vocabulary):
    kind, label, file = "medication", "服薬", "medications.txt"
    priority = 120


class CareRecord(Vocabulary):
    kind, label, file, score = "care_record", "介護・診療記録", "care_terms.txt", 0.5
    priority = 130


@functools.lru_cache(maxsize=None)
def load_words(name: str) -> tuple[str, ...]:
    text = resources.files("mailguard.data").joinpath(name).read_text(encoding="utf-8")
    words = []
    for line in text.splitlines():
        word = unicodedata.normalize("NFKC", line.split("#", 1)[0].strip())
        if word:
            words.append(word)
    return tuple(words)


DETECTORS: tuple[Detector, ...] = (
    MyNumber(), CareInsuredNumber(), HealthInsurance(), PensionNumber(), Phone(), Email(),
    PostalAddress(), BirthDate(), CareLevel(), Disease(), Disability(), Medication(), CareRecord(),
    PersonName(), TableName(),
)


@functools.lru_cache(maxsize=4)
def detectors_for(roster: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> tuple[Detector, ...]:
    """The detectors in priority order, the roster first (it wins overlapping spans)."""
    found = ((RosterMatch(*roster),) if roster[0] or roster[1] else ()) + DETECTORS
    return tuple(sorted(found, key=lambda d: d.priority))


def detect(text: str, detectors: tuple[Detector, ...] = DETECTORS, strict: bool = False) -> list[Detection]:
    """Detections in ``text``; ``strict`` for text read by OCR (``base``). Where spans overlap,
    the detector of lower ``priority`` keeps it (a 被保険者番号 is not also a telephone number),
    as Presidio resolves conflicts."""
    text = normalise(text)
    detectors = tuple(sorted(detectors, key=lambda d: d.priority))
    kept: list[Detection] = []
    starts: list[int] = []   # the kept spans, disjoint, sorted: an overlap is found by bisection
    ends: list[int] = []
    for detector in detectors:
        for found in detector.detect(text, strict):
            at = bisect.bisect_left(starts, found.end)   # kept spans that start before this one ends
            if at and ends[at - 1] > found.start:
                continue
            starts.insert(at, found.start)
            ends.insert(at, found.end)
            kept.append(found)
    return kept
