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

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .address import address_key

ROLES = ("staff", "manager", "admin")
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so that timing does not
    tell an attacker which user names are real. Made on first need, not at import."""
    return _hasher.hash("mailguard-no-such-user")


class Verifier:
    """Argon2 checks on their own small bounded pool: a flood of attempts queues here
    and cannot take the threads the console and the store's callers use."""

    def __init__(self, threads: int = 2, name: str = "argon2"):
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def authenticate(self, store, username: str, password: str) -> "User | None":
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, authenticate, store, username, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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


def authenticate(store, username: str, password: str) -> User | None:
    """The user if the name and password match an enabled account, else None. Blocking (CPU)."""
    row = store.get_user(username)
    try:
        _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        store.rehash_password(username, _hasher.hash(password))
    return User(row["username"], row["role"], tuple(row["addresses"]))
