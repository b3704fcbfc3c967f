"""Stream an entry's content with a budget: never trust the declared size, check it and the CRC."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from core.bundles.entries import STORED, Entry
from core.bundles.errors import reject, show

CHUNK = 1 << 16


def iter_content(data: bytes, entry: Entry) -> Iterator[bytes]:
    """Yield the entry's bytes; reject if it inflates past its declared size, falls short, or fails CRC."""
    raw = entry.raw
    shown = show(entry.path)
    view = memoryview(data)[raw.data_offset : raw.data_offset + raw.compress_size]
    budget = raw.file_size
    crc = 0
    produced = 0
    if raw.method == STORED:
        for i in range(0, len(view), CHUNK):
            chunk = bytes(view[i : i + CHUNK])
            crc = zlib.crc32(chunk, crc)
            produced += len(chunk)
            yield chunk
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        for i in range(0, len(view), CHUNK):
            pending: bytes = bytes(view[i : i + CHUNK])
            while pending:
                if inflater.eof:
                    reject("corrupt", f"entry {shown} has bytes after the end of its deflate stream", entry=shown)
                try:
                    out = inflater.decompress(pending, budget - produced + 1)
                except zlib.error as exc:
                    reject("corrupt", f"entry {shown} has corrupt deflate data ({exc})", entry=shown)
                pending = inflater.unconsumed_tail
                produced += len(out)
                if produced > budget:
                    reject(
                        "size_exceeded",
                        f"entry {shown} decompresses to more than its declared {budget} "
                        "bytes (ZIP bomb or forged header)",
                        entry=shown,
                    )
                crc = zlib.crc32(out, crc)
                if out:
                    yield out
            if inflater.unused_data:
                reject("corrupt", f"entry {shown} has bytes after the end of its deflate stream", entry=shown)
        if not inflater.eof:
            reject("corrupt", f"entry {shown} has a truncated deflate stream", entry=shown)
    if produced != budget:
        reject(
            "size_mismatch",
            f"entry {shown} decompresses to {produced} bytes but declares {budget}",
            entry=shown,
        )
    if crc != raw.crc:
        reject("crc_mismatch", f"entry {shown} fails its CRC-32 check (corrupt archive)", entry=shown)
