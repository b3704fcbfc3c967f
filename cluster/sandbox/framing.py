"""Supervisor side of the child protocol: length-prefixed frames over non-blocking pipes, with deadlines.

A frame is `>III` (header_len, body_len, logs_len), then a JSON header, a raw body and raw logs; the
bootstrap module speaks the same format. Every read and write here is bounded by a deadline and by
size caps, so a hostile child can neither hang the supervisor nor make it allocate without limit.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

FRAME = struct.Struct(">III")
MAX_HEADER = 1 << 20


class ChannelTimeout(Exception):
    """The deadline passed before the frame was complete."""


class ChannelClosed(Exception):
    """The child closed its end of the pipe (or died)."""


class ProtocolViolation(Exception):
    """The child sent a frame that breaks the protocol or the size caps."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class ParentChannel:
    """Frames to and from one child; fds are set non-blocking."""

    def __init__(self, wfd: int, rfd: int) -> None:
        self.wfd, self.rfd = wfd, rfd
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        self._buf = bytearray()
        self._rpoll = select.poll()
        self._rpoll.register(rfd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._wpoll = select.poll()
        self._wpoll.register(wfd, select.POLLOUT | select.POLLERR)

    def send(self, header: dict[str, Any], body: bytes, deadline: float) -> None:
        h = json.dumps(header, separators=(",", ":")).encode()
        data = FRAME.pack(len(h), len(body), 0) + h
        if len(body) < 65536:
            self._write_all(memoryview(data + body), deadline)
        else:
            self._write_all(memoryview(data), deadline)
            self._write_all(memoryview(body), deadline)

    def _write_all(self, data: memoryview, deadline: float) -> None:
        while data:
            try:
                n = os.write(self.wfd, data)
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, OSError) as exc:
                raise ChannelClosed(str(exc)) from exc
            data = data[n:]
            if data:
                self._wait(self._wpoll, deadline)

    @staticmethod
    def _wait(poller: select.poll, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000.0):
            raise ChannelTimeout()

    def _fill(self, need: int, deadline: float) -> None:
        buf = self._buf
        while len(buf) < need:
            try:
                chunk = os.read(self.rfd, max(need - len(buf), 65536))
            except BlockingIOError:
                self._wait(self._rpoll, deadline)
                continue
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not chunk:
                raise ChannelClosed("child closed its pipe")
            buf += chunk

    def recv(self, deadline: float, max_body: int, max_logs: int) -> tuple[dict[str, Any], bytes, bytes]:
        """One frame; raises ChannelTimeout, ChannelClosed or ProtocolViolation."""
        self._fill(FRAME.size, deadline)
        hlen, blen, llen = FRAME.unpack_from(self._buf)
        if hlen > MAX_HEADER or blen > max_body or llen > max_logs:
            raise ProtocolViolation(f"frame sizes {hlen}/{blen}/{llen} exceed the caps")
        end = FRAME.size + hlen + blen + llen
        self._fill(end, deadline)
        with memoryview(self._buf) as mv:
            raw = bytes(mv[FRAME.size : FRAME.size + hlen])
            body = bytes(mv[FRAME.size + hlen : FRAME.size + hlen + blen])
            logs = bytes(mv[FRAME.size + hlen + blen : end])
        del self._buf[:end]  # only once no view of the buffer is left (else BufferError)
        try:
            header = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ProtocolViolation(f"bad frame header: {type(exc).__name__}") from exc
        if not isinstance(header, dict):
            raise ProtocolViolation("frame header is not an object")
        return header, body, logs
