"""Reading `timestamp,value` CSV files for `cloudfn detect backtest`."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


def parse_timestamp(text: str) -> float:
    """Epoch seconds from epoch seconds or an ISO-8601 string (naive means UTC)."""
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(v):
            raise ValueError(f"timestamp {text!r} is not finite")
        return v
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither epoch seconds nor ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_backtest_csv(path: str | Path) -> list[tuple[float, float]]:
    """Rows of a CSV with header `timestamp,value`; ValueError naming the line on any bad row."""
    rows: list[tuple[float, float]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["timestamp", "value"]:
            raise ValueError(f"line 1: header must be 'timestamp,value', got {','.join(header or [])!r}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise ValueError(f"line {line}: expected 2 fields (timestamp,value), got {len(row)}")
            try:
                ts = parse_timestamp(row[0])
            except ValueError as e:
                raise ValueError(f"line {line}: {e}") from None
            try:
                value = float(row[1])
            except ValueError:
                raise ValueError(f"line {line}: value {row[1]!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"line {line}: value {row[1]!r} is not finite")
            rows.append((ts, value))
    return rows


def backtest_lines(path: str | Path) -> Iterator[str]:
    """What `cloudfn detect backtest FILE` prints: one score per data row (ValueError before any output)."""
    from analytics.detection.series import backtest_scores

    rows = read_backtest_csv(path)
    for score in backtest_scores(rows):
        yield f"{score:.6f}"

