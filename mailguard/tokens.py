"""Signed links in notices: cancel a held message without logging in.

A token names one queue id and one random nonce, signed with the installation's
key (``<data_dir>/console.key``, also the session key) by itsdangerous, and
expires with the queue lifetime. It is single-use: ``Store.use_token`` records
the nonce the moment it is spent. It only ever allows a cancel, the one action
that cannot send anything anywhere.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "mailguard-cancel-link"


def installation_key(data_dir: Path) -> str:
    """The signing key, created once (0600) on first use."""
    path = data_dir / "console.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:   # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def make(data_dir: Path, queue_id: str) -> str:
    return URLSafeTimedSerializer(installation_key(data_dir), salt=SALT).dumps(
        {"q": queue_id, "n": secrets.token_urlsafe(12)})


def read(data_dir: Path, token: str, max_age: float) -> tuple[str, str] | None:
    """(queue id, nonce) of a valid, unexpired token; None otherwise."""
    try:
        data = URLSafeTimedSerializer(installation_key(data_dir), salt=SALT).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("q"), str) or not isinstance(data.get("n"), str):
        return None
    return data["q"], data["n"]
