"""Detection quality: how well the product finds personal data in what a care office sends.

    python bench/detection_quality.py [--tier easy|hard|all] [--out DIR] [--quick]

Builds labelled mails in two tiers (``--tier``, default all). Easy: 68 (``--quick`` 20) from
bench/corpus.py (care plans, referrals, resident lists, My Number lists, care records … as positives;
schedules, 和暦 holiday lists, training notices, flyers, invoices, menus, a blank scan as negatives).
Hard: 46 (``--quick`` 17) from bench/corpus_hard.py, as offices really write them: names without 様 or
a column, in katakana or half-width katakana, given names that are words; お名前/利用者氏名/対象者 columns;
昭和十五年四月三日生, S15.4.3生, 満85歳; name and illness paragraphs apart; a 縦書き referral; facts only in
checkboxes or field names; noisy 150 dpi scans, noisy FAXes, a cover sheet before the data on page 3,
photos under uneven light; and negatives that look personal (price lists by 要介護度, 誕生日会, 敬老の日
and 100歳, anonymised case studies, blank forms and FAX cover sheets, "要介護3 12名"). A staff 勤務表 is
labelled personal. Labels come from the contents, not the detectors. The renderers (bodies signed by
the sender; DOCX, XLSX, CP932 CSV, text, AcroForm and 縦書き PDF, scans, FAX TIFF, photos) are in render.py.

Each mail goes through the product's own ``report.scan``, in this process, one at a time; OCR seconds
per page are taken from that same scan (``extract_message`` is wrapped, nothing is read twice).
Prints: 1. per tier and format: positives, negatives, recall (found at least personal), sensitive
recall, false-positive rate (negatives found personal or sensitive), unscannable, seconds per mail,
then recall and FP rate side by side per tier; 2. per detector kind: expected, found, recall (all,
easy, hard), false positives on negatives; 3. OCR seconds per page; 4. every miss, false positive,
missed kind, unscannable item and crash, by document id (H… = hard tier).
``--out DIR`` also writes each mail (.eml), its attachment or body, labels.json and results.json.
Measured here (2 cores): all 130 s, of which OCR 122 s (49 pages, 2.5 s each: easy 25, hard 24); easy alone
was 75 s (OCR 70 s), easy ``--quick`` 27 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import corpus as C  # noqa: E402
import corpus_hard as H  # noqa: E402
import render as R  # noqa: E402

import mailguard.check.content.report as report_module  # noqa: E402
from mailguard.check.content.report import LEVELS, scan  # noqa: E402

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
    tier: str                      # easy / hard
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


TIERS = {"easy": C, "hard": H}
FORMATS = sorted(dict.fromkeys([*C.PLAN, *H.PLAN]), key=lambda f: [*C.PLAN, "scan-pdf-150"].index(f) if f in C.PLAN
                 else list(C.PLAN).index("scan-pdf-200") - .5)   # scan-pdf-150 (hard only) before scan-pdf-200
OCR_FORMATS = [f for f in FORMATS if f in C.OCR_FORMATS + H.OCR_FORMATS]


def build(quick: bool, tiers: list[str]) -> list[Doc]:
    docs = []
    for tier in tiers:
        for doc_id, fmt, option, content, rng in TIERS[tier].plan(quick):
            raw, filename, payload = R.render(fmt, content, rng, option)
            docs.append(Doc(doc_id, tier, fmt, content.what, content.level, frozenset(content.kinds), raw, filename,
                            payload))
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


def found_rate(group: list[Doc]) -> str:   # positives: recall; negatives: FP rate
    return ratio(sum(d.got in LEVELS[1:] for d in group), len(group))


def level_tables(docs: list[Doc]) -> None:
    print("1. Per tier and format: recall = positives found personal or sensitive; sensitive recall = expected "
          "sensitive found\n   sensitive; FP rate = negatives found personal or sensitive; unscannable = documents "
          "(items)\n")
    print(f"{'tier':<6}{'format':<14}{'pos':>4}{'neg':>4}  {'recall':<12}{'sens. recall':<13}{'FP rate':<12}"
          f"{'unscannable':<12}{'crash':>5}{'s/doc':>7}")
    tiers = list(dict.fromkeys(d.tier for d in docs))
    rows = [(t, f) for t in tiers for f in [*FORMATS, "ALL"]] + [("all", "ALL")] * (len(tiers) > 1)
    for tier, fmt in rows:
        group = [d for d in docs if tier in (d.tier, "all") and fmt in (d.fmt, "ALL")]
        if not group:
            continue
        pos, neg = [d for d in group if d.positive], [d for d in group if not d.positive]
        sens = [d for d in pos if d.level == "sensitive"]
        unscannable = [d for d in group if d.unscannable]
        print(f"{tier:<6}{fmt:<14}{len(pos):>4}{len(neg):>4}  {found_rate(pos):<12}"
              f"{ratio(sum(d.got == 'sensitive' for d in sens), len(sens)):<13}"
              f"{found_rate(neg):<12}{f'{len(unscannable)} ({sum(len(d.unscannable) for d in group)})':<12}"
              f"{sum(d.got == 'crash' for d in group):>5}{statistics.mean(d.seconds for d in group):>7.2f}")
        if fmt == "ALL":
            print()
    if len(tiers) > 1:
        print("   Side by side: recall and FP rate per format, easy | hard\n")
        print(f"{'format':<14}{'recall easy':<13}{'recall hard':<13}{'FP easy':<12}{'FP hard':<12}")
        for fmt in [*FORMATS, "ALL"]:
            cell = [[d for d in docs if d.tier == t and fmt in (d.fmt, "ALL") and d.positive == p]
                    for p in (True, False) for t in ("easy", "hard")]
            print(f"{fmt:<14}{found_rate(cell[0]):<13}{found_rate(cell[1]):<13}{found_rate(cell[2]):<12}"
                  f"{found_rate(cell[3]):<12}")


def kind_table(docs: list[Doc]) -> None:
    print("\n2. Per detector kind: expected = positive documents that hold it; found = of those, where it was "
          "found;\n   FP = negative documents where it was found, whatever their level (detections)\n")
    kinds = sorted({k for d in docs for k in d.kinds} | {k for d in docs if not d.positive for k in d.found})
    print(f"{'kind':<26}{'expected':>9}{'found':>7}  {'recall':<8}{'easy':<11}{'hard':<11}{'FP docs':>8}{'(dets)':>8}"
          f"{'FP hard':>9}")
    for kind in kinds:
        expected = [d for d in docs if kind in d.kinds]
        found = sum(kind in d.found for d in expected)
        negatives = [d for d in docs if not d.positive and kind in d.found]
        recall = f"{100 * found / len(expected):3.0f}%" if expected else "-"
        tiers = [[d for d in expected if d.tier == t] for t in ("easy", "hard")]
        split = [ratio(sum(kind in d.found for d in group), len(group)) for group in tiers]
        print(f"{kind:<26}{len(expected):>9}{found:>7}  {recall:<8}{split[0]:<11}{split[1]:<11}{len(negatives):>8}"
              f"{'(' + str(sum(d.found[kind] for d in negatives)) + ')':>8}{sum(d.tier == 'hard' for d in negatives):>9}")


def ocr_table(docs: list[Doc]) -> None:
    print("\n3. OCR seconds per page (recorded inside the scan)\n")
    print(f"{'tier':<6}{'format':<14}{'pages':>6}{'mean':>7}{'median':>8}{'max':>7}{'total':>8}")
    for tier, fmt in [(t, f) for t in ("easy", "hard") for f in OCR_FORMATS] + [("all", "ALL")]:
        pages = [s for d in docs if tier in (d.tier, "all") and fmt in (d.fmt, "ALL") for s in d.ocr]
        if pages:
            print(f"{tier:<6}{fmt:<14}{len(pages):>6}{statistics.mean(pages):>7.2f}{statistics.median(pages):>8.2f}"
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
            print(f"  {d.id:<4} {d.fmt:<13} expected {d.level:<9} got {d.got:<9} {d.what}\n"
                  f"      missing: {', '.join(sorted(d.kinds - set(d.found))) or '-'}; found: {found(d)}")
    partial = [d for d in docs if d.positive and d not in misses and d.kinds - set(d.found)]
    print(f"Missed kinds on positives classified right: {len(partial)}")
    for d in partial:
        print(f"  {d.id:<4} {d.fmt:<13} {d.level:<9} {d.what}: missing {', '.join(sorted(d.kinds - set(d.found)))}")
    print(f"Unscannable items: {sum(len(d.unscannable) for d in docs)}")
    for d in docs:
        for where, reason in d.unscannable:
            print(f"  {d.id:<4} {d.fmt:<13} {d.what} ({d.level} expected, got {d.got}): {where}: {reason}")
    crashes = [d for d in docs if d.got == "crash"]
    print(f"Crashes: {len(crashes)}")
    for d in crashes:
        print(f"  {d.id:<4} {d.fmt:<13} {d.what}: {d.error}")


def write_out(docs: list[Doc], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    labels, results = [], []
    for d in docs:
        (out / f"{d.id}.eml").write_bytes(d.raw)
        (out / f"{d.id}_{d.filename}").write_bytes(d.payload)
        labels.append({"id": d.id, "tier": d.tier, "format": d.fmt, "what": d.what, "level": d.level, "kinds": sorted(d.kinds),
                       "eml": f"{d.id}.eml", "file": f"{d.id}_{d.filename}"})
        results.append({"id": d.id, "got": d.got, "found": dict(d.found), "unscannable": d.unscannable,
                        "ocr_seconds": d.ocr, "seconds": round(d.seconds, 3), "error": d.error})
    for name, data in (("labels.json", labels), ("results.json", results)):
        (out / name).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the documents, labels.json and results.json here")
    parser.add_argument("--quick", action="store_true", help="easy 20 documents instead of 68, hard 17 instead of 46")
    parser.add_argument("--tier", choices=("easy", "hard", "all"), default="all", help="which documents (default all)")
    args = parser.parse_args()
    started = time.perf_counter()
    tiers = list(TIERS) if args.tier == "all" else [args.tier]
    docs = build(args.quick, tiers)
    built = time.perf_counter() - started
    for i, doc in enumerate(docs, 1):
        run(doc)
        print(f"[{i}/{len(docs)}] {doc.id} {doc.fmt} {doc.what}: {doc.got} ({doc.seconds:.1f} s)", file=sys.stderr)
    counts = "; ".join(f"{t} {sum(d.tier == t for d in docs)} ({sum(d.tier == t and d.positive for d in docs)} positive, "
                       f"{sum(d.tier == t and not d.positive for d in docs)} negative)" for t in tiers)
    print(f"Detection quality: {len(docs)} documents — {counts}; {len({d.fmt for d in docs})} formats, seed {C.SEED}"
          f"{' (--quick)' if args.quick else ''}\n")
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
