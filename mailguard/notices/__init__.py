"""notices: every message mailguard itself writes to a sender, in Japanese first.

Receives a stored message (and a verdict, a reply, a comment); hands on a
``Submission`` the caller queues in the same transaction as the state change it
reports. ``compose``: held, approved, attachment password, rejected; ``dsn``:
delivery status notifications (RFC 3464, RFC 6522, RFC 3463 status codes);
``text``: values from the message made safe for headers (no CR, LF or controls).

Standards: null reverse-path (RFC 5321 §4.5.5) so a notice never bounces in a
loop; ``Auto-Submitted`` (RFC 3834). A DSN returns the original headers, never
the body (care-office mail is 要配慮個人情報). Settings: MAILGUARD_HOSTNAME,
MAILGUARD_WEB_URL (links), MAILGUARD_TIMEZONE (times shown).
On failure: builders raise; the caller (the pipeline) isolates that, so a notice
that cannot be built never blocks the message's own decision.
"""

from . import compose, dsn
from ..text import message_id_ref, one_line

__all__ = ["compose", "dsn", "one_line", "message_id_ref"]
