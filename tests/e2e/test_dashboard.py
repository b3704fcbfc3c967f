"""The Panel dashboard: headless Chromium against the real API (after logging in with a key, a just-finished
execution appears live), and its poller and executions table against a stand-in transport (fast, no platform).
The console's management flows are in test_console.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, deploy
from tests.e2e.console_proc import console_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OUT = ROOT / "test-output" / "dashboard"
NAME = "dash-hello"


@pytest.fixture()
def dashboard(api_server: Any, admin_key: str, tmp_path: Path) -> Iterator[str]:
    """`python -m panel_dashboard` on a free port, pointed at the test API (it holds no key); killed afterwards."""
    with console_process(api_server.url, tmp_path / "dashboard.log") as url:
        yield f"{url}/"


@pytest.mark.slow
def test_a_just_finished_execution_appears_without_reload(api: httpx.Client, dashboard: str, admin_key: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (Debian's chromium; scripts/test-deps.sh installs it)")
    from playwright.sync_api import expect, sync_playwright

    assert deploy(api, NAME, ROOT / "examples" / "hello").status_code == 201
    earlier = _invoke(api, "before the page")  # so the table is not empty at load and the new row is streamed in
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        errors: list[str] = []
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        try:
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(dashboard)
            page.fill("#key", admin_key)
            page.click("#login")
            # Live data from the poller reaches the page: the function shows up in the functions table.
            page.locator(".tabulator-cell", has_text=NAME).first.wait_for(timeout=30_000)
            page.evaluate("window.__notReloaded = true")

            page.locator(".tabulator-row", has_text=earlier["task_id"]).first.wait_for(timeout=20_000)
            task = _invoke(api, "after the page")

            row = page.locator(".tabulator-row", has_text=task["task_id"])
            row.first.wait_for(timeout=20_000)
            expect(row.first).to_contain_text("succeeded", timeout=10_000)
            expect(page.locator(".tabulator-row", has_text=earlier["task_id"]).first).to_be_visible()
            assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
            page.wait_for_timeout(1500)  # Bokeh's last draw; the template scrolls inside, so the viewport is tall
            page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(OUT / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert not errors, errors
    assert (OUT / "dashboard.png").stat().st_size > 10_000


def _invoke(api: httpx.Client, who: str) -> dict[str, Any]:
    """Invoke the test function, wait for it, and return its finished record."""
    r = api.post(f"/v1/functions/{NAME}/invocations", params={"wait": 60}, json={"name": who})
    assert r.status_code == 200, r.text
    task: dict[str, Any] = r.json()
    assert task["status"] == "succeeded", task
    return task


def _task(task_id: str, status: str = "succeeded", duration: float | None = 12.5) -> dict[str, Any]:
    """A task record in the contract's shape."""
    return {"task_id": task_id, "function": "hello", "version": 1, "status": status,
            "metrics": {"duration_ms": duration, "cpu_ms": 3.0, "peak_memory_mb": 20.0, "queue_ms": 1.0,
                        "cold_start": False},
            "created_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:00:01+00:00"}


def _store(handler: Any) -> Any:
    """A DataStore whose client talks to HANDLER instead of the network."""
    from panel_dashboard.client import ApiClient, ApiConfig
    from panel_dashboard.store import DataStore

    return DataStore(ApiClient(ApiConfig("http://api.test", "k-123"), transport=httpx.MockTransport(handler)))


def test_poller_shows_dashes_when_monitoring_routes_are_missing() -> None:
    from panel_dashboard.frames import functions_frame

    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path == "/v1/functions":
            return httpx.Response(200, json={"functions": [{"name": "hello", "state": "active", "active_version": 3}]})
        if req.url.path == "/v1/tasks":
            return httpx.Response(200, json={"tasks": [_task("t-1")]})
        if req.url.path.endswith("/metrics"):
            return httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route"}})

    store = _store(handler)
    store.watch("hello")

    async def run() -> None:
        await store.poll()
        await store.poll_metrics()
        await store.poll()

    asyncio.run(run())
    snap = store.snapshot
    assert snap.error is None and snap.last_ok is not None
    assert [t["task_id"] for t in snap.tasks] == ["t-1"]
    assert snap.function_tasks == {"hello": [_task("t-1")]}
    assert snap.alerts is None and snap.anomalies == {"hello": None} and snap.metrics == {"hello": None}
    row = functions_frame(snap.functions, snap.metrics).iloc[0].to_dict()
    assert row == {"function": "hello", "state": "active", "version": "3", "runs (1h)": "—", "error rate": "—",
                   "p95 ms": "—"}
    assert {r.url.path for r in seen} >= {"/v1/alerts", "/v1/anomalies", "/v1/metrics"}
    assert all(r.headers["authorization"] == "Bearer k-123" for r in seen)


def test_unreachable_api_keeps_the_last_data_and_says_so() -> None:
    up = {"ok": True}

    def handler(req: httpx.Request) -> httpx.Response:
        if not up["ok"]:
            raise httpx.ConnectError("connection refused", request=req)
        if req.url.path == "/v1/tasks":
            return httpx.Response(200, json={"tasks": [_task("t-1")]})
        return httpx.Response(200, json={"functions": [], "alerts": []})

    store = _store(handler)

    async def run() -> None:
        await store.poll()
        up["ok"] = False
        await store.poll()

    asyncio.run(run())
    snap = store.snapshot
    assert snap.error is not None and "unreachable" in snap.error
    assert [t["task_id"] for t in snap.tasks] == ["t-1"]
    assert snap.last_ok is not None


def test_executions_table_streams_new_tasks_and_patches_changed_ones() -> None:
    from panel_dashboard.store import Snapshot
    from panel_dashboard.views import ExecutionsView

    view = ExecutionsView(_store(lambda req: httpx.Response(404)))
    view.update(Snapshot(tasks=[_task("t-1", "running", None)], version=1))
    view.update(Snapshot(tasks=[_task("t-2"), _task("t-1", "succeeded", 40.0)], version=2))
    df = view.table.value
    assert list(df["task_id"]) == ["t-1", "t-2"]  # oldest first; the table sorts by index, newest on top
    assert df.index.is_monotonic_increasing
    t1 = df[df["task_id"] == "t-1"].iloc[0]
    assert (t1["status"], t1["duration_ms"]) == ("succeeded", 40.0)
