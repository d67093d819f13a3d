"""Look-alike recipients: an address that resembles a registered one but is not it.

A misdelivery is most often a near miss. For every external recipient that is
neither registered nor a past correspondent, compare it with the address book
and with the organisation's past correspondents (from the send log):

- ``lookalike_domain``: the domain is one edit away (insertion, deletion,
  substitution, adjacent transposition: optimal string alignment distance 1),
  or the same registrable name under another public suffix (``.co.jp`` → ``.com``,
  Public Suffix List), or the same after mapping look-alike characters
  (Unicode TR39 confusables: Cyrillic ``а`` for ``a``, ``rn`` for ``m``, IDN);
- ``same_local_part_other_domain``: a registered person's local part at another domain;
- ``display_name_mismatch``: a To:/Cc: display name that names a registered person
  or organisation, on an address that is not theirs.

Every finding names the registered entry it probably meant (``Finding.suggestion``).
"""

from __future__ import annotations

import functools
import json
import os
import unicodedata
from dataclasses import dataclass

import confusable_homoglyphs
import idna
from rapidfuzz.distance import OSA

from ... import findings as F
from ...address import address_key, public_suffix
from ...model import Finding
from ...policy import Policy

# Local parts too common to mean "the same person" at another domain.
GENERIC_LOCAL_PARTS = frozenset({
    "info", "admin", "office", "contact", "mail", "support", "soumu", "jimu", "kaigo", "fax",
    "postmaster", "webmaster", "noreply", "no-reply", "sales", "center", "center1", "renraku",
})


@dataclass(frozen=True)
class Candidate:
    """Someone a recipient might have been meant to be."""

    address: str            # full address, or "@domain" for a registered domain
    organisation: str | None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def local(self) -> str:
        return self.address.rpartition("@")[0]

    def label(self) -> str:
        return f"{self.address} ({self.organisation})" if self.organisation else self.address


def candidates(policy: Policy, correspondents: frozenset[str]) -> tuple[Candidate, ...]:
    """Registered entries first (they are what staff mean), then past correspondents."""
    found = [Candidate(address_key(e.address), e.organisation) for e in policy.address_book.email]
    found += [Candidate("@" + d.domain, d.organisation) for d in policy.address_book.domain]
    known = {c.address for c in found}
    found += [Candidate(a, None) for a in sorted(correspondents)
              if a not in known and not policy.is_internal(a)]
    return tuple(found)


@functools.lru_cache(maxsize=1)
def _confusable_map() -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """From confusable_homoglyphs' copy of TR39 confusables.txt: single characters that
    look like an ASCII letter or digit, and ASCII sequences that look like one letter."""
    path = os.path.join(os.path.dirname(confusable_homoglyphs.__file__), "confusables.json")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    single: dict[str, str] = {}
    multi: list[tuple[str, str]] = []
    for key, glyphs in data.items():
        targets = [g["c"].lower() for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if not targets:
            continue
        if len(key) == 1 and (not key.isascii() or key.isdigit()):
            single[key] = targets[0]
        elif len(key) > 1 and key.isascii() and key.isalpha() and key.islower():
            multi.append((key, targets[0]))
    return single, tuple(sorted(multi, key=lambda kv: -len(kv[0])))


def skeleton(domain: str) -> str:
    """A domain with every look-alike character replaced by the ASCII one it imitates."""
    try:
        text = idna.decode(domain) if "xn--" in domain else domain
    except idna.IDNAError:
        text = domain
    text = unicodedata.normalize("NFKC", text).lower()
    single, multi = _confusable_map()
    text = "".join(single.get(ch, ch) for ch in text)
    for sequence, letter in multi:
        text = text.replace(sequence, letter)
    return text


def _split_suffix(domain: str) -> tuple[str, str] | None:
    """(everything left of the public suffix, the suffix):
    ``minato-hospital.co.jp`` → ("minato-hospital", "co.jp")."""
    suffix = public_suffix(domain)
    if not suffix or suffix == domain:
        return None
    return domain[: -len(suffix) - 1], suffix


def domain_likeness(domain: str, registered: str) -> str | None:
    """Why ``domain`` looks like ``registered`` (Japanese), or None. Both in A-label form."""
    if domain == registered:
        return None
    if domain.endswith("." + registered) or registered.endswith("." + domain):
        return None   # the same organisation's own subdomain (mail.minato-hospital.jp)
    ours, theirs = _split_suffix(domain), _split_suffix(registered)
    if skeleton(domain) == skeleton(registered):
        kind = "国際化ドメイン (IDN) の" if "xn--" in domain else ""
        return f"{kind}見た目の似た文字を使ったドメインです"
    if OSA.distance(domain, registered) == 1:
        return "ドメインが1文字違います"
    if ours and theirs and ours[0] == theirs[0] and ours[1] != theirs[1]:
        return f"ドメインの末尾が違います (.{ours[1]} と .{theirs[1]})"
    return None


def recipient_lookalikes(recipient: str, pool: tuple[Candidate, ...]) -> list[Finding]:
    """Findings for one external recipient that is neither registered nor known."""
    key = address_key(recipient)
    local, _, domain = key.rpartition("@")
    for candidate in pool:
        reason = domain_likeness(domain, candidate.domain)
        if reason:
            meant = candidate.address if candidate.local == local or not candidate.local \
                else f"{local}@{candidate.domain}"
            meant = meant if not meant.startswith("@") else f"{local}{meant}"
            return [F.LOOKALIKE_DOMAIN.finding(
                recipient,
                f"{reason}。登録済みの宛先 {candidate.label()} と似ていますが、別の宛先です。"
                f"本当は {meant} ではありませんか。",
                suggestion=meant,
            )]
    for candidate in pool:
        if (candidate.local and candidate.local == local and len(local) >= 3
                and local not in GENERIC_LOCAL_PARTS and candidate.domain != domain):
            return [F.SAME_LOCAL_PART_OTHER_DOMAIN.finding(
                recipient,
                f"登録済みの {candidate.label()} と同じ名前 ({local}) で、別のドメインの宛先です。"
                f"本当は {candidate.address} ではありませんか。",
                suggestion=candidate.address,
            )]
    return []


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def display_name_findings(visible: list[tuple[str, str]], policy: Policy) -> list[Finding]:
    """To:/Cc: entries whose display name names a registered person or organisation
    while the address belongs to someone else."""
    findings = []
    for name, address in visible:
        shown = _norm(name)
        if len(shown) < 2 or not address:
            continue
        entry = policy.lookup(address)
        for registered in policy.address_book.email:
            names = [n for n in (_norm(registered.name), _norm(registered.organisation)) if len(n) >= 2]
            if not any(n == shown or (len(n) >= 4 and n in shown) for n in names):
                continue
            if address_key(address) == address_key(registered.address):
                break
            if entry is not None and entry.organisation == registered.organisation:
                break   # another registered address of the same organisation
            findings.append(F.DISPLAY_NAME_MISMATCH.finding(
                address,
                f"表示名「{name}」は登録済みの {registered.address} ({registered.organisation}) を"
                f"示していますが、実際の宛先は {address} です。",
                suggestion=registered.address,
            ))
            break
    return findings
