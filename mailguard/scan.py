"""scan: ``mailguard scan FILE.eml`` — what the relay would decide, without sending or storing.

Builds the message the relay would have stored (envelope from ``--rcpt`` /
``--sender`` or the headers), gathers the same facts (past recipients from the
store, DNS unless ``--offline``), scans the content in a worker process under the
same limits of time and memory, and runs the same ``check.pipeline.assess``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from .check import route as routing
from .check.content.extract import Limits
from .check.content.pool import ContentInspector
from .check.content.report import ContentReport
from .check.facts import FactGatherer
from .check.pipeline import Assessment, assess
from .model import Envelope, Origin, QueuedMessage, Recipient, RecipientStatus, Route, State
from .policy import Policy
from .settings import Settings
from .store import AsyncStore, Store
from .text import one_line, subject_of


@dataclass(frozen=True)
class ScanResult:
    routes: tuple[Route, ...]
    content: ContentReport | None
    assessment: Assessment


class _NoHistory:
    """Facts for an installation that has never run: nobody was written to before."""

    async def correspondents(self) -> frozenset[str]:
        return frozenset()

    async def delivered_before(self, addresses) -> frozenset[str]:
        return frozenset()


def as_queued(raw: bytes, settings: Settings, rcpts: list[str] | None, sender: str | None) -> QueuedMessage:
    """The message as the relay would have stored it (CRLF line ends, envelope from headers if not given)."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    envelope_rcpts = tuple(rcpts or [a for _, a in getaddresses(
        [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name) or []]) if a])
    mail_from = sender if sender is not None else parseaddr(str(headers.get("From", "")))[1]
    now = time.time()
    return QueuedMessage("SCAN", State.INCOMING, Origin.SMTP, Envelope(mail_from, envelope_rcpts),
                         tuple(Recipient(r, RecipientStatus.PENDING) for r in envelope_rcpts), None, "-",
                         one_line(str(headers.get("Message-ID", "")), 900), subject_of(headers),
                         len(raw), now, None, None, now + settings.queue_lifetime, 0, (), raw)


async def scan_file(raw: bytes, settings: Settings, policy: Policy, *, rcpts: list[str] | None = None,
                    sender: str | None = None, offline: bool = False,
                    inspector: ContentInspector | None = None) -> ScanResult:
    """Decide ``raw`` as the relay would; ``inspector``: a worker pool to reuse (one is made otherwise)."""
    # nothing is written: no notices are built, so no cancel link (and no installation key) is made
    settings = settings.model_copy(update={"web_listen": None, "web_url": ""})
    message = as_queued(raw, settings, rcpts, sender)
    routes = routing.routes(message.envelope.rcpt_tos, policy)
    db = AsyncStore(Store(settings.db_path, readonly=True)) if settings.db_path.exists() else None
    try:
        facts = await FactGatherer(settings, db or _NoHistory(), dns=settings.dns_checks and not offline).gather([routes], policy)
    finally:
        if db is not None:
            db.close()
    content = await _content(message, routes, policy, settings, inspector) if routing.leaves(routes) else None
    return ScanResult(routes, content, assess(message, routes, policy, facts, content, settings))


async def _content(message: QueuedMessage, routes, policy: Policy, settings: Settings,
                   inspector: ContentInspector | None) -> ContentReport:
    """The content report from a worker bounded in time and memory, as in the relay."""
    roster = (policy.roster.names, policy.roster.insured_numbers)
    own = inspector is None
    inspector = inspector or ContentInspector(Limits.from_settings(settings), 1, settings.inspect_max_memory)
    try:
        return await inspector.scan(message.content or b"", "scan", roster)
    finally:
        if own:
            inspector.close()
