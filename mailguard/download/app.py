"""The download pages: one page per link (GET shows it), one POST per file (passcode checked).

Every value shown comes from the store or the address book and is escaped by
Jinja2; the files are served only as attachments (``application/octet-stream``,
nosniff), so nothing a sender attached is ever rendered on this origin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from .. import vault
from ..httpheaders import SecurityHeaders
from ..notices import compose
from ..settings import Settings
from ..store import AsyncStore, Link
from ..text import one_line
from .guard import DownloadGuard

log = logging.getLogger("mailguard.download")
HERE = Path(__file__).parent
GONE = {"revoked": "送信者がこのリンクを無効にしました。", "expired": "このリンクの有効期限が過ぎました。",
        "locked": "パスコードの誤りが続いたため、このリンクはロックされました。送信者にお問い合わせください。",
        "withdrawn": "このリンクは無効です。", "used": "ダウンロードできる回数の上限に達しました。"}


def create_download_app(settings: Settings, db: AsyncStore) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(when=lambda ts: _when(ts, settings), size=_size)
    app.add_middleware(SecurityHeaders, hsts=settings.tls_cert is not None)
    app.add_middleware(DownloadGuard, rate_limit=settings.download_rate_limit)   # outermost: before parsing
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, status: int, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, "download.html", context, status_code=status)

    def access(request: Request) -> dict:
        return {"client": request.client.host if request.client else "",
                "user_agent": one_line(request.headers.get("user-agent", ""), 300)}

    async def find(link_id: str, secret: str) -> Link | None:
        link = await db.get_link(link_id) if len(link_id) < 64 and len(secret) < 128 else None
        if link is None or not vault.secret_matches(secret, link.secret_hash) or link.sent_at is None:
            return None
        return link

    def gone(link: Link, now: float) -> str | None:
        if link.closed:
            return GONE.get(link.closed, GONE["withdrawn"])
        if link.expires_at is None or now >= link.expires_at:
            return GONE["expired"]
        if link.downloads >= link.max_downloads:
            return GONE["used"]
        return None

    @app.get("/d/{link_id}/{secret}", response_class=HTMLResponse)
    async def show(request: Request, link_id: str, secret: str):
        """The page. Changes nothing but the access record (a prefetching scanner is a view)."""
        link = await find(link_id, secret)
        if link is None:
            return page(request, 404, error="このリンクは無効です。アドレスが正しいかご確認ください。")
        why = gone(link, time.time())
        await db.record_use(link_id, "link_viewed", {**access(request), **({"refused": why} if why else {})})
        if why:
            return page(request, 410, error=why)
        return page(request, 200, link=link)

    locks: dict[str, asyncio.Lock] = {}

    @app.post("/d/{link_id}/{secret}")
    async def download(request: Request, link_id: str, secret: str, file: int = Form(-1),
                       passcode: str = Form("")):
        """One file. Tries on one link are taken one at a time, each reading the failures counted
        so far: concurrent guesses get no more than MAILGUARD_LINK_MAX_PASSCODE_FAILURES."""
        lock = locks.setdefault(link_id, asyncio.Lock())
        try:
            async with lock:
                return await _download(request, link_id, secret, file, passcode)
        finally:
            if not lock.locked() and locks.get(link_id) is lock:
                locks.pop(link_id, None)

    async def _download(request: Request, link_id: str, secret: str, file: int, passcode: str):
        link = await find(link_id, secret)
        if link is None:
            return page(request, 404, error="このリンクは無効です。アドレスが正しいかご確認ください。")
        why = gone(link, time.time())
        if why:   # the same answer whatever passcode came: a closed link is no oracle
            return page(request, 410, error=why)
        if not 0 <= file < len(link.files):
            return page(request, 400, link=link, error="ファイルを選んでください。")
        try:
            data_key = vault.unwrap(link.wrapped_key, link_id, secret, passcode if link.passcode != "none" else "")
        except vault.Unopenable:
            return await _wrong_passcode(request, link, access(request))
        used = await db.record_use(link_id, "link_downloaded", {**access(request), "file": link.files[file]["name"]})
        if used is None:   # closed or used up between the page and the click
            return page(request, 410, error=GONE["used"])
        blob = await asyncio.to_thread(db.store.read_blob, link.queue_id, file)   # not on the store's thread
        data = await asyncio.to_thread(vault.unseal, data_key, blob, vault.file_aad(link.queue_id, file))
        name = link.files[file]["name"]
        return Response(data, media_type="application/octet-stream", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"})

    async def _wrong_passcode(request: Request, link: Link, who: dict) -> HTMLResponse:
        after = await db.record_use(link.link_id, "link_passcode_failed", who)
        if after is not None and after.closed == "locked":
            if link.closed is None:   # this failure locked it: the sender is told once
                await _tell_sender(db, settings, after)
            return page(request, 410, error=GONE["locked"])
        left = max(0, link.max_failures - (after.failures if after else link.max_failures))
        return page(request, 403, link=after or link,
                    error=f"パスコードが違います。あと {left} 回間違えると、このリンクはロックされます。")

    return app


async def _tell_sender(db: AsyncStore, settings: Settings, link: Link) -> None:
    try:
        message = await db.get(link.queue_id)
        notice = compose.link_locked(message, link.recipient, settings) if message else None
        if notice is not None:
            await db.accept(notice, lifetime=settings.queue_lifetime)
    except Exception:   # the lock holds without the notice; the send log has the event
        log.exception("%s: could not tell the sender that link %s locked", link.queue_id, link.link_id)


def _when(ts: float | None, settings: Settings) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, settings.zone).strftime("%Y年%m月%d日 %H:%M")


def _size(n: int) -> str:
    return f"{n:,} バイト" if n < 1024 else f"{n / 1024:,.0f} KB" if n < 1024 * 1024 else f"{n / 1048576:,.1f} MB"
