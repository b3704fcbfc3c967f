"""The supervisor's side of the protocol on its own (no jail): frames a hostile child could write are
rejected as ProtocolViolation, never as an unhandled error, and the channel stays readable afterwards."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterator

import pytest

from cluster.sandbox import protocol
from cluster.sandbox.framing import ParentChannel, ProtocolViolation

FRAME = struct.Struct(">III")


@pytest.fixture
def channel() -> Iterator[tuple[ParentChannel, int]]:
    """A supervisor channel and the fd a child would write its replies to."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    yield ParentChannel(to_child_w, from_child_r), from_child_w
    for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
        os.close(fd)


def frame(header: bytes, body: bytes = b"") -> bytes:
    return FRAME.pack(len(header), len(body), 0) + header + body


@pytest.mark.parametrize("header", [
    b'{"status": "succeeded", "cpu_wait_ms": NaN}',
    b'{"status": "succeeded", "cpu_wait_ms": -Infinity}',
    b'{"status": "succeeded", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    b'["not", "an", "object"]',
    b"\xff\xfe not json",
], ids=["nan", "infinity", "deeply-nested", "not-an-object", "not-json"])
def test_bad_header_is_a_violation_and_the_next_frame_still_reads(channel: tuple[ParentChannel, int],
                                                                  header: bytes) -> None:
    chan, child_w = channel
    os.write(child_w, frame(header) + frame(b'{"status": "succeeded"}', b"42"))  # fits in the pipe buffer
    with pytest.raises(ProtocolViolation):
        chan.recv(time.monotonic() + 5, 1024, 1024)
    assert chan.recv(time.monotonic() + 5, 1024, 1024) == ({"status": "succeeded"}, b"42", b"")


def test_oversized_frame_rejected_before_reading_it(channel: tuple[ParentChannel, int]) -> None:
    chan, child_w = channel
    os.write(child_w, FRAME.pack(16, 10 << 20, 0))
    with pytest.raises(ProtocolViolation, match="exceed the caps"):
        chan.recv(time.monotonic() + 5, 1024, 1024)


@pytest.mark.parametrize("header", [
    {"status": 1},
    {"status": "succeeded", "retire": "no"},
    {"status": "succeeded", "cpu_wait_ms": "fast"},
    {"status": "succeeded", "cpu_wait_ms": True},
    {"status": "succeeded", "cpu_wait_ms": 1e300},
    {"status": "succeeded", "cpu_wait_ms": -1},
    {"status": "failed", "error": "boom"},
    {"status": "failed", "error": {"type": ["x"], "message": "m", "stack": []}},
    {"status": "failed", "error": {"type": "E\n\x1b[31m", "message": "m", "stack": []}},
    {"status": "failed", "error": {"type": "E", "message": 5, "stack": []}},
    {"status": "failed", "error": {"type": "E", "message": "m", "stack": [1]}},
])
def test_reply_fields_checked(header: dict[str, object]) -> None:
    with pytest.raises(ProtocolViolation):
        protocol.check_reply(json.loads(json.dumps(header)))


def test_valid_reply_passes() -> None:
    protocol.check_reply({"status": "failed", "error": {"type": "ValueError", "message": "m", "stack": ["x"]},
                          "cpu_wait_ms": 1.5, "retire": False})
    protocol.check_ready({"ok": True, "error": None, "isolation": {"pid": 2}, "init_ms": 3.0})


@pytest.mark.parametrize("body", [b'{"x": NaN}', b"Infinity", b"[" * 300 + b"]" * 300, b"\xff"])
def test_output_that_is_not_storable_json(body: bytes) -> None:
    assert isinstance(protocol.parse_output(body), str)


def test_output_round_trips() -> None:
    assert protocol.parse_output(b'{"a": [1, 2.5, null]}') == ({"a": [1, 2.5, None]}, '{"a": [1, 2.5, null]}')
