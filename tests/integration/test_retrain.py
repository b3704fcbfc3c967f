"""The retrain job over a real lake and a real PostgreSQL: one state per function, the refitted model works."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from analytics.detection import FunctionDetectors
from analytics.jobs.retrain import RetrainError, load_state, main, resolve_database_url, store_state
from analytics.lake import ParquetLake
from core.db.engine import make_engine
from core.db.tables import DetectorState
from core.models import MetricRecord

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def records(fn: str, n: int, seed: int, base_ms: float, versions: int = 1, namespace: str = "default",
            spacing: float = 6.0) -> list[MetricRecord]:
    """`n` executions every `spacing` s over the last versions; every 100th a cold start."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = T0 + i * spacing
        cold = i % 100 == 0
        dur = base_ms * float(rng.lognormal(0, 0.1)) * (8.0 if cold else 1.0)
        out.append(MetricRecord(
            task_id=f"{fn}-{i}", namespace=namespace, function=fn, version=1 + i * versions // n, status="succeeded",
            started_at=t - dur / 1000, finished_at=t, duration_ms=dur, cpu_ms=dur * 0.8 * float(rng.lognormal(0, 0.05)),
            peak_memory_mb=40 + float(rng.normal(0, 0.5)), queue_ms=1.0, cold_start=cold,
            input_bytes=100, output_bytes=50))
    return out


def probe(fn: str, i: int, dur: float, version: int, namespace: str = "default") -> MetricRecord:
    """One warm execution right after the history."""
    t = T0 + i * 6.0
    return MetricRecord(task_id=f"probe-{i}", namespace=namespace, function=fn, version=version, status="succeeded",
                        started_at=t - dur / 1000, finished_at=t, duration_ms=dur, cpu_ms=dur * 0.8,
                        peak_memory_mb=40.0, queue_ms=1.0, cold_start=False, input_bytes=100, output_bytes=50)


def stored(database_url: str, namespace: str, fn: str) -> FunctionDetectors:
    eng = make_engine(database_url, pool_size=1)
    try:
        with eng.connect() as c:
            row = c.execute(select(DetectorState.state).where(DetectorState.namespace == namespace,
                                                              DetectorState.function == fn)).one()
    finally:
        eng.dispose()
    return FunctionDetectors.from_state(row[0])


def test_retrain_stores_a_working_model_per_function(database_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    fns = {f"rt-{tag}-a": (1, 20.0), f"rt-{tag}-b": (2, 150.0), f"rt-{tag}-c": (1, 5.0)}
    lake = ParquetLake(tmp_path / "lake", fsync=False)
    n = 800
    for k, (fn, (versions, base)) in enumerate(fns.items()):
        recs = records(fn, n, seed=k, base_ms=base, versions=versions)
        lake.append(recs[: n // 2])
        lake.append(recs[n // 2:])
    lake.append(records(f"rt-{tag}-a", 1, seed=9, base_ms=20.0, namespace="other")[:1])  # a second namespace

    out = io.StringIO()
    assert main(["--lake", str(lake.root), "--database-url", database_url, "--days", "7"], out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    per_fn = {(x["namespace"], x["function"]): x for x in lines if "summary" not in x}
    assert set(per_fn) == {("default", fn) for fn in fns} | {("other", f"rt-{tag}-a")}
    assert all(x["rows"] == n for (ns, _), x in per_fn.items() if ns == "default")
    assert all(isinstance(x["seconds"], float) and x["generation"] == 1 for x in per_fn.values())
    assert lines[-1]["summary"] and lines[-1]["functions"] == 4 and lines[-1]["failed"] == 0

    for fn, (versions, base) in fns.items():
        model = stored(database_url, "default", fn)
        assert model.refit_generation == 1 and model.outlier.ready and model.version == versions
        assert model.series, "the time-series detectors were not rebuilt"
        assert all(d.ref is not None for d in model.drift.metrics.values())
        normal = model.observe(probe(fn, n, base, versions))
        assert normal == []
        slow = model.observe(probe(fn, n + 1, 50 * base, versions))
        assert [a.kind for a in slow if a.kind == "outlier"] == ["outlier"]
        assert slow[0].metric in ("duration_ms", "cpu_ms")

    # a second run refits the stored models (and keeps their feedback)
    fn = f"rt-{tag}-a"
    out = io.StringIO()
    assert main(["--lake", str(lake.root), "--database-url", database_url, "--function", fn], out=out) == 0
    assert stored(database_url, "default", fn).refit_generation == 2


def test_a_concurrent_write_is_not_overwritten(database_url: str) -> None:
    fn = f"rt-cas-{uuid.uuid4().hex[:6]}"
    eng = make_engine(database_url, pool_size=1)
    try:
        first = store_state(eng, "default", fn, FunctionDetectors(fn).state(), None)
        assert first is not None
        assert store_state(eng, "default", fn, b"x", None) is None  # the row exists now
        newer = FunctionDetectors(fn)
        newer.tolerance[("timeseries", "invocations")] = 3.0  # e.g. an actor applied feedback meanwhile
        second = store_state(eng, "default", fn, newer.state(), first)
        assert second is not None and second > first
        assert store_state(eng, "default", fn, FunctionDetectors(fn).state(), first) is None  # stale token
        got = load_state(eng, "default", fn, 50)
        assert got.updated_at == second and got.model.tolerance == {("timeseries", "invocations"): 3.0}
    finally:
        eng.dispose()


def test_database_url_resolution(tmp_path: Path) -> None:
    assert resolve_database_url("postgresql://a", "postgresql://b", tmp_path) == "postgresql://a"
    assert resolve_database_url(None, "postgresql://b", tmp_path) == "postgresql://b"
    with pytest.raises(RetrainError, match="--database-url"):
        resolve_database_url(None, None, tmp_path)
    f = tmp_path / "database.url"
    f.write_text("postgresql://c\n")
    f.chmod(0o600)
    assert resolve_database_url(None, None, tmp_path) == "postgresql://c"


def test_module_runs_without_ray(database_url: str, tmp_path: Path) -> None:
    fn = f"rt-cli-{uuid.uuid4().hex[:6]}"
    lake = ParquetLake(tmp_path / "lake", fsync=False)
    lake.append(records(fn, 200, seed=5, base_ms=10.0))
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['retrain', '--lake', {str(lake.root)!r}, '--database-url', {database_url!r}]\n"
        "try:\n    runpy.run_module('analytics.jobs.retrain', run_name='__main__')\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "sys.exit(99 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else rc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLOUDFN_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["function"] == fn and lines[0]["rows"] == 200 and lines[-1]["functions"] == 1
