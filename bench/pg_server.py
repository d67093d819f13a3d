"""Helpers for bench/relay_throughput.sh (PostgreSQL rows and the result table).

    pg_server.py start                  a private PostgreSQL (fsync on); prints "ROOT URL"
    pg_server.py stop ROOT              stops it and removes its directory
    pg_server.py database URL           a fresh database on it; prints its URL
    pg_server.py delivered TARGET       messages delivered (SQLite file or postgresql:// URL)
    pg_server.py table TIMES MESSAGES   the rows side by side, with the ratio to Postfix
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main(command: str, *args: str) -> None:
    from pg import PostgresServer, binaries

    if command == "start":
        server = PostgresServer(durable=True).start()
        print(server.root, server.url())
    elif command == "stop":
        server = PostgresServer.__new__(PostgresServer)
        server.bin, server.root = binaries(), Path(args[0])
        server.stop()
    elif command == "database":
        import psycopg

        name = "b_" + uuid.uuid4().hex[:8]
        with psycopg.connect(args[0], autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        print(args[0].rsplit("/", 1)[0] + "/" + name)
    elif command == "delivered":
        print(_delivered(args[0]))
    elif command == "table":
        _table(args[0], int(args[1]))


def _delivered(target: str) -> int:
    if target.startswith("postgres"):
        import psycopg

        with psycopg.connect(target) as conn:
            return conn.execute("SELECT count(*) FROM messages WHERE state = 'delivered'").fetchone()[0]
    import sqlite3

    db = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30)
    return db.execute("SELECT count(*) FROM messages WHERE state = 'delivered'").fetchone()[0]


def _table(times: str, n: int) -> None:
    rows = [line.strip().split("|") for line in open(times) if line.strip()]
    rates = {name: (n / (float(t1) - float(t0)), n / (float(t2) - float(t0))) for name, t0, t1, t2 in rows}
    base = rates.get("postfix", (0.0, 0.0))[1]
    print(f"{'relay':<24} {'accepted/s':>11} {'end to end/s':>13} {'x Postfix (e2e)':>16}")
    for name, (accepted, e2e) in rates.items():
        print(f"{name:<24} {accepted:>11.0f} {e2e:>13.0f} {f'{e2e / base:.2f}x' if base else '-':>16}")


if __name__ == "__main__":
    main(*sys.argv[1:])
