"""Time `cloudfn detect backtest` (CSV reading and scoring, as the CLI does it) on a 100,000-row file.

    .venv/bin/python -m bench.detection.backtest_speed [--rows 100000]
The series is a daily-seasonal, heavy-tailed, quantised one with a few anomalies, at 5-minute spacing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from analytics.detection.backtest import backtest_lines


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """A `timestamp,value` file of `rows` rows."""
    rng = np.random.default_rng(seed)
    t = 1_600_000_000 + 300 * np.arange(rows)
    x = 50 + 15 * np.sin(2 * np.pi * t / 86400) + rng.standard_t(4, rows) * 2
    for s in rng.integers(1000, rows, 10):
        x[s:s + 20] += 30
    x = np.round(x, 1)
    path.write_text("timestamp,value\n" + "".join(f"{a},{b}\n" for a, b in zip(t.tolist(), x.tolist(), strict=True)))


def main() -> None:
    """Write the file, run the backtest over it, print the wall and CPU time as JSON (CPU time: a shared machine)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "series.csv"
        write_csv(p, args.rows)
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in backtest_lines(p))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"rows": n, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                      "us_per_row": round(1e6 * wall / n, 1)}))


if __name__ == "__main__":
    main()
