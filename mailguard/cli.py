"""The ``mailguard`` command: run the relay, act on the queue, check policies, read the log.

Queue commands act on the store directly and are safe while the server runs
(the server sees the change within MAILGUARD_QUEUE_SCAN_INTERVAL). Every action
is recorded in the send log with the acting user ``cli:<login name>``.

Exit status: 0 success; 1 the action was refused or a check failed (policy
errors, a broken log chain, a message not in a state that allows the action);
2 bad usage or bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys

from . import policy as policy_mod
from .address import validate_address
from .model import EVENT_LABELS, FINAL_STATES, STATE_LABELS, QueuedMessage, State
from .cli_records import (_actor, _parse_time, _print_link, _store, _when, cmd_ledger_export, cmd_link_list,
                          cmd_link_revoke, cmd_purge, cmd_incident_report, verify_with_key,
                          NoDatabase)
from .qmgr import approvers
from .qmgr.actions import ActionRefused, act
from .settings import Settings, SettingsError, load_settings
from .store import TransitionError
from .users import ROLES, hash_password


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"設定エラー (settings error):\n{exc}", file=sys.stderr)
        return 2
    from .store.db import SchemaTooNew

    try:
        return args.func(settings, args) or 0
    except (NoDatabase, SchemaTooNew) as exc:
        print(str(exc), file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailguard", description="mailguard: 誤送信防止 SMTP リレー")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="リレーを起動する (run the relay)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("receive", help="(serve が起動する受付専用プロセス; MAILGUARD_PROCESSES)")
    p.set_defaults(func=cmd_receive)
    db = sub.add_parser("db", help="データベース (database)").add_subparsers(required=True, metavar="ACTION")
    p = db.add_parser("migrate", help="スキーマを今の版に更新する (serve も起動時に行います)")
    p.set_defaults(func=cmd_db_migrate)

    q = sub.add_parser("queue", help="キューの操作 (queue)").add_subparsers(required=True, metavar="ACTION")
    p = q.add_parser("list", help="処理中のメール一覧")
    p.add_argument("--state", action="append", choices=[s.value for s in State])
    p.add_argument("--sender", help="送信者 (envelope sender or user)")
    p.add_argument("--all", action="store_true", help="完了したメールも表示")
    p.set_defaults(func=cmd_queue_list)
    p = q.add_parser("show", help="1通の詳細")
    p.add_argument("queue_id")
    p.set_defaults(func=cmd_queue_show)
    for action, text in (("release", "保留中のメールを今すぐ送信 (send now)"),
                         ("approve", "承認して送信"), ("cancel", "送信を取り消す"),
                         ("reject", "承認せずに送信を中止 (送信者に通知)")):
        p = q.add_parser(action, help=text)
        p.add_argument("queue_id")
        p.add_argument("--comment", default="", required=action in ("approve", "reject"),
                       help="確認した内容・理由 (承認・却下では必須)")
        p.set_defaults(func=cmd_queue_act, action=action)

    pol = sub.add_parser("policy", help="ポリシー (policies)").add_subparsers(required=True, metavar="ACTION")
    p = pol.add_parser("check", help="ポリシーファイルを検証する")
    p.set_defaults(func=cmd_policy_check)

    p = sub.add_parser("scan", help="メールを検査して判定を表示する (送信はしない)")
    p.add_argument("file", help=".eml ファイル")
    p.add_argument("--rcpt", action="append", help="宛先 (省略時は To/Cc/Bcc ヘッダー)")
    p.add_argument("--sender", help="送信者 (省略時は From ヘッダー)")
    p.add_argument("--offline", action="store_true", help="宛先ドメインを DNS で確かめない")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("log", help="送信ログ (send log); 'log verify' で改ざんを検証")
    p.add_argument("action", nargs="?", choices=["verify"], help="verify: チェーン・署名・タイムスタンプを検証する")
    p.add_argument("--queue-id")
    p.add_argument("--sender")
    p.add_argument("--since", help="YYYY-MM-DD[THH:MM] (MAILGUARD_TIMEZONE)")
    p.add_argument("--until", help="YYYY-MM-DD[THH:MM], exclusive")
    p.add_argument("--limit", type=int, help="newest N entries")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--verify", action="store_true", help="ハッシュチェーンを検証する (verify the chain)")
    p.add_argument("--public-key", help="署名つきチェックポイントも検証する: 公開鍵 (base64) かそのファイル")
    p.add_argument("--checkpoints", help="データベースの外に保存したチェックポイント (checkpoints.jsonl)")
    p.add_argument("--tsa-ca", help="タイムスタンプも検証する: TSA のルート証明書 (PEM ファイル)")
    p.set_defaults(func=cmd_log)

    lk = sub.add_parser("link", help="ダウンロードリンク (download links)").add_subparsers(required=True, metavar="ACTION")
    p = lk.add_parser("list", help="リンクと開封状況の一覧")
    p.add_argument("--queue-id", help="このメールのリンクだけ")
    p.set_defaults(func=cmd_link_list)
    p = lk.add_parser("revoke", help="メールのリンクをすべて無効にする (ファイルも削除)")
    p.add_argument("queue_id")
    p.add_argument("--comment", default="", help="理由 (送信ログに残ります)")
    p.set_defaults(func=cmd_link_revoke)

    inc = sub.add_parser("incident", help="誤送信の報告 (漏えい等報告)").add_subparsers(required=True, metavar="ACTION")
    p = inc.add_parser("report", help="個人情報保護委員会への速報の下書きを作る")
    p.add_argument("queue_id")
    p.add_argument("--discovered", help="発覚日時 (例 2026-11-22T10:00。省略時は今)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_incident_report)

    p = sub.add_parser("purge", help="保存期間 (MAILGUARD_CONTENT_RETENTION) を過ぎた本文を削除する")
    p.add_argument("--dry-run", action="store_true", help="削除せずに対象を表示する")
    p.set_defaults(func=cmd_purge)

    ld = sub.add_parser("ledger", help="第三者提供記録 (provision ledger, 個人情報保護法 第29条)").add_subparsers(
        required=True, metavar="ACTION")
    p = ld.add_parser("export", help="記録を CSV (Excel 用) か JSON で書き出す")
    p.add_argument("--since", help="この日時から (例 2026-11-01)")
    p.add_argument("--until", help="この日時の前まで")
    p.add_argument("--person", help="この本人の記録だけ (開示の請求、第33条第5項)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--encoding", choices=("utf-8", "cp932"), default="utf-8",
                   help="CSV の文字コード (utf-8 は BOM 付きで Excel が開ける)")
    p.set_defaults(func=cmd_ledger_export)

    u = sub.add_parser("user", help="利用者 (users)").add_subparsers(required=True, metavar="ACTION")
    p = u.add_parser("add", help="利用者を追加")
    p.add_argument("username")
    p.add_argument("--role", choices=ROLES, default="staff")
    p.add_argument("--address", action="append", required=True, help="送信元として使えるアドレス (repeatable)")
    p.add_argument("--password-stdin", action="store_true", help="パスワードを標準入力の1行から読む")
    p.set_defaults(func=cmd_user_add)
    p = u.add_parser("list", help="利用者一覧")
    p.set_defaults(func=cmd_user_list)
    for action, text in (("disable", "無効にする"), ("enable", "有効にする")):
        p = u.add_parser(action, help=text)
        p.add_argument("username")
        p.set_defaults(func=cmd_user_toggle, disabled=action == "disable")
    p = u.add_parser("passwd", help="パスワードを変更")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_user_passwd)
    return parser


RECIPIENT_LABELS = {"pending": "未送信", "delivered": "送信済み", "bounced": "不達"}
LEVEL_LABELS = {"none": "個人情報なし", "personal": "個人情報", "sensitive": "要配慮個人情報"}


def _no_login_data_warning(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 sets its own deprecated ``Session.login_data`` on every AUTH and warns about it."""
    return not str(record.msg).startswith("Session.login_data is deprecated")


def cmd_serve(settings: Settings, args) -> int:
    from .serve import StartupError, serve

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiosmtpd logs every command line at INFO/DEBUG, AUTH credentials included: never below WARNING.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("mail.log").addFilter(_no_login_data_warning)
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"起動できません: {exc}", file=sys.stderr)
        return 1
    except policy_mod.PolicyError as exc:
        print(f"ポリシーエラーのため起動できません (policy error):\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"起動できません (cannot start): {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_db_migrate(settings: Settings, args) -> int:
    """``mailguard db migrate``: the schema to this version (an existing SQLite file only; on
    PostgreSQL it also makes the tables in the empty database a cluster starts from)."""
    from .store import Store

    store = Store(settings.database_url) if settings.database_url else _store(settings)
    before, after = store.migrated   # applied as the store opened
    print(f"スキーマ {before} → {after}" if before != after else f"スキーマ {after}: 更新は不要です")
    return 0


def cmd_receive(settings: Settings, args) -> int:
    """An SMTP receiver started by ``serve`` (``receivers``); not for people to run."""
    from .receivers import receive

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("mail.log").addFilter(_no_login_data_warning)
    asyncio.run(receive(settings))
    return 0


def cmd_queue_list(settings: Settings, args) -> int:
    states = [State(s) for s in args.state] if args.state else (
        None if args.all else [s for s in State if s not in FINAL_STATES])
    messages = _store(settings).list(states, sender=args.sender)
    print(f"{'受付番号':<18} {'状態':<18} {'受付日時':<19} {'送信予定':<19} 送信者 → 宛先 / 件名")
    for m in messages:
        print(f"{m.queue_id:<22} {STATE_LABELS[m.state]:<14} {_when(m.received_at, settings):<23} "
              f"{_when(m.release_at or m.next_attempt_at, settings):<23} "
              f"{m.envelope.mail_from or '<>'} → {', '.join(m.envelope.rcpt_tos)} / {m.subject}")
    print(f"{len(messages)} 通")
    return 0


def cmd_queue_show(settings: Settings, args) -> int:
    message = _store(settings).get(args.queue_id)
    if message is None:
        print(f"{args.queue_id}: 見つかりません (not found)", file=sys.stderr)
        return 1
    _print_message(message, settings)
    return 0


def _print_message(m: QueuedMessage, settings: Settings) -> None:
    print(f"受付番号:   {m.queue_id}")
    print(f"状態:       {STATE_LABELS[m.state]}")
    print(f"件名:       {m.subject}")
    print(f"Message-ID: {m.message_id}")
    print(f"MAIL FROM:  <{m.envelope.mail_from}>  (認証ユーザー: {m.auth_user or '-'}, 接続元: {m.client_addr})")
    print(f"受付日時:   {_when(m.received_at, settings)}")
    if m.release_at:
        print(f"送信予定:   {_when(m.release_at, settings)}")
    if m.next_attempt_at:
        print(f"再送予定:   {_when(m.next_attempt_at, settings)}  (試行 {m.attempts} 回)")
    print(f"保管期限:   {_when(m.expires_at, settings)}")
    print("宛先 (RCPT TO):")
    for r in m.recipients:
        via = f" (配送先 {r.deliver_to})" if r.deliver_to else ""
        print(f"  {r.address:<40} {RECIPIENT_LABELS[r.status]:<6} {r.reply}{via}")
    links = _store(settings).links(m.queue_id)
    if links:
        print("ダウンロードリンク:")
        for link in links:
            _print_link(link, settings, indent="  ")
    if m.findings:
        from .findings import label

        print("検査結果:")
        for f in m.findings:
            print(f"  [{label(f.code)}] {f.text}" + (f" → {f.suggestion}" if f.suggestion else ""))


def cmd_queue_act(settings: Settings, args) -> int:
    store = _store(settings)
    try:
        policy = policy_mod.load(settings.policies_dir)
        held = store.get(args.queue_id)
        message = act(store, settings, args.queue_id, args.action, _actor(), args.comment,
                      allow_self_approval=policy.approval.allow_self_approval,
                      approvals_required=approvers.approvals_required(policy, held) if held else 1)
    except (TransitionError, ActionRefused, policy_mod.PolicyError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{message.queue_id}: {STATE_LABELS[message.state]}")
    return 0


def cmd_policy_check(settings: Settings, args) -> int:
    try:
        loaded = policy_mod.load(settings.policies_dir)
    except policy_mod.PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} 件のエラー (errors)", file=sys.stderr)
        return 1
    book = loaded.address_book
    print(f"{settings.policies_dir}: OK — 組織 {loaded.organisation.name}, "
          f"組織内ドメイン {len(loaded.organisation.internal_domains)}, "
          f"アドレス帳 {len(book.email)} アドレス / {len(book.domain)} ドメイン / {len(book.fax)} FAX, "
          f"FAX ゲートウェイ {len(loaded.fax_gateways)}")
    return 0


def cmd_scan(settings: Settings, args) -> int:
    """Inspect and decide one message exactly as the relay would (``check.pipeline.assess``,
    the same facts), without sending or storing it."""
    from pathlib import Path

    try:
        raw = Path(args.file).read_bytes()
        policy = policy_mod.load(settings.policies_dir)
    except OSError as exc:
        print(f"{args.file}: 読めません ({exc})", file=sys.stderr)
        return 1
    except policy_mod.PolicyError as exc:
        print(f"ポリシーエラー:\n{exc}", file=sys.stderr)
        return 1
    from .scan import scan_file

    result = asyncio.run(scan_file(raw, settings, policy, rcpts=args.rcpt, sender=args.sender,
                                   offline=args.offline))
    _print_scan(result)
    return 0


def _print_scan(result) -> None:
    from .findings import label

    print(f"宛先: {', '.join(r.address for r in result.routes) or '(なし)'}")
    if result.content is None:
        print("内容: 組織内のみの宛先のため検査しません")
    else:
        print(f"内容の分類: {LEVEL_LABELS[result.content.level]}")
        for part in result.content.parts:
            print(f"  {part.name}: {LEVEL_LABELS[part.level]}")
        for item in result.content.unscannable:
            print(f"  {item.where}: 検査できません ({item.reason})")
    a = result.assessment
    print("検査結果:" if a.findings else "検査結果: なし")
    for f in a.findings:
        print(f"  [{label(f.code)}] {f.text}" + (f" → {f.suggestion}" if f.suggestion else ""))
    print(f"判定: {STATE_LABELS[a.state]}")
    for note in a.transformed.notes:
        print(f"変換: {note}")


def cmd_log(settings: Settings, args) -> int:
    store = _store(settings)
    args.verify = args.verify or args.action == "verify"
    if args.verify and args.public_key:
        return verify_with_key(store, args.public_key, args.checkpoints, args.tsa_ca)
    if args.verify:
        count, broken = store.verify_log()
        if broken is not None:
            print(f"送信ログの改ざんまたは破損を検出しました: 記録番号 {broken} 以降のチェーンが一致しません"
                  f" (send log chain broken at seq {broken})", file=sys.stderr)
            return 1
        print(f"送信ログ {count} 件: チェーンは正常です (chain intact)")
        if store.log_purged_through():
            print("注意: 古い記録は保存期間により削除されています。削除が正しい署名つきかどうかは"
                  " --public-key で確かめてください。", file=sys.stderr)
        return 0
    entries = store.log(queue_id=args.queue_id, sender=args.sender, since=_parse_time(args.since, settings),
                        until=_parse_time(args.until, settings), limit=args.limit)
    for seq, e in entries:
        if args.json:
            print(json.dumps({"seq": seq, **e.__dict__}, ensure_ascii=False, default=list))
            continue
        who = f" by {e.actor}" if e.actor != "system" else ""
        state = STATE_LABELS.get(e.state, e.state) if e.state else "-"
        print(f"{_when(e.at, settings)} #{seq} {e.queue_id or '-'} {EVENT_LABELS.get(e.event, e.event)} ({e.event}){who}"
              f" 状態={state}"
              f" from=<{e.mail_from or ''}> user={e.auth_user or '-'} to={','.join(e.recipients)}"
              + (f" reply={e.reply!r}" if e.reply else "")
              + (f" findings={','.join(f['code'] for f in e.findings)}" if e.findings else "")
              + (f" detail={json.dumps(e.detail, ensure_ascii=False)}" if e.detail else ""))
    return 0


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("パスワード: ")
    if first != getpass.getpass("もう一度: "):
        raise SystemExit("パスワードが一致しません (passwords differ)")
    return first


def cmd_user_add(settings: Settings, args) -> int:
    try:
        addresses = [validate_address(a) for a in args.address]
        password_hash = hash_password(_read_password(args))
        _store(settings).add_user(args.username, password_hash, args.role, addresses, _actor())
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.username}: 追加しました (role={args.role}, addresses={', '.join(addresses)})")
    return 0


def cmd_user_list(settings: Settings, args) -> int:
    for u in _store(settings).list_users():
        state = "無効 (disabled)" if u["disabled"] else "有効"
        print(f"{u['username']:<20} {u['role']:<8} {state:<16} {', '.join(u['addresses'])}")
    return 0


def cmd_user_toggle(settings: Settings, args) -> int:
    try:
        _store(settings).update_user(args.username, _actor(), disabled=args.disabled)
    except KeyError:
        print(f"{args.username}: 利用者が見つかりません (no such user)", file=sys.stderr)
        return 1
    print(f"{args.username}: {'無効にしました' if args.disabled else '有効にしました'}")
    return 0


def cmd_user_passwd(settings: Settings, args) -> int:
    try:
        password_hash = hash_password(_read_password(args))
        _store(settings).update_user(args.username, _actor(), password_hash=password_hash)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyError:
        print(f"{args.username}: 利用者が見つかりません (no such user)", file=sys.stderr)
        return 1
    print(f"{args.username}: パスワードを変更しました")
    return 0


if __name__ == "__main__":
    sys.exit(main())
