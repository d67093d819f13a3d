"""smtpd: the SMTP front — receives mail from staff clients, printers and FAX gateways.

Receives: SMTP sessions (aiosmtpd, on the relay's own event loop). Hands on: a
``model.Submission`` stored durably in the queue before ``250`` is answered;
nothing is inspected here (aiosmtpd's idle timeout covers ``handle_DATA``).
Standards: RFC 5321 (ESMTP), RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531
SMTPUTF8, RFC 3207 STARTTLS, RFC 4954 AUTH (PLAIN, LOGIN; only inside TLS),
RFC 3848 (Received: protocol names).
Security: no open relay; MAIL FROM and header From:/Sender: must be the
authenticated user's (``553 5.7.1``, or ``Sender:`` added with
MAILGUARD_HEADER_FROM_CHECK=sender; trusted networks without AUTH unchecked);
a non-ASCII address without the SMTPUTF8 parameter is refused at MAIL/RCPT
(``553 5.6.7``, RFC 6531 §3.4); bare CR/LF refused (SMTP smuggling); AUTH
failures limited per user name and client address (``454 4.7.0`` while locked,
``421 4.7.0`` and close after 3 in a session); Argon2 on its own bounded pool,
staff's known addresses checked first; connections per client capped
(``421 4.7.0``).
Modules: ``server`` (listener, AUTH, connection cap), ``handler`` (MAIL, RCPT,
DATA, store), ``headerfrom`` (the header From: check), ``limits`` (in-memory
counters: connections, AUTH failures, the password-check queue).
Settings: MAILGUARD_SMTP_LISTEN, _TRUSTED_NETWORKS, _TLS_CERT/_KEY,
_MESSAGE_SIZE_LIMIT, _RECIPIENT_LIMIT, _HOP_LIMIT, _SMTP_TIMEOUT,
_SMTP_MAX_CONNECTIONS_PER_CLIENT, _SMTP_AUTH_*, _HEADER_FROM_CHECK.
On failure: a precise SMTP reply (4xx try again, 5xx refused) and a log line;
``451`` if the queue could not be written (nothing was accepted).
"""

from .handler import RelayHandler
from .server import start_server, tls_context

__all__ = ["RelayHandler", "start_server", "tls_context"]
