"""The spine over real HTTP, real PostgreSQL and a real local Ray: deploy, invoke, read back, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from sqlalchemy import create_engine, text

from tests.conftest import ROOT, deploy, zip_files

EX = ROOT / "examples"


def invoke_wait(api: httpx.Client, name: str, event: Any, wait: float = 60) -> dict[str, Any]:
    """Invoke and wait for the finished record."""
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": wait}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def hello(api_server: Any, admin_key: str) -> str:
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as c:
        r = deploy(c, "hello", EX / "hello")
        assert r.status_code == 201, r.text
    return "hello"


def test_deploy_returns_the_new_version(api: httpx.Client, hello: str) -> None:
    body = api.get(f"/v1/functions/{hello}").json()
    assert body["name"] == "hello" and body["state"] == "active" and body["handler"] == "main.handler"
    assert len(body["sha256"]) == 64 and body["version"] >= 1


def test_invoke_wait_returns_the_full_record_with_real_metrics(api: httpx.Client, hello: str) -> None:
    rec = invoke_wait(api, hello, {"name": "Ada"})
    assert rec["status"] == "succeeded", rec
    assert rec["output"]["greeting"] == "Hello, Ada!"
    assert rec["output"]["request_id"] == rec["task_id"]  # context.aws_request_id is the task id
    m = rec["metrics"]
    assert m["duration_ms"] >= 0 and m["cpu_ms"] >= 0 and m["queue_ms"] >= 0
    assert 0 <= m["cpu_wait_ms"] <= m["duration_ms"]
    assert m["peak_memory_mb"] > 1
    assert isinstance(m["cold_start"], bool)
    for k in ("created_at", "started_at", "finished_at"):
        assert rec[k] is not None
    assert rec["node"] in {n["NodeID"] for n in ray.nodes()}  # the Ray node that ran it
    assert api.get(f"/v1/tasks/{rec['task_id']}").json()["node"] == rec["node"]
    logs = api.get(f"/v1/tasks/{rec['task_id']}/logs")
    assert logs.status_code == 200 and "greeting Ada" in logs.text and "[INFO]" in logs.text


def test_async_invoke_then_poll(api: httpx.Client, hello: str) -> None:
    r = api.post(f"/v1/functions/{hello}/invocations", json={"name": "Bo"})
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    tid = r.json()["task_id"]
    import time

    for _ in range(200):
        rec = api.get(f"/v1/tasks/{tid}").json()
        if rec["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert rec["status"] == "succeeded" and rec["output"]["greeting"] == "Hello, Bo!"


def test_every_execution_has_a_metrics_row(api: httpx.Client, hello: str, database_url: str) -> None:
    ids = [invoke_wait(api, hello, {"name": str(i)})["task_id"] for i in range(5)]
    eng = create_engine(database_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    with eng.connect() as c:
        n = c.execute(text("SELECT count(*) FROM execution_metrics WHERE task_id = ANY(:ids)"), {"ids": ids}).scalar()
    eng.dispose()
    assert n == 5


def test_second_invocation_is_warm(api: httpx.Client, hello: str) -> None:
    invoke_wait(api, hello, {})
    assert invoke_wait(api, hello, {})["metrics"]["cold_start"] is False


def test_failure_records_type_message_stack(api: httpx.Client) -> None:
    assert deploy(api, "failing", EX / "fail").status_code == 201
    rec = invoke_wait(api, "failing", {"order": 7})
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "PaymentDeclined"
    assert "order 7" in rec["error"]["message"]
    assert any("main.py" in frame for frame in rec["error"]["stack"])
    assert "about to fail" in api.get(f"/v1/tasks/{rec['task_id']}/logs").text


def test_cpu_and_memory_are_measured(api: httpx.Client) -> None:
    assert deploy(api, "burn", EX / "burn").status_code == 201
    assert deploy(api, "alloc", EX / "alloc").status_code == 201
    burn = invoke_wait(api, "burn", {"cpu_ms": 200})
    assert burn["status"] == "succeeded" and burn["metrics"]["cpu_ms"] >= 150
    small = invoke_wait(api, "alloc", {"mb": 5})["metrics"]["peak_memory_mb"]
    big = invoke_wait(api, "alloc", {"mb": 120})["metrics"]["peak_memory_mb"]
    assert big - small >= 100, (small, big)


def test_timeout_kills_the_handler(api: httpx.Client) -> None:
    assert deploy(api, "sleepy", files={"main.py": "import time\ndef handler(e, c):\n    time.sleep(30)\n"},
                  config={"timeout_s": 1}).status_code == 201
    rec = invoke_wait(api, "sleepy", {})
    assert rec["status"] == "timed_out", rec


def test_activate_deactivate_delete(api: httpx.Client) -> None:
    assert deploy(api, "toggle", EX / "hello").status_code == 201
    assert api.post("/v1/functions/toggle/deactivate").json()["state"] == "inactive"
    r = api.post("/v1/functions/toggle/invocations", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert api.post("/v1/functions/toggle/activate").json()["state"] == "active"
    tid = invoke_wait(api, "toggle", {"name": "x"})["task_id"]
    assert api.delete("/v1/functions/toggle").status_code == 204
    assert api.post("/v1/functions/toggle/invocations", json={}).status_code == 404
    assert api.get(f"/v1/tasks/{tid}").json()["status"] == "succeeded"  # history stays readable
    assert "toggle" not in [f["name"] for f in api.get("/v1/functions").json()["functions"]]


def test_new_upload_makes_a_new_version(api: httpx.Client) -> None:
    assert deploy(api, "versioned", files={"main.py": "def handler(e, c):\n    return 1\n"}).json()["version"] == 1
    assert deploy(api, "versioned", files={"main.py": "def handler(e, c):\n    return 2\n"}).json()["version"] == 2
    assert invoke_wait(api, "versioned", {})["output"] == 2
    assert api.post("/v1/functions/versioned/rollback").json()["active_version"] == 1
    assert invoke_wait(api, "versioned", {})["output"] == 1



@pytest.mark.parametrize(("form", "archive", "status", "needle"), [
    ({"name": "bad1"}, b"not a zip", 400, "zip"),
    ({"name": "bad2"}, zip_files({}), 400, ""),
    ({"name": "bad3"}, zip_files({"other.py": "x = 1"}), 400, "main.py"),
    ({"name": "bad4", "handler": "not a handler!"}, zip_files({"main.py": "def handler(e): pass"}), 400, "handler"),
    ({"name": "Bad_Name"}, zip_files({"main.py": "def handler(e): pass"}), 400, "name"),
    ({"name": "bad6", "config": "{not json"}, zip_files({"main.py": "def handler(e): pass"}), 400, "JSON"),
    ({"name": "bad7", "config": '{"timeout_s": -1}'}, zip_files({"main.py": "def handler(e): pass"}), 400, "timeout_s"),
    ({"name": "bad8"}, zip_files({"main.py": "import nonexistent_module_xyz\ndef handler(e): pass"}), 422,
     "ModuleNotFoundError"),
])
def test_bad_uploads_get_a_4xx_and_leave_nothing(api: httpx.Client, form: dict[str, str], archive: bytes,
                                                  status: int, needle: str) -> None:
    r = api.post("/v1/functions", data=form, files={"archive": ("f.zip", archive, "application/zip")})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle.lower() in err["message"].lower()
    names = [f["name"] for f in api.get("/v1/functions").json()["functions"]]
    assert form["name"] not in names


def test_bad_requests(api: httpx.Client, api_server: Any, hello: str) -> None:
    r = api.post(f"/v1/functions/{hello}/invocations", content=b"not json",
                 headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    assert api.post("/v1/functions/nope/invocations", json={}).status_code == 404
    assert api.get("/v1/tasks/does-not-exist").status_code == 404
    assert httpx.get(f"{api_server.url}/v1/functions").status_code == 401
    wrong = httpx.get(f"{api_server.url}/v1/functions", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{api_server.url}/healthz").json()["status"] == "ok"


def test_failed_gate_keeps_previous_version_active(api: httpx.Client) -> None:
    assert deploy(api, "gated", files={"main.py": "def handler(e, c):\n    return 'v1'\n"}).status_code == 201
    r = deploy(api, "gated", files={"main.py": "raise RuntimeError('boom at import')\n"})
    assert r.status_code == 422
    detail = r.json()["error"]["handler_error"]
    assert detail["type"] == "RuntimeError" and "boom at import" in detail["message"] and detail["stack"]
    assert invoke_wait(api, "gated", {})["output"] == "v1"
    assert [v["version"] for v in api.get("/v1/functions/gated/versions").json()["versions"]] == [1]


def test_examples_folder_has_fixtures() -> None:
    for name in ("hello", "fail", "burn", "alloc"):
        assert (Path(EX) / name / "main.py").exists()
