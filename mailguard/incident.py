"""incident: a Japanese draft of the PPC leak report (漏えい等報告, 速報) for a misdelivered message.

Receives a queue id and the store; hands on the items of 個人情報保護法施行規則 第8条第1項
prefilled from the send log, the provision ledger and the link access record: 概要 (when sent,
when found, channel, recipients), 個人データの項目, 本人の数, whether 要配慮個人情報 (then a report
is required even for one person: 規則 第7条第1号), the protection (a link never opened means the
data may have been recovered before any third party saw it: PPC 通則編 3-5-1-1), and the
deadlines (速報 promptly, about 3–5 days; 確報 within 30 days: 規則 第8条第2項). What only a
person can know (原因, 二次被害, 本人への対応, 公表, 再発防止策) is marked 【要記入】.
Recording the draft is itself a send-log entry (``incident_recorded``).
Errors: LookupError (Japanese) for an unknown queue id.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from .model import STATE_LABELS
from .store import PROTECTION_LABELS, Store
from .store.sendlog import LogEntry

TO_FILL = "【要記入】"


def draft(store: Store, queue_id: str, zone, discovered: float | None = None, actor: str = "system") -> dict:
    """The draft as data (``text`` renders it). Records that it was drafted."""
    message = store.get(queue_id)
    if message is None:
        raise LookupError(f"{queue_id}: 見つかりません")
    discovered = discovered or time.time()
    rows = store.ledger(queue_id=queue_id)
    sent = [e.at for _, e in store.log(queue_id=queue_id) if e.event == "delivery"]
    found = {p["value"] for r in rows for p in r["persons"]}
    names = {v for v in found if not v.isdigit()}
    persons = names or found   # people by name; by their numbers only where no name was found
    sensitive = any(r["level"] == "sensitive" for r in rows)
    links = store.links(queue_id)
    accesses = [e for _, e in store.log(queue_id=queue_id) if e.event in ("link_viewed", "link_downloaded")]
    found = datetime.fromtimestamp(discovered, zone)
    report = {
        "queue_id": queue_id, "subject": message.subject, "state": STATE_LABELS[message.state],
        "sent_at": min(sent) if sent else None, "discovered_at": discovered,
        "channel": "FAX" if any(r["protection"] == "fax" for r in rows) else "電子メール",
        "recipients": [{"address": r["recipient"], "organisation": r["organisation"],
                        "protection": PROTECTION_LABELS.get(r["protection"], r["protection"])} for r in rows],
        "items": sorted({i for r in rows for i in r["items"]}),
        "persons": len(persons), "sensitive": sensitive,
        "report_required": sensitive,   # 規則 第7条第1号: 要配慮個人情報 — even one person
        "links": [{"recipient": link.recipient, "status": link.status, "first_download_at": link.first_download_at,
                   "downloads": link.downloads} for link in links],
        "accesses": [{"at": e.at, "event": e.event, "client": e.detail.get("client", ""),
                      "recipient": (e.recipients or ("",))[0]} for e in accesses],
        "deadline_prompt": (found + timedelta(days=5)).strftime("%Y-%m-%d"),
        "deadline_final": (found + timedelta(days=30)).strftime("%Y-%m-%d"),
    }
    with store._write() as conn:   # the draft itself is on the record
        store._append_log(conn, queue_id, LogEntry(event="incident_recorded", queue_id=queue_id, actor=actor,
                                                   detail={"discovered_at": discovered,
                                                           "report_required": report["report_required"]}))
    return report


def text(report: dict, zone) -> str:
    def when(ts):
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M") if ts else TO_FILL

    unopened = report["links"] and all(link["first_download_at"] is None for link in report["links"])
    lines = [
        "個人情報の漏えい等報告 (速報) の下書き — mailguard が送信ログから作成しました。",
        f"受付番号 {report['queue_id']}  件名「{report['subject']}」  状態: {report['state']}", "",
        "1. 概要",
        f"   発生 (送信) 日時: {when(report['sent_at'])}   発覚日時: {when(report['discovered_at'])}",
        f"   経路: {report['channel']} の誤送信",
        *[f"   送信先: {r['address']} ({r['organisation'] or '組織不明'}) — 保護: {r['protection']}"
          for r in report["recipients"]],
        "2. 漏えいした (おそれのある) 個人データの項目: " + ("、".join(report["items"]) or TO_FILL),
        f"3. 本人の数: {report['persons']} 人" + ("" if report["persons"] else f" {TO_FILL}"),
        "   要配慮個人情報: " + ("含む → 1 人でも個人情報保護委員会への報告と本人への通知が必要です (規則 第7条第1号)"
                          if report["sensitive"] else "含まない (報告の要否は件数などで判断してください)"),
        f"4. 原因: {TO_FILL}",
        "5. 二次被害又はそのおそれの有無及びその内容: " + (
            "リンクは一度も開かれていません。第三者が閲覧する前に回収できていれば、漏えいに当たらない可能性があります"
            " (通則編 3-5-1-1)。送信者はリンクを無効にしてください。" if unopened else TO_FILL),
        *[f"   アクセス記録: {when(a['at'])} {'ダウンロード' if a['event'] == 'link_downloaded' else '表示'}"
          f" 接続元 {a['client']} ({a['recipient']})" for a in report["accesses"]],
        f"6. 本人への対応の実施状況: {TO_FILL}",
        f"7. 公表の実施状況: {TO_FILL}",
        f"8. 再発防止のための措置: {TO_FILL}",
        f"9. その他参考となる事項: {TO_FILL}", "",
        f"期限の目安: 速報 {report['deadline_prompt']} ごろまで (発覚から 3〜5 日)、確報 {report['deadline_final']} まで"
        " (30 日以内、規則 第8条第2項)。",
    ]
    return "\n".join(lines) + "\n"
