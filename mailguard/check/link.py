"""link: take personal data out of a message and put one download link per recipient in its place.

Receives the raw message, the MIME part paths to protect (attachments, and the
body text parts when the body carries personal data), each recipient with the
passcode that will open their link, and the context of the mail (download
address, queue id, sender, organisation). Hands on ``vault.Protected``: the files
sealed once under a fresh data key (AES-256-GCM), one ``Grant`` per recipient
(link id, hash of its secret, the data key wrapped for that link and passcode)
and one copy of the message per recipient, whose note names the sender and the
organisation, the files with their sizes, how long the link lasts and how to get
the passcode, and the link itself. The passcode is never in the mail.

One link per recipient: each partner opens with their own agreed key, the access
record says whose link was opened, and one link can be revoked alone.
Standards: RFC 2046 (the new text part), ``vault`` for the cryptography.
On failure: raises (ValueError when a path is missing or the copies would exceed
``MAX_COPY_BYTES``): the caller holds the message unchanged.
"""

from __future__ import annotations

import mimetypes
from copy import deepcopy
from dataclasses import dataclass

from .. import vault
from . import surgery

MAX_COPY_BYTES = 256 * 1024 * 1024   # all copies of one message together

NOTE = """【mailguard より】このメールの{what}には個人情報が含まれるため、メールには入れず、
次のダウンロードページからお受け取りいただくようにしました。

  送信者:     {sender}
  送信元:     {organisation}
  ファイル:
{files}
  有効期限:   このメールの送信から {days} 日間 (期限の日時はページに表示します)
  パスコード: {passcode}

ダウンロードページ:
  {url}

・このリンクは {recipient} 様専用です。転送しないでください。
・ページを開くだけではダウンロードされません。ページのボタンを押してください。
・お心当たりのない場合は、開かずに送信者へお知らせください。送信者はこのリンクを無効にできます。
"""
PASSCODES = {
    "agreed": "事前に取り決めたパスワードを入力してください",
    "generated": "送信者から電話など、メール以外の方法でお知らせします",
    "none": "不要です",
}


@dataclass(frozen=True)
class LinkContext:
    """The facts the recipient's note needs that the message itself does not carry."""

    base_url: str           # MAILGUARD_DOWNLOAD_URL, no trailing slash
    queue_id: str
    sender: str             # the From: as people read it
    organisation: str       # [organisation] name
    lifetime_days: int


@dataclass(frozen=True)
class LinkRecipient:
    address: str
    passcode: str           # what opens this link ("" for none)
    kind: str               # "agreed" | "generated" | "none"


def protect(raw: bytes, paths: list[str], recipients: list[LinkRecipient], context: LinkContext, *,
            body: bool) -> tuple[vault.Protected, tuple[str, ...]]:
    """The sealed files, grants and per-recipient copies; and the names of the files.
    ``body``: the body text parts are among ``paths`` (the note becomes the body)."""
    msg = surgery.parse(raw)
    named, _ = surgery.unique_names(surgery.take_out(msg, set(paths)))
    rest = len(raw) - sum(len(data) for _, data in named)   # about what each copy carries besides its note
    if (max(rest, 0) + 4096) * len(recipients) > MAX_COPY_BYTES:
        raise ValueError(f"{len(recipients)} link copies of about {rest:,} bytes are more than {MAX_COPY_BYTES:,}")
    data_key = vault.new_key()
    files = tuple(vault.SealedFile(name, len(data), _ctype(name),
                                   vault.seal(data_key, data, vault.file_aad(context.queue_id, index)))
                  for index, (name, data) in enumerate(named))
    listing = "\n".join(f"    ・{name} ({_size(len(data))})" for name, data in named)
    grants, copies = [], []
    for rcpt in recipients:
        link_id, secret = vault.new_link()
        grants.append(vault.Grant(link_id, rcpt.address, vault.secret_hash(secret),
                                  vault.wrap(data_key, link_id, secret, rcpt.passcode), rcpt.kind))
        note = NOTE.format(what="本文と添付ファイル" if body else "添付ファイル", sender=context.sender,
                           organisation=context.organisation, files=listing, days=context.lifetime_days,
                           passcode=PASSCODES[rcpt.kind], url=f"{context.base_url}/d/{link_id}/{secret}",
                           recipient=rcpt.address)
        copy = deepcopy(msg)   # not a parse of the flattened rest: an emptied container would come back as a part
        surgery.add_note(copy, note, first=body)
        copies.append(vault.Copy((rcpt.address,), surgery.flatten(copy)))
    return (vault.Protected(files, tuple(grants), tuple(copies), context.sender, context.organisation),
            tuple(name for name, _ in named))


def _ctype(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} バイト"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
