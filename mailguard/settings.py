"""Process settings: MAILGUARD_* environment variables and an optional ``.env``.

The names are fixed so deployments can rely on them (see README, "Configuration").
A bad value stops the process at start with a message naming the variable,
never a traceback. Durations are seconds, sizes are bytes.

Defaults follow Postfix where a relay has an established answer:
``minimal_backoff_time`` 300 s, ``maximal_backoff_time`` 4000 s,
``maximal_queue_lifetime`` 5 d, ``hopcount_limit`` 50,
``default_destination_concurrency_limit`` 20, ``smtpd_recipient_limit`` 1000.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .endpoints import HostPort, Listener  # noqa: F401  (Listener re-exported: settings.Listener)

ENV_PREFIX = "MAILGUARD_"


def _dns_server(text: str) -> HostPort:
    """``192.0.2.53``, ``192.0.2.53:5353``, ``[2001:db8::53]:53``; port 53 when none is given."""
    if text.count(":") > 1 and not text.startswith("["):
        return HostPort(text, 53)          # a bare IPv6 address
    return HostPort.parse(text if ":" in text else f"{text}:53")


def _host_port(value: object) -> object:
    return HostPort.parse(value) if isinstance(value, str) else value


def _network_hint(part: str) -> str:
    """Why ``part`` is refused: above all an address with a mask (192.168.1.10/24), which would
    silently trust the whole LAN."""
    try:
        whole = ipaddress.ip_network(part, strict=False)
    except ValueError:
        return f"{part!r} is not an IP network (e.g. 192.0.2.15/32 or 192.0.2.0/24)"
    host = part.split("/")[0]
    return (f"{part!r} has host bits set: for the one device write {host}/{whole.max_prefixlen}, "
            f"for the whole network {whole}")


class Settings(BaseSettings):
    """Everything the process reads from its environment, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # SMTP listeners, comma-separated host:port[/smtp|submission|smtps] (``Listener``), e.g.
    # 0.0.0.0:25,0.0.0.0:587,0.0.0.0:465 for printers, submission and implicit TLS (port 0: any free port, logged).
    smtp_listen: Annotated[list[Listener], NoDecode] = [Listener(HostPort("127.0.0.1", 2525))]
    # Review console (web). Empty: no console. HTTPS with MAILGUARD_TLS_CERT when set.
    web_listen: Annotated[HostPort | None, NoDecode] = HostPort("127.0.0.1", 8025)
    # Clients that may read GET /metrics on the console listener (comma-separated networks).
    metrics_networks: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = [
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    # The console's address as staff reach it, for links in notices (e.g. https://mailguard.example.jp:8025).
    # Empty: derived from MAILGUARD_WEB_LISTEN.
    web_url: str = ""
    # Download pages of link delivery (attachments and bodies with personal data). Only this
    # listener belongs on the internet.
    download_listen: Annotated[HostPort | None, NoDecode] = HostPort("127.0.0.1", 8026)
    # Its address as recipients reach it, in the links mailed to them (https://dl.example.jp; http only
    # on loopback, for a try-out). Empty: link delivery is off and protection falls back to the AES zip
    # (a link partners cannot reach would take their attachments away).
    download_url: str = ""
    # Reverse proxies (nginx …) in front of the download listener whose X-Forwarded-For is believed,
    # so the access record names the recipient's address, not the proxy's (comma-separated IPs).
    download_proxies: Annotated[list[str], NoDecode] = []
    # Requests one client address may make to the download pages per minute (then 429).
    download_rate_limit: int = Field(default=60, gt=0)
    # A link works this many seconds after its mail is delivered (default 7 days), for this many downloads.
    link_lifetime: int = Field(default=7 * 86400, gt=0)
    link_max_downloads: int = Field(default=20, gt=0)
    # Wrong passcodes that lock a link (the sender is told).
    link_max_passcode_failures: int = Field(default=5, gt=0)
    # Name used in the greeting, in Received: headers, in EHLO to the upstream and in DSNs.
    hostname: str = Field(default_factory=socket.getfqdn)
    data_dir: Path = Path("./var")
    policies_dir: Path = Path("./policies")
    # PostgreSQL shared by several nodes (postgresql://user@host/db; a password goes in ~/.pgpass or
    # PGPASSWORD, not here). Empty: the SQLite file in data_dir (one node).
    database_url: str = Field(default="", pattern=r"^$|^postgres(ql)?://")
    # Seconds a node's claim on a message (being decided or delivered) lasts unless renewed: after a
    # node dies, another takes its messages over this long after its last renewal.
    lease_seconds: float = Field(default=60.0, ge=2)

    # Upstream (smarthost). Empty: every message is written to <data_dir>/outbox as .eml.
    upstream: Annotated[HostPort | None, NoDecode] = None
    upstream_tls: Literal["none", "starttls", "tls"] = "starttls"
    upstream_tls_verify: bool = True
    upstream_ca_file: Path | None = None
    upstream_username: str | None = None
    upstream_password: SecretStr | None = None
    upstream_timeout: float = Field(default=60.0, gt=0)  # connect and each command
    # The reply to the final "." may take 10 minutes (RFC 5321 §4.5.3.2.6); giving up
    # earlier makes us retry a message the upstream has already accepted.
    upstream_data_timeout: float = Field(default=600.0, gt=0)

    # Domain checks (RFC 5321 §5.1, RFC 7505). Off: no DNS lookups and no domain findings (a try-out
    # with the example domains of the shipped policies, which exist nowhere).
    dns_checks: bool = True
    # Empty: the system's resolv.conf.
    dns_servers: Annotated[list[HostPort], NoDecode] = []
    dns_timeout: float = Field(default=5.0, gt=0)   # per message, all lookups together

    # Content inspection (personal data): worker processes and limits per message.
    inspect_workers: int = Field(default=2, gt=0)
    inspect_timeout: float = Field(default=30.0, gt=0)
    inspect_max_text_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    inspect_max_archive_entries: int = Field(default=1000, gt=0)
    inspect_max_compression_ratio: float = Field(default=100.0, gt=1)
    inspect_max_depth: int = Field(default=5, gt=0)
    # Address space of each inspection worker (RLIMIT_AS); 0: no limit. A worker past it is replaced.
    # 2 GiB: the OCR engine alone takes 1.1-1.4 GiB of address space (about 600 MB resident).
    inspect_max_memory: int = Field(default=2 * 1024 * 1024 * 1024, ge=0)
    # OCR of scans (image attachments, FAX TIFFs, PDF pages without text; the 'ocr' extra): pages read
    # per message, and seconds OCR may take per message on top of MAILGUARD_INSPECT_TIMEOUT. Past
    # either, the rest of the scan is unscannable (held for a person).
    ocr_max_pages: int = Field(default=20, ge=0)
    ocr_timeout: float = Field(default=120.0, gt=0)

    hold_delay: int = Field(default=300, ge=0)
    trusted_networks: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = [
        ipaddress.ip_network("127.0.0.0/8")
    ]
    tls_cert: Path | None = None
    tls_key: Path | None = None

    message_size_limit: int = Field(default=25 * 1024 * 1024, gt=0)
    recipient_limit: int = Field(default=1000, gt=0)
    hop_limit: int = Field(default=50, gt=0)
    smtp_timeout: float = Field(default=300.0, gt=0)  # idle time per SMTP command
    # Concurrent SMTP connections from one client address (Postfix smtpd_client_connection_count_limit).
    smtp_max_connections_per_client: int = Field(default=20, gt=0)
    # SMTP AUTH failures per user name or client address within the window lock both out (as the console does).
    smtp_auth_max_failures: int = Field(default=5, gt=0)
    smtp_auth_failure_window: float = Field(default=900.0, gt=0)
    smtp_auth_lockout: float = Field(default=900.0, gt=0)
    # Header From: of an authenticated user's message must be one of their addresses.
    # "reject": 553 5.7.1; "sender": accept it and add Sender: with the user's address (RFC 5322 §3.6.2).
    header_from_check: Literal["reject", "sender"] = "reject"

    retry_min_backoff: int = Field(default=300, gt=0)
    retry_max_backoff: int = Field(default=4000, gt=0)
    queue_lifetime: int = Field(default=5 * 86400, gt=0)
    # Seconds after a message's end (delivered, cancelled, rejected, bounced) that its content is kept
    # (default 30 days); then only the envelope, findings, send log and provision ledger remain.
    content_retention: int = Field(default=30 * 86400, gt=0)
    # Seconds the send log and the provision ledger are kept (at least 1 year; default 3 years,
    # 施行規則 第21条), then purged a whole month at a time.
    record_retention: int = Field(default=3 * 365 * 86400, ge=365 * 86400)
    # Seconds between signed checkpoints of the send log (and one at stop).
    checkpoint_interval: float = Field(default=600.0, gt=0)
    # An RFC 3161 time-stamping authority (http:// or https://) that stamps every checkpoint, so its
    # time is not only the operator's word. Empty: no timestamps.
    tsa_url: str = ""
    # The TSA's root certificate (PEM): when set, each token is verified on arrival, not only at verify.
    tsa_ca: Path | None = None
    # Processes taking SMTP connections (SO_REUSEPORT): serve and N - 1 receivers (``receivers``).
    # Default 1 (serve alone): on 2 cores a receiver raised the throughput by 5-15 % only (the cores are
    # busy either way), and the cap on connections per client is per process (AUTH lockouts are shared).
    processes: int = Field(default=1, ge=1, le=64)
    delivery_concurrency: int = Field(default=20, gt=0)
    queue_scan_interval: float = Field(default=1.0, gt=0)
    policy_scan_interval: float = Field(default=2.0, gt=0)

    # Times shown to people (notices, DSNs, CLI) are in this zone.
    timezone: str = "Asia/Tokyo"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Tokyo)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("smtp_listen", mode="before")
    @classmethod
    def _parse_listen(cls, value: object) -> object:
        if isinstance(value, str):
            listeners = [Listener.parse(part) for part in value.split(",") if part.strip()]
            if not listeners:
                raise ValueError("expected one or more host:port[/smtp|submission|smtps], comma-separated")
            return listeners
        return value

    @field_validator("upstream", "web_listen", "download_listen", mode="before")
    @classmethod
    def _parse_upstream(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return _host_port(value)

    @field_validator("upstream", mode="after")
    @classmethod
    def _upstream_port(cls, value: HostPort | None) -> HostPort | None:
        if value is not None and value.port == 0:
            raise ValueError("the upstream needs a port (e.g. smtp.example.jp:587)")
        return value

    @field_validator("download_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [str(ipaddress.ip_address(p.strip())) for p in value.split(",") if p.strip()]
        return value

    @field_validator("download_url")
    @classmethod
    def _download_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"expected https://host[:port][/path], got {value!r}")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("links carry the key to the files: use https:// (http only on 127.0.0.1 for a try-out)")
        return value

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            return [_dns_server(p.strip()) for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_networks", "metrics_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            networks = []
            for part in (p.strip() for p in value.split(",") if p.strip()):
                try:
                    networks.append(ipaddress.ip_network(part))
                except ValueError:
                    raise ValueError(_network_hint(part)) from None
            return networks
        return value

    @field_validator("tsa_url")
    @classmethod
    def _tsa_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"expected http(s)://host[:port][/path] of a time-stamping authority, got {value!r}")
        return value

    @field_validator("upstream_ca_file", "tls_cert", "tls_key", "upstream_username", "tsa_ca", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("upstream_ca_file", "tls_cert", "tls_key", "tsa_ca", mode="after")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> "Settings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert/tls_key: set both or neither")
        if self.retry_max_backoff < self.retry_min_backoff:
            raise ValueError("retry_max_backoff: must be >= retry_min_backoff")
        if self.content_retention < self.link_lifetime:
            raise ValueError("content_retention: must be at least MAILGUARD_LINK_LIFETIME (links would die early)")
        if any(listener.mode != "smtp" for listener in self.smtp_listen) and self.tls_cert is None:
            raise ValueError("smtp_listen: submission and smtps listeners need MAILGUARD_TLS_CERT and _TLS_KEY")
        if self.upstream_password is not None and not self.upstream_username:
            raise ValueError("upstream_username: required when upstream_password is set")
        return self

    @property
    def console_url(self) -> str | None:
        if self.web_url:
            return self.web_url.rstrip("/")
        if self.web_listen is None:
            return None
        return f"http{'s' if self.tls_cert else ''}://{self.web_listen}"

    @property
    def download_base(self) -> str | None:
        """The public base of download links; None when link delivery is off."""
        if self.download_listen is None or not self.download_url:
            return None
        return self.download_url.rstrip("/")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mailguard.sqlite3"

    @property
    def database_label(self) -> str:
        """The database as messages name it: host/name of the URL without user and password, or the file."""
        return self.database_url.rpartition("@")[2] if self.database_url else str(self.db_path.resolve())

    @property
    def database(self) -> Path | str:
        """What ``Store`` opens: the PostgreSQL URL, else the SQLite file in the data directory."""
        return self.database_url or self.db_path

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


class SettingsError(Exception):
    """A MAILGUARD_* variable has a bad value; ``str()`` names each variable."""


SYSTEM_CONFIG = Path("/etc/mailguard/mailguard.env")


def config_file() -> Path | None:
    """The file of MAILGUARD_* settings the server and the CLI both read: MAILGUARD_CONFIG, else
    /etc/mailguard/mailguard.env (the systemd unit's EnvironmentFile), else ./.env; None when
    there is none. Variables in the environment win over the file.

    Raises:
        SettingsError: MAILGUARD_CONFIG names a file that does not exist.
    """
    explicit = os.environ.get(ENV_PREFIX + "CONFIG", "").strip()
    try:
        if explicit:
            if not (Path(explicit).is_file() or explicit == os.devnull):   # /dev/null: no file, on purpose
                raise SettingsError(f"MAILGUARD_CONFIG: file not found: {explicit}")
            return Path(explicit).resolve()
        return next((path.resolve() for path in (SYSTEM_CONFIG, Path(".env")) if path.is_file()), None)
    except PermissionError as exc:
        raise SettingsError(f"MAILGUARD_CONFIG: cannot read {exc.filename} (permission denied): run the CLI as the"
                            " relay's user, e.g. sudo -u mailguard mailguard ...") from None


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings (the environment, then ``config_file()``).

    Raises:
        SettingsError: one line per bad variable, e.g.
            ``MAILGUARD_SMTP_LISTEN: expected host:port (e.g. 127.0.0.1:2525), got 'x'``.
    """
    try:
        return Settings(_env_file=config_file(), **overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            reason = err["msg"].removeprefix("Value error, ")
            if not field and ":" in reason:  # model-level check: "field: reason"
                field, _, reason = reason.partition(":")
            name = ENV_PREFIX + field.upper() if field else "settings"
            lines.append(f"{name}: {reason.strip()}")
        raise SettingsError("\n".join(lines)) from None
