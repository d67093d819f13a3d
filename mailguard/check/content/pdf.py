"""pdf: everything a PDF shows a reader, for the detectors: text in reading order, form fields, notes.

Receives a PDF's bytes; yields ``(where, text)`` per page (" 2ページ", " 2ページ フォーム",
" 2ページ 注釈") and, for a page without a text layer (a scan), ``(where, Scan)``: a page
``ocr`` renders and reads. Read with PDFium (pypdfium2; Japanese CID fonts), pdfminer.six
when PDFium refuses the file.

- **Reading order of 縦書き.** PDFium gives the lines (columns) of vertical text in content
  order, often left to right; Japanese vertical text is read right to left. A page whose lines
  run top to bottom (most neighbouring characters one under the other) has its lines sorted by
  their x position, right first (JIS X 4051 §4.2).
- **AcroForm** (ISO 32000-1 §12.7): a form's values are not page text; each widget's field name
  and value are read through PDFium's form API, and every other annotation's ``/Contents``
  (a sticky note, a comment) too (§12.5).
- Never trusted: the page count, the annotation count and the bytes of form values and notes
  of a page are capped (``MAX_PAGES``, ``MAX_ANNOTATIONS``, ``MAX_EXTRA``): past them the file
  is not fully read and is unscannable; a page rendered for OCR is capped in pixels (``ocr``).
- A file PDFium refuses is tried again from its ``%PDF-`` header (junk before it), then read
  by pdfminer.six for its text only; if it has form fields, notes or images, which that
  cannot show, it is unscannable.

Raises ``Unreadable`` (Japanese) for a password-protected file; a broken file raises the
library's exception (the caller makes it unscannable). CPU-bound: run in a worker.
"""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass

from .formats import Unreadable

MAX_PAGES = 2000          # pages read of one PDF; past it the file is not fully read (Unreadable)
MAX_ANNOTATIONS = 2000    # annotations read per page; a page with more is not fully read (Unreadable)
MAX_EXTRA = 4 * 1024 * 1024   # bytes of form values and notes of one page
TEXTLESS = 8              # a page with fewer characters than this and no form values is a scan
VERTICAL_SHARE = 0.6      # share of neighbouring characters one under the other that makes a page vertical


@dataclass(frozen=True)
class Scan:
    """A page (or an image) with no text to read: ``ocr.read_pages`` renders and reads it."""

    source: bytes        # the whole PDF (or image file)
    index: int           # page (or frame) number from 0
    kind: str = "pdf"    # "pdf" or "image"


def pages(data: bytes):
    import pypdfium2 as pdfium

    try:
        document = _open(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise Unreadable("パスワード付き PDF のため検査できません") from None
        yield from _fallback(data)
        return
    try:
        count = len(document)
        if count > MAX_PAGES:
            raise Unreadable(f"ページ数が多すぎます ({count:,} ページ、上限 {MAX_PAGES:,})")
        forms = _init_forms(document)
        for index in range(count):
            page = document[index]
            try:
                text = _page_text(page)
                fields, notes = _annotations(page, forms)
            finally:
                page.close()
            where = f" {index + 1}ページ"
            if len(text.strip()) < TEXTLESS:
                yield where, Scan(data, index)   # the page is a picture: OCR it
                if text.strip():
                    yield where, text
            else:
                yield where, text
            if fields:
                yield f"{where} フォーム", "\n".join(fields)
            if notes:
                yield f"{where} 注釈", "\n".join(notes)
    finally:
        document.close()


def _open(data: bytes):
    """PDFium's document; a file with junk before its header is tried from the header."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        start = data.find(b"%PDF-", 1, 65536)
        if start < 0:
            raise
        return pdfium.PdfDocument(data[start:])


def _fallback(data: bytes):
    """pdfminer.six reads the text of some PDFs that PDFium refuses, but not their form values,
    notes or scanned pages: a file that has any of them is not fully read. A broken file raises."""
    from pdfminer.high_level import extract_text

    if any(marker in data for marker in (b"/AcroForm", b"/Annots", b"/Image")):
        raise Unreadable("PDF の構造が壊れていて、フォームの入力値・注釈・画像を読み取れません")
    text = extract_text(io.BytesIO(data), maxpages=MAX_PAGES)
    if not text.strip():
        raise ValueError("no text")
    yield "", text


def _page_text(page) -> str:
    """The page's text, its lines in reading order (vertical pages right to left)."""
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range()
        if count < 2 or not _vertical(textpage, count):
            return text
        return "\n".join(line for _, line in sorted(_lines(textpage, text), key=lambda item: -item[0]))
    finally:
        textpage.close()


def _vertical(textpage, count: int) -> bool:
    """Most neighbouring characters one under the other (a sample of at most 400 pairs)."""
    step = max(1, count // 400)
    down = across = 0
    for i in range(0, count - 1, step):
        a, b = textpage.get_charbox(i), textpage.get_charbox(i + 1)
        dx, dy = abs((a[0] + a[2]) - (b[0] + b[2])), abs((a[1] + a[3]) - (b[1] + b[3]))
        if dx == dy == 0:
            continue
        if dy > dx:
            down += 1
        else:
            across += 1
    return down > VERTICAL_SHARE * (down + across)


def _lines(textpage, text: str):
    """(x centre, line) of each line of ``text``; PDFium's text and char indexes run together
    except for the line breaks it adds, which have no box of their own."""
    out, start = [], 0
    for line in text.replace("\r\n", "\n").split("\n"):
        xs = []
        for i in range(start, min(start + len(line), textpage.count_chars())):
            left, _, right, _ = textpage.get_charbox(i)
            if right > left:
                xs.append((left + right) / 2)
        out.append((sum(xs) / len(xs) if xs else 0.0, line))
        start += len(line) + 2   # the "\r\n" PDFium generated
    return out


def _init_forms(document):
    try:
        document.init_forms()
        return document.formenv
    except Exception:   # a PDF without a form, or a PDFium build without XFA: the page text still counts
        return None


def _annotations(page, forms) -> tuple[list[str], list[str]]:
    """(form field "name: value" lines, other annotations' contents) of one page."""
    import pypdfium2.raw as raw

    fields, notes, size = [], [], 0
    count = raw.FPDFPage_GetAnnotCount(page)
    if count > MAX_ANNOTATIONS:
        raise Unreadable(f"注釈・フォームが多すぎます (1 ページに {count:,} 個、上限 {MAX_ANNOTATIONS:,})")
    for i in range(count):
        annot = raw.FPDFPage_GetAnnot(page, i)
        if not annot:
            continue
        try:
            if raw.FPDFAnnot_GetSubtype(annot) == raw.FPDF_ANNOT_WIDGET and forms is not None:
                value = _field_value(forms, annot)
                if value.strip():
                    name = _wide(raw.FPDFAnnot_GetFormFieldName, forms.raw, annot)
                    fields.append(f"{name}: {value}" if name else value)
                    size += len(fields[-1])
            else:
                contents = _wide(raw.FPDFAnnot_GetStringValue, annot, b"Contents")
                if contents.strip():
                    notes.append(contents)
                    size += len(contents)
        finally:
            raw.FPDFPage_CloseAnnot(annot)
        if size > MAX_EXTRA:
            raise Unreadable(f"フォームの入力値・注釈が大きすぎます (1 ページに {MAX_EXTRA:,} 文字超)")
    return fields, notes


def _field_value(forms, annot) -> str:
    """A text field's value; for a check box or radio button, its name when ticked, else nothing
    (an unticked 既往歴_糖尿病 is not a disease)."""
    import pypdfium2.raw as raw

    kind = raw.FPDFAnnot_GetFormFieldType(forms.raw, annot)
    if kind in (raw.FPDF_FORMFIELD_CHECKBOX, raw.FPDF_FORMFIELD_RADIOBUTTON):
        if not raw.FPDFAnnot_IsChecked(forms.raw, annot):
            return ""
        export = _wide(raw.FPDFAnnot_GetFormFieldExportValue, forms.raw, annot)
        return export if export and export not in ("Yes", "On") else "✓"
    return _wide(raw.FPDFAnnot_GetFormFieldValue, forms.raw, annot)


MAX_STRING = 1 << 20   # bytes of one field value or note (UTF-16): a larger one makes the file unscannable


def _wide(function, *args) -> str:
    """A UTF-16LE string from a PDFium getter that reports its size in bytes (terminator included)."""
    size = function(*args, None, 0)
    if size > MAX_STRING:
        raise Unreadable(f"フォームの値または注釈が大きすぎます ({size:,} バイト)")
    if size <= 2:
        return ""
    buffer = (ctypes.c_ushort * (size // 2))()
    function(*args, buffer, size)
    return bytes(buffer)[: size - 2].decode("utf-16-le", "replace")
