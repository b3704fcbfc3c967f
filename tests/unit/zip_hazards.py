"""The ZIP hazard corpus, built in code: `zipfile` output where it can, crafted bytes where it cannot."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
PNG_HEADER = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
SHELL_SCRIPT = b"#!/bin/sh\necho 'not a zip'\nexit 0\n"
HANDLER_SOURCE = b"def handler(event, context):\n    return event\n"


@dataclass
class Member:
    """One crafted entry; every field a hazard may need to falsify is settable."""

    name: str | bytes
    content: bytes = b""
    method: int = 8  # 0 stored, 8 deflate; any other number is written as-is
    flags: int | None = None  # default: 0x800 for non-ASCII str names
    mode: int = 0o100644
    declared_size: int | None = None  # uncompressed size written in the headers
    crc: int | None = None
    payload: bytes | None = None  # the stored bytes, instead of compressing `content`

    @property
    def raw_name(self) -> bytes:
        """The name's bytes."""
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")


@dataclass
class Central:
    """A central-directory record pointing at member `member`'s local header, optionally falsified."""

    member: int
    name: bytes | None = None
    compress_size: int | None = None
    zip64: bool = False  # sizes and offset saturated in the record, real values in a ZIP64 extra field


def deflate(data: bytes, level: int = 9) -> bytes:
    """Raw deflate, as ZIP stores it."""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def craft(
    members: list[Member],
    *,
    central: list[Central] | None = None,
    prefix: bytes = b"",
    prefix_in_offsets: bool = False,
    suffix: bytes = b"",
    comment: bytes = b"",
    gap: bytes = b"",
) -> bytes:
    """Write a ZIP byte by byte; `gap` goes between the first and second local entries."""
    base = len(prefix) if prefix_in_offsets else 0
    body = bytearray()
    records: list[tuple[Member, int, int, int, bytes]] = []  # member, offset, crc, size, payload
    for i, m in enumerate(members):
        if i == 1:
            body += gap
        payload = m.payload
        if payload is None:
            payload = deflate(m.content) if m.method == 8 else m.content
        crc = zlib.crc32(m.content) if m.crc is None else m.crc
        size = len(m.content) if m.declared_size is None else m.declared_size
        flags = _flags(m)
        offset = base + len(body)
        body += _LOCAL.pack(b"PK\x03\x04", 20, flags, m.method, 0, 0x21, crc, len(payload), size,
                            len(m.raw_name), 0)
        body += m.raw_name + payload
        records.append((m, offset, crc, size, payload))
    cd = bytearray()
    for c in central if central is not None else [Central(i) for i in range(len(members))]:
        m, offset, crc, size, payload = records[c.member]
        name = c.name if c.name is not None else m.raw_name
        csize = c.compress_size if c.compress_size is not None else len(payload)
        extra = b""
        if c.zip64:
            extra = struct.pack("<2H3Q", 1, 24, size, csize, offset)
            size, csize, offset = 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF
        cd += _CENTRAL.pack(b"PK\x01\x02", (3 << 8) | 20, 20, _flags(m), m.method, 0, 0x21, crc, csize, size,
                            len(name), len(extra), 0, 0, 0, (m.mode << 16) & 0xFFFFFFFF, offset)
        cd += name + extra
    count = len(central) if central is not None else len(members)
    eocd = _EOCD.pack(b"PK\x05\x06", 0, 0, count, count, len(cd), base + len(body), len(comment))
    return prefix + bytes(body) + bytes(cd) + eocd + comment + suffix


def _flags(m: Member) -> int:
    if m.flags is not None:
        return m.flags
    return 0x800 if isinstance(m.name, str) and not m.name.isascii() else 0


def zip_of(files: Mapping[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A plain archive written by `zipfile`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()


def bundle(**extra: bytes | str) -> bytes:
    """A valid `main.handler` bundle plus `extra` files."""
    return zip_of({"main.py": HANDLER_SOURCE, **extra})


def with_main(*members: Member) -> list[Member]:
    """`members` preceded by a valid main.py."""
    return [Member("main.py", HANDLER_SOURCE), *members]


class _Unseekable(io.RawIOBase):
    """A write-only stream without seek, which makes `zipfile` write data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def streamed_zip(files: dict[str, bytes]) -> bytes:
    """An archive `zipfile` writes to an unseekable stream (flag bit 3, data descriptors)."""
    out = _Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return bytes(out.data)


def zip64_zip(files: dict[str, bytes]) -> bytes:
    """An archive with ZIP64 extra fields on every entry and a ZIP64 end record."""
    buf = io.BytesIO()
    limit = zipfile.ZIP_FILECOUNT_LIMIT
    setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 0)  # noqa: B010 (a Final in typeshed); makes zipfile write the ZIP64 end record, as for >65535 entries
    try:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, content in files.items():
                with z.open(name, "w", force_zip64=True) as f:
                    f.write(content)
    finally:
        setattr(zipfile, "ZIP_FILECOUNT_LIMIT", limit)  # noqa: B010
    return buf.getvalue()
