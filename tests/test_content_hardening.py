"""Nothing gets past inspection unread, and nothing it reads takes the machine (issue 8).

Damaged charsets are read the way the data shows; zip members (and the members of
Office files) are inflated under our own caps, never trusting their declared size
or CRC; workers are bounded in memory and replaced; a message with 10,000
attachments neither stalls other SMTP sessions nor floods the findings.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import smtplib
import struct
import time
import zipfile
import zlib

import pytest

from conftest import INTERNAL, REGISTERED, STAFF, send_raw, wait_for
from documents import DOCX, VALID_MY_NUMBER, message
from mailguard.check.content.charsets import readings
from mailguard.check.content.detect import detect, my_number_check_digit
from mailguard.check.content.extract import Limits
from mailguard.check.content.report import MAX_FINDINGS, scan

GiB = 1 << 30
CSV_ROWS = f"氏名,個人番号,要介護度,病名\r\n山田 太郎,{VALID_MY_NUMBER},要介護3,糖尿病\r\n"


def kinds(report) -> set[str]:
    return {d.kind for part in report.parts for d in part.detections}


def my_numbers(count: int) -> list[str]:
    bodies = [f"{n:011d}" for n in range(10_000_000_001, 10_000_000_001 + count)]
    return [body + str(my_number_check_digit(body)) for body in bodies]


def stray_byte_csv() -> bytes:
    data = CSV_ROWS.encode("utf-8")
    cut = data.index(b"\r\n") + 2
    return data[:cut] + b"\xff" + data[cut:]


def lying_zip(name: str, data: bytes, declared: int) -> bytes:
    """A zip whose member declares ``declared`` bytes, with the CRC-32 of those bytes;
    it really inflates to all of ``data``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return forge(out.getvalue(), name, declared, zlib.crc32(data[:declared]))


def forge(archive: bytes, name: str, size: int, crc: int) -> bytes:
    """Change what member ``name`` declares, in its local header and in the central directory alike."""
    raw = bytearray(archive)
    encoded = name.encode()
    local = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name).header_offset
    central = raw.index(b"PK\x01\x02")
    while struct.unpack_from("<H", raw, central + 28)[0] != len(encoded) or \
            raw[central + 46: central + 46 + len(encoded)] != encoded:
        central = raw.index(b"PK\x01\x02", central + 4)
    for at, crc_at, size_at in ((local, 14, 22), (central, 16, 24)):   # APPNOTE.TXT 4.3.7, 4.3.12
        struct.pack_into("<L", raw, at + crc_at, crc)
        struct.pack_into("<L", raw, at + size_at, size)
    return bytes(raw)


def lying_roster_zip() -> bytes:
    """64 harmless bytes declared; 50 My Numbers behind them."""
    head = ("# 在庫一覧 (社内用) " + "-" * 64).encode()[:64]
    rows = "".join(f"個人番号,{n},利用者{i:02d},要介護3,糖尿病,訪問介護 週3回 入浴介助と服薬確認、夜間の見守り、体調変化なし\n"
                   for i, n in enumerate(my_numbers(50)))
    data = head + ("\n" + rows).encode()
    assert 7_000 < len(data) < 8_000
    return lying_zip("在庫一覧.csv", data, 64)


def multipart(*parts: tuple[str, bytes]) -> bytes:
    """A raw multipart/mixed message of (headers, base64 body) parts, byte for byte as given."""
    lines = [(f"From: {STAFF}\r\nTo: {REGISTERED}\r\nSubject: =?UTF-8?B?6YCB5LuY?=\r\nMIME-Version: 1.0\r\n"
              'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n')]
    for headers, body in parts:
        lines.append(f"--b0\r\n{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        lines.append(base64.encodebytes(body).decode().replace("\n", "\r\n"))
    lines.append("--b0--\r\n")
    return "".join(lines).encode()


def docx_bomb(inflated: int = 400 << 20) -> bytes:
    """A docx whose document.xml inflates to ``inflated`` bytes, written in chunks (the test stays light)."""
    import docx

    base = io.BytesIO()
    docx.Document().save(base)
    out = io.BytesIO()
    paragraph = ("<w:p><w:r><w:t>" + "訪問記録" * 50 + "</w:t></w:r></w:p>").encode()
    chunk = paragraph * ((1 << 20) // len(paragraph))
    with zipfile.ZipFile(base) as template, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in template.infolist():
            if info.filename != "word/document.xml":
                bomb.writestr(info.filename, template.read(info))
        with bomb.open("word/document.xml", "w", force_zip64=True) as xml:
            xml.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w='
                      b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>')
            for _ in range(inflated // len(chunk)):
                xml.write(chunk)
            xml.write(b"</w:body></w:document>")
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb_message() -> bytes:
    raw = message(attachments=[("議事録.docx", docx_bomb(), DOCX)])
    assert len(raw) < 3_000_000
    return raw


# -- charsets -------------------------------------------------------------------------------

def test_a_utf8_csv_with_one_stray_byte_is_read_as_utf8_and_is_sensitive():
    assert readings(stray_byte_csv())[0].startswith("氏名,個人番号")
    report = scan(message(attachments=[("利用者一覧.csv", stray_byte_csv(), "text/csv")]))
    assert report.level_of("2") == "sensitive"
    assert {"my_number", "care_level", "disease"} <= kinds(report)


def test_a_body_whose_last_utf8_character_is_cut_off_is_sensitive():
    body = f"お世話になります。山田 太郎 様の個人番号は {VALID_MY_NUMBER} です。要介護3、糖尿病です。".encode()
    raw = multipart(("Content-Type: text/plain; charset=utf-8", body[:-1]))
    report = scan(raw)
    assert report.level_of("本文") == "sensitive" and "my_number" in kinds(report)


def test_an_unknown_charset_name_falls_back_to_utf8():
    raw = multipart(('Content-Type: text/plain; charset="x-unknown"', CSV_ROWS.encode()))
    assert scan(raw).level_of("本文") == "sensitive"


@pytest.mark.parametrize("data, declared, expected", [
    (CSV_ROWS.encode("cp932"), None, "個人番号"),                 # Excel's CSV: CP932, nothing declared
    (CSV_ROWS.encode("iso2022_jp"), None, "個人番号"),            # 7-bit, would pass as ASCII
    (CSV_ROWS.encode("utf-8"), "iso-8859-1", "個人番号"),         # a lying single-byte label
    (CSV_ROWS.encode("cp932"), "shift_jis", "個人番号"),
])
def test_each_plausible_reading_is_offered(data, declared, expected):
    assert any(expected in text for text in readings(data, declared))


# -- zip members are inflated under our own caps ----------------------------------------------

def test_a_zip_member_that_inflates_past_its_declared_size_is_unscannable():
    archive = lying_roster_zip()
    assert len(zipfile.ZipFile(io.BytesIO(archive)).read("在庫一覧.csv")) == 64   # what zipfile alone sees
    report = scan(message(attachments=[("在庫.zip", archive, "application/zip")]))
    [item] = report.unscannable
    assert item.attachment == "2" and "宣言されたサイズ (64 バイト) を超えて" in item.reason
    assert "unscannable_content" in [f.code for f in report.findings()]


def test_a_zip_member_with_a_wrong_crc_or_corrupt_data_is_unscannable():
    data = ("\n".join(f"個人番号 {n}" for n in my_numbers(20))).encode()
    honest = lying_zip("a.txt", data, len(data))
    wrong_crc = forge(honest, "a.txt", len(data), zlib.crc32(data) ^ 1)
    report = scan(message(attachments=[("a.zip", wrong_crc, "application/zip")]))
    assert "チェックサム (CRC) が一致しません" in report.unscannable[0].reason
    start, packed = 30 + len("a.txt"), zipfile.ZipFile(io.BytesIO(honest)).getinfo("a.txt").compress_size
    corrupt = honest[:start + packed // 2] + b"\0" * (packed - packed // 2) + honest[start + packed:]
    report = scan(message(attachments=[("a.zip", corrupt, "application/zip")]))
    assert report.unscannable and report.unscannable[0].attachment == "2"


def test_an_office_file_whose_xml_inflates_to_400_mb_is_refused_without_inflating_it(bomb_message):
    started = time.monotonic()
    report = scan(bomb_message)
    assert time.monotonic() - started < 3
    [item] = report.unscannable
    assert item.attachment == "2" and "zip 爆弾" in item.reason


def test_an_office_file_whose_member_lies_about_its_size_is_unscannable():
    import docx

    document = docx.Document()
    document.add_paragraph("在庫の確認です。")
    for number in my_numbers(30):
        document.add_paragraph(f"個人番号 {number} 山田 太郎 様")
    out = io.BytesIO()
    document.save(out)
    xml = zipfile.ZipFile(io.BytesIO(out.getvalue())).read("word/document.xml")
    declared = len(xml) // 2
    raw = forge(out.getvalue(), "word/document.xml", declared, zlib.crc32(xml[:declared]))
    report = scan(message(attachments=[("在庫.docx", raw, DOCX)]))
    assert any("宣言されたサイズ" in u.reason for u in report.unscannable)


def docx_with_data_in_the_header() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("会議資料です。")
    document.sections[0].header.paragraphs[0].text = "利用者: 高橋 次郎 様 (昭和8年11月20日生) 糖尿病"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_with_data_in_a_table_and_the_notes() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "事例検討"
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "氏名", "高橋 次郎 様"
    table.cell(1, 0).text, table.cell(1, 1).text = "既往歴", "糖尿病"
    slide.notes_slide.notes_text_frame.text = "要介護3、服薬 メトホルミン"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


@pytest.mark.parametrize("name, build, ctype", [
    ("議事録.docx", docx_with_data_in_the_header, DOCX),
    ("事例.pptx", pptx_with_data_in_a_table_and_the_notes,
     "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
])
def test_office_text_outside_the_body_paragraphs_is_read(name, build, ctype):
    report = scan(message(attachments=[(name, build(), ctype)]))
    assert report.level_of("2") == "sensitive" and {"person_name", "disease"} <= kinds(report)


# -- many parts -------------------------------------------------------------------------------

def many_attachments(count: int, text: str = "memo {i}", ctype: str = "text/plain; charset=utf-8",
                     suffix: str = "txt") -> bytes:
    head = (f"From: {STAFF}\r\nTo: {REGISTERED}\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
            "--b0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n資料です。\r\n")
    parts = [f"--b0\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; "
             f'filename="memo{i:05d}.{suffix}"\r\n\r\n{text.format(i=i)}\r\n' for i in range(count)]
    return (head + "".join(parts) + "--b0--\r\n").encode()


def test_a_roster_of_thousands_is_inspected_in_linear_time():
    rows = "".join(f"山田 太郎,{n},要介護3,糖尿病,携帯 090-1234-{i:04d}\n" for i, n in enumerate(my_numbers(4000)))
    started = time.monotonic()
    found = detect("氏名,個人番号,要介護度,病名,電話\n" + rows)
    assert len([d for d in found if d.kind == "my_number"]) == 4000
    assert time.monotonic() - started < 6     # 16 s when overlaps were checked pairwise


def test_findings_beyond_the_cap_are_summed_up_in_one():
    raw = many_attachments(120, "山田 太郎 様 要介護3 糖尿病 {i}")
    report = scan(raw)
    assert len(report.attachments) == 120 and report.level_of("120") == "sensitive"   # paths 2 … 121
    findings = report.findings()
    assert len(findings) == MAX_FINDINGS
    assert findings[-1].subject == "ほか 71 件" and "71 件あります" in findings[-1].text


# -- bounded workers --------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return 0


async def test_a_worker_is_bounded_in_memory_and_replaced_after_hitting_the_limit(bomb_message):
    from mailguard.check.content.pool import ContentInspector

    # Limits loose enough to let the bomb through to python-docx: RLIMIT_AS is what stops it.
    loose = Limits(max_text_bytes=GiB, max_compression_ratio=1e6, seconds=60)
    inspector = ContentInspector(loose, workers=1, max_memory=GiB)
    try:
        assert (await inspector.scan(message("山田 太郎 様"))).level == "personal"
        [worker] = [p for p in children(os.getpid()) if status_kib(p, "VmSize") > 100_000]
        warmed = status_kib(worker, "VmSize"), status_kib(worker, "VmRSS")
        assert warmed[0] < 400 * 1024, warmed          # Sudachi loaded: most of the 1 GiB is left
        report = await inspector.scan(bomb_message, "Q-bomb")
        assert [u.reason for u in report.unscannable] == [
            "検査に使えるメモリの上限を超えました (展開すると非常に大きくなるファイルの可能性)"]
        assert (await inspector.scan(message("高橋 次郎 様 糖尿病"))).level == "sensitive"   # a new worker
        assert worker not in children(os.getpid())
        print(f"warmed worker VSZ {warmed[0] // 1024} MiB, RSS {warmed[1] // 1024} MiB")
    finally:
        inspector.close()


async def test_a_pool_whose_idle_worker_was_killed_is_rebuilt(caplog):
    from mailguard.check.content.pool import ContentInspector

    inspector = ContentInspector(Limits(), workers=1, max_memory=GiB)
    try:
        assert (await inspector.scan(message("山田 太郎 様"))).level == "personal"
        for pid in children(os.getpid()):
            if status_kib(pid, "VmSize") > 100_000:
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(status_kib(p, "VmSize") < 100_000 for p in children(os.getpid())), 5,
                 what="the worker gone")
        report = await inspector.scan(message("高橋 次郎 様 糖尿病"))   # pebble stops the pool: rebuilt
        assert report.level == "sensitive" and not report.unscannable
        assert "content scan pool broken" in caplog.text
    finally:
        inspector.close()


# -- over SMTP --------------------------------------------------------------------------------

def test_damaged_charsets_and_a_lying_zip_never_leave_unencrypted(relay, upstream):
    csv = send_raw(relay, [REGISTERED], message(attachments=[("利用者一覧.csv", stray_byte_csv(), "text/csv")]))
    archive = send_raw(relay, [REGISTERED], message(attachments=[("在庫.zip", lying_roster_zip(),
                                                                  "application/zip")]))
    body = f"山田 太郎 様の個人番号は {VALID_MY_NUMBER} です。要介護3、糖尿病です。".encode()
    cut = send_raw(relay, [REGISTERED], multipart(("Content-Type: text/plain; charset=utf-8", body[:-1])))
    assert relay.wait_decided(csv) == "delayed" and "sensitive_data" in relay.findings(csv)
    assert relay.wait_decided(cut) == "delayed" and "sensitive_data" in relay.findings(cut)
    assert relay.wait_decided(archive) == "awaiting_approval" and "unscannable_content" in relay.findings(archive)
    relay.act(csv, "release", actor="test:staff")
    [got] = upstream.wait_to(REGISTERED)
    names = [p.get_filename() for p in got.message.iter_attachments()]
    assert names == ["添付ファイル（暗号化）.zip"] and VALID_MY_NUMBER.encode() not in got.content


def relay_rss_kib(relay) -> int:
    return sum(status_kib(pid, "VmRSS") for pid in [relay.proc.pid, *children(relay.proc.pid)])


def test_a_docx_bomb_is_held_and_the_relay_stays_small(relay, upstream, bomb_message):
    peak = [relay_rss_kib(relay)]
    queue_id = send_raw(relay, [REGISTERED], bomb_message)

    def decided():
        peak.append(relay_rss_kib(relay))
        return relay.state(queue_id) not in ("", "incoming")

    wait_for(decided, 20, what="a decision")
    assert relay.state(queue_id) == "awaiting_approval" and "unscannable_content" in relay.findings(queue_id)
    workers_hwm = [status_kib(pid, "VmHWM") for pid in children(relay.proc.pid)]
    print(f"relay peak RSS {max(peak) // 1024} MiB; workers' peak RSS {[k // 1024 for k in workers_hwm]} MiB")
    assert max(peak) < 1536 * 1024 and max(workers_hwm) < GiB // 1024


def test_other_sessions_get_their_250_within_1s_while_10000_attachments_are_processed(relay, upstream):
    # Files of a type nobody can read: 10,000 unscannable parts (and nothing to encrypt).
    raw = many_attachments(10_000, "{i:05d} " + "0123456789abcdef" * 4, "application/octet-stream", "bin")
    assert 1_700_000 < len(raw) < 2_200_000
    big = send_raw(relay, [REGISTERED], raw)
    sent = time.monotonic()
    latencies = []
    deadline = time.monotonic() + 60
    while (relay.state(big) == "incoming" or len(latencies) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)   # pace the probes (about ten sessions a second), not a synchronisation
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.ehlo("other.test")
            client.mail(STAFF)
            client.rcpt(f"colleague@{INTERNAL}")
            code, _ = client.data(b"Subject: meanwhile\r\n\r\nhello\r\n")
        latencies.append(time.monotonic() - started)
        assert code == 250
    assert relay.wait_decided(big, timeout=60) == "awaiting_approval"
    findings = relay.message(big).findings
    assert sum(f.code == "unscannable_content" for f in findings) == MAX_FINDINGS
    print(f"{len(latencies)} sessions in {time.monotonic() - sent:.1f}s of processing; "
          f"worst 250 after {max(latencies):.3f}s")
    assert max(latencies) < 1.0
