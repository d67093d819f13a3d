"""Staff accounts: who may relay, and as which envelope senders.

Roles: ``staff`` (sends mail, cancels their own held mail), ``manager`` (also
approves and rejects), ``admin`` (also edits policies and users). The same
accounts serve SMTP AUTH and the review console.

Passwords are stored as Argon2id hashes (RFC 9106) with argon2-cffi's default
parameters and re-hashed when those defaults grow stronger. Verification costs
tens of milliseconds of CPU on purpose, so callers on the event loop run it on a
thread. Passwords and hashes are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .policy import address_key
from .store import Store

ROLES = ("staff", "manager", "admin")
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so that timing does not
# tell an attacker which user names are real.
_DUMMY_HASH = _hasher.hash("mailguard-no-such-user")


@dataclass(frozen=True)
class User:
    username: str
    role: str
    addresses: tuple[str, ...]

    def owns(self, address: str) -> bool:
        """May this user send with ``address`` as envelope sender (MAIL FROM)?"""
        key = address_key(address)
        return any(address_key(own) == key for own in self.addresses)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"パスワードは {MIN_PASSWORD_LENGTH} 文字以上にしてください (password too short)")
    return _hasher.hash(password)


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The user if the name and password match an enabled account, else None. Blocking (CPU)."""
    row = store.get_user(username)
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        store.update_user(username, actor="system", password_hash=_hasher.hash(password))
    return User(row["username"], row["role"], tuple(row["addresses"]))
