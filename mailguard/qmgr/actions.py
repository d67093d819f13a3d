"""actions: what a person may do to a held message, with the same rules from every door.

The console pages, the JSON API and the CLI all call ``act``; none of them imports
the pipeline. Rules (手引き チェックリスト3-3 4): 送信前の確認):

- ``release`` (send now: delayed → ready), ``approve`` (awaiting_approval → ready),
  ``confirm`` (the sender's own check: awaiting_confirmation → ready; only their own message),
  ``cancel`` (any state before delivery → cancelled), ``reject`` (→ rejected, DSN);
- approving or rejecting needs a comment that says what was checked or why;
- a manager does not approve their own message unless ``[approval]
  allow_self_approval`` says so (a second pair of eyes is the point);
- approving tells the sender; rejecting sends them a DSN with the reason;
- where a finding needs two approvers (``[approval] two_approvers``), the first approval is
  recorded and the message waits for a second, different approver.

Raises ``ActionRefused`` (a Japanese reason) for a broken rule and
``store.TransitionError`` when the message is not in a state that allows it.
"""

from __future__ import annotations

from ..model import QueuedMessage, State
from ..notices import compose
from ..settings import Settings
from ..store import Store, TransitionError
from ..users import User

ACTIONS = ("release", "approve", "cancel", "reject", "confirm")
MAX_COMMENT = 2000


class ActionRefused(Exception):
    """The action breaks a rule; ``str()`` is the Japanese reason shown to the person."""


def clean_comment(comment: str) -> str:
    """A comment as it will be stored and mailed: one paragraph per line, no control
    characters. Raises ActionRefused when it is too long."""
    # control characters and lone surrogates (JSON can carry them) cannot go into a log, a notice or a DSN
    lines = ["".join(ch for ch in line if ch == "\t" or (ch >= " " and ch != "\x7f"
                                                          and not 0x80 <= ord(ch) < 0xA0
                                                          and not 0xD800 <= ord(ch) < 0xE000))
             for line in comment.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    text = "\n".join(line.rstrip() for line in lines).strip()
    if len(text) > MAX_COMMENT:
        raise ActionRefused(f"コメントが長すぎます ({MAX_COMMENT} 文字まで)。")
    return text


def is_own(user: User | None, message: QueuedMessage) -> bool:
    """Whether ``user`` sent ``message``: as the authenticated user, or from one of their addresses
    (a manager's mail from a trusted network carries no AUTH user)."""
    return user is not None and (message.auth_user == user.username or user.owns(message.envelope.mail_from))


def check(action: str, message: QueuedMessage, user: User | None, comment: str,
          allow_self_approval: bool) -> None:
    """The rules that do not depend on the message's state. Raises ActionRefused."""
    if action not in ACTIONS:
        raise ActionRefused(f"その操作はできません ({action})。")
    if action in ("approve", "reject") and not comment:
        raise ActionRefused("承認・却下にはコメント (確認した内容や理由) を入力してください。")
    if action == "approve" and not allow_self_approval and is_own(user, message):
        raise ActionRefused("自分が送ったメールは承認できません。ほかの管理者に承認を依頼してください。")
    if action == "confirm" and user is not None and user.role != "admin" and not is_own(user, message):
        raise ActionRefused("送信者本人だけが確認できます。")


def act(store: Store, settings: Settings, queue_id: str, action: str, actor: str, comment: str = "", *,
        user: User | None = None, allow_self_approval: bool = False, approvals_required: int = 1) -> QueuedMessage:
    """Apply a person's ``action``; ``actor`` is how the log names them (``web:taro``,
    ``cli:root``), ``user`` their mailguard account (for the self-approval rule; None for
    the CLI's operator, who acts as the system's administrator).
    Raises ActionRefused or TransitionError."""
    comment = clean_comment(comment)
    message = store.get(queue_id, content=action in ("reject", "approve"))
    if message is None:
        raise TransitionError(queue_id, None, action)
    check(action, message, user, comment, allow_self_approval)
    if action == "approve" and approvals_required > 1:
        who = user.username if user is not None else actor
        if len(store.record_approval(queue_id, who, comment)) < approvals_required:
            return store.get(queue_id)   # recorded; a second, different approver is still needed
    notice = None
    if message.state in (State.DELAYED, State.AWAITING_CONFIRMATION, State.AWAITING_APPROVAL):
        if action == "reject":
            notice = compose.rejected(message, comment, settings)
        elif action == "approve":
            notice = compose.approved(message, actor, comment, settings)
    return store.act(queue_id, action, actor, comment, notice=notice, lifetime=settings.queue_lifetime)
