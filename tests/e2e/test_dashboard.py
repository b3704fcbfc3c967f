"""The Panel dashboard in headless Chromium against the real API: a just-finished execution appears live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, deploy, free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OUT = ROOT / "test-output" / "dashboard"
NAME = "dash-hello"


@pytest.fixture()
def dashboard(api_server: Any, admin_key: str, tmp_path: Path) -> Iterator[str]:
    """`python -m panel_dashboard` on a free port, pointed at the test API; killed afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp_path / "dashboard.log"
    env = dict(os.environ, CLOUDFN_API_URL=api_server.url, CLOUDFN_API_KEY=admin_key)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "panel_dashboard", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer in 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_just_finished_execution_appears_without_reload(api: httpx.Client, dashboard: str) -> None:
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

            page.locator("select").first.select_option(NAME)
            page.get_by_text("finished executions plotted").wait_for(timeout=20_000)
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
