"""Text that PostgreSQL can store whatever it holds: `text` and `jsonb` refuse NUL, so logs are stored with
NUL (and the escape character itself) escaped, and read back exactly; error objects, which are displayed
rather than replayed, carry a NUL as the visible text `\\u0000`."""

from __future__ import annotations

import json
import re
from typing import Any

ESC = "\ue000"  # a private-use character: rare in logs, and escaped itself when present
_DECODE = re.compile(ESC + "(.)", re.DOTALL)


def store_text(text: str | None) -> str | None:
    """`text` in a form a `text` column accepts (unchanged unless it holds NUL or the escape character)."""
    if text is None or ("\x00" not in text and ESC not in text):
        return text
    return text.replace(ESC, ESC + "e").replace("\x00", ESC + "0")


def load_text(stored: str | None) -> str | None:
    """The exact text `store_text` was given."""
    if stored is None or ESC not in stored:
        return stored
    return _DECODE.sub(lambda m: ESC if m.group(1) == "e" else "\x00", stored)


def storable_json(value: Any) -> str:
    """`value` as JSON text a `jsonb` column accepts (a NUL in a string becomes the visible text `\\u0000`)."""
    return json.dumps(value).replace("\\u0000", "\\\\u0000")
