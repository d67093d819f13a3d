"""encrypt: replace attachments by one AES-256 zip, with a note saying how to open it.

Receives the raw message, the MIME part paths inspection reported (``content.mime``)
and the password; returns the new message bytes and the names put in the zip.
The message is parsed exactly as inspection parsed it (stdlib ``email``, compat32),
so a path means the same part in both stages; untouched parts are written back as
they came. A single-part message whose one part is the attachment becomes
``multipart/mixed`` first. The zip is WinZip AES-256 (pyzipper) with UTF-8 names;
the note says Windows Explorer cannot open it (error 0x80004005) and which free
tools can. Names are made safe for the recipient's PC (``safe_name``) and the
note lists every name that changed, hidden characters shown as ``<U+202E>``.
On failure: raises (ValueError when a path is not in the message): the caller
holds the message; nothing that had to be encrypted leaves in the clear.
"""

from __future__ import annotations

import io
import re
import secrets
import unicodedata
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.text import MIMEText
from email.policy import compat32
from html import escape

import pyzipper

from .content import mime
from .content.charsets import decode_declared

NOTE = (
    "【mailguard より】このメールの添付ファイルは、個人情報を含むため、暗号化 (AES-256) した zip ファイル"
    "「{archive}」にまとめました。パスワードは{how}。\n"
    "※ Windows 標準のエクスプローラーでは AES 暗号化された zip を開けません (エラー 0x80004005)。"
    "7-Zip、Lhaplus、CubeICE などの無料ソフトで開いてください。"
)
_UNSAFE = re.compile(r'[<>:"/\\|?*]')   # not allowed in a Windows file name
_RESERVED = re.compile(r"^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])\s*(\..*)?$", re.IGNORECASE)
_WIRE = compat32.clone(linesep="\r\n")
_META_CHARSET = re.compile(r"<meta[^>]+charset", re.IGNORECASE)


def safe_name(name: str, fallback: str = "添付ファイル") -> str:
    """A file name that cannot escape or deceive on the recipient's PC: base name only
    (``/`` and ``\\``), no control, bidirectional or reserved characters, no reserved
    Windows device name (CON, NUL, COM1 …), no leading dots, at most 150 characters."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    base = "".join(ch if mime.printable(ch) else "_" for ch in base)   # controls, bidi, zero-width
    base = _UNSAFE.sub("_", base).strip(" .")
    if _RESERVED.match(base):
        base = "_" + base
    if len(base) > 150:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 150 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else base[:150]
    return base or fallback


def encrypt_attachments(raw: bytes, paths: list[str], password: str, archive_name: str, *,
                        how: str) -> tuple[bytes, tuple[str, ...]]:
    """Replace the attachments at MIME part ``paths`` with one AES-256 zip and add the note.
    Returns the new bytes and the names used inside the zip. Raises ValueError when a
    path is not in the message (never send in the clear what had to be encrypted)."""
    msg = message_from_bytes(raw, policy=compat32)
    wanted = set(paths)
    if not mime.is_container(msg) and "1" in wanted:
        _make_mixed(msg)   # the whole message is the attachment: keep a container to put the zip in
    files = _take_out(msg, wanted)
    archive, renamed = _zip(files, password)
    note = NOTE.format(archive=archive_name, how=how)
    if renamed:
        note += "\n安全のため、次のファイル名を変えて zip に入れました: " + "、".join(renamed[:20])
    if msg.get_content_type() != "multipart/mixed":
        _make_mixed(msg)   # alternative or related bodies: the zip goes beside them, not inside
    if not _add_note(msg, note):
        msg.attach(MIMEText(note, "plain", "utf-8"))
    msg.attach(_zip_part(archive, archive_name))
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(msg)
    return out.getvalue(), tuple(name for _, name, _ in files)


def _take_out(msg: Message, wanted: set[str]) -> list[tuple[str, str, bytes]]:
    """Remove the parts at ``wanted`` paths; (name as sent, name for the zip, bytes) of each."""
    files: list[tuple[str, str, bytes]] = []
    for path, container in list(mime.containers(msg)):
        children = container.get_payload()
        kept = []
        for index, child in enumerate(children, 1):
            if mime.child_path(path, index) in wanted:
                files.append(_member(child, mime.child_path(path, index)))
            else:
                kept.append(child)
        if len(kept) != len(children):
            container.set_payload(kept)
    _drop_empty(msg)
    if len(files) != len(wanted):
        raise ValueError(f"attachments to encrypt not found at parts: {sorted(wanted)}")
    return files


def _drop_empty(msg: Message) -> None:
    """Remove the nested containers that taking the attachments out left empty (an empty
    multipart is not valid MIME, RFC 2046 §5.1.1)."""
    for _, container in reversed(list(mime.containers(msg))):
        children = container.get_payload()
        kept = [c for c in children if not (mime.is_container(c) and not c.get_payload())]
        if len(kept) != len(children):
            container.set_payload(kept)


def _zip(files: list[tuple[str, str, bytes]], password: str) -> tuple[bytes, list[str]]:
    """The AES-256 zip of ``files`` (names made unique) and the renames the note must tell."""
    used: set[str] = set()
    renamed = []
    archive = io.BytesIO()
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for original, name, data in files:
            stem, dot, ext = name.rpartition(".")
            unique, n = name, 1
            while unique.lower() in used:   # two attachments of the same name
                n += 1
                unique = f"{stem}({n}).{ext}" if dot else f"{name}({n})"
            used.add(unique.lower())
            if unique != original:
                renamed.append(f"「{_shown(original)}」→「{unique}」")
            zf.writestr(unique, data)
    return archive.getvalue(), renamed


def _shown(name: str) -> str:
    """An original name as the note may show it: its hidden characters made visible (U+202E …)."""
    return "".join(ch if mime.printable(ch) else f"<U+{ord(ch):04X}>" for ch in name[:100])


def _member(part: Message, path: str) -> tuple[str, str, bytes]:
    original = mime.raw_attachment_name(part) or f"添付ファイル{path}"
    if part.get_content_type() == "message/rfc822":   # a forwarded message, whole
        data = mime.forwarded_message(part).as_bytes(policy=_WIRE) if part.get_payload() else b""
        name = original if original.lower().endswith(".eml") else original + ".eml"
    else:
        data = part.get_payload(decode=True) or b""
        name = original
    return original, safe_name(name), data


def _make_mixed(msg: Message) -> None:
    """Turn ``msg`` into ``multipart/mixed`` whose one child is what ``msg`` was."""
    inner = Message()
    content_headers = [(k, v) for k, v in msg.items() if k.lower().startswith("content-")]
    for name in {k for k, _ in content_headers}:
        del msg[name]
    for name, value in content_headers:
        inner[name] = value
    inner.set_payload(msg.get_payload())
    inner.preamble, inner.epilogue = msg.preamble, msg.epilogue
    msg.preamble = msg.epilogue = None
    msg.set_payload([inner])
    msg["Content-Type"] = "multipart/mixed"
    msg.set_boundary("=_mailguard_" + secrets.token_hex(16))   # 44 characters: RFC 2046 allows 70
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"


def _add_note(msg: Message, note: str) -> bool:
    """The note at the end of the first text/plain and text/html body parts. False when
    the message has no body text that can be read (the caller adds the note as a part)."""
    done = set()
    for _, part in mime.leaves(msg):
        subtype = part.get_content_subtype()
        if (part.get_content_maintype() != "text" or subtype not in ("plain", "html") or subtype in done
                or part.get_content_disposition() == "attachment" or mime.attachment_name(part)):
            continue
        data = part.get_payload(decode=True) or b""
        text = decode_declared(data, part.get_content_charset() or "us-ascii")
        if text is None or (part.get_content_charset() is None and b"\x1b$" in data):
            continue   # a body we cannot read exactly (unlabelled ISO-2022-JP too) is left exactly as it is
        if subtype == "html" and _META_CHARSET.search(text):
            continue   # the page names its own charset: rewriting it in UTF-8 would garble it
        text = text.replace("\r\n", "\n")
        if subtype == "plain":
            text = f"{text.rstrip()}\n\n{note}\n"
        else:
            block = f"<p>{escape(note).replace(chr(10), '<br>')}</p>"
            text = text.replace("</body>", block + "</body>") if "</body>" in text else text + block
        del part["Content-Transfer-Encoding"]
        # base64 of the canonical form (CRLF, RFC 2046 §4.1.1) in UTF-8, whatever the body's charset was
        part.set_payload(text.replace("\n", "\r\n"), charset="utf-8")
        done.add(subtype)
    return bool(done)


def _zip_part(archive: bytes, archive_name: str) -> MIMEApplication:
    part = MIMEApplication(archive, "zip")
    part.set_param("name", ("utf-8", "", archive_name))                 # RFC 2231
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", archive_name))
    return part
