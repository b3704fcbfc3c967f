"""Per-interval aggregates of a function's executions (the time-series detectors' input)."""

from __future__ import annotations

import math

import numpy as np

from core.models import MetricRecord

SERIES: tuple[str, ...] = ("invocations", "error_rate", "duration_p95_ms", "peak_memory_mb")


class IntervalAggregator:
    """Buckets executions by finish time; emits each closed interval's aggregates once."""

    def __init__(self, interval_s: float = 60.0):
        self.interval_s = interval_s
        self.bucket: int | None = None
        self.count = 0
        self.errors = 0
        self.durations: list[float] = []
        self.peak_mem = 0.0

    def add(self, rec: MetricRecord) -> list[tuple[float, dict[str, float]]]:
        """Add one execution; return (interval end, aggregates) for every interval this closes."""
        b = math.floor(rec.finished_at / self.interval_s)
        closed: list[tuple[float, dict[str, float]]] = []
        if self.bucket is None:
            self.bucket = b
        elif b > self.bucket:
            closed.append(self._emit(self.bucket))
            # empty intervals in between: zero invocations, nothing else known (cap the backfill)
            for e in range(max(self.bucket + 1, b - 60), b):
                closed.append(((e + 1) * self.interval_s, {"invocations": 0.0}))
            self.bucket = b
        self.count += 1
        self.errors += 1 if rec.is_error else 0
        if not rec.cold_start:
            self.durations.append(rec.duration_ms)
        self.peak_mem = max(self.peak_mem, rec.peak_memory_mb)
        return closed

    def _emit(self, b: int) -> tuple[float, dict[str, float]]:
        agg: dict[str, float] = {"invocations": float(self.count)}
        if self.count:
            agg["error_rate"] = self.errors / self.count
            agg["peak_memory_mb"] = self.peak_mem
        if self.durations:
            agg["duration_p95_ms"] = float(np.percentile(self.durations, 95))
        self.count, self.errors, self.durations, self.peak_mem = 0, 0, [], 0.0
        return (b + 1) * self.interval_s, agg
