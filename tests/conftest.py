"""Fixtures: a real upstream SMTP server and a real ``mailguard serve`` process, on loopback.

``upstream``: an aiosmtpd server (in a thread of the test process) that stores
what it receives and can be told to refuse: ``upstream.refuse_rcpt[addr] = "550 …"``,
``upstream.data_replies = ["451 …"]`` (used in order, then 250), ``upstream.hang``.

``relay``: starts ``python -m mailguard serve`` with its own data dir and a copy
of tests/policies, pointed at the upstream. ``relay.cli(...)`` runs the CLI
against the same store; ``relay.kill()`` is SIGKILL; ``relay.start()`` again.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email import policy as email_policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

HERE = Path(__file__).parent
INTERNAL = "sakura-kaigo.example.jp"
STAFF = f"staff@{INTERNAL}"
REGISTERED = "renkei@minato-hospital.example.jp"
UNREGISTERED = "someone@unknown-partner.example.com"


CHROMIUM = "/usr/bin/chromium"   # Debian's: Playwright never downloads a browser of its own
ARTIFACTS = HERE.parent / "test-artifacts"   # screenshots the tests save for the closing notes


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="ja-JP")   # a phone
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


CODES_AND_STATES = re.compile(r"\b(?:[a-z]+_[a-z_]+|awaiting|delayed|delivered|incoming|ready|deferred)\b")


def assert_no_codes(text: str) -> None:
    """What staff and managers read is Japanese: no finding code, no English state."""
    assert not CODES_AND_STATES.findall(text), CODES_AND_STATES.findall(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (Debian's openssl): (cert, key)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class LoopbackDNS:
    """A DNS server on 127.0.0.1 for the tests (dnspython messages over UDP).

    Every name has an MX record unless listed: ``nxdomain`` → NXDOMAIN, ``null_mx`` →
    ``MX 0 .`` (RFC 7505), ``address_only`` → A but no MX, ``silent`` → no answer at all.
    """

    def __init__(self):
        self.nxdomain: set[str] = set()
        self.null_mx: set[str] = set()
        self.address_only: set[str] = set()
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if name in self.nxdomain:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif rdtype == "MX" and name in self.null_mx:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "MX", "0 ."))
            elif rdtype == "MX" and name not in self.address_only:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "MX", f"10 mx.{name}."))
            elif rdtype == "A" and name in self.address_only:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", "192.0.2.25"))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def dns_server():
    server = LoopbackDNS()
    yield server
    server.close()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email_policy.default)


class UpstreamHandler:
    def __init__(self):
        self.messages: list[Received] = []
        self.refuse_rcpt: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.hang = threading.Event()     # set: DATA never answers (until cleared)
        self.data_started = threading.Event()
        self.one_transaction_per_connection = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # one_transaction_per_connection: like a server that drops idle clients, it
        # answers 421 to a second MAIL on the same connection.
        done = getattr(session, "transactions", 0)
        if self.one_transaction_per_connection and done >= 1:
            return "421 4.4.2 mx.test closing connection"
        session.transactions = done + 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        self.data_started.set()
        while self.hang.is_set():
            await asyncio.sleep(0.05)
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued upstream"


class LoopbackController(Controller):
    """aiosmtpd's Controller on 127.0.0.1; port 0 takes a free port, chosen by the kernel
    at bind time (never guessed beforehand, so parallel suites cannot collide)."""

    def __init__(self, handler, port: int = 0, **kwargs):
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _trigger_server(self):
        if self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Upstream:
    SMTPUTF8 = True

    def __init__(self):
        self.handler = UpstreamHandler()
        self.port = 0
        self.controller = self._controller()

    def _controller(self) -> Controller:
        return LoopbackController(self.handler, self.port, enable_SMTPUTF8=self.SMTPUTF8)

    def start(self) -> "Upstream":
        self.controller.start()
        self.port = self.controller.port
        return self

    def restart(self) -> None:
        """Stop and start again on the same port: connections to the old server are gone."""
        self.controller.stop()
        self.controller = self._controller()
        self.start()

    def __getattr__(self, name):
        return getattr(self.handler, name)

    def __setattr__(self, name, value):
        # upstream.hang = … must reach the handler, not shadow it on this wrapper
        if name in ("handler", "port", "controller"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.handler, name, value)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.handler.messages if address in m.rcpt_tos]

    def wait_to(self, address: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        return wait_for(lambda: len(self.to(address)) >= count and self.to(address), timeout,
                        what=f"{count} message(s) to {address} upstream")


@pytest.fixture
def upstream():
    up = Upstream().start()
    yield up
    up.handler.hang.clear()
    up.controller.stop()


LISTENING = re.compile(r"mailguard listening on \S*?:(\d+) ")


@dataclass
class Relay:
    tmp: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self):
        self.log_path = self.tmp / "serve.log"

    @property
    def policies(self) -> Path:
        return Path(self.env["MAILGUARD_POLICIES_DIR"])

    def start(self, **env: str) -> "Relay":
        """Start ``mailguard serve``; its SMTP port is the one it logs as listening on (the
        fixture asks for :0, so two suites on one machine never race for a port)."""
        self.env.update(env)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mailguard", "serve"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailguard serve exited {self.proc.returncode}:\n{self.log()}")
            found = LISTENING.search(self.log_path.read_bytes()[offset:].decode("utf-8", "replace"))
            if found:
                self.port = int(found.group(1))
                return self
            time.sleep(0.05)
        raise AssertionError(f"mailguard serve did not listen:\n{self.log()}")

    def stop(self) -> int | None:
        if getattr(self, "_store", None) is not None:
            self._store.close()
            self._store = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "mailguard", *args], env=self.env, cwd=self.tmp,
                                capture_output=True, text=True, input=input, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"mailguard {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    @property
    def store(self):
        """The relay's store, opened in this process (state is read here, never through the CLI)."""
        from mailguard.store import Store

        if getattr(self, "_store", None) is None:
            self._store = Store(self.env.get("MAILGUARD_DATABASE_URL")
                                or Path(self.env["MAILGUARD_DATA_DIR"]) / "mailguard.sqlite3")
        return self._store

    def message(self, queue_id: str):
        return self.store.get(queue_id)

    def findings(self, queue_id: str) -> list[str]:
        """Finding codes in the order shown to people (what drove the verdict first)."""
        return [f.code for f in self.store.get(queue_id).findings]

    def events(self, queue_id: str | None = None) -> list:
        """The send log (LogEntry), oldest first, for one message or all."""
        return [entry for _, entry in self.store.log(queue_id=queue_id)]

    def add_user(self, name: str, role: str, address: str, password: str) -> None:
        """A user account, written to the store directly (the CLI's own tests use ``mailguard user``)."""
        from mailguard.users import hash_password

        self.store.add_user(name, hash_password(password), role, [address], "test:admin")

    def act(self, queue_id: str, action: str, comment: str = "", actor: str = "test:manager", **rules):
        """A person's action, through the same rule book the console and the CLI use."""
        from mailguard.qmgr.actions import act
        from mailguard.settings import load_settings

        settings = load_settings(hostname="mailguard.test", data_dir=Path(self.env["MAILGUARD_DATA_DIR"]),
                                 policies_dir=self.policies, web_listen="")
        return act(self.store, settings, queue_id, action, actor, comment, **rules)

    def wait_decided(self, queue_id: str, timeout: float = 10.0) -> str:
        return wait_for(lambda: (s := self.state(queue_id)) != "incoming" and s, timeout, what="a decision")

    def state(self, queue_id: str) -> str:
        message = self.store.get(queue_id)
        return str(message.state) if message else ""


def relay_env(tmp: Path, port: int, upstream: Upstream | None, dns_port: int, **extra: str) -> dict[str, str]:
    policies = tmp / "policies"
    if not policies.exists():
        shutil.copytree(HERE / "policies", policies)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGUARD_")}
    config = tmp / "mailguard.env"      # never this machine's /etc/mailguard/mailguard.env or a stray ./.env
    config.touch()
    env.update({
        "MAILGUARD_CONFIG": str(config),
        "MAILGUARD_SMTP_LISTEN": f"127.0.0.1:{port}",
        "MAILGUARD_DATA_DIR": str(tmp / "var"),
        "MAILGUARD_POLICIES_DIR": str(policies),
        "MAILGUARD_UPSTREAM": f"127.0.0.1:{upstream.port}" if upstream else "",
        "MAILGUARD_UPSTREAM_TLS": "none",
        "MAILGUARD_HOSTNAME": "mailguard.test",
        "MAILGUARD_HOLD_DELAY": "3600",     # held until a test releases it: nothing races a timer
        "MAILGUARD_QUEUE_SCAN_INTERVAL": "0.1",
        "MAILGUARD_POLICY_SCAN_INTERVAL": "0.2",
        "MAILGUARD_RETRY_MIN_BACKOFF": "1",
        "MAILGUARD_RETRY_MAX_BACKOFF": "2",
        "MAILGUARD_LOG_LEVEL": "INFO",
        "MAILGUARD_DNS_SERVERS": f"127.0.0.1:{dns_port}",
        "MAILGUARD_DNS_TIMEOUT": "1",
        "MAILGUARD_INSPECT_WORKERS": "1",
        "MAILGUARD_PROCESSES": "1",          # serve alone unless a test asks for receivers
        "MAILGUARD_WEB_LISTEN": "",          # no console unless a test asks for one (on a free port)
        "MAILGUARD_DOWNLOAD_LISTEN": "",     # no link delivery (protection falls back to the zip) unless asked
    })
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's package, ``tests/pg.py``) for this test process."""
    from pg import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def database_url(request) -> str:
    """"" (SQLite in the relay's data dir), or a fresh PostgreSQL database when the suite runs with
    MAILGUARD_TEST_DATABASE=postgresql: every relay story then runs on PostgreSQL too."""
    if os.environ.get("MAILGUARD_TEST_DATABASE") != "postgresql":
        return ""
    return request.getfixturevalue("postgres").database()


@pytest.fixture
def make_relay(tmp_path, upstream, dns_server, database_url):
    relays = []

    def make(**extra: str) -> Relay:
        if database_url:
            # a killed node's messages are taken over after its lease: short, as the kill tests wait for it
            extra = {"MAILGUARD_DATABASE_URL": database_url, "MAILGUARD_LEASE_SECONDS": "3", **extra}
        relay = Relay(tmp_path, relay_env(tmp_path, 0, upstream, dns_server.port, **extra), 0)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.stop()


@pytest.fixture
def relay(make_relay) -> Relay:
    return make_relay().start()


def sqlite_only(relay: Relay, why: str) -> None:
    """Skip a story that edits or inspects the SQLite file itself when the suite runs on PostgreSQL
    (its PostgreSQL counterpart is in test_cluster.py)."""
    if relay.env.get("MAILGUARD_DATABASE_URL"):
        pytest.skip(f"SQLite file: {why}")


def send(relay: Relay, rcpts: list[str], *, sender: str = STAFF, subject: str = "テスト",
         body: str = "本文です。\n", headers: dict[str, str] | None = None) -> str:
    """Send one message with smtplib; returns the queue id from the 250 reply."""
    import smtplib
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        del msg[name]
        msg[name] = value
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail(sender)
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            assert code == 250, (code, text)
        code, text = client.data(msg.as_bytes(policy=email_policy.SMTP))
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[-1]


def send_raw(relay: Relay, rcpts: list[str], raw: bytes, *, sender: str = STAFF,
             login: tuple[str, str] | None = None) -> str:
    """Send prepared message bytes (CRLF), after STARTTLS and AUTH as ``login`` (user, password)
    if given; returns the queue id from the 250 reply."""
    import smtplib
    import ssl

    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
        client.ehlo("client.test")
        if login:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # the test's own certificate
            client.starttls(context=context)
            client.ehlo("client.test")
            client.login(*login)
        client.mail(sender)
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(raw)
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[-1]
