"""settle: what one delivery attempt means for a message. Pure, no I/O.

Per recipient: 2xx delivered, 5xx bounced (a DSN to the sender), 4xx or no
answer stays pending and the message is deferred, retried after
MAILGUARD_RETRY_MIN_BACKOFF doubling up to MAILGUARD_RETRY_MAX_BACKOFF
(RFC 5321 §4.5.4.1; Postfix's schedule: 300 s, 600 s, … capped at 4000 s), and
bounced once the queue lifetime is over (RFC 5321 §4.5.4.1: give up after 4–5 days).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..check import route as routing
from ..model import QueuedMessage, RecipientStatus, State
from ..settings import Settings
from ..smtp import Attempt


@dataclass(frozen=True)
class Settlement:
    """What one attempt means for the message: new state, per-recipient status, retry time, bounces."""

    state: State
    results: dict[str, tuple[RecipientStatus, str]]
    next_attempt_at: float | None
    bounced: dict[str, tuple[int, str]]


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds until the next try after ``attempts`` failed tries: 300, 600, 1200, … capped at 4000."""
    return float(min(settings.retry_max_backoff, settings.retry_min_backoff * 2 ** max(0, attempts - 1)))


def settle(message: QueuedMessage, attempt: Attempt, now: float, settings: Settings) -> Settlement:
    """Pure: the outcome of ``attempt`` for ``message`` (which was claimed, so attempts ≥ 1)."""
    results: dict[str, tuple[RecipientStatus, str]] = {}
    bounced: dict[str, tuple[int, str]] = {}
    pending = []
    expired = now >= message.expires_at
    for rcpt in message.pending_recipients:
        code, text = attempt.replies.get(rcpt, (451, "4.3.0 no reply recorded for this recipient"))
        reply = f"{code} {text}"
        if 200 <= code < 300:
            results[rcpt] = (RecipientStatus.DELIVERED, reply)
        elif code >= 500 or expired:
            results[rcpt] = (RecipientStatus.BOUNCED, reply)
            bounced[rcpt] = (code, text if code >= 500 else f"4.4.7 queue lifetime expired; last reply: {reply}")
        else:
            results[rcpt] = (RecipientStatus.PENDING, reply)
            pending.append(rcpt)
    if pending:
        return Settlement(State.DEFERRED, results, now + backoff(message.attempts, settings), bounced)
    delivered_before = any(r.status is RecipientStatus.DELIVERED for r in message.recipients)
    delivered_now = any(s is RecipientStatus.DELIVERED for s, _ in results.values())
    state = State.DELIVERED if delivered_before or delivered_now else State.BOUNCED
    return Settlement(state, results, None, bounced)


def parties(recipients, policy) -> dict[str, tuple[str | None, str | None, bool]]:
    """Per recipient: (organisation from the address book, legal basis, whether it is a third
    party), routed once, for the delivery's log entry and the provision ledger (第29条). A
    recipient that cannot be worked out is (None, None, True): recorded, never left out."""
    out = {}
    for rcpt in recipients:
        try:
            r = routing.route(rcpt, policy)
            entry = policy.fax_entry(r.fax_e164) if r.fax_e164 else policy.lookup(rcpt)
            out[rcpt] = (routing.organisation(r, policy), getattr(entry, "basis", None), r.leaves)
        except Exception:   # the record itself must not fail for it
            out[rcpt] = (None, None, True)
    return out
