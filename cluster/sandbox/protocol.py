"""What a child may say: every ready and reply header is checked field by field (types, sizes, finite numbers)
before anything else reads it. A header that breaks the rules raises `ProtocolViolation`; the pool then
fails that invocation with `SandboxProtocolError` and kills the child. Outputs are checked as JSON the
platform can store and serve: non-finite numbers, invalid or too deeply nested JSON are the function's
error (`OutputNotJSON`)."""

from __future__ import annotations

import json
import math
from typing import Any

from .framing import ProtocolViolation

STATUSES = ("succeeded", "failed")
MAX_TYPE = 200
MAX_MESSAGE = 64 * 1024
MAX_STACK_LINES = 200
MAX_OUTPUT_DEPTH = 200


def _finite(header: dict[str, Any], name: str, *, low: float = 0.0, high: float = 1e12) -> None:
    value = header.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ProtocolViolation(f"field {name!r} is not a number in [{low:g}, {high:g}]")


def check_error(error: Any) -> None:
    """An error object as the child reports one: {"type", "message", "stack"}."""
    if error is None:
        return
    if not isinstance(error, dict):
        raise ProtocolViolation("field 'error' is not an object")
    etype, message, stack = error.get("type"), error.get("message", ""), error.get("stack", [])
    if not isinstance(etype, str) or not 0 < len(etype) <= MAX_TYPE or not etype.isprintable():
        raise ProtocolViolation("error type is not a short printable string")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise ProtocolViolation("error message is not a string within the size cap")
    if not isinstance(stack, list) or len(stack) > MAX_STACK_LINES or \
            not all(isinstance(line, str) and len(line) <= 4096 for line in stack):
        raise ProtocolViolation("error stack is not a list of strings within the size cap")


def check_ready(header: dict[str, Any]) -> None:
    """The child's answer to the init message."""
    if not isinstance(header.get("ok"), bool):
        raise ProtocolViolation("ready message has no boolean 'ok'")
    check_error(header.get("error"))
    check_error(header.get("setup_error"))
    if not isinstance(header.get("isolation", {}), dict):
        raise ProtocolViolation("field 'isolation' is not an object")
    _finite(header, "init_ms")


def check_reply(header: dict[str, Any]) -> None:
    """One invocation's reply header."""
    if header.get("status") not in STATUSES:
        raise ProtocolViolation("field 'status' is not 'succeeded' or 'failed'")
    if not isinstance(header.get("retire", False), bool):
        raise ProtocolViolation("field 'retire' is not a boolean")
    check_error(header.get("error"))
    _finite(header, "cpu_wait_ms")
    _finite(header, "handler_ms")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once past `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def parse_output(body: bytes) -> tuple[Any, str] | str:
    """The output value and its JSON text, or why it is not storable JSON."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return f"output is nested deeper than {MAX_OUTPUT_DEPTH} levels"
    except (UnicodeDecodeError, ValueError) as exc:
        return f"handler output is not valid JSON: {exc}"
    if body.count(b"[") + body.count(b"{") > MAX_OUTPUT_DEPTH and _depth(value, MAX_OUTPUT_DEPTH) > MAX_OUTPUT_DEPTH:
        return f"output is nested deeper than {MAX_OUTPUT_DEPTH} levels"
    return value, text
