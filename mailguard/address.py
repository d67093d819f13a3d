"""Addresses and FAX numbers in the one form mailguard compares them in.

E-mail: local part lower-cased, domain in IDNA 2008 A-labels with UTS #46 mapping
(RFC 5890–5891); syntax by email-validator (RFC 5321/5322, RFC 6531 for UTF-8).
FAX numbers: E.164 by phonenumbers (Google's libphonenumber data), Japanese when
no country code is written. Pure functions, no I/O; every layer may import this.
"""

from __future__ import annotations

import functools
import unicodedata

import idna
import phonenumbers
from publicsuffixlist import PublicSuffixList
from email_validator import EmailNotValidError, validate_email


@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """Lower-case A-label form of a domain (IDNA 2008 with UTS #46 mapping).

    Raises ValueError for a name that is not a valid domain.
    """
    domain = domain.strip().rstrip(".")
    if not domain:
        raise ValueError("empty domain")
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise ValueError(f"not a valid domain name: {domain!r} ({exc})") from None


def address_key(address: str) -> str:
    """The form addresses are compared in: local part lower-cased, domain in A-labels.

    Mail systems treat local parts case-insensitively in practice; comparing so
    keeps ``Tanaka@`` and ``tanaka@`` the same registered recipient.
    """
    local, _, domain = address.strip().rpartition("@")
    if not local:
        return address.strip().lower()
    try:
        domain = ascii_domain(domain)
    except ValueError:
        domain = domain.lower()
    return f"{local.lower()}@{domain}"


def fax_e164(number: str) -> str:
    """A FAX number in E.164 (``+81312345678``), read as Japanese when it has no country code.

    Raises ValueError for text that is not a valid telephone number (phonenumbers, region JP).
    """
    text = unicodedata.normalize("NFKC", number).strip()
    try:
        parsed = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a telephone number: {number!r} ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid telephone number: {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def fax_display(e164: str) -> str:
    """How staff write the number: ``03-1234-5678`` for Japan, international form otherwise."""
    parsed = phonenumbers.parse(e164, None)
    if parsed.country_code == 81:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)

def validate_address(value: str) -> str:
    """A syntactically valid e-mail address, domain lower-cased. Raises ValueError."""
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {value!r} ({exc})") from None
    return result.normalized


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    """The Public Suffix List bundled with publicsuffixlist: loaded once, never fetched."""
    return PublicSuffixList()


def public_suffix(domain: str) -> str | None:
    """``co.jp`` for ``minato-hospital.co.jp`` (PSL); None when unknown."""
    return _psl().publicsuffix(domain)


def registrable_domain(domain: str) -> str | None:
    """``minato-hospital.co.jp`` for ``mail.minato-hospital.co.jp`` (PSL); None when unknown."""
    return _psl().privatesuffix(domain)
