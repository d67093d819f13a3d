"""holds: the people side of a held message — approvers told, reminded, escalated; timeouts.

Receives the policy, the users (from the store) and the messages waiting for a person.
Hands on notices (``notices.compose.approval_request``), queued with the step that sends
them so each happens once, and the timeout actions (through ``actions.act``'s store call,
actor ``system:timeout``):

- a message starts waiting for approval → its approvers and stand-ins are told;
- every ``[approval] remind_every`` seconds undecided → they are told again;
- ``escalate_after`` undecided → the next level (the group's ``escalate_to``, else the admins);
- ``approval_timeout`` undecided → rejected with a notice to the sender (``on_timeout =
  "reject"``) or left waiting (``"keep"``);
- a message held for its sender's own check, unconfirmed after ``confirm_timeout`` → cancelled,
  and the sender told.
Settings: MAILGUARD_QUEUE_LIFETIME (the notices' lifetime). On failure: logged per message;
the next sweep tries again (each step is recorded only with its notices).
"""

from __future__ import annotations

import logging
import time

from ..model import QueuedMessage, State, Submission
from ..notices import compose
from ..policy import Policy
from ..settings import Settings
from ..store import TransitionError
from . import approvers

log = logging.getLogger("mailguard.qmgr")


def users_by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["username"]: row for row in rows}


def request_notices(message: QueuedMessage, findings, policy: Policy, users: dict[str, dict],
                    settings: Settings, step: str = "requested", names: list[str] | None = None,
                    waited: float = 0) -> tuple[list[str], tuple[Submission, ...]]:
    """(who is told, the notices) for a message waiting for approval."""
    names = names if names is not None else approvers.deciders(policy, message, users, escalated=False)
    notices = []
    for address in approvers.addresses(names, users):
        notice = compose.approval_request(message, findings, address, settings, step=step, waited=waited)
        if notice is not None:
            notices.append(notice)
    return names, tuple(notices)


async def sweep(db, policy: Policy, settings: Settings, now: float | None = None, on_step=None) -> list[str]:
    """One pass over the messages waiting for a person. Returns what was done, for the log;
    ``on_step(step, message)`` hears of each escalation and reminder (the webhooks)."""
    now = time.time() if now is None else now
    done: list[str] = []
    users = users_by_name(await db.list_users())
    rules = policy.approval
    for w in await db.waiting((State.AWAITING_APPROVAL, State.AWAITING_CONFIRMATION)):
        try:
            waited = now - w.held_at
            m = w.message
            if m.state is State.AWAITING_CONFIRMATION:
                if waited >= rules.confirm_timeout:
                    await _end(db, settings, m, "confirm_timeout", "送信者の確認がないまま期限を過ぎたため、取り消しました。")
                    done.append(f"{m.queue_id}: cancelled, not confirmed in time")
                continue
            if rules.approval_timeout and waited >= rules.approval_timeout and rules.on_timeout == "reject":
                await _end(db, settings, m, "approval_timeout", "承認の期限までに判断されなかったため、送信を中止しました。")
                done.append(f"{m.queue_id}: rejected, not decided in time")
            elif rules.escalate_after and not w.escalated and waited >= rules.escalate_after:
                names = approvers.escalation(policy, m, users)
                names, notices = request_notices(m, m.findings, policy, users, settings, "escalated", names, waited)
                if await db.note_approval_step(m.queue_id, "escalated", names, notices,
                                               lifetime=settings.queue_lifetime):
                    done.append(f"{m.queue_id}: escalated to {', '.join(names) or 'nobody'}")
                    if on_step:
                        on_step("escalated", m)
            elif rules.remind_every and now - (w.reminded_at or w.held_at) >= rules.remind_every:
                names = approvers.deciders(policy, m, users, escalated=w.escalated)
                names, notices = request_notices(m, m.findings, policy, users, settings, "reminded", names, waited)
                if await db.note_approval_step(m.queue_id, "reminded", names, notices,
                                               lifetime=settings.queue_lifetime):
                    done.append(f"{m.queue_id}: approvers reminded")
                    if on_step:
                        on_step("reminded", m)
        except Exception:
            log.exception("%s: the approval sweep failed for this message; tried again next time", w.message.queue_id)
    return done


async def _end(db, settings: Settings, message: QueuedMessage, action: str, why: str) -> None:
    full = await db.get(message.queue_id, content=True)
    notice = compose.rejected(full, why, settings) if action == "approval_timeout" else \
        compose.cancelled(full, why, settings)
    try:
        await db.act(message.queue_id, action, "system:timeout", why, notice=notice, lifetime=settings.queue_lifetime)
    except TransitionError:   # decided or confirmed an instant ago: the person wins, nothing to do
        pass
