"""Two Ray nodes on one host, the platform joined to them: functions run on both, the monitoring actors work
from the second node, and stopping the second node mid-burst loses no accepted task."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.platform_proc import PlatformProcess, zip_handler
from bench.ray_nodes import ray_env, ray_query, two_nodes
from tests.integration.test_monitoring import SECRET, Receiver, signature_ok, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
SLEEPER = ("import time\n"
           "def handler(event, context):\n"
           "    time.sleep(float(event.get('ms', 10)) / 1000)\n"
           "    return {'ok': True}\n")
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """A head node and a second node offering the `monitor` resource, both on this host."""
    with two_nodes(cpus=2, second_resources='{"monitor": 1}') as where:
        yield where


@pytest.fixture(scope="module")
def platform(cluster: dict[str, Any]) -> Iterator[PlatformProcess]:
    """`cloudfn up` joined to the two-node cluster; one Serve proxy (two on one host would share a port)."""
    serve = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    serve["proxy_location"] = "HeadOnly"
    # the API replica on the head: losing the second node is the loss of a worker node, not of the replica
    # (a SIGKILLed replica has tests of its own)
    serve["applications"][0]["deployments"][0]["ray_actor_options"]["resources"] = {"head": 0.001}
    cfg = cluster["tmp"] / "serve.yaml"
    cfg.write_text(yaml.safe_dump(serve))
    with PlatformProcess(extra_env={"CLOUDFN_RAY_ADDRESS": cluster["address"], "CLOUDFN_SERVE_CONFIG": str(cfg),
                                    "CLOUDFN_MONITOR_RESOURCE": "monitor", **ray_env(cluster["tmp"])}) as p:
        yield p


def deploy(c: httpx.Client, name: str, config: dict[str, Any] | None = None) -> None:
    files = {"archive": ("f.zip", zip_handler(SLEEPER), "application/zip")}
    r = c.post("/v1/functions", files=files, data={"name": name, "config": json.dumps(config or {})})
    assert r.status_code == 201, r.text


def burst(c: httpx.Client, name: str, n: int, ms: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = c.post(f"/v1/functions/{name}/invocations", json={"ms": ms})
        assert r.status_code == 202, r.text
        ids.append(r.json()["task_id"])
    return ids


def records(c: httpx.Client, ids: list[str], timeout_s: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    recs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(recs) < len(ids):
        try:  # the API replica may have run on a lost node: while Serve starts it again, reads fail or get 503
            r = c.post("/v1/tasks/lookup", json={"ids": [i for i in ids if i not in recs]})
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200:
            recs.update({t["task_id"]: t for t in r.json()["tasks"] if t["status"] in TERMINAL})
        time.sleep(0.5)
    return [recs.get(i) or c.get(f"/v1/tasks/{i}").json() for i in ids]


def test_functions_run_on_both_nodes(platform: PlatformProcess, cluster: dict[str, Any]) -> None:
    with platform.client(timeout=60) as c:
        deploy(c, "spread", {"max_concurrency": 32})
        recs = records(c, burst(c, "spread", 32, 1500))
    assert all(r["status"] == "succeeded" for r in recs), [(r["status"], r["error"], r["node"]) for r in recs]
    assert {r["node"] for r in recs} == {cluster["head_id"], cluster["second_id"]}


def test_monitoring_actors_work_from_the_second_node(platform: PlatformProcess, cluster: dict[str, Any]) -> None:
    placed = ray_query(cluster, (  # GCS's actor table (the state API needs the dashboard, which is off here)
        "from ray._private.state import actors\n"
        "print(json.dumps({a['Name']: a['Address']['NodeID'] for a in actors().values() "
        "if a['State'] == 'ALIVE' and a['Name'] in ('cloudfn-alerts', 'cloudfn-detector-0')}))"))
    assert placed == {"cloudfn-alerts": cluster["second_id"], "cloudfn-detector-0": cluster["second_id"]}
    hook = Receiver()
    try:
        with platform.client(timeout=60) as c:
            deploy(c, "jumpy2n")
            rule = {"name": "jumpy2n-anomaly", "function": "jumpy2n", "kind": "anomaly",
                    "channels": [{"type": "webhook", "url": f"{hook.url}/hook", "secret": SECRET}]}
            assert c.post("/v1/alert-rules", json=rule).status_code == 201
            for _ in range(100):
                assert c.post("/v1/functions/jumpy2n/invocations", params={"wait": 60},
                              json={"ms": "0010"}).status_code == 200
            for _ in range(5):  # 10 ms → 1.5 s, inputs of the same size (only the duration moves)
                c.post("/v1/functions/jumpy2n/invocations", params={"wait": 60}, json={"ms": "1500"})
            found = wait_for(lambda: c.get("/v1/anomalies", params={"function": "jumpy2n"}).json()["anomalies"], 90)
            assert found, "the detector on the second node raised nothing after a 50x slowdown"
        delivered = wait_for(lambda: [q for q in hook.requests if q["status"] == 200], 60)
        assert delivered and signature_ok(delivered[0], SECRET)
    finally:
        hook.close()


def test_stopping_the_second_node_mid_burst_loses_nothing(platform: PlatformProcess,
                                                           cluster: dict[str, Any]) -> None:
    with platform.client(timeout=60) as c:
        deploy(c, "survivor", {"max_concurrency": 32, "max_retries": 2})
        ids = burst(c, "survivor", 48, 2000)
        time.sleep(1.5)  # tasks running on both nodes
        cluster["second"].kill()
        recs = records(c, ids, 300)
    statuses = [r["status"] for r in recs]
    assert all(s in TERMINAL for s in statuses), statuses  # every accepted task ended
    lost = [r for r in recs if r["status"] != "succeeded"]
    assert all(r["error"]["type"] in ("ExecutorLost", "WorkerCrashed") for r in lost), lost
    assert any(r["status"] == "succeeded" and r["node"] == cluster["head_id"] for r in recs)
