"""`zip_folder`: a deterministic ZIP of a local folder, for `cloudfn deploy DIR`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from core.bundles.errors import reject, show
from core.bundles.repack import CleanZipWriter
from core.errors import InvalidInput

SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
SKIP_FILES = frozenset({".DS_Store"})
SKIP_SUFFIXES = (".pyc", ".pyo")
_CHUNK = 1 << 16


def zip_folder(path: Path) -> bytes:
    """Zip `path`'s contents (not the folder itself): sorted names, fixed timestamps, mode 0644.

    Skips VCS and cache folders (`__pycache__`, `.git`, ...) and compiled files. Symlinks and special
    files are refused (InvalidBundle) rather than followed or silently dropped.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput(f"{str(root)!r} is not a folder")
    with CleanZipWriter() as writer:
        for name, file in sorted(_walk(root, "")):
            writer.add(name, _read(file), file.stat().st_size)
        return writer.finish()


def _walk(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for child in folder.iterdir():
        try:
            child.name.encode("utf-8")
        except UnicodeEncodeError:
            reject("non_utf8_name", f"file name {child.name!r} in {prefix or './'} is not valid UTF-8")
        name = prefix + child.name
        mode = child.lstat().st_mode
        if stat.S_ISLNK(mode):
            reject(
                "special_file",
                f"{show(name)} is a symbolic link; bundles hold regular files only (replace it with a copy)",
                entry=show(name),
            )
        if stat.S_ISDIR(mode):
            if child.name not in SKIP_DIRS:
                yield from _walk(child, name + "/")
        elif stat.S_ISREG(mode):
            if child.name not in SKIP_FILES and not child.name.endswith(SKIP_SUFFIXES):
                yield name, child
        else:
            reject("special_file", f"{show(name)} is not a regular file", entry=show(name))


def _read(file: Path) -> Iterator[bytes]:
    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk
