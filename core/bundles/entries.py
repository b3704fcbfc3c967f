"""Every check that needs no decompression: structure, names, types and modes, flags, methods, sizes."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from core.bundles.errors import reject, show
from core.bundles.model import BundleLimits
from core.bundles.names import NameTree, check_name
from core.bundles.zipfmt import RawEntry, read_archive

STORED = 0
DEFLATED = 8
SUPPORTED_METHODS = {STORED: "stored", DEFLATED: "deflate"}
_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    12: "bzip2",
    14: "lzma",
    93: "zstd",
    95: "xz",
    98: "ppmd",
    99: "AES encryption",
}
_ENCRYPTION_FLAGS = 0x0001 | 0x0040 | 0x2000  # traditional, strong, masked central directory
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_BAD_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class Entry:
    """A vetted entry: its decoded path and where its data lies."""

    path: str  # without a trailing '/'
    is_dir: bool
    raw: RawEntry


def read_entries(data: bytes, limits: BundleLimits) -> list[Entry]:
    """Run every header-level check on `data`; return its entries (files and directories)."""
    if len(data) > limits.max_zip_bytes:
        reject(
            "zip_too_large",
            f"the ZIP is {len(data)} bytes, over the limit of {limits.max_zip_bytes}",
            too_large=True,
        )
    if not data:
        reject("not_zip", "not a ZIP archive: the upload is empty")
    raws = read_archive(data, limits.max_entries)
    tree = NameTree()
    entries: list[Entry] = []
    total = 0
    for raw in raws:
        path, is_dir = check_name(raw.raw_name, raw.flags, limits)
        _check_entry(raw, path, is_dir, limits)
        tree.add(path, is_dir)
        entries.append(Entry(path=path, is_dir=is_dir, raw=raw))
        total += raw.file_size
        if total > limits.max_unpacked_bytes:
            reject(
                "unpacked_too_large",
                f"the archive declares more than {limits.max_unpacked_bytes} bytes "
                f"unpacked (reached at entry {show(path)})",
                entry=show(path),
                too_large=True,
            )
    return entries


def _check_entry(raw: RawEntry, path: str, is_dir: bool, limits: BundleLimits) -> None:
    shown = show(path + "/" * is_dir)
    if raw.flags & _ENCRYPTION_FLAGS or raw.method == 99:
        reject("encrypted", f"entry {shown} is encrypted; upload an unencrypted ZIP", entry=shown)
    if raw.method not in SUPPORTED_METHODS:
        kind = _METHOD_NAMES.get(raw.method, "unknown")
        reject(
            "unsupported_method",
            f"entry {shown} uses compression method {raw.method} ({kind}); only "
            "stored (0) and deflate (8) are supported",
            entry=shown,
        )
    _check_mode(raw.external_attr >> 16, is_dir, shown)
    if is_dir and raw.file_size:
        reject("dir_with_data", f"directory entry {shown} carries data", entry=shown)
    if raw.method == STORED and raw.compress_size != raw.file_size:
        reject(
            "size_mismatch",
            f"stored entry {shown} declares {raw.compress_size} bytes stored but {raw.file_size} bytes unpacked",
            entry=shown,
        )
    if raw.file_size >= limits.ratio_floor_bytes:
        ratio = raw.file_size / max(raw.compress_size, 1)
        if ratio > limits.max_ratio:
            reject(
                "ratio",
                f"entry {shown} expands {ratio:.0f}:1 ({raw.compress_size} to {raw.file_size} "
                f"bytes), over the compression ratio cap of {limits.max_ratio:g}:1 (ZIP bomb)",
                entry=shown,
            )


def _check_mode(mode: int, is_dir: bool, shown: str) -> None:
    """Allow only regular files and directories, without setuid, setgid or sticky bits."""
    kind = stat.S_IFMT(mode)
    if kind in _BAD_TYPES:
        reject(
            "special_file",
            f"entry {shown} is {_BAD_TYPES[kind]}; only regular files and directories are allowed",
            entry=shown,
        )
    if kind == stat.S_IFDIR and not is_dir:
        reject(
            "special_file",
            f"entry {shown} has a directory mode but its name does not end with '/'",
            entry=shown,
        )
    if kind == stat.S_IFREG and is_dir:
        reject("special_file", f"entry {shown} ends with '/' but has a regular-file mode", entry=shown)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        reject("special_file", f"entry {shown} has an unknown file type {oct(kind)}", entry=shown)
    if mode & _SPECIAL_BITS:
        reject(
            "special_mode",
            f"entry {shown} has setuid, setgid or sticky mode bits ({oct(mode & 0o7777)})",
            entry=shown,
        )
