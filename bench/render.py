"""render: the renderers of bench/detection_quality.py — content → file → mail.

Easy tier (corpus.py): plain-text body (ISO-2022-JP or UTF-8) or HTML body with tables, both signed by
the sender; or, under a one-line body, DOCX, XLSX, CP932 CSV, text PDF, AcroForm PDF, 縦書き PDF, image-only
PDF at 200 or 300 dpi, FAX TIFF in fine or standard mode, phone photo (JPEG) or PNG of a page.
Hard tier (corpus_hard.py) adds, by the renderer option: noisy image-only PDFs at 150 dpi (``grey`` grey
toner on grey paper, ``salt`` salt-and-pepper specks, ``tilt`` 1–3° skew, ``jpeg`` JPEG quality 12–20,
``mix`` skew, specks and JPEG 30); FAXes with line noise (``noisy``: dust specks, dropped scan lines,
a dirty-glass streak); phone photos under uneven light (``lit`` a printed page, ``form`` a boxed form);
AcroForms with checkboxes and radio groups (from ☑/☐/◉ values); page breaks at a "\\f" line.
"""

from __future__ import annotations

import csv
import html
import io
import unicodedata
from email.message import EmailMessage
from email.policy import SMTP

import corpus as C
import documents as D

PAGE = "\f"


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
    """The lines of ``count`` pages, evenly; or as the content breaks them at PAGE lines."""
    if PAGE in c.lines():
        sheets = [[]]
        for line in c.lines():
            sheets.append([]) if line == PAGE else sheets[-1].extend(wrap(line))
        if max(map(len, sheets)) > 30:
            raise ValueError(f"{c.what}: a page of {max(map(len, sheets))} lines, the page holds 30")
        return sheets
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


def fax_tiff(sheets: list[list[str]], fine: bool, rng, noisy: bool = False) -> bytes:
    """A4 internet FAX (TIFF-F, G4), each page with the sending machine's header line and number;
    ``noisy``: as a worn machine sends it (dust specks, dropped scan lines, a dirty-glass streak)."""
    ydpi, frames, tel = 196 if fine else 98, [], C.phone(rng)
    sent = f"2026/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d} {rng.randint(8, 18)}:{rng.randint(0, 59):02d}"
    for n, lines in enumerate(sheets, 1):
        image = D.paper([f"{sent}  FAX {tel}  P.{n}/{len(sheets)}", ""] + lines, 204, (210, 297))
        image = fax_noise(image, rng) if noisy else image
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
    count = int(option) if option.isdigit() else 1
    if fmt.startswith("scan-pdf") and option in NOISES:
        return f"scan_{when}.pdf", noisy_scan_pdf(pages(c, count), int(fmt[-3:]), option, rng)
    if fmt.startswith("scan-pdf"):
        return f"scan_{when}.pdf", scan_pdf(pages(c, count), int(fmt[-3:]), rng)
    if fmt.startswith("fax"):
        return f"FAX_{when}.tif", fax_tiff(pages(c, count), fmt == "fax-fine", rng, option == "noisy")
    if fmt == "photo" and option in ("lit", "form"):
        return f"IMG_{when}.jpg", lit_photo(form_page(c) if option == "form" else D.paper(fit(c, 15), 200), rng)
    if fmt == "photo":
        return f"IMG_{when}.{option or 'jpg'}", photo(fit(c, 15), option or "jpg", rng)
    if fmt == "pdf-form":   # the page is blank; the data are the fields' values, named as on the form
        cells = [(f"{row[0]}_{k}", v) for row in c.table[1:] for k, v in zip(c.table[0][1:], row[1:], strict=True)]
        fields = [*[("様式", c.title)] * bool(c.title), *c.pairs, *cells, *[(f"備考{i}", n) for i, n in enumerate(c.notes)]]
        boxes = any(v in ("☑", "☐") or v.startswith("◉") for _, v in fields)
        return f"{c.what}.pdf", (form_pdf if boxes else D.form_pdf)(fields)
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


# ---- hard tier: noise, light, forms ----

NOISES = {"grey": ("grey",), "salt": ("salt",), "tilt": ("tilt",), "jpeg": ("jpeg",), "mix": ("tilt", "specks", "jpeg")}


def jpeg_again(image, quality: int):
    from PIL import Image

    return Image.open(io.BytesIO(saved(image, "JPEG", quality=quality))).convert(image.mode)


def spoil(page, noise: str, rng):
    """A greyscale page as a tired office scanner or copier gives it."""
    import numpy as np
    from PIL import Image, ImageFilter

    np_rng = np.random.default_rng(rng.randrange(2 ** 32))
    page = page.filter(ImageFilter.GaussianBlur(rng.uniform(.4, .8)))
    for step in NOISES[noise]:
        if step == "tilt":
            page = page.rotate(rng.choice((-1, 1)) * rng.uniform(1, 3), Image.Resampling.BICUBIC, fillcolor=255)
        elif step == "grey":   # light toner on recycled paper: text ~120, paper ~208, with grain
            arr = 118 + np.asarray(page, dtype=np.float32) * (208 - 118) / 255 + np_rng.normal(0, 5, page.size[::-1])
            page = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        elif step in ("salt", "specks"):
            arr, draw = np.asarray(page).copy(), np_rng.random(page.size[::-1])
            density = .01 if step == "salt" else .004
            arr[draw < density / 2], arr[draw > 1 - density / 2] = 0, 255
            page = Image.fromarray(arr)
        elif step == "jpeg":
            page = jpeg_again(page, rng.randint(12, 20) if noise == "jpeg" else 30)
    return page


def noisy_scan_pdf(sheets: list[list[str]], dpi: int, noise: str, rng) -> bytes:
    images = [spoil(D.paper(lines, dpi, (210, 297)), noise, rng).convert("RGB") for lines in sheets]
    return saved(images[0], "PDF", resolution=dpi, save_all=True, append_images=images[1:])


def fax_noise(page, rng):
    """Dust specks, 2–4 dropped scan lines (white rows) and a thin dark streak down the page."""
    import numpy as np
    from PIL import Image

    np_rng = np.random.default_rng(rng.randrange(2 ** 32))
    arr = np.asarray(page).copy()
    arr[np_rng.random(arr.shape) < .002] = 0
    for _ in range(rng.randint(2, 4)):
        row = rng.randrange(arr.shape[0])
        arr[row:row + rng.randint(1, 3)] = 255
    column = rng.randrange(arr.shape[1] // 4, arr.shape[1])
    arr[:, column:column + 2] = np.minimum(arr[:, column:column + 2], 90)
    return Image.fromarray(arr)


def form_page(c: C.Content, dpi: int = 160):
    """An A4 form printed with boxes: the title, then a row of label and value cells per pair."""
    from PIL import Image, ImageDraw, ImageFont

    if c.table:
        raise ValueError(f"{c.what}: form_page draws pairs and notes only")
    page = Image.new("L", (round(210 / 25.4 * dpi), round(297 / 25.4 * dpi)), 255)
    draw, inch = ImageDraw.Draw(page), lambda x: round(x * dpi)
    font, big = (ImageFont.truetype(D.GOTHIC, round(dpi * pt / 72)) for pt in (12, 18))
    draw.text((page.width // 2, inch(.7)), c.title, font=big, fill=0, anchor="mm")
    top, row = inch(1.2), inch(.5)
    for i, (label, value) in enumerate(c.pairs):
        y = top + i * row
        draw.rectangle((inch(.6), y, inch(2.2), y + row), outline=0, width=2, fill=225)
        draw.rectangle((inch(2.2), y, inch(7.7), y + row), outline=0, width=2)
        draw.text((inch(.7), y + row // 2), label, font=font, fill=0, anchor="lm")
        draw.text((inch(2.3), y + row // 2), value, font=font, fill=0, anchor="lm")
    for i, note in enumerate(c.notes):
        draw.text((inch(.6), top + (len(c.pairs) + 1 + i) * row), note, font=font, fill=0)
    return page


def lit_photo(page, rng) -> bytes:
    """A phone photo of a sheet on a desk under a ceiling light: brighter on one side, a hand's soft
    shadow on a corner, warm cast, 1–2° turned, soft, JPEG 60–70 (no perspective)."""
    import numpy as np
    from PIL import Image, ImageFilter

    desk = tuple(rng.randint(80, 130) for _ in range(3))
    canvas = Image.new("L", (page.width + 160, page.height + 160), 0)
    canvas.paste(page, (80, 80))
    mask = Image.new("L", canvas.size, 0)
    mask.paste(255, (80, 80, 80 + page.width, 80 + page.height))
    h, w = canvas.height, canvas.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1 - .35 * (xx / w if rng.random() < .5 else 1 - xx / w) - .1 * yy / h
    shadow = np.zeros((h, w), np.float32)
    shadow[: int(h * rng.uniform(.25, .4)), int(w * rng.uniform(.6, .75)):] = .3
    shadow = np.asarray(Image.fromarray((shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(60)), np.float32) / 255
    light = (light - shadow).clip(.35, 1)
    ink = np.asarray(canvas, np.float32)
    layers = [Image.fromarray((ink * k * light).clip(0, 255).astype(np.uint8)) for k in (.98, .94, .84)]
    sheet = Image.merge("RGB", layers)
    photo_ = Image.composite(sheet, Image.new("RGB", canvas.size, desk), mask)
    photo_ = photo_.rotate(rng.choice((-1, 1)) * rng.uniform(1, 2), Image.Resampling.BICUBIC, fillcolor=desk)
    return saved(photo_.filter(ImageFilter.GaussianBlur(.9)), "JPEG", quality=rng.randint(60, 70))


def pdf_name(text: str) -> str:   # a PDF name object (ISO 32000-1 §7.3.5): other bytes as #xx
    return "/" + "".join(chr(b) if 0x21 <= b <= 0x7E and chr(b) not in "#()<>[]{}/%" else f"#{b:02X}"
                         for b in text.encode())


def form_pdf(fields: list[tuple[str, str]]) -> bytes:
    """As documents.form_pdf (a blank page, the data in AcroForm fields) with checkboxes (value ☑/☐: a
    /Btn field named by the key, /V /On or /Off) and radio groups ("◉chosen/opt/…": a parent field with
    /V /chosen, one widget per option, its on-state named by the option)."""
    def text(value: str) -> str:
        return "<FEFF" + value.encode("utf-16-be").hex().upper() + ">"

    objects = ["", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>", "",
               "<< /Type /XObject /Subtype /Form /BBox [0 0 12 12] /Length 0 >>\nstream\n\nendstream"]
    top, widgets, slot = [], [], iter(range(10 ** 6))

    def rect() -> str:
        i = next(slot)
        return f"/Rect [{60 + 260 * (i // 30)} {790 - 25 * (i % 30)} {300 + 260 * (i // 30)} {808 - 25 * (i % 30)}] /P 3 0 R"

    def add(body: str) -> int:
        objects.append(body)
        return len(objects)

    for name, value in fields:
        if value in ("☑", "☐"):
            state = "/On" if value == "☑" else "/Off"
            top.append(add(f"<< /Type /Annot /Subtype /Widget /FT /Btn /T {text(name)} /V {state} /AS {state} {rect()}"
                           " /AP << /N << /On 4 0 R /Off 4 0 R >> >> >>"))
            widgets.append(top[-1])
        elif value.startswith("◉"):
            chosen, *options = value[1:].split("/")
            parent = add("")   # numbered before its kids, written after them
            kids = [add(f"<< /Type /Annot /Subtype /Widget /Parent {parent} 0 R /AS {pdf_name(o) if o == chosen else '/Off'}"
                        f" {rect()} /AP << /N << {pdf_name(o)} 4 0 R /Off 4 0 R >> >> >>") for o in options]
            objects[parent - 1] = (f"<< /FT /Btn /Ff 49152 /T {text(name)} /V {pdf_name(chosen) if chosen else '/Off'}"
                                   f" /Kids [{' '.join(f'{k} 0 R' for k in kids)}] >>")
            top.append(parent)
            widgets.extend(kids)
        else:
            top.append(add(f"<< /Type /Annot /Subtype /Widget /FT /Tx /T {text(name)} /V {text(value)} {rect()} >>"))
            widgets.append(top[-1])
    objects[0] = f"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [{' '.join(f'{n} 0 R' for n in top)}] >> >>"
    objects[2] = f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [{' '.join(f'{n} 0 R' for n in widgets)}] >>"
    return D.pdf_file(objects)
