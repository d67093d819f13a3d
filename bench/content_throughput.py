"""Content inspection throughput: extraction + detection over a mixed set of care-office mail.

    python bench/content_throughput.py [MESSAGES]        (default 200)

Generates the documents (care plan XLSX, assessment DOCX, CID-font referral PDF,
CP932 CSV, ISO-2022-JP care-record bodies, a meeting agenda) and runs, in this one
process and on the same messages, three passes side by side:

    parse     stdlib email parse and decode of every part (the floor)
    extract   mailguard.check.content.extract: text of every part and attachment
    scan      extract + every detector + classification (what the relay runs per message)

Prints MB/s (of raw message bytes), per-message latency (p50, p95, max) and the
peak resident memory of the process. Runs on one core; the relay runs
MAILGUARD_INSPECT_WORKERS of these in parallel.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from documents import (DOCX, XLSX, assessment_docx, care_plan_xlsx, cp932_csv,  # noqa: E402
                       message, referral_pdf, VALID_MY_NUMBER)

from mailguard.check.content.report import scan  # noqa: E402
from mailguard.check.content.extract import extract_message  # noqa: E402


def corpus(count: int) -> list[bytes]:
    record = ("{n}日 10:00 訪問。山田 太郎 様、血圧 142/88。服薬確認 (ドネペジル)。"
              "入浴介助、転倒なし。要介護3。ご家族 (長女) に連絡 090-1234-5678。\n")
    kinds = [
        lambda: message(attachments=[("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]),
        lambda: message(attachments=[("アセスメント.docx", assessment_docx(), DOCX)]),
        lambda: message(attachments=[("紹介状.pdf", referral_pdf(), "application/pdf")]),
        lambda: message(attachments=[("名簿.csv", cp932_csv(
            [["氏名", "個人番号"]] + [[f"利用者{i}", VALID_MY_NUMBER] for i in range(200)]), "text/csv")]),
        lambda: message("".join(record.format(n=d) for d in range(1, 31)), charset="iso-2022-jp"),
        lambda: message("職員会議の議題\n1. 勤務表\n2. 認知症ケア研修の報告\n" * 20),
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


def run(name: str, fn, messages: list[bytes]) -> str:
    latencies = []
    started = time.perf_counter()
    for raw in messages:
        t = time.perf_counter()
        fn(raw)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    mb = sum(map(len, messages)) / 1e6
    q = statistics.quantiles(latencies, n=20)
    return (f"{name:<8} {mb / elapsed:>8.2f} MB/s {len(messages) / elapsed:>8.1f} msg/s "
            f"{q[9] * 1000:>8.1f} {q[18] * 1000:>8.1f} {max(latencies) * 1000:>8.1f} ms")


def parse_only(raw: bytes) -> None:
    for part in message_from_bytes(raw, policy=default).walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    messages = corpus(count)
    scan(messages[0])   # load dictionaries outside the measurement
    print(f"{count} messages, {sum(map(len, messages)) / 1e6:.1f} MB, mixed care-office mail, one core")
    print(f"{'pass':<8} {'throughput':>13} {'rate':>14} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, fn in (("parse", parse_only), ("extract", extract_message), ("scan", scan)):
        print(run(name, fn, messages))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
