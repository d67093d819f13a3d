"""httpheaders: the response headers of every page mailguard serves (console and download pages).

A CSP without inline script or remote content, no framing, no sniffing, no
referrer (a download link must never leak through Referer), no caching; over TLS
also HSTS for one year, never over plain HTTP (RFC 6797 §7.2).
"""

from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HSTS = "max-age=31536000"


class SecurityHeaders(BaseHTTPMiddleware):
    """The headers on every response; ``hsts`` only when the console itself serves TLS."""

    def __init__(self, app, hsts: bool = False):
        super().__init__(app)
        self.hsts = hsts

    async def dispatch(self, request, call_next):
        response = await call_next(request)
        if self.hsts:
            response.headers["Strict-Transport-Security"] = HSTS
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response
