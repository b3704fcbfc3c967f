"""Prometheus-style durations (`500ms`, `30s`, `5m`, `1h30m`, `1d`) or plain seconds, as float seconds."""

from __future__ import annotations

import math
import re

_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
MAX_DURATION_S = 366 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds from `1h30m`, `500ms`, `30s` or a number; ValueError with an example otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text like 30s, 5m, 1h30m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _PART_RE.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(f"{value!r} is not a duration like 500ms, 30s, 5m or 1h30m") from None
    else:
        raise ValueError(f"a duration must be a number or text like 30s, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} must be between 0 and 366d")
    return seconds
