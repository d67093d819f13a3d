"""policy: the TOML files in ``policies/`` that admins edit, and the snapshot in force.

Receives: the directory MAILGUARD_POLICIES_DIR. Hands on: ``Policy``, one
immutable snapshot every stage reads (swapped whole on reload).

Files (each optional but ``organisation.toml``):

- ``organisation.toml``: name, internal domains, the hold (手引き チェックリスト3-3 5));
- ``address_book.toml``: registered recipients, partner domains, FAX numbers (3-3 4));
- ``decision.toml``: the decision table ``[actions]`` (codes from ``findings``),
  ``[[rules]]``, ``[exposure]``, ``[encryption]``;
- ``fax.toml``: e-mail-to-FAX gateways (RFC 3192 or the gateway's own form);
- ``roster.csv``: residents' names and insured numbers, found exactly in mail.

On failure: an error names the file, the line, the key and the reason
(``PolicyError``); the running relay keeps the last good policy (``watch``).
Modules: ``files`` (schemas), ``snapshot`` (Policy), ``roster``, ``load``,
``edit`` (console changes), ``watch``.
"""

from .files import (DEFAULT_ACTIONS, MANAGER_ONLY, AddressBookFile, DecisionFile, DomainEntry, EmailEntry,
                    FaxEntry, FaxFile, FaxGateway, OrganisationFile, Rule)
from .load import PolicyError, load, locate
from .edit import update_file
from .roster import Roster, decode_csv, load_roster
from .snapshot import Policy
from .watch import PolicyWatcher

__all__ = [
    "DEFAULT_ACTIONS", "MANAGER_ONLY", "AddressBookFile", "DecisionFile", "DomainEntry", "EmailEntry",
    "FaxEntry", "FaxFile", "FaxGateway", "OrganisationFile", "Rule", "PolicyError", "load", "locate",
    "update_file", "Roster", "decode_csv", "load_roster", "Policy", "PolicyWatcher",
]
