"""Level shifts (time series), slow creeps (drift) and version regressions, each by its own detector."""

from __future__ import annotations

import numpy as np

from analytics.detection import Anomaly, FunctionDetectors
from tests.unit.detection.conftest import MakeRec


def _run(fd: FunctionDetectors, make_rec: MakeRec, durations: list[float], start: int = 0,
         version: int = 1) -> list[tuple[int, Anomaly]]:
    return [(i, a) for i, d in enumerate(durations, start) for a in fd.observe(make_rec(i, d, version=version))]


def test_level_shift_is_a_timeseries_anomaly(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")  # 60 s intervals, one execution every 6 s: 760 intervals outlast the probation
    normal = list(10 + rng.normal(0, 1, 7600))
    shifted = list(13 + rng.normal(0, 1, 200))
    before = _run(fd, make_rec, normal)
    after = _run(fd, make_rec, shifted, start=7600)
    assert [a for _, a in before if a.kind in ("timeseries", "outlier")] == []
    ts = [(i, a) for i, a in after if a.kind == "timeseries" and a.metric == "duration_p95_ms"]
    assert ts, "the p95 level shift was not reported"
    assert ts[0][0] < 7600 + 60  # within 6 intervals
    assert ts[0][1].observed > ts[0][1].details["expected"]
    assert [a for _, a in after if a.kind == "outlier"] == []  # no single execution is extreme


def test_slow_creep_is_drift(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")
    normal = list(10 + rng.normal(0, 1, 500))
    creep = list(np.linspace(10, 14, 1500) + rng.normal(0, 1, 1500))
    found = _run(fd, make_rec, normal + creep)
    drift = [(i, a) for i, a in found if a.kind == "drift" and a.metric == "duration_ms"]
    assert drift and all(i >= 500 for i, _ in drift)
    assert drift[0][1].details["rel_change"] > 0.1
    assert [a for _, a in found if a.kind == "outlier"] == []


def test_steady_function_has_no_drift(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")
    found = _run(fd, make_rec, list(10 + rng.normal(0, 1, 2000)))
    assert [a for _, a in found if a.kind in ("drift", "regression")] == []


def test_slower_version_is_a_regression_within_30_executions(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")
    _run(fd, make_rec, list(10 + rng.normal(0, 1, 200)))
    found = _run(fd, make_rec, list(14 + rng.normal(0, 1.4, 100)), start=200, version=2)
    reg = [(i, a) for i, a in found if a.kind == "regression" and a.metric == "duration_ms"]
    assert len(reg) == 1
    i, a = reg[0]
    assert i < 200 + 30
    assert a.version == 2 and a.details["old_version"] == 1
    assert a.details["message"].startswith("v2 duration p95 +") and a.details["message"].endswith("% vs v1")
    assert 0.2 < a.details["rel_change"] < 0.7


def test_same_speed_version_is_not_a_regression(make_rec: MakeRec, rng: np.random.Generator) -> None:
    fd = FunctionDetectors("f")
    _run(fd, make_rec, list(10 + rng.normal(0, 1, 200)))
    found = _run(fd, make_rec, list(10 + rng.normal(0, 1, 200)), start=200, version=2)
    assert [a for _, a in found if a.kind == "regression"] == []
