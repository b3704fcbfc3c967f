"""The console in a real browser: how fast what users wait for shows up.

    .venv/bin/python -m bench.console [--executions 1000000] [--functions 1000] [--live 15]

Starts the platform as `cloudfn up` does (API and console), logs in with the admin key in headless Chromium
(Debian's /usr/bin/chromium) and prints JSON lines:

- `live_execution`: an execution finished through the API (its record returned) until its row is on an open
  function page, `--live` times (the baseline in the same run: the console's poll period).
- `function_page`: opening a function page whose lake holds `--executions` rows spread over 7 days (written
  straight into the lake as the platform's flush writes them: synthetic metric rows, not real invocations),
  until its charts are drawn for 1 h (`function_page_open_1h`), and until its last part, the executions, is
  laid out under them (`function_page_open_1h_whole`); then clicking 7 d until the 7-day charts show every
  row (first: DuckDB over the lake; repeats: the poller's cache). Baseline: the API's own 7-day time-series
  answer, timed here.
- `function_list`: the overview until its table lists `--functions` functions (deployed through the API into a
  tenant of their own), against the same page of an empty tenant (baseline).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.platform_proc import PlatformProcess, zip_handler
from panel_dashboard.store import POLL_PERIOD_S

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
TIMEOUT_MS = 120_000
WEEK_S = 7 * 86400


def emit(**row: Any) -> None:
    """One JSON line."""
    print(json.dumps(row), flush=True)


def summary(xs: list[float]) -> dict[str, float]:
    """Median, min and max in milliseconds."""
    return {"median_ms": round(statistics.median(xs) * 1000, 1), "min_ms": round(min(xs) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1), "n": len(xs)}


def timed(action: Callable[[], Any]) -> float:
    """Seconds ACTION took."""
    t0 = time.perf_counter()
    action()
    return time.perf_counter() - t0


@contextmanager
def browser_context(base: str, key: str) -> Iterator[Any]:
    """A logged-in Chromium context on the console."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
            page = ctx.new_page()
            page.goto(f"{base}/login")
            page.fill("#key", key)
            page.click("#login")
            page.locator(".who").wait_for(timeout=TIMEOUT_MS)
            page.close()
            yield ctx
        finally:
            browser.close()


def console_url(plat: PlatformProcess) -> str:
    """Where `cloudfn up` serves the console."""
    return f"http://127.0.0.1:{plat.dash_port}"


def deploy(api: httpx.Client, name: str) -> None:
    r = api.post("/v1/functions", data={"name": name}, files={"archive": ("b.zip", zip_handler(HANDLER),
                                                                          "application/zip")})
    r.raise_for_status()


def write_lake_rows(home: Path, namespace: str, function: str, n: int) -> float:
    """N metric rows of FUNCTION over the last 7 days into the platform's lake; seconds it took."""
    from analytics.lake import ParquetLake
    from core.models import MetricRecord

    lake = ParquetLake(home / "lake", fsync=False)
    rng = random.Random(7)
    now = time.time()
    t0 = time.perf_counter()
    batch = 200_000
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            fin = now - WEEK_S + 120 + (WEEK_S - 240) * i / n
            dur = rng.lognormvariate(3.0, 0.4)
            rows.append(MetricRecord(task_id=f"synthetic-{i}", namespace=namespace, function=function, version=1,
                                     status="failed" if rng.random() < 0.01 else "succeeded",
                                     started_at=fin - dur / 1000, finished_at=fin, duration_ms=dur,
                                     cpu_ms=dur * 0.6, peak_memory_mb=20 + rng.random() * 5, queue_ms=1.0,
                                     cold_start=False))
        lake.append(rows)
    return time.perf_counter() - t0


def record_anomalies(home: Path, namespace: str, function: str) -> None:
    """A few anomalies of every kind over the week, as the detectors record them (synthetic: the page's marks
    and list are part of what renders)."""
    from sqlalchemy import create_engine, text

    now = time.time()
    rows = [("outlier", "duration_ms", 96.0, 20.0, 40.0, 0.97, "isolation_forest", 1.5),
            ("timeseries", "cpu_ms", 31.0, 12.0, 14.0, 0.91, "seasonal", 3.2),
            ("drift", "peak_memory_mb", 24.9, 22.0, 23.0, 0.88, "adwin", 4.6),
            ("regression", "error_rate", 0.03, 0.0, 0.015, 0.93, "version_regression", 5.9)]
    eng = create_engine((home / "database.url").read_text().strip())
    try:
        with eng.begin() as conn:
            for kind, metric, observed, low, high, score, detector, days_ago in rows:
                conn.execute(text(
                    "INSERT INTO anomalies (namespace, function, version, kind, metric, observed, expected_low,"
                    " expected_high, score, task_id, detector, details, detected_at) VALUES (:ns, :fn, 1, :kind,"
                    " :metric, :observed, :low, :high, :score, NULL, :detector, '{}', to_timestamp(:at))"),
                    {"ns": namespace, "fn": function, "kind": kind, "metric": metric, "observed": observed,
                     "low": low, "high": high, "score": score, "detector": detector, "at": now - days_ago * 86400})
    finally:
        eng.dispose()


def live_execution(plat: PlatformProcess, ctx: Any, api: httpx.Client, reps: int) -> None:
    """Finished through the API until the row is on the open function page."""
    name = "bench-live"
    deploy(api, name)
    page = ctx.new_page()
    page.goto(f"{console_url(plat)}/function?name={name}")
    page.locator(".function-summary").get_by_text("active version").wait_for(timeout=TIMEOUT_MS)
    lags = []
    for i in range(reps + 1):
        r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json={"i": i})
        done = time.perf_counter()
        task = r.json()
        assert task["status"] == "succeeded", task
        page.locator(".function-executions tr.row", has_text=task["task_id"]).wait_for(timeout=TIMEOUT_MS)
        if i:  # the first one also waits for the table's first fill
            lags.append(time.perf_counter() - done)
        time.sleep(random.Random(i).random())  # not in phase with the poller
    page.close()
    opens = []
    for _ in range(5):  # the baseline of function_page_open_1h: the same page over a handful of executions
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(f"{console_url(plat)}/function?name={name}")
        page.locator(".charts-note").get_by_text("executions over 1h").wait_for(timeout=TIMEOUT_MS)
        opens.append(time.perf_counter() - t0)
        page.close()
    emit(bench="console", measure="function_page_open_1h_few", rows=reps + 1, **summary(opens))
    emit(bench="console", measure="live_execution", **summary(lags), baseline_poll_period_ms=POLL_PERIOD_S * 1000)


def function_page(plat: PlatformProcess, ctx: Any, api: httpx.Client, n: int) -> None:
    """A function page over N lake rows: open (1 h), then 7 d (cold, then cached)."""
    name = "bench-heavy"
    deploy(api, name)
    wrote = write_lake_rows(plat.home, "default", name, n)
    record_anomalies(plat.home, "default", name)
    emit(bench="console", measure="lake_rows_written", rows=n, seconds=round(wrote, 1))
    api_times = []
    for _ in range(5):
        t = timed(lambda: api.get(f"/v1/functions/{name}/timeseries", params={"window": "7d", "bucket": "1h"},
                                  timeout=120).raise_for_status())
        api_times.append(t)
    pts = api.get(f"/v1/functions/{name}/timeseries", params={"window": "7d", "bucket": "1h"}).json()["points"]
    total = sum(p["count"] for p in pts)
    emit(bench="console", measure="api_timeseries_7d", rows=total, **summary(api_times))
    opens, whole, cold, warm = [], [], [], []
    for rep in range(5):
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(f"{console_url(plat)}/function?name={name}")
        page.locator(".charts-note").get_by_text("executions over 1h").wait_for(timeout=TIMEOUT_MS)
        opens.append(time.perf_counter() - t0)
        page.locator(".function-executions").wait_for(timeout=TIMEOUT_MS)  # the last part, laid out after the charts
        whole.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        page.locator(".window-pick button", has_text="7d").click()
        page.locator(".charts-note").get_by_text(f"{total:,} executions over 7d").wait_for(timeout=TIMEOUT_MS)
        (cold if rep == 0 else warm).append(time.perf_counter() - t0)
        if rep == 0:
            page.screenshot(path=str(OUT / "function-page-7d.png"), full_page=True)
        page.close()
    emit(bench="console", measure="function_page_open_1h", rows=n, **summary(opens))
    emit(bench="console", measure="function_page_open_1h_whole", rows=n, **summary(whole))
    emit(bench="console", measure="function_page_7d_first", rows=total, **summary(cold))
    emit(bench="console", measure="function_page_7d_cached", rows=total, **summary(warm))


def function_list(plat: PlatformProcess, op: httpx.Client, n: int) -> None:
    """The overview of a tenant with N functions against an empty tenant's."""
    def tenant_key(tenant: str) -> str:
        assert op.post("/v1/tenants", json={"name": tenant}).status_code == 201
        r = op.post("/v1/keys", json={"tenant": tenant, "role": "developer", "name": "bench"})
        r.raise_for_status()
        return str(r.json()["key"])

    suffix = uuid.uuid4().hex[:4]
    empty_key, full_key = tenant_key(f"bench-empty-{suffix}"), tenant_key(f"bench-list-{suffix}")
    with httpx.Client(base_url=plat.url, headers={"Authorization": f"Bearer {full_key}"}, timeout=120) as dev:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: deploy(dev, f"fn-{i:04d}"), range(n)))
        emit(bench="console", measure="functions_deployed", functions=n, seconds=round(time.perf_counter() - t0, 1))
    for label, key, want in (("function_list_empty", empty_key, "0 functions"),
                             ("function_list", full_key, f"{n:,} functions")):
        with browser_context(console_url(plat), key) as ctx:
            times = []
            for _ in range(5):
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(f"{console_url(plat)}/")
                page.locator(".functions-count").get_by_text(want, exact=True).wait_for(timeout=TIMEOUT_MS)
                if n and label == "function_list":
                    page.locator(".functions-table .tabulator-cell a", has_text="fn-0000").first.wait_for(
                        timeout=TIMEOUT_MS)
                times.append(time.perf_counter() - t0)
                page.close()
            emit(bench="console", measure=label, functions=0 if label.endswith("empty") else n, **summary(times))


OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--executions", type=int, default=1_000_000)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--live", type=int, default=15)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with PlatformProcess() as plat, plat.client(timeout=120) as op:
        with browser_context(console_url(plat), plat.key) as ctx:
            live_execution(plat, ctx, op, a.live)
            function_page(plat, ctx, op, a.executions)
        function_list(plat, op, a.functions)


if __name__ == "__main__":
    main()
