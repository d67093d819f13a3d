"""guard: what the internet-facing download listener refuses before any page code runs.

- More than MAILGUARD_DOWNLOAD_RATE_LIMIT requests a minute from one client address:
  429 with a Japanese page and ``Retry-After`` (RFC 6585 §4), and nothing written to the
  send log (a flood cannot grow the log or hold up the store the SMTP side shares).
- A POST without ``Content-Length`` (411) or with a body over ``MAX_BODY`` bytes (413): the
  only form posted here is a passcode and a file number, so nothing larger is ever parsed.
Pure ASGI middleware; memory is bounded (addresses idle for a minute are forgotten).
"""

from __future__ import annotations

import time
from collections import deque

MAX_BODY = 4096
WINDOW = 60.0
PAGE = ("<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>mailguard</title></head>"
        "<body><p>{}</p></body></html>")


class DownloadGuard:
    def __init__(self, app, rate_limit: int):
        self.app = app
        self.rate_limit = rate_limit
        self._seen: dict[str, deque[float]] = {}
        self._next_prune = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("", 0))[0]
        if not self._allowed(client, time.monotonic()):
            return await _refuse(send, 429, "アクセスが多すぎます。1分ほど待ってから、もう一度お試しください。",
                                 [(b"retry-after", b"60")])
        if scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            if length is None or not length.isdigit():
                return await _refuse(send, 411, "送信の形式が正しくありません。ページを開き直してください。")
            if int(length) > MAX_BODY:
                return await _refuse(send, 413, "送信の内容が大きすぎます。ページを開き直してください。")
        return await self.app(scope, receive, send)

    def _allowed(self, client: str, now: float) -> bool:
        if now >= self._next_prune:
            self._next_prune = now + WINDOW
            self._seen = {c: d for c, d in self._seen.items() if d and d[-1] > now - WINDOW}
        hits = self._seen.setdefault(client, deque())
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        if len(hits) >= self.rate_limit:
            return False
        hits.append(now)
        return True


async def _refuse(send, status: int, text: str, extra: list | None = None) -> None:
    body = PAGE.format(text).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                            (b"content-security-policy", b"default-src 'none'"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
