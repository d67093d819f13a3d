"""extract: the text of every part of a message, for the personal-data detectors.

Walks the MIME tree with the stdlib ``email`` package (bodies in ISO-2022-JP,
Shift_JIS/CP932, EUC-JP, UTF-8 are decoded by their declared charset, falling
back to detection) and reads attachments with well-kept libraries:

    PDF   pypdfium2 (Japanese CID fonts), pdfminer.six as fallback
    DOCX  python-docx        XLSX  openpyxl (read-only)    XLS  xlrd
    PPTX  python-pptx        CSV/TXT  charset-normalizer   HTML  html.parser
    ZIP   zipfile (recursing)   message/rfc822 (recursing)

Hostile or huge input never crashes, hangs or grows memory without bound:
``Limits`` caps the text extracted, archive entries, the compression ratio and
the nesting depth; past a limit, or for a password-protected archive, PDF or
Office file, a PDF without a text layer (a scan), an image, or a type we cannot
read, the part is reported ``Unscannable`` with a Japanese reason. The time
limit per message is enforced by the caller (a killable worker process, see
``content.ContentInspector``): this module is CPU-bound and must not run on the
event loop.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from . import mime
from ...text import html_text
from .mime import attachment_name, header_text

MAX_MIME_DEPTH = 50   # nested multiparts deeper than this are a construction, not mail
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"   # an encrypted OOXML file is an OLE container


@dataclass(frozen=True)
class Limits:
    """Resource limits for one message (bytes of text, entries, ratio, levels, seconds)."""

    max_text_bytes: int = 20 * 1024 * 1024
    max_archive_entries: int = 1000
    max_compression_ratio: float = 100.0
    max_depth: int = 5
    seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """The limits MAILGUARD_INSPECT_* set."""
        return cls(settings.inspect_max_text_bytes, settings.inspect_max_archive_entries,
                   settings.inspect_max_compression_ratio, settings.inspect_max_depth, settings.inspect_timeout)


@dataclass(frozen=True)
class TextPart:
    where: str                  # e.g. "本文", "添付 careplan.xlsx シート 計画 B3"
    text: str
    attachment: str | None      # MIME part path of the top-level attachment (``mime``); None for the body


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


class LimitExceeded(Exception):
    """Raised inside an extractor when a limit is reached; ``str()`` is the Japanese reason."""


class _Budget:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.text_bytes = 0

    def take(self, text: str) -> str:
        self.text_bytes += len(text.encode("utf-8", "surrogatepass"))
        if self.text_bytes > self.limits.max_text_bytes:
            raise LimitExceeded(f"取り出した文字量が上限 ({self.limits.max_text_bytes:,} バイト) を超えました")
        return text


def extract_message(raw: bytes, limits: Limits = Limits()) -> Extraction:
    """All text of a raw RFC 5322 message. Never raises for bad input."""
    out = Extraction()
    budget = _Budget(limits)
    try:
        msg = message_from_bytes(raw, policy=compat32)
        if msg.get("Subject"):
            out.parts.append(TextPart("件名", budget.take(header_text(msg["Subject"])), None))
        for path, part in mime.leaves(msg):
            if mime.depth(path) > MAX_MIME_DEPTH:
                raise LimitExceeded(f"MIME の入れ子が深すぎます (上限 {MAX_MIME_DEPTH} 階層)")
            _top_level(path, part, budget, out)
    except LimitExceeded as exc:
        out.unscannable.append(Unscannable("メール全体", str(exc), None))
    return out


def _top_level(path: str, part: Message, budget: _Budget, out: Extraction) -> None:
    """One leaf of the message itself: body text, or an attachment known by its path."""
    ctype = part.get_content_type()
    filename = attachment_name(part)
    if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
        name = filename or "転送メール"
        out.attachments.append((path, name))
        _walk(part.get_payload()[0], f"添付 {name} › ", path, 1, budget, out)
        return
    if filename or part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
        name = filename or f"(名前なし {ctype})"
        out.attachments.append((path, name))
        extract_file(name, part.get_payload(decode=True) or b"", ctype, f"添付 {name}", path, 1, budget, out)
        return
    _body_text(part, "", None, budget, out)


def _body_text(part: Message, prefix: str, attachment: str | None, budget: _Budget, out: Extraction) -> None:
    text = _decode(part.get_payload(decode=True) or b"", part.get_content_charset())
    if part.get_content_type() == "text/html":
        text = html_text(text)
    out.parts.append(TextPart(f"{prefix}本文", budget.take(text), attachment))


def _walk(msg: Message, prefix: str, attachment: str, depth: int, budget: _Budget, out: Extraction) -> None:
    """A message inside an attachment (forwarded, or an .eml in a zip): all of it is that attachment's."""
    if depth > budget.limits.max_depth:
        raise LimitExceeded(f"入れ子が深すぎます (上限 {budget.limits.max_depth} 階層)")
    if msg.get("Subject"):
        out.parts.append(TextPart(f"{prefix}件名", budget.take(header_text(msg["Subject"])), attachment))
    for _, part in mime.leaves(msg):
        ctype = part.get_content_type()
        filename = attachment_name(part)
        if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
            name = filename or "転送メール"
            _walk(part.get_payload()[0], f"{prefix}添付 {name} › ", attachment, depth + 1, budget, out)
        elif filename or part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
            name = filename or f"(名前なし {ctype})"
            extract_file(name, part.get_payload(decode=True) or b"", ctype, f"{prefix}添付 {name}", attachment,
                         depth + 1, budget, out)
        else:
            _body_text(part, prefix, attachment, budget, out)


def _decode(data: bytes, charset: str | None) -> str:
    """Text in its declared charset (CP932 for Shift_JIS: Windows mail), else detected."""
    aliases = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
               "iso-2022-jp": "iso2022_jp_ext", "euc-jp": "euc_jis_2004"}
    if charset:
        try:
            return data.decode(aliases.get(charset.lower(), charset))
        except (LookupError, UnicodeDecodeError):
            pass
    return detect_text(data)


def detect_text(data: bytes) -> str:
    """Decode bytes of unknown charset (CSV from Excel is CP932) with charset-normalizer."""
    from charset_normalizer import from_bytes

    for encoding in ("utf-8",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    best = from_bytes(data, cp_isolation=["cp932", "euc_jp", "iso2022_jp", "utf_16", "utf_8"]).best()
    return str(best) if best is not None else data.decode("cp932", "replace")


def extract_file(name: str, data: bytes, ctype: str, where: str, attachment: str, depth: int,
                 budget: _Budget, out: Extraction) -> None:
    """Text of one file; anything unreadable becomes an Unscannable entry."""
    kind = _kind(name, ctype, data)
    try:
        if kind == "zip":
            _zip(data, where, attachment, depth, budget, out)
        elif kind == "eml":
            _walk(message_from_bytes(data, policy=compat32), where + " › ", attachment, depth + 1, budget, out)
        elif kind in EXTRACTORS:
            for sub_where, text in EXTRACTORS[kind](data):
                out.parts.append(TextPart(f"{where}{sub_where}", budget.take(text), attachment))
        elif kind == "image":
            out.unscannable.append(Unscannable(where, "画像のため文字を読み取れません (スキャンした書類の可能性)", attachment))
        else:
            out.unscannable.append(Unscannable(where, f"内容を検査できない種類のファイルです ({ctype})", attachment))
    except LimitExceeded:
        raise
    except _Encrypted as exc:
        out.unscannable.append(Unscannable(where, str(exc), attachment))
    except Exception as exc:   # a broken file is reported, never fatal
        out.unscannable.append(Unscannable(where, f"ファイルが壊れているか読めません ({type(exc).__name__})", attachment))


class _Encrypted(Exception):
    pass


def _kind(name: str, ctype: str, data: bytes) -> str:
    lower = name.lower()
    for suffix, kind in ((".pdf", "pdf"), (".docx", "docx"), (".docm", "docx"), (".xlsx", "xlsx"),
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


def _pdf(data: bytes):
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise _Encrypted("パスワード付き PDF のため検査できません") from None
        return _pdf_fallback(data)
    pages = []
    try:
        for index in range(len(document)):
            page = document[index]
            text = page.get_textpage().get_text_range()
            pages.append((f" {index + 1}ページ", text))
    finally:
        document.close()
    if pages and not any(text.strip() for _, text in pages):
        raise _Encrypted("文字情報のない PDF です (スキャン画像の可能性)。内容を確認できません")
    return pages


def _pdf_fallback(data: bytes):
    """pdfminer.six reads some PDFs that pdfium refuses; a truly broken file raises."""
    from pdfminer.high_level import extract_text

    text = extract_text(io.BytesIO(data))
    if not text.strip():
        raise ValueError("no text")
    return [("", text)]


def _ole_encrypted(data: bytes) -> None:
    if data[:8] == OLE_MAGIC:
        raise _Encrypted("パスワード付き Office ファイルのため検査できません")


def _docx(data: bytes):
    import docx

    _ole_encrypted(data)
    document = docx.Document(io.BytesIO(data))
    yield "", "\n".join(p.text for p in document.paragraphs)
    for t, table in enumerate(document.tables, 1):
        rows = ["\t".join(cell.text for cell in row.cells) for row in table.rows]
        yield f" 表{t}", "\n".join(rows)


def _xlsx(data: bytes):
    import openpyxl

    _ole_encrypted(data)
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        for sheet in workbook.worksheets:
            lines = []
            for row in sheet.iter_rows():
                cells = [str(c.value) for c in row if c.value is not None]
                if cells:
                    lines.append("\t".join(cells))
            yield f" シート {sheet.title}", "\n".join(lines)
    finally:
        workbook.close()


def _xls(data: bytes):
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except xlrd.XLRDError as exc:
        if "encrypt" in str(exc).lower():
            raise _Encrypted("パスワード付き Excel ファイルのため検査できません") from None
        raise
    for sheet in book.sheets():
        lines = ["\t".join(str(v) for v in sheet.row_values(r) if v not in ("", None)) for r in range(sheet.nrows)]
        yield f" シート {sheet.name}", "\n".join(lines)


def _pptx(data: bytes):
    from pptx import Presentation

    _ole_encrypted(data)
    deck = Presentation(io.BytesIO(data))
    for number, slide in enumerate(deck.slides, 1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        yield f" スライド{number}", "\n".join(texts)


def _text(data: bytes):
    yield "", detect_text(data)


def _html(data: bytes):
    yield "", html_text(detect_text(data))


EXTRACTORS = {"pdf": _pdf, "docx": _docx, "xlsx": _xlsx, "xls": _xls, "pptx": _pptx, "text": _text, "html": _html}


def _zip(data: bytes, where: str, attachment: str, depth: int, budget: _Budget, out: Extraction) -> None:
    limits = budget.limits
    if depth > limits.max_depth:
        raise LimitExceeded(f"入れ子が深すぎます (上限 {limits.max_depth} 階層)")
    archive = zipfile.ZipFile(io.BytesIO(data))
    entries = [i for i in archive.infolist() if not i.is_dir()]
    if len(entries) > limits.max_archive_entries:
        out.unscannable.append(Unscannable(where, f"zip の中のファイルが多すぎます ({len(entries)} 件)", attachment))
        return
    if any(i.flag_bits & 0x1 for i in entries):
        out.unscannable.append(Unscannable(where, "パスワード付き zip のため検査できません", attachment))
        return
    total = sum(i.file_size for i in entries)
    packed = max(1, sum(i.compress_size for i in entries))
    if total / packed > limits.max_compression_ratio or total > limits.max_text_bytes * 4:
        out.unscannable.append(Unscannable(
            where, f"圧縮率が異常に高い zip です (展開後 {total:,} バイト, 圧縮率 {total / packed:.0f} 倍)。"
                   "zip 爆弾の可能性があるため展開しません", attachment))
        return
    for info in entries:
        name = info.filename.rsplit("/", 1)[-1]
        with archive.open(info) as member:
            content = member.read(info.file_size + 1)
        extract_file(name, content, "application/octet-stream", f"{where} › {name}", attachment,
                     depth + 1, budget, out)
