"""The policy in force: one immutable snapshot of every file, swapped whole on reload.

Answers the questions every stage asks: is an address internal, which
address-book entry registers it, which FAX entry or gateway, how long the hold.
Addresses are compared in ``address.address_key`` form. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..address import address_key
from ..findings import DEFAULT_ACTIONS
from ..model import Action
from .files import (AddressBookFile, ApprovalSection, GroupEntry, NotifyFile, Webhook, DecisionFile, DomainEntry, EmailEntry, EncryptionSection,
                    ExposureSection, FaxEntry, FaxFile, FaxGateway, HoldSection, OrganisationFile,
                    OrganisationSection, ProtectionSection, Rule)
from .roster import Roster


@dataclass(frozen=True)
class Policy:
    """The policy in force: one immutable snapshot, swapped whole on reload."""

    organisation: OrganisationSection
    hold: HoldSection
    address_book: AddressBookFile
    actions: dict[str, Action]
    rules: tuple[Rule, ...] = ()
    exposure: ExposureSection = ExposureSection()
    encryption: EncryptionSection = EncryptionSection()
    protection: ProtectionSection = ProtectionSection()
    fax_gateways: dict[str, FaxGateway] = field(default_factory=dict)
    roster: Roster = field(default_factory=lambda: Roster((), ()))
    approval: ApprovalSection = ApprovalSection()
    groups: tuple[GroupEntry, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    _emails: dict[str, EmailEntry] = field(default_factory=dict, repr=False)
    _domains: dict[str, DomainEntry] = field(default_factory=dict, repr=False)
    _faxes: dict[str, FaxEntry] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, org: OrganisationFile, book: AddressBookFile, decision: DecisionFile,
              fax: FaxFile | None = None, roster: "Roster | None" = None,
              notify: NotifyFile | None = None) -> "Policy":
        return cls(
            roster=roster or Roster((), ()), webhooks=tuple(notify.webhook) if notify else (),
            organisation=org.organisation, hold=org.hold, approval=org.approval, groups=tuple(org.group),
            address_book=book,
            actions={**DEFAULT_ACTIONS, **decision.actions.model_dump(exclude_none=True)},
            rules=tuple(decision.rules), exposure=decision.exposure, encryption=decision.encryption,
            protection=decision.protection,
            fax_gateways={g.domain: g for g in (fax.gateway if fax else [])},
            _emails={address_key(e.address): e for e in book.email},
            _domains={d.domain: d for d in book.domain},
            _faxes={f.number: f for f in book.fax},
        )

    def is_internal(self, address: str) -> bool:
        """True when the address's domain is one of ours (or a subdomain, if allowed)."""
        domain = address_key(address).rpartition("@")[2]
        for own in self.organisation.internal_domains:
            if domain == own or (self.organisation.include_subdomains and domain.endswith("." + own)):
                return True
        return False

    def lookup(self, address: str) -> EmailEntry | DomainEntry | None:
        """The address-book entry that registers this address: exact address first, then its domain."""
        key = address_key(address)
        return self._emails.get(key) or self._domains.get(key.rpartition("@")[2])

    def protection_for(self, address: str, level: str) -> str:
        """``link`` / ``zip`` / ``none`` for personal data of ``level`` to an external address:
        the partner's own choice in the address book, else [protection]. A level [encryption]
        does not protect (``enabled = false``, or not in ``levels``) is ``none``."""
        if level not in ("personal", "sensitive") or not self.encryption.enabled \
                or level not in self.encryption.levels:
            return "none"
        entry = self.lookup(address)
        chosen = getattr(entry, "protection", None)
        return chosen or getattr(self.protection, level)

    def passcode_required(self, level: str) -> bool:
        wanted = self.protection.passcode_sensitive if level == "sensitive" else self.protection.passcode
        return wanted == "required"

    def fax_entry(self, e164: str) -> FaxEntry | None:
        return self._faxes.get(e164)

    def fax_gateway(self, address: str) -> FaxGateway | None:
        return self.fax_gateways.get(address_key(address).rpartition("@")[2])

    def hold_delay(self, default: int) -> int:
        return default if self.hold.delay_seconds is None else self.hold.delay_seconds

