"""vault: the cryptography of link delivery, and the plain data it hands between stages.

What leaves by link (``check.link``) is sealed once per message: each file is
encrypted with AES-256-GCM (NIST SP 800-38D, ``cryptography``) under a random
data key. Each recipient's link carries its own 256-bit secret; the data key is
stored only wrapped (AES-GCM again) under a key derived from that secret and the
link's passcode with HKDF-SHA256 (RFC 5869). The database and the file store
together therefore cannot open a file: that takes the secret, which exists only
in the link mailed to the recipient, and the passcode where there is one. A
wrong passcode is simply a key that does not unwrap (the GCM tag fails).

Shapes: keys are 32 bytes; a sealed blob is ``nonce (12 bytes) || ciphertext || tag``;
link ids are 128-bit and secrets 256-bit random, base64url without padding
(``secrets.token_urlsafe``). Errors: ``Unopenable`` for a wrong secret, passcode or a
damaged blob. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE = 12
PASSCODE_DIGITS = 8


class Unopenable(Exception):
    """The secret or passcode is wrong, or the blob was altered."""


@dataclass(frozen=True)
class SealedFile:
    """One file behind a link: its name and size as the recipient will see them, and the blob."""

    name: str
    size: int                 # bytes of the original
    ctype: str                # served as this Content-Type, always as an attachment
    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class Grant:
    """One recipient's link: what the store keeps (never the secret or the passcode)."""

    link_id: str
    recipient: str
    secret_hash: str          # sha256 hex of the secret: finds and checks the link, opens nothing
    wrapped_key: bytes = field(repr=False)
    passcode: str = "none"    # "agreed" (the address book's key), "generated" (sent to the sender), "none"


@dataclass(frozen=True)
class Copy:
    """One version of a message and the envelope recipients it goes to."""

    recipients: tuple[str, ...]
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Protected:
    """What transform hands the queue for link delivery: files sealed once, a grant per
    recipient, and the copies that differ from the message's main content."""

    files: tuple[SealedFile, ...] = ()
    grants: tuple[Grant, ...] = ()
    copies: tuple[Copy, ...] = ()
    sender: str = ""          # the From: as people read it, for the download page
    organisation: str = ""    # the sending office


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_link() -> tuple[str, str]:
    """(link id, secret): 128 and 256 bits of randomness."""
    return secrets.token_urlsafe(16), secrets.token_urlsafe(32)


def new_passcode() -> str:
    """Digits only: read out on the telephone without confusion (5 tries, then the link locks)."""
    return "".join(secrets.choice("0123456789") for _ in range(PASSCODE_DIGITS))


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def normalise_passcode(passcode: str) -> str:
    """Full-width digits and letters typed on a Japanese keyboard count as the same passcode."""
    return unicodedata.normalize("NFKC", passcode).strip()


def _kek(link_id: str, secret: str, passcode: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=link_id.encode(),
                info=b"mailguard link v1\x00" + normalise_passcode(passcode).encode()).derive(secret.encode())


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, data, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
    except (InvalidTag, ValueError):
        raise Unopenable() from None


def wrap(data_key: bytes, link_id: str, secret: str, passcode: str) -> bytes:
    return seal(_kek(link_id, secret, passcode), data_key, link_id.encode())


def unwrap(wrapped: bytes, link_id: str, secret: str, passcode: str) -> bytes:
    """The data key; raises Unopenable for a wrong secret or passcode."""
    return unseal(_kek(link_id, secret, passcode), wrapped, link_id.encode())


def file_aad(queue_id: str, index: int) -> bytes:
    """Binds a blob to its message and place: a blob moved to another link does not open."""
    return f"{queue_id}/{index}".encode()
