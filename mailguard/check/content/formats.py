"""formats: the text of PDF and Office files, read with well-kept libraries.

Receives one file's bytes and the ``zipsafe.Caps`` in force; yields
``(where inside it, text)``: " シート 計画", " ヘッダー", " スライド3". PDF has a module of
its own (``pdf``).

    DOCX  python-docx: body, headers, footers, notes, comments, text boxes, tracked deletions
    XLSX  openpyxl (read-only, cell values)       XLS  xlrd
    PPTX  python-pptx: every shape, group and table on a slide, and the speaker notes

An Office Open XML file (docx / xlsx / pptx, ECMA-376) is a zip: before its
library opens it, ``zipsafe.verify`` inflates every member under our own caps
and checks its real size and CRC, so a document.xml that inflates to hundreds of
megabytes is refused, not parsed. Raises ``Unreadable`` (a Japanese reason) for
a password-protected file, ``zipsafe.Refused``
for a member past the caps, and the library's exception for a broken file: the
caller (``extract``) makes each of them ``unscannable``. Files embedded in an Office
document (``*/embeddings/``: a workbook in a letter, an OLE object) are read by
``extract`` like attachments of their own, and their pictures by OCR (a scan pasted into a
letter). CPU-bound: run in a worker.
"""

from __future__ import annotations

import io

from . import zipsafe

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"   # an encrypted OOXML file is an OLE container


W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
A = "http://schemas.openxmlformats.org/drawingml/2006/main"
FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
BREAKS = (f"{{{W}}}tab", f"{{{W}}}br", f"{{{W}}}cr", f"{{{A}}}br")
WML = "application/vnd.openxmlformats-officedocument.wordprocessingml."
# WordprocessingML parts people read (ECMA-376 Part 1 §11.3), by the end of their content type
WORD_PARTS = {"main+xml": "", "header+xml": "ヘッダー", "footer+xml": "フッター", "footnotes+xml": "脚注",
              "endnotes+xml": "文末脚注", "comments+xml": "コメント"}


class Unreadable(Exception):
    """The file cannot be inspected, for a reason known to us; ``str()`` is the Japanese reason."""


def _office_zip(data: bytes, caps: zipsafe.Caps) -> None:
    """Before python-docx / openpyxl / python-pptx open it: not encrypted (an encrypted OOXML
    file is an OLE container, MS-OFFCRYPTO), and every member's real size and CRC as declared."""
    if data[:8] == OLE_MAGIC:
        raise Unreadable("パスワード付き Office ファイルのため検査できません")
    zipsafe.verify(data, caps)


def _docx(data: bytes, caps: zipsafe.Caps):
    """The body, headers, footers, footnotes, endnotes and comments, text boxes and
    tracked deletions included: whatever the recipient can bring up on screen."""
    import docx
    from docx.oxml import parse_xml

    _office_zip(data, caps)
    document = docx.Document(io.BytesIO(data))
    for part in document.part.package.iter_parts():
        kind = part.content_type.rsplit(".", 1)[-1]
        if part.content_type.startswith(WML) and kind in WORD_PARTS:
            element = part.element if hasattr(part, "element") else parse_xml(part.blob)
            label = WORD_PARTS[kind]
            yield f" {label}" if label else "", _text_of(element, f"{{{W}}}p", (f"{{{W}}}t", f"{{{W}}}delText"))


def _xlsx(data: bytes, caps: zipsafe.Caps):
    import openpyxl

    _office_zip(data, caps)
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        for sheet in workbook.worksheets:
            lines = []
            for row in sheet.iter_rows():   # empty cells kept, so a column header stands over its cells
                cells = ["" if c.value is None else str(c.value) for c in row]
                if any(cells):
                    lines.append("\t".join(cells).rstrip("\t"))
            yield f" シート {sheet.title}", "\n".join(lines)
    finally:
        workbook.close()


def _xls(data: bytes, caps: zipsafe.Caps):
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except xlrd.XLRDError as exc:
        if "encrypt" in str(exc).lower():
            raise Unreadable("パスワード付き Excel ファイルのため検査できません") from None
        raise
    for sheet in book.sheets():
        lines = ["\t".join("" if v is None else str(v) for v in sheet.row_values(r)).rstrip("\t")
                 for r in range(sheet.nrows)]
        yield f" シート {sheet.name}", "\n".join(lines)


def _pptx(data: bytes, caps: zipsafe.Caps):
    """Every slide's text (shapes, groups, tables) and its speaker notes."""
    from pptx import Presentation

    _office_zip(data, caps)
    deck = Presentation(io.BytesIO(data))
    for number, slide in enumerate(deck.slides, 1):
        text = _text_of(slide.element, f"{{{A}}}p", (f"{{{A}}}t",))
        if slide.has_notes_slide:
            text += "\n" + _text_of(slide.notes_slide.element, f"{{{A}}}p", (f"{{{A}}}t",))
        yield f" スライド{number}", text


def _text_of(element, paragraph: str, texts: tuple[str, ...]) -> str:
    """The text of an Office XML tree in document order, a line per paragraph. Of an
    ``mc:AlternateContent`` only the first choice is read (the fallback repeats it)."""
    from lxml import etree

    out: list[str] = []
    walker = etree.iterwalk(element, events=("start", "end"))
    for event, node in walker:
        if event == "end":
            if node.tag == paragraph:
                out.append("\n")
        elif node.tag == FALLBACK:
            walker.skip_subtree()
        elif node.tag in texts and node.text:
            out.append(node.text)
        elif node.tag in BREAKS:
            out.append("\t" if node.tag == f"{{{W}}}tab" else "\n")
    return "".join(out)


EXTRACTORS = {"docx": _docx, "xlsx": _xlsx, "xls": _xls, "pptx": _pptx}
