"""The invocation hot path: batched dispatch of short functions and the ASGI fast path, over real HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import deploy, zip_files

ECHO = '''
def handler(event, context):
    print("event", event["i"], "request", context.aws_request_id)
    return {"i": event["i"], "request": context.aws_request_id}
'''
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


def dispatch_counters(api: httpx.Client, function: str) -> tuple[float, float]:
    """(Ray tasks, invocations dispatched) for a function, from /metrics."""
    found = {"ray_tasks": 0.0, "invocations": 0.0}
    for line in api.get("/metrics").text.splitlines():
        for kind in found:
            if line.startswith(f'cloudfn_dispatch_{kind}_total{{function="{function}",tenant="default"}}'):
                found[kind] = float(line.rsplit(" ", 1)[1])
    return found["ray_tasks"], found["invocations"]


async def submit_all(url: str, key: str, n: int, function: str) -> dict[str, int]:
    """N asynchronous invocations, 50 at a time; task id -> the event's number."""
    sem = asyncio.Semaphore(50)
    out: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as ac:
        async def one(i: int) -> None:
            async with sem:
                r = await ac.post(f"/v1/functions/{function}/invocations", json={"i": i})
                assert r.status_code == 202, r.text
                out[r.json()["task_id"]] = i

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def test_short_function_is_batched_and_every_invocation_is_its_own_execution(
        api: httpx.Client, api_server: Any, admin_key: str, database_url: str) -> None:
    assert deploy(api, "batchy", files={"main.py": ECHO}).status_code == 201
    for i in range(5):  # the dispatcher learns that this function is short
        r = api.post("/v1/functions/batchy/invocations", params={"wait": 30}, json={"i": -1 - i})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    tasks_before, dispatched_before = dispatch_counters(api, "batchy")

    ids = asyncio.run(submit_all(api_server.url, admin_key, 150, "batchy"))
    assert len(ids) == 150
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while len(records) < len(ids) and time.monotonic() < deadline:
        for tid in [t for t in ids if t not in records]:
            rec = api.get(f"/v1/tasks/{tid}").json()
            if rec["status"] in TERMINAL:
                records[tid] = rec
        time.sleep(0.2)

    assert len(records) == 150
    for tid, rec in records.items():  # each ran with its own event and its own context
        assert rec["status"] == "succeeded", rec
        assert rec["output"] == {"i": ids[tid], "request": tid}
        assert rec["metrics"]["duration_ms"] is not None and rec["metrics"]["peak_memory_mb"] > 0
    sample = list(records)[:5]
    for tid in sample:  # and its own logs
        logs = api.get(f"/v1/tasks/{tid}/logs").text
        assert f"event {ids[tid]} request {tid}" in logs and logs.count("event ") == 1

    tasks, dispatched = dispatch_counters(api, "batchy")
    assert dispatched - dispatched_before == 150
    assert tasks - tasks_before < 150  # some Ray tasks ran more than one invocation
    eng = create_engine(database_url)
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT count(*), count(DISTINCT task_id) FROM execution_metrics"
                                 " WHERE function = 'batchy' AND attempt = 1")).one()
    eng.dispose()
    assert tuple(rows) == (155, 155)


def test_max_batch_1_gives_every_invocation_its_own_ray_task(api: httpx.Client, api_server: Any,
                                                              admin_key: str) -> None:
    assert deploy(api, "unbatched", files={"main.py": ECHO}, config={"max_batch": 1}).status_code == 201
    for i in range(5):
        assert api.post("/v1/functions/unbatched/invocations", params={"wait": 30}, json={"i": i}).status_code == 200
    tasks_before, dispatched_before = dispatch_counters(api, "unbatched")
    ids = asyncio.run(submit_all(api_server.url, admin_key, 40, "unbatched"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(api.get(f"/v1/tasks/{t}").json()["status"] in TERMINAL for t in ids):
            break
        time.sleep(0.3)
    tasks, dispatched = dispatch_counters(api, "unbatched")
    assert dispatched - dispatched_before == 40
    assert tasks - tasks_before == 40


def test_fast_path_answers_like_the_fastapi_route(api: httpx.Client) -> None:
    assert deploy(api, "fastpath", files={"main.py": "def handler(event, context):\n    return event\n"}
                  ).status_code == 201
    ok = api.post("/v1/functions/fastpath/invocations", params={"wait": 30}, json={"a": 1})
    assert ok.status_code == 200 and ok.json()["output"] == {"a": 1}
    accepted = api.post("/v1/functions/fastpath/invocations", json={"a": 2})
    assert accepted.status_code == 202 and set(accepted.json()) == {"task_id", "status"}
    # forms the fast path leaves to FastAPI: invalid or unknown query parameters
    for params in ({"wait": "soon"}, {"wait": "-1"}, {"version": "0"}):
        r = api.post("/v1/functions/fastpath/invocations", params=params, json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (params, r.text)
    # errors raised on the fast path keep the contract's shape
    r = api.post("/v1/functions/nosuch/invocations", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.post("/v1/functions/fastpath/invocations", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{api.base_url}/v1/functions/fastpath/invocations", json={},
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_bridge_task_runs_a_bundle_from_its_bytes_in_any_worker(ray_cluster: Any) -> None:
    import hashlib
    import json

    import ray

    from cluster.executor import execute_package
    from core.models import FunctionConfig

    data = zip_files({"main.py": "def handler(event, context):\n"
                                 "    return {'x': event['x'], 'id': context.aws_request_id}\n"})
    sha = hashlib.sha256(data).hexdigest()
    common = {"key": f"test/bridge/1/{sha}/noenv", "namespace": "test", "function": "bridge", "version": 1,
              "handler": "main.handler", "config": FunctionConfig().model_dump(mode="json")}
    outs = ray.get(execute_package.remote(ray.put(data), sha, common, [("t1", b'{"x": 1}'), ("t2", b'{"x": 2}')]))
    assert [o["status"] for o in outs] == ["succeeded", "succeeded"]
    assert [json.loads(o["output_json"]) for o in outs] == [{"x": 1, "id": "t1"}, {"x": 2, "id": "t2"}]


def test_new_version_runs_at_once_then_moves_to_its_own_runtime_env_workers(api: httpx.Client,
                                                                           api_server: Any) -> None:
    from core.models import FunctionConfig

    src = f"def handler(event, context):\n    return {{'fresh': {time.time_ns()}, 'got': event}}\n"
    r = deploy(api, "bridged", files={"main.py": src})
    assert r.status_code == 201, r.text
    platform = api_server.platform
    key = (r.json()["sha256"], FunctionConfig().cpus)
    assert key in platform._remotes  # the version's runtime_env remote exists (its worker is starting)
    first = api.post("/v1/functions/bridged/invocations", params={"wait": 30}, json={"n": 1}).json()
    assert first["status"] == "succeeded" and first["output"]["got"] == {"n": 1}
    deadline = time.monotonic() + 60
    while key in platform._bridges and time.monotonic() < deadline:
        time.sleep(0.2)
    assert key not in platform._bridges  # the version's own worker started; the bridge is gone
    later = api.post("/v1/functions/bridged/invocations", params={"wait": 30}, json={"n": 2}).json()
    assert later["status"] == "succeeded" and later["output"]["got"] == {"n": 2}


def test_short_function_called_one_at_a_time_uses_its_express_lane_and_survives_its_death(
        api: httpx.Client, api_server: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(api_server.platform, "hosts", None)  # lanes serve only without shared warm hosts

    from core.models import FunctionConfig
    from serve_app.dispatch.lanes import PROBE_AFTER_S

    src = f"def handler(event, context):\n    return {{'lane': {time.time_ns()}, 'i': event['i']}}\n"
    r = deploy(api, "express", files={"main.py": src})
    assert r.status_code == 201, r.text
    key = (r.json()["sha256"], FunctionConfig().cpus)
    lanes = api_server.platform.lanes

    def call(i: int) -> dict[str, Any]:
        rec = api.post("/v1/functions/express/invocations", params={"wait": 30}, json={"i": i}).json()
        assert rec["status"] in TERMINAL, rec
        return dict(rec)

    deadline = time.monotonic() + 60
    i = 0
    while not (key in lanes.lanes and lanes.lanes[key].calls >= 5) and time.monotonic() < deadline:
        assert call(i)["status"] == "succeeded"
        i += 1
    lane = lanes.lanes[key]
    assert lane.calls >= 5 and not lane.busy  # one-at-a-time calls of a short function went to its lane
    first_lane_call = i - lane.calls

    ray.kill(lane.actor)  # the lane's worker dies while idle
    after = [call(i + k) for k in range(20)]
    lost = [a for a in after if a["status"] != "succeeded"]
    # the call that met the dead actor fails as ExecutorLost (never a duplicate); then a new lane serves
    assert len(lost) <= 1 and all(a["error"]["type"] == "ExecutorLost" for a in lost), lost
    assert all(a["status"] == "succeeded" for a in after[-10:])
    deadline = time.monotonic() + 30
    while not (key in lanes.lanes and lanes.lanes[key] is not lane and lanes.lanes[key].calls) \
            and time.monotonic() < deadline:
        call(0)
    assert lanes.lanes[key] is not lane and lanes.lanes[key].calls > 0
    # a lane that dies while idle for a while is found by its probe, not by an invocation
    second = lanes.lanes[key]
    ray.kill(second.actor)
    time.sleep(PROBE_AFTER_S + 0.5)
    later = [call(100 + k) for k in range(10)]
    assert all(a["status"] == "succeeded" for a in later), [a.get("error") for a in later]
    assert lanes.lanes.get(key) is not second
    with create_engine(database_url).connect() as conn:
        rows = conn.execute(text("SELECT count(*), count(DISTINCT task_id) FROM execution_metrics"
                                 " WHERE function = 'express'")).one()
    assert rows[0] == rows[1] and rows[0] >= first_lane_call + 5  # one execution row per invocation
