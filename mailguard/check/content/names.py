"""names: people's names — from the dictionary, from honorifics, from table columns, from the roster.

- ``PersonName``: SudachiPy (sudachidict_small) tags 名詞-固有名詞-人名. A known surname followed
  by a given name — from the dictionary, or any word written in katakana or hiragana alone
  (佐々木 ハル, 山本 きよ: residents born before 1945 often have kana given names the dictionary
  does not know) — counts; so does a name-like word (a 人名, or a word the dictionary does not
  know) followed by 様/さん/氏/殿. A lone word tagged 人名 (many place and shop names are) does not.
- ``TableName``: a column headed 氏名, 利用者名, 入居者 … (or ふりがな / フリガナ, whose cells are
  readings) over cells that look like names: the header is rows away from the value, so no
  window of context words can see it. Rows are lines of tab- or comma-separated cells (xlsx,
  CSV, HTML tables as ``text.html_text`` writes them).
- ``RosterMatch``: the residents of policies/roster.csv, matched exactly: the strongest signal.
"""

from __future__ import annotations

import functools
import re

from .base import Detector

HONORIFICS = ("様", "さん", "氏", "殿", "くん", "ちゃん")
KANA = re.compile(r"[ぁ-ゖァ-ヺー]{1,6}")
NOT_A_NAME = ("助詞", "助動詞", "接尾辞", "補助記号", "空白", "記号")


class PersonName(Detector):
    """Names from the tokenizer (see the module's manual)."""

    kind, label = "person_name", "氏名"
    priority = 140
    context = ("利用者", "氏名", "本人", "入居者", "患者", "ご家族", "被保険者")
    CHUNK = 4000   # characters per call: Sudachi refuses inputs over ~49 KB

    def candidates(self, text: str):
        tokenizer = _sudachi()
        for chunk_start in range(0, len(text), self.CHUNK):
            morphemes = list(tokenizer.tokenize(text[chunk_start: chunk_start + self.CHUNK]))
            for i, m in enumerate(morphemes):
                end = _name_at(morphemes, i)
                if end is not None:
                    yield (chunk_start + m.begin(), chunk_start + morphemes[end].end(),
                           "".join(x.surface() for x in morphemes[i: end + 1]
                                   if x.part_of_speech()[0] != "空白"), 0.5)


def _name_at(morphemes: list, i: int) -> int | None:
    """The index of the last morpheme of a name starting at ``i``, or None."""
    m = morphemes[i]
    pos = m.part_of_speech()
    nxt = i + 1
    if pos[2] == "人名" and pos[3] == "姓":
        j = nxt
        while j < len(morphemes) and morphemes[j].part_of_speech()[0] == "空白":
            j += 1   # 山田 太郎: a space between surname and given name
        if j < len(morphemes):
            given = morphemes[j]
            gpos = given.part_of_speech()
            if gpos[2] == "人名" and gpos[3] == "名":
                return j
            if gpos[0] not in NOT_A_NAME and KANA.fullmatch(given.surface()) and _boundary(morphemes, j + 1):
                return j
    if pos[1] == "固有名詞" and nxt + 1 < len(morphemes) and morphemes[nxt + 1].surface() in HONORIFICS:
        given = morphemes[nxt]   # 木下スミ様: 木下 read as a place, but a kana name and 様 follow
        if KANA.fullmatch(given.surface()) or given.part_of_speech()[2] == "人名":
            return nxt + 1
    while nxt < len(morphemes) and morphemes[nxt].part_of_speech()[0] == "空白":
        nxt += 1   # 鈴木 様: a space before the honorific
    if nxt < len(morphemes) and morphemes[nxt].surface() in HONORIFICS and _name_like(m):
        return nxt
    if _name_like(m) and _age_follows(morphemes, i + 1):
        return i   # キムラツル（96歳・要介護1）: a name the dictionary does not know, with an age
    return None


def _age_follows(morphemes: list, j: int) -> bool:
    """「（96歳」 or 「(満96歳」 right after: an age in brackets after a word is a person's."""
    surfaces = [m.surface() for m in morphemes[j: j + 4]]
    if not surfaces or surfaces[0] not in ("(", "（"):
        return False
    rest = surfaces[1:]
    if rest and rest[0] == "満":
        rest = rest[1:]
    return len(rest) >= 2 and rest[0].isdigit() and rest[1] == "歳"


ANONYMISED = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]{1,3}|[○〇●◯×＊*]+|[甲乙丙丁]")   # Aさん, ○○様: a case study


def _name_like(m) -> bool:
    """A word that may be a name before an honorific: a 人名, or a word the dictionary does not know;
    never a letter or a mark standing for an anonymised person (Aさん, ○○様)."""
    pos, surface = m.part_of_speech(), m.surface()
    if ANONYMISED.fullmatch(surface):
        return False
    return pos[2] == "人名" or (m.is_oov() and len(surface) >= 2 and not surface.isdigit())


def _boundary(morphemes: list, j: int) -> bool:
    """After a kana given name: the end, a space, punctuation, a number, or an honorific."""
    if j >= len(morphemes):
        return True
    m = morphemes[j]
    return m.part_of_speech()[0] in ("空白", "補助記号", "記号") or m.surface() in HONORIFICS \
        or m.part_of_speech()[1] == "数詞"


NAME_HEADERS = ("氏名", "利用者名", "利用者氏名", "入居者", "入居者名", "患者名", "名前", "お名前", "本人氏名",
                "被保険者氏名")
READING_HEADERS = ("ふりがな", "フリガナ", "氏名カナ", "カナ氏名", "よみがな")
# a name as written in a cell: kanji surname and kanji or kana given name, or all katakana (a foreign
# name or a reading); nothing sentence-like (生活全般の解決すべき課題 is a heading, not a person)
NAME_CELL = re.compile(r"[一-龥々〆ヶ]{1,5}[ 　]?(?:[一-龥々〆ヶ]{1,5}|[ぁ-ゖァ-ヺー]{1,6})"
                       r"|[ァ-ヺー]{1,8}(?:[ 　・=＝][ァ-ヺー]{1,8}){0,2}")
READING_CELL = re.compile(r"[ぁ-ゖァ-ヺー]{1,8}[ 　・]?[ぁ-ゖァ-ヺー]{1,8}")
NOT_NAMES = ("合計", "小計", "備考", "なし", "特記事項", "同上", "不明", "未定", "氏名", "名前")


class TableName(Detector):
    """Names in a column under a name header (see the module's manual)."""

    kind, label = "person_name", "氏名"
    priority = 150
    MAX_ROWS = 2000      # rows read under one header
    MAX_COLUMNS = 20     # name columns of one header (a header of 4,000 氏名 is a construction)

    def candidates(self, text: str):
        lines = text.split("\n")
        offsets, at = [], 0
        for line in lines:
            offsets.append(at)
            at += len(line) + 1
        i = 0
        while i < len(lines):
            columns = _name_columns(lines[i])
            if not columns:
                i += 1
                continue
            separator = "\t" if "\t" in lines[i] else ","
            i += 1
            for row in range(i, min(i + self.MAX_ROWS, len(lines))):
                if not lines[row].strip() or _name_columns(lines[row]):
                    break   # the end of the table, or a new header
                yield from _cells(lines[row], separator, columns, offsets[row])
                i = row + 1


def _name_columns(line: str) -> dict[int, re.Pattern]:
    """{column: what its cells look like} for a header row naming people (or their readings)."""
    if "\t" not in line and "," not in line:
        return {}
    cells = [c.strip() for c in line.split("\t" if "\t" in line else ",")]
    found = {}
    for index, cell in enumerate(cells):
        bare = cell.replace(" ", "").replace("　", "").strip("()（）")
        if bare in NAME_HEADERS:
            found[index] = NAME_CELL
        elif bare in READING_HEADERS or bare.endswith(READING_HEADERS):
            found[index] = READING_CELL
        if len(found) >= TableName.MAX_COLUMNS:
            break
    return found


def _cells(line: str, separator: str, columns: dict[int, re.Pattern], row_start: int):
    """The name-like cells of one row under the name columns, with their spans (one pass)."""
    at = row_start
    for index, cell in enumerate(line.split(separator)):
        pattern = columns.get(index)
        value = cell.strip()
        if pattern is not None and pattern.fullmatch(value) and value not in NOT_NAMES \
                and len(value.replace(" ", "").replace("　", "")) >= 2:
            start = at + cell.index(value)
            yield start, start + len(value), value, 0.6
        at += len(cell) + len(separator)


class RosterMatch(Detector):
    """Residents from the roster (policies/roster.csv), matched exactly: the most precise
    detector there is. Names match with or without spaces between their parts."""

    kind, label = "roster", "利用者名簿の氏名・番号"
    priority = 0

    def __init__(self, names: tuple[str, ...], numbers: tuple[str, ...]):
        parts = [r"\s*".join(map(re.escape, name)) for name in sorted(names, key=len, reverse=True)]
        parts += [rf"(?<!\d){re.escape(n)}(?!\d)" for n in numbers]
        self._regex = re.compile("|".join(parts)) if parts else None

    def candidates(self, text: str):
        if self._regex is not None:
            for match in self._regex.finditer(text):
                yield match.start(), match.end(), match.group(0), 1.0


@functools.lru_cache(maxsize=1)
def _sudachi():
    from sudachipy import Dictionary, SplitMode

    return Dictionary(dict="small").tokenizer(mode=SplitMode.C)
