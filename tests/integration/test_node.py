"""Node.js functions through the whole platform (real HTTP, PostgreSQL, Ray, jail): deploy with
`runtime: nodejs20`, invoke, records, metrics, logs, warm reuse, limits, and bad uploads refused with a 4xx."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, deploy, zip_files

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")

NODE = {"runtime": "nodejs20"}


def invoke_wait(api: httpx.Client, name: str, event: Any, wait: float = 60) -> dict[str, Any]:
    """Invoke and wait for the finished record."""
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": wait}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def hello_node(api_server: Any, admin_key: str) -> str:
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as c:
        r = deploy(c, "hello-node", ROOT / "examples" / "hello-node", config=NODE)
        assert r.status_code == 201, r.text
    return "hello-node"


def test_deploy_defaults_to_lambdas_index_handler(api: httpx.Client, hello_node: str) -> None:
    body = api.get(f"/v1/functions/{hello_node}").json()
    assert body["handler"] == "index.handler" and body["config"]["runtime"] == "nodejs20"


def test_invoke_runs_the_unmodified_lambda_handler(api: httpx.Client, hello_node: str) -> None:
    rec = invoke_wait(api, hello_node, {"name": "Ada"})
    assert rec["status"] == "succeeded", rec
    assert rec["output"]["greeting"] == "Hello, Ada!" and rec["output"]["echo"] == {"name": "Ada"}
    assert rec["output"]["request_id"] == rec["task_id"]  # context.awsRequestId is the task id
    assert 0 < rec["output"]["remaining_ms"] <= 60_000
    m = rec["metrics"]
    assert m["duration_ms"] > 0 and m["cpu_ms"] > 0 and m["peak_memory_mb"] > 1
    logs = api.get(f"/v1/tasks/{rec['task_id']}/logs").text
    assert f"\t{rec['task_id']}\tINFO\tgreeting Ada" in logs
    # a later call reuses a warm child (the first calls after a deploy may run in the bridge's worker, then the
    # version's own worker starts its child: cold once more there)
    again = [invoke_wait(api, hello_node, {"name": f"Bo{i}"}) for i in range(4)]
    assert all(r["status"] == "succeeded" for r in again)
    assert not all(r["metrics"]["cold_start"] for r in again)


def test_throwing_handler_is_recorded_like_python(api: httpx.Client) -> None:
    source = ("class PaymentDeclined extends Error { constructor(m) { super(m); this.name = 'PaymentDeclined'; } }\n"
              "exports.handler = async (event) => {\n  console.log('about to fail');\n"
              "  throw new PaymentDeclined(`order ${event.order} declined`);\n};\n")
    assert deploy(api, "failing-node", files={"index.js": source}, config=NODE).status_code == 201
    rec = invoke_wait(api, "failing-node", {"order": 7})
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "PaymentDeclined" and rec["error"]["message"] == "order 7 declined"
    assert any("index.js" in frame for frame in rec["error"]["stack"])
    assert "about to fail" in api.get(f"/v1/tasks/{rec['task_id']}/logs").text


def test_timeout_and_memory_limits(api: httpx.Client) -> None:
    sleepy = "exports.handler = async () => new Promise((r) => setTimeout(r, 30000));"
    assert deploy(api, "sleepy-node", files={"index.js": sleepy}, config={**NODE, "timeout_s": 1}).status_code == 201
    assert invoke_wait(api, "sleepy-node", {})["status"] == "timed_out"
    hog = "const keep = [];\nexports.handler = async () => { for (;;) keep.push(Buffer.alloc(1 << 20, 1)); };"
    assert deploy(api, "hog-node", files={"index.js": hog}, config={**NODE, "memory_mb": 64}).status_code == 201
    rec = invoke_wait(api, "hog-node", {})
    assert rec["status"] == "failed" and rec["error"]["type"] == "MemoryLimitExceeded", rec["error"]


def test_callback_style_handler_and_configured_handler(api: httpx.Client) -> None:
    files = {"src/app.js": "exports.run = (event, context, callback) => callback(null, { doubled: event * 2 });"}
    r = deploy(api, "callback-node", files=files, config=NODE, handler="src/app.run")
    assert r.status_code == 201 and r.json()["handler"] == "src/app.run", r.text
    assert invoke_wait(api, "callback-node", 21)["output"] == {"doubled": 42}


@pytest.mark.parametrize(("form", "files", "status", "needles"), [
    ({"config": '{"runtime": "ruby3.2"}'}, {"index.js": "exports.handler = async () => 1;"}, 400,
     ["runtime", "python3.11", "nodejs20"]),
    ({"config": '{"runtime": "nodejs20"}'}, {"main.py": "def handler(e, c):\n    return 1\n"}, 400,
     ["index.js", "handler"]),
    ({"config": '{"runtime": "nodejs20"}', "handler": "index"}, {"index.js": "exports.handler = 1;"}, 400,
     ["file.export"]),
    ({"config": '{"runtime": "nodejs20"}', "handler": "../up.handler"}, {"index.js": "exports.handler = 1;"}, 400,
     ["file.export"]),
    ({"config": '{"runtime": "nodejs20"}'}, {"index.js": "exports.handler = async ( => 1;"}, 422, ["SyntaxError"]),
    ({"config": '{"runtime": "nodejs20"}'}, {"index.js": "exports.other = async () => 1;"}, 422,
     ["HandlerNotFound"]),
])
def test_bad_node_uploads_get_a_4xx_and_leave_nothing(api: httpx.Client, form: dict[str, str],
                                                       files: dict[str, str], status: int, needles: list[str]) -> None:
    name = f"bad-node-{uuid.uuid4().hex[:8]}"
    r = api.post("/v1/functions", data={"name": name, **form},
                 files={"archive": ("f.zip", zip_files(files), "application/zip")})
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    for needle in needles:
        assert needle in message, message
    assert name not in [f["name"] for f in api.get("/v1/functions").json()["functions"]]
