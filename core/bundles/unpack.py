"""`unpack`: safe extraction of a validated bundle.

Re-runs every header-level check (without the size caps, which the bundle passed at upload) and the
decompression budget, then writes with O_EXCL|O_NOFOLLOW under `dest`, files 0644 and folders 0755,
refusing to write through any symlink it finds on the way.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.bundles.entries import read_entries
from core.bundles.errors import reject, show
from core.bundles.inflate import iter_content
from core.bundles.model import BundleLimits

_UNCAPPED = BundleLimits(max_zip_bytes=2**62, max_unpacked_bytes=2**62, max_entries=2**62, max_ratio=float("inf"))


def unpack(bundle_zip: Path | bytes, dest: Path) -> None:
    """Extract `bundle_zip` (a path or the ZIP's bytes) into `dest`; existing files are never overwritten."""
    data = bundle_zip if isinstance(bundle_zip, bytes) else Path(bundle_zip).read_bytes()
    entries = read_entries(data, _UNCAPPED)
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    for entry in sorted(entries, key=lambda e: e.path):
        parts = entry.path.split("/")
        if entry.is_dir:
            _make_dirs(root, parts)
            continue
        parent = _make_dirs(root, parts[:-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(parent / parts[-1], flags, 0o644)
        except FileExistsError:
            reject(
                "exists",
                f"cannot unpack {show(entry.path)}: it already exists in {str(root)!r}",
                entry=show(entry.path),
            )
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            for chunk in iter_content(data, entry):
                out.write(chunk)


def _make_dirs(root: Path, parts: list[str]) -> Path:
    """Create `root/parts...` one level at a time, refusing symlinks and non-directories."""
    current = root
    for part in parts:
        current = current / part
        try:
            current.mkdir(mode=0o755)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                reject(
                    "exists",
                    f"cannot unpack into {str(current)!r}: it exists and is not a folder",
                    entry=show(str(current)),
                )
    return current
