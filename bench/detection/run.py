"""Run StreamingSeriesDetector and a rolling z-score baseline on the same labelled series; print a table.

    .venv/bin/python -m bench.detection.run [--seeds 12] [--n 15000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from analytics.detection.series import StreamingSeriesDetector
from bench.detection.generate import generate
from bench.detection.score import Result, score

WARMUP = 200  # points ignored by the scorer at the start of every series (both detectors)


def rolling_z_alarms(values: np.ndarray, window: int = 60, k: float = 3.0) -> np.ndarray:
    """Baseline: |x - mean| > k * std of the previous `window` points."""
    out = np.zeros(len(values), dtype=bool)
    buf: deque[float] = deque(maxlen=window)
    for i, v in enumerate(values):
        if len(buf) >= 10:
            a = np.fromiter(buf, float)
            sd = a.std()
            out[i] = sd > 0 and abs(v - a.mean()) > k * sd
        buf.append(float(v))
    return out


def streaming_alarms(threshold: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Alarms of StreamingSeriesDetector at a score threshold."""

    def run(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        det = StreamingSeriesDetector()
        return np.array([det.update(t, v) for t, v in zip(ts.tolist(), values.tolist(), strict=True)]) >= threshold

    return run


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--normal-seeds", type=int, default=3, help="extra series with no anomaly at all")
    args = ap.parse_args()
    series = [generate(s, n=args.n) for s in range(args.seeds)]
    series += [generate(1000 + s, n=args.n, n_events=0) for s in range(args.normal_seeds)]
    detectors: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "streaming (score>=0.5)": streaming_alarms(0.5),
        "streaming (score>=0.6)": streaming_alarms(0.6),
        "rolling-z (w=60, |z|>3)": lambda ts, v: rolling_z_alarms(v),
    }
    totals: dict[str, Result] = {}
    secs: dict[str, float] = {}
    for name, fn in detectors.items():
        total = Result()
        t0 = time.perf_counter()
        for s in series:
            r = score(fn(s.timestamps, s.values), s.events, warmup=WARMUP)
            total.add(r)
            print(json.dumps({"detector": name, "series": s.name, **r.summary()}))
        secs[name] = time.perf_counter() - t0
        totals[name] = total
    points = sum(len(s.values) for s in series)
    kinds = sorted({k for r in totals.values() for k in r.by_kind})
    head = f"{'detector':26} {'prec':>5} {'recall':>6} {'F1':>5} {'delay':>5} {'FA/10k':>7}  " + " ".join(
        f"{k[:11]:>11}" for k in kinds) + f" {'us/pt':>6}"
    print()
    print(f"{len(series)} series, {points} points, {sum(r.events for r in list(totals.values())[:1])} events")
    print(head)
    for name, r in totals.items():
        s = r.summary()
        per_kind = " ".join(f"{r.by_kind.get(k, [0, 0])[1]:>5}/{r.by_kind.get(k, [0, 0])[0]:<5}" for k in kinds)
        print(f"{name:26} {s['precision']:5.2f} {s['recall']:6.2f} {s['f1']:5.2f} {s['median_delay']:5.1f} "
              f"{s['fa_per_10k']:7.2f}  {per_kind} {1e6 * secs[name] / points:6.1f}")
        print(json.dumps({"summary": name, **s, "by_kind": r.by_kind, "us_per_point": 1e6 * secs[name] / points}))


if __name__ == "__main__":
    main()
