"""Personal data in bodies and attachments: documents the tests generate, classified
as an admin would expect; hostile input comes back unscannable within the limits."""

from __future__ import annotations

import io
import time
import zipfile
from email.policy import SMTP

import pytest

from conftest import INTERNAL, REGISTERED, STAFF, send_raw, wait_for
from documents import (BAD_MY_NUMBER, VALID_MY_NUMBER, XLSX, assessment_docx, care_plan_xlsx, cp932_csv,
                       message, referral_pdf)
from mailguard.check.content.detect import detect
from mailguard.check.content.extract import Limits
from mailguard.check.content.report import scan


def kinds(report) -> set[str]:
    return {d.kind for part in report.parts for d in part.detections}


def test_care_plan_xlsx_is_sensitive():
    report = scan(message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(),
                                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]))
    assert report.level == "sensitive" and report.level_of("2") == "sensitive"
    assert "(場所: シート 居宅サービス計画書)" in report.findings()[0].text
    assert {"person_name", "birth_date", "care_level", "care_insured_number", "disease", "disability"} <= kinds(report)


def test_assessment_docx_is_sensitive():
    report = scan(message(attachments=[("アセスメント.docx", assessment_docx(),
                                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]))
    assert report.level_of("2") == "sensitive"
    assert {"person_name", "birth_date", "disease", "medication"} <= kinds(report)


def test_referral_pdf_with_japanese_cid_fonts_is_sensitive():
    report = scan(message(attachments=[("紹介状.pdf", referral_pdf(), "application/pdf")]))
    assert report.level_of("2") == "sensitive"
    assert "(場所: 1ページ)" in report.findings()[0].text
    assert {"person_name", "birth_date", "disease", "care_level"} <= kinds(report)


def test_cp932_csv_with_a_valid_my_number_is_sensitive():
    csv = cp932_csv([["氏名", "個人番号", "住所"], ["田中 一郎", VALID_MY_NUMBER, "東京都千代田区千代田1-1"]])
    report = scan(message(attachments=[("名簿.csv", csv, "text/csv")]))
    assert report.level_of("2") == "sensitive"
    [my_number] = [d for p in report.parts for d in p.detections if d.kind == "my_number"]
    assert my_number.masked == "*" * 10 + VALID_MY_NUMBER[-2:]     # never the full number
    assert VALID_MY_NUMBER not in repr(report.findings())


def test_iso_2022_jp_body_with_insured_number_and_care_level_is_sensitive():
    body = "お世話になっております。\n山本 トメ 様 (介護保険被保険者番号 1234567890) は要介護3に変更になりました。\n"
    raw = message(body, charset="iso-2022-jp")
    assert b"ISO-2022-JP" in raw.upper()
    report = scan(raw)
    assert report.level_of("本文") == "sensitive"
    assert {"care_insured_number", "care_level"} <= kinds(report)


@pytest.mark.parametrize("name, body, attachment", [
    ("meeting agenda", "職員会議の議題\n1. 年末年始の勤務表\n2. 認知症ケア研修の報告\n3. 次回 2026年12月1日 14時", None),
    ("training schedule", "研修のご案内", ("研修日程.csv", cp932_csv(
        [["日付", "研修名", "講師"], ["2026/12/03", "感染症対策と褥瘡予防", "外部講師"],
         ["2026/12/10", "高齢者虐待防止", "施設長"]]), "text/csv")),
    ("order list", "発注一覧です", ("発注.csv", cp932_csv(
        [["注文番号", "品名", "数量"], [BAD_MY_NUMBER, "おむつ L", "20"], [BAD_MY_NUMBER[::-1], "手袋", "5"]]),
        "text/csv")),
    ("corporate number", "弊社の法人番号は 1234567890123 です。\nさくら居宅介護支援事業所\nTEL 03-1234-5678", None),
])
def test_negative_controls_are_not_personal_data(name, body, attachment):
    report = scan(message(body, attachments=[attachment] if attachment else ()))
    assert report.level == "none", (name, [(d.kind, d.masked) for p in report.parts for d in p.detections])
    assert not report.unscannable


def test_my_number_check_digit_and_context():
    assert detect(f"個人番号 {VALID_MY_NUMBER}")[0].kind == "my_number"
    assert detect(f"個人番号 {BAD_MY_NUMBER}") == []
    assert detect(f"注文番号 {VALID_MY_NUMBER}") == []              # 1 in 11 pass: context required
    assert detect("個人番号：１２３４５６７８９０１８")[0].kind == "my_number"  # full-width digits


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_bomb_is_unscannable_without_expanding_it():
    bomb = zip_of({"zeros.txt": b"0" * (50 * 1024 * 1024)})
    assert len(bomb) < 200_000
    started = time.monotonic()
    report = scan(message(attachments=[("資料.zip", bomb, "application/zip")]))
    assert time.monotonic() - started < 5
    [item] = report.unscannable
    assert "zip 爆弾" in item.reason and item.attachment == "2"


def test_deeply_nested_archive_is_unscannable():
    data = zip_of({"inner.txt": b"hello"})
    for level in range(8):
        data = zip_of({f"level{level}.zip": data})
    report = scan(message(attachments=[("nested.zip", data, "application/zip")]), Limits(max_depth=5))
    assert any("入れ子が深すぎます" in u.reason for u in report.unscannable)


def test_encrypted_zip_is_unscannable():
    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(b"secret")
        archive.writestr("ケアプラン.xlsx", care_plan_xlsx())
    report = scan(message(attachments=[("暗号化.zip", out.getvalue(), "application/zip")]))
    assert [u.reason for u in report.unscannable] == ["パスワード付き zip のため検査できません"]


def test_truncated_pdf_is_unscannable():
    pdf = referral_pdf()
    report = scan(message(attachments=[("紹介状.pdf", pdf[: len(pdf) // 3], "application/pdf")]))
    [item] = report.unscannable
    assert item.attachment == "2" and "壊れている" in item.reason


def test_an_image_is_reported_as_unscannable():
    report = scan(message(attachments=[("scan.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "image/jpeg")]))
    assert "画像" in report.unscannable[0].reason


def test_sensitive_attachment_waits_for_a_manager_only_when_the_partner_is_not_registered(relay, upstream):
    raw = message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(),
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")])
    registered = send_raw(relay, [REGISTERED], raw)      # a fresh store: never written to, but registered
    assert relay.wait_decided(registered) == "delayed"
    queue_id = send_raw(relay, ["someone@unknown-partner.example.com"], raw)
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert "sensitive_data" in relay.findings(queue_id)
    show = relay.cli("queue", "show", queue_id).stdout
    assert "要配慮個人情報" in show and "氏名 1件 (佐＊＊＊)" in show and "電話番号" not in show
    assert "0123456789" not in show + relay.cli("log").stdout + relay.log()   # masked everywhere


def test_a_zip_bomb_is_held_while_the_relay_keeps_serving(relay, upstream):
    raw = message(attachments=[("資料.zip", zip_of({"zeros.txt": b"0" * (50 * 1024 * 1024)}), "application/zip")])
    held = send_raw(relay, [REGISTERED], raw)
    send_raw(relay, [f"colleague@{INTERNAL}"], b"Subject: meanwhile\r\n\r\nhello\r\n")
    upstream.wait_to(f"colleague@{INTERNAL}", timeout=5)
    assert relay.wait_decided(held) == "awaiting_approval"
    assert "unscannable_content" in relay.findings(held)


def test_scan_prints_classification_findings_and_decision_without_sending(make_relay, upstream, tmp_path):
    relay = make_relay()
    eml = tmp_path / "careplan.eml"
    eml.write_bytes(message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(),
                                          "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]))
    out = relay.cli("scan", str(eml)).stdout
    assert "内容の分類: 要配慮個人情報" in out and "ケアプラン.xlsx: 要配慮個人情報" in out
    assert "[要配慮個人情報]" in out and "判定: 保留中 (送信待ち)" in out   # a registered partner: the hold
    stranger = relay.cli("scan", str(eml), "--rcpt", "someone@unknown-partner.example.com").stdout
    assert stranger.index("[アドレス帳に無い宛先]") < stranger.index("[社外の宛先]")   # what drove it first
    assert "判定: 承認待ち" in stranger
    assert "0123456789" not in out and upstream.messages == []


def _zip_members(received, password: str) -> dict[str, bytes]:
    import pyzipper

    [archive] = [p for p in received.message.iter_attachments() if p.get_content_type() == "application/zip"]
    assert archive.get_filename() == "添付ファイル（暗号化）.zip"
    with pyzipper.AESZipFile(io.BytesIO(archive.get_payload(decode=True))) as zf:
        zf.setpassword(password.encode())
        assert all(info.flag_bits & 0x800 for info in zf.infolist())          # UTF-8 file names
        assert all(info.flag_bits & 0x1 and info.wz_aes_strength == 3 for info in zf.infolist())  # AES-256
        return {name: zf.read(name) for name in zf.namelist()}



def test_care_plan_to_a_partner_with_an_agreed_key_arrives_as_an_aes_zip(relay, upstream):
    plan = care_plan_xlsx()
    queue_id = send_raw(relay, [REGISTERED], message(attachments=[("ケアプラン.xlsx", plan, XLSX)]))
    assert relay.wait_decided(queue_id) == "delayed"   # sensitive data to a registered partner: the hold
    relay.cli("queue", "release", queue_id)
    [got] = upstream.wait_to(REGISTERED)
    assert _zip_members(got, "minato-agreed-key-2026") == {"ケアプラン.xlsx": plan}   # the original bytes
    body = got.message.get_body(("plain",)).get_content()
    assert "資料を送ります。" in body and "0x80004005" in body and "7-Zip" in body
    assert not any(p.get_filename() == "ケアプラン.xlsx" for p in got.message.iter_attachments())
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered")   # its notices were queued before
    assert not any("パスワード" in str(m.message["Subject"]) for m in upstream.to(STAFF))   # agreed key: none
    assert "agreed key" in relay.cli("log", "--queue-id", queue_id).stdout


def test_without_an_agreed_key_only_the_sender_receives_the_password(relay, upstream):
    partner = "care@hikari-houkan.example.com"
    plan = care_plan_xlsx()
    queue_id = send_raw(relay, [partner], message(attachments=[("ケアプラン.xlsx", plan, XLSX)]))
    [notice] = upstream.wait_to(STAFF)
    text = notice.message.get_body(("plain",)).get_content()
    password = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "パスワード:" in line)
    assert len(password) == 16 and "PPAP" in text and partner in text
    assert relay.wait_decided(queue_id) == "delayed"
    relay.cli("queue", "release", queue_id)
    [got] = upstream.wait_to(partner)
    assert _zip_members(got, password) == {"ケアプラン.xlsx": plan}
    everything_the_partner_got = b"".join(m.content for m in upstream.to(partner))
    assert password.encode() not in everything_the_partner_got
    assert partner not in notice.rcpt_tos
    assert password not in relay.cli("log").stdout + relay.log()   # never logged


def test_signed_mail_with_personal_data_is_held_unaltered(relay, upstream):
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    inner = MIMEMultipart()
    inner.attach(MIMEText("ケアプランを送ります。", "plain", "utf-8"))
    inner.attach(MIMEApplication(care_plan_xlsx(), Name="careplan.xlsx"))
    inner.get_payload()[1]["Content-Disposition"] = 'attachment; filename="careplan.xlsx"'
    signed = MIMEMultipart("signed", protocol="application/pkcs7-signature", micalg="sha-256")
    signed.attach(inner)
    signed.attach(MIMEApplication(b"not a real signature", "pkcs7-signature", Name="smime.p7s"))
    signed["Subject"] = "signed care plan"
    signed["To"] = REGISTERED
    raw = signed.as_bytes(policy=SMTP)
    queue_id = send_raw(relay, [REGISTERED], raw)
    assert relay.wait_decided(queue_id) == "awaiting_approval"
    assert "signed_not_encryptable" in relay.findings(queue_id)
    relay.cli("queue", "approve", queue_id, "--comment", "確認済み")
    [got] = upstream.wait_to(REGISTERED)
    assert got.content.endswith(raw)                 # byte for byte: the signature still holds


async def test_a_scan_past_the_time_limit_is_unscannable_and_the_pool_recovers():
    from mailguard.check.content.pool import ContentInspector

    inspector = ContentInspector(Limits(seconds=0.5), workers=1)   # no scan in the message: no OCR time
    try:
        assert (await inspector.scan(message("山田 太郎 様"))).level == "personal"   # warm
        record = "訪問。山田 太郎 様、要介護3。服薬確認。入浴介助。ご家族に連絡 090-1234-5678。\n"
        huge = message(record * 40000)                                   # several seconds of work
        report = await inspector.scan(huge, "Q-slow")
        assert [u.reason for u in report.unscannable] == ["検査が制限時間 (0.5 秒) 内に終わりませんでした"]
        assert (await inspector.scan(message("高橋 次郎 様 糖尿病"))).level == "sensitive"   # a new worker
    finally:
        inspector.close()


def test_roster_names_and_numbers_are_found_exactly(tmp_path):
    from mailguard import policy as policy_mod

    (tmp_path / "roster.csv").write_bytes("氏名,被保険者番号\r\n小林 ハル,0987654321\r\n".encode("cp932"))
    problems: list[str] = []
    roster = policy_mod.load_roster(tmp_path / "roster.csv", problems)
    assert problems == [] and roster.names == ("小林ハル",)
    # Sudachi alone would not take a lone given name in katakana for a person: the roster does.
    report = scan(message("小林　ハル の件でご相談です。"), roster=(roster.names, roster.insured_numbers))
    assert report.level == "personal" and "roster" in kinds(report)
    report = scan(message("番号 0987654321 の方は転倒がありました。"), roster=(roster.names, roster.insured_numbers))
    assert report.level == "sensitive"


def test_a_broken_roster_is_reported_with_file_and_line(tmp_path):
    from mailguard import policy as policy_mod

    (tmp_path / "roster.csv").write_text("氏名,被保険者番号\n山田 花子,12345\n", encoding="utf-8")
    problems: list[str] = []
    policy_mod.load_roster(tmp_path / "roster.csv", problems)
    assert problems == [f"{tmp_path / 'roster.csv'}:2: 被保険者番号: not 10 digits"]


def test_a_forwarded_message_is_its_own_part_and_counts_toward_the_depth():
    from email.message import EmailMessage

    inner = message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)])
    outer = EmailMessage()
    outer["Subject"] = "Fwd: 送付"
    outer.set_content("転送します。")
    from email import message_from_bytes
    from email.policy import default

    outer.add_attachment(message_from_bytes(inner, policy=default), filename="送付.eml")
    report = scan(outer.as_bytes(policy=SMTP))
    assert report.attachments == (("2", "送付.eml"),)
    assert report.level_of("2") == "sensitive" and report.level_of("本文") == "none"


def test_encryption_refuses_to_send_in_the_clear_what_it_cannot_find():
    from mailguard.check.encrypt import encrypt_attachments

    raw = message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)])
    with pytest.raises(ValueError, match="not found"):
        encrypt_attachments(raw, ["9"], "password-123", "a.zip", how="")


def test_a_forwarded_message_with_personal_data_is_encrypted_whole():
    from email import message_from_bytes
    from email.message import EmailMessage
    from email.policy import default

    import pyzipper

    from mailguard.check.encrypt import encrypt_attachments

    plan = care_plan_xlsx()
    outer = EmailMessage()
    outer["Subject"] = "Fwd: 送付"
    outer.set_content("転送します。")
    outer.add_attachment(message_from_bytes(message(attachments=[("ケアプラン.xlsx", plan, XLSX)]),
                                            policy=default), filename="送付.eml")
    out = message_from_bytes(encrypt_attachments(outer.as_bytes(policy=SMTP), ["2"], "password-123",
                                                 "a.zip", how="")[0], policy=default)
    [archive] = list(out.iter_attachments())
    with pyzipper.AESZipFile(io.BytesIO(archive.get_payload(decode=True))) as zf:
        zf.setpassword(b"password-123")
        inner = message_from_bytes(zf.read("送付.eml"), policy=default)
    [xlsx] = list(inner.iter_attachments())
    assert xlsx.get_filename() == "ケアプラン.xlsx" and xlsx.get_payload(decode=True) == plan


@pytest.mark.parametrize("case", ["single-part", "alternative-body", "unknown-charset-body"])
def test_encryption_keeps_a_container_for_the_zip_and_never_rewrites_an_unreadable_body(case):
    """The same part numbering as inspection, whatever the message's shape."""
    import pyzipper
    from email import message_from_bytes
    from mailguard.check.encrypt import encrypt_attachments

    csv = base64_lines(f"氏名,個人番号\r\n山田 太郎,{VALID_MY_NUMBER}\r\n".encode())
    head = "From: a@x\r\nTo: b@y\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
    if case == "single-part":     # a script or a printer sends only the file
        raw, path = (head + "Content-Type: text/csv\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n" + csv), "1"
    else:
        charset = "x-unknown" if case == "unknown-charset-body" else "utf-8"
        raw = (head + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
               f"--b\r\nContent-Type: text/plain; charset={charset}\r\n\r\n本文\r\n"
               "--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n"
               "Content-Transfer-Encoding: base64\r\n\r\n" + csv + "--b--\r\n")
        path = "2"
    out, names = encrypt_attachments(raw.encode(), [path], "password-123", "a.zip", how="x")
    msg = message_from_bytes(out)
    assert msg.get_content_type() == "multipart/mixed" and names == ("a.csv",)
    assert VALID_MY_NUMBER.encode() not in out
    [archive] = [p for p in msg.walk() if p.get_content_type() == "application/zip"]
    with pyzipper.AESZipFile(io.BytesIO(archive.get_payload(decode=True))) as zf:
        zf.setpassword(b"password-123")
        assert VALID_MY_NUMBER.encode() in zf.read("a.csv")
    notes = [p.get_payload(decode=True).decode() for p in msg.walk()
             if p.get_content_type() == "text/plain" and b"mailguard" in (p.get_payload(decode=True) or b"")]
    assert notes and "7-Zip" in notes[0]
    if case == "unknown-charset-body":
        assert b"charset=x-unknown" in out            # left exactly as it came; the note is its own part


def base64_lines(data: bytes) -> str:
    import base64

    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def test_a_cp932_csv_labelled_latin1_is_still_read_as_japanese():
    """latin-1 "decodes" any bytes: a mislabelled CP932 file must not hide what it holds."""
    csv = "氏名,生年月日,要介護度,病名\r\n山田 太郎,昭和12年3月4日生まれ,要介護3,認知症\r\n".encode("cp932")
    raw = ("From: a@x\r\nTo: b@y\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n'
           "--b\r\nContent-Type: text/csv; charset=iso-8859-1\r\nContent-Disposition: attachment; filename=a.csv\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(csv) + "--b--\r\n").encode()
    assert scan(raw).level_of("2") == "sensitive"


def _docx_with(embedded: dict[str, bytes]) -> bytes:
    """A letter in Word with files embedded under word/embeddings/ (as Word stores OLE objects)."""
    import docx

    document = docx.Document()
    document.add_paragraph("別添のとおりです。")
    plain = io.BytesIO()
    document.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for name, data in embedded.items():
            dst.writestr(f"word/embeddings/{name}", data)
    return out.getvalue()


def test_a_workbook_embedded_in_a_word_file_is_read_and_an_ole_object_is_unscannable():
    from documents import DOCX

    report = scan(message(attachments=[("送付状.docx", _docx_with({"Microsoft_Excel_Worksheet.xlsx": care_plan_xlsx()}),
                                        DOCX)]))
    assert report.level_of("2") == "sensitive"                  # the care plan inside the letter
    assert any("埋め込み Microsoft_Excel_Worksheet.xlsx" in place for p in report.parts for place in p.places)
    ole = scan(message(attachments=[("送付状.docx", _docx_with({"oleObject1.bin": b"\xd0\xcf\x11\xe0" + b"\0" * 600}),
                                     DOCX)]))
    assert [u.where for u in ole.unscannable] == ["添付 送付状.docx › 埋め込み oleObject1.bin"]


def test_encryption_leaves_no_empty_container_and_never_relabels_unlabelled_iso_2022_jp():
    from email import message_from_bytes
    from mailguard.check.encrypt import encrypt_attachments

    body = "お世話になっております。".encode("iso2022_jp")          # no charset parameter: 7-bit ISO-2022-JP
    csv = base64_lines(f"氏名,個人番号\r\n山田 太郎,{VALID_MY_NUMBER}\r\n".encode())
    raw = ("From: a@x\r\nTo: b@y\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
           "--o\r\nContent-Type: text/plain\r\n\r\n").encode() + body + (
           "\r\n--o\r\nContent-Type: multipart/mixed; boundary=\"i\"\r\n\r\n"
           "--i\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=a.csv\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n" + csv + "--i--\r\n--o--\r\n").encode()
    out, _ = encrypt_attachments(raw, ["2.1"], "password-123", "a.zip", how="x")
    msg = message_from_bytes(out)
    assert not [p for p in msg.walk() if p.is_multipart() and not p.get_payload()]   # the emptied one is gone
    assert body in out                                                   # the body, byte for byte
    boundaries = [p.get_boundary() for p in msg.walk() if p.is_multipart()]
    assert all(len(b) <= 70 for b in boundaries)


def test_a_forwarded_message_sent_in_base64_is_read():
    import base64

    inner = (f"From: x@y\r\nSubject: 紹介\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             f"個人番号 {VALID_MY_NUMBER}\r\n").encode()
    raw = (b'From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: message/rfc822\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(inner).replace(b"\n", b"\r\n") + b"--b--\r\n")
    assert scan(raw).level_of("2") == "sensitive"
