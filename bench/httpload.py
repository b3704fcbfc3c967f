"""A lean HTTP/1.1 keep-alive load generator on asyncio streams (uvloop), for the benchmarks.

httpx costs several milliseconds of CPU per request, on the same 2 cores as the platform it measures; this
client costs a few tens of microseconds, so the figures are the platform's, not the client's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


class Connection:
    """One keep-alive connection; requests on it go one after another."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = (f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n"
                       "Content-Type: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the TCP connection (once)."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its response (status, body)."""
        await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method.encode(), path.encode(), self.prefix, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        return status, await (self._chunks() if chunked else self.reader.readexactly(length))

    async def _chunks(self) -> bytes:
        """A chunked body (what some proxies' error pages use)."""
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def run_many(url: str, key: str, requests: list[tuple[str, str, bytes]],
                   concurrency: int) -> list[tuple[float, float, int, bytes]]:
    """Send the requests over `concurrency` keep-alive connections (all opened before the first request is
    sent); per request (sent at, answered at, status, body), in the order given."""
    out: list[Any] = [None] * len(requests)
    next_index = iter(range(len(requests)))
    conns = [Connection(url, key) for _ in range(concurrency)]
    await asyncio.gather(*(c.connect() for c in conns))

    async def worker(conn: Connection) -> None:
        try:
            for i in next_index:
                method, path, body = requests[i]
                sent = time.time()
                status, answer = await conn.request(method, path, body)
                out[i] = (sent, time.time(), status, answer)
        finally:
            conn.close()

    await asyncio.gather(*(worker(c) for c in conns))
    return out


def decode(body: bytes) -> Any:
    """A JSON response body."""
    return json.loads(body)
