"""A real PostgreSQL server for the tests and the benchmark: Debian's ``postgresql`` package,
started with ``initdb`` and ``pg_ctl`` in a temporary directory, listening on loopback only.

PostgreSQL refuses to run as root: when the tests run as root (CI), the server runs as the
``postgres`` user the package creates, in a directory that user owns. Every test gets a fresh
database (``database()``), so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def binaries() -> Path | None:
    """The newest installed server's bin directory, or None when Debian's postgresql is absent."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()``; ``url(name)``; ``database()`` (a fresh, empty database); ``stop()``.

    ``durable``: keep fsync on (the benchmark); the tests turn it off because they kill mailguard
    nodes, never the database server, and the machine's disk is shared with a parallel run.
    """

    def __init__(self, *, durable: bool = False, max_connections: int = 200):
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.durable, self.max_connections = durable, max_connections
        self.root = Path(tempfile.mkdtemp(prefix="mailguard-pg-"))
        self.port = 0

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:   # initdb and postgres refuse root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, **kw)

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "mailguard", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        for _ in range(5):   # the port is free when chosen, may be taken before the server binds it
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                       f" -c max_connections={self.max_connections} -c shared_buffers=64MB"
                       + ("" if self.durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
            try:
                self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                          "-t", "60", "start")
                return self
            except subprocess.CalledProcessError:
                if "could not bind" not in (self.root / "server.log").read_text(errors="replace"):
                    raise
        raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}")

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://mailguard@127.0.0.1:{self.port}/{name}"

    def database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
