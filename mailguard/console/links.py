"""Console routes for download links: revoke from the console or from the sender's notice.

- ``POST /messages/{id}/revoke-links``: the sender (their own message), managers and
  admins close every open link of a message; its files are removed at once.
- ``GET /r/{token}``: the signed single-use link in the sender's link notice shows what
  it would revoke (a GET never acts: mail scanners follow links); ``POST`` revokes.
Each revocation is in the send log (``link_revoked``, actor ``web:<user>`` or
``link:<sender>``). Japanese pages; a spent or expired token is a 410 / 404 page.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from ..settings import Settings
from ..store import AsyncStore, Store


def add_link_routes(app: FastAPI, settings: Settings, store: Store, db: AsyncStore, page, acting, token_message,
                    csrf_ok, may_see) -> None:
    token_age = settings.queue_lifetime + settings.link_lifetime

    @app.post("/messages/{queue_id}/revoke-links", include_in_schema=False)
    async def revoke(request: Request, queue_id: str, csrf_token_field: str = Form("", alias="csrf_token")):
        user, _ = await acting(request, queue_id, csrf_token_field, may_see)
        await asyncio.to_thread(store.revoke_links, queue_id, f"web:{user.username}")
        return RedirectResponse(f"/messages/{queue_id}?done=revoke-links", status_code=303)

    async def revoke_message(token: str):
        return await token_message(token, "revoke", token_age)

    @app.get("/r/{token}", include_in_schema=False)
    async def revoke_link(request: Request, token: str):
        _, message = await revoke_message(token)
        if message is None:
            return page(request, "revoke.html", None, 404, error="このリンクは無効か、期限が切れています。")
        links = await db.links(message.queue_id)
        return page(request, "revoke.html", None, m=message, links=links, token=token,
                    revocable=any(link.closed is None for link in links))

    @app.post("/r/{token}", include_in_schema=False)
    async def revoke_by_link(request: Request, token: str, csrf_token_field: str = Form("", alias="csrf_token")):
        if not csrf_ok(request, csrf_token_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        nonce, message = await revoke_message(token)
        if message is None:
            return page(request, "revoke.html", None, 404, error="このリンクは無効か、期限が切れています。")
        if not await db.use_token(nonce):
            return page(request, "revoke.html", None, 410, m=message, links=await db.links(message.queue_id),
                        error="このリンクは使用済みです。")
        count = await asyncio.to_thread(store.revoke_links, message.queue_id, f"link:{message.envelope.mail_from}")
        links = await db.links(message.queue_id)
        done = (f"ダウンロードリンク {count} 件を無効にしました。相手はもうダウンロードできません。" if count
                else "無効にできるリンクはありませんでした (すでに期限切れか無効です)。")
        return page(request, "revoke.html", None, m=message, links=links, done=done)
