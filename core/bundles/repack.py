"""The deterministic ZIP writer: regular files only, mode 0644, fixed timestamp, no extras, deflate.

The same names and contents always give the same bytes (with the same zlib), hence the same SHA-256.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from types import TracebackType

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
_UNIX = 3


class CleanZipWriter:
    """Writes entries, which the caller must add in sorted order, into an in-memory ZIP; use it as a context manager."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buffer, "w", compression=zipfile.ZIP_DEFLATED)
        self._last: str | None = None

    def add(self, name: str, chunks: Iterable[bytes], size_hint: int = 0) -> int:
        """Add one regular file from a stream of chunks; return its size."""
        if self._last is not None and name <= self._last:
            raise ValueError(f"entries must be added in sorted order: {name!r} after {self._last!r}")
        self._last = name
        info = zipfile.ZipInfo(name, FIXED_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = _UNIX
        info.external_attr = FILE_MODE << 16
        info.file_size = size_hint  # only decides ZIP64 up front; zipfile records the real size
        size = 0
        with self._zip.open(info, "w") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        return size

    def finish(self) -> bytes:
        """Close the archive and return its bytes."""
        self._zip.close()
        return self._buffer.getvalue()

    def __enter__(self) -> CleanZipWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Drop a half-written archive quietly, so the original error is the one reported."""
        if kind is not None:
            self._zip.fp = None  # abandon: nothing more is written
            self._buffer.close()
