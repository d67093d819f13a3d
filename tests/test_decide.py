"""Decision and settlement: pure functions, checked directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import HERE, INTERNAL, REGISTERED, UNREGISTERED
from mailguard import policy
from mailguard.check import route
from mailguard.check.decide import decide
from mailguard.check.pipeline import inspect
from mailguard.check.recipients import Facts
from mailguard.check.recipients.domains import DomainStatus
from mailguard.model import (Action, Envelope, Origin, QueuedMessage, Recipient, RecipientStatus,
                             State)
from mailguard.qmgr.settle import backoff, settle
from mailguard.settings import load_settings
from mailguard.smtp import Attempt

POLICY = policy.load(HERE / "policies")
SETTINGS = load_settings(retry_min_backoff=300, retry_max_backoff=4000, queue_lifetime=432000)


def message(*rcpts: str, attempts: int = 1, expires_at: float = 1e12,
            statuses: dict[str, RecipientStatus] | None = None) -> QueuedMessage:
    statuses = statuses or {}
    return QueuedMessage(
        queue_id="Q", state=State.DELIVERING, origin=Origin.SMTP, envelope=Envelope("s@" + INTERNAL, rcpts),
        recipients=tuple(Recipient(r, statuses.get(r, RecipientStatus.PENDING)) for r in rcpts),
        auth_user=None, client_addr="127.0.0.1", message_id="<m@x>", subject="", size=1,
        received_at=1000.0, release_at=None, next_attempt_at=None, expires_at=expires_at, attempts=attempts,
    )


def findings_for(msg: QueuedMessage, pol, facts: Facts):
    return tuple(inspect(msg.content or b"", route.routes(msg.envelope.rcpt_tos, pol), pol, facts, None))


def verdict_for(*rcpts: str, known: tuple[str, ...] = ()):
    facts = Facts(delivered_before=frozenset(known))
    return decide(findings_for(message(*rcpts), POLICY, facts), POLICY, received_at=1000.0, hold_delay=300)


def test_internal_only_is_delivered_at_once():
    v = verdict_for(f"a@{INTERNAL}", f"b@{INTERNAL}")
    assert v.action is Action.DELIVER and v.findings == () and v.release_at is None


def test_registered_external_is_delayed_by_the_hold():
    v = verdict_for(REGISTERED, known=(REGISTERED,))
    assert v.action is Action.DELAY and v.release_at == 1300.0
    assert [f.code for f in v.findings] == ["external_recipient"]


def test_a_registered_partner_is_never_a_first_time_recipient():
    v = verdict_for(REGISTERED)        # never written to before: registration is the verification
    assert v.action is Action.DELAY
    assert [f.code for f in v.findings] == ["external_recipient"]


def test_unregistered_external_needs_approval_and_says_why_first():
    v = verdict_for(REGISTERED, UNREGISTERED)
    assert v.action is Action.APPROVAL and v.release_at is None
    assert v.findings[0].code == "unregistered_recipient" and v.findings[0].subject == UNREGISTERED
    assert "アドレス帳に登録されていない" in v.findings[0].text


def test_backoff_doubles_from_min_to_max():
    assert [backoff(n, SETTINGS) for n in (1, 2, 3, 4, 5, 6)] == [300, 600, 1200, 2400, 4000, 4000]


def test_temporary_failure_defers_with_backoff():
    m = message("a@x.example", attempts=2)
    outcome = settle(m, Attempt("up", {"a@x.example": (451, "4.3.0 later")}), 5000.0, SETTINGS)
    assert outcome.state is State.DEFERRED and outcome.next_attempt_at == 5600.0 and outcome.bounced == {}


def test_temporary_failure_after_the_lifetime_bounces():
    m = message("a@x.example", expires_at=4000.0)
    outcome = settle(m, Attempt("up", {"a@x.example": (451, "4.3.0 later")}), 5000.0, SETTINGS)
    assert outcome.state is State.BOUNCED
    assert outcome.bounced["a@x.example"][1].startswith("4.4.7 queue lifetime expired")


def test_partial_success_is_kept_per_recipient():
    m = message("a@x.example", "b@x.example", "c@x.example")
    replies = {"a@x.example": (250, "ok"), "b@x.example": (550, "5.1.1 unknown"), "c@x.example": (452, "4.2.2 full")}
    outcome = settle(m, Attempt("up", replies), 5000.0, SETTINGS)
    assert outcome.state is State.DEFERRED
    assert outcome.results["a@x.example"][0] is RecipientStatus.DELIVERED
    assert outcome.results["b@x.example"][0] is RecipientStatus.BOUNCED
    assert outcome.results["c@x.example"][0] is RecipientStatus.PENDING
    assert list(outcome.bounced) == ["b@x.example"]


def test_last_recipient_settled_after_an_earlier_success_is_delivered():
    m = message("a@x.example", "b@x.example", statuses={"a@x.example": RecipientStatus.DELIVERED})
    outcome = settle(m, Attempt("up", {"b@x.example": (550, "5.1.1 unknown")}), 5000.0, SETTINGS)
    assert outcome.state is State.DELIVERED and list(outcome.bounced) == ["b@x.example"]


def test_shipped_example_policies_load(tmp_path: Path):
    assert policy.load(HERE.parent / "policies").actions["unregistered_recipient"] is Action.APPROVAL


@pytest.fixture
async def queue_manager(tmp_path):
    """A queue manager on a real store, without SMTP: ``make(deliverer)``; accepts one message."""
    from mailguard.qmgr import manager as queue_mod
    from mailguard.model import Envelope as Env, Submission
    from mailguard.store import AsyncStore, Store

    db = AsyncStore(Store(tmp_path / "db.sqlite3"))
    managers = []

    class Watcher:
        current = POLICY

    async def make(deliverer=None):
        manager = queue_mod.QueueManager(SETTINGS, db, Watcher(), deliverer=deliverer)
        managers.append(manager)
        await db.accept(Submission("Q1", Env("s@" + INTERNAL, (f"a@{INTERNAL}",)), b"Subject: x\r\n\r\nx\r\n",
                                   None, "127.0.0.1", "h", "<m@x>", "x"), lifetime=10000)
        return manager, db

    yield make
    for manager in managers:
        await manager.stop()
    db.close()


async def test_a_message_that_cannot_be_inspected_is_held_not_lost(queue_manager, monkeypatch):
    """A fault in inspection holds the message for a manager with a finding that says so."""
    from mailguard.check import pipeline

    def broken(*args):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(pipeline, "inspect", broken)
    manager, db = await queue_manager()
    await manager.scan()
    await manager.decisions_done()
    held = await db.get("Q1")
    assert held.state is State.AWAITING_APPROVAL
    assert [f.code for f in held.findings] == ["inspection_failed"]


async def test_an_internal_fault_during_delivery_defers_the_message(queue_manager):
    import asyncio

    async def faulty(message):
        raise RuntimeError("bug in a transform")

    manager, db = await queue_manager(faulty)
    await manager.scan()
    await manager.decisions_done()
    await asyncio.gather(*manager._active.values())
    message = await db.get("Q1")
    assert message.state is State.DEFERRED and message.next_attempt_at is not None
    assert any(e.event == "delivery_error" and "bug in a transform" in e.reply
               for _, e in await db.log(queue_id="Q1"))


def test_a_rule_raises_the_action_when_its_codes_occur_together(tmp_path):
    for name in ("organisation.toml", "address_book.toml"):
        (tmp_path / name).write_text((HERE / "policies" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "decision.toml").write_text(
        '[[rules]]\nwhen = ["external_recipient", "domain_unverified"]\naction = "approval"\n', encoding="utf-8")
    ruled = policy.load(tmp_path)
    facts = Facts(domains={"minato-hospital.example.jp": DomainStatus.UNKNOWN})
    both = decide(findings_for(message(REGISTERED), ruled, facts), ruled, received_at=0.0, hold_delay=300)
    assert both.action is Action.APPROVAL
    answered = Facts(domains={"minato-hospital.example.jp": DomainStatus.EXISTS})
    one = decide(findings_for(message(REGISTERED), ruled, answered), ruled, received_at=0.0, hold_delay=300)
    assert one.action is Action.DELAY


def test_fax_numbers_are_compared_in_e164_whatever_the_writing():
    from mailguard.check.recipients import fax
    from mailguard.model import RouteKind

    for written in ("FAX=+81312345678@fax.sakura-kaigo.example.jp", "03-1234-5678@fax.sakura-kaigo.example.jp",
                    "0312345678@FAX.Sakura-Kaigo.example.jp"):
        r = route.route(written, POLICY)
        assert r.kind is RouteKind.FAX and r.fax_e164 == "+81312345678", written
        assert fax.fax_findings(r, POLICY) == []
        assert (r.deliver_to or written) == "0312345678@fax.sakura-kaigo.example.jp"
    assert route.route(f"someone@{INTERNAL}", POLICY).kind is RouteKind.INTERNAL
    assert route.route("FAX=hello@fax.sakura-kaigo.example.jp", POLICY).fax_e164 is None


async def test_no_decision_starts_once_the_queue_manager_is_stopping(queue_manager):
    manager, db = await queue_manager()
    await manager.stop()
    await manager._start_decisions()           # a scan that was already under way when stop began
    assert not manager._decisions and (await db.get("Q1")).state == "incoming"   # decided at the next start
