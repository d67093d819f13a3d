"""smtp: delivery to the upstream (smarthost), one attempt at a time (Postfix's smtp client).

Receives: a claimed message (envelope, content, RCPT TO per recipient). Hands on:
an ``Attempt`` — the reply per recipient; the queue manager decides what it means.
Standards: RFC 5321, RFC 3207 STARTTLS, RFC 8314 implicit TLS, RFC 4954 AUTH,
RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8. Settings: MAILGUARD_UPSTREAM*,
MAILGUARD_HOSTNAME, MAILGUARD_DELIVERY_CONCURRENCY. Without an upstream, messages
are written to ``<data_dir>/outbox``. On failure: a session failure is a 4xx for
every recipient (a configuration problem defers, never bounces).
"""

from .deliver import Attempt, Deliverer, write_outbox

__all__ = ["Attempt", "Deliverer", "write_outbox"]
