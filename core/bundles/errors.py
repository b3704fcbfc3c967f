"""Rejection helpers: every refusal names a stable reason code and, where there is one, the entry."""

from __future__ import annotations

from typing import NoReturn

from core.errors import BundleTooLarge, InvalidBundle


def reject(reason: str, message: str, *, entry: str | None = None, too_large: bool = False) -> NoReturn:
    """Raise InvalidBundle (BundleTooLarge for size caps) with `detail = {"reason", "entry"}`."""
    detail: dict[str, object] = {"reason": reason}
    if entry is not None:
        detail["entry"] = entry
    cls = BundleTooLarge if too_large else InvalidBundle
    raise cls(message, detail=detail)


def show(raw: bytes | str) -> str:
    """A printable form of an entry name for messages, whatever bytes it holds."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    return repr(text)
