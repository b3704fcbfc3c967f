"""Each anomaly kind from its own detector, feedback on time-series anomalies, and the batch refit."""

from __future__ import annotations

import numpy as np

from analytics.detection import Anomaly, FunctionDetectors
from tests.unit.detection.conftest import MakeRec


def _feed(fd: FunctionDetectors, make_rec: MakeRec, durations: list[float], start: int) -> list[tuple[int, Anomaly]]:
    return [(i, a) for i, d in enumerate(durations, start) for a in fd.observe(make_rec(i, d))]


def test_a_single_slow_execution_is_an_outlier_only(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")
    assert _feed(fd, make_rec, list(10 + rng.normal(0, 1, 600)), 0) == []
    found = _feed(fd, make_rec, [80.0] + list(10 + rng.normal(0, 1, 300)), 600)
    kinds = {a.kind for _, a in found}
    assert [(i, a.kind) for i, a in found if a.kind == "outlier"] == [(600, "outlier")]
    assert kinds <= {"outlier", "timeseries"} and "drift" not in kinds and "regression" not in kinds


def _burst_run(make_rec: MakeRec, rng: np.random.Generator, feedback: bool) -> list[int]:
    """Two identical one-minute bursts of slow executions after the probation; the minutes whose p95 was reported."""
    fd = FunctionDetectors("f")
    minutes: list[int] = []
    i = 0
    for n in (7600, 0, 1200, 0):  # 760 minutes: past the 750-interval probation of the series detectors
        durs = list(10 + rng.normal(0, 1, n)) if n else list(20 + rng.normal(0, 0.5, 10))
        for j, a in _feed(fd, make_rec, durs, i):
            if a.kind == "timeseries" and a.metric == "duration_p95_ms":
                minutes.append(j // 10)
                if feedback:
                    fd.feedback(a, "false_positive")
        i += len(durs)
    return minutes


def test_feedback_stops_a_repeated_timeseries_false_positive(make_rec: MakeRec) -> None:
    without = _burst_run(make_rec, np.random.default_rng(1), feedback=False)
    assert len(without) >= 2, "both bursts should be reported without feedback"
    with_fb = _burst_run(make_rec, np.random.default_rng(1), feedback=True)
    assert with_fb == without[:1], "after the first is marked a false positive, the same burst is not reported"


def test_refit_from_history_gives_a_ready_model(make_rec: MakeRec, rng: np.random.Generator) -> None:
    history = [make_rec(i, 10 + float(rng.normal(0, 1)), cold=i % 100 == 0) for i in range(1500)]
    fd = FunctionDetectors("f")
    used = fd.refit(history)
    assert used["outlier"] == 1000 and used["drift"] == 300 and used["timeseries"] > 100
    assert fd.refit_generation == 1 and fd.outlier.ready and fd.version == 1
    assert fd.observe(make_rec(1500, 900.0, cold=True)) == []  # a cold start is still not an anomaly
    assert fd.observe(make_rec(1501, 10.3)) == []
    assert [a.kind for a in fd.observe(make_rec(1502, 500.0))] == ["outlier"]


def test_refit_keeps_feedback(make_rec: MakeRec, rng: np.random.Generator) -> None:
    history = [make_rec(i, 10 + float(rng.normal(0, 1))) for i in range(600)]
    fd = FunctionDetectors("f")
    fd.refit(history)
    first = [a for a in fd.observe(make_rec(600, 60.0)) if a.kind == "outlier"]
    assert len(first) == 1
    fd.feedback(first[0], "false_positive")
    fd.refit(history + [make_rec(601 + i, 10 + float(rng.normal(0, 1))) for i in range(100)])
    assert fd.refit_generation == 2
    assert [a for a in fd.observe(make_rec(800, 60.0)) if a.kind == "outlier"] == []
