"""endpoints: where mailguard listens and where it connects, as the settings name them.

``HostPort`` (``host:port``, ``[v6]:port``) and ``Listener`` (``host:port[/smtp|submission|smtps]``)
are parsed from MAILGUARD_SMTP_LISTEN, MAILGUARD_UPSTREAM and the web listeners; a bad value raises
``ValueError`` with an example of a good one, which ``settings`` turns into its start-up message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostPort:
    """A listener or upstream address, from ``host:port`` or ``[v6addr]:port``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "HostPort":
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"expected host:port (e.g. 127.0.0.1:2525), got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


LISTENER_MODES = ("smtp", "submission", "smtps")


@dataclass(frozen=True)
class Listener:
    """One SMTP listener, from ``host:port[/mode]``:

    - ``smtp`` (port 25, printers and trusted networks): STARTTLS offered when there is a
      certificate; AUTH only after it; trusted networks relay without AUTH;
    - ``submission`` (587, RFC 6409 with RFC 3207): STARTTLS before any other command, then AUTH
      is required for every message, whatever network the client is on;
    - ``smtps`` (465, RFC 8314 §3.3): TLS from the first byte, AUTH required.

    Without ``/mode``, port 587 is submission, 465 smtps, any other smtp.
    """

    address: HostPort
    mode: str = "smtp"

    @classmethod
    def parse(cls, text: str) -> "Listener":
        where, _, mode = text.strip().partition("/")
        address = HostPort.parse(where)
        mode = mode.strip().lower() or {587: "submission", 465: "smtps"}.get(address.port, "smtp")
        if mode not in LISTENER_MODES:
            raise ValueError(f"unknown listener mode {mode!r} in {text.strip()!r}: use /smtp, /submission or /smtps")
        return cls(address, mode)

    @property
    def auth_required(self) -> bool:
        return self.mode != "smtp"

    def __str__(self) -> str:
        return f"{self.address}/{self.mode}"
