"""charsets: the text in bytes whose charset is declared wrongly, not at all, or in a name we do not know.

Receives the bytes of a body or a text file and the declared charset (the MIME
``charset`` parameter, RFC 2046 §4.1.2; None for a file); hands on one reading,
or two when two are plausible, for the detectors to see both. The order:

1. the declared charset, strictly (Shift_JIS read as CP932: Windows mail;
   ISO-2022-JP with its extensions; EUC-JP as EUC-JIS-2004);
2. ISO-2022-JP when the bytes carry its escape sequences (7-bit: UTF-8 would read them as ASCII);
3. UTF-8, strictly (a byte order mark is dropped);
4. UTF-8 with replacement, when the bytes are mostly UTF-8: one stray byte or a
   last character cut off must not turn a UTF-8 file into CP932 gibberish;
5. a guess by charset-normalizer among the Japanese charsets and UTF-16.

When 4 and 5 are both plausible (and differ), both are returned; so is a
declared single-byte or wrong charset that decodes "successfully" when the bytes
are valid UTF-8 with non-ASCII text, or (declared latin-1, windows-1252 …) when
a Japanese guess or CP932 reads them. Never raises; CPU grows with the input (run
in a worker).
"""

from __future__ import annotations

ALIASES = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
           "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext", "euc-jp": "euc_jis_2004"}
GUESSES = ["cp932", "euc_jp", "iso2022_jp", "utf_16", "utf_8"]
REPLACEMENT = "\ufffd"
# Declared charsets that can hold Japanese: a body declared otherwise (latin-1, windows-1252 …)
# "decodes" whatever its bytes are, so the Japanese readings are looked at too.
JAPANESE_CAPABLE = {"cp932", "iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "euc_jp", "euc_jis_2004",
                    "shift_jis", "shift_jis_2004", "utf_8", "utf_8_sig", "utf_16", "utf_32", "gb18030", "big5"}


def decode_declared(data: bytes, declared: str | None) -> str | None:
    """The text in its declared charset, strictly; None when that is not possible."""
    return _strict(data, ALIASES.get(declared.strip().lower(), declared.strip())) if declared else None


def readings(data: bytes, declared: str | None = None) -> tuple[str, ...]:
    """The plausible texts of ``data``, most likely first (at least one)."""
    if declared:
        text = decode_declared(data, declared)
        if text is not None:
            if data.isascii():
                return (text,)
            others = [_strict(data, "utf-8-sig")]
            if _codec(declared) not in JAPANESE_CAPABLE:   # a mislabelled CP932 CSV reads as latin-1
                others += [_guess(data), _strict(data, "cp932")]
            return tuple(dict.fromkeys([text, *(t for t in others if t is not None)]))
    if b"\x1b$" in data:
        text = _strict(data, "iso2022_jp_ext")
        if text is not None:
            return (text,)
    text = _strict(data, "utf-8-sig")
    if text is not None:
        return (text,)
    found: list[str] = []
    utf8 = data.decode("utf-8", "replace")
    if _mostly_utf8(utf8):
        found.append(utf8)
    guess = _guess(data)
    if guess is not None and guess not in found:
        found.append(guess)
    if not found:   # neither: look at it both ways rather than miss it
        found = [data.decode("cp932", "replace"), utf8]
    return tuple(found)


def _codec(declared: str) -> str:
    import codecs

    try:
        return codecs.lookup(ALIASES.get(declared.strip().lower(), declared.strip())).name.replace("-", "_")
    except LookupError:
        return ""


def _strict(data: bytes, codec: str) -> str | None:
    try:
        text = data.decode(codec)
    except (LookupError, UnicodeDecodeError, ValueError):
        return None
    return text


def _mostly_utf8(text: str) -> bool:
    """A few bad sequences among many good ones: damaged UTF-8, not another charset."""
    bad = text.count(REPLACEMENT)
    good = len(text) - len(text.encode("ascii", "ignore")) - bad
    return bad <= max(2, good // 10)


def _guess(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=GUESSES).best()
    return str(best) if best is not None else None
