"""zipsafe: read a zip's members without trusting what the archive says about them.

Receives the bytes of a zip: an attachment, a zip inside one, or an Office file
(docx / xlsx / pptx are zips, ECMA-376 Part 2). Hands on each member's bytes,
inflated here in chunks under our own caps, or raises ``Refused`` with a
Japanese reason for the person who checks the message.

The stdlib ``zipfile`` reads the central directory (APPNOTE.TXT 4.3.12: the
list 7-Zip, Windows Explorer and ``unzip`` show) and the local headers, but its
reader stops at the *declared* size and checks the CRC-32 only once that many
bytes were read: a member that declares 64 bytes (with the CRC of those 64) and
inflates to 7,664 is read as 64 bytes and passes, while ``unzip`` extracts all
of it. So the data itself is inflated here with ``zlib`` / ``bz2`` (each call
bounded by ``max_length``), counting the bytes and computing the CRC-32. A
member is refused when it

- inflates to more or fewer bytes than declared, or its CRC-32 differs;
- is cut off (the compressed stream ends early or lies past the archive's end);
- would pass ``Caps.member_bytes``, or inflate more than ``Caps.ratio`` times its
  compressed size (beyond ``RATIO_FLOOR`` bytes: small files compress well);
- is encrypted, or compressed by a method other than stored, deflate or bzip2;

and the whole archive when it has more than ``Caps.entries`` members or inflates
past ``Caps.total_bytes`` (declared sizes are checked first, so an honest bomb
is refused without inflating anything).

``verify`` inflates and discards (Office files, before python-docx / openpyxl /
python-pptx open them: once every size is proven true, their ``zipfile`` reads
are exact); ``members`` keeps one member at a time. Memory beyond the kept
member: one chunk (``CHUNK``). Anything else wrong with the archive raises the
library's own exception (``zipfile.BadZipFile`` …): the caller reports a broken file.
"""

from __future__ import annotations

import bz2
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 64 * 1024
RATIO_FLOOR = 1024 * 1024          # below this many inflated bytes the ratio is not judged
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")   # APPNOTE.TXT 4.3.7, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
STORED, DEFLATED, BZIP2 = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2


class Refused(Exception):
    """The archive or one member is not read; ``str()`` is the Japanese reason."""


@dataclass(frozen=True)
class Caps:
    entries: int = 1000
    ratio: float = 100.0
    member_bytes: int = 80 * 1024 * 1024
    total_bytes: int = 80 * 1024 * 1024


def members(data: bytes, caps: Caps, wanted=None) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
    """(entry, inflated bytes) for every file in the archive (or those whose name ``wanted``
    accepts), in directory order."""
    used = 0
    for info in _open(data, caps):
        if wanted is not None and not wanted(info.filename):
            continue
        chunks: list[bytes] = []
        used += _inflate(data, info, caps, caps.total_bytes - used, chunks.append)
        if not info.is_dir():
            yield info, b"".join(chunks)


def verify(data: bytes, caps: Caps) -> None:
    """Inflate every member and check its size and CRC-32, keeping nothing."""
    used = 0
    for info in _open(data, caps):
        used += _inflate(data, info, caps, caps.total_bytes - used, lambda chunk: None)


def _open(data: bytes, caps: Caps) -> list[zipfile.ZipInfo]:
    """The central directory's entries, once the archive as a whole is within the caps."""
    entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    if len(entries) > caps.entries:
        raise Refused(f"zip の中のファイルが多すぎます ({len(entries):,} 件、上限 {caps.entries:,} 件)")
    if any(info.flag_bits & 0x1 for info in entries):
        raise Refused("パスワード付き zip のため検査できません")
    declared = sum(info.file_size for info in entries)
    packed = max(1, sum(info.compress_size for info in entries))
    if declared > caps.total_bytes or (declared > RATIO_FLOOR and declared / packed > caps.ratio):
        raise Refused(f"圧縮率が異常に高い zip です (展開後 {declared:,} バイト, 圧縮率 {declared / packed:.0f} 倍)。"
                      "zip 爆弾の可能性があるため展開しません")
    return entries


def _inflate(data: bytes, info: zipfile.ZipInfo, caps: Caps, room: int, sink) -> int:
    """Inflate one member into ``sink`` chunk by chunk; the number of bytes it really holds."""
    name = info.filename.rsplit("/", 1)[-1] or info.filename
    packed = _compressed(data, info, name)
    cap = min(caps.member_bytes, room, max(RATIO_FLOOR, int(caps.ratio * len(packed))))
    if info.file_size > cap:
        raise Refused(f"zip の中の {name} は展開すると大きすぎます (宣言 {info.file_size:,} バイト)。"
                      "zip 爆弾の可能性があるため展開しません")
    size, crc = 0, 0
    if not packed and info.file_size == 0:   # an empty file or a folder, whatever its method
        return 0
    for chunk in _chunks(info.compress_type, packed, name):
        size += len(chunk)
        if size > info.file_size:
            raise Refused(f"zip の中の {name} は宣言されたサイズ ({info.file_size:,} バイト) を超えて展開されます。"
                          "細工された zip の可能性があります")
        crc = zlib.crc32(chunk, crc)
        sink(chunk)
    if size != info.file_size:
        raise Refused(f"zip の中の {name} は宣言されたサイズ ({info.file_size:,} バイト) より小さく、"
                      "途中で切れています")
    if crc != info.CRC:
        raise Refused(f"zip の中の {name} のチェックサム (CRC) が一致しません。壊れているか細工された zip です")
    return size


def _compressed(data: bytes, info: zipfile.ZipInfo, name: str) -> memoryview:
    """The member's compressed bytes, located by its local header (APPNOTE.TXT 4.3.7)."""
    offset = info.header_offset
    header = data[offset: offset + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise Refused(f"zip の中の {name} の位置情報が壊れています")
    fields = _LOCAL_HEADER.unpack(header)
    start = offset + _LOCAL_HEADER.size + fields[9] + fields[10]   # file name and extra field lengths
    end = start + info.compress_size
    if end > len(data):
        raise Refused(f"zip の中の {name} が途中で切れています")
    return memoryview(data)[start:end]


def _chunks(method: int, packed: memoryview, name: str) -> Iterator[bytes]:
    """The inflated data of one member, CHUNK bytes at most per piece."""
    if method == STORED:
        for start in range(0, len(packed), CHUNK):
            yield bytes(packed[start: start + CHUNK])
        return
    if method == DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    elif method == BZIP2:
        inflater = bz2.BZ2Decompressor()
    else:
        raise Refused(f"zip の中の {name} は対応していない圧縮方式 ({method}) のため検査できません")
    for start in range(0, len(packed), CHUNK):
        pending = bytes(packed[start: start + CHUNK])
        while not inflater.eof:
            chunk = inflater.decompress(pending, CHUNK)
            if chunk:
                yield chunk
            if method == DEFLATED:   # zlib keeps the input it did not use; a full chunk may have more behind it
                pending = inflater.unconsumed_tail
                if not pending and len(chunk) < CHUNK:
                    break
            elif inflater.needs_input:   # bz2 keeps its input itself
                break
            else:
                pending = b""
    if not inflater.eof:
        raise Refused(f"zip の中の {name} の圧縮データが途中で切れています")

