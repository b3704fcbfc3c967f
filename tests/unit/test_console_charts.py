"""The function page's charts over the lake: a bounded number of points per chart whatever the executions, and
each point's figures those of the lake's rows in its bucket."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from analytics.aggregates import parse_window, timeseries
from analytics.lake import ParquetLake
from core.models import MetricRecord
from panel_dashboard.client import ApiClient, ApiConfig
from panel_dashboard.function_page import ChartsView
from panel_dashboard.store import WINDOWS, DataStore, Snapshot, bucket_for

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
MAX_POINTS = 200


def rows(n: int, span_s: float) -> list[MetricRecord]:
    """N executions of `f` finished over the SPAN_S seconds before NOW, 2% failed."""
    rng = random.Random(5)
    out = []
    for i in range(n):
        fin = NOW - span_s + span_s * (i + 0.5) / n
        dur = rng.lognormvariate(3.0, 0.5)
        out.append(MetricRecord(task_id=f"t{i}", namespace="default", function="f", version=1,
                                status="failed" if rng.random() < 0.02 else "succeeded", started_at=fin - dur / 1000,
                                finished_at=fin, duration_ms=dur, cpu_ms=dur * rng.uniform(0.3, 0.9),
                                peak_memory_mb=rng.uniform(20, 60), queue_ms=1.0, cold_start=False))
    return out


@pytest.mark.parametrize("window", list(WINDOWS))
def test_every_window_is_drawn_with_a_bounded_number_of_points(window: str) -> None:
    buckets = parse_window(window) / parse_window(bucket_for(window))
    assert buckets + 1 <= MAX_POINTS


def test_a_week_of_executions_is_charted_in_bounded_buckets_whose_figures_are_the_lakes(tmp_path: Path) -> None:
    week = parse_window("7d")
    executed = rows(30_000, week)
    lake = ParquetLake(tmp_path / "lake", fsync=False)
    lake.append(executed[:20_000])
    lake.append(executed[15_000:])  # 5,000 rows written twice (a retried flush): each counted once
    bucket = parse_window(bucket_for("7d"))
    points = timeseries(lake, "f", week, bucket, now=NOW, namespace="default")
    charts = ChartsView("f", DataStore(ApiClient(ApiConfig("http://127.0.0.1:9", "cfk_t"))))
    charts.window.value = "7d"
    charts.update(Snapshot(series={("f", "7d"): points}, anomalies={"f": []}, version=1))

    drawn = {title: chart.series.data for title, chart in charts.charts.items()}
    assert all(len(d["time"]) == len(points) <= MAX_POINTS for d in drawn.values())
    assert sum(drawn["CPU (ms)"]["count"]) == len(executed) == 30_000
    assert charts.note.object.startswith("30,000 executions over 7d")
    for k, start in enumerate(p["start"] for p in points):
        members = [r for r in executed if start <= r.finished_at < start + bucket]
        assert drawn["CPU (ms)"]["count"][k] == len(members)
        assert drawn["error rate"]["errors"][k] == sum(r.is_error for r in members)
        if not members:
            assert np.isnan(drawn["CPU (ms)"]["value"][k])
            continue
        assert drawn["CPU (ms)"]["value"][k] == pytest.approx(np.mean([r.cpu_ms for r in members]))
        assert drawn["peak memory (MB)"]["value"][k] == max(r.peak_memory_mb for r in members)
        assert drawn["duration (ms)"]["value"][k] == pytest.approx(
            np.percentile([r.duration_ms for r in members], 95))
        assert drawn["error rate"]["value"][k] == pytest.approx(sum(r.is_error for r in members) / len(members))
