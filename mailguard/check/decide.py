"""decide: turn a message's findings into a verdict.

Each finding code maps to an action through the decision table (``decision.toml``
``[actions]``, defaults in the ``findings`` catalogue); ``[[rules]]`` raise the
action when several codes occur together (e.g. a first-time recipient *and*
personal data → approval). The message gets the strongest action of all, so
friction comes only with risk:

    deliver < delay < approval < reject

No findings (every recipient internal) → deliver at once. ``delay`` sets the
release time to receipt + the hold delay (手引き チェックリスト3-3 5)
「一定の時間を置いてから送信」). ``approval`` waits for a manager. Findings in
``findings.MANAGER_ONLY`` (a mistyped FAX number, a look-alike domain, a failure) always need
a manager, whatever the table says. Findings come back ordered so that what
drove the verdict is shown first. Pure function: no I/O.
"""

from __future__ import annotations

from ..findings import MANAGER_ONLY
from ..model import Action, Finding, State, Verdict
from ..policy import Policy

STATE_FOR = {
    Action.DELIVER: State.READY,
    Action.DELAY: State.DELAYED,
    Action.CONFIRM: State.AWAITING_CONFIRMATION,
    Action.APPROVAL: State.AWAITING_APPROVAL,
    Action.REJECT: State.REJECTED,
}


def action_for(finding: Finding, policy: Policy) -> Action:
    action = policy.actions.get(finding.code, Action.APPROVAL)   # unknown code: be safe
    if finding.code in MANAGER_ONLY and action.rank < Action.APPROVAL.rank:
        return Action.APPROVAL
    return action


def decide(findings: tuple[Finding, ...], policy: Policy, *, received_at: float, hold_delay: int) -> Verdict:
    """The verdict for a message received at ``received_at`` (POSIX s).

    ``hold_delay`` (s) is MAILGUARD_HOLD_DELAY; ``[hold] delay_seconds`` in the policy wins over it.
    """
    codes = {f.code for f in findings}
    # Each finding's weight: its own action, or that of a matched rule it is part of.
    weight = {f.code: action_for(f, policy).rank for f in findings}
    for rule in policy.rules:
        if set(rule.when) <= codes:
            for code in rule.when:
                weight[code] = max(weight[code], rule.action.rank)
    for code in codes & set(policy.approval.two_approvers):   # two approvers need an approval to happen at all
        weight[code] = max(weight[code], Action.APPROVAL.rank)
    action = list(Action)[max(weight.values(), default=Action.DELIVER.rank)]
    release_at = received_at + policy.hold_delay(hold_delay) if action is Action.DELAY else None
    ordered = sorted(findings, key=lambda f: (-weight[f.code], -f.severity.rank))
    return Verdict(action, release_at, tuple(ordered))
