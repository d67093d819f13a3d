"""Policies: the TOML files in ``policies/`` that admins edit.

Files (each optional but ``organisation.toml``; unknown ``*.toml`` names are an error,
so a misspelt file is never silently ignored):

- ``organisation.toml``: the organisation's name, its internal domains, the hold
  (delay before external mail leaves; 手引き チェックリスト3-3 5)).
- ``address_book.toml``: registered external recipients (``[[email]]``) and whole
  partner domains (``[[domain]]``), each with its organisation (チェックリスト3-3 4)).
- ``decision.toml``: which action each finding code leads to (``[actions]``),
  combinations that call for more (``[[rules]]``), and mass-mail exposure limits
  (``[exposure]``).
- ``fax.toml``: e-mail-to-FAX gateways (RFC 3192 or the gateway's own form).
- ``roster.csv`` (optional): residents' names and insured numbers, found exactly in mail.

Every file is validated with pydantic (unknown keys are errors). An error names
the file, the line, the key and the reason. The running relay re-reads the files
when they change and keeps the last good policy when they are broken.
"""

from __future__ import annotations

import functools
import logging
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import idna
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from .model import Action

log = logging.getLogger("mailguard.policy")

# Default decision table: finding code → action. decision.toml overrides entries.
DEFAULT_ACTIONS: dict[str, Action] = {
    "external_recipient": Action.DELAY,
    "unregistered_recipient": Action.APPROVAL,
    "first_time_recipient": Action.DELAY,
    "lookalike_domain": Action.APPROVAL,
    "same_local_part_other_domain": Action.APPROVAL,
    "display_name_mismatch": Action.APPROVAL,
    "domain_not_found": Action.APPROVAL,
    "domain_null_mx": Action.APPROVAL,
    "domain_unverified": Action.DELIVER,
    "mass_mail_exposure": Action.APPROVAL,
    "mass_mail_rewritten": Action.DELAY,
    "unregistered_fax": Action.APPROVAL,
    "fax_number_mistyped": Action.APPROVAL,
    "fax_number_invalid": Action.APPROVAL,
    "personal_data": Action.DELIVER,
    "sensitive_data": Action.DELIVER,
    "unscannable_content": Action.APPROVAL,
    "signed_not_encryptable": Action.APPROVAL,
    "inspection_failed": Action.APPROVAL,
}
# Findings a sender may never override by "send now": only a manager releases them.
MANAGER_ONLY = frozenset({"fax_number_mistyped", "lookalike_domain"})


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


def _check_domain(value: str) -> str:
    return ascii_domain(value)


def validate_address(value: str) -> str:
    """A syntactically valid e-mail address, domain lower-cased. Raises ValueError."""
    return _check_address(value)


def _check_address(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {value!r} ({exc})") from None
    return result.normalized


Domain = Annotated[str, AfterValidator(_check_domain)]
Address = Annotated[str, AfterValidator(_check_address)]
FaxNumber = Annotated[str, AfterValidator(fax_e164)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrganisationSection(_Strict):
    name: str = Field(min_length=1)
    internal_domains: list[Domain] = Field(min_length=1)
    # Subdomains of an internal domain (mail.example.jp) are internal too.
    include_subdomains: bool = True


class HoldSection(_Strict):
    # Seconds an external message waits before it leaves; unset = MAILGUARD_HOLD_DELAY.
    delay_seconds: int | None = Field(default=None, ge=0, le=7 * 86400)
    # The sender may release a held message before its time ("send now").
    allow_send_now: bool = True
    # Tell the sender by mail when a message is held, with a link to cancel it.
    notify_sender: bool = True


class OrganisationFile(_Strict):
    organisation: OrganisationSection
    hold: HoldSection = HoldSection()


AgreedKey = Annotated[str, Field(min_length=8, max_length=128)]


class EmailEntry(_Strict):
    address: Address
    organisation: str = Field(min_length=1)
    name: str = ""
    note: str = ""
    # Password agreed in advance with this recipient for encrypted attachments. Never logged.
    key: AgreedKey | None = Field(default=None, repr=False)


class DomainEntry(_Strict):
    domain: Domain
    organisation: str = Field(min_length=1)
    note: str = ""
    key: AgreedKey | None = Field(default=None, repr=False)


class FaxEntry(_Strict):
    number: FaxNumber          # stored in E.164; written as staff do (03-1234-5678)
    organisation: str = Field(min_length=1)
    name: str = ""
    note: str = ""


class AddressBookFile(_Strict):
    email: list[EmailEntry] = []
    domain: list[DomainEntry] = []
    fax: list[FaxEntry] = []


class FaxGateway(_Strict):
    """An e-mail-to-FAX gateway: mail to ``<number>@domain`` is sent as a FAX.

    style ``rfc3192``: ``FAX=+81312345678@domain`` (RFC 3192 §2);
    style ``number``: the national number as the local part, ``0312345678@domain``.
    Either form is recognised on the way in; delivery uses the gateway's own.
    """

    domain: Domain
    style: Literal["rfc3192", "number"] = "rfc3192"
    name: str = ""


class FaxFile(_Strict):
    gateway: list[FaxGateway] = []


def _known_code(code: str) -> str:
    if code not in DEFAULT_ACTIONS:
        raise ValueError(f"unknown finding code {code!r}; known: {sorted(DEFAULT_ACTIONS)}")
    return code


FindingCode = Annotated[str, AfterValidator(_known_code)]


def _needs_manager(action: Action | None) -> Action | None:
    if action is not None and action.rank < Action.APPROVAL.rank:
        raise ValueError("must be 'approval' or 'reject': it is never released without a manager")
    return action


# [actions] as a model with one optional field per finding code, so that an unknown
# code or a forbidden action is reported at its own key and line.
ActionsTable = create_model(
    "ActionsTable",
    __base__=_Strict,
    **{code: ((Annotated[Action | None, AfterValidator(_needs_manager)] if code in MANAGER_ONLY
               else Action | None), None) for code in DEFAULT_ACTIONS},
)


class Rule(_Strict):
    """When every code in ``when`` is among a message's findings, at least ``action``."""

    when: list[FindingCode] = Field(min_length=2)
    action: Action


# Free-mail and mobile carrier domains: each address there is a person of its own.
PERSONAL_DOMAINS = [
    "gmail.com", "googlemail.com", "yahoo.co.jp", "ymail.ne.jp", "icloud.com", "me.com",
    "outlook.jp", "outlook.com", "hotmail.com", "hotmail.co.jp", "live.jp", "msn.com",
    "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp", "ymobile.ne.jp",
    "rakuten.jp", "nifty.com",
]


class ExposureSection(_Strict):
    """Mass-mail exposure: external addresses that all recipients can see in To:/Cc:."""

    max_visible_external: int = Field(default=5, ge=1)
    max_visible_organisations: int = Field(default=1, ge=1)
    # Registered partners seeing each other (a care conference) is normal work.
    registered_may_see_each_other: bool = True
    # "approval": hold for a manager; "bcc": deliver with the addresses hidden.
    handling: Literal["approval", "bcc"] = "approval"
    personal_domains: list[Domain] = PERSONAL_DOMAINS


# Used when decision.toml has no [[rules]]: personal data to someone never written to before.
DEFAULT_RULES = [
    Rule(when=["first_time_recipient", "personal_data"], action=Action.APPROVAL),
    Rule(when=["first_time_recipient", "sensitive_data"], action=Action.APPROVAL),
]


class EncryptionSection(_Strict):
    """Attachments with personal data leave only inside an AES-256 zip (手引き 3-3:
    重要な情報はパスワード付きの添付ファイルに). The password is the key agreed with the
    recipient in the address book, else a generated one sent to the sender only: it is
    never mailed to the recipient (PPAP was abolished by the government in 2020)."""

    enabled: bool = True
    levels: list[Literal["personal", "sensitive"]] = ["personal", "sensitive"]
    archive_name: str = Field(default="添付ファイル（暗号化）.zip", min_length=5)
    password_length: int = Field(default=16, ge=12, le=64)


class DecisionFile(_Strict):
    encryption: EncryptionSection = EncryptionSection()
    actions: ActionsTable = ActionsTable()
    rules: list[Rule] = DEFAULT_RULES
    exposure: ExposureSection = ExposureSection()


FILES: dict[str, type[_Strict]] = {
    "organisation.toml": OrganisationFile,
    "address_book.toml": AddressBookFile,
    "decision.toml": DecisionFile,
    "fax.toml": FaxFile,
}
REQUIRED = ("organisation.toml",)


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
    fax_gateways: dict[str, FaxGateway] = field(default_factory=dict)
    roster: Roster = field(default_factory=lambda: Roster((), ()))
    _emails: dict[str, EmailEntry] = field(default_factory=dict, repr=False)
    _domains: dict[str, DomainEntry] = field(default_factory=dict, repr=False)
    _faxes: dict[str, FaxEntry] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, org: OrganisationFile, book: AddressBookFile, decision: DecisionFile,
              fax: FaxFile | None = None, roster: "Roster | None" = None) -> "Policy":
        return cls(
            roster=roster or Roster((), ()),
            organisation=org.organisation, hold=org.hold, address_book=book,
            actions={**DEFAULT_ACTIONS, **decision.actions.model_dump(exclude_none=True)},
            rules=tuple(decision.rules), exposure=decision.exposure, encryption=decision.encryption,
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

    def fax_entry(self, e164: str) -> FaxEntry | None:
        return self._faxes.get(e164)

    def fax_gateway(self, address: str) -> FaxGateway | None:
        return self.fax_gateways.get(address_key(address).rpartition("@")[2])

    def hold_delay(self, default: int) -> int:
        return default if self.hold.delay_seconds is None else self.hold.delay_seconds


@dataclass(frozen=True)
class Roster:
    """Residents (利用者名簿) from ``roster.csv``: names without spaces, NFKC; insured numbers.
    Personal data itself: keep the file readable by the relay and admins only."""

    names: tuple[str, ...]
    insured_numbers: tuple[str, ...]


ROSTER_FILE = "roster.csv"
ROSTER_NAME, ROSTER_NUMBER = "氏名", "被保険者番号"


def decode_csv(data: bytes) -> str | None:
    """CSV text as Excel writes it in Japan: UTF-8 (with or without BOM), else CP932; None if neither."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def load_roster(path: Path, problems: list[str]) -> Roster | None:
    """``roster.csv``: a header with 氏名 (required) and 被保険者番号 (optional), UTF-8 or CP932."""
    import csv

    text = decode_csv(path.read_bytes())
    if text is None:
        problems.append(f"{path}: not UTF-8 or CP932 text")
        return None
    rows = list(csv.reader(text.splitlines()))
    if not rows or ROSTER_NAME not in rows[0]:
        problems.append(f"{path}:1: header must name the column {ROSTER_NAME} (and optionally {ROSTER_NUMBER})")
        return None
    header = rows[0]
    names, numbers = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        record = dict(zip(header, row))
        name = "".join(unicodedata.normalize("NFKC", record.get(ROSTER_NAME, "")).split())
        if len(name) < 2:
            problems.append(f"{path}:{line}: {ROSTER_NAME}: empty or too short")
            continue
        names.append(name)
        number = unicodedata.normalize("NFKC", record.get(ROSTER_NUMBER, "") or "").strip()
        if number:
            if not re.fullmatch(r"\d{10}", number):
                problems.append(f"{path}:{line}: {ROSTER_NUMBER}: not 10 digits")
                continue
            numbers.append(number)
    return Roster(tuple(names), tuple(numbers))


class PolicyError(Exception):
    """One or more policy files are invalid. ``problems`` holds one line each:
    ``policies/address_book.toml:12: email[2].address: not a valid e-mail address …``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load(directory: Path) -> Policy:
    """Read and validate every policy file in ``directory``. Raises PolicyError."""
    if not directory.is_dir():
        raise PolicyError([f"{directory}: policy directory not found (MAILGUARD_POLICIES_DIR)"])
    problems: list[str] = []
    parsed: dict[str, _Strict] = {}
    roster = load_roster(directory / ROSTER_FILE, problems) if (directory / ROSTER_FILE).exists() else None
    for path in sorted(directory.glob("*.toml")):
        if path.name not in FILES:
            problems.append(f"{path}: unknown policy file (expected one of: {', '.join(FILES)})")
            continue
        model = _load_file(path, FILES[path.name], problems)
        if model is not None:
            parsed[path.name] = model
    for name in REQUIRED:
        if not (directory / name).exists():
            problems.append(f"{directory / name}: required policy file is missing")
    if problems:
        raise PolicyError(problems)
    return Policy.build(
        parsed["organisation.toml"],
        parsed.get("address_book.toml", AddressBookFile()),
        parsed.get("decision.toml", DecisionFile()),
        parsed.get("fax.toml", FaxFile()),
        roster,
    )


def _load_file(path: Path, model: type[_Strict], problems: list[str]) -> _Strict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f":{match.group(1)}" if match else ""
        problems.append(f"{path}{where}: TOML syntax error: {exc}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = locate(text, loc)
            where = f":{line}" if line else ""
            reason = err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}{where}: {_dotted(loc)}: {reason}")
        return None


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":   # pydantic's marker for "the key itself was invalid"
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def locate(text: str, loc: tuple) -> int | None:
    """Best-effort 1-based line of a pydantic error location in a TOML text.

    Handles the shapes our files use: ``[table] key``, ``[[array]] n key``, and a
    list value's element (reported at the key's line).
    """
    if not loc:
        return None
    lines = text.splitlines()
    table, rest = str(loc[0]), list(loc[1:])
    index = rest.pop(0) if rest and isinstance(rest[0], int) else 0
    header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
    headers = [n for n, line in enumerate(lines) if header.match(line)]
    if not headers:
        # a top-level key, not a table
        key = re.compile(r"^\s*\"?" + re.escape(table) + r"\"?\s*=")
        return next((n + 1 for n, line in enumerate(lines) if key.match(line)), None)
    start = headers[min(index, len(headers) - 1)]
    if not rest or not isinstance(rest[0], str):
        return start + 1
    key = re.compile(r"^\s*\"?" + re.escape(rest[0]) + r"\"?\s*=")
    for n in range(start + 1, len(lines)):
        if lines[n].lstrip().startswith("["):
            break
        if key.match(lines[n]):
            return n + 1
    return start + 1


def update_file(directory: Path, name: str, change: Callable[[Any], None]) -> None:
    """Change one policy file the way an admin would: comments and layout kept (tomlkit),
    the whole policy validated with the change before anything is written, then an
    atomic replace (the running relay picks it up like a hand edit).

    Raises PolicyError (naming the real file) when the change would break the policy.
    """
    import os
    import shutil
    import tempfile

    import tomlkit

    path = directory / name
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    change(document)
    text = tomlkit.dumps(document)
    with tempfile.TemporaryDirectory() as scratch:
        for existing in [*directory.glob("*.toml"), *directory.glob(ROSTER_FILE)]:
            shutil.copy2(existing, scratch)
        Path(scratch, name).write_text(text, encoding="utf-8")
        try:
            load(Path(scratch))
        except PolicyError as exc:
            raise PolicyError([p.replace(scratch, str(directory)) for p in exc.problems]) from None
    temporary = path.with_name(f".{name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _signature(directory: Path) -> tuple:
    try:
        files = [*directory.glob("*.toml"), *directory.glob(ROSTER_FILE)]
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    except OSError:
        return ()


class PolicyWatcher:
    """Holds the policy in force and re-reads the directory when its files change.

    A broken change is logged (file, line, key, reason) and the previous policy
    stays in force; ``errors`` holds the problems until a good version is read.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.current: Policy = load(directory)   # at start a broken policy is fatal
        self.errors: list[str] = []
        self._signature = _signature(directory)

    def refresh(self) -> bool:
        """Re-read if any file changed. Returns True when a new policy took effect."""
        signature = _signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            policy = load(self.directory)
        except PolicyError as exc:
            self.errors = exc.problems
            for problem in exc.problems:
                log.error("policy not reloaded, previous policy stays in force: %s", problem)
            return False
        self.current, self.errors = policy, []
        log.info("policy reloaded from %s", self.directory)
        return True
