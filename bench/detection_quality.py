"""Detection quality: how well the product finds personal data in what a care office sends.

    python bench/detection_quality.py [--out DIR] [--quick]

Builds 68 labelled mails (``--quick``: 20) from the contents of bench/corpus.py (care plans,
referrals, resident lists, My Number lists, care records … as positives; schedules, 和暦 holiday
lists, training notices on 認知症ケア, flyers, invoices, menus, a blank scan as negatives), each
rendered here into one format: plain-text body (ISO-2022-JP or UTF-8) or HTML body with tables, both
signed by the sender (name, TEL, FAX, address); or, under a one-line body, DOCX, XLSX, CP932 CSV,
text PDF, AcroForm PDF, 縦書き PDF, image-only PDF scanned at 200 or 300 dpi, FAX TIFF in fine or
standard mode, phone photo (JPEG) or PNG of a page. Labels come from the contents, not the detectors.

Each mail goes through the product's own ``report.scan``, in this process, one at a time; OCR seconds
per page are taken from that same scan (``extract_message`` is wrapped, nothing is read twice).
Prints: 1. per format: positives, negatives, recall (found at least personal), sensitive recall,
false-positive rate (negatives found personal or sensitive), unscannable, seconds per mail;
2. per detector kind: expected, found, recall, false positives on negatives; 3. OCR seconds per page;
4. every miss, false positive, missed kind, unscannable item and crash, by document id.
``--out DIR`` also writes each mail (.eml), its attachment or body, labels.json and results.json.
Measured here (2 cores, busy): 75 s, of which OCR 70 s (25 pages, 2.8 s each); ``--quick`` 27 s.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import statistics
import sys
import time
import traceback
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import corpus as C  # noqa: E402
import documents as D  # noqa: E402

import mailguard.check.content.report as report_module  # noqa: E402
from mailguard.check.content.report import LEVELS, scan  # noqa: E402

# ---- renderers: content → file → mail ----

def wrap(line: str, limit: int = 80) -> list[str]:
    """Lines of at most ``limit`` half-width columns (a page holds 88 at 12 pt), broken between table
    cells, else after 、。） or an ASCII space, else anywhere."""
    width = [2 if unicodedata.east_asian_width(ch) in "WFA" else 1 for ch in line]
    out = []
    while sum(width) > limit:
        used, cut, cell, soft = 0, 0, 0, 0
        for i, ch in enumerate(line):
            used += width[i]
            if used > limit:
                break
            cut = i + 1
            if ch == "　" and line[i - 1:i] == "　":
                cell = i + 1
            elif ch in "、。） ":
                soft = i + 1
        at = cell or soft or cut
        out.append(line[:at].rstrip(" 　"))
        line, width = line[at:], width[at:]
    return out + [line]


def fit(c: C.Content, most: int) -> list[str]:
    lines = [part for line in c.lines() for part in wrap(line)]
    if len(lines) > most:   # a label must describe what is on the page: never cut silently
        raise ValueError(f"{c.what}: {len(lines)} lines, the page holds {most}")
    return lines


def pages(c: C.Content, count: int) -> list[list[str]]:
    lines = fit(c, 30 * count)
    size = max(1, -(-len(lines) // count))
    return [lines[i:i + size] for i in range(0, len(lines), size)] or [[]]


def saved(obj, *args, **kwargs) -> bytes:
    out = io.BytesIO()
    obj.save(out, *args, **kwargs)
    return out.getvalue()


def docx_file(c: C.Content, rng) -> bytes:
    import docx

    document, as_paragraphs = docx.Document(), rng.random() < .5
    document.add_heading(c.title, 1)
    for k, v in c.pairs if as_paragraphs else ():
        document.add_paragraph(f"{k}：{v}")
    for rows in ([] if as_paragraphs else [list(p) for p in c.pairs], c.table):
        if rows:
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(rows):
                for k, cell in enumerate(row):
                    table.cell(r, k).text = cell
    for note in c.notes:
        document.add_paragraph(note)
    return saved(document)


def xlsx_file(c: C.Content) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = c.what
    for row in [[c.title]] + [list(p) for p in c.pairs] + [[]] + c.table + [[n] for n in c.notes]:
        book.active.append(row)
    return saved(book)


def csv_file(c: C.Content) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([[c.title], *c.pairs, *c.table, *[[n] for n in c.notes]])
    return out.getvalue().replace("〜", "～").encode("cp932")   # as Windows writes it


def html_body(c: C.Content, greeting: str, sign: str) -> str:
    def table(rows, head):
        return "<table border='1' style='border-collapse:collapse'>" + "".join("<tr>" + "".join(
            f"<{'th' if head and r == 0 else 'td'}>{html.escape(t)}</{'th' if head and r == 0 else 'td'}>" for t in row)
            + "</tr>" for r, row in enumerate(rows)) + "</table>"
    return (f"<html><body><p>{html.escape(greeting)}</p><h3>{html.escape(c.title)}</h3>"
            + (table(c.pairs, False) if c.pairs else "") + (table(c.table, True) if c.table else "")
            + "".join(f"<p>{html.escape(n)}</p>" for n in c.notes) + f"<pre>{html.escape(sign)}</pre></body></html>")


def scan_pdf(sheets: list[list[str]], dpi: int, rng) -> bytes:
    """A4 pages scanned to an image-only PDF, slightly soft as a scanner's optics make them."""
    from PIL import ImageFilter

    images = [D.paper(lines, dpi, (210, 297)).filter(ImageFilter.GaussianBlur(rng.uniform(.3, .7))).convert("RGB")
              for lines in sheets]
    return saved(images[0], "PDF", resolution=dpi, save_all=True, append_images=images[1:])


def fax_tiff(sheets: list[list[str]], fine: bool, rng) -> bytes:
    """A4 internet FAX (TIFF-F, G4), each page with the sending machine's header line and number."""
    ydpi, frames, tel = 196 if fine else 98, [], C.phone(rng)
    sent = f"2026/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d} {rng.randint(8, 18)}:{rng.randint(0, 59):02d}"
    for n, lines in enumerate(sheets, 1):
        image = D.paper([f"{sent}  FAX {tel}  P.{n}/{len(sheets)}", ""] + lines, 204, (210, 297))
        frames.append(image.resize((image.width, round(image.height * ydpi / 204))).convert("1"))
    return saved(frames[0], "TIFF", compression="group4", dpi=(204, ydpi), save_all=True, append_images=frames[1:])


def photo(lines: list[str], ext: str, rng) -> bytes:
    """A phone photo (JPEG) of a printed A5 sheet on a desk, tilted and soft; or a PNG of the page."""
    from PIL import Image, ImageFilter

    page = D.paper(lines, 200)
    if ext == "png":
        return saved(page, "PNG")
    desk = tuple(rng.randint(90, 150) for _ in range(3))
    sheet = Image.merge("RGB", [page.point(lambda v, k=k: v * k // 255) for k in (250, 246, 236)])
    canvas = Image.new("RGB", (sheet.width + 160, sheet.height + 160), desk)
    canvas.paste(sheet, (80, 80))
    canvas = canvas.rotate(rng.uniform(-3, 3), Image.Resampling.BICUBIC, fillcolor=desk)
    return saved(canvas.filter(ImageFilter.GaussianBlur(.8)), "JPEG", quality=rng.choice((75, 85)))


MIMES = {"docx": D.DOCX, "xlsx": D.XLSX, "csv": "text/csv", "pdf": "application/pdf", "tif": "image/tiff",
         "jpg": "image/jpeg", "png": "image/png"}


def attachment(fmt: str, c: C.Content, rng, option: str) -> tuple[str, bytes]:
    """(file name, bytes) of content ``c`` as a file of format ``fmt``."""
    when = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}_{rng.randint(8, 17):02d}{rng.randint(0, 59):02d}"
    if fmt.startswith("scan-pdf"):
        return f"scan_{when}.pdf", scan_pdf(pages(c, int(option or 1)), int(fmt[-3:]), rng)
    if fmt.startswith("fax"):
        return f"FAX_{when}.tif", fax_tiff(pages(c, int(option or 1)), fmt == "fax-fine", rng)
    if fmt == "photo":
        return f"IMG_{when}.{option or 'jpg'}", photo(fit(c, 15), option or "jpg", rng)
    if fmt == "pdf-form":   # the page is blank; the data are the fields' values, named as on the form
        cells = [(f"{row[0]}_{k}", v) for row in c.table[1:] for k, v in zip(c.table[0][1:], row[1:], strict=True)]
        fields = [("様式", c.title), *c.pairs, *cells, *[(f"備考{i}", n) for i, n in enumerate(c.notes)]]
        return f"{c.what}.pdf", D.form_pdf(fields)
    return {"docx": lambda: (f"{c.what}.docx", docx_file(c, rng)), "xlsx": lambda: (f"{c.what}.xlsx", xlsx_file(c)),
            "csv-cp932": lambda: (f"{c.what}.csv", csv_file(c)),
            "pdf-text": lambda: (f"{c.what}.pdf", D.referral_pdf(fit(c, 38))),
            "pdf-vertical": lambda: (f"{c.what}.pdf", D.vertical_pdf(fit(c, 20)))}[fmt]()


def render(fmt: str, c: C.Content, rng, option: str) -> tuple[bytes, str, bytes]:
    """(raw mail, file name, file bytes): a body with the office signature, or a short body and the file."""
    msg, staff = EmailMessage(), rng.choice(C.STAFF)
    msg["From"] = f"{staff} <{rng.choice(('care', 'soudan'))}@sakura-kaigo.example.jp>" if rng.random() < .5 else D.STAFF
    msg["To"], msg["Subject"] = D.REGISTERED, rng.choice(("資料送付の件", "ご連絡", "書類の送付", "Fw: 資料"))
    greeting = rng.choice(C.GREETINGS)
    if fmt == "body-text":
        body = (greeting + "\n\n") * bool(c.title) + "\n".join(c.lines()) + "\n" + C.signature(rng, staff)
        charset = "iso-2022-jp" if rng.random() < .5 else "utf-8"
        try:
            body.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"
        msg.set_content(body, charset=charset)
        return msg.as_bytes(policy=SMTP), "body.txt", body.encode()
    if fmt == "body-html":
        body = html_body(c, greeting, C.signature(rng, staff))
        msg.set_content(body, subtype="html", charset="utf-8")
        return msg.as_bytes(policy=SMTP), "body.html", body.encode()
    name, data = attachment(fmt, c, rng, option)
    msg.set_content(greeting)
    maintype, subtype = MIMES[name.rsplit(".", 1)[1]].split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP), name, data


# ---- scanning ----

OCR_PAGES: list[float] = []   # seconds per page OCR'd, of the scan running now
_extract = report_module.extract_message


def _recording_extract(raw, *args, **kwargs):
    """report.scan's own extraction, its OCR seconds kept: OCR timed without reading anything twice."""
    extraction = _extract(raw, *args, **kwargs)
    OCR_PAGES.extend(extraction.ocr_seconds)
    return extraction


report_module.extract_message = _recording_extract


@dataclass
class Doc:
    id: str
    fmt: str
    what: str
    level: str                     # expected
    kinds: frozenset[str]          # expected
    raw: bytes
    filename: str
    payload: bytes
    got: str = ""                  # level found, or "crash"
    found: Counter = field(default_factory=Counter)      # kind → detections
    examples: dict = field(default_factory=dict)         # kind → a masked example
    unscannable: list = field(default_factory=list)      # (where, reason)
    ocr: list = field(default_factory=list)              # seconds per OCR page
    seconds: float = 0.0
    error: str = ""

    def __post_init__(self):
        self.positive = self.level != "none"


def build(quick: bool) -> list[Doc]:
    docs = []
    for doc_id, fmt, option, content, rng in C.plan(quick):
        raw, filename, payload = render(fmt, content, rng, option)
        docs.append(Doc(doc_id, fmt, content.what, content.level, frozenset(content.kinds), raw, filename, payload))
    return docs


def run(doc: Doc) -> None:
    OCR_PAGES.clear()
    started = time.perf_counter()
    try:
        report = scan(doc.raw)
    except Exception as exc:   # the product crashed on this document: recorded, the benchmark goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        doc.got, doc.error = "crash", f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
    else:
        doc.got = report.level
        for part in report.parts:
            for d in part.detections:
                doc.found[d.kind] += 1
                doc.examples.setdefault(d.kind, d.masked)
        doc.unscannable = [(u.where, u.reason) for u in report.unscannable]
    doc.seconds, doc.ocr = time.perf_counter() - started, list(OCR_PAGES)


# ---- tables ----

def ratio(k: int, n: int) -> str:
    return f"{k}/{n} {100 * k / n:3.0f}%" if n else "-"


def level_tables(docs: list[Doc]) -> None:
    print("1. Per format: recall = positives found personal or sensitive; sensitive recall = expected sensitive "
          "found sensitive;\n   FP rate = negatives found personal or sensitive; unscannable = documents (items)\n")
    print(f"{'format':<14}{'pos':>4}{'neg':>4}  {'recall':<12}{'sens. recall':<13}{'FP rate':<12}{'unscannable':<12}"
          f"{'crash':>5}{'s/doc':>7}")
    for fmt in [*C.PLAN, "ALL"]:
        group = [d for d in docs if fmt in (d.fmt, "ALL")]
        if not group:
            continue
        pos, neg = [d for d in group if d.positive], [d for d in group if not d.positive]
        sens = [d for d in pos if d.level == "sensitive"]
        unscannable = [d for d in group if d.unscannable]
        print(f"{fmt:<14}{len(pos):>4}{len(neg):>4}  {ratio(sum(d.got in LEVELS[1:] for d in pos), len(pos)):<12}"
              f"{ratio(sum(d.got == 'sensitive' for d in sens), len(sens)):<13}"
              f"{ratio(sum(d.got in LEVELS[1:] for d in neg), len(neg)):<12}"
              f"{f'{len(unscannable)} ({sum(len(d.unscannable) for d in group)})':<12}"
              f"{sum(d.got == 'crash' for d in group):>5}{statistics.mean(d.seconds for d in group):>7.2f}")


def kind_table(docs: list[Doc]) -> None:
    print("\n2. Per detector kind: expected = positive documents that hold it; found = of those, where it was "
          "found;\n   FP = negative documents where it was found, whatever their level (detections)\n")
    kinds = sorted({k for d in docs for k in d.kinds} | {k for d in docs if not d.positive for k in d.found})
    print(f"{'kind':<26}{'expected':>9}{'found':>7}  {'recall':<6}{'FP docs':>9}{'(dets)':>8}")
    for kind in kinds:
        expected = [d for d in docs if kind in d.kinds]
        found = sum(kind in d.found for d in expected)
        negatives = [d for d in docs if not d.positive and kind in d.found]
        recall = f"{100 * found / len(expected):3.0f}%" if expected else "-"
        print(f"{kind:<26}{len(expected):>9}{found:>7}  {recall:<6}{len(negatives):>9}"
              f"{'(' + str(sum(d.found[kind] for d in negatives)) + ')':>8}")


def ocr_table(docs: list[Doc]) -> None:
    print("\n3. OCR seconds per page (recorded inside the scan)\n")
    print(f"{'format':<14}{'pages':>6}{'mean':>7}{'median':>8}{'max':>7}{'total':>8}")
    for fmt in [*C.OCR_FORMATS, "ALL"]:
        pages = [s for d in docs if fmt in (d.fmt, "ALL") for s in d.ocr]
        if pages:
            print(f"{fmt:<14}{len(pages):>6}{statistics.mean(pages):>7.2f}{statistics.median(pages):>8.2f}"
                  f"{max(pages):>7.2f}{sum(pages):>8.1f}")


def failure_lists(docs: list[Doc]) -> None:
    def found(d: Doc) -> str:
        return ", ".join(f"{k}×{n} ({d.examples[k]})" for k, n in sorted(d.found.items())) or "-"

    order = {level: i for i, level in enumerate(LEVELS)}
    misses = [d for d in docs if d.positive and order.get(d.got, -1) < order[d.level]]
    over = [d for d in docs if d.positive and order.get(d.got, -1) > order[d.level]]
    false = [d for d in docs if not d.positive and d.got in LEVELS[1:]]
    print("\n4. Failures\n")
    for title, group in (("Misses (positive found lower than expected)", misses),
                         ("False positives (negative found personal or sensitive)", false),
                         ("Over-classified (personal expected, found sensitive)", over),
                         ("Kinds found on negatives left none", [d for d in docs if d.level == d.got == "none" and d.found])):
        print(f"{title}: {len(group)}")
        for d in group:
            print(f"  {d.id} {d.fmt:<13} expected {d.level:<9} got {d.got:<9} {d.what}\n"
                  f"      missing: {', '.join(sorted(d.kinds - set(d.found))) or '-'}; found: {found(d)}")
    partial = [d for d in docs if d.positive and d not in misses and d.kinds - set(d.found)]
    print(f"Missed kinds on positives classified right: {len(partial)}")
    for d in partial:
        print(f"  {d.id} {d.fmt:<13} {d.level:<9} {d.what}: missing {', '.join(sorted(d.kinds - set(d.found)))}")
    print(f"Unscannable items: {sum(len(d.unscannable) for d in docs)}")
    for d in docs:
        for where, reason in d.unscannable:
            print(f"  {d.id} {d.fmt:<13} {d.what} ({d.level} expected, got {d.got}): {where}: {reason}")
    crashes = [d for d in docs if d.got == "crash"]
    print(f"Crashes: {len(crashes)}")
    for d in crashes:
        print(f"  {d.id} {d.fmt:<13} {d.what}: {d.error}")


def write_out(docs: list[Doc], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    labels, results = [], []
    for d in docs:
        (out / f"{d.id}.eml").write_bytes(d.raw)
        (out / f"{d.id}_{d.filename}").write_bytes(d.payload)
        labels.append({"id": d.id, "format": d.fmt, "what": d.what, "level": d.level, "kinds": sorted(d.kinds),
                       "eml": f"{d.id}.eml", "file": f"{d.id}_{d.filename}"})
        results.append({"id": d.id, "got": d.got, "found": dict(d.found), "unscannable": d.unscannable,
                        "ocr_seconds": d.ocr, "seconds": round(d.seconds, 3), "error": d.error})
    for name, data in (("labels.json", labels), ("results.json", results)):
        (out / name).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the documents, labels.json and results.json here")
    parser.add_argument("--quick", action="store_true", help="20 documents instead of 68")
    args = parser.parse_args()
    started = time.perf_counter()
    docs = build(args.quick)
    built = time.perf_counter() - started
    for i, doc in enumerate(docs, 1):
        run(doc)
        print(f"[{i}/{len(docs)}] {doc.id} {doc.fmt} {doc.what}: {doc.got} ({doc.seconds:.1f} s)", file=sys.stderr)
    positives = sum(d.positive for d in docs)
    print(f"Detection quality: {len(docs)} documents ({positives} positive, {len(docs) - positives} negative), "
          f"{len(C.PLAN)} formats, seed {C.SEED}{' (--quick)' if args.quick else ''}\n")
    level_tables(docs)
    kind_table(docs)
    ocr_table(docs)
    failure_lists(docs)
    if args.out:
        write_out(docs, args.out)
        print(f"\nwritten to {args.out}")
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s (building the documents {built:.1f} s, "
          f"scanning {sum(d.seconds for d in docs):.1f} s)")


if __name__ == "__main__":
    main()
