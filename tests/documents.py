"""Documents a care office sends, generated for tests and benchmarks (no files shipped)."""

from __future__ import annotations

import io
from email.message import EmailMessage
from email.policy import SMTP

from mailguard.check.content.detect import my_number_check_digit

STAFF = "staff@sakura-kaigo.example.jp"
REGISTERED = "renkei@minato-hospital.example.jp"
VALID_MY_NUMBER = "12345678901" + str(my_number_check_digit("12345678901"))
BAD_MY_NUMBER = "12345678901" + str((my_number_check_digit("12345678901") + 1) % 10)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def message(body: str = "資料を送ります。", attachments=(), charset: str = "utf-8") -> bytes:
    msg = EmailMessage()
    msg["From"] = STAFF
    msg["To"] = REGISTERED
    msg["Subject"] = "送付"
    msg.set_content(body, charset=charset)
    for name, data, mime in attachments:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP)


def care_plan_xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "居宅サービス計画書"
    sheet.append(["利用者氏名", "生年月日", "要介護度", "被保険者番号"])
    sheet.append(["佐藤 花子", "昭和10年5月6日", "要介護2", "0123456789"])
    sheet.append(["生活全般の解決すべき課題", "脳梗塞後遺症による片麻痺。入浴介助が必要。"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def assessment_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("アセスメントシート", 1)
    document.add_paragraph("利用者: 高橋 次郎 様 (昭和8年11月20日生)")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "既往歴", "糖尿病、高血圧症"
    table.cell(1, 0).text, table.cell(1, 1).text = "服薬", "メトホルミン 朝夕"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def referral_pdf(lines: list[str] | None = None) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))   # a Japanese CID font
    out = io.BytesIO()
    page = canvas.Canvas(out)
    page.setFont("HeiseiMin-W3", 12)
    for i, line in enumerate(lines or ["診療情報提供書", "患者氏名 鈴木 一郎 様 生年月日 昭和15年1月2日",
                                       "病名 脳梗塞 既往歴 高血圧症 要介護4"]):
        page.drawString(50, 800 - 20 * i, line)
    page.save()
    return out.getvalue()


def cp932_csv(rows: list[list[str]]) -> bytes:
    return "\r\n".join(",".join(row) for row in rows).encode("cp932")




CARE_PLAN_LINES = ["居宅サービス計画書（1）", "利用者名　佐藤　花子　様", "被保険者番号　1400012345",
                   "病名　糖尿病、脳梗塞後遺症", "要介護3"]
GOTHIC = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"   # Debian's fonts-ipafont-gothic


def paper(lines: list[str], dpi: int = 200, size_mm: tuple[int, int] = (210, 148)):
    """A printed page as a scanner sees it: black text on white, greyscale (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = (round(mm / 25.4 * dpi) for mm in size_mm)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(GOTHIC, round(dpi * 12 / 72))
    for i, line in enumerate(lines):
        draw.text((round(dpi * 0.6), round(dpi * (0.6 + 0.32 * i))), line, font=font, fill=0)
    return image


def scanned_pdf(pages: list[list[str]], dpi: int = 200) -> bytes:
    """An image-only PDF, as a multifunction printer's scan-to-mail makes it."""
    images = [paper(lines, dpi).convert("RGB") for lines in pages]
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def fax_tiff(pages: list[list[str]], fine: bool = True) -> bytes:
    """A multi-page internet FAX (RFC 3949 TIFF-F): bilevel, G4, 204×196 dpi (fine) or 204×98 (standard)."""
    ydpi = 196 if fine else 98
    frames = []
    for lines in pages:
        image = paper(lines, 204)
        frames.append(image.resize((image.width, round(image.height * ydpi / 204))).convert("1"))
    out = io.BytesIO()
    frames[0].save(out, "TIFF", compression="group4", dpi=(204, ydpi), save_all=True, append_images=frames[1:])
    return out.getvalue()


def png(lines: list[str]) -> bytes:
    out = io.BytesIO()
    paper(lines).save(out, "PNG")
    return out.getvalue()


def form_pdf(fields: list[tuple[str, str]]) -> bytes:
    """A PDF whose data lives only in AcroForm text fields (ISO 32000-1 §12.7): the page itself is
    blank, the values are UTF-16 text strings (§7.9.2.2), as a filled-in municipal form."""
    def text(value: str) -> str:
        return "<FEFF" + value.encode("utf-16-be").hex().upper() + ">"

    count = len(fields)
    widgets = " ".join(f"{4 + i} 0 R" for i in range(count))
    objects = ["<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [" + widgets + "] >> >>",
               "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [" + widgets + "] >>"]
    for i, (name, value) in enumerate(fields):
        objects.append(f"<< /Type /Annot /Subtype /Widget /FT /Tx /T {text(name)} /V {text(value)}"
                       f" /Rect [180 {740 - 40 * i} 480 {760 - 40 * i}] /P 3 0 R >>")
    return pdf_file(objects)


def pdf_file(objects: list[str]) -> bytes:
    """A PDF from its object bodies (object 1 the catalog), with a correct xref table (ISO 32000-1 §7.5)."""
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def vertical_pdf(columns: list[str]) -> bytes:
    """縦書き: columns set top to bottom, the first on the right (a CID font in vertical mode)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out)
    font = UnicodeCIDFont("HeiseiMin-W3", isVertical=True)
    pdfmetrics.registerFont(font)
    page.setFont(font.fontName, 14)
    for i, column in enumerate(columns):
        page.drawString(520 - 24 * i, 780, column)
    page.save()
    return out.getvalue()
