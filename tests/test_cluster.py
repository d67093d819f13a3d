"""Several nodes, one PostgreSQL (a real server: Debian's package, started by ``tests/pg.py``).

A care corporation runs two mailguard nodes on one database: mail sent to either is delivered
once; a hold ends once; a person's action through one node stops the message the other holds;
a node killed mid-delivery loses nothing: the other delivers its messages once their lease
expires, and the send log stays one verifiable chain.
"""

from __future__ import annotations

import collections
import shutil
import smtplib
import threading

import psycopg
import pytest
from conftest import INTERNAL, REGISTERED, STAFF, Relay, relay_env, send, wait_for

LEASE = "3"   # seconds: a killed node's messages are taken over this long after its last renewal


@pytest.fixture
def cluster(tmp_path, upstream, dns_server, postgres):
    """``make(name, **env)``: a node with its own data dir, on the shared database ``url``."""
    url = postgres.database()
    nodes: list[Relay] = []

    def make(name: str, *, own_key: bool = False, lease: str = LEASE, **extra: str) -> Relay:
        home = tmp_path / name
        (home / "var").mkdir(parents=True, mode=0o700)
        if nodes and not own_key:   # every node signs the log's checkpoints with one key (README)
            shutil.copy2(nodes[0].tmp / "var" / "checkpoint.key", home / "var" / "checkpoint.key")
        env = relay_env(home, 0, upstream, dns_server.port, MAILGUARD_DATABASE_URL=url,
                        MAILGUARD_LEASE_SECONDS=lease, MAILGUARD_HOSTNAME=f"{name}.mailguard.test", **extra)
        node = Relay(home, env, 0)
        nodes.append(node)
        return node.start()

    make.url = url
    yield make
    for node in nodes:
        node.stop()


def _send_many(nodes: list[Relay], count: int, sessions: int = 8) -> None:
    """``count`` messages over ``sessions`` SMTP sessions, spread over the nodes, each to its own
    recipient ``c<n>@`` (several messages per session, as a busy office's clients send)."""
    def session(first: int) -> None:
        node = nodes[first % len(nodes)]
        with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as client:
            for n in range(first, count, sessions):
                client.sendmail(STAFF, [f"c{n}@{INTERNAL}"], f"Subject: {n}\r\n\r\nケアプラン {n}\r\n".encode())

    threads = [threading.Thread(target=session, args=(s,)) for s in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_thousand_messages_to_two_nodes_are_each_delivered_once(cluster, upstream):
    # a receiver process beside serve, on PostgreSQL too; leases long enough that a renewal slowed by
    # the load (two suites on two cores) is never mistaken for a dead node
    a = cluster("a", MAILGUARD_PROCESSES="2", lease="30")
    b = cluster("b", lease="30")
    _send_many([a, b], 1000)
    wait_for(lambda: len(upstream.messages) >= 1000, timeout=120, what="1000 deliveries")
    counts = collections.Counter(m.rcpt_tos[0] for m in upstream.messages)
    assert counts == {f"c{n}@{INTERNAL}": 1 for n in range(1000)}
    wait_for(lambda: a.store.state_counts() == {"delivered": 1000}, what="every outcome stored")
    assert "delivered via" in a.log() and "delivered via" in b.log()   # both nodes did the work
    assert a.store.verify_log() == (a.store._conn.execute("SELECT count(*) FROM send_log").fetchone()[0], None)


def test_holds_end_once_and_a_cancel_through_one_node_stops_what_the_other_holds(cluster, upstream):
    a = cluster("a", MAILGUARD_HOLD_DELAY="8")   # long enough to cancel one before the holds end
    b = cluster("b", MAILGUARD_HOLD_DELAY="8")
    held = [send(b, [REGISTERED], subject=f"紹介状 {n}") for n in range(6)]
    for queue_id in held:
        assert b.wait_decided(queue_id) == "delayed"
    a.cli("queue", "cancel", held[0])                           # the sender cancels, through node A
    assert a.state(held[0]) == "cancelled"
    wait_for(lambda: len(upstream.to(REGISTERED)) == 5, timeout=30, what="the other five delivered")
    wait_for(lambda: all(a.state(q) == "delivered" for q in held[1:]), what="delivered state")
    subjects = sorted(str(m.message["Subject"]) for m in upstream.to(REGISTERED))
    assert subjects == [f"紹介状 {n}" for n in range(1, 6)]     # the cancelled one never left
    for queue_id in held[1:]:
        assert [e.event for e in a.events(queue_id)].count("released") == 1   # once, by one node


def test_a_node_killed_mid_delivery_loses_nothing_and_the_other_delivers_after_its_lease(cluster, upstream):
    a = cluster("a")
    upstream.hang.set()
    sent = [send(a, [f"leased{n}@{INTERNAL}"]) for n in range(3)]
    assert upstream.data_started.wait(5)
    wait_for(lambda: all(a.state(q) == "delivering" for q in sent), what="all three being delivered")
    a.kill()
    b = cluster("b")
    upstream.hang.clear()
    for n in range(3):
        upstream.wait_to(f"leased{n}@{INTERNAL}", timeout=20)
    # only B can have stored "delivered" (A is dead; A's stalled sessions may reach the upstream too)
    wait_for(lambda: all(b.state(q) == "delivered" for q in sent), timeout=20, what="delivered by node B")
    for queue_id in sent:
        assert "recovered" in [e.event for e in b.events(queue_id)]
    assert b.store.verify_log()[1] is None                      # one chain, written by both nodes
    b.stop()                                                    # B signs the log at stop, with A's key
    _, problems, _ = b.store.verify_with_key(_public_key(a))
    assert problems == []


def test_a_node_with_a_key_of_its_own_is_told_to_copy_the_first_ones(cluster, upstream):
    a = cluster("a")
    send(a, [f"colleague@{INTERNAL}"])
    wait_for(lambda: a.store.last_checkpoint_signed_by(_public_key(a)), what="a checkpoint signed by A")
    a.stop()                                                    # B takes the sweeps over at once
    b = cluster("b", own_key=True)
    wait_for(lambda: "signed by another node's key" in b.log(), what="the key warning")


def _public_key(node: Relay):
    from mailguard.store import checkpoints

    return checkpoints.signing_key(node.tmp / "var").public_key()


def test_the_shared_log_is_append_only_and_a_newer_schema_is_refused(cluster, postgres):
    from mailguard.store import Store
    from mailguard.store.db import SCHEMA_VERSION, SchemaTooNew

    a = cluster("a")
    send(a, [f"colleague@{INTERNAL}"])
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE send_log SET actor = 'someone-else'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM send_log")
    a.stop()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("UPDATE mailguard_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match=f"スキーマ {SCHEMA_VERSION + 1}"):
        Store(cluster.url)
    refused = a.cli("queue", "list", check=False)
    assert refused.returncode != 0 and f"スキーマ {SCHEMA_VERSION + 1}" in refused.stderr


def test_a_database_restart_is_a_temporary_failure_and_the_node_carries_on(tmp_path, upstream, dns_server):
    from pg import PostgresServer

    server = PostgresServer().start()   # its own server: this story stops it
    try:
        home = tmp_path / "a"
        home.mkdir()
        node = Relay(home, relay_env(home, 0, upstream, dns_server.port, MAILGUARD_DATABASE_URL=server.database(),
                                     MAILGUARD_LEASE_SECONDS=LEASE), 0).start()
        send(node, [f"before@{INTERNAL}"])
        upstream.wait_to(f"before@{INTERNAL}")
        server._run("pg_ctl", "-D", str(server.root / "data"), "-m", "fast", "-w", "stop")
        with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:   # never a 250 it could not store
                client.sendmail(STAFF, [f"during@{INTERNAL}"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 451
        server._run("pg_ctl", "-D", str(server.root / "data"), "-l", str(server.root / "server.log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.root} -c fsync=off", "-w", "start")
        wait_for(lambda: _accepts(node), timeout=20, what="mail accepted again")
        upstream.wait_to(f"after@{INTERNAL}")
        assert node.proc.poll() is None
        node.stop()
    finally:
        server.stop()


def _accepts(node: Relay) -> bool:
    try:
        send(node, [f"after@{INTERNAL}"])
        return True
    except smtplib.SMTPException:
        return False


def test_a_password_guesser_gets_no_more_tries_for_there_being_two_nodes(cluster, certificate):
    from test_smtp_hardening import PASSWORD, _auth, _smtp

    from mailguard.users import hash_password

    cert, key = certificate
    tls = {"MAILGUARD_TLS_CERT": str(cert), "MAILGUARD_TLS_KEY": str(key), "MAILGUARD_TRUSTED_NETWORKS": "127.0.0.2/32"}
    a = cluster("a", **tls)
    b = cluster("b", **tls)
    a.store.add_user("kaigo-taro", hash_password(PASSWORD), "staff", [STAFF], "test:admin")
    replies = []
    for n in range(4):                               # 8 wrong passwords, alternating between the nodes
        for node in (a, b):
            with _smtp(node) as client:
                replies.append(_auth(client, "kaigo-taro", f"guess-{n}"))
    # each node saw 4, under its own limit of 5: counted apart they would all have been checked
    assert 5 <= replies.count(535) <= 6 and replies[-1] == 454, replies
    for node in (a, b):
        def locked(node=node) -> bool:               # a lockout reaches the other node within a second
            with _smtp(node, "127.0.0.3") as client:
                return _auth(client, "kaigo-taro", PASSWORD) == 454
        wait_for(locked, timeout=5, what=f"the lockout on node {node.tmp.name}")


def test_the_cli_refuses_an_empty_database_and_db_migrate_makes_the_tables(tmp_path, upstream, dns_server, postgres):
    home = tmp_path / "admin"
    home.mkdir()
    admin = Relay(home, relay_env(home, 0, upstream, dns_server.port, MAILGUARD_DATABASE_URL=postgres.database()), 0)
    refused = admin.cli("queue", "list", check=False)      # a wrong URL must not report "0 通" from nothing
    assert refused.returncode != 0 and "mailguard の記録がありません" in refused.stderr
    assert "スキーマ 0 →" in admin.cli("db", "migrate").stdout
    assert "0 通" in admin.cli("queue", "list").stdout


def test_an_attempt_recorded_after_its_lease_was_taken_over_does_not_overwrite_the_new_one(postgres):
    import time

    from mailguard.model import Action, Envelope, RecipientStatus, State, Submission, Verdict
    from mailguard.store import LeaseLost, LogEntry, Store

    url = postgres.database()
    a, b = Store(url, node="a"), Store(url, node="b")
    a.accept(Submission("Q1", Envelope(STAFF, (f"c@{INTERNAL}",)), b"Subject: x\r\n\r\nx\r\n", None, "127.0.0.1",
                        "pc", "<m@x>", "x"), lifetime=3600)
    a.apply_verdict("Q1", Verdict(Action.DELIVER, None, ()), State.READY)
    now = time.time()
    assert a.claim("Q1", lease=5, now=now).state is State.DELIVERING
    assert b.recover(now=now + 10) == ["Q1"]                    # A stopped renewing: B takes it back
    assert b.claim("Q1", lease=60, now=now + 10) is not None
    delivered = {f"c@{INTERNAL}": (RecipientStatus.DELIVERED, "250 ok")}
    with pytest.raises(LeaseLost):                              # A wakes up: its outcome is not B's
        a.finish("Q1", State.DELIVERED, delivered, LogEntry(event="delivery", queue_id="Q1"))
    b.finish("Q1", State.DELIVERED, delivered, LogEntry(event="delivery", queue_id="Q1"))
    assert b.get("Q1").state is State.DELIVERED
    assert [e.event for _, e in b.log(queue_id="Q1")].count("delivery") == 1
