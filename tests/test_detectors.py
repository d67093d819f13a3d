"""Each detector with its own table of positives, near misses and negatives,
as Presidio tests each recognizer: ``(text, the kind expected or None)``."""

from __future__ import annotations

import pytest

from documents import BAD_MY_NUMBER, VALID_MY_NUMBER
from mailguard.check.content.detect import (DETECTORS, RosterMatch, detect, mask_digits, mask_text,
                                            my_number_check_digit)
from mailguard.check.content.report import classify

CASES = {
    "my_number": [
        (f"個人番号 {VALID_MY_NUMBER}", True),
        (f"マイナンバー：{VALID_MY_NUMBER[:4]}-{VALID_MY_NUMBER[4:8]}-{VALID_MY_NUMBER[8:]}", True),
        ("個人番号：" + "".join(chr(ord(c) + 0xFEE0) for c in VALID_MY_NUMBER), True),   # full-width digits
        (f"個人番号 {BAD_MY_NUMBER}", False),             # the check digit is wrong
        (f"注文番号 {VALID_MY_NUMBER}", False),           # 1 in 11 pass the check: context is required
        (f"法人番号 {VALID_MY_NUMBER}1", False),          # 13 digits: a corporate number
    ],
    "care_insured_number": [
        ("介護保険被保険者番号 1234567890", True),
        ("被保番号:0001234567", True),
        ("請求書番号 1234567890", False),
    ],
    "health_insurance_number": [
        ("記号 12 番号 345", True),
        ("保険者番号 06130012", True),
        ("記号と番号の意味", False),
    ],
    "pension_number": [
        ("基礎年金番号 1234-567890", True),
        ("受付番号 1234-567890", False),
    ],
    "phone": [
        ("自宅 03-3123-4567", True),
        ("長男の携帯 090-1234-5678", True),
        ("代表 03-3123-4567", False),                    # an office number is not personal data
    ],
    "address": [
        ("住所 東京都千代田区千代田1-1", True),
        ("自宅 〒100-0001 東京都千代田区千代田1-1", True),
        ("〒100-0001 東京都千代田区千代田1-1", False),     # an office letterhead: needs a personal context
        ("東京都の研修会場", False),
    ],
    "birth_date": [
        ("昭和12年3月4日生まれ", True),
        ("昭和12年3月4日", False),                          # an old date alone is not enough
        ("生年月日 1941/05/06", True),
        ("大正15年13月1日", False),                       # no 13th month
        ("次回 2026年12月1日 14時", False),               # a recent date without context
        ("高橋 次郎 様 (昭和8年11月20日)", True),          # beside a person
        ("生年月日\t氏名\n昭和8年11月20日\t山田太郎", True),   # a 生年月日 column
        ("令和8年2月23日(月) 天皇誕生日", False),            # a public holiday, not anyone's birthday
        ("12月の行事\n令和8年12月20日 誕生日会", False),
        ("昭和8年11月20日 に開所しました", False),          # an old date of a building
        ("生年月日 S20.6.28", True),                        # the short 和暦 of forms
        ("昭和七年七月十八日生", True),                      # kanji numerals
        ("4月生まれの方のお祝い\n令和8年4月27日 誕生日会", False),   # this year's date is nobody's birth here
        ("S20.6.28", False),
        ("誕生日\t趣味\n昭和10年5月6日\t" + "園芸" * 30, True),      # an 誕生日 column
    ],
    "care_level": [
        ("要介護3", True), ("要支援2", True), ("要介護認定の研修", False),
    ],
    "disease": [("既往歴 糖尿病", True), ("お元気です", False)],
    "person_name": [
        ("利用者 山田太郎様", True),
        ("山田 太郎 様", True),
        ("山田さんの畑", True),
        ("東京駅", False),
        ("佐々木 ハル", True),                             # a katakana given name after a known surname
        ("利用者\t佐々木 ハル\t要介護2", True),             # in a table cell
        ("山本 きよ 様", True),                            # hiragana
        ("ジョンソン様", True),                            # a name the dictionary does not know + 様
        ("鈴木は来ます", False),                            # a particle is not a given name
        ("コスモス様", False),                             # a facility named after a flower
        ("利用者 鈴木 様 は認知症", True),                   # a space before the honorific
        ("氏名：木下スミ様", True),                          # 木下 read as a place, then a kana name and 様
        ("事例: Aさん (80代女性)", False),                   # an anonymised case study
        ("ケアマネジャーから、キムラツル（96歳・要介護1）の件", True),   # unknown to the dictionary, with an age
        ("事例: A（85歳・女性）", False),
        ("○○様", False),
        ("利用者 鈴木\u3000様", True),
        ("ご担当者様", False),
        ("皆様", False),
        ("氏名\t要介護度\n大河原 ミツ\t要介護2\n", True),   # a name column
        ("No,フリガナ,性別\n1,サトウ ハナコ,女\n", True),     # a reading column
        ("氏名\t課題\n生活全般の解決すべき課題\t入浴\n", False),   # a heading in the name column
        ("氏名\t国籍\nグエン・ティ・ラン\tベトナム\n", True),    # three parts in katakana
    ],
}


@pytest.mark.parametrize("kind, text, found", [(k, t, f) for k, cases in CASES.items() for t, f in cases])
def test_detector_table(kind, text, found):
    kinds = {d.kind for d in detect(text)}
    assert (kind in kinds) is found, (text, kinds)


def test_every_detector_has_a_table():
    assert {d.kind for d in DETECTORS} - {"email", "medication", "disability", "care_record"} <= set(CASES)


@pytest.mark.parametrize("body, check", [("12345678901", 8), ("00000000000", 0)])
def test_my_number_check_digit_formula(body, check):
    """総務省令第85号 第5条: weights 6,5,4,3,2,7,6,5,4,3,2; r = sum mod 11; 0 if r ≤ 1 else 11 − r."""
    weights = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    r = sum(int(d) * w for d, w in zip(body, weights)) % 11
    assert my_number_check_digit(body) == (0 if r <= 1 else 11 - r) == check


def test_masks_never_show_the_whole_value():
    assert mask_digits("1234-5678-9012") == "****-****-**12"
    assert mask_text("山田太郎") == "山＊＊＊"
    assert all(VALID_MY_NUMBER not in d.masked for d in detect(f"個人番号 {VALID_MY_NUMBER}"))


def test_the_roster_wins_an_overlapping_span_by_its_declared_priority():
    roster = RosterMatch(("山田太郎",), ("1234567890",))
    assert roster.priority < min(d.priority for d in DETECTORS)
    found = detect("利用者 山田太郎様 被保険者番号 1234567890", DETECTORS + (roster,))   # order given: irrelevant
    assert [d.kind for d in found if d.kind in ("roster", "person_name", "care_insured_number")] == \
        ["roster", "roster"]


@pytest.mark.parametrize("texts, level", [
    (["要介護3 の方です"], "none"),                          # a sensitive fact about nobody
    (["利用者 山田太郎様"], "personal"),
    (["利用者 山田太郎様", "要介護3"], "sensitive"),
    ([f"個人番号 {VALID_MY_NUMBER}"], "sensitive"),           # 特定個人情報 alone
])
def test_classification(texts, level):
    assert classify([d for t in texts for d in detect(t)]) == level


@pytest.mark.parametrize("text, kinds", [
    ("被保険者番号 1400012345", {"care_insured_number"}),        # context near: trusted from OCR too
    ("1400012345", set()),                                       # a bare number read by OCR: a misread is likely
    (f"{VALID_MY_NUMBER} 個人番号", {"my_number"}),
    ("被保険者番号は別紙\n" + "あ" * 60 + "\n1400012345", set()),   # context only far away
])
def test_numbers_read_by_ocr_need_a_check_digit_or_context_near(text, kinds):
    numeric = {"care_insured_number", "my_number", "phone", "pension_number", "health_insurance_number"}
    assert {d.kind for d in detect(text, strict=True)} & numeric == kinds


@pytest.mark.parametrize("text, folded", [
    ("被保険者番号 14OOO12345", "被保険者番号 1400012345"),        # O for 0 in a run of digits
    ("電話 O3-l234-5678", "電話 03-1234-5678"),
    ("TOKYO 2026", "TOKYO 2026"),                                   # a word stays a word
    ("佐々木 ハ一ル", "佐々木 ハール"),                              # 一 between katakana is the long mark
    ("佐々木 八ル", "佐々木 ハル"),                                  # 八 before katakana is ハ
    ("八月一日", "八月一日"),                                        # kanji among kanji stay
    ("被保険者番号 NO0123456789", "被保険者番号 NO0123456789"),      # a word before the number stays
    ("ケアマネ工藤様", "ケアマネ工藤様"),                              # 工 before another kanji is kanji
    ("ケアプラン一覧", "ケアプラン一覧"),
    ("ISO 9001 と Windows 10", "ISO 9001 と Windows 10"),
    ("後期高齡者 脑梗塞後遗症", "後期高齢者 脳梗塞後遺症"),           # Chinese forms the model gives
    ("山本卜メ様 小岛正一様", "山本トメ様 小島正一様"),
])
def test_ocr_look_alikes_are_folded(text, folded):
    from mailguard.check.content.ocr import fold

    assert fold(text) == folded


@pytest.mark.parametrize("body, sender, kinds", [
    ("会議は15時からです。\n--\nさくら介護ステーション\nケアマネジャー 山田 太郎\nTEL 03-1234-5678 FAX 03-1234-5679\n",
     "山田 太郎", set()),                                           # an office signature
    ("会議は15時からです。\n━━━━━━\nさくら介護 鈴木 一郎\nTEL 03-1234-5678\n━━━━━━\n", "", set()),
    ("さくら介護の山田太郎です。明日伺います。", "山田 太郎", set()),   # the sender's own name
    ("利用者 佐藤 花子様の件です。\n--\nさくら介護 山田 太郎\nTEL 03-1234-5678\n", "山田 太郎",
     {"person_name"}),                                              # a resident above the signature
    ("ご報告です。\n--\n利用者 佐藤 花子 様 糖尿病\nTEL 03-1234-5678\n", "",
     {"person_name", "disease", "phone"}),                          # nothing sensitive is a signature
    ("よろしくお願いします。\n-----\n利用者 佐藤 ハル様\n緊急連絡先(長男) 携帯 090-1234-5678\n", "",
     {"person_name", "phone"}),                                     # a resident's contact after a rule
    ("了解しました。\n-----Original Message-----\nFrom: a@example.jp\n入居者 高橋 ハル様 携帯 090-1234-5678\n",
     "", {"person_name", "phone", "email"}),                        # a quoted mail is not a signature
    ("佐藤様にお渡しください。", "さくら介護 佐藤花子", {"person_name"}),   # a surname + 様 is someone else
    ("佐藤花子が伺います。\n", "さくら介護 佐藤花子", set()),            # the sender's own full name
    ("認知症ケア研修のご案内です。\n--\nさくら介護 田中 美咲\nTEL 03-1234-5678\n", "", {"disease"}),
    # care words above the signature do not make the signature someone else's
])
def test_the_senders_own_details_are_not_a_third_partys(body, sender, kinds):
    from mailguard.check.content.detect import normalise
    from mailguard.check.content.signature import own_data

    text = normalise(body)
    assert {d.kind for d in own_data(detect(text), text, sender)} == kinds
