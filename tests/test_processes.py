"""MAILGUARD_PROCESSES=2 on SQLite: a receiver process beside serve takes mail on the same port
(SO_REUSEPORT); nothing accepted is lost when serve is killed -9, and the receivers go with it."""

from __future__ import annotations

import os
import re
import smtplib

from conftest import INTERNAL, STAFF, send, wait_for


def _receiver_pids(relay) -> list[int]:
    return [int(pid) for pid in re.findall(r"SMTP receiver \d+ started \(pid (\d+)\)", relay.log())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:   # a zombie is gone for our purpose
        return stat.read().split()[2] != "Z"


def test_every_message_accepted_by_any_process_is_delivered_once(make_relay, upstream):
    import httpx

    from conftest import free_port, listening

    web = free_port()
    relay = make_relay(MAILGUARD_PROCESSES="2", MAILGUARD_WEB_LISTEN=f"127.0.0.1:{web}").start()
    wait_for(lambda: "SMTP receiver 1 (pid" in relay.log() and listening(web), what="the receiver listening")
    health = httpx.get(f"http://127.0.0.1:{web}/healthz").json()
    assert health["status"] == "ok" and health["listeners"]["receiver 1"] == "ok"
    for n in range(20):   # a connection each: the kernel spreads them over both processes
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail(STAFF, [f"c{n}@{INTERNAL}"], f"Subject: {n}\r\n\r\nhello\r\n".encode())
    wait_for(lambda: len(upstream.messages) == 20, timeout=20, what="20 deliveries")
    assert sorted(m.rcpt_tos[0] for m in upstream.messages) == sorted(f"c{n}@{INTERNAL}" for n in range(20))
    metrics = httpx.get(f"http://127.0.0.1:{web}/metrics").text   # what both processes accepted
    assert any(line.startswith("mailguard_messages_accepted_total") and line.endswith(" 20.0")
               for line in metrics.splitlines()), metrics
    assert relay.stop() == 0
    assert not any(_alive(pid) for pid in _receiver_pids(relay))


def test_sigkill_of_serve_mid_delivery_loses_nothing_and_takes_the_receivers(make_relay, upstream):
    relay = make_relay(MAILGUARD_PROCESSES="2").start()
    wait_for(lambda: _receiver_pids(relay), what="a receiver")
    upstream.hang.set()
    queue_id = send(relay, [f"colleague@{INTERNAL}"])
    assert upstream.data_started.wait(5)
    receivers = _receiver_pids(relay)
    relay.kill()
    wait_for(lambda: not any(_alive(pid) for pid in receivers), what="the receivers gone with serve")
    upstream.hang.clear()
    relay.start()
    upstream.wait_to(f"colleague@{INTERNAL}", timeout=10)
    wait_for(lambda: relay.state(queue_id) == "delivered", what="delivered state")
    assert "recovered" in [e.event for e in relay.events(queue_id)]
