"""decide: turn a message's findings into a verdict.

Each finding code maps to an action through the decision table (``decision.toml``,
defaults in ``policy.DEFAULT_ACTIONS``); the message gets the strongest action of
all its findings, so friction comes only with risk:

    deliver < delay < approval < reject

No findings (every recipient internal) → deliver at once. ``delay`` sets the
release time to receipt + the hold delay (手引き チェックリスト3-3 5)
「一定の時間を置いてから送信」). ``approval`` waits for a manager, with no release
time. Pure function: no I/O, the same inputs give the same verdict.
"""

from __future__ import annotations

from .model import Action, Finding, State, Verdict
from .policy import Policy

STATE_FOR = {
    Action.DELIVER: State.READY,
    Action.DELAY: State.DELAYED,
    Action.APPROVAL: State.AWAITING_APPROVAL,
    Action.REJECT: State.REJECTED,
}


def decide(findings: tuple[Finding, ...], policy: Policy, *, received_at: float, hold_delay: int) -> Verdict:
    """The verdict for a message received at ``received_at`` (POSIX s).

    ``hold_delay`` (s) is MAILGUARD_HOLD_DELAY; ``[hold] delay_seconds`` in the policy wins over it.
    """
    action = Action.DELIVER
    for finding in findings:
        candidate = policy.actions.get(finding.code, Action.APPROVAL)  # unknown code: be safe
        if candidate.rank > action.rank:
            action = candidate
    release_at = received_at + policy.hold_delay(hold_delay) if action is Action.DELAY else None
    # Show the findings that drove the verdict first.
    ordered = sorted(findings, key=lambda f: -policy.actions.get(f.code, Action.APPROVAL).rank)
    return Verdict(action, release_at, tuple(ordered))
