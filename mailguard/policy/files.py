"""The schema of each policy file, as strict pydantic models (unknown keys are errors).

``organisation.toml`` (OrganisationFile), ``address_book.toml`` (AddressBookFile),
``decision.toml`` (DecisionFile; ``[actions]`` is checked against the findings
catalogue, and codes a manager must decide cannot be lowered), ``fax.toml``
(FaxFile). Errors name the key; ``load`` adds the file and line.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator

from .. import findings as F
from ..address import ascii_domain, fax_e164, validate_address
from ..model import Action

DEFAULT_ACTIONS = F.DEFAULT_ACTIONS
MANAGER_ONLY = F.MANAGER_ONLY


def _check_domain(value: str) -> str:
    return ascii_domain(value)


Domain = Annotated[str, AfterValidator(_check_domain)]
Address = Annotated[str, AfterValidator(validate_address)]
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


class ApprovalSection(_Strict):
    # A manager may approve their own held message (off: another manager must; 手引き 3-3 の複数人による確認).
    allow_self_approval: bool = False
    # Seconds undecided before the next level (the group's escalate_to) is told; 0: never.
    escalate_after: int = Field(default=1800, ge=0)
    # Seconds undecided before on_timeout happens; 0: never (the queue lifetime still ends it).
    approval_timeout: int = Field(default=86400, ge=0)
    # "reject": refused with a notice to the sender; "keep": it keeps waiting.
    on_timeout: Literal["reject", "keep"] = "reject"
    # Seconds between reminders to the approvers while it waits; 0: none.
    remind_every: int = Field(default=3600, ge=0)
    # Finding codes that need two different approvers (the highest risks).
    two_approvers: list[str] = []

    @field_validator("two_approvers")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        return [_known_code(code) for code in value]
    # Seconds the sender has to confirm a message held for their own check (action "confirm"); then cancelled.
    confirm_timeout: int = Field(default=86400, gt=0)


class GroupEntry(_Strict):
    """A facility or team: whose mail (members) goes to whom (approvers, their stand-ins), and who
    is told next when nobody decides (escalate_to). Members are user names or addresses."""

    name: str = Field(min_length=1)
    members: list[str] = Field(min_length=1)
    approvers: list[str] = Field(min_length=1)
    stand_ins: list[str] = []
    escalate_to: list[str] = []


class OrganisationFile(_Strict):
    organisation: OrganisationSection
    hold: HoldSection = HoldSection()
    approval: ApprovalSection = ApprovalSection()
    group: list[GroupEntry] = []


AgreedKey = Annotated[str, Field(min_length=8, max_length=128)]
# The legal basis of giving this partner personal data (個人情報保護法 第27条): "consent" (本人の同意),
# "contract" (a contract that stands in for the record: kept 1 year, 施行規則 第21条), "entrustment"
# (委託), "law" (法令に基づく), "joint_use" (共同利用). The last three need no provision record (第27条
# 第1項・第5項) but mailguard keeps one, marked as not required. Unset: treated as needing a record.
Basis = Literal["consent", "contract", "entrustment", "law", "joint_use"]
# How personal data leaves for a recipient: a download link, an AES-256 zip, or as it is.
Protection = Literal["link", "zip", "none"]


class EmailEntry(_Strict):
    address: Address
    organisation: str = Field(min_length=1)
    name: str = ""
    note: str = ""
    # Password agreed in advance with this recipient: the zip's password or the link's passcode. Never logged.
    key: AgreedKey | None = Field(default=None, repr=False)
    # This partner's own choice, e.g. "zip" where they prefer an AES zip with the agreed key. Unset: [protection].
    protection: Protection | None = None
    basis: Basis | None = None


class DomainEntry(_Strict):
    domain: Domain
    organisation: str = Field(min_length=1)
    note: str = ""
    key: AgreedKey | None = Field(default=None, repr=False)
    protection: Protection | None = None
    basis: Basis | None = None


class FaxEntry(_Strict):
    number: FaxNumber          # stored in E.164; written as staff do (03-1234-5678)
    organisation: str = Field(min_length=1)
    name: str = ""
    note: str = ""
    basis: Basis | None = None


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
    if code not in F.CATALOGUE:
        close = difflib.get_close_matches(code, F.CATALOGUE, n=1)
        hint = f"。「{close[0]}」の書き間違いではありませんか" if close else f" (使える名前: {', '.join(sorted(F.CATALOGUE))})"
        raise ValueError(f"知らない検査結果の名前「{code}」です{hint}")
    return code


FindingCode = Annotated[str, AfterValidator(_known_code)]


def _needs_manager(action: Action | None) -> Action | None:
    if action is not None and action.rank < Action.APPROVAL.rank:
        raise ValueError("\"approval\" か \"reject\" にしてください (管理者の確認なしには送らない事項です)")
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
    Rule(when=[F.FIRST_TIME_RECIPIENT, F.PERSONAL_DATA], action=Action.APPROVAL),
    Rule(when=[F.FIRST_TIME_RECIPIENT, F.SENSITIVE_DATA], action=Action.APPROVAL),
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


class ProtectionSection(_Strict):
    """How personal data leaves for external e-mail recipients (手引き 3-3 5); PPC 通則編 3-5-1-1:
    data recovered before anyone viewed it is no leak). ``link``: the attachments with personal
    data, and the body when it has some, are replaced by a revocable, expiring download link whose
    every use is recorded; ``zip``: an AES-256 zip ([encryption]); ``none``: as they are. FAX
    recipients always get the original (the number is their protection)."""

    personal: Protection = "link"
    sensitive: Protection = "link"
    # Move a body with personal data behind the link (or into the zip) too.
    body: bool = True
    # "required": the partner's agreed key, else a passcode sent to the sender only; "none": no passcode.
    passcode: Literal["required", "none"] = "required"
    passcode_sensitive: Literal["required", "none"] = "required"
    # Attachments that could not be inspected, to registered e-mail partners only: "hold" for a
    # manager, or "link" (they leave behind a link instead of waiting). Unregistered: always held.
    unscannable: Literal["hold", "link"] = "hold"


class DecisionFile(_Strict):
    protection: ProtectionSection = ProtectionSection()
    encryption: EncryptionSection = EncryptionSection()
    actions: ActionsTable = ActionsTable()
    rules: list[Rule] = DEFAULT_RULES
    exposure: ExposureSection = ExposureSection()


class Webhook(_Strict):
    """A chat notification when mail waits for a person. ``format``: ``generic`` (JSON of the facts),
    ``teams`` (Microsoft Teams incoming webhook, MessageCard), ``slack`` (Slack incoming webhook).
    Only labels, counts and the console link are sent: no subject, no body, no full address
    (chat services are outside the office)."""

    url: str = Field(pattern=r"^https?://", repr=False)
    format: Literal["generic", "teams", "slack"] = "generic"
    events: list[Literal["approval_requested", "escalated", "reminded"]] = ["approval_requested", "escalated"]
    name: str = ""


class NotifyFile(_Strict):
    webhook: list[Webhook] = []


FILES: dict[str, type[_Strict]] = {
    "organisation.toml": OrganisationFile,
    "address_book.toml": AddressBookFile,
    "decision.toml": DecisionFile,
    "fax.toml": FaxFile,
    "notify.toml": NotifyFile,
}
REQUIRED = ("organisation.toml",)
