"""Window aggregates over a real lake plus pending rows, checked against NumPy."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics.aggregates import (
    MAX_WINDOW_S,
    WINDOW_ERROR,
    aggregate,
    check_metric_aggregate,
    function_metrics,
    functions_metrics,
    parse_window,
    timeseries,
)
from analytics.lake import ParquetLake
from core.models import MetricRecord

NOW = datetime(2024, 3, 2, 0, 30, tzinfo=UTC).timestamp()  # 30 min after midnight: windows span two dates


def rec(
    i: int, finished_at: float, *, function: str = "f", rng: random.Random | None = None, **kw: Any
) -> MetricRecord:
    """A record with random-ish figures."""
    r = rng or random.Random(i)
    fields: dict[str, Any] = {
        "task_id": f"t{i}",
        "namespace": "default",
        "function": function,
        "version": 1,
        "status": "succeeded" if r.random() > 0.2 else r.choice(["failed", "timed_out"]),
        "started_at": finished_at - 1,
        "finished_at": finished_at,
        "duration_ms": r.lognormvariate(3, 1),
        "cpu_ms": r.uniform(0, 50),
        "peak_memory_mb": r.uniform(20, 200),
        "queue_ms": 1.0,
        "cold_start": r.random() < 0.05,
    }
    fields.update(kw)
    return MetricRecord(**fields)


def expected(records: list[MetricRecord], window_s: float) -> dict[str, Any]:
    """The same figures computed with NumPy (percentile's default is linear, like quantile_cont)."""
    d = np.array([r.duration_ms for r in records])
    c = np.array([r.cpu_ms for r in records])
    m = np.array([r.peak_memory_mb for r in records])
    errors = sum(r.is_error for r in records)
    return {
        "count": len(records),
        "errors": errors,
        "error_rate": errors / len(records),
        "duration_ms": dict(zip(("p50", "p95", "p99"), np.percentile(d, [50, 95, 99]), strict=True))
        | {"avg": d.mean(), "max": d.max()},
        "cpu_ms": {"avg": c.mean(), "max": c.max()},
        "peak_memory_mb": {"avg": m.mean(), "max": m.max()},
        "cold_starts": sum(r.cold_start for r in records),
        "rate_per_s": len(records) / window_s,
    }


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Counts and maxima exactly; means and quantiles to float rounding."""
    for k in ("count", "errors", "cold_starts"):
        assert got[k] == want[k], k
    assert got["error_rate"] == pytest.approx(want["error_rate"])
    assert got["rate_per_s"] == pytest.approx(want["rate_per_s"])
    for group in ("duration_ms", "cpu_ms", "peak_memory_mb"):
        assert got[group]["max"] == want[group]["max"], group
        for k, v in want[group].items():
            assert got[group][k] == pytest.approx(v, rel=1e-9), (group, k)


@pytest.fixture
def lake(tmp_path: Path) -> ParquetLake:
    return ParquetLake(tmp_path / "lake")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("90d", MAX_WINDOW_S), (" 2h ", 7200)],
)
def test_parse_window(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "1", "1w", "h", "-5m", "1.5h", "1h30m", "05m", "1H", "1e3s"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{WINDOW_ERROR}$"):
        parse_window(text)


def test_parse_window_cap() -> None:
    with pytest.raises(ValueError, match="at most 90d"):
        parse_window("91d")
    with pytest.raises(ValueError, match="at most 90d"):
        parse_window("99999999h")


def test_empty_and_missing_lake(lake: ParquetLake) -> None:
    m = function_metrics(lake, "f", 3600, now=NOW)
    assert m == {
        "function": "f",
        "window_s": 3600.0,
        "count": 0,
        "errors": 0,
        "error_rate": None,
        "duration_ms": {"p50": None, "p95": None, "p99": None, "avg": None, "max": None},
        "cpu_ms": {"avg": None, "max": None},
        "peak_memory_mb": {"avg": None, "max": None},
        "cold_starts": 0,
        "rate_per_s": 0.0,
    }
    assert aggregate(lake, "f", "duration_ms", "p95", 60, now=NOW) is None
    assert aggregate(lake, "f", "error_rate", "avg", 60, now=NOW) is None
    assert aggregate(lake, "f", "invocations", "count", 60, now=NOW) == 0.0
    assert all(b["count"] == 0 for b in timeseries(lake, "f", 600, 60, now=NOW))


def test_lake_plus_pending_deduplicated_matches_numpy(lake: ParquetLake) -> None:
    rng = random.Random(7)
    window = 3600.0
    inside = [rec(i, NOW - rng.uniform(0, window - 1), rng=rng) for i in range(3000)]
    outside = [rec(10_000 + i, NOW - window - 1 - i, rng=rng) for i in range(50)]
    other_fn = [rec(20_000 + i, NOW - 10, function="g", rng=rng) for i in range(50)]
    flushed, unflushed = inside[:2000], inside[2000:]
    for chunk in range(0, 2000, 400):
        lake.append(flushed[chunk : chunk + 400] + outside + other_fn)  # repeated, excluded
    # The sink may hand over rows it already flushed: they count once.
    pending = unflushed + flushed[-300:]
    assert len({p.parent.parent.name for p in lake.files()}) == 2  # the window spans two date partitions
    got = function_metrics(lake, "f", window, now=NOW, pending=pending)
    assert got["function"] == "f" and got["window_s"] == window
    assert_matches(got, expected(inside, window))


def test_same_task_other_attempt_counts_twice(lake: ParquetLake) -> None:
    a = rec(1, NOW - 5, status="failed", duration_ms=10.0)
    b = rec(1, NOW - 4, status="succeeded", duration_ms=30.0, attempt=2)
    lake.append([a])
    m = function_metrics(lake, "f", 60, now=NOW, pending=[a, b])
    assert (m["count"], m["errors"], m["duration_ms"]["max"]) == (2, 1, 30.0)


def test_window_bounds_are_exclusive_inclusive(lake: ParquetLake) -> None:
    rows = [rec(1, NOW - 60), rec(2, NOW - 59.999999), rec(3, NOW), rec(4, NOW + 0.000001)]
    lake.append(rows[:2])
    m = function_metrics(lake, "f", 60, now=NOW, pending=rows[2:])
    assert m["count"] == 2  # rows 2 and 3


def test_namespace_filter(lake: ParquetLake) -> None:
    lake.append([rec(1, NOW - 1, namespace="a"), rec(2, NOW - 1, namespace="b")])
    assert function_metrics(lake, "f", 60, now=NOW)["count"] == 2
    assert function_metrics(lake, "f", 60, now=NOW, namespace="a")["count"] == 1
    assert function_metrics(lake, "f", 60, now=NOW, namespace="c", pending=[rec(3, NOW, namespace="c")])["count"] == 1


def test_aggregate_for_rules(lake: ParquetLake) -> None:
    rows = [rec(i, NOW - i, duration_ms=float(i), status="failed" if i < 5 else "succeeded") for i in range(1, 21)]
    lake.append(rows)
    d = np.arange(1.0, 21.0)

    def agg(metric: str, a: str) -> float | None:
        return aggregate(lake, "f", metric, a, 100, now=NOW)

    assert agg("duration_ms", "p95") == pytest.approx(np.percentile(d, 95))
    assert agg("duration_ms", "p50") == pytest.approx(10.5)
    assert agg("duration_ms", "max") == 20.0
    assert agg("duration_ms", "avg") == pytest.approx(10.5)
    assert agg("duration_ms", "count") == 20.0
    assert agg("error_rate", "avg") == pytest.approx(0.2)
    assert agg("error_rate", "count") == 4.0
    assert agg("error_rate", "rate") == pytest.approx(0.04)
    assert agg("invocations", "count") == 20.0
    assert agg("invocations", "rate") == pytest.approx(0.2)
    assert agg("peak_memory_mb", "max") == max(r.peak_memory_mb for r in rows)


@pytest.mark.parametrize(
    ("metric", "agg", "message"),
    [
        ("latency", "avg", "metric must be"),
        ("cpu_ms", "median", "aggregate must be"),
        ("invocations", "p95", "only"),
    ],
)
def test_bad_metric_or_aggregate(lake: ParquetLake, metric: str, agg: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_metric_aggregate(metric, agg)
    with pytest.raises(ValueError, match=message):
        aggregate(lake, "f", metric, agg, 60, now=NOW)


@pytest.mark.parametrize("window", [0, -1, float("nan"), float("inf"), MAX_WINDOW_S + 1])
def test_bad_window_seconds(lake: ParquetLake, window: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        function_metrics(lake, "f", window, now=NOW)


def test_timeseries_buckets(lake: ParquetLake) -> None:
    rng = random.Random(3)
    rows = [rec(i, NOW - rng.uniform(0, 599), rng=rng) for i in range(500)]
    lake.append(rows[:300])
    series = timeseries(lake, "f", 600, 60, now=NOW, pending=rows[250:])
    assert len(series) == 11  # NOW is on a minute boundary: buckets [NOW-600, NOW-540) .. [NOW, NOW+60)
    assert [b["start"] for b in series] == [NOW - 600 + 60 * k for k in range(11)]
    assert sum(b["count"] for b in series) == 500
    for b in series:
        members = [r for r in rows if b["start"] <= r.finished_at < b["start"] + 60]
        assert b["count"] == len(members)
        assert b["errors"] == sum(r.is_error for r in members)
        if members:
            assert b["duration_ms_p95"] == pytest.approx(np.percentile([r.duration_ms for r in members], 95))
            assert b["peak_memory_mb_max"] == max(r.peak_memory_mb for r in members)
        else:
            assert b["duration_ms_p95"] is None and b["peak_memory_mb_max"] is None
    with pytest.raises(ValueError, match="buckets"):
        timeseries(lake, "f", 86400, 1, now=NOW)
    with pytest.raises(ValueError, match="bucket_s"):
        timeseries(lake, "f", 600, 0, now=NOW)


def test_every_functions_figures_in_one_query_equal_each_functions_own(lake: ParquetLake) -> None:
    rng = random.Random(11)
    rows = [rec(i, NOW - rng.uniform(0, 3599), function=rng.choice(["f", "g", "h"]), rng=rng) for i in range(1500)]
    other_tenant = [rec(10_000 + i, NOW - 10, function="f", namespace="team-b") for i in range(20)]
    old = [rec(20_000 + i, NOW - 7200, function="k") for i in range(5)]  # outside the window
    lake.append(rows[:1000] + other_tenant + old + rows[900:1000])  # 100 rows written twice
    every = functions_metrics(lake, 3600, now=NOW, pending=rows[1000:], namespace="default")
    assert sorted(every) == ["f", "g", "h"]
    for name in ("f", "g", "h"):
        own = function_metrics(lake, name, 3600, now=NOW, pending=rows[1000:], namespace="default")
        assert every[name]["function"] == name and every[name]["window_s"] == 3600
        assert_matches(every[name], own)  # equal but for the order of summation
        assert_matches(every[name], expected([r for r in rows if r.function == name], 3600))
    assert functions_metrics(lake, 3600, now=NOW, namespace="team-b")["f"]["count"] == 20
    assert functions_metrics(lake, 60, now=NOW - 7200 + 30)["k"]["count"] == 5
    assert functions_metrics(lake, 3600, now=NOW, namespace="nobody") == {}


def test_concurrent_calls_with_compaction(lake: ParquetLake) -> None:
    rows = [rec(i, NOW - 1 - i % 600) for i in range(2000)]
    for k in range(0, 2000, 100):
        lake.append(rows[k : k + 100])
    want = expected(rows, 3600)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def worker() -> None:
        try:
            while not done.is_set():
                results.append(function_metrics(lake, "f", 3600, now=NOW, pending=rows[:50]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    removed = lake.compact()
    for k in range(0, 2000, 200):  # re-delivered rows (duplicates) land and are merged under the readers
        lake.append(rows[k : k + 200])
        removed += lake.compact()
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert removed == 20 + 10 * 2
    assert len(results) >= 3
    for got in results:
        assert_matches(got, want)


def test_bad_function_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid function name"):
        function_metrics(ParquetLake(tmp_path / "missing"), "../etc", 60, now=NOW)


def test_modules_do_not_import_ray() -> None:
    code = (
        "import sys, analytics.lake, analytics.aggregates, analytics.prometheus; "
        "sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


def test_real_clock_short_window(lake: ParquetLake) -> None:
    t = time.time()
    lake.append([rec(i, t - 30 + i) for i in range(20)])  # files are written now, after their rows finished
    lake.append([rec(100, t - 600)])  # outside the window
    assert function_metrics(lake, "f", 60)["count"] == 20
    assert aggregate(lake, "f", "invocations", "count", 3600) == 21.0
