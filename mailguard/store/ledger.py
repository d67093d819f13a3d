"""ledger: the provision record (第三者提供記録) of every delivery of personal data to a third party.

個人情報保護法 第29条 and 施行規則 第19〜21条 (PPC guideline 確認・記録義務編): per provision,
the date, the recipient (organisation, address or FAX number), the person the data is about
(本人), the data items, kept 3 years (1 year where a contract stands in for the record).

- ``provision_facts`` (one row per message, written with its verdict): the level, the items and
  the persons found (real names and insured numbers). This table is the only place 本人 data is
  kept; it is read by the admin-only export, never by the operational log or the staff pages.
- ``ledger`` (one row per external recipient a message with personal data was delivered to,
  written in the delivery's own transaction): when, to whom, the organisation and legal basis
  from the address book (entrustment, law and joint use marked as not requiring a record: 第27条
  第1項・第5項, kept all the same), the protection used (link, zip, fax, none), and the send-log
  entry it belongs to. Rows are never updated (a trigger refuses it).
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from typing import Any

from ..model import Provision

SCHEMA = """
CREATE TABLE IF NOT EXISTS provision_facts (
    queue_id  TEXT PRIMARY KEY,
    level     TEXT NOT NULL,
    items     TEXT NOT NULL,
    persons   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              REAL NOT NULL,
    queue_id        TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    organisation    TEXT,
    basis           TEXT,
    record_required INTEGER NOT NULL,
    protection      TEXT NOT NULL,
    level           TEXT NOT NULL,
    items           TEXT NOT NULL,
    log_seq         INTEGER
);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at);
CREATE INDEX IF NOT EXISTS ledger_queue_id ON ledger(queue_id);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the provision ledger is append-only'); END;
"""
NOT_REQUIRED = ("entrustment", "law", "joint_use")   # 第27条第1項 (法令), 第5項 (委託・共同利用)
BASIS_LABELS = {"consent": "本人の同意", "contract": "契約 (記録の代替)", "entrustment": "委託",
                "law": "法令に基づく", "joint_use": "共同利用", None: "未設定"}
PROTECTION_LABELS = {"link": "ダウンロードリンク", "zip": "暗号化 zip", "fax": "FAX (番号を照合)", "none": "なし"}


def write_facts(conn: sqlite3.Connection, queue_id: str, provision: Provision) -> None:
    conn.execute("INSERT INTO provision_facts (queue_id, level, items, persons) VALUES (?,?,?,?) ON CONFLICT (queue_id)"
                 " DO UPDATE SET level = excluded.level, items = excluded.items, persons = excluded.persons",
                 (queue_id, provision.level, json.dumps(list(provision.items), ensure_ascii=False),
                  json.dumps(list(provision.persons), ensure_ascii=False)))


def record(conn: sqlite3.Connection, queue_id: str, at: float, delivered: dict[str, tuple[str | None, str | None]],
           log_seq: int | None) -> int:
    """One ledger row per delivered external recipient (``delivered``: address → (organisation,
    basis)) of a message with personal data. Returns the rows written."""
    facts = conn.execute("SELECT level, items FROM provision_facts WHERE queue_id = ?", (queue_id,)).fetchone()
    if facts is None or not delivered:
        return 0
    message = conn.execute("SELECT message_id, mail_from FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
    written = 0
    for address, (organisation, basis) in delivered.items():
        row = conn.execute("SELECT protection FROM recipients WHERE queue_id = ? AND address = ?",
                           (queue_id, address)).fetchone()
        protection = row[0] if row and row[0] else "none"
        if protection == "internal":
            continue
        conn.execute(
            "INSERT INTO ledger (at, queue_id, message_id, sender, recipient, organisation, basis, record_required,"
            " protection, level, items, log_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (at, queue_id, message[0], message[1], address, organisation, basis, basis not in NOT_REQUIRED,
             protection, facts[0], facts[1], log_seq))
        written += 1
    return written


class LedgerStore:
    """The admin-only reading side; mixed into ``Store``."""

    def ledger(self, *, since: float | None = None, until: float | None = None,
               person: str | None = None, queue_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows with their 本人, oldest first; ``person``: only rows about that person
        (a disclosure request, 第33条第5項), matched without spaces."""
        where, args = [], []
        if queue_id is not None:
            where.append("l.queue_id = ?")
            args.append(queue_id)
        if since is not None:
            where.append("l.at >= ?")
            args.append(since)
        if until is not None:
            where.append("l.at < ?")
            args.append(until)
        rows = self._read("SELECT l.*, f.persons FROM ledger l LEFT JOIN provision_facts f USING (queue_id)"
                          + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY l.seq", args)
        out = []
        wanted = "".join(unicodedata.normalize("NFKC", person or "").split())   # as detection stored it
        for r in rows:
            persons = json.loads(r["persons"] or "[]")
            if wanted and not any(wanted == p["value"] for p in persons):
                continue
            out.append({**{k: r[k] for k in r.keys() if k != "persons"}, "items": json.loads(r["items"]),
                        "persons": persons, "record_required": bool(r["record_required"])})
        return out


HEADER = ("提供日時", "受付番号", "Message-ID", "送信者", "提供先の組織", "提供先 (アドレス・FAX)", "本人",
          "個人データの項目", "要配慮個人情報", "法的根拠", "記録の要否", "保護の方法", "送信ログ番号")


def table(rows: list[dict[str, Any]], zone) -> list[list[str]]:
    """The ledger as people read it (CSV and the console): Japanese columns, one row per provision."""
    from datetime import datetime

    return [[datetime.fromtimestamp(r["at"], zone).strftime("%Y-%m-%d %H:%M:%S"), r["queue_id"], r["message_id"],
             r["sender"], r["organisation"] or "", r["recipient"],
             "、".join(p["value"] + (" (名簿)" if p["kind"] == "roster" else "") for p in r["persons"]),
             "、".join(r["items"]), "あり" if r["level"] == "sensitive" else "なし",
             BASIS_LABELS.get(r["basis"], r["basis"] or "未設定"),
             "要" if r["record_required"] else "不要 (第27条第1項・第5項)",
             PROTECTION_LABELS.get(r["protection"], r["protection"]), str(r["log_seq"] or "")]
            for r in rows]
