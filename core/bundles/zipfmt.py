"""Raw ZIP structure reader.

Reads the end record and the central directory itself (not through `zipfile`) so that every byte
of the input is accounted for: the first local header must start at offset 0, entries must follow
each other without gaps or overlaps, the central directory must follow the last entry and the end
record must end the input. That rejects polyglots (a ZIP appended to a PNG or a shell script, or
data appended after it), hidden data between entries, and overlapping-entry bombs, which
CPython 3.11.7's `zipfile` does not detect.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from core.bundles.errors import reject, show

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"

_EOCD = struct.Struct("<4s4H2LH")  # 22 bytes
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # 46 bytes
_LOCAL = struct.Struct("<4s5H3L2H")  # 30 bytes
_EXTRA_HEADER = struct.Struct("<2H")
_ZIP64_EXTRA_ID = 0x0001
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class RawEntry:
    """One central-directory record, cross-checked against its local header."""

    raw_name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    external_attr: int
    create_system: int
    header_offset: int
    data_offset: int  # first byte of the compressed data


@dataclass(frozen=True)
class _Directory:
    cd_offset: int
    cd_size: int
    cd_end: int  # where the central directory must end (zip64 end record or end record)
    count: int


def read_archive(data: bytes, max_entries: int) -> list[RawEntry]:
    """Parse and structurally verify `data`; return its entries in central-directory order."""
    directory = _read_end(data, max_entries)
    entries = _read_central(data, directory)
    _check_layout(data, entries, directory)
    return entries


def _read_end(data: bytes, max_entries: int) -> _Directory:
    pos = _find_end_record(data)
    _, disk, cd_disk, disk_count, count, cd_size, cd_offset, _ = _EOCD.unpack_from(data, pos)
    if disk or cd_disk or disk_count != count:
        reject("multi_disk", "split (multi-disk) ZIP archives are not supported")
    cd_end = pos
    locator_pos = pos - _ZIP64_LOCATOR.size
    if locator_pos >= 0 and data[locator_pos : locator_pos + 4] == ZIP64_LOCATOR_SIG:
        count, cd_size, cd_offset, cd_end = _read_zip64_end(data, locator_pos)
    elif _U16 in (count, disk_count) or _U32 in (cd_size, cd_offset):
        reject("corrupt", "corrupt ZIP archive: ZIP64 values without a ZIP64 end record")
    if count == 0:
        reject("empty", "empty ZIP archive: it has no entries")
    if count > max_entries:
        reject(
            "too_many_entries",
            f"the archive has {count} entries, over the limit of {max_entries}",
            too_large=True,
        )
    if data[:4] != LOCAL_SIG:
        reject(
            "polyglot",
            "data before the first ZIP entry: the input does not start with a local file header "
            "(polyglot input, e.g. a ZIP appended to an image or a shell script)",
        )
    if cd_offset + cd_size != cd_end:
        reject(
            "polyglot",
            f"the central directory is not where the end record says ({cd_end - cd_size - cd_offset:+d} "
            "bytes off): data before the first entry (polyglot input) or a corrupt archive",
        )
    return _Directory(cd_offset=cd_offset, cd_size=cd_size, cd_end=cd_end, count=count)


def _find_end_record(data: bytes) -> int:
    """The one end record that ends the input; reject trailing data and ambiguous (doubled) records."""
    tail = max(0, len(data) - _EOCD.size - _U16)
    candidates = []
    pos = data.rfind(EOCD_SIG, tail)
    while pos >= 0:
        candidates.append(pos)
        pos = data.rfind(EOCD_SIG, tail, pos)
    if not candidates:
        reject("not_zip", "not a ZIP archive: no end-of-central-directory record found")
    ends = {p: p + _EOCD.size + _EOCD.unpack_from(data, p)[-1] for p in candidates if p + _EOCD.size <= len(data)}
    exact = [p for p, end in ends.items() if end == len(data)]
    if len(exact) > 1:
        reject(
            "ambiguous_end",
            "ambiguous archive: it has more than one end-of-central-directory record (a second one "
            "hidden in the archive comment); different unpackers would read different files",
        )
    if not exact:
        last = max(ends.values(), default=len(data))
        if last < len(data):
            reject(
                "trailing_data",
                f"{len(data) - last} bytes of data after the end of the ZIP archive "
                "(polyglot input or data appended to the archive); upload the ZIP file alone",
            )
        reject("corrupt", "corrupt ZIP archive: the end-of-central-directory record is truncated")
    return exact[0]


def _read_zip64_end(data: bytes, locator_pos: int) -> tuple[int, int, int, int]:
    _, disk, record_pos, disks = _ZIP64_LOCATOR.unpack_from(data, locator_pos)
    if disk != 0 or disks != 1:
        reject("multi_disk", "split (multi-disk) ZIP archives are not supported")
    if record_pos + _ZIP64_EOCD.size != locator_pos:
        reject("corrupt", "corrupt ZIP archive: the ZIP64 end record is not where its locator says")
    sig, size, _, _, rdisk, rcd_disk, disk_count, count, cd_size, cd_offset = _ZIP64_EOCD.unpack_from(data, record_pos)
    if sig != ZIP64_EOCD_SIG or size != _ZIP64_EOCD.size - 12:
        reject("corrupt", "corrupt ZIP archive: bad ZIP64 end record")
    if rdisk or rcd_disk or disk_count != count:
        reject("multi_disk", "split (multi-disk) ZIP archives are not supported")
    return count, cd_size, cd_offset, record_pos


def _read_central(data: bytes, directory: _Directory) -> list[RawEntry]:
    entries: list[RawEntry] = []
    pos = directory.cd_offset
    for _ in range(directory.count):
        if pos + _CENTRAL.size > directory.cd_end or data[pos : pos + 4] != CENTRAL_SIG:
            reject("corrupt", "corrupt ZIP archive: the central directory holds fewer entries than declared")
        (
            _,
            made_by,
            _,
            flags,
            method,
            _,
            _,
            crc,
            csize,
            usize,
            nlen,
            xlen,
            clen,
            disk,
            _,
            ext_attr,
            offset,
        ) = _CENTRAL.unpack_from(data, pos)
        name_start = pos + _CENTRAL.size
        raw_name = data[name_start : name_start + nlen]
        extra = data[name_start + nlen : name_start + nlen + xlen]
        pos = name_start + nlen + xlen + clen
        if pos > directory.cd_end:
            reject(
                "corrupt",
                "corrupt ZIP archive: a central directory record runs past its end",
                entry=show(raw_name),
            )
        usize, csize, offset, disk = _apply_zip64(extra, usize, csize, offset, disk, raw_name)
        if disk != 0:
            reject("multi_disk", "split (multi-disk) ZIP archives are not supported", entry=show(raw_name))
        entries.append(
            RawEntry(
                raw_name=raw_name,
                flags=flags,
                method=method,
                crc=crc,
                compress_size=csize,
                file_size=usize,
                external_attr=ext_attr,
                create_system=made_by >> 8,
                header_offset=offset,
                data_offset=-1,
            )
        )
    if pos != directory.cd_end:
        reject("hidden_data", f"{directory.cd_end - pos} unaccounted bytes at the end of the central directory")
    return entries


def _apply_zip64(
    extra: bytes, usize: int, csize: int, offset: int, disk: int, raw_name: bytes
) -> tuple[int, int, int, int]:
    """Replace saturated 32-bit fields by the ZIP64 extra field's values, in the order the spec gives."""
    fields = parse_extra(extra, raw_name)
    if _ZIP64_EXTRA_ID not in fields:
        return usize, csize, offset, disk
    blob = fields[_ZIP64_EXTRA_ID]
    values = [usize, csize, offset, disk]
    pos = 0
    for i, (value, saturated, width) in enumerate(
        ((usize, _U32, 8), (csize, _U32, 8), (offset, _U32, 8), (disk, _U16, 4))
    ):
        if value != saturated:
            continue
        if pos + width > len(blob):
            reject("corrupt", "corrupt ZIP archive: short ZIP64 extra field", entry=show(raw_name))
        values[i] = int.from_bytes(blob[pos : pos + width], "little")
        pos += width
    return values[0], values[1], values[2], values[3]


def parse_extra(extra: bytes, raw_name: bytes) -> dict[int, bytes]:
    """Split an extra-field block into {header id: payload}; malformed blocks are rejected."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + _EXTRA_HEADER.size > len(extra):
            reject("corrupt", "corrupt ZIP archive: malformed extra field", entry=show(raw_name))
        hid, size = _EXTRA_HEADER.unpack_from(extra, pos)
        pos += _EXTRA_HEADER.size
        if pos + size > len(extra):
            reject("corrupt", "corrupt ZIP archive: malformed extra field", entry=show(raw_name))
        fields.setdefault(hid, extra[pos : pos + size])
        pos += size
    return fields


def _check_layout(data: bytes, entries: list[RawEntry], directory: _Directory) -> None:
    """Require local entries to tile [0, cd_offset) exactly: no gap, no overlap, no shared data."""
    spans: list[tuple[int, int, int]] = []  # (start, end, index)
    locals_: list[tuple[int, int, int, int]] = []  # (data offset, name length, flags, method)
    for i, e in enumerate(entries):
        start = e.header_offset
        if start + _LOCAL.size > directory.cd_offset or data[start : start + 4] != LOCAL_SIG:
            reject(
                "corrupt",
                "corrupt ZIP archive: no local file header where the central directory points",
                entry=show(e.raw_name),
            )
        _, _, lflags, lmethod, _, _, _, _, _, lnlen, lxlen = _LOCAL.unpack_from(data, start)
        data_offset = start + _LOCAL.size + lnlen + lxlen
        end = data_offset + e.compress_size
        if lflags & 0x08:
            end += _descriptor_size(data, end, data[start + _LOCAL.size + lnlen : data_offset], e.raw_name)
        spans.append((start, end, i))
        locals_.append((data_offset, lnlen, lflags, lmethod))
    spans.sort()
    expected = 0
    previous = -1
    for start, end, i in spans:
        name = show(entries[i].raw_name)
        if start < expected:
            reject(
                "overlap",
                f"entries {show(entries[previous].raw_name)} and {name} overlap or share data in the "
                "archive (overlapping-entry ZIP bomb)",
                entry=name,
            )
        if start > expected:
            reject(
                "hidden_data",
                f"{start - expected} unaccounted bytes before entry {name} (hidden data between entries)",
                entry=name,
            )
        expected, previous = end, i
    if expected != directory.cd_offset:
        reject(
            "overlap" if expected > directory.cd_offset else "hidden_data",
            f"the last entry ends at byte {expected} but the central directory starts at "
            f"{directory.cd_offset} "
            "(overlapping or hidden data)",
        )
    for i, (data_offset, lnlen, lflags, lmethod) in enumerate(locals_):
        entries[i] = _with_local(data, entries[i], data_offset, lnlen, lflags, lmethod)


def _descriptor_size(data: bytes, pos: int, local_extra: bytes, raw_name: bytes) -> int:
    """Length of the data descriptor after an entry's data (flag bit 3)."""
    zip64 = _ZIP64_EXTRA_ID in parse_extra(local_extra, raw_name)
    return (4 if data[pos : pos + 4] == DESCRIPTOR_SIG else 0) + 4 + (16 if zip64 else 8)


def _with_local(data: bytes, e: RawEntry, data_offset: int, lnlen: int, lflags: int, lmethod: int) -> RawEntry:
    """Check the local header agrees with the central record; return the entry with its data offset."""
    start = e.header_offset + _LOCAL.size
    if data[start : start + lnlen] != e.raw_name:
        reject(
            "header_mismatch",
            f"the local header names {show(data[start : start + lnlen])} but the central "
            f"directory names {show(e.raw_name)}",
            entry=show(e.raw_name),
        )
    if lmethod != e.method or (lflags & 0x41) != (e.flags & 0x41):
        reject(
            "header_mismatch",
            "the local header and the central directory disagree on compression or encryption",
            entry=show(e.raw_name),
        )
    return replace(e, data_offset=data_offset)
