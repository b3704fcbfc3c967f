"""notebooks/: each runs without errors (nbclient, a real kernel) over a lake made here with known features (a
slower version, an error burst, a costly function of another tenant) and reports them; outputs stay out of git."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from analytics.lake import ParquetLake
from core.models import MetricRecord, TaskStatus

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
START = 1_795_000_000.0 - (1_795_000_000.0 % 3600)  # a fixed hour: nothing depends on the clock
MINUTES = 30 * 60  # the streaming detector scores after its probation (750 points and a day)
V2_FROM, BURST = 1560, range(1650, 1655)  # minute offsets


def minute_iso(m: int) -> str:
    import datetime as dt

    return str(dt.datetime.fromtimestamp(START + m * 60, dt.UTC))


def make_lake(root: Path) -> None:
    """30 hours. resize (acme): 6 runs a minute, v2 from minute 1560 at 160 ms instead of 100 ms, a failure burst
    in minutes 1650-1654; report (globex): 2 runs a minute of 800 ms at 512 MB; api (acme): 4 quick small runs."""
    rng = np.random.default_rng(7)
    lake = ParquetLake(root, fsync=False)
    batch: list[MetricRecord] = []
    ids = iter(range(10**9))

    def run(fn: str, ns: str, version: int, t: float, dur: float, mem: float, failed: bool) -> None:
        batch.append(MetricRecord(
            task_id=f"{fn}-{next(ids)}", namespace=ns, function=fn, version=version,
            status=TaskStatus.FAILED if failed else TaskStatus.SUCCEEDED, started_at=t - dur / 1000, finished_at=t,
            duration_ms=dur, cpu_ms=dur * 0.8, peak_memory_mb=mem, queue_ms=2.0, cold_start=False,
            error_type="ValueError" if failed else None, input_bytes=100, output_bytes=200))

    for m in range(MINUTES):
        t0 = START + m * 60
        for k in range(6):
            v2 = m >= V2_FROM
            fail = rng.random() < (0.8 if m in BURST else 0.005)
            run("resize", "acme", 2 if v2 else 1, t0 + k * 10 + 1, rng.normal(160 if v2 else 100, 6), 128.0, fail)
        for k in range(2):
            run("report", "globex", 1, t0 + k * 30 + 2, rng.normal(800, 30), 512.0, False)
        for k in range(4):
            run("api", "acme", 3, t0 + k * 15 + 3, rng.normal(20, 2), 64.0, False)
        if m % 60 == 59:  # one flush an hour: several files per partition
            lake.append(batch)
            batch.clear()


def execute(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run a notebook; return the JSON its `summary` cell printed."""
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (cell,) = [c for c in nb.cells if "summary" in c.metadata.get("tags", [])]
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return dict(json.loads(text.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("nblake") / "lake"
    make_lake(root)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"CLOUDFN_LAKE_URI": str(root), "PYTHONPATH": pythonpath}


def test_notebooks_are_committed_without_outputs() -> None:
    assert {p.name for p in NOTEBOOKS} == {"lake_metrics.ipynb", "detector_backtest.ipynb"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


def test_lake_notebook_finds_the_slower_version_the_burst_and_the_costs(lake_env: dict[str, str]) -> None:
    s = execute(ROOT / "notebooks" / "lake_metrics.ipynb", lake_env)
    p95 = s["p95_ms"]
    assert p95["resize v2"] > p95["resize v1"] * 1.4  # 160 ms against 100 ms
    assert p95["report v1"] > p95["resize v2"]
    assert set(s["bursts"]) == {"resize"}
    assert s["bursts"]["resize"][0] >= minute_iso(BURST.start)[:16] and len(s["bursts"]["resize"]) >= 3
    assert all(m < minute_iso(BURST.stop) for m in s["bursts"]["resize"])
    usd = s["usd_by_function"]
    assert usd["report"] > usd["resize"] > usd["api"] > 0
    assert s["usd_by_tenant"]["globex"] == pytest.approx(usd["report"])
    assert s["usd_by_tenant"]["acme"] == pytest.approx(usd["resize"] + usd["api"])


def test_backtest_notebook_alarms_on_the_burst(lake_env: dict[str, str]) -> None:
    s = execute(ROOT / "notebooks" / "detector_backtest.ipynb", lake_env)
    assert s["function"] == "resize" and s["minutes"] == MINUTES
    assert s["burst_minutes"] and s["max_error_score_in_bursts"] >= 0.5  # the documented alarm level
    first_burst = s["burst_minutes"][0]
    assert any(first_burst <= m < minute_iso(BURST.stop) for m in s["alarm_minutes"])
    assert s["first_p95_alarm"] is not None and s["first_p95_alarm"] >= minute_iso(V2_FROM)  # the slower v2
