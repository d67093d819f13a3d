"""The review console: staff cancel or send now, managers approve or reject.

Served by ``mailguard serve`` on MAILGUARD_WEB_LISTEN, in the same process and on
the same store as the relay (FastAPI, server-rendered Jinja2 pages, no JavaScript).
Japanese throughout; readable on a phone.

Who sees what: staff see and act on their own messages only (sent as their
authenticated user or from one of their addresses); managers and admins see all
and approve or reject held messages, with a required comment, and are not offered
the approval of their own message unless ``[approval] allow_self_approval`` says so.
Every action goes through ``qmgr.actions.act`` (the one rule book) and is in the
send log as ``web:<user>``; a broken rule or a comment it cannot take is a 400 page
with the Japanese reason, never a 500.

Safety: everything a message contains is escaped (Jinja2 autoescape) and bodies
are shown as plain text only, so no markup, script or remote content from a
message ever reaches the browser. Sessions (ended server-side on logout, password
change and disable), CSRF, login throttling and HSTS over TLS: ``security``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from .. import tokens
from ..check.content.mime import attachment_name
from ..findings import CATALOGUE
from ..findings import label as finding_label
from ..model import EVENT_LABELS, FINAL_STATES, HELD_STATES, STATE_LABELS, QueuedMessage, State
from ..policy import PolicyWatcher
from ..qmgr import approvers
from ..qmgr.actions import ActionRefused, act
from ..settings import Settings
from ..store import AsyncStore, Store, TransitionError
from ..text import html_text
from ..users import User, Verifier
from .admin import add_admin_routes
from .api import add_api_routes
from .confirm import add_confirm_routes, add_incident_route
from .ops import add_ops_routes
from .links import add_link_routes
from .security import SESSION_SECONDS, LoginThrottle, SecurityHeaders, csrf_ok, csrf_token, session_key

HERE = Path(__file__).parent

ERRORS = {
    401: ("ログインが必要です", "ログインの有効期限が切れたか、ログアウトしました。もう一度ログインしてください。"),
    403: ("権限がありません", "このページを開く、またはこの操作をする権限がありません。必要なら管理者にお問い合わせください。"),
    404: ("見つかりません", "お探しのページやメールは見つかりません。すでに処理されたか、あなたが見られないものです。"),
    409: ("操作できません", ""),
    405: ("操作できません", "この方法では操作できません。"),
}
ACTION_LABELS = {"cancel": "送信を取り消しました", "release": "今すぐ送信します", "approve": "承認しました",
                 "reject": "却下しました (送信者に通知します)",
                 "confirm": "確認しました。まもなく送信されます。",
                 "approve-recorded": "承認を記録しました。もう1人、別の管理者の承認が必要です (まだ送信されません)。",
                 "revoke-links": "ダウンロードリンクを無効にしました。相手はもうダウンロードできません。"}


def create_app(settings: Settings, store: Store, policies: PolicyWatcher, db: AsyncStore | None = None,
               listeners=lambda: []) -> FastAPI:
    """The console on ``store``; ``db`` is the relay's AsyncStore (its one store thread, group
    commit), made here when the console runs alone. Composite actions (``act``) use ``store``.
    ``listeners``: () -> [(name, serving)] of the SMTP listeners, for ``/healthz``."""
    db = db if db is not None else AsyncStore(store)
    verifier = Verifier(threads=2, name="console-login")   # Argon2 never takes the default pool's threads
    app = FastAPI(title="mailguard", version="1", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  description="送信確認の API: 保留中のメールの確認・承認・却下・取り消し。"
                              "ログインしたセッションの Cookie と、変更には X-CSRF-Token ヘッダーが必要です。")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(state_label=STATE_LABELS, when=lambda ts: _when(ts, settings),
                                 recipient_label={"pending": "未送信", "delivered": "送信済み", "bounced": "不達"},
                                 finding_label=finding_label, event_label=EVENT_LABELS,
                                 default_hold=settings.hold_delay)
    throttle = LoginThrottle()
    app.add_middleware(SecurityHeaders, hsts=settings.tls_cert is not None)
    app.add_middleware(SessionMiddleware, secret_key=session_key(settings.data_dir),
                       session_cookie="mailguard_session", max_age=SESSION_SECONDS, same_site="strict",
                       https_only=settings.tls_cert is not None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def japanese_errors(request: Request, exc: StarletteHTTPException):
        """Pages answer errors in Japanese (the API keeps JSON): never a raw ``{"detail": …}`` to staff."""
        if request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == 401 and request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        title, text = ERRORS.get(exc.status_code, ("エラー", "処理できませんでした。もう一度お試しください。"))
        if exc.status_code == 409:
            text = str(exc.detail)   # TransitionError: already Japanese
        # Never touches the session: a browser's parallel /favicon.ico 404 would otherwise rewrite the
        # cookie of a login under way.
        return templates.TemplateResponse(request, "error.html", {"user": None, "csrf": "", "title": title,
                                                                  "text": text}, status_code=exc.status_code)

    async def live_user(session_id: str) -> dict | None:
        """The enabled user of a live server-side session, or None."""
        username = await db.session_user(session_id)
        row = await db.get_user(username) if username else None
        return None if row is None or row["disabled"] else row

    async def current_user(request: Request) -> User | None:
        """Checked in the store every request (logout, a new password or disabling ends a
        session at once), off the event loop: the store's lock may be held through an fsync."""
        session_id = request.session.get("sid")
        row = await live_user(session_id) if isinstance(session_id, str) else None
        if row is None:
            if request.session:
                request.session.clear()   # an ended session: the browser drops the cookie
            return None
        return User(row["username"], row["role"], tuple(row["addresses"]))

    def page(request: Request, name: str, user: User | None, status: int = 200, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"user": user, "csrf": csrf_token(request), **context},
                                          status_code=status)

    def own(user: User, message: QueuedMessage) -> bool:
        return message.auth_user == user.username or user.owns(message.envelope.mail_from)

    def may_see(user: User, message: QueuedMessage) -> bool:
        """Staff their own; a manager their groups' mail (every message when there are no groups); admins all."""
        return user.role == "admin" or own(user, message) or approvers.may_decide(policies.current, user, message)

    async def message_page(request: Request, user: User, message: QueuedMessage, status: int = 200,
                           **context) -> HTMLResponse:
        """A message's page; the approve form is not offered on one's own message (the rule
        itself is enforced by ``act``)."""
        allow_self = policies.current.approval.allow_self_approval
        required = approvers.approvals_required(policies.current, message)
        so_far = await db.approvals_of(message.queue_id) if required > 1 else ()
        return page(request, "message.html", user, status, m=message, view=await asyncio.to_thread(_view, message),
                    decides=approvers.may_decide(policies.current, user, message), required=required, so_far=so_far,
                    links=await db.links(message.queue_id), history=_history(await db.log(queue_id=message.queue_id)),
                    manager=user.role in ("manager", "admin"), own=own(user, message),
                    self_approval_refused=own(user, message) and not allow_self,
                    allow_send_now=policies.current.hold.allow_send_now, **context)

    def permitted(user: User, action: str, message: QueuedMessage) -> bool:
        """Staff cancel (and send now, if the policy allows) and confirm their own; the managers of the
        message's group (its approvers, stand-ins, escalation) and admins also approve and reject."""
        decides = approvers.may_decide(policies.current, user, message)
        return {"cancel": True, "release": decides or policies.current.hold.allow_send_now,
                "approve": decides, "reject": decides, "confirm": own(user, message)}.get(action, False)

    async def acting(request: Request, queue_id: str, csrf_field: str, allowed) -> tuple[User, QueuedMessage]:
        """The logged-in user acting on a message by a form POST: CSRF (403), login (401), and
        ``allowed(user, message)`` (404: another's message is as if it did not exist)."""
        if not csrf_ok(request, csrf_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        user = await current_user(request)
        if user is None:
            raise HTTPException(401, "login required")
        message = await db.get(queue_id)
        if message is None or not allowed(user, message):
            raise HTTPException(404, "not found")
        return user, message

    async def token_message(token: str, purpose: str = "cancel",
                            max_age: float = settings.queue_lifetime) -> tuple[str | None, QueuedMessage | None]:
        """(nonce, message) of a notice's signed link for ``purpose``; (None, None) when it is not valid."""
        found = tokens.read(settings.data_dir, token, max_age, purpose)
        message = await db.get(found[0]) if found else None
        return (found[1] if message else None), message

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request):
        return page(request, "login.html", None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, username: str = Form(""), password: str = Form(""),
                    csrf_token_field: str = Form("", alias="csrf_token")):
        if not csrf_ok(request, csrf_token_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        client = request.client.host if request.client else "-"
        keys = (f"user:{username.lower()}", f"ip:{client}")
        if throttle.locked(*keys):
            return page(request, "login.html", None, 429,
                        error="ログインの失敗が続いたため、しばらくログインできません。15分後にお試しください。")
        user = await verifier.authenticate(store, username, password)
        if user is None:
            throttle.failed(*keys)
            await asyncio.sleep(1.0)
            return page(request, "login.html", None, 401, error="ユーザー名またはパスワードが違います。")
        throttle.succeeded(*keys)
        previous = request.session.get("sid")
        if isinstance(previous, str):
            await db.close_session(previous)
        session_id = await db.open_session(user.username, SESSION_SECONDS)
        request.session.clear()
        request.session.update({"sid": session_id, "csrf": None})
        csrf_token(request)   # a fresh token for the new session
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, csrf_token_field: str = Form("", alias="csrf_token")):
        if not csrf_ok(request, csrf_token_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        session_id = request.session.get("sid")
        if isinstance(session_id, str):
            await db.close_session(session_id)   # a copy of the cookie ends too
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def overview(request: Request, state: str = "", reason: str = "", sender: str = "", older: int = 0):
        user = await current_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        manager = user.role in ("manager", "admin")
        if state and state in State.__members__.values():
            states = [State(state)]
        else:
            states = [State.AWAITING_APPROVAL] if manager and not state else [s for s in State if s not in FINAL_STATES]
        messages = await db.list(states, sender=sender or None)
        messages = [m for m in messages if may_see(user, m)]
        if reason:
            messages = [m for m in messages if any(f.code == reason for f in m.findings)]
        if older:
            messages = [m for m in messages if time.time() - m.received_at >= older * 3600]
        return page(request, "list.html", user, messages=messages, manager=manager, now=time.time(),
                    filters={"state": state, "reason": reason, "sender": sender, "older": older},
                    states=STATE_LABELS, reasons={c: CATALOGUE[c].label for c in sorted({f.code for m in messages for f in m.findings}) if c in CATALOGUE},
                    allow_send_now=policies.current.hold.allow_send_now)

    @app.get("/messages/{queue_id}", response_class=HTMLResponse, include_in_schema=False)
    async def show(request: Request, queue_id: str, done: str = ""):
        user = await current_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        message = await db.get(queue_id, content=True)
        if message is None or not may_see(user, message):
            raise HTTPException(404, "not found")     # another's message: as if it did not exist
        return await message_page(request, user, message, done=ACTION_LABELS.get(done, ""))

    @app.post("/messages/{queue_id}/{action}", include_in_schema=False)
    async def do(request: Request, queue_id: str, action: str, comment: str = Form(""),
                 csrf_token_field: str = Form("", alias="csrf_token")):
        user, message = await acting(request, queue_id, csrf_token_field, may_see)
        if not permitted(user, action, message):
            raise HTTPException(403, "not allowed")
        try:
            after = await asyncio.to_thread(act, store, settings, queue_id, action, f"web:{user.username}", comment,
                                    user=user, allow_self_approval=policies.current.approval.allow_self_approval,
                                    approvals_required=approvers.approvals_required(policies.current, message))
        except ActionRefused as exc:   # a broken rule or a comment it cannot take: the reason, in Japanese
            full = await db.get(queue_id, content=True)
            return await message_page(request, user, full or message, 400, error=str(exc))
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        if action == "approve" and after.state is State.AWAITING_APPROVAL:
            action = "approve-recorded"   # the first of two approvals: not on its way yet
        return RedirectResponse(f"/messages/{queue_id}?done={action}", status_code=303)

    @app.get("/t/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def link(request: Request, token: str):
        """A notice's cancel link: shows what it would cancel and asks to confirm (a GET
        never changes anything: mail scanners and previews follow links)."""
        _, message = await token_message(token)
        if message is None:
            return page(request, "link.html", None, 404, error="このリンクは無効か、期限が切れています。")
        return page(request, "link.html", None, m=message, token=token, cancellable=message.state in HELD_STATES)

    @app.post("/t/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def link_cancel(request: Request, token: str, csrf_token_field: str = Form("", alias="csrf_token")):
        if not csrf_ok(request, csrf_token_field):
            raise HTTPException(403, "CSRF token missing or wrong")
        nonce, message = await token_message(token)
        if message is None:
            return page(request, "link.html", None, 404, error="このリンクは無効か、期限が切れています。")
        if not await db.use_token(nonce):
            return page(request, "link.html", None, 410, m=message, error="このリンクは使用済みです。")
        try:
            message = await asyncio.to_thread(act, store, settings, message.queue_id, "cancel",
                                              f"link:{message.envelope.mail_from}")
        except TransitionError:
            return page(request, "link.html", None, 409, m=message,
                        error=f"取り消せませんでした (状態: {STATE_LABELS[message.state]})。")
        return page(request, "link.html", None, m=message, done="送信を取り消しました。このメールは送信されません。")

    add_ops_routes(app, settings, store, listeners)
    add_admin_routes(app, store, db, policies, page, current_user, csrf_ok, settings.zone)
    add_link_routes(app, settings, store, db, page, acting, token_message, csrf_ok, may_see)
    add_confirm_routes(app, settings, store, db, page, token_message, csrf_ok)
    add_incident_route(app, settings, store, page, acting,
                       lambda user, message: approvers.may_decide(policies.current, user, message))
    add_api_routes(app, settings, store, db, current_user, csrf_ok, may_see, permitted,
                   lambda message: approvers.approvals_required(policies.current, message),
                   lambda: policies.current.approval.allow_self_approval)
    return app


HISTORY = ("decided", "released", "approved", "approval_recorded", "rejected", "cancelled", "confirmed",
           "delivery", "expired", "approval_requested", "escalated", "reminded", "link_downloaded", "link_revoked",
           "link_locked")


def _history(entries) -> list[dict]:
    """Who did what to a message, when, with their comment: the send log, in people's words."""
    rows = []
    for _, e in entries:
        if e.event not in HISTORY:
            continue
        who = e.actor.split(":", 1)[1] if ":" in e.actor else ("mailguard" if e.actor == "system" else e.actor)
        what = EVENT_LABELS.get(e.event, e.event)
        told = (e.detail or {}).get("notified")
        if told:
            what += f" (通知: {', '.join(told)})"
        rows.append({"at": e.at, "what": what, "who": who,
                     "comment": (e.detail or {}).get("comment", ""), "event": e.event})
    return rows


def _when(ts: float | None, settings: Settings) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, settings.zone).strftime("%Y-%m-%d %H:%M")


def _view(message: QueuedMessage) -> dict:
    """What the page shows of a message: decoded headers, the body as text, attachment names."""
    if message.content == b"":
        return {"headers": [], "body": "(保存期間を過ぎたため、本文と添付ファイルは削除しました)", "attachments": []}
    try:
        parsed = message_from_bytes(message.content or b"", policy=default)
        headers = [(name, str(parsed.get(name, ""))) for name in ("From", "To", "Cc", "Subject", "Date")
                   if parsed.get(name)]
        body = parsed.get_body(preferencelist=("plain", "html"))
        text = ""
        if body is not None:
            text = body.get_content()
            if body.get_content_type() == "text/html":
                text = html_text(text)   # shown as text: no markup from a message reaches the page
        attachments = [attachment_name(p) or "(名前なし)" for p in parsed.iter_attachments()]
    except Exception:   # a malformed message is still reviewable from its envelope
        headers, text, attachments = [], "(本文を表示できません)", []
    return {"headers": headers, "body": text[:100_000], "attachments": attachments}
