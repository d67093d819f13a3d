"""What a monitoring system sees: /metrics counts what was sent, /healthz says the relay is up."""

from __future__ import annotations

import re

import httpx

from conftest import INTERNAL, free_port, listening, send, wait_for


def _relay(make_relay, **env):
    web = free_port()
    relay = make_relay(MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}", **env).start()
    wait_for(lambda: listening(web), what="the console")
    return relay, f"http://127.0.0.1:{web}"


def _value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def test_metrics_count_what_was_accepted_and_delivered(make_relay, upstream):
    relay, web = _relay(make_relay)
    for n in range(2):
        send(relay, [f"colleague{n}@{INTERNAL}", f"other{n}@{INTERNAL}"])
    wait_for(lambda: len(upstream.messages) == 2, what="two deliveries")
    wait_for(lambda: _value(httpx.get(f"{web}/metrics").text, "mailguard_messages", state="delivered") == 2,
             what="two delivered messages in /metrics")
    reply = httpx.get(f"{web}/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert _value(text, "mailguard_messages_accepted_total") == 2
    assert _value(text, "mailguard_recipient_results_total", result="delivered") == 4
    assert _value(text, "mailguard_delivery_seconds_count") == 2
    assert "colleague" not in text and INTERNAL not in text            # counts only, never an address


def test_metrics_answer_only_the_monitoring_network(make_relay, upstream):
    relay, web = _relay(make_relay, MAILGUARD_METRICS_NETWORKS="192.0.2.0/24")
    assert httpx.get(f"{web}/metrics").status_code == 403
    assert httpx.get(f"{web}/healthz").status_code == 200


def test_healthz_says_the_database_and_every_listener_are_up(make_relay, upstream):
    relay, web = _relay(make_relay, MAILGUARD_SMTP_LISTEN="127.0.0.1:0,127.0.0.1:0")
    reply = httpx.get(f"{web}/healthz")
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "ok" and body["database"] == "ok"
    assert len(body["listeners"]) == 2 and set(body["listeners"].values()) == {"ok"}
