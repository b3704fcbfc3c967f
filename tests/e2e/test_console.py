"""The console in headless Chromium against the real API: a bad key is refused at login; under a developer key
every management flow is driven by clicks (deploy, invoke, deactivate, activate, roll back, anomaly feedback,
silence from an alert, delete after confirming); a viewer sees the data but no management control.
Screenshots of each step land in test-output/console/."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT, ApiServer, zip_files
from tests.e2e.console_proc import console_process
from tests.receivers import WebhookSink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OUT = ROOT / "test-output" / "console"
V1 = "def handler(event, context):\n    print('v1 got', event)\n    return {'version': 1, 'hi': event.get('name')}\n"
V2 = "def handler(event, context):\n    print('v2 got', event)\n    return {'version': 2, 'hi': event.get('name')}\n"
WAIT_MS = 30_000
SECRET = "whsec_" + base64.b64encode(b"console-test-secret-32-bytes....").decode()

pytestmark = pytest.mark.slow


@dataclass
class Team:
    """A fresh tenant with a developer and a viewer key, and the operator's client."""

    tenant: str
    developer: str
    viewer: str
    operator: httpx.Client

    def as_developer(self, server: ApiServer) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.developer}"}, timeout=120)


@pytest.fixture(scope="module")
def team(api_server: ApiServer, admin_key: str) -> Iterator[Team]:
    op = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120)
    tenant = f"console-{uuid.uuid4().hex[:6]}"
    assert op.post("/v1/tenants", json={"name": tenant}).status_code == 201
    keys = {}
    for role in ("developer", "viewer"):
        r = op.post("/v1/keys", json={"tenant": tenant, "role": role, "name": f"console-{role}"})
        assert r.status_code == 201, r.text
        keys[role] = r.json()["key"]
    yield Team(tenant, keys["developer"], keys["viewer"], op)
    op.close()


@pytest.fixture(scope="module")
def console(api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m panel_dashboard` on a free port with only the API's URL (no key); killed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (Debian's chromium; scripts/test-deps.sh installs it)")
    with console_process(api_server.url, tmp_path_factory.mktemp("console") / "console.log") as url:
        yield url


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Session:
    """One browser context (its own cookies) on the console, recording page errors and taking screenshots."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 3200})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def login(self, key: str) -> None:
        self.page.goto(f"{self.base}/")
        assert "/login" in self.page.url  # nobody gets in without a key
        self.page.fill("#key", key)
        self.page.click("#login")

    def click(self, css: str) -> None:
        self.page.locator(f"{css} button").click()

    def outcome(self, css: str, text: str) -> None:
        """Wait until the outcome line CSS says TEXT."""
        self.page.locator(css).get_by_text(text).first.wait_for(timeout=WAIT_MS)

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(800)  # Bokeh's last draw before the picture (not an assertion)
        self.page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def test_a_bad_key_is_refused_at_login(console: str, browser: Any) -> None:
    s = Session(browser, console)
    s.login("cfk_" + "x" * 43)
    s.page.locator("#login-error").wait_for(timeout=WAIT_MS)
    assert "refused" in s.page.locator("#login-error").inner_text()
    s.page.goto(f"{console}/function?name=anything")
    assert "/login" in s.page.url
    s.shot("bad-key")


def test_a_developer_runs_the_function_lifecycle_by_clicks(console: str, browser: Any, team: Team,
                                                           api_server: ApiServer, database_url: str,
                                                           tmp_path: Path) -> None:
    fn = "console-fn"
    v1, v2 = tmp_path / "v1.zip", tmp_path / "v2.zip"
    v1.write_bytes(zip_files({"main.py": V1}))
    v2.write_bytes(zip_files({"main.py": V2}))
    api = team.as_developer(api_server)
    s = Session(browser, console)
    try:
        s.login(team.developer)
        s.page.locator(".who").get_by_text(team.tenant).wait_for(timeout=WAIT_MS)
        s.page.locator(".who").get_by_text("developer", exact=True).wait_for(timeout=WAIT_MS)

        # deploy: a bad config is refused with the reason, then two good uploads make versions 1 and 2
        s.page.locator(".deploy-name input").fill(fn)
        s.page.locator(".deploy-archive input[type=file]").set_input_files(str(v1))
        s.page.locator(".deploy-config textarea").fill('{"timeout_s": ')
        s.click(".deploy-button")
        s.outcome(".deploy-outcome", "not valid JSON")
        s.page.locator(".deploy-config textarea").fill('{"timeout_s": 30}')
        s.click(".deploy-button")
        s.outcome(".deploy-outcome", "version 1")
        s.page.locator(".deploy-archive input[type=file]").set_input_files(str(v2))
        s.page.wait_for_timeout(300)  # the file reaches the server before the click
        s.click(".deploy-button")
        s.outcome(".deploy-outcome", "version 2")
        assert [v["version"] for v in api.get(f"/v1/functions/{fn}/versions").json()["versions"]] == [2, 1]
        s.page.locator(".tabulator-cell", has_text=fn).first.wait_for(timeout=WAIT_MS)
        s.shot("overview-developer")

        # the function page, from the list's link
        s.page.locator(f'.tabulator-cell a:text-is("{fn}")').first.click()
        s.page.wait_for_url(f"**/function?name={fn}")
        s.page.locator(".function-summary").get_by_text("active version").wait_for(timeout=WAIT_MS)

        # invoke with a JSON input: the result, the logs and the figures show
        s.page.locator(".invoke-input textarea").fill('{"name": "ada"}')
        s.click(".invoke-button")
        s.outcome(".invoke-outcome", "succeeded")
        s.page.locator(".invoke-logs").get_by_text("v2 got").wait_for(timeout=WAIT_MS)
        s.page.locator(".invoke-result").get_by_text("ada").first.wait_for(timeout=WAIT_MS)

        # an execution finished elsewhere appears on the open page without a reload
        s.page.evaluate("window.__notReloaded = true")
        r = api.post(f"/v1/functions/{fn}/invocations", params={"wait": 60}, json={"name": "from the api"})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        s.page.locator(".function-executions tr.row", has_text=r.json()["task_id"]).wait_for(timeout=WAIT_MS)
        assert s.page.evaluate("window.__notReloaded === true")
        s.page.locator(".charts-note").get_by_text("executions over 1h").wait_for(timeout=WAIT_MS)

        # deactivate (invoking gets 409), activate, roll back to version 1
        s.click(".deactivate-button")
        s.outcome(".manage-outcome", "state inactive")
        assert api.post(f"/v1/functions/{fn}/invocations", json={}).status_code == 409
        s.click(".activate-button")
        s.outcome(".manage-outcome", "state active")
        s.page.locator(".rollback-version select").select_option("1")
        s.click(".rollback-button")
        s.outcome(".manage-outcome", "active version 1")
        r = api.post(f"/v1/functions/{fn}/invocations", params={"wait": 60}, json={"name": "after rollback"})
        assert r.json()["output"]["version"] == 1, r.text

        # an anomaly (as the detector records it) is listed with its explanation; feedback by clicks
        anomaly = _record_anomaly(database_url, team.tenant, fn, r.json()["task_id"])
        row = s.page.locator(".anomalies-table tr.row", has_text="duration_ms")
        row.first.wait_for(timeout=WAIT_MS)
        assert "1 – 10" in row.first.inner_text() and "0.990" in row.first.inner_text()
        s.page.locator(".charts-note").get_by_text("1 anomalies marked").wait_for(timeout=WAIT_MS)
        # its red marker on the duration chart explains it on hover (Bokeh draws the tooltip as DOM elements)
        x, y = _marker_position(s.page)
        s.page.mouse.move(x, y)
        tip = s.page.locator(".bk-Tooltip .bk-tooltip-content", has_text="console-test")
        tip.first.wait_for(timeout=WAIT_MS)
        shown = " ".join(tip.first.inner_text().split())
        for want in ("metric: duration_ms", "observed: 900", "expected: 1 – 10", "detector: console-test",
                     "score: 0.990", "outlier"):
            assert want in shown, (want, shown)
        s.shot("anomaly-hover")
        s.page.locator(".feedback-anomaly select").select_option(str(anomaly))
        s.click(".feedback-fp")
        s.outcome(".feedback-outcome", "false_positive")
        got = api.get("/v1/anomalies", params={"function": fn}).json()["anomalies"]
        assert [(a["id"], a["feedback"]) for a in got] == [(anomaly, "false_positive")]
        s.shot("function-page")

        # delete asks first; cancelling keeps it, confirming deletes it
        s.click(".delete-button")
        s.page.locator(".confirm-delete button").wait_for(timeout=WAIT_MS)
        s.click(".cancel-delete")
        s.page.locator(".confirm-delete button").wait_for(state="hidden", timeout=WAIT_MS)
        assert api.get(f"/v1/functions/{fn}").status_code == 200
        s.click(".delete-button")
        s.click(".confirm-delete")
        s.outcome(".manage-outcome", "deleted")
        assert api.get(f"/v1/functions/{fn}").status_code == 404
        s.shot("deleted")
    except Exception:
        s.page.screenshot(path=str(OUT / "failure-developer.png"), full_page=True)
        raise
    finally:
        api.close()
    assert not s.errors, s.errors


def test_a_developer_deploys_a_folder_by_clicks(console: str, browser: Any, team: Team, api_server: ApiServer,
                                               tmp_path: Path) -> None:
    fn = "console-folder"
    folder = tmp_path / "greeter"
    (folder / "lib").mkdir(parents=True)
    (folder / "__pycache__").mkdir()
    (folder / "main.py").write_text("from lib.words import greet\n\ndef handler(event, context):\n"
                                    "    return {'said': greet(event.get('name'))}\n")
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "words.py").write_text("def greet(name):\n    return f'hello {name} from a folder'\n")
    (folder / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"not code")
    api = team.as_developer(api_server)
    s = Session(browser, console)
    try:
        s.login(team.developer)
        s.page.locator(".deploy-name input").fill(fn)
        s.page.locator(".deploy-folder input[type=file]").set_input_files(str(folder))
        s.page.wait_for_timeout(500)  # the files reach the server before the click
        s.click(".deploy-button")
        s.outcome(".deploy-outcome", "version 1")
        s.page.locator(".tabulator-cell", has_text=fn).first.wait_for(timeout=WAIT_MS)
        s.shot("folder-deployed")
        r = api.post(f"/v1/functions/{fn}/invocations", params={"wait": 60}, json={"name": "ada"})
        assert r.status_code == 200 and r.json()["output"] == {"said": "hello ada from a folder"}, r.text
    except Exception:
        s.page.screenshot(path=str(OUT / "failure-folder.png"), full_page=True)
        raise
    finally:
        api.close()
    assert not s.errors, s.errors


def test_a_developer_acknowledges_and_silences_a_firing_alert(console: str, browser: Any, team: Team,
                                                              api_server: ApiServer) -> None:
    fn = "console-alerting"
    api = team.as_developer(api_server)
    hook = WebhookSink(SECRET)
    s = Session(browser, console)
    try:
        assert api.post("/v1/functions", data={"name": fn},
                        files={"archive": ("b.zip", zip_files({"main.py": V1}), "application/zip")}).status_code == 201
        rule = {"name": "console-busy", "function": fn, "kind": "threshold", "metric": "invocations",
                "aggregate": "count", "op": ">", "value": 0, "window_s": 60, "for_s": 0,
                "channels": [{"type": "webhook", "url": hook.url, "secret": SECRET}]}
        r = api.post("/v1/alert-rules", json=rule)
        assert r.status_code == 201, r.text
        assert api.post(f"/v1/functions/{fn}/invocations", params={"wait": 60}, json={}).status_code == 200

        s.login(team.developer)
        s.page.locator(".silence-alert select option", has_text="console-busy").wait_for(state="attached",
                                                                                           timeout=90_000)
        s.page.locator(".tabulator-cell", has_text="console-busy").first.wait_for(timeout=90_000)  # notification
        s.page.locator(".silence-alert select").select_option(label=s.page.locator(
            ".silence-alert select option", has_text="console-busy").first.inner_text())
        # acknowledge it: who and when show in the alerts table and through the API
        s.click(".ack-button")
        s.outcome(".alert-outcome", "acknowledged by console-developer")
        firing = [a for a in api.get("/v1/alerts", params={"state": "firing"}).json()["alerts"]
                  if a["labels"].get("alertname") == "console-busy"]
        assert firing and firing[0]["acknowledged_by"] == "console-developer" and firing[0]["acknowledged_at"]
        s.page.locator(".tabulator-cell", has_text="console-developer at").first.wait_for(timeout=WAIT_MS)
        s.shot("alert-acknowledged")
        s.page.locator(".silence-comment input").fill("deploying a fix")
        s.click(".silence-button")
        s.outcome(".alert-outcome", "created")
        silences = api.get("/v1/silences").json()
        mine = [x for x in silences if x.get("comment") == "deploying a fix"]
        assert len(mine) == 1, silences
        assert {"name": "function", "value": fn, "isRegex": False, "isEqual": True} in mine[0]["matchers"]
        s.page.locator(".tabulator-cell", has_text="deploying a fix").first.wait_for(timeout=WAIT_MS)
        s.shot("alerts-silenced")
    except Exception:
        s.page.screenshot(path=str(OUT / "failure-alerts.png"), full_page=True)
        raise
    finally:
        hook.server.shutdown()
        api.close()
    assert not s.errors, s.errors


def test_a_viewer_sees_the_data_but_no_management_controls(console: str, browser: Any, team: Team,
                                                            api_server: ApiServer) -> None:
    fn = "console-viewed"
    with team.as_developer(api_server) as api:
        assert api.post("/v1/functions", data={"name": fn},
                        files={"archive": ("b.zip", zip_files({"main.py": V1}), "application/zip")}).status_code == 201
    s = Session(browser, console)
    s.login(team.viewer)
    s.page.locator(".who").get_by_text("viewer", exact=True).wait_for(timeout=WAIT_MS)
    s.page.locator(".tabulator-cell", has_text=fn).first.wait_for(timeout=WAIT_MS)
    s.page.get_by_text("Newest executions").first.wait_for(timeout=WAIT_MS)  # the part laid out once shown
    for control in (".deploy-button", ".silence-button", ".ack-button"):
        assert s.page.locator(control).count() == 0, control
    s.shot("overview-viewer")
    s.page.goto(f"{console}/function?name={fn}")
    s.page.locator(".function-summary").get_by_text("active version").wait_for(timeout=WAIT_MS)
    s.page.locator(".charts-note").wait_for(timeout=WAIT_MS)
    s.page.get_by_text("Newest executions").first.wait_for(timeout=WAIT_MS)
    for control in (".activate-button", ".deactivate-button", ".rollback-button", ".delete-button",
                    ".invoke-button", ".feedback-fp", ".feedback-confirmed"):
        assert s.page.locator(f"{control}:visible").count() == 0, control
    s.shot("function-viewer")
    assert not s.errors, s.errors


MARKER_JS = """() => {
  const views = [...Bokeh.index.query(v => v.model.name === "anomaly-marks" && v.glyph.sx.length > 0)];
  if (views.length !== 1) return null;
  const v = views[0];
  v.parent.el.scrollIntoView({block: "center"});
  const box = v.parent.el.getBoundingClientRect();
  return [box.left + v.glyph.sx[0], box.top + v.glyph.sy[0]];
}"""


def _marker_position(page: Any) -> tuple[float, float]:
    """Where, in the viewport, the one drawn anomaly marker is (Bokeh's view of the marks renderer)."""
    got: list[Any] = []

    def drawn() -> bool:
        got[:] = page.evaluate(MARKER_JS) or []
        return bool(got)

    for _ in range(60):
        if drawn():
            return float(got[0]), float(got[1])
        page.wait_for_timeout(250)
    raise AssertionError("no single drawn anomaly marker on the page's charts")


def _record_anomaly(database_url: str, tenant: str, fn: str, task_id: str) -> int:
    """An anomaly of FN as the detector records it (the detector's own tests cover how it finds one)."""
    eng = create_engine(database_url)
    try:
        with eng.begin() as conn:
            return int(conn.execute(text(
                "INSERT INTO anomalies (namespace, function, version, kind, metric, observed, expected_low,"
                " expected_high, score, task_id, detector, details) VALUES (:ns, :fn, 1, 'outlier', 'duration_ms',"
                " 900, 1, 10, 0.99, :t, 'console-test', '{}') RETURNING id"),
                {"ns": tenant, "fn": fn, "t": task_id}).scalar_one())
    finally:
        eng.dispose()
