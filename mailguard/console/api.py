"""JSON API for the same actions as the pages, described at /api/openapi.json.

Authentication is the console's session (log in at /login); every state-changing
call carries the session's CSRF token in ``X-CSRF-Token`` (GET /api/v1/session
returns it). The same rules as the pages: staff see and act on their own
messages only; managers approve and reject, never their own message unless the
policy allows it; actions go through ``qmgr.actions.act`` and are logged as
``web:<user>``. A broken rule or an unusable comment is a 422 whose ``detail`` is the
Japanese reason. A session ended by logout, a password change or disabling the user
is a 401. Detected numbers appear only masked, as everywhere.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field

from ..model import FINAL_STATES, QueuedMessage, State
from ..qmgr.actions import ActionRefused, act
from ..store import TransitionError


class FindingOut(BaseModel):
    code: str
    severity: str
    subject: str
    text: str = Field(description="説明 (日本語)")
    suggestion: str = ""


class RecipientOut(BaseModel):
    address: str
    status: str
    reply: str
    deliver_to: str | None = None


class MessageOut(BaseModel):
    queue_id: str
    state: str
    subject: str
    mail_from: str = Field(description="envelope sender (MAIL FROM); empty for <>")
    auth_user: str | None
    recipients: list[RecipientOut]
    received_at: float = Field(description="POSIX seconds")
    release_at: float | None = Field(description="when a delayed message leaves (POSIX seconds)")
    findings: list[FindingOut]


class SessionOut(BaseModel):
    username: str
    role: str
    csrf_token: str


class ActionIn(BaseModel):
    comment: str = Field(default="", description="required to approve or reject; at most 2,000 characters")


def _out(m: QueuedMessage) -> MessageOut:
    return MessageOut(
        queue_id=m.queue_id, state=str(m.state), subject=m.subject, mail_from=m.envelope.mail_from,
        auth_user=m.auth_user, received_at=m.received_at, release_at=m.release_at,
        recipients=[RecipientOut(address=r.address, status=str(r.status), reply=r.reply, deliver_to=r.deliver_to)
                    for r in m.recipients],
        findings=[FindingOut(**f.to_dict()) for f in m.findings],
    )


def add_api_routes(app: FastAPI, settings, store, db, current_user, csrf_ok, may_see, permitted, approvals_required,
                   allow_self_approval) -> None:
    async def user_of(request: Request):
        user = await current_user(request)
        if user is None:
            raise HTTPException(401, "login required")
        return user

    @app.get("/api/v1/session", response_model=SessionOut, tags=["session"])
    async def session(request: Request):
        """The logged-in user and the CSRF token for state-changing calls."""
        from .security import csrf_token

        user = await user_of(request)
        return SessionOut(username=user.username, role=user.role, csrf_token=csrf_token(request))

    @app.get("/api/v1/messages", response_model=list[MessageOut], tags=["messages"])
    async def messages(request: Request, state: State | None = None, reason: str = "", sender: str = ""):
        """Messages you may see: by default those not yet finished; ``reason`` filters by finding code."""
        user = await user_of(request)
        states = [state] if state else [s for s in State if s not in FINAL_STATES]
        found = await db.list(states, sender=sender or None)
        return [_out(m) for m in found if may_see(user, m)
                and (not reason or any(f.code == reason for f in m.findings))]

    @app.get("/api/v1/messages/{queue_id}", response_model=MessageOut, tags=["messages"])
    async def message(request: Request, queue_id: str):
        user = await user_of(request)
        found = await db.get(queue_id)
        if found is None or not may_see(user, found):
            raise HTTPException(404, "not found")
        return _out(found)

    @app.post("/api/v1/messages/{queue_id}/{action}", response_model=MessageOut, tags=["messages"],
              responses={403: {"description": "not allowed, or CSRF token missing"},
                         404: {"description": "no such message (or not yours)"},
                         409: {"description": "not in a state that allows it"},
                         422: {"description": "refused: detail gives the reason in Japanese "
                                              "(no comment, too long a comment, one's own message)"}})
    async def perform(request: Request, queue_id: str, action: Literal["cancel", "release", "approve", "reject", "confirm"],
                      body: ActionIn, x_csrf_token: str = Header("")):
        """cancel and confirm (own), release = send now (own, if the policy allows), approve / reject
        (the managers of the message's group)."""
        if not csrf_ok(request, x_csrf_token):
            raise HTTPException(403, "CSRF token missing or wrong")
        user = await user_of(request)
        found = await db.get(queue_id)
        if found is None or not may_see(user, found):
            raise HTTPException(404, "not found")
        if not permitted(user, action, found):
            raise HTTPException(403, "not allowed")
        if any("\ud800" <= ch <= "\udfff" for ch in body.comment):   # JSON can carry lone surrogates; forms cannot
            raise HTTPException(422, "コメントに使えない文字が含まれています。入力し直してください。")
        try:
            done = await asyncio.to_thread(act, store, settings, queue_id, action, f"web:{user.username}",
                                           body.comment, user=user, allow_self_approval=allow_self_approval(),
                                           approvals_required=approvals_required(found))
        except ActionRefused as exc:
            raise HTTPException(422, str(exc)) from None
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        return _out(done)
