"""Entry-name rules: decoding, path safety, and collisions between names.

Names are decoded as UTF-8 whether or not the entry sets the UTF-8 flag (bit 11): macOS and Info-ZIP
write UTF-8 without the flag. A name that is not valid UTF-8 is rejected rather than decoded as
cp437, since a cp437 reading of non-ASCII bytes is almost never what the author meant. The repacked
ZIP always stores non-ASCII names as flagged UTF-8.
"""

from __future__ import annotations

import re
import unicodedata

from core.bundles.errors import reject, show
from core.bundles.model import BundleLimits

UTF8_FLAG = 0x800
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})  # e.g. U+202E RIGHT-TO-LEFT OVERRIDE, which disguises names


def check_name(raw: bytes, flags: int, limits: BundleLimits) -> tuple[str, bool]:
    """Decode and vet one entry name; return (path without trailing '/', is_directory)."""
    shown = show(raw)
    if b"\x00" in raw:
        reject("nul_in_name", f"entry name {shown} contains a NUL byte", entry=shown)
    if len(raw) > limits.max_name_bytes:
        reject(
            "name_too_long",
            f"entry name {shown} is {len(raw)} bytes, over the limit of {limits.max_name_bytes}",
            entry=shown,
        )
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        why = (
            "is flagged UTF-8 but is not valid UTF-8"
            if flags & UTF8_FLAG
            else ("is not ASCII or UTF-8 (legacy cp437 names are not accepted; re-create the ZIP with UTF-8 names)")
        )
        reject("non_utf8_name", f"entry name {shown} {why}", entry=shown)
    if _CONTROL.search(name) or any(unicodedata.category(ch) in _INVISIBLE for ch in name):
        reject(
            "control_in_name", f"entry name {shown} contains a control or invisible formatting character", entry=shown
        )
    if "\\" in name:
        reject(
            "backslash",
            f"entry name {shown} contains a backslash; use '/' as the path separator "
            "(backslash names can escape the target folder on some unpackers)",
            entry=shown,
        )
    if name.startswith("/"):
        reject("absolute_path", f"entry name {shown} is an absolute path", entry=shown)
    if _DRIVE.match(name):
        reject("drive_letter", f"entry name {shown} starts with a drive letter", entry=shown)
    if ":" in name:
        reject("colon", f"entry name {shown} contains ':' (a drive letter or Windows stream name)", entry=shown)
    is_dir = name.endswith("/")
    path = name[:-1] if is_dir else name
    parts = path.split("/")
    if ".." in parts:
        reject("path_traversal", f"entry name {shown} has a '..' component (path traversal)", entry=shown)
    if any(p in ("", ".") for p in parts):
        reject("bad_component", f"entry name {shown} has an empty or '.' path component", entry=shown)
    if len(parts) > limits.max_depth:
        reject(
            "too_deep",
            f"entry name {shown} is nested {len(parts)} levels deep, over the limit of {limits.max_depth}",
            entry=shown,
        )
    return path, is_dir


class NameTree:
    """Accumulates entry paths and rejects duplicates, case collisions and file/directory clashes."""

    def __init__(self) -> None:
        self._explicit: set[tuple[str, bool]] = set()
        self._seen: dict[str, tuple[str, bool]] = {}  # folded path -> (path, is_dir)

    def add(self, path: str, is_dir: bool) -> None:
        """Record one entry (and its implied parent directories)."""
        if (path, is_dir) in self._explicit:
            reject("duplicate", f"duplicate entry {show(path + '/' * is_dir)}", entry=show(path))
        self._explicit.add((path, is_dir))
        parts = path.split("/")
        for i in range(1, len(parts)):
            self._claim("/".join(parts[:i]), True)
        self._claim(path, is_dir)

    def _claim(self, path: str, is_dir: bool) -> None:
        key = unicodedata.normalize("NFC", path).casefold()
        previous = self._seen.setdefault(key, (path, is_dir))
        if previous == (path, is_dir):
            return
        other, other_dir = previous
        if other != path:
            reject(
                "case_collision",
                f"entries {show(other)} and {show(path)} differ only in letter case or "
                "Unicode normalisation and would collide on case-insensitive file systems",
                entry=show(path),
            )
        reject("file_dir_clash", f"{show(path)} is both a file and a directory", entry=show(path))
