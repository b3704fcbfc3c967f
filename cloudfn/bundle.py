"""A function's archive from what the caller has: a ZIP file's bytes as they are, or a folder zipped the way
the platform stores bundles (sorted names, fixed timestamps, mode 0644), skipping VCS and cache files."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

from cloudfn.errors import LocalInputError

SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
SKIP_FILES = frozenset({".DS_Store"})
SKIP_SUFFIXES = (".pyc", ".pyo")
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
UNIX = 3
CHUNK = 1 << 16


def load_archive(source: str | os.PathLike[str] | bytes) -> bytes:
    """ZIP bytes as given, a ZIP file's bytes, or a folder zipped; LocalInputError for a missing path."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    path = Path(source)
    if path.is_dir():
        return zip_folder(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalInputError(f"{path}: {exc.strerror or exc}") from None


def zip_folder(path: str | os.PathLike[str]) -> bytes:
    """Zip a folder's contents (not the folder itself) deterministically; symlinks and special files are refused
    (LocalInputError) rather than followed or silently dropped."""
    root = Path(path)
    if not root.is_dir():
        raise LocalInputError(f"{str(root)!r} is not a folder")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, file in sorted(_walk(root, "")):
            info = zipfile.ZipInfo(name, FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = UNIX
            info.external_attr = FILE_MODE << 16
            info.file_size = file.stat().st_size  # decides ZIP64 up front; zipfile records the real size
            with archive.open(info, "w") as out, _open(file) as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
    return buffer.getvalue()


def _walk(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for child in folder.iterdir():
        name = prefix + child.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalInputError(f"file name {name!r} is not valid UTF-8") from None
        mode = child.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise LocalInputError(f"{name} is a symbolic link; bundles hold regular files only (use a copy)")
        if stat.S_ISDIR(mode):
            if child.name not in SKIP_DIRS:
                yield from _walk(child, name + "/")
        elif stat.S_ISREG(mode):
            if child.name not in SKIP_FILES and not child.name.endswith(SKIP_SUFFIXES):
                yield name, child
        else:
            raise LocalInputError(f"{name} is not a regular file")


def _open(file: Path) -> io.BufferedReader:
    return os.fdopen(os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
