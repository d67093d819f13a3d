"""surgery: take parts out of a message and write a note into it, for encrypt and link.

Receives the raw message and MIME part paths (``content.mime``: the numbering
inspection used, compat32 parsing, so a path names the same part in both stages).
``take_out`` removes those parts and hands back each one's bytes and a name that
is safe on the recipient's PC (``safe_name``); ``add_note`` writes a note at the
end of the readable body text; ``flatten`` serialises the result with CRLF.
Untouched parts are written back as they came. A body that cannot be read exactly
(unlabelled ISO-2022-JP, HTML naming its own charset, an unknown charset) is never
rewritten: the note then becomes a part of its own.
On failure: raises (ValueError when a path is not in the message): the caller
holds the message; nothing that had to be protected leaves in the clear.
"""

from __future__ import annotations

import io
import re
import secrets
import unicodedata
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.mime.text import MIMEText
from email.policy import compat32
from html import escape

from .content import mime
from .content.charsets import decode_declared

_UNSAFE = re.compile(r'[<>:"/\\|?*]')   # not allowed in a Windows file name
_RESERVED = re.compile(r"^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])\s*(\..*)?$", re.IGNORECASE)
_META_CHARSET = re.compile(r"<meta[^>]+charset", re.IGNORECASE)
WIRE = compat32.clone(linesep="\r\n")
BODY_NAMES = {"plain": "メール本文.txt", "html": "メール本文.html"}

File = tuple[str, str, bytes]   # (name as sent, safe name, bytes)


def parse(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=compat32)


def flatten(msg: Message) -> bytes:
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=WIRE).flatten(msg)
    return out.getvalue()


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


def unique_names(files: list[File]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Each file under a name of its own ("a.pdf", "a(2).pdf"), and the renames a note must
    tell (「original」→「new」, hidden characters shown as <U+202E>)."""
    used: set[str] = set()
    named, renamed = [], []
    for original, name, data in files:
        stem, dot, ext = name.rpartition(".")
        unique, n = name, 1
        while unique.lower() in used:   # two attachments of the same name
            n += 1
            unique = f"{stem}({n}).{ext}" if dot else f"{name}({n})"
        used.add(unique.lower())
        if unique != original:
            renamed.append(f"「{shown(original)}」→「{unique}」")
        named.append((unique, data))
    return named, renamed


def shown(name: str) -> str:
    """An original name as a note may show it: its hidden characters made visible (U+202E …)."""
    return "".join(ch if mime.printable(ch) else f"<U+{ord(ch):04X}>" for ch in name[:100])


def body_paths(msg: Message) -> list[str]:
    """Paths of the body text parts: what inspection reads as 本文 (``mime.is_body_text``)."""
    return [path for path, part in mime.leaves(msg) if mime.is_body_text(part)]


def take_out(msg: Message, wanted: set[str]) -> list[File]:
    """Remove the parts at ``wanted`` paths; (name as sent, safe name, bytes) of each, in order."""
    files: list[File] = []
    if not mime.is_container(msg) and "1" in wanted:
        make_mixed(msg)   # the whole message is the part: keep a container for what replaces it (still "1")
    for path, container in list(mime.containers(msg)):
        children = container.get_payload()
        kept = []
        for index, child in enumerate(children, 1):
            here = mime.child_path(path, index)
            if here in wanted:
                files.append(_member(child, here))
            else:
                kept.append(child)
        if len(kept) != len(children):
            container.set_payload(kept)
    _drop_empty(msg)
    if len(files) != len(wanted):
        raise ValueError(f"parts to protect not found: {sorted(wanted)}")
    return files


def _drop_empty(msg: Message) -> None:
    """Remove the nested containers that taking parts out left empty (an empty
    multipart is not valid MIME, RFC 2046 §5.1.1)."""
    for _, container in reversed(list(mime.containers(msg))):
        children = container.get_payload()
        kept = [c for c in children if not (mime.is_container(c) and not c.get_payload())]
        if len(kept) != len(children):
            container.set_payload(kept)


def _member(part: Message, path: str) -> File:
    if mime.is_body_text(part):   # a body moved behind a link: a file the recipient can open
        data = part.get_payload(decode=True) or b""
        name = BODY_NAMES.get(part.get_content_subtype(), "メール本文.txt")
        text = decode_declared(data, part.get_content_charset() or "us-ascii")
        if text is not None:   # UTF-8 with a BOM: old Notepad reads it, and a browser's encoding
            # sniffing puts a BOM before any <meta charset> the page names (HTML Living Standard 13.2.3.2)
            data = ("\ufeff" + text.replace("\r\n", "\n")).encode()
        return name, name, data
    original = mime.raw_attachment_name(part) or f"添付ファイル{path}"
    if part.get_content_type() == "message/rfc822":   # a forwarded message, whole
        data = mime.forwarded_message(part).as_bytes(policy=WIRE) if part.get_payload() else b""
        name = original if original.lower().endswith(".eml") else original + ".eml"
    else:
        data = part.get_payload(decode=True) or b""
        name = original
    return original, safe_name(name), data


def make_mixed(msg: Message) -> None:
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


def add_note(msg: Message, note: str, *, first: bool = False) -> None:
    """The note at the end of every readable text/plain and text/html body part; and, where the
    message has a body part that cannot be rewritten exactly (an HTML page naming its own charset,
    an unknown charset) or no body at all, as a text/plain part of its own too, so that whatever
    part a mail program shows, the note is there. ``first``: the body was taken out and the note
    becomes the body, before every other part."""
    part = MIMEText(note, "plain", "utf-8")
    if mime.is_container(msg) and not msg.get_payload():   # everything was taken out: the note is all
        del msg["Content-Type"]
        msg["Content-Type"] = "multipart/mixed"
        msg.set_boundary("=_mailguard_" + secrets.token_hex(16))
        msg.set_payload([part])
        return
    if not first:
        done, skipped = _append_note(msg, note)
        if done and not skipped:
            return
    if msg.get_content_type() != "multipart/mixed":
        make_mixed(msg)   # alternative or related bodies: the note goes beside them, not inside
    children = msg.get_payload()
    msg.set_payload([part, *children] if first else [*children, part])


def _append_note(msg: Message, note: str) -> tuple[bool, bool]:
    """(a body part took the note, a body part had to be left as it was)."""
    done, skipped = set(), False
    for _, part in mime.leaves(msg):
        subtype = part.get_content_subtype()
        if not mime.is_body_text(part) or subtype not in ("plain", "html") or subtype in done:
            continue
        data = part.get_payload(decode=True) or b""
        text = decode_declared(data, part.get_content_charset() or "us-ascii")
        if text is None or (part.get_content_charset() is None and b"\x1b$" in data) \
                or (subtype == "html" and _META_CHARSET.search(text)):
            # a body we cannot read exactly (unlabelled ISO-2022-JP too), or a page naming its own
            # charset (rewriting it in UTF-8 would garble it), is left exactly as it is
            skipped = True
            continue
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
    return bool(done), skipped
