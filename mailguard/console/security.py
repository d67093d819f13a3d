"""Console security: sessions, CSRF tokens, login throttling, response headers.

- Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous) with a
  key kept in ``<data_dir>/console.key`` (created 0600 on first start): HttpOnly,
  SameSite=Strict, Secure when the console is served over TLS, 8 hours. The cookie
  carries a server-side session id (``Store.open_session``) that every request
  checks, so logout, a password change, a role change or disabling the user ends
  the session at once: a copied cookie is worthless afterwards (OWASP session
  management).
- Every state-changing request carries the session's CSRF token (a form field or
  the ``X-CSRF-Token`` header); without it: 403 (OWASP synchroniser token).
- Logins: 5 failures for one user name or one client within 15 minutes lock both
  out for 15 minutes (OWASP authentication cheat sheet), and each failure costs 1 s.
- Headers: a CSP without inline script or remote content, no framing, no sniffing,
  no referrer; over TLS also HSTS (one year), never over plain HTTP (RFC 6797 §7.2).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from pathlib import Path

from starlette.requests import Request

from ..httpheaders import CSP, HSTS, SecurityHeaders  # noqa: F401  (the console's headers)
from ..tokens import installation_key

SESSION_SECONDS = 8 * 3600
FAILURES, WINDOW, LOCKOUT = 5, 15 * 60, 15 * 60



def session_key(data_dir: Path) -> str:
    """The signing key for session cookies (shared with notice links), created once per installation."""
    return installation_key(data_dir)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(expected, submitted))


class LoginThrottle:
    """Failures per user name and per client address in a sliding window."""

    def __init__(self):
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}

    def locked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(self._locked_until.get(k, 0) > now for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            window = self._failures[key]
            window.append(now)
            while window and window[0] < now - WINDOW:
                window.popleft()
            if len(window) >= FAILURES:
                self._locked_until[key] = now + LOCKOUT
                window.clear()

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
