"""compose: the notices mailguard writes to a sender, in Japanese, all built one way.

- held (delayed or awaiting approval): what, to whom, why, until when, with a
  signed single-use link that cancels it without logging in, and a link to the
  console to send it now (that needs a login);
- approved by a manager: that it is on its way, and the manager's comment;
- the generated password of an encrypted attachment, to the sender only (never
  to the recipient: PPAP was abolished by the government in 2020);
- link delivery: to whom the download links go, the files, the passcode when one was
  generated (to the sender only, to pass on by phone), and a signed single-use
  link that revokes the links without logging in;
- rejected by a manager or the policy: a DSN (``dsn``).

Notices leave with the null reverse-path (they never bounce), ``Auto-Submitted``
(RFC 3834), and origin NOTICE (they are not inspected or held again). Every
value taken from the message (subject, Message-ID, addresses) is made one line
without control characters before it goes into a header (``one_line``).
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, make_msgid

from .. import tokens
from ..model import Envelope, Origin, QueuedMessage, Submission, Verdict, new_queue_id
from ..settings import Settings
from . import dsn
from ..findings import label
from ..text import message_id_ref, one_line

def _notice(message: QueuedMessage, subject: str, lines: list[str], settings: Settings,
            to: str | None = None) -> Submission:
    """A notice about ``message`` to its sender (or to ``to``: an approver)."""
    to = to or message.envelope.mail_from
    notice = EmailMessage()
    notice["From"] = f"mailguard <postmaster@{settings.hostname}>"
    notice["To"] = one_line(to, 320)
    notice["Subject"] = one_line(subject, 300)
    notice["Date"] = format_datetime(datetime.now(settings.zone))
    queue_id = new_queue_id()
    notice["Message-ID"] = make_msgid(idstring=queue_id, domain=settings.hostname)
    notice["Auto-Submitted"] = "auto-generated"    # RFC 3834
    notice.set_content("\n".join(["このメールは送信ゲートウェイ mailguard が自動で送信しています。", "", *lines]) + "\n",
                       charset="utf-8")
    content = notice.as_bytes(policy=SMTP if to.isascii() else SMTPUTF8)
    reference = message_id_ref(message.message_id)
    # Written raw: the email package folds a long msg-id into RFC 2047 words, which breaks threading.
    if reference and reference.isascii() and len(reference) < 900:
        content = f"In-Reply-To: {reference}\r\nReferences: {reference}\r\n".encode() + content
    return Submission(queue_id=queue_id, envelope=Envelope("", (to,), smtputf8=not to.isascii()),
                      content=content,
                      auth_user=None, client_addr="127.0.0.1",
                      helo=settings.hostname, message_id=notice["Message-ID"], subject=str(notice["Subject"]),
                      origin=Origin.NOTICE)


def _when(ts: float, settings: Settings) -> str:
    return datetime.fromtimestamp(ts, settings.zone).strftime("%Y-%m-%d %H:%M")


def held(message: QueuedMessage, verdict: Verdict, settings: Settings) -> Submission | None:
    """The notice for a message just held; None when there is nobody to tell or no console."""
    base = settings.console_url
    if not message.envelope.mail_from or base is None:
        return None
    confirm = verdict.action == "confirm"
    approval = verdict.release_at is None and not confirm
    until = "管理者が確認するまで送信されません。" if approval else \
        f"{_when(verdict.release_at, settings)} に送信されます (それまでは取り消せます)。" if not confirm else \
        "あなたが内容を確認して「送信する」を押すまで送信されません (期限までに確認がなければ取り消されます)。"
    reasons = [f"  ・{f.text}" + (f" → 本当は {f.suggestion} ではありませんか" if f.suggestion else "")
               for f in verdict.findings[:8]]
    link = f"{base}/t/{tokens.make(settings.data_dir, message.queue_id)}"
    confirm_lines = ["理由を確かめ、宛先と内容に誤りがなければ、次のリンクを開いて「送信する」を押してください",
                     "(ログイン不要、1回限り):", f"  {base}/c/{tokens.make(settings.data_dir, message.queue_id, 'confirm')}",
                     ""] if confirm else []
    lines = [
        "お送りいただいたメールを" + ("保留し、管理者の承認を待っています" if approval else
                                    "保留し、あなたの確認を待っています" if confirm else "送信前に保留しています") + "。",
        "",
        f"  件名:     {one_line(message.subject) or '(件名なし)'}",
        f"  宛先:     {', '.join(message.envelope.rcpt_tos)}",
        f"  受付日時: {_when(message.received_at, settings)}",
        f"  受付番号: {message.queue_id}",
        "",
        until,
        "",
        "理由:",
        *reasons,
        "",
        *confirm_lines,
        "宛先や内容に誤りがあれば、次のリンクから送信を取り消してください (ログイン不要、1回限り):",
        f"  {link}",
        "",
        "今すぐ送信する場合や詳しい内容は、確認画面でご確認ください (ログインが必要です):",
        f"  {base}/messages/{message.queue_id}",
    ]
    kind = "承認待ち" if approval else "確認してください" if confirm else "送信保留"
    return _notice(message, f"【mailguard】{kind}: {one_line(message.subject, 120) or '(件名なし)'}", lines, settings)


def approval_request(message: QueuedMessage, verdict_findings, to: str, settings: Settings, *,
                     step: str = "requested", waited: float = 0) -> Submission | None:
    """To an approver: who sent what to whom, why (in plain words, with the address it probably
    meant), how long it has waited, and the console link (login needed; phone-sized)."""
    base = settings.console_url
    if base is None or not to:
        return None
    reasons = [f"  ・{label(f.code)}: {f.text}" + (f" → 本当は {f.suggestion} ではありませんか" if f.suggestion else "")
               for f in verdict_findings[:8]]
    opening = {"requested": "次のメールが、あなたの承認を待っています。",
               "reminded": "次のメールが、まだ承認を待っています。",
               "escalated": "次のメールが、担当の承認者が決めないまま時間が過ぎたため、あなたの判断を待っています。"}[step]
    lines = [
        opening, "",
        f"  送信者:   {message.envelope.mail_from or '<>'}" + (f" ({message.auth_user})" if message.auth_user else ""),
        f"  宛先:     {', '.join(message.envelope.rcpt_tos)}",
        f"  件名:     {one_line(message.subject) or '(件名なし)'}",
        f"  受付日時: {_when(message.received_at, settings)}" + (f" (待ち時間 {int(waited // 60)} 分)" if waited else ""),
        "", "理由:", *reasons, "",
        "確認・承認・却下は確認画面で (ログインが必要です。スマートフォンでも使えます):",
        f"  {base}/messages/{message.queue_id}",
    ]
    head = {"requested": "承認依頼", "reminded": "承認待ちの再通知", "escalated": "承認依頼 (上位)"}[step]
    return _notice(message, f"【mailguard】{head}: {one_line(message.subject, 120) or '(件名なし)'}", lines, settings,
                   to=to)


def actor_name(actor: str) -> str:
    """Who acted, as staff read it: ``web:boss`` → boss, ``cli:root`` → root (管理コマンド),
    ``system:timeout`` → 自動処理; never the internal prefix."""
    kind, _, name = actor.partition(":")
    if kind == "web" and name:
        return name
    if kind == "cli":
        return f"{name or '管理者'} (管理コマンド)"
    if kind == "system":
        return "自動処理"
    return name or actor


def approved(message: QueuedMessage, actor: str, comment: str, settings: Settings) -> Submission | None:
    if not message.envelope.mail_from:
        return None
    lines = [
        "お送りいただいた次のメールは、管理者が確認して送信を承認しました。まもなく送信されます。",
        "",
        f"  件名:     {one_line(message.subject) or '(件名なし)'}",
        f"  宛先:     {', '.join(message.envelope.rcpt_tos)}",
        f"  受付番号: {message.queue_id}",
        f"  承認者:   {actor_name(actor)}",
    ] + ([f"  コメント: {comment}"] if comment else [])
    return _notice(message, f"【mailguard】承認されました: {one_line(message.subject, 120) or '(件名なし)'}", lines, settings)


def password(message: QueuedMessage, recipients: list[str], names: list[str], password: str,
             archive_name: str, settings: Settings) -> Submission | None:
    """The generated password of an encrypted attachment, for the sender's eyes only."""
    if not message.envelope.mail_from:
        return None
    lines = [
        f"件名「{one_line(message.subject)}」(受付番号 {message.queue_id}) の添付ファイルに個人情報が含まれていたため、",
        f"暗号化した zip ファイル「{archive_name}」にまとめて送ります。",
        "",
        f"  宛先:       {', '.join(recipients)}",
        f"  ファイル:   {', '.join(names)}",
        f"  パスワード: {password}",
        "",
        "パスワードは、電話など、メール以外の方法で相手にお伝えください。",
        "パスワードを別のメールで送ると、誤送信のときに一緒に漏れてしまいます",
        "(パスワード付き zip とパスワードを続けてメールで送る方法 (PPAP) は、2020年に政府が廃止しました)。",
        "よく送る相手とは、パスワードを事前に取り決めてアドレス帳に登録すると、この手間がなくなります。",
    ]
    subject = f"【mailguard】暗号化した添付ファイルのパスワード ({one_line(message.subject, 120) or '件名なし'})"
    return _notice(message, subject, lines, settings)


def linked(message: QueuedMessage, recipients: tuple[str, ...], names: tuple[str, ...], passcode: str | None,
           settings: Settings) -> Submission | None:
    """The sender's notice of link delivery: the passcode (generated: for the sender's eyes only)
    and the way to revoke the links."""
    if not message.envelope.mail_from:
        return None
    lines = [
        f"件名「{one_line(message.subject)}」(受付番号 {message.queue_id}) には個人情報が含まれていたため、",
        "次のファイルをメールから取り出し、宛先ごとのダウンロードリンクに置き換えて送ります。",
        "",
        f"  宛先:       {', '.join(recipients)}",
        f"  ファイル:   {', '.join(names)}",
        f"  有効期限:   送信から {max(1, round(settings.link_lifetime / 86400))} 日間",
    ]
    if passcode:
        lines += [f"  パスコード: {passcode}", "",
                  "パスコードは、電話など、メール以外の方法で相手にお伝えください (メールで送ると、誤送信のときに",
                  "一緒に漏れてしまいます)。よく送る相手とは、パスワードを事前に取り決めてアドレス帳に登録すると、",
                  "この手間がなくなります。"]
    if settings.console_url:
        token = tokens.make(settings.data_dir, message.queue_id, "revoke")
        lines += ["", "宛先の誤りに気づいたら、相手が開く前に次のリンクからダウンロードを止めてください",
                  "(ログイン不要、1回限り。相手がまだ開いていなければ、情報は渡っていません):",
                  f"  {settings.console_url}/r/{token}", "",
                  "開封状況 (いつ開かれ、ダウンロードされたか) は確認画面で見られます:",
                  f"  {settings.console_url}/messages/{message.queue_id}"]
    subject = f"【mailguard】ダウンロードリンクで送ります ({one_line(message.subject, 120) or '件名なし'})"
    return _notice(message, subject, lines, settings)


def link_locked(message: QueuedMessage, recipient: str, settings: Settings) -> Submission | None:
    """A link locked by wrong passcodes: someone may be trying links they should not have."""
    if not message.envelope.mail_from:
        return None
    lines = [
        f"件名「{one_line(message.subject)}」(受付番号 {message.queue_id}) の {recipient} 宛てのダウンロードリンクで、",
        f"パスコードの誤りが {settings.link_max_passcode_failures} 回続いたため、リンクをロックしました。",
        "このリンクからは、もうダウンロードできません。",
        "",
        "相手が入力を間違えただけであれば、お手数ですが送り直してください。心当たりがない場合は、",
        "宛先の誤りや、リンクが第三者に渡った可能性があります。個人情報保護責任者にご相談ください。",
    ]
    return _notice(message, f"【mailguard】ダウンロードリンクをロックしました ({one_line(message.subject, 120) or '件名なし'})",
                   lines, settings)


def cancelled(message: QueuedMessage, why: str, settings: Settings) -> Submission | None:
    """The sender's message was cancelled for them (not confirmed in time)."""
    if not message.envelope.mail_from:
        return None
    lines = [why, "", f"  件名:     {one_line(message.subject) or '(件名なし)'}",
             f"  宛先:     {', '.join(message.envelope.rcpt_tos)}", f"  受付番号: {message.queue_id}", "",
             "送る必要があれば、内容と宛先を確かめて、もう一度送信してください。"]
    return _notice(message, f"【mailguard】取り消しました: {one_line(message.subject, 120) or '(件名なし)'}", lines,
                   settings)


def rejected(message: QueuedMessage, comment: str, settings: Settings) -> Submission | None:
    """The DSN that tells a sender a manager (or the policy) refused their message."""
    if not dsn.needs_dsn(message):
        return None
    comment = one_line(comment, 500)
    reply = "5.7.1 delivery not authorised" + (f": {comment}" if comment else "")
    reason = "管理者の判断により、このメールは送信されませんでした。" + (f"\n理由: {comment}" if comment else "")
    return dsn.build(message, {r: (550, reply) for r in message.pending_recipients},
                     reason_ja=reason, remote=None, hostname=settings.hostname, zone=settings.zone)
