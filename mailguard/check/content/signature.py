"""signature: the sender's own details are not a third party's personal data.

A care office's mail ends with a signature — the staff member's name, the office's address,
telephone and FAX — and often opens with「さくら介護の山田です」. Those identify the sender,
who is sending them on purpose; counted as personal data they would hold ordinary mail on a
fresh install. Dropped here, after detection:

- in a body, names, telephone numbers, mail addresses and postal addresses inside the
  signature block: the lines after a separator (``-- `` of RFC 3676 §4.3, or a rule of
  ``-``, ``=``, ``_``, ``*``, ``━``, ``─``, ``～``) near the end, at most ``MAX_LINES`` long and
  holding an office marker (TEL, FAX, 〒, a mail address …), with nothing sensitive in it;
- anywhere, a name that is the sender's own (the display name of From:).

Sensitive findings and the roster are never dropped: a resident's name is not made the
sender's by standing in a signature.
"""

from __future__ import annotations

import re

from .base import Detection

CONTACT_KINDS = ("person_name", "phone", "email", "address")
MAX_LINES = 12
SEPARATOR = re.compile(r"^\s*(?:--\s?|[-=_*━─～~＝－]{3,}.*)$")
OFFICE = re.compile(r"TEL|Tel|tel|電話|FAX|Fax|〒|E-?mail|@|https?://|株式会社|有限会社|法人|事業所|センター"
                    r"|ステーション|介護|病院|クリニック")
HONORIFICS = ("様", "さん", "氏", "殿")


def own_data(found: list[Detection], body: str, sender: str) -> list[Detection]:
    """``found`` without what belongs to the sender (see the module's manual); ``body`` is the
    normalised text of a body ("" for an attachment), ``sender`` the From display name."""
    block = signature_block(body) if body else None
    own = _bare(sender)
    kept = []
    for d in found:
        if d.kind == "person_name" and own and len(_bare(d.value)) >= 2 and _bare(d.value) in own:
            continue
        if block and d.kind in CONTACT_KINDS and block[0] <= d.start < block[1] \
                and not any(o.sensitive and block[0] <= o.start < block[1] for o in found):
            continue
        kept.append(d)
    return kept


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
        if 0 < last - first <= MAX_LINES and OFFICE.search(block):
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
