"""approvers: who decides on a held message, who is told, and who may see it (pure, no I/O).

Receives the policy in force (``organisation.toml [[group]]`` and ``[approval]``), a
message, and the users (name → addresses) from the store. A message belongs to the
first group whose ``members`` name its authenticated user or its envelope sender. Its
approvers are the group's ``approvers`` and ``stand_ins`` (a stand-in acts while a
manager is away, so both are told at once); after ``escalate_after`` the group's
``escalate_to`` are told too and may decide. A message of no group, or an office
without groups, goes to every manager. Admins decide on everything.
Source: 手引き チェックリスト3-3 4) (送信前の確認, 複数人による確認).
"""

from __future__ import annotations

from ..address import address_key
from ..model import Origin, QueuedMessage
from ..policy import Policy
from ..policy.files import GroupEntry
from ..users import User


def group_of(policy: Policy, message: QueuedMessage) -> GroupEntry | None:
    sender = address_key(message.envelope.mail_from) if message.envelope.mail_from else ""
    for group in policy.groups:
        for member in group.members:
            if member == message.auth_user or ("@" in member and address_key(member) == sender):
                return group
    return None


def deciders(policy: Policy, message: QueuedMessage, users: dict[str, dict], *, escalated: bool) -> list[str]:
    """User names who may decide now (and are told): the group's approvers and stand-ins, plus
    its escalate_to once escalated; without a group, every manager."""
    group = group_of(policy, message)
    if group is None:
        return sorted(name for name, u in users.items() if u["role"] == "manager" and not u["disabled"])
    names = [*group.approvers, *group.stand_ins, *(group.escalate_to if escalated else ())]
    return [n for n in dict.fromkeys(names) if _can_decide(users.get(n))]


def escalation(policy: Policy, message: QueuedMessage, users: dict[str, dict]) -> list[str]:
    """Who is told when nobody decided in time: the group's escalate_to, else the admins."""
    group = group_of(policy, message)
    names = list(group.escalate_to) if group and group.escalate_to else \
        sorted(n for n, u in users.items() if u["role"] == "admin")
    return [n for n in dict.fromkeys(names) if _can_decide(users.get(n))]


def _can_decide(user: dict | None) -> bool:
    """Only enabled managers and admins are told (a staff name in a group's approvers is ignored)."""
    return user is not None and not user["disabled"] and user["role"] in ("manager", "admin")


def may_decide(policy: Policy, user: User, message: QueuedMessage, *, escalated: bool = True) -> bool:
    """A manager decides on (and sees) their groups' mail; an admin on all; with no groups, managers on all.
    The next level (``escalate_to``) may step in at any time; it is *told* only after ``escalate_after``.
    mailguard's own notices and DSNs (which carry one-time links for their recipient) only admins see."""
    if user.role == "admin":
        return True
    if user.role != "manager" or message.origin is not Origin.SMTP:
        return False
    group = group_of(policy, message)
    if group is None:
        return True
    return user.username in (*group.approvers, *group.stand_ins, *(group.escalate_to if escalated else ()))


def approvals_required(policy: Policy, message: QueuedMessage) -> int:
    """2 when a finding of the message is one of ``[approval] two_approvers``, else 1."""
    wanted = set(policy.approval.two_approvers)
    return 2 if any(f.code in wanted for f in message.findings) else 1


def addresses(names: list[str], users: dict[str, dict]) -> list[str]:
    """The first address of each user (where notices go)."""
    return [users[n]["addresses"][0] for n in names if n in users and users[n]["addresses"]]
