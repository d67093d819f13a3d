"""A deployment's configuration: the CLI reads what the server reads, never makes an empty
database where there is none, and two servers never share one SQLite data dir."""

from __future__ import annotations

import subprocess
import sys

from conftest import INTERNAL, STAFF, send, sqlite_only, wait_for


def _cli(env: dict, cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailguard", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_from_another_folder_refuses_to_make_an_empty_database(make_relay, tmp_path):
    relay = make_relay()
    sqlite_only(relay, "where the CLI looks for the file")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in relay.env.items() if k != "MAILGUARD_DATA_DIR"}   # as from a fresh shell
    result = _cli(env, elsewhere, "queue", "list")
    assert result.returncode == 2 and "データベースがありません" in result.stderr
    assert str(elsewhere / "var" / "mailguard.sqlite3") in result.stderr
    assert not (elsewhere / "var").exists()                                    # nothing made


def test_the_cli_reads_the_servers_configuration_file(make_relay, upstream, tmp_path):
    relay = make_relay().start()
    send(relay, [f"colleague@{INTERNAL}"])
    wait_for(lambda: any(e.event == "delivery" for e in relay.events()), what="a delivery")
    config = tmp_path / "mailguard.env"
    config.write_text(f"MAILGUARD_DATA_DIR={relay.env['MAILGUARD_DATA_DIR']}\n"
                      f"MAILGUARD_POLICIES_DIR={relay.env['MAILGUARD_POLICIES_DIR']}\n")
    env = {k: v for k, v in relay.env.items() if k not in ("MAILGUARD_DATA_DIR", "MAILGUARD_POLICIES_DIR")}
    env["MAILGUARD_CONFIG"] = str(config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = _cli(env, elsewhere, "queue", "list", "--all")
    assert listing.returncode == 0 and "1 通" in listing.stdout, listing.stderr
    env["MAILGUARD_CONFIG"] = str(tmp_path / "missing.env")
    missing = _cli(env, elsewhere, "queue", "list")
    assert missing.returncode == 2 and "MAILGUARD_CONFIG: file not found" in missing.stderr


def test_a_second_server_on_the_same_data_dir_refuses_to_start_and_names_the_first(make_relay):
    relay = make_relay().start()
    second = subprocess.run([sys.executable, "-m", "mailguard", "serve"], env=relay.env, cwd=relay.tmp,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"PID {relay.proc.pid}" in second.stderr and "2 つ目のサーバーは起動できません" in second.stderr
    relay.kill()                                           # the lock dies with its process, even on kill -9
    relay.start()


def test_a_database_from_a_newer_mailguard_is_refused_and_an_older_one_migrated(make_relay, tmp_path):
    import sqlite3

    from mailguard.store.db import SCHEMA_VERSION

    relay = make_relay().start()
    sqlite_only(relay, "the version is edited in the file (PostgreSQL: test_cluster.py)")
    relay.stop()
    database = tmp_path / "var" / "mailguard.sqlite3"
    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute("PRAGMA user_version = 0")                     # as an older release left it
    conn.commit()
    migrated = relay.cli("db", "migrate")
    assert f"スキーマ 0 → {SCHEMA_VERSION}" in migrated.stdout
    assert "更新は不要" in relay.cli("db", "migrate").stdout
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")   # as a newer release left it
    conn.commit()
    conn.close()
    refused = subprocess.run([sys.executable, "-m", "mailguard", "serve"], env=relay.env, cwd=relay.tmp,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"スキーマ {SCHEMA_VERSION + 1}" in refused.stderr
    assert "更新してください" in _cli(relay.env, relay.tmp, "queue", "list").stderr


def test_a_version_2_database_keeps_its_messages_when_the_bodies_move_to_their_own_table(tmp_path):
    import sqlite3

    from mailguard.model import Envelope, Submission
    from mailguard.store import Store

    database = tmp_path / "mailguard.sqlite3"
    store = Store(database)
    store.accept(Submission("Q1", Envelope(STAFF, (f"c@{INTERNAL}",)), b"Subject: x\r\n\r\nbody\r\n", None,
                            "127.0.0.1", "pc", "<m@x>", "x"), lifetime=3600)
    store.close()
    conn = sqlite3.connect(database)                            # as mailguard before schema 3 kept it
    conn.execute("ALTER TABLE messages ADD COLUMN content BLOB NOT NULL DEFAULT x''")
    conn.execute("ALTER TABLE messages ADD COLUMN original_content BLOB")
    conn.execute("UPDATE messages SET content = (SELECT content FROM message_bodies b"
                 " WHERE b.queue_id = messages.queue_id)")
    conn.execute("DELETE FROM message_bodies")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = Store(database)
    assert store.migrated == (2, 3)
    assert store.get("Q1", content=True).content == b"Subject: x\r\n\r\nbody\r\n"
    assert "content" not in store._backend.columns("messages")
    store.close()
