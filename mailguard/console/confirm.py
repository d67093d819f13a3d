"""Console routes for the self-check tier: the sender confirms a message held for their own look.

``GET /c/{token}`` (the signed single-use link in the sender's held notice) shows the
message and the reasons it is held, and changes nothing (mail scanners follow links);
``POST`` confirms it (awaiting_confirmation → ready) through ``qmgr.actions.act`` with
actor ``link:<sender>``. The same confirmation is a button on the message's page for a
logged-in sender. A spent, expired or foreign token is a Japanese 404 / 410 page.

Also here, being a one-page action of its own: a manager's draft of the leak report (漏えい等報告)
for a misdelivered message (``add_incident_route``).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Form, HTTPException, Request

from ..model import STATE_LABELS, State
from ..qmgr.actions import ActionRefused, act
from ..settings import Settings
from ..store import AsyncStore, Store, TransitionError


def add_incident_route(app: FastAPI, settings: Settings, store: Store, page, acting, may_decide) -> None:
    """``POST /incident/{id}``: a manager who may decide on the message (or an admin) drafts the
    PPC 速報 for it (``incident.draft``; logged as ``incident_recorded``); the page shows the text."""
    from ..incident import draft, text

    @app.post("/incident/{queue_id}", include_in_schema=False)
    async def incident(request: Request, queue_id: str, csrf_token_field: str = Form("", alias="csrf_token")):
        user, message = await acting(request, queue_id, csrf_token_field, may_decide)
        report = await asyncio.to_thread(draft, store, queue_id, settings.zone, None, f"web:{user.username}")
        return page(request, "incident.html", user, m=message, draft=text(report, settings.zone))


def add_confirm_routes(app: FastAPI, settings: Settings, store: Store, db: AsyncStore, page, token_message,
                       csrf_ok) -> None:
    @app.get("/c/{token}", include_in_schema=False)
    async def confirm_page(request: Request, token: str):
        _, message = await token_message(token, "confirm")
        if message is None:
            return page(request, "confirm.html", None, 404, error="このリンクは無効か、期限が切れています。")
        return page(request, "confirm.html", None, m=message, token=token,
                    open=message.state is State.AWAITING_CONFIRMATION)

    @app.post("/c/{token}", include_in_schema=False)
    async def confirm(request: Request, token: str, csrf_token_field: str = Form("", alias="csrf_token")):
        if not csrf_ok(request, csrf_token_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        nonce, message = await token_message(token, "confirm")
        if message is None:
            return page(request, "confirm.html", None, 404, error="このリンクは無効か、期限が切れています。")
        if not await db.use_token(nonce):
            return page(request, "confirm.html", None, 410, m=message, error="このリンクは使用済みです。")
        try:
            message = await asyncio.to_thread(act, store, settings, message.queue_id, "confirm",
                                              f"link:{message.envelope.mail_from}")
        except (TransitionError, ActionRefused):
            return page(request, "confirm.html", None, 409, m=message,
                        error=f"送信できませんでした (状態: {STATE_LABELS[message.state]})。")
        return page(request, "confirm.html", None, m=message, done="確認しました。まもなく送信されます。")
