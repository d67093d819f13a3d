"""The resident roster (利用者名簿, ``policies/roster.csv``): names and insured numbers.

A header with 氏名 (required) and 被保険者番号 (optional), UTF-8 or CP932 (what
Excel writes in Japan). Errors name the file and line. Personal data itself:
keep the file readable by the relay and admins only.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Roster:
    """Residents (利用者名簿) from ``roster.csv``: names without spaces, NFKC; insured numbers.
    Personal data itself: keep the file readable by the relay and admins only."""

    names: tuple[str, ...]
    insured_numbers: tuple[str, ...]


ROSTER_FILE = "roster.csv"
ROSTER_NAME, ROSTER_NUMBER = "氏名", "被保険者番号"


def decode_csv(data: bytes) -> str | None:
    """CSV text as Excel writes it in Japan: UTF-8 (with or without BOM), else CP932; None if neither."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def load_roster(path: Path, problems: list[str]) -> Roster | None:
    """``roster.csv``: a header with 氏名 (required) and 被保険者番号 (optional), UTF-8 or CP932."""
    text = decode_csv(path.read_bytes())
    if text is None:
        problems.append(f"{path}: not UTF-8 or CP932 text")
        return None
    rows = list(csv.reader(text.splitlines()))
    if not rows or ROSTER_NAME not in rows[0]:
        problems.append(f"{path}:1: header must name the column {ROSTER_NAME} (and optionally {ROSTER_NUMBER})")
        return None
    header = rows[0]
    names, numbers = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        record = dict(zip(header, row))
        name = "".join(unicodedata.normalize("NFKC", record.get(ROSTER_NAME, "")).split())
        if len(name) < 2:
            problems.append(f"{path}:{line}: {ROSTER_NAME}: empty or too short")
            continue
        names.append(name)
        number = unicodedata.normalize("NFKC", record.get(ROSTER_NUMBER, "") or "").strip()
        if number:
            if not re.fullmatch(r"\d{10}", number):
                problems.append(f"{path}:{line}: {ROSTER_NUMBER}: not 10 digits")
                continue
            numbers.append(number)
    return Roster(tuple(names), tuple(numbers))

