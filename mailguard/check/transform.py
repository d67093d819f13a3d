"""transform: change what leaves, as the verdict and the protection policy require (Postfix's cleanup).

Receives the message bytes, its routes, the verdict, the policy, the content
report and the ``LinkContext`` (None: link delivery is off, links become zips).
Returns ``Transformed``: the main content (None: unchanged), the copies some
recipients get instead (``vault.Protected``), the RCPT TO per recipient where a
FAX gateway wants its own form, notes for the send log, and the generated
password or passcode (for the sender's notice; never logged).

Who gets what:
- internal recipients and FAX numbers: the message as sent (a FAX gateway must
  print the document; the FAX number is checked against the address book instead);
- external e-mail recipients, when personal data leaves (``[protection]``, or the
  partner's own ``protection`` in the address book): ``link`` — the attachments
  with personal data, and the body when it has some, behind one download link
  per recipient (``link``); ``zip`` — in an AES-256 zip (``encrypt``) with the key
  agreed with that partner, else one generated password for the sender to pass
  on by phone (PPAP abolished by the government in 2020); ``none`` — as sent;
- attachments that could not be inspected go behind the link when the decision
  let them (``unscannable_linked``); nothing uninspected leaves in the clear;
- ``mass_mail_rewritten``: To: and Cc: replaced by ``To: undisclosed-recipients:;``
  (RFC 5322 §3.4 group syntax) in every copy; the envelope is unchanged.

Header surgery works on the raw header block; taking parts out rebuilds the MIME
tree (``surgery``). CPU grows with parts and recipients: run it off the event loop.
On failure: raises; the pipeline holds the message unchanged for a person.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace

from .. import findings as F
from .. import vault
from ..model import Route, RouteKind, Verdict
from ..policy import Policy
from .content.report import BODY, ContentReport
from . import surgery
from .encrypt import encrypt_attachments
from .link import LinkContext, LinkRecipient, protect

# Without 0/O, 1/l/I: the sender reads it out on the telephone.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

HIDDEN_HEADERS = (b"to", b"cc")
PROTECTED_LEVELS = ("personal", "sensitive")


@dataclass(frozen=True)
class Transformed:
    content: bytes | None = None                              # None: unchanged
    deliver_to: dict[str, str] = field(default_factory=dict)  # envelope recipient → RCPT TO address
    notes: tuple[str, ...] = ()                               # for the send log: never a password
    password: str | None = None                               # generated zip password: to the sender only
    encrypted: tuple[str, ...] = ()                           # names put in a zip
    protected: vault.Protected | None = None                  # links and the copies that differ
    passcode: str | None = None                               # generated link passcode: to the sender only
    linked: tuple[str, ...] = ()                              # names behind the links
    link_recipients: tuple[str, ...] = ()
    protection: dict[str, str] = field(default_factory=dict)  # recipient → internal/fax/link/zip/none


@dataclass(frozen=True)
class _Plan:
    """What one external e-mail recipient needs: its mode and the parts to take out."""

    mode: str                 # "link" | "zip"
    paths: tuple[str, ...]
    body: bool
    level: str


def encryption_targets(routes: tuple[Route, ...], policy: Policy, content: ContentReport | None) -> list[str]:
    """MIME part paths of the top-level attachments some external recipient's copy must not carry
    in the clear (personal or sensitive, with a protection other than ``none`` for them)."""
    if content is None:
        return []
    wanted: dict[str, None] = {}
    for route in routes:
        if route.kind is RouteKind.EXTERNAL:
            for path in _parts_for(route.address, policy, content):
                wanted[path] = None
    return list(wanted)


def protection_needed(routes: tuple[Route, ...], policy: Policy, content: ContentReport | None) -> bool:
    """Whether some external recipient's copy must be altered: attachments, or a body with
    personal data, that leave protected (a signed message cannot be, without breaking it)."""
    if content is None:
        return False
    if encryption_targets(routes, policy, content):
        return True
    body = content.level_of(BODY)
    return policy.protection.body and body in PROTECTED_LEVELS and any(
        r.kind is RouteKind.EXTERNAL and policy.protection_for(r.address, body) != "none" for r in routes)


def _parts_for(address: str, policy: Policy, content: ContentReport) -> list[str]:
    levels = {p.path: p.level for p in content.parts}   # one pass: a message may have 10,000 parts
    return [path for path, _ in content.attachments
            if levels.get(path, "none") in PROTECTED_LEVELS
            and policy.protection_for(address, levels[path]) != "none"]


def _plan(route: Route, policy: Policy, content: ContentReport, body_paths: list[str],
          unscannable: list[str], links_on: bool) -> _Plan | None:
    paths = _parts_for(route.address, policy, content)
    level = "sensitive" if any(content.level_of(p) == "sensitive" for p in paths) else "personal"
    body_level = content.level_of(BODY)
    body = bool(body_paths) and policy.protection.body and body_level in PROTECTED_LEVELS \
        and policy.protection_for(route.address, body_level) != "none"
    if body:
        paths += body_paths
        level = "sensitive" if body_level == "sensitive" else level
    paths += [p for p in unscannable if p not in paths]
    if not paths:
        return None
    mode = policy.protection_for(route.address, level)
    mode = "link" if mode == "none" else mode          # only uninspected parts left: never in the clear
    if mode == "link" and not links_on:
        mode = "zip"                                   # no download listener: the zip still protects
    return _Plan(mode, tuple(paths), body, level)


def transform(raw: bytes, routes: tuple[Route, ...], verdict: Verdict, policy: Policy,
              content: ContentReport | None = None, link_context: LinkContext | None = None) -> Transformed:
    notes: list[str] = []
    codes = {f.code for f in verdict.findings}
    base = hide_recipients(raw) if F.MASS_MAIL_REWRITTEN in codes else raw
    if F.MASS_MAIL_REWRITTEN in codes:
        notes.append("To/Cc hidden (undisclosed-recipients)")
    deliver_to = {r.address: r.deliver_to for r in routes if r.deliver_to}
    notes += [f"{rcpt} -> {address}" for rcpt, address in deliver_to.items()]
    plans = {}
    if content is not None and F.SIGNED_NOT_ENCRYPTABLE not in codes:
        unscannable = [u.attachment for u in content.unscannable if u.attachment] \
            if F.UNSCANNABLE_LINKED in codes else []
        body_paths = surgery.body_paths(surgery.parse(base))
        plans = {r.address: plan for r in routes if r.kind is RouteKind.EXTERNAL
                 if (plan := _plan(r, policy, content, body_paths, unscannable, link_context is not None))}
    protection = {r.address: "internal" if r.kind is RouteKind.INTERNAL else "fax" if r.kind is RouteKind.FAX
                  else plans[r.address].mode if r.address in plans else "none" for r in routes}
    if not plans:
        return Transformed(None if base is raw else base, deliver_to, tuple(notes), protection=protection)
    return replace(_protect(base, raw, plans, policy, deliver_to, notes, link_context), protection=protection)


def _protect(base: bytes, raw: bytes, plans: dict[str, _Plan], policy: Policy, deliver_to: dict[str, str],
             notes: list[str], link_context: LinkContext | None) -> Transformed:
    copies: list[vault.Copy] = []
    files: tuple[vault.SealedFile, ...] = ()
    grants: tuple[vault.Grant, ...] = ()
    password = passcode = None
    encrypted: tuple[str, ...] = ()
    linked: tuple[str, ...] = ()
    groups: dict[tuple, list[str]] = {}
    for address, plan in plans.items():
        key = agreed_key((address,), policy) if plan.mode == "zip" else None
        groups.setdefault((plan.mode, plan.paths, plan.body, key), []).append(address)
    link_recipients: list[str] = []
    sender = organisation = ""
    for (mode, paths, body, key), addresses in groups.items():
        if mode == "zip":
            if key is None and password is None:
                password = generate_password(policy.encryption.password_length)
            content, names = encrypt_attachments(
                base, list(paths), key or password, policy.encryption.archive_name, body=body,
                how="事前に取り決めたものです" if key else "送信者から電話など別の方法でお知らせします")
            copies.append(vault.Copy(tuple(addresses), content))
            encrypted = tuple(dict.fromkeys(encrypted + names))
            notes.append(f"{', '.join(addresses)}: {'body and ' if body else ''}attachments encrypted into "
                         f"{policy.encryption.archive_name}: {', '.join(names)}"
                         f" (password: {'agreed key' if key else 'generated, sent to the sender only'})")
        else:
            link_recipients += addresses
    if link_recipients:
        # One sealing for every link recipient: the parts behind the links are the union of their plans.
        paths = tuple(dict.fromkeys(p for a in link_recipients for p in plans[a].paths))
        body = any(plans[a].body for a in link_recipients)
        recipients = []
        for address in link_recipients:
            key = agreed_key((address,), policy)
            if not policy.passcode_required(plans[address].level):
                recipients.append(LinkRecipient(address, "", "none"))
            elif key:
                recipients.append(LinkRecipient(address, key, "agreed"))
            else:
                passcode = passcode or vault.new_passcode()
                recipients.append(LinkRecipient(address, passcode, "generated"))
        protected, linked = protect(base, list(paths), recipients, link_context, body=body)
        files, grants = protected.files, protected.grants
        copies += protected.copies
        sender, organisation = protected.sender, protected.organisation
        notes.append(f"{', '.join(link_recipients)}: {'body and ' if body else ''}attachments behind "
                     f"download links: {', '.join(linked)} (passcode: "
                     f"{', '.join(sorted({r.kind for r in recipients}))})")
    return Transformed(None if base is raw else base, deliver_to, tuple(notes), password, encrypted,
                       vault.Protected(files, grants, tuple(copies), sender, organisation), passcode, linked, tuple(link_recipients))


def agreed_key(addresses: tuple[str, ...], policy: Policy) -> str | None:
    """The key agreed with these recipients in the address book, if they all share one."""
    keys = {getattr(policy.lookup(a), "key", None) for a in addresses}
    return keys.pop() if len(keys) == 1 and None not in keys else None


def generate_password(length: int) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def hide_recipients(content: bytes) -> bytes:
    """Drop To: and Cc: (with their folded lines) and add ``To: undisclosed-recipients:;``."""
    end = content.find(b"\r\n\r\n")
    head, body = (content[: end + 2], content[end + 2:]) if end >= 0 else (content, b"")
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):      # continuation of the previous header
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = name in HIDDEN_HEADERS
        if not skipping:
            kept.append(line)
    head = b"\r\n".join(kept).rstrip(b"\r\n") + b"\r\nTo: undisclosed-recipients:;\r\n"
    return head + body
