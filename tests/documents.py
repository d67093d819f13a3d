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


