"""encrypt: replace attachments (and a body) by one AES-256 zip, with a note saying how to open it.

Receives the raw message, the MIME part paths to protect (attachments as
inspection reported them, ``content.mime``, and the body text parts when the
body carries personal data) and the password; returns the new message bytes and
the names put in the zip. Parts are taken out with ``surgery`` (compat32, the
same numbering as inspection). The zip is WinZip AES-256 (pyzipper) with UTF-8
names; the note says Windows Explorer cannot open it (error 0x80004005) and which
free tools can, and lists every name that had to change (``surgery.safe_name``).
A body taken out becomes ``メール本文.txt`` in the zip and the note the new body.
On failure: raises (ValueError when a path is not in the message): the caller
holds the message; nothing that had to be encrypted leaves in the clear.
"""

from __future__ import annotations

import io
from email.mime.application import MIMEApplication

import pyzipper

from . import surgery

NOTE = (
    "【mailguard より】このメールの{what}は、個人情報を含むため、暗号化 (AES-256) した zip ファイル"
    "「{archive}」にまとめました。パスワードは{how}。\n"
    "※ Windows 標準のエクスプローラーでは AES 暗号化された zip を開けません (エラー 0x80004005)。"
    "7-Zip、Lhaplus、CubeICE などの無料ソフトで開いてください。"
)


def encrypt_attachments(raw: bytes, paths: list[str], password: str, archive_name: str, *,
                        how: str, body: bool = False) -> tuple[bytes, tuple[str, ...]]:
    """Replace the parts at MIME part ``paths`` with one AES-256 zip and add the note
    (``body``: the body text parts are among them). Returns the new bytes and the names
    used inside the zip. Raises ValueError when a path is not in the message (never send
    in the clear what had to be encrypted)."""
    msg = surgery.parse(raw)
    files = surgery.take_out(msg, set(paths))
    named, renamed = surgery.unique_names(files)
    note = NOTE.format(archive=archive_name, how=how, what="本文と添付ファイル" if body else "添付ファイル")
    if renamed:
        note += "\n安全のため、次のファイル名を変えて zip に入れました: " + "、".join(renamed[:20])
    surgery.add_note(msg, note, first=body)
    if msg.get_content_type() != "multipart/mixed":
        surgery.make_mixed(msg)   # alternative or related bodies: the zip goes beside them, not inside
    msg.attach(_zip_part(_zip(named, password), archive_name))
    return surgery.flatten(msg), tuple(name for name, _ in named)


def _zip(files: list[tuple[str, bytes]], password: str) -> bytes:
    archive = io.BytesIO()
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in files:
            zf.writestr(name, data)
    return archive.getvalue()


def _zip_part(archive: bytes, archive_name: str) -> MIMEApplication:
    part = MIMEApplication(archive, "zip")
    part.set_param("name", ("utf-8", "", archive_name))                 # RFC 2231
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", archive_name))
    return part
