"""The value types of bundle intake: the caps a ZIP must respect and the clean bundle it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BundleLimits:
    """Caps applied to an uploaded ZIP before anything is unpacked or stored."""

    max_zip_bytes: int = 50 * 2**20
    max_unpacked_bytes: int = 250 * 2**20
    max_entries: int = 100_000
    max_name_bytes: int = 1024
    max_depth: int = 32
    max_ratio: float = 200.0  # per-entry compression ratio cap
    # Entries declaring less than this are not ratio-checked: deflate cannot exceed about 1032:1,
    # so a small entry cannot be a bomb, while small highly repetitive files are common.
    ratio_floor_bytes: int = 2**20

    @classmethod
    def from_settings(cls, s: Any) -> BundleLimits:
        """Take the size caps from `core.settings.Settings`; the rest keep their defaults."""
        return cls(
            max_zip_bytes=int(s.max_zip_bytes),
            max_unpacked_bytes=int(s.max_unpacked_bytes),
            max_entries=int(s.max_zip_entries),
        )


@dataclass(frozen=True)
class Bundle:
    """A validated bundle, repacked into a clean deterministic ZIP."""

    data: bytes  # the clean repacked ZIP
    sha256: str  # hex of data
    files: tuple[str, ...]  # regular files, sorted
    unpacked_bytes: int
    has_requirements: bool  # requirements.txt at the root
