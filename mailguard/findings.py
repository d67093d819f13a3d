"""The findings catalogue: every finding code mailguard can raise, as data.

A finding (``model.Finding``) is one fact a check found. Its code is one of the
constants below; each code has a severity, a default action in the decision
table (``decision.toml [actions]`` may change it), whether a policy may lower it
below ``approval`` (a mistyped FAX number or a look-alike domain never leaves
without a manager: 手引き 事例6, checklist 3-3 4)), and a Japanese label for
people (the console, the CLI, notices). Code compares these constants, never
string literals; ``decision.toml`` is validated against this catalogue.
"""

from __future__ import annotations

from .model import Action, Finding, Severity


class Code(str):
    """One finding code. It *is* its stable machine name (a ``str``: kept as is in the
    store and the log, compared with ``==``), with the catalogue's facts attached."""

    severity: Severity
    default_action: Action
    label: str           # Japanese, for people
    lowerable: bool      # False: never below ``approval`` whatever the policy says

    def __new__(cls, name: str, severity: Severity, default_action: Action, label: str,
                lowerable: bool = True) -> "Code":
        code = super().__new__(cls, name)
        code.severity, code.default_action, code.label, code.lowerable = severity, default_action, label, lowerable
        return code

    @property
    def name(self) -> str:
        return str.__str__(self)

    def finding(self, subject: str, text: str, suggestion: str = "") -> Finding:
        """A finding of this code, with the catalogue's severity."""
        return Finding(self, self.severity, subject, text, suggestion)


_code = Code


S, A = Severity, Action
EXTERNAL_RECIPIENT = _code("external_recipient", S.LOW, A.DELAY, "社外の宛先")
UNREGISTERED_RECIPIENT = _code("unregistered_recipient", S.HIGH, A.APPROVAL, "アドレス帳に無い宛先")
FIRST_TIME_RECIPIENT = _code("first_time_recipient", S.MEDIUM, A.DELAY, "初めて送る宛先")
LOOKALIKE_DOMAIN = _code("lookalike_domain", S.CRITICAL, A.APPROVAL, "登録済みの宛先に似たドメイン", False)
SAME_LOCAL_PART_OTHER_DOMAIN = _code("same_local_part_other_domain", S.HIGH, A.APPROVAL,
                                     "登録済みの人と同じ名前で別のドメイン")
DISPLAY_NAME_MISMATCH = _code("display_name_mismatch", S.CRITICAL, A.APPROVAL, "表示名と実際の宛先の食い違い")
DOMAIN_NOT_FOUND = _code("domain_not_found", S.HIGH, A.APPROVAL, "存在しないドメイン")
DOMAIN_NULL_MX = _code("domain_null_mx", S.HIGH, A.APPROVAL, "メールを受け取らないドメイン")
DOMAIN_UNVERIFIED = _code("domain_unverified", S.INFO, A.DELIVER, "DNS で確認できなかったドメイン")
MASS_MAIL_EXPOSURE = _code("mass_mail_exposure", S.HIGH, A.APPROVAL, "To/Cc で宛先どうしが見える一斉送信")
MASS_MAIL_REWRITTEN = _code("mass_mail_rewritten", S.MEDIUM, A.CONFIRM, "一斉送信の宛先を隠して送信")
UNREGISTERED_FAX = _code("unregistered_fax", S.HIGH, A.APPROVAL, "アドレス帳に無い FAX 番号")
FAX_NUMBER_MISTYPED = _code("fax_number_mistyped", S.CRITICAL, A.APPROVAL, "登録済み FAX 番号の打ち間違い", False)
FAX_NUMBER_INVALID = _code("fax_number_invalid", S.HIGH, A.APPROVAL, "FAX 番号として読めない")
PERSONAL_DATA = _code("personal_data", S.MEDIUM, A.DELIVER, "個人情報")
SENSITIVE_DATA = _code("sensitive_data", S.HIGH, A.DELIVER, "要配慮個人情報")
UNSCANNABLE_CONTENT = _code("unscannable_content", S.HIGH, A.APPROVAL, "検査できない内容")
PERSONAL_DATA_IN_SUBJECT = _code("personal_data_in_subject", S.HIGH, A.CONFIRM, "件名に個人情報")
UNSCANNABLE_LINKED = _code("unscannable_linked", S.MEDIUM, A.DELAY, "検査できない添付 (リンクで送信)")
SIGNED_NOT_ENCRYPTABLE = _code("signed_not_encryptable", S.HIGH, A.APPROVAL, "署名付きで暗号化できない添付")
INSPECTION_FAILED = _code("inspection_failed", S.HIGH, A.APPROVAL, "検査中のエラー", False)
PROCESSING_FAILED = _code("processing_failed", S.HIGH, A.APPROVAL, "処理中のエラー", False)
del S, A

CATALOGUE: dict[str, Code] = {c.name: c for c in (
    EXTERNAL_RECIPIENT, UNREGISTERED_RECIPIENT, FIRST_TIME_RECIPIENT, LOOKALIKE_DOMAIN,
    SAME_LOCAL_PART_OTHER_DOMAIN, DISPLAY_NAME_MISMATCH, DOMAIN_NOT_FOUND, DOMAIN_NULL_MX,
    DOMAIN_UNVERIFIED, MASS_MAIL_EXPOSURE, MASS_MAIL_REWRITTEN, UNREGISTERED_FAX, FAX_NUMBER_MISTYPED,
    FAX_NUMBER_INVALID, PERSONAL_DATA, SENSITIVE_DATA, PERSONAL_DATA_IN_SUBJECT, UNSCANNABLE_CONTENT,
    UNSCANNABLE_LINKED, SIGNED_NOT_ENCRYPTABLE,
    INSPECTION_FAILED, PROCESSING_FAILED,
)}
DEFAULT_ACTIONS: dict[str, Action] = {name: code.default_action for name, code in CATALOGUE.items()}
# Codes a sender may never release by "send now" and a policy may not lower.
MANAGER_ONLY = frozenset(name for name, code in CATALOGUE.items() if not code.lowerable)


def label(name: str) -> str:
    """The Japanese label of a code; an unknown code (an old log entry) is shown as it is."""
    code = CATALOGUE.get(name)
    return code.label if code else name
