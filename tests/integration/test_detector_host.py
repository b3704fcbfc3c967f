"""The detector shard's logic against the real database: anomalies stored, state persisted and reloaded."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text

from actors.detector import DetectorHost
from core.models import MetricRecord


def rec(fn: str, ms: float, i: int, t0: float) -> dict[str, Any]:
    return MetricRecord(task_id=str(uuid.uuid4()), namespace="default", function=fn, version=1, status="succeeded",
                        started_at=t0 + i, finished_at=t0 + i + ms / 1000, duration_ms=ms, cpu_ms=ms * 0.97,
                        peak_memory_mb=9.5, queue_ms=2.0, cold_start=i == 0, input_bytes=10,
                        output_bytes=12).__dict__


def test_host_stores_anomalies_and_reloads_state(database_url: str) -> None:
    fn = f"host-{uuid.uuid4().hex[:8]}"
    host = DetectorHost(database_url)
    t0 = time.time()
    assert host.observe([rec(fn, 10 + (i % 3) * 0.2, i, t0) for i in range(100)]) == []
    slow = [rec(fn, 500, 100 + i, t0) for i in range(3)]
    found = host.observe(slow)
    assert found and found[0]["metric"] in ("duration_ms", "cpu_ms") and found[0]["task_id"] == slow[0]["task_id"]
    assert host.persist() == 1
    eng = create_engine(database_url)
    with eng.connect() as c:
        n = c.execute(text("SELECT count(*) FROM anomalies WHERE function = :f"), {"f": fn}).scalar()
        states = c.execute(text("SELECT count(*) FROM detector_state WHERE function = :f"), {"f": fn}).scalar()
    eng.dispose()
    assert n == len(found) and states == 1
    # a new host (a restarted or recreated actor) reloads the fitted model: the jump is still anomalous
    again = DetectorHost(database_url)
    assert again.observe([rec(fn, 500, 200, t0)]), "the reloaded model lost its fitted history"
