"""cli_records: the CLI's commands for the records: download links and the provision ledger.

``mailguard link list|revoke`` (download links and their 開封 status), ``mailguard purge``
(content past MAILGUARD_CONTENT_RETENTION; ``--dry-run`` says what would go) and ``mailguard ledger
export`` (the 第三者提供記録 of 個人情報保護法 第29条: CSV with a UTF-8 BOM for Excel, or CP932,
or JSON lines; ``--person`` for a disclosure request, 第33条第5項). Read from the store the
server writes; a revocation is logged as ``cli:<unix user>``.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import sys
from datetime import datetime

from .settings import Settings
from .store import Store


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


class NoDatabase(Exception):
    """The CLI found no database where the settings point; ``str()`` says where it looked (Japanese)."""


def _store(settings: Settings) -> Store:
    """The relay's store. Never creates one: a command run from another folder, or with another
    configuration, must not make an empty database and report "0 通" from it."""
    if settings.database_url:   # PostgreSQL: the server's own tables, wherever the CLI runs
        probe = Store(settings.database_url, readonly=True)
        empty = probe.schema_version() == 0
        probe.close()
        if empty:
            raise NoDatabase(f"PostgreSQL のデータベース {settings.database_label} に mailguard の記録がありません。\n"
                             "MAILGUARD_DATABASE_URL がサーバー (mailguard serve) と同じか確かめてください"
                             " (最初の mailguard serve か mailguard db migrate が作ります)。")
        return Store(settings.database_url)
    try:
        found = settings.db_path.is_file()
    except PermissionError:
        raise NoDatabase(f"データディレクトリ {settings.data_dir} を読めません (権限がありません)。\n"
                         "リレーと同じユーザーで実行してください (例: sudo -u mailguard mailguard ...)。") from None
    if not found:
        from .settings import config_file

        source = config_file()
        raise NoDatabase(f"データベースがありません: {settings.db_path.resolve()}\n"
                         f"設定: {source.resolve() if source else '(設定ファイルなし、環境変数のみ)'}\n"
                         "サーバー (mailguard serve) と同じ設定を読んでいるか、MAILGUARD_CONFIG または"
                         " MAILGUARD_DATA_DIR を確かめてください。")
    return Store(settings.db_path)


def _when(ts: float | None, settings: Settings) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, settings.zone).strftime("%Y-%m-%d %H:%M:%S")


def _parse_time(text: str | None, settings: Settings) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=settings.zone).timestamp()
    except ValueError:
        raise SystemExit(f"日時の形式が不正です (bad date): {text!r}; 例 2026-11-21 または 2026-11-21T09:00")


def _print_link(link, settings: Settings, indent: str = "") -> None:
    opened = f"  初回 {_when(link.first_download_at, settings)}、{link.downloads} 回" if link.first_download_at else ""
    expiry = f"  期限 {_when(link.expires_at, settings)}" if link.expires_at and not link.closed else ""
    print(f"{indent}{link.queue_id}  {link.recipient:<40} {link.status}{opened}{expiry}"
          f"  (ファイル {len(link.files)} 件、パスコード誤り {link.failures} 回)")


def cmd_link_list(settings: Settings, args) -> int:
    links = _store(settings).links(args.queue_id)
    if not links:
        print("ダウンロードリンクはありません。")
    for link in links:
        _print_link(link, settings)
    return 0


def cmd_link_revoke(settings: Settings, args) -> int:
    store = _store(settings)
    if store.get(args.queue_id) is None:
        print(f"{args.queue_id}: 見つかりません (not found)", file=sys.stderr)
        return 1
    count = store.revoke_links(args.queue_id, _actor(), comment=args.comment)
    if not count:
        print(f"{args.queue_id}: 無効にできるリンクはありません (すでに無効か期限切れ、またはリンクで送っていません)",
              file=sys.stderr)
        return 1
    print(f"{args.queue_id}: ダウンロードリンク {count} 件を無効にし、ファイルを削除しました")
    return 0


def cmd_ledger_export(settings: Settings, args) -> int:
    from .store.ledger import HEADER, table

    rows = _store(settings).ledger(since=_parse_time(args.since, settings), until=_parse_time(args.until, settings),
                                   person=args.person)
    if args.format == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([HEADER, *table(rows, settings.zone)])
    data = ("\ufeff" + out.getvalue()).encode("utf-8") if args.encoding == "utf-8" else \
        out.getvalue().encode("cp932", "replace")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0




def cmd_purge(settings: Settings, args) -> int:
    """``mailguard purge [--dry-run]``: the content past MAILGUARD_CONTENT_RETENTION, now."""
    store = _store(settings)
    import time

    before = time.time() - settings.content_retention
    if args.dry_run:
        ids = store.purgeable(before, limit=100_000)
        print(f"本文を削除する対象: {len(ids)} 通 (終了から {settings.content_retention // 86400} 日以上)")
        for queue_id in ids:
            print(f"  {queue_id}")
        return 0
    total = 0
    while batch := store.purge_content(before, actor=_actor()):
        total += len(batch)
    print(f"{total} 通の本文を削除しました (送信ログと第三者提供記録は残ります)")
    return 0


def cmd_incident_report(settings: Settings, args) -> int:
    """``mailguard incident report QUEUE_ID``: a draft of the PPC 速報 for a misdelivered message."""
    from .incident import draft, text

    try:
        report = draft(_store(settings), args.queue_id, settings.zone, _parse_time(args.discovered, settings),
                       actor=_actor())
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.format == "json" else text(report, settings.zone),
          end="" if args.format == "text" else "\n")
    return 0


def verify_with_key(store: Store, public_key: str, journal: str | None, tsa_ca: str | None = None) -> int:
    """``mailguard log verify --public-key KEY [--checkpoints FILE] [--tsa-ca PEM]``: the chain,
    every signed checkpoint, no truncation below a checkpointed size, and every RFC 3161 token.
    Works on a copy of the data dir. Exit 1 on any problem, 2 on an unreadable key or file."""
    from pathlib import Path

    from .store import checkpoints, timestamps

    try:
        text = Path(public_key).read_text() if Path(public_key).is_file() else public_key
        public = checkpoints.load_public(text)
        roots = timestamps.load_roots(Path(tsa_ca).read_bytes()) if tsa_ca else None
        lines = Path(journal).read_text().splitlines() if journal else []
    except (OSError, ValueError) as exc:
        print(f"公開鍵・証明書・チェックポイントのファイルを読めません: {exc}", file=sys.stderr)
        return 2
    extra = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:   # a line half written by a crash: said, and the rest still checked
            entry = None
        if _journal_entry(entry):
            extra.append(entry)
        elif line.strip():
            print(f"{journal}:{number}: 読めない行を飛ばしました", file=sys.stderr)
    count, problems, notes = store.verify_with_key(public, extra, roots)
    for problem in problems:
        unverifiable = "検証できません" in problem or "ありません" in problem
        print(("送信ログを確かめられません: " if unverifiable else "送信ログの改ざんを検出しました: ")
              + problem, file=sys.stderr)
    if problems:
        return 1
    print(f"送信ログ {count} 件: チェーンと署名つきチェックポイントは正常です")
    for note in notes:
        print(note)
    return 0


def _journal_entry(entry) -> bool:
    """A checkpoint ({size, head, at, signature}) or a token ({size, signature, timestamp}) line."""
    if not isinstance(entry, dict) or not isinstance(entry.get("signature"), str) \
            or not isinstance(entry.get("size"), int):
        return False
    if "timestamp" in entry:
        return isinstance(entry["timestamp"], str)
    return isinstance(entry.get("head"), str) and isinstance(entry.get("at"), (int, float))
