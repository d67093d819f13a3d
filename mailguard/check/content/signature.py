"""signature: the sender's own details are not a third party's personal data.

A care office's mail ends with a signature — the staff member's name, the office's address,
telephone and FAX — and often opens with「さくら介護の山田です」. Those identify the sender,
who is sending them on purpose; counted as personal data they would hold ordinary mail on a
fresh install. Dropped here, after detection:

- in a body, names, telephone numbers, mail addresses and postal addresses inside the
  signature block: the lines after a separator line (``-- `` of RFC 3676 §4.3, or a line that
  is nothing but a rule of ``-``, ``=``, ``_``, ``*``, ``━``, ``─``, ``～``) near the end, at
  most ``MAX_LINES`` long, holding an office marker (TEL, FAX, 〒, a mail address) and nothing
  of a person's care (利用者, 家族, 緊急連絡先, 様 …) or of a quoted mail (From:, >, 差出人);
- in a body, a full name (surname and given name) that is the sender's own (the display name
  of From:, or its last part: さくら介護 佐藤花子).

Nothing is dropped from a block that holds anything sensitive, and the roster never is: a
resident's name is not made the sender's by standing in a signature.
"""

from __future__ import annotations

import re

from .base import Detection

CONTACT_KINDS = ("person_name", "phone", "email", "address")
MAX_LINES = 12
SEPARATOR = re.compile(r"^\s*(?:--|[-=_*━─～~＝－]{3,})\s*$")
OFFICE = re.compile(r"TEL|Tel|tel|電話|FAX|Fax|〒|E-?mail|@")
NOT_SIGNATURE = re.compile(r"利用者|入居者|本人|患者|家族|緊急連絡先|長男|長女|次男|次女|様|さん|^\s*>|From:|差出人|"
                           r"送信日時|Original Message|件名:|Subject:", re.M)
HONORIFICS = ("様", "さん", "氏", "殿")


def own_data(found: list[Detection], body: str, sender: str) -> list[Detection]:
    """``found`` without what belongs to the sender (see the module's manual); ``body`` is the
    normalised text of a body ("" for an attachment: nothing is dropped), ``sender`` the From
    display name."""
    if not body:
        return found
    block = signature_block(body)
    if block and any(d.sensitive and block[0] <= d.start < block[1] for d in found):
        block = None   # care data in it: not a signature
    own = _own_names(sender)
    kept = []
    for d in found:
        if d.kind == "person_name" and _bare(d.value) in own and not d.value.endswith(HONORIFICS):
            continue
        if block and d.kind in CONTACT_KINDS and block[0] <= d.start < block[1]:
            continue
        kept.append(d)
    return kept


def _own_names(sender: str) -> set[str]:
    """The sender's full name as a detection would hold it: the whole display name, its last
    two parts (surname and given name) or its last part; at least 3 characters (never a bare
    surname)."""
    parts = (sender or "").split()
    names = {_bare(sender), _bare("".join(parts[-2:])), _bare(parts[-1]) if parts else ""}
    return {name for name in names if len(name) >= 3}


def signature_block(text: str) -> tuple[int, int] | None:
    """(start, end) of the signature block in ``text``, or None (see the module's manual)."""
    lines = text.split("\n")
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line) + 1
    tail = max(0, len(lines) - 3 * MAX_LINES)
    separators = [i for i in range(tail, len(lines)) if SEPARATOR.match(lines[i])]
    for first, last in _blocks(separators, len(lines)):
        block = "\n".join(lines[first:last])
        if 0 < last - first <= MAX_LINES and OFFICE.search(block) and not NOT_SIGNATURE.search(block):
            return offsets[first], offsets[last - 1] + len(lines[last - 1])
    return None


def _blocks(separators: list[int], count: int):
    """Candidate blocks, the last first: after the last separator, then between separators."""
    if separators:
        yield separators[-1] + 1, count
    for before, after in zip(reversed(separators[:-1]), reversed(separators[1:])):
        yield before + 1, after


def _bare(name: str) -> str:
    name = re.sub(r"[\s\u3000]", "", name or "")
    for honorific in HONORIFICS:
        if name.endswith(honorific):
            name = name[: -len(honorific)]
    return name
