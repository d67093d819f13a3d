"""webhooks: tell a chat (Microsoft Teams, Slack, or any JSON endpoint) that mail waits for a person.

Receives a step (``approval_requested``, ``escalated``, ``reminded``), the message and the
policy's ``notify.toml [[webhook]]`` list. Hands on one HTTPS POST per webhook that asked
for the step (httpx, 10 s timeout, 3 tries 1 s / 4 s apart). What is sent is what a chat
outside the office may see: the queue id, the sender's login name (or domain), the recipients' domains, the
reasons' labels and the console link; never the subject, the body or a full recipient
address (a subject can itself be personal data).
Payloads: generic JSON (``payload``); Teams incoming webhook MessageCard
(``@type: MessageCard`` with an OpenUri action); Slack incoming webhook (``text`` + ``blocks``).
On failure: logged with the queue id and the webhook's name; mail notices are unaffected.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from ..findings import label
from ..model import QueuedMessage
from ..policy.files import Webhook
from ..settings import Settings

log = logging.getLogger("mailguard.qmgr")
TITLES = {"approval_requested": "承認待ちのメールがあります", "escalated": "承認待ちのメールが決まらないままです (上位へ)",
          "reminded": "まだ承認待ちのメールがあります"}
RETRIES = (1.0, 4.0)


def payload(step: str, message: QueuedMessage, settings: Settings) -> dict:
    """The facts, as the generic format sends them."""
    return {
        "event": step, "title": TITLES[step], "queue_id": message.queue_id,
        # the login name, else only the sender's domain: a full address is personal data
        "sender": message.auth_user or "@" + message.envelope.mail_from.rpartition("@")[2],
        "recipient_domains": sorted({r.rpartition("@")[2].lower() for r in message.envelope.rcpt_tos}),
        "recipients": len(message.envelope.rcpt_tos),
        "reasons": list(dict.fromkeys(label(f.code) for f in message.findings)),
        "received_at": message.received_at,
        "url": f"{settings.console_url}/messages/{message.queue_id}" if settings.console_url else None,
    }


def formatted(hook: Webhook, facts: dict) -> dict:
    text = (f"送信者: {facts['sender'] or '<>'} / 宛先: {', '.join(facts['recipient_domains'])}"
            f" ({facts['recipients']} 件) / 理由: {'、'.join(facts['reasons'])}")
    if hook.format == "teams":
        card = {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": facts["title"],
                "themeColor": "9A6700", "title": facts["title"], "text": text}
        if facts["url"]:
            card["potentialAction"] = [{"@type": "OpenUri", "name": "確認画面を開く",
                                        "targets": [{"os": "default", "uri": facts["url"]}]}]
        return card
    if hook.format == "slack":
        link = f"\n<{facts['url']}|確認画面を開く>" if facts["url"] else ""
        return {"text": f"{facts['title']}: {text}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{facts['title']}*\n{text}{link}"}}]}
    return facts


async def notify(hooks: tuple[Webhook, ...], step: str, message: QueuedMessage, settings: Settings) -> None:
    """POST to every webhook that wants ``step``; never raises."""
    wanted = [h for h in hooks if step in h.events]
    if not wanted:
        return
    facts = payload(step, message, settings)
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        await asyncio.gather(*(_post(client, hook, formatted(hook, facts), message.queue_id) for hook in wanted))


async def _post(client: httpx.AsyncClient, hook: Webhook, body: dict, queue_id: str) -> None:
    for wait in (*RETRIES, None):
        try:
            response = await client.post(hook.url, json=body)
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if wait is None:
            log.warning("%s: webhook %s failed: %s", queue_id, hook.name or hook.format, problem)
            return
        await asyncio.sleep(wait)
