"""Synthetic execution records for the detector tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.models import MetricRecord

MakeRec = Callable[..., MetricRecord]


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator."""
    return np.random.default_rng(7)


@pytest.fixture
def make_rec(rng: np.random.Generator) -> MakeRec:
    """Build one execution's record: `i` sets the finish time (`spacing` seconds apart)."""

    def make(i: int, duration: float, version: int = 1, cold: bool = False, spacing: float = 6.0,
             error: bool = False) -> MetricRecord:
        t = 1_700_000_000.0 + i * spacing
        return MetricRecord(
            task_id=f"t{i}", namespace="default", function="f", version=version,
            status="failed" if error else "succeeded", started_at=t - duration / 1000, finished_at=t,
            duration_ms=duration, cpu_ms=duration * 0.8 + float(rng.normal(0, 0.2)),
            peak_memory_mb=40.0 + float(rng.normal(0, 0.5)), queue_ms=1.0, cold_start=cold,
            input_bytes=100, output_bytes=50,
        )

    return make
