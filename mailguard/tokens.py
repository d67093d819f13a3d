"""Signed links in notices: cancel a held message, or revoke its download links, without logging in.

A token names one queue id and one random nonce, signed with the installation's
key (``<data_dir>/console.key``, also the session key) by itsdangerous, for one
purpose (a cancel token never revokes, nor the other way round), and expires
(the caller says when). It is single-use: ``Store.use_token`` records the nonce
the moment it is spent. It allows a cancel, a revocation (actions that cannot send
anything anywhere), or the sender's own confirmation of a message held for their
self-check (confirm), which only the sender receives.

The key file is 0600 in a 0700 data directory whatever the umask, and appears
whole or not at all (two processes starting at once read the same key).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .store import private_dir

SALTS = {"cancel": "mailguard-cancel-link", "revoke": "mailguard-revoke-link", "confirm": "mailguard-confirm-link"}


def installation_key(data_dir: Path) -> str:
    """The signing key, created once (0600) on first use."""
    path = data_dir / "console.key"
    private_dir(data_dir)
    if not path.exists():
        fd, scratch = tempfile.mkstemp(dir=data_dir, prefix=".console.key.")   # 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
                fh.flush()
                os.fsync(fh.fileno())
            os.link(scratch, path)   # whole, and never over a key another process made first
        except FileExistsError:
            pass
        finally:
            os.unlink(scratch)
    if path.stat().st_mode & 0o077:   # made by an older version under a loose umask
        os.chmod(path, 0o600)
    return path.read_text().strip()


def make(data_dir: Path, queue_id: str, purpose: str = "cancel") -> str:
    return URLSafeTimedSerializer(installation_key(data_dir), salt=SALTS[purpose]).dumps(
        {"q": queue_id, "n": secrets.token_urlsafe(12)})


def read(data_dir: Path, token: str, max_age: float, purpose: str = "cancel") -> tuple[str, str] | None:
    """(queue id, nonce) of a valid, unexpired token for ``purpose``; None otherwise."""
    try:
        data = URLSafeTimedSerializer(installation_key(data_dir), salt=SALTS[purpose]).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("q"), str) or not isinstance(data.get("n"), str):
        return None
    return data["q"], data["n"]
