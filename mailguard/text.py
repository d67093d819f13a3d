"""text: values taken from a message, made safe for the headers and lines mailguard writes.

A decoded Subject, a display name or a folded Message-ID can hold CR, LF, form
feeds or other control characters (RFC 2047 encoded words decode to anything).
Written into a header they would break it or inject new ones; the stdlib
rightly refuses them. Every value from a message passes through here first.
"""

from __future__ import annotations

import html.parser
import re
from email.header import Header, decode_header, make_header

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")   # C0, C1, separators, lone surrogates
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")   # RFC 2047 §2
_MSGID = re.compile(r"<[^<>\s]{1,900}>")


def one_line(text: str, limit: int = 200) -> str:
    """A value from a message made safe for a header we write: unfolded, control
    characters (CR, LF, form feed …) replaced by a space, at most ``limit`` characters."""
    return " ".join(_CONTROLS.sub(" ", text or "").split())[:limit]


def decode_words(value) -> str:
    """A header value decoded from RFC 2047 encoded words; undecodable input is kept as it came.
    Raw 8-bit text (legal with SMTPUTF8, RFC 6532; common from old Japanese mailers) is read as
    UTF-8, else CP932, instead of being replaced."""
    if isinstance(value, Header):   # compat32 hands raw 8-bit headers over as Header objects
        text = "".join(_raw_chunk(chunk, charset) for chunk, charset in decode_header(value))
        return _ENCODED_WORD.sub(lambda m: decode_words(m.group(0)), text)   # words beside raw 8-bit text
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


def _raw_chunk(chunk, charset) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset not in (None, "unknown-8bit"):
        try:
            return chunk.decode(charset, "replace")
        except LookupError:
            pass
    for codec in ("utf-8", "cp932"):
        try:
            return chunk.decode(codec)
        except UnicodeDecodeError:
            continue
    return chunk.decode("utf-8", "replace")


def subject_of(headers) -> str:
    """The Subject: of a parsed header block, decoded and made one line (at most 500 characters)."""
    value = headers.get("Subject")
    return "" if value is None else one_line(decode_words(value), 500)


def message_id_ref(value: str) -> str | None:
    """The first well-formed ``<id>`` of a Message-ID taken from a message (RFC 5322 §3.6.4), or None."""
    match = _MSGID.search(" ".join(_CONTROLS.sub(" ", value or "").split()))
    return match.group(0) if match else None


class _HTMLText(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0
        self._tables = 0   # inside a table, whitespace between tags is layout, not a blank line

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._tables += 1
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.chunks.append("\n")
        elif tag in ("td", "th"):   # cells side by side, so a column header stands over its cells
            self.chunks.append("\t")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag == "table" and self._tables:
            self._tables -= 1

    def handle_data(self, data):
        if not self._skip and not (self._tables and not data.strip()):
            self.chunks.append(data)


def html_text(markup: str) -> str:
    """The text of HTML markup: no tags, no script or style, line breaks at block elements."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.chunks)
