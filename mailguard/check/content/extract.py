"""extract: the text of every part of a message, for the personal-data detectors.

Receives the raw message (bytes) and the ``Limits``; hands on an ``Extraction``:
the text of every part (``TextPart``, with a second reading where two charsets are
plausible, see ``charsets``), every part that could not be fully read
(``Unscannable``, a Japanese reason) and the top-level attachments by MIME part
path (``mime``). Walks the MIME tree with the stdlib ``email`` package and reads
attachments with well-kept libraries (``formats``):

    PDF   ``pdf``: pypdfium2 (text in reading order, form fields, notes), pdfminer.six as fallback
    scans ``ocr``: image attachments, FAX TIFFs and PDF pages without text (the ``ocr`` extra)
    DOCX  python-docx        XLSX  openpyxl (read-only)    XLS  xlrd
    PPTX  python-pptx        CSV/TXT  ``charsets``          HTML  html.parser
    ZIP   ``zipsafe`` (recursing)   message/rfc822 (recursing)

Never delivered unread: a zip member or an Office file's member is inflated by
``zipsafe`` under our own caps, never trusting its declared size or CRC; past a
limit (``Limits``: text extracted, archive entries, compression ratio, nesting
depth), for a password-protected archive, PDF or Office file, a scan OCR could
not read confidently or within its budget (MAILGUARD_OCR_MAX_PAGES, _OCR_TIMEOUT),
a type we cannot read, or any error while reading, the part is ``Unscannable``. A ``MemoryError`` is not caught here: the
worker ends and is replaced (``pool``). The time limit is the caller's (a
killable worker process): this module is CPU-bound and must not run on the
event loop. Settings: MAILGUARD_INSPECT_MAX_TEXT_BYTES, _MAX_ARCHIVE_ENTRIES,
_MAX_COMPRESSION_RATIO, _MAX_DEPTH (through ``Limits.from_settings``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header
from email.message import Message
from email.policy import compat32

from ...text import html_text
from . import mime, ocr, pdf, zipsafe
from .charsets import readings
from .formats import EXTRACTORS, Unreadable
from .mime import attachment_name

MAX_MIME_DEPTH = 50   # nested multiparts deeper than this are a construction, not mail
INFLATE_FACTOR = 4    # a zip member may inflate to this many times the text limit (markup, binary)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one message (bytes of text, entries, ratio, levels, seconds)."""

    max_text_bytes: int = 20 * 1024 * 1024
    max_archive_entries: int = 1000
    max_compression_ratio: float = 100.0
    max_depth: int = 5
    seconds: float = 30.0
    ocr_pages: int = 20          # pages OCR reads in one message
    ocr_seconds: float = 120.0   # seconds OCR may take in one message (on top of ``seconds``)

    @classmethod
    def from_settings(cls, settings) -> Limits:
        """The limits MAILGUARD_INSPECT_* and MAILGUARD_OCR_* set."""
        return cls(settings.inspect_max_text_bytes, settings.inspect_max_archive_entries,
                   settings.inspect_max_compression_ratio, settings.inspect_max_depth, settings.inspect_timeout,
                   settings.ocr_max_pages, settings.ocr_timeout)

    def hard_seconds(self, raw: bytes = b"") -> float:
        """The time after which the worker scanning ``raw`` is killed: the scan's own, and OCR's
        when the message may hold a scan (``ocr.may_hold_scans``) and OCR is installed."""
        return self.seconds + (self.ocr_seconds if ocr.available() and ocr.may_hold_scans(raw) else 0.0)

    def zip_caps(self) -> zipsafe.Caps:
        inflated = self.max_text_bytes * INFLATE_FACTOR
        return zipsafe.Caps(self.max_archive_entries, self.max_compression_ratio, inflated, inflated)


@dataclass(frozen=True)
class TextPart:
    where: str                  # e.g. "本文", "添付 careplan.xlsx シート 計画 B3"
    text: str
    attachment: str | None      # MIME part path of the top-level attachment (``mime``); None for the body
    alternatives: tuple[str, ...] = ()   # other plausible readings of the same bytes (``charsets``)
    ocr: bool = False           # read from an image: numbers count only with a check digit or context


@dataclass(frozen=True)
class Unscannable:
    where: str
    reason: str                 # Japanese
    attachment: str | None


@dataclass
class Extraction:
    parts: list[TextPart] = field(default_factory=list)
    unscannable: list[Unscannable] = field(default_factory=list)
    # top-level attachments in order: (MIME part path, display name)
    attachments: list[tuple[str, str]] = field(default_factory=list)
    ocr_seconds: list[float] = field(default_factory=list)   # per page OCR read
    sender_name: str = ""       # the display name of From: (the sender's own name is not a third party's)


class LimitExceeded(Exception):
    """Raised inside an extractor when a limit is reached; ``str()`` is the Japanese reason."""


class _Budget:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.text_bytes = 0
        self.ocr = ocr.OcrBudget(limits.ocr_pages, limits.ocr_seconds)
        self.ocr_seconds: list[float] = []   # per page read, for the detection benchmark

    def room(self, size: int) -> None:
        """Refuse before decoding what could not fit anyway."""
        if self.text_bytes + size > self.limits.max_text_bytes:
            raise LimitExceeded(f"取り出した文字量が上限 ({self.limits.max_text_bytes:,} バイト) を超えました")

    def take(self, text: str) -> str:
        self.text_bytes += len(text.encode("utf-8", "surrogatepass"))
        self.room(0)
        return text

    def part(self, where: str, texts: tuple[str, ...], attachment: str | None) -> TextPart:
        return TextPart(where, self.take(texts[0]), attachment, tuple(self.take(t) for t in texts[1:]))


SUBJECT = "subject"   # the key of the Subject's text: a finding of its own, no link can protect it


def extract_message(raw: bytes, limits: Limits = Limits()) -> Extraction:
    """All text of a raw RFC 5322 message. Never raises for bad input (but MemoryError)."""
    out = Extraction()
    budget = _Budget(limits)
    try:
        msg = message_from_bytes(raw, policy=compat32)
        out.sender_name = _display_name(msg.get("From"))
        if msg.get("Subject") is not None:
            out.parts.append(TextPart("件名", budget.take(header_text(msg["Subject"])), SUBJECT))
        for path, part in mime.leaves(msg):
            if mime.depth(path) > MAX_MIME_DEPTH:
                raise LimitExceeded(f"MIME の入れ子が深すぎます (上限 {MAX_MIME_DEPTH} 階層)")
            try:
                _top_level(path, part, budget, out)
            except (LimitExceeded, MemoryError):
                raise
            except (Unreadable, zipsafe.Refused) as exc:
                out.unscannable.append(Unscannable(f"パート {path}", str(exc), path))
            except Exception as exc:   # a part the walk itself could not take apart
                out.unscannable.append(Unscannable(
                    f"パート {path}", f"メールのこの部分を読み取れません ({type(exc).__name__})", path))
    except LimitExceeded as exc:
        out.unscannable.append(Unscannable("メール全体", str(exc), None))
    out.ocr_seconds = budget.ocr_seconds
    return out


def _display_name(value) -> str:
    from email.utils import parseaddr

    if value is None:
        return ""
    return parseaddr(header_text(value))[0][:200]


def header_text(value) -> str:
    """A header decoded word by word (RFC 2047), each in its charset or, failing that, as ``charsets`` reads it."""
    try:
        pieces = decode_header(value)
    except Exception:
        return str(value)
    return "".join(readings(text, charset)[0] if isinstance(text, bytes) else text for text, charset in pieces)


def _top_level(path: str, part: Message, budget: _Budget, out: Extraction) -> None:
    """One leaf of the message itself: body text, or an attachment known by its path."""
    ctype = part.get_content_type()
    filename = attachment_name(part)
    if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
        name = filename or "転送メール"
        out.attachments.append((path, name))
        _walk(mime.forwarded_message(part), f"添付 {name} › ", path, 1, budget, out)
        return
    if filename or part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
        name = filename or f"(名前なし {ctype})"
        out.attachments.append((path, name))
        extract_file(name, _payload(part), ctype, f"添付 {name}", path, 1, budget, out, part.get_content_charset())
        return
    _body_text(part, "", None, budget, out)


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if payload is None and part.get_payload():
        raise ValueError("no payload")
    return payload or b""


def _body_text(part: Message, prefix: str, attachment: str | None, budget: _Budget, out: Extraction) -> None:
    data = _payload(part)
    budget.room(len(data))
    texts = readings(data, part.get_content_charset())
    if part.get_content_type() == "text/html":
        texts = tuple(html_text(t) for t in texts)
    out.parts.append(budget.part(f"{prefix}本文", texts, attachment))


def _walk(msg: Message, prefix: str, attachment: str, depth: int, budget: _Budget, out: Extraction) -> None:
    """A message inside an attachment (forwarded, or an .eml in a zip): all of it is that attachment's."""
    if depth > budget.limits.max_depth:
        raise Unreadable(f"入れ子が深すぎます (上限 {budget.limits.max_depth} 階層)")
    if msg.get("Subject") is not None:
        out.parts.append(TextPart(f"{prefix}件名", budget.take(header_text(msg["Subject"])), attachment))
    for _, part in mime.leaves(msg):
        ctype = part.get_content_type()
        filename = attachment_name(part)
        if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
            name = filename or "転送メール"
            _walk(mime.forwarded_message(part), f"{prefix}添付 {name} › ", attachment, depth + 1, budget, out)
        elif filename or part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
            name = filename or f"(名前なし {ctype})"
            extract_file(name, _payload(part), ctype, f"{prefix}添付 {name}", attachment,
                         depth + 1, budget, out, part.get_content_charset())
        else:
            _body_text(part, prefix, attachment, budget, out)


def extract_file(name: str, data: bytes, ctype: str, where: str, attachment: str, depth: int,
                 budget: _Budget, out: Extraction, charset: str | None = None) -> None:
    """Text of one file; anything unreadable becomes an Unscannable entry."""
    kind = _kind(name, ctype, data)
    try:
        if kind == "zip":
            _zip(data, where, attachment, depth, budget, out)
        elif kind == "eml":
            _walk(message_from_bytes(data, policy=compat32), where + " › ", attachment, depth + 1, budget, out)
        elif kind in ("text", "html"):
            budget.room(len(data))
            texts = readings(data, charset)
            if kind == "html":
                texts = tuple(html_text(t) for t in texts)
            out.parts.append(budget.part(where, texts, attachment))
        elif kind == "pdf":
            for sub_where, text in pdf.pages(data):
                if isinstance(text, pdf.Scan):
                    if not _ocr(lambda scan=text: ocr.render(scan.source, scan.index), f"{where}{sub_where}",
                                attachment, budget, out):
                        break   # the OCR budget is spent: the rest of the file is not read (and said so)
                else:
                    out.parts.append(TextPart(f"{where}{sub_where}", budget.take(text), attachment))
        elif kind in EXTRACTORS:
            for sub_where, text in EXTRACTORS[kind](data, budget.limits.zip_caps()):
                out.parts.append(TextPart(f"{where}{sub_where}", budget.take(text), attachment))
            if kind in OFFICE_ZIPS:
                _embedded(data, where, attachment, depth, budget, out)
        elif kind == "image":
            _image(data, where, attachment, budget, out)
        else:
            out.unscannable.append(Unscannable(where, f"内容を検査できない種類のファイルです ({ctype})", attachment))
    except (LimitExceeded, MemoryError):
        raise
    except (Unreadable, zipsafe.Refused) as exc:
        out.unscannable.append(Unscannable(where, str(exc), attachment))
    except Exception as exc:   # a broken file is reported, never fatal
        out.unscannable.append(Unscannable(where, f"ファイルが壊れているか読めません ({type(exc).__name__})", attachment))


def _image(data: bytes, where: str, attachment: str, budget: _Budget, out: Extraction) -> None:
    """Every frame of an image file (a FAX TIFF has one per page), read by OCR."""
    if not ocr.available():
        out.unscannable.append(Unscannable(where, "画像のため文字を読み取れません (文字読み取り (OCR) が"
                                                  "入っていません)", attachment))
        return
    try:
        for number, frame in enumerate(ocr.frames(data), 1):
            if not _ocr(lambda frame=frame: frame, f"{where} {number}ページ", attachment, budget, out):
                return
    except (OSError, ValueError, SyntaxError) as exc:   # Pillow: unidentified, truncated or oversized image
        out.unscannable.append(Unscannable(where, f"画像を開けません (壊れているか、大きすぎるか、対応していない"
                                                  f"形式です: {type(exc).__name__})", attachment))


def _ocr(image, where: str, attachment: str, budget: _Budget, out: Extraction) -> bool:
    """OCR one page (``image()`` makes it); False once the budget is spent (the rest is not read)."""
    if not ocr.available():
        out.unscannable.append(Unscannable(where, "文字情報のないページです (スキャン画像の可能性)。文字読み取り"
                                                  " (OCR) が入っていないため内容を確認できません", attachment))
        return True
    refused = budget.ocr.take()
    if refused:
        out.unscannable.append(Unscannable(where, refused, attachment))
        return False
    try:
        page = ocr.read(image())
    except MemoryError:
        raise
    except Exception as exc:   # the engine failed on this page: said, never passed unread
        out.unscannable.append(Unscannable(where, f"画像の文字読み取り (OCR) に失敗しました ({type(exc).__name__})",
                                           attachment))
        return True
    budget.ocr_seconds.append(page.seconds)
    if page.text.strip():
        out.parts.append(TextPart(f"{where} (OCR)", budget.take(page.text), attachment, ocr=True))
    if not page.confident:
        out.unscannable.append(Unscannable(where, "画像の文字を確実には読み取れませんでした (OCR)", attachment))
    return True


OFFICE_ZIPS = ("docx", "xlsx", "pptx")
EMBEDDINGS = ("word/embeddings/", "xl/embeddings/", "ppt/embeddings/")


def _embedded(data: bytes, where: str, attachment: str, depth: int, budget: _Budget, out: Extraction) -> None:
    """Files embedded in an Office document (a workbook in a Word file, an OLE object):
    each is read like an attachment of its own, or reported unscannable, never skipped."""
    if depth + 1 > budget.limits.max_depth:
        out.unscannable.append(Unscannable(where, f"入れ子が深すぎます (上限 {budget.limits.max_depth} 階層)", attachment))
        return
    for info, inner in zipsafe.members(data, budget.limits.zip_caps(), wanted=_embedded_wanted):
        name = info.filename.rsplit("/", 1)[-1]
        if info.filename.startswith(MEDIA):
            _picture(inner, f"{where} › 画像 {name}", attachment, budget, out)
        else:
            extract_file(name, inner, "application/octet-stream", f"{where} › 埋め込み {name}", attachment,
                         depth + 1, budget, out)


MEDIA = ("word/media/", "xl/media/", "ppt/media/")
PICTURES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
ICON = 150   # pixels: a picture smaller than this both ways is an icon or a logo, not a pasted scan


def _embedded_wanted(name: str) -> bool:
    return name.startswith(EMBEDDINGS) or (ocr.available() and name.startswith(MEDIA)
                                           and name.lower().endswith(PICTURES))


def _picture(data: bytes, where: str, attachment: str, budget: _Budget, out: Extraction) -> None:
    """A picture in an Office file (a scan pasted into Word): read by OCR like an attachment,
    unless it is an icon."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            if image.width < ICON and image.height < ICON:
                return
    except (OSError, ValueError, SyntaxError):
        pass   # _image says what is wrong with it
    _image(data, where, attachment, budget, out)


def _kind(name: str, ctype: str, data: bytes) -> str:
    lower = name.lower()
    for suffix, kind in ((".pdf", "pdf"), (".tif", "image"), (".tiff", "image"), (".png", "image"),
                         (".jpg", "image"), (".jpeg", "image"), (".docx", "docx"), (".docm", "docx"), (".xlsx", "xlsx"),
                         (".xlsm", "xlsx"), (".xls", "xls"), (".pptx", "pptx"), (".csv", "text"),
                         (".txt", "text"), (".tsv", "text"), (".zip", "zip"), (".eml", "eml"),
                         (".htm", "html"), (".html", "html")):
        if lower.endswith(suffix):
            return kind
    if ctype == "application/pdf" or data[:5] == b"%PDF-":
        return "pdf"
    if ctype == "message/rfc822":
        return "eml"
    if ctype in ("application/zip", "application/x-zip-compressed"):
        return "zip"
    if ctype.startswith("image/"):
        return "image"
    if ctype.startswith("text/"):
        return "html" if ctype == "text/html" else "text"
    return "unknown"


def _zip(data: bytes, where: str, attachment: str, depth: int, budget: _Budget, out: Extraction) -> None:
    """Every member, inflated by ``zipsafe``; a member refused there makes the whole archive unscannable."""
    if depth > budget.limits.max_depth:
        raise Unreadable(f"入れ子が深すぎます (上限 {budget.limits.max_depth} 階層)")
    for info, content in zipsafe.members(data, budget.limits.zip_caps()):
        name = info.filename.rsplit("/", 1)[-1]
        extract_file(name, content, "application/octet-stream", f"{where} › {name}", attachment,
                     depth + 1, budget, out)
