"""FAX recipients: numbers sent through e-mail-to-FAX gateways (手引き 事例6).

A recipient at a gateway domain (``fax.toml``) is a FAX number, written either as
RFC 3192 ``FAX=+81312345678@gateway`` (optionally with ``/T33S=…``) or as the
national number ``0312345678@gateway``. Numbers are parsed with phonenumbers
(region JP) and compared in E.164 with the address book's ``[[fax]]`` entries:

- registered → nothing to say (an external recipient: the usual hold applies);
- one digit away, or two adjacent digits swapped, from a registered number →
  ``fax_number_mistyped``, naming the registered number and its organisation;
  never released by time or by the sender (policy.MANAGER_ONLY);
- otherwise unregistered → ``unregistered_fax``; not a telephone number → ``fax_number_invalid``.

On delivery the number is written in the gateway's own form (``gateway_address``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from rapidfuzz.distance import OSA

from ... import findings as F
from ...address import fax_display, fax_e164
from ...model import Finding, Route
from ...policy import FaxGateway, Policy

_RFC3192 = re.compile(r"^fax=(?P<number>\+?[0-9]+)(/.*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class FaxRecipient:
    address: str
    gateway: FaxGateway
    e164: str | None        # None: the local part is not a valid number
    written: str            # the number as the sender wrote it


def parse(address: str, policy: Policy) -> FaxRecipient | None:
    """The FAX number behind ``address``, or None when it is not at a FAX gateway."""
    gateway = policy.fax_gateway(address)
    if gateway is None:
        return None
    local = address.rpartition("@")[0]
    match = _RFC3192.match(local)
    written = match.group("number") if match else local
    try:
        e164 = fax_e164(written if written.startswith("+") or not match else "+" + written)
    except ValueError:
        e164 = None
    return FaxRecipient(address, gateway, e164, written)


def gateway_address(recipient: FaxRecipient) -> str:
    """The address that makes the gateway dial the number, in the gateway's own form."""
    assert recipient.e164 is not None
    if recipient.gateway.style == "rfc3192":
        return f"FAX={recipient.e164}@{recipient.gateway.domain}"
    national = phonenumbers.parse(recipient.e164, None)
    digits = phonenumbers.format_number(national, phonenumbers.PhoneNumberFormat.NATIONAL)
    return f"{re.sub(r'[^0-9]', '', digits)}@{recipient.gateway.domain}"


def _digits(e164: str) -> str:
    return str(phonenumbers.parse(e164, None).national_number)


def _difference(typed: str, registered: str) -> str:
    """Which digits differ, counted from the left of the number as staff write it (03-1234-5678)."""
    diff = [i for i, (a, b) in enumerate(zip(typed, registered)) if a != b]
    if len(typed) == len(registered) and len(diff) == 2 and diff[1] == diff[0] + 1:
        i, j = diff
        return (f"{i + 1}桁目と{j + 1}桁目が入れ替わっています (登録は「{registered[i]}{registered[j]}」、"
                f"入力は「{typed[i]}{typed[j]}」)")
    if len(typed) == len(registered) and len(diff) == 1:
        i = diff[0]
        return f"{i + 1}桁目だけが違います (登録は「{registered[i]}」、入力は「{typed[i]}」)"
    return "1桁多いか少ないです" if len(typed) != len(registered) else "1桁だけ違います"


def fax_findings(recipient: Route, policy: Policy) -> list[Finding]:
    """Findings for one FAX route: registered → none; near a registered number →
    ``fax_number_mistyped``; otherwise ``unregistered_fax`` or ``fax_number_invalid``."""
    if recipient.fax_e164 is None:
        return [F.FAX_NUMBER_INVALID.finding(recipient.address,
                        f"FAX 番号として読めません: {recipient.fax_written}。番号を確認してください。")]
    if policy.fax_entry(recipient.fax_e164) is not None:
        return []
    shown = fax_display(recipient.fax_e164)
    for entry in policy.address_book.fax:
        mine, theirs = _digits(recipient.fax_e164), _digits(entry.number)
        if OSA.distance(mine, theirs) == 1:
            meant = fax_display(entry.number)
            how = _difference("".join(c for c in shown if c.isdigit()), "".join(c for c in meant if c.isdigit()))
            return [F.FAX_NUMBER_MISTYPED.finding(
                recipient.address,
                f"FAX 番号 {shown} は登録済みの {meant} ({entry.organisation}) と比べて{how}。"
                f"番号の打ち間違いではありませんか。管理者の確認なしには送信しません。",
                suggestion=f"{meant} ({entry.organisation})",
            )]
    return [F.UNREGISTERED_FAX.finding(recipient.address,
                    f"アドレス帳に登録されていない FAX 番号です: {shown}。"
                    "番号と送り先を確認してください。")]
