"""What staff really send: scans and FAX images (OCR), PDF forms, 縦書き, tables — and what is
not personal data (calendars, schedules, signatures). Scans run in the real worker pool."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from conftest import REGISTERED, send_raw
from documents import (CARE_PLAN_LINES, fax_tiff, form_pdf, message, png, scanned_pdf,
                       vertical_pdf)
from mailguard.check.content.extract import Limits, extract_message
from mailguard.check.content.report import scan

PDF, TIFF = "application/pdf", "image/tiff"


def _attachment(report):
    [part] = [p for p in report.parts if p.path not in (None, "subject")]
    return part


def test_an_image_only_care_plan_pdf_is_read_and_found_sensitive():
    report = scan(message(attachments=[("スキャン.pdf", scanned_pdf([CARE_PLAN_LINES]), PDF)]))
    part = _attachment(report)
    assert report.level == "sensitive" and not report.unscannable
    assert {"person_name", "care_insured_number", "disease"} <= {d.kind for d in part.detections}
    finding = next(f for f in report.findings() if f.code == "sensitive_data")
    assert "1ページ (OCR)" in finding.text                     # says where, and that OCR read it


@pytest.mark.parametrize("fine", [True, False], ids=["fine 204x196", "standard 204x98"])
def test_a_multi_page_fax_tiff_names_the_page_the_data_is_on(fine):
    fax = fax_tiff([["FAX送信票", "さくら介護 御中", "送信枚数 2枚"], CARE_PLAN_LINES], fine=fine)
    report = scan(message(attachments=[("FAX.tif", fax, TIFF)]))
    assert report.level == "sensitive" and not report.unscannable
    assert _attachment(report).places == ("2ページ (OCR)",)


@pytest.mark.parametrize("name, data", [
    ("白紙.png", png([])),
    ("チラシ.pdf", scanned_pdf([["秋祭りのお知らせ", "日時 10月5日 13時から", "場所 1階ホール",
                               "どなたでもご参加ください"]])),
])
def test_a_blank_scan_and_a_flyer_are_not_personal(name, data):
    report = scan(message(attachments=[(name, data, PDF if name.endswith(".pdf") else "image/png")]))
    assert report.level == "none" and not report.unscannable


def test_a_scan_too_blurred_to_read_confidently_stays_unscannable():
    import io

    from PIL import ImageFilter

    from documents import paper

    out = io.BytesIO()
    paper(CARE_PLAN_LINES).filter(ImageFilter.GaussianBlur(5)).save(out, "PNG")
    report = scan(message(attachments=[("写真.png", out.getvalue(), "image/png")]))
    assert [u.reason for u in report.unscannable] == ["画像の文字を確実には読み取れませんでした (OCR)"]
    assert any(f.code == "unscannable_content" and "1ページ" in f.text for f in report.findings())


def test_an_image_with_ink_but_no_text_read_is_not_taken_for_blank():
    import io

    from PIL import Image, ImageDraw

    image = Image.new("L", (1200, 800), 255)
    ImageDraw.Draw(image).rectangle((100, 100, 1100, 700), fill=40)     # a photo, a smudge: nothing readable
    out = io.BytesIO()
    image.save(out, "PNG")
    report = scan(message(attachments=[("写真.png", out.getvalue(), "image/png")]))
    assert [u.reason for u in report.unscannable] == ["画像の文字を確実には読み取れませんでした (OCR)"]


def test_a_declared_resolution_that_lies_is_ignored():
    from PIL import Image

    from mailguard.check.content.ocr import _square

    for dpi in ((2, 400), (20000, 1)):           # would squash a page to a line, or stretch it past memory
        image = Image.new("L", (1654, 1165), 255)
        image.info["dpi"] = dpi
        assert _square(image).size == (1654, 1165)
    fax = Image.new("1", (1728, 1100), 1)
    fax.info["dpi"] = (204, 98)
    assert _square(fax).size == (1728, 2290)     # standard-mode FAX: stretched to square pixels


def test_ocr_reads_at_most_the_page_cap_and_says_so():
    fax = fax_tiff([["1枚目", "送信票"], CARE_PLAN_LINES, ["3枚目"]])
    out = extract_message(message(attachments=[("FAX.tif", fax, TIFF)]), Limits(ocr_pages=1))
    assert len(out.ocr_seconds) == 1
    assert [u.where for u in out.unscannable] == ["添付 FAX.tif 2ページ"]
    assert "ページ数の上限" in out.unscannable[0].reason


def test_ocr_stops_at_its_time_budget_and_says_so():
    fax = fax_tiff([["1枚目", "送信票"], CARE_PLAN_LINES])
    out = extract_message(message(attachments=[("FAX.tif", fax, TIFF)]), Limits(ocr_seconds=0.01))
    assert len(out.ocr_seconds) == 1 and "制限時間" in out.unscannable[0].reason   # page 1 read, page 2 not


async def test_a_worker_stuck_in_ocr_is_killed_and_replaced():
    from mailguard.check.content.pool import ContentInspector

    inspector = ContentInspector(Limits(seconds=0.3, ocr_seconds=0.3), workers=1)
    try:
        scan_pdf = scanned_pdf([CARE_PLAN_LINES] * 3)                  # seconds of OCR
        report = await inspector.scan(message(attachments=[("スキャン.pdf", scan_pdf, PDF)]), "Q-ocr")
        assert [u.reason for u in report.unscannable] == ["検査が制限時間 (0.6 秒) 内に終わりませんでした"]
        assert (await inspector.scan(message("高橋 次郎 様 糖尿病"))).level == "sensitive"   # a new worker
    finally:
        inspector.close()


def test_ocr_runs_in_the_scan_workers_never_in_the_relays_process():
    import subprocess
    import sys

    code = ("import asyncio, sys; sys.path.insert(0, 'tests'); from documents import *; "
            "from mailguard.check.content.pool import ContentInspector; "
            "from mailguard.check.content.extract import Limits; "
            "inspector = ContentInspector(Limits(), 1); "
            "raw = message(attachments=[('s.pdf', scanned_pdf([CARE_PLAN_LINES]), 'application/pdf')]); "
            "report = asyncio.run(inspector.scan(raw)); inspector.close(); "
            "print(report.level, [m for m in ('rapidocr', 'onnxruntime', 'cv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[-2] == "sensitive []"


def test_a_scan_pasted_into_a_word_file_is_read():
    import io

    import docx

    from documents import DOCX, paper

    picture = io.BytesIO()
    paper(CARE_PLAN_LINES).save(picture, "PNG")
    document = docx.Document()
    document.add_paragraph("ケアプランを送ります。")
    document.add_picture(io.BytesIO(picture.getvalue()))
    out = io.BytesIO()
    document.save(out)
    report = scan(message(attachments=[("ケアプラン.docx", out.getvalue(), DOCX)]))
    assert report.level == "sensitive"
    assert any("画像 image1.png 1ページ (OCR)" in place for place in _attachment(report).places)


def test_personal_data_only_in_form_fields_is_found():
    form = form_pdf([("氏名", "佐藤 花子"), ("被保険者番号", "1400012345"), ("傷病名", "糖尿病")])
    report = scan(message(attachments=[("申請書.pdf", form, PDF)]))
    assert report.level == "sensitive"
    assert _attachment(report).places == ("1ページ フォーム",)


def test_form_fields_are_read_even_behind_junk_before_the_header():
    form = form_pdf([("氏名", "佐藤 ハル"), ("被保険者番号", "1400012345"), ("傷病名", "認知症")])
    report = scan(message(attachments=[("申請書.pdf", b"\0" * 1100 + form, PDF)]))
    assert report.level == "sensitive"


def test_a_pdf_with_more_annotations_than_the_cap_is_unscannable():
    form = form_pdf([(f"f{i}", "x") for i in range(2001)] + [("備考", "佐藤 ハル様 認知症")])
    out = extract_message(message(attachments=[("申請書.pdf", form, PDF)]))
    assert any("多すぎます" in u.reason for u in out.unscannable)


def test_a_pretty_printed_html_table_keeps_its_columns():
    html = """<table>
      <tr>
        <th>利用者名</th>
        <th>要介護度</th>
      </tr>
      <tr>
        <td>佐々木 ハル</td>
        <td>要介護2</td>
      </tr>
    </table>"""
    report = scan(_html_mail(html))
    names = [d.value for p in report.parts for d in p.detections if d.kind == "person_name"]
    assert names == ["佐々木ハル"] and report.level == "sensitive"


def test_vertical_text_is_read_right_to_left():
    pdf = vertical_pdf(["ご連絡", "利用者の佐藤花子様は", "糖尿病のため通院中です。"])
    out = extract_message(message(attachments=[("お知らせ.pdf", pdf, PDF)]))
    [page] = [p.text for p in out.parts if p.where.startswith("添付")]
    assert page.split() == ["ご連絡", "利用者の佐藤花子様は", "糖尿病のため通院中です。"]
    assert scan(message(attachments=[("お知らせ.pdf", pdf, PDF)])).level == "sensitive"


def _html_mail(html: str, sender: str = "staff@sakura-kaigo.example.jp") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, REGISTERED, "ご連絡"
    msg.set_content("HTML メールです")
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def test_a_katakana_given_name_in_a_table_cell_is_a_person():
    html = ("<table><tr><th>利用者名</th><th>サービス</th></tr>"
            "<tr><td>佐々木 ハル</td><td>訪問介護</td></tr></table>")
    report = scan(_html_mail(html))
    assert report.level == "personal"
    assert [d.value for p in report.parts for d in p.detections if d.kind == "person_name"] == ["佐々木ハル"]


@pytest.mark.parametrize("body", [
    "令和8年の祝日\n令和8年1月1日(木) 元日\n令和8年1月12日(月) 成人の日\n令和8年2月23日(月) 天皇誕生日\n"
    "令和8年9月21日(月) 敬老の日\n",
    "12月の会議予定\n2026年12月3日 15時 運営会議\n2026年12月10日 10時 ケース会議\n2026年12月20日 誕生日会\n",
    "明日の研修は15時からです。\n--\nさくら介護ステーション\nケアマネジャー 山田 太郎\n"
    "〒100-0001 東京都千代田区千代田1-1\nTEL 03-1234-5678 FAX 03-1234-5679\n",
])
def test_calendars_schedules_and_signatures_are_not_personal_data(body):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "山田 太郎 <staff@sakura-kaigo.example.jp>", REGISTERED, "ご連絡"
    msg.set_content(body)
    assert scan(msg.as_bytes()).level == "none"


def test_a_faxed_care_plan_to_a_partner_is_protected_not_held(relay, upstream):
    """Before OCR, every scan waited for a manager; now it is read, found sensitive and protected."""
    raw = message(attachments=[("FAX.tif", fax_tiff([CARE_PLAN_LINES]), TIFF)])
    queue_id = send_raw(relay, [REGISTERED], raw)
    assert relay.wait_decided(queue_id, timeout=60) == "delayed"
    findings = relay.store.get(queue_id).findings
    assert [f.code for f in findings if f.code.endswith("_data")] == ["sensitive_data"]
    assert "(OCR)" in next(f.text for f in findings if f.code == "sensitive_data")
    assert "unscannable_content" not in [f.code for f in findings]
